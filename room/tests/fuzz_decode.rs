//! The decoder's fuzz target (`room/fuzz`, cargo-fuzz) driven on stable for a bounded number of
//! inputs: random bytes, random JSON objects with known and unknown types, and byte-level
//! mutations of valid messages. Passing means nothing panicked.

use onmic_room::protocol::{ACTION_TYPES, decode_client, fuzz_decode};
use proptest::prelude::*;

const SEEDS: &[&str] = &[
    r#"{"id":1,"type":"join","room":"r","token":"v1.abc.def"}"#,
    r#"{"id":2,"type":"apply","seat":3}"#,
    r#"{"id":3,"type":"kick","uid":"guest","ban_ms":1000}"#,
    r#"{"id":4,"type":"send_gift","gift":"rocket","count":3,"to":"owner"}"#,
    r#"{"id":5,"type":"move_seat","from":1,"to":2}"#,
    r#"{"id":6,"type":"custom","kind":"k","payload":{"a":[1,2,{"b":null}]}}"#,
    r#"{"id":7,"type":"mute_chat","uid":"aud","duration_ms":18446744073709551615}"#,
    r#"{"id":8,"type":"chat","text":"你好 bad"}"#,
    r#"{"id":9,"type":"invite","uid":"aud","seat":65535}"#,
    r#"{"id":10,"type":"kick","uid":"guest","ban_ms":31622400000}"#,
    r#"{"id":9007199254740991,"type":"notice","text":"\u200b x"}"#,
];

/// Frames the decoder must refuse as `malformed`: duplicate keys (at any depth) and integers a
/// field cannot hold.
const MALFORMED: &[&str] = &[
    r#"{"type":"notice","type":"chat","text":"x"}"#,
    r#"{"id":1,"id":1,"type":"heartbeat"}"#,
    r#"{"type":"custom","kind":"k","payload":{"a":1,"a":1}}"#,
    r#"{"id":9007199254740992,"type":"heartbeat"}"#,
    r#"{"id":18446744073709551616,"type":"heartbeat"}"#,
    r#"{"type":"apply","seat":65536}"#,
    r#"{"type":"send_gift","gift":"rose","count":4294967296}"#,
    r#"{"type":"mute_chat","uid":"a","duration_ms":1e400}"#,
];

fn mutate(seed: &[u8], ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for (op, pos, byte) in ops {
        let p = if v.is_empty() { 0 } else { pos % v.len() };
        match op % 4 {
            0 if !v.is_empty() => v[p] = *byte,
            1 => v.insert(p, *byte),
            2 if !v.is_empty() => {
                v.remove(p);
            }
            _ => v.truncate(p),
        }
    }
    v
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("uid".to_owned()),
                    Just("seat".to_owned()),
                    Just("text".to_owned()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A huge or odd integer as JSON text (beyond u64, negative, float forms).
fn huge_integer() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (any::<u64>(), 0u32..40).prop_map(|(n, z)| format!("{n}{}", "0".repeat(z as usize))),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        Just("9007199254740992".to_owned()),
        Just("18446744073709551615".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn duplicate_keys_are_always_malformed(
        seed in 0..SEEDS.len(),
        dup in 0usize..8,
        value in json_value(),
    ) {
        // Repeat one of the seed's keys (or `type`) with another value, anywhere in the object.
        let mut obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(SEEDS[seed]).expect("seed");
        let keys: Vec<String> = obj.keys().cloned().collect();
        let key = keys[dup % keys.len()].clone();
        let first = obj.remove(&key).expect("key");
        let mut text = serde_json::Value::Object(obj).to_string();
        text.pop();
        let sep = if text.len() > 1 { "," } else { "" };
        let text = format!("{text}{sep}\"{key}\":{first},\"{key}\":{value}}}");
        let e = decode_client(&text).expect_err("duplicate keys");
        prop_assert_eq!(e.error.code(), "malformed", "{}", text);
        fuzz_decode(text.as_bytes());
    }

    #[test]
    fn huge_integers_never_panic_and_ids_stay_javascript_safe(
        ty in proptest::sample::select(ACTION_TYPES.to_vec()),
        field in proptest::sample::select(vec!["id", "seat", "count", "ban_ms", "duration_ms", "from", "to"]),
        n in huge_integer(),
    ) {
        let text = format!(r#"{{"type":"{ty}","uid":"guest","gift":"rose","{field}":{n}}}"#);
        match decode_client(&text) {
            Ok(m) => prop_assert!(m.id.is_none_or(|id| id <= onmic_room::config::MAX_SAFE_INTEGER), "{}", text),
            Err(e) => prop_assert!(["malformed", "missing_type", "unknown_type"].contains(&e.error.code())),
        }
        fuzz_decode(text.as_bytes());
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzz_decode(&data);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        seed in 0..SEEDS.len(),
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..8),
    ) {
        let data = mutate(SEEDS[seed].as_bytes(), &ops);
        fuzz_decode(&data);
    }

    #[test]
    fn structured_messages_decode_or_fail_cleanly(
        ty in prop_oneof![proptest::sample::select(ACTION_TYPES.to_vec()).prop_map(str::to_owned), ".{0,12}"],
        fields in proptest::collection::btree_map("[a-z_]{1,10}", json_value(), 0..5),
        id in proptest::option::of(json_value()),
    ) {
        let mut obj: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
        obj.insert("type".into(), ty.into());
        if let Some(id) = id {
            obj.insert("id".into(), id);
        }
        let text = serde_json::Value::Object(obj).to_string();
        // Either a message or a typed error with a known code.
        if let Err(e) = decode_client(&text) {
            prop_assert!(["malformed", "missing_type", "unknown_type", "too_large"].contains(&e.error.code()));
        }
        fuzz_decode(text.as_bytes());
    }
}

#[test]
fn malformed_frames_are_malformed() {
    for s in MALFORMED {
        let e = decode_client(s).expect_err(s);
        assert_eq!(e.error.code(), "malformed", "{s}");
        fuzz_decode(s.as_bytes());
    }
}

#[test]
fn seeds_are_valid_messages() {
    for s in SEEDS {
        assert!(decode_client(s).is_ok(), "{s}");
        fuzz_decode(s.as_bytes());
    }
}
