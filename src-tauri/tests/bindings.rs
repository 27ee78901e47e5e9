//! The checked-in TypeScript bindings are exactly what the Rust commands and types generate.

#[test]
fn checked_in_bindings_match_the_rust_types() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fresh = dir.path().join("bindings.ts");
    onmic_studio::export_bindings(&fresh).expect("bindings export");
    let fresh = std::fs::read_to_string(fresh).expect("read fresh bindings");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ui/src/bindings.ts");
    let checked_in = std::fs::read_to_string(path).expect("ui/src/bindings.ts exists");
    assert!(
        fresh == checked_in,
        "ui/src/bindings.ts is stale: run `cargo xtask bindings` and commit the result"
    );
    for command in ["listDevices", "startMeter", "setServerUrl", "serverStatus"] {
        assert!(fresh.contains(command), "{command} is exported");
    }
}
