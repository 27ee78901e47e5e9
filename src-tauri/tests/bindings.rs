//! The checked-in TypeScript bindings are exactly what the Rust commands and types generate.

#[test]
fn checked_in_bindings_match_the_rust_types() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fresh = dir.path().join("bindings.ts");
    onmic_studio::export_bindings(&fresh).expect("bindings export");
    let fresh = std::fs::read_to_string(fresh).expect("read fresh bindings");
    // The checkout `cargo test` runs in, not the one this binary was built in (cargo reuses it
    // across checkouts of the same source that share a build directory).
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = format!("{dir}/../ui/src/bindings.ts");
    let checked_in = std::fs::read_to_string(&path).expect("ui/src/bindings.ts exists");
    assert!(
        fresh == checked_in,
        "ui/src/bindings.ts is stale: run `cargo xtask bindings` and commit the result"
    );
    for command in ["listDevices", "startMeter", "setServerUrl", "serverStatus"] {
        assert!(fresh.contains(command), "{command} is exported");
    }
}
