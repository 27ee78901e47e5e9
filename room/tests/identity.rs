//! The identity rule as a property (issue 14, acceptance 2): over random Unicode uids and room
//! ids — built from look-alike material (case, full-width, Cyrillic and Greek homoglyphs, digits
//! that look like letters, combining marks, NFD, spaces, controls, bidi and zero-width
//! characters) — two different accepted ids never render alike, and every accepted room id
//! survives a URL path round trip unchanged.

use onmic_room::command::{Action, Command};
use onmic_room::ids::{check_room_id, check_uid, look_alike_keys, looks_alike};
use onmic_room::{ImPolicy, Room, RoomError, RoomSettings, Timestamp, Uid};
use proptest::prelude::*;
use unicode_normalization::UnicodeNormalization;

/// Characters that make look-alikes of each other, plus ones the rule must refuse.
const MATERIAL: &[char] = &[
    'a', 'o', 'e', 'l', 'i', 'm', 'r', 'n', 'w', 'O', 'I', 'L', 'W', '0', '1', '5', 'S', 's', 'а',
    'о', 'е', 'і', 'ο', 'ｏ', 'Ａ', 'ｌ', 'é', '\u{301}', '\u{308}', '-', '_', '.', '@', ' ',
    '\u{a0}', '\t', '\n', '\0', '\u{7}', '\u{1b}', '\u{202e}', '\u{200b}', '\u{200d}', '\u{feff}',
    '/', '%', '用', '户', 'ǀ', 'ℓ', 'ⅼ', 'ﬁ', 'ß', 'ẞ', 'Ω', 'Ω',
];

fn id_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(proptest::sample::select(MATERIAL), 0..8)
            .prop_map(|v| v.into_iter().collect()),
        // Arbitrary Unicode, too.
        "\\PC{0,6}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn room() -> Room {
    Room::new(
        "r".into(),
        "owner".into(),
        String::new(),
        RoomSettings::default(),
        ImPolicy::default(),
    )
}

fn enter(room: &mut Room, uid: &str) -> Result<(), RoomError> {
    let action = Action::Enter {
        uid: Uid::from(uid),
        admin: false,
        publish_until: None,
    };
    room.handle(Timestamp(1), Command::system(action))
        .map(|_| ())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn accepted_members_never_render_alike(ids in proptest::collection::vec(id_strategy(), 1..24)) {
        let mut room = room();
        let mut accepted = vec!["owner".to_owned()];
        for id in &ids {
            match enter(&mut room, id) {
                Ok(()) => {
                    prop_assert!(check_uid(id).is_ok(), "{id:?} entered but breaks the rule");
                    if !accepted.contains(id) {
                        accepted.push(id.clone());
                    }
                }
                Err(RoomError::ConfusableUid(other)) => {
                    prop_assert!(looks_alike(id, other.as_str()));
                }
                Err(e) => prop_assert!(
                    matches!(e.code(), "invalid_uid"),
                    "{id:?}: unexpected {e:?}"
                ),
            }
        }
        for (i, a) in accepted.iter().enumerate() {
            prop_assert!(a.nfc().eq(a.chars()), "{a:?} is not NFC");
            for b in &accepted[i + 1..] {
                let (a1, a2) = look_alike_keys(a);
                let (b1, b2) = look_alike_keys(b);
                prop_assert!(a1 != b1 && a2 != b2, "{a:?} and {b:?} render alike");
                let fa: String = a.nfkc().flat_map(char::to_lowercase).collect();
                let fb: String = b.nfkc().flat_map(char::to_lowercase).collect();
                prop_assert_ne!(fa, fb, "{:?} and {:?} normalise alike", a, b);
            }
        }
    }

    #[test]
    fn accepted_room_ids_are_distinct_url_path_segments(ids in proptest::collection::vec(id_strategy(), 1..24)) {
        let mut accepted: Vec<String> = Vec::new();
        for id in ids {
            if check_room_id(&id).is_err() {
                continue;
            }
            let url = url::Url::parse(&format!("http://h/v1/rooms/{id}/members"))
                .expect("an accepted room id makes a valid URL");
            let segments: Vec<&str> = url.path_segments().expect("segments").collect();
            prop_assert_eq!(segments.len(), 4, "{} changed the path: {}", id, url);
            prop_assert_eq!(segments[2], id.as_str(), "{} is escaped or rewritten", id);
            // The server refuses a room id that renders like an existing one (`Hub::create_room`,
            // through the same `looks_alike`).
            if accepted.iter().any(|a| looks_alike(a, &id)) {
                continue;
            }
            accepted.push(id);
        }
        for (i, a) in accepted.iter().enumerate() {
            for b in &accepted[i + 1..] {
                prop_assert!(!looks_alike(a, b));
            }
        }
    }
}

#[test]
fn the_reported_impersonations_are_refused_at_join() {
    let mut room = room();
    for uid in [" ", "a\0b", "line\nbreak", "\u{202e}evil"] {
        let e = enter(&mut room, uid).expect_err(uid);
        assert_eq!(e.code(), "invalid_uid", "{uid:?}");
    }
    for uid in ["owner ", "Owner", "ＯＷＮＥＲ", "0wner"] {
        let e = enter(&mut room, uid).expect_err(uid);
        assert!(
            matches!(e.code(), "invalid_uid" | "confusable_uid"),
            "{uid:?}: {e:?}"
        );
    }
    // NFD of an NFC member.
    enter(&mut room, "céline").expect("NFC uid");
    let nfd: String = "céline".nfd().collect();
    assert_eq!(
        enter(&mut room, &nfd).expect_err("NFD").code(),
        "invalid_uid"
    );
    // The same uid again is a reconnect, not a look-alike.
    enter(&mut room, "céline").expect("reconnect");
    let long = "a".repeat(5000);
    assert_eq!(
        enter(&mut room, &long).expect_err("long").code(),
        "invalid_uid"
    );
}
