//! The docs are a contract (issue 14): every configuration key is in `server/README.md`'s table
//! and nothing else is; every error code and close reason the code can produce is in
//! `docs/protocol.md`'s "Error codes" table (and close-code list), and every code there exists.

use std::collections::BTreeSet;

use onmic_room::RoomError;
use onmic_room::protocol::{CLOSE_REASONS, DecodeError};
use onmic_room::token::TokenError;

fn read(rel: &str) -> String {
    let path = format!("{}/{rel}", manifest_dir());
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The first backticked cell of each table row in the section that starts with `heading`.
fn table_keys(doc: &str, heading: &str) -> BTreeSet<String> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} is missing"));
    let rest = &doc[start + heading.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_owned()))
        .collect()
}

#[test]
fn every_configuration_key_is_documented() {
    let documented = table_keys(&read("README.md"), "## Configuration");
    let keys: BTreeSet<String> = onmic_server::Config::keys().into_iter().collect();
    assert_eq!(
        documented, keys,
        "server/README.md's table vs the Config struct"
    );
}

#[test]
fn every_error_code_is_documented_and_exists() {
    let documented = table_keys(&read("../docs/protocol.md"), "## Error codes");
    let mut produced: BTreeSet<String> = BTreeSet::new();
    let lists: [&[&str]; 6] = [
        RoomError::CODES,
        TokenError::CODES,
        DecodeError::CODES,
        onmic_server::rest::REST_ERROR_CODES,
        onmic_server::ws::WS_ERROR_CODES,
        &["no_such_room", "room_exists", "invalid_request", "internal"],
    ];
    for list in lists {
        produced.extend(list.iter().map(|c| c.to_string()));
    }
    let missing: Vec<_> = produced.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "not in docs/protocol.md's Error codes: {missing:?}"
    );
    // Codes sent only by the media layer and recordings: each documented one exists in the source.
    let mut source = String::new();
    for dir in ["src", "src/sfu", "src/recording"] {
        for entry in std::fs::read_dir(format!("{}/{dir}", manifest_dir())).expect("dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                source.push_str(&std::fs::read_to_string(&path).expect("read"));
            }
        }
    }
    for code in documented.difference(&produced) {
        assert!(
            source.contains(&format!("\"{code}\"")),
            "docs/protocol.md documents {code}, which the server never sends"
        );
    }
}

#[test]
fn every_close_reason_and_code_is_documented() {
    let doc = read("../docs/protocol.md");
    for reason in CLOSE_REASONS {
        let name = serde_json::to_value(reason).expect("serialize");
        let entry = format!(
            "`{}` {}",
            name.as_str().expect("string"),
            reason.close_code()
        );
        assert!(doc.contains(&entry), "docs/protocol.md lacks {entry}");
    }
}

/// This package's directory in the checkout `cargo test` runs in (CARGO_MANIFEST_DIR at run
/// time; the compiled-in one names the checkout the binary was built in, which cargo reuses
/// across checkouts of the same source that share a build directory).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
