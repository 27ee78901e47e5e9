//! Running a test inside its own loopback-only network namespace: WebRTC stacks (Chromium,
//! str0m, webrtc-rs) gather candidates on every interface, and tests may send traffic only to
//! loopback. The shared implementation is the `onmic-netns` crate.

pub use onmic_netns::inside_netns;

/// Runs the async `scenario` on a fresh 2-thread runtime inside `test`'s own namespace (see
/// [`inside_netns`]); fails the test with the scenario's error.
pub fn run_in_netns<F: std::future::Future<Output = anyhow::Result<()>>>(
    test: &str,
    scenario: impl FnOnce() -> F,
) {
    if !inside_netns(test) {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(scenario())
        .expect("scenario");
}
