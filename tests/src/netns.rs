//! Running a test inside its own loopback-only network namespace: WebRTC stacks (Chromium,
//! str0m) gather candidates on every interface, and tests may send traffic only to loopback.
//! The same pattern as `server/tests/sfu_support::inside_netns`.

/// Set in the environment of the test re-run inside the namespace.
pub const INNER: &str = "ONMIC_NETNS_INNER";

/// Runs `test` (this binary's test of that name) again inside a fresh network namespace that has
/// only `lo` up, and fails with its output if it fails. Returns `true` when already inside (the
/// caller then runs the scenario), `false` after the inner run passed. Needs root.
pub fn inside_netns(test: &str) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    // Unique per process and test: tests of one binary run in parallel.
    let tag: u32 = test
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    let name = format!("onmic-e2e-{}-{:08x}", std::process::id(), tag);
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running `ip {}`: {e} (install iproute2)", args.join(" ")))
    };
    let made = ip(&["netns", "add", &name]);
    assert!(
        made.status.success(),
        "this test needs root to create a network namespace (`ip netns add {name}`): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let _cleanup = Cleanup(name.clone());
    let up = ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
    assert!(up.status.success(), "lo up: {up:?}");
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &name])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .expect("running the test inside the namespace");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the inner test did not run:\n{text}"
    );
    eprintln!("{text}");
    false
}
