//! Harness for Onmic's end-to-end tests: real processes (the Studio under `tauri-driver`, the
//! server binary, Chromium under `chromedriver`, PulseAudio null sinks, str0m WebRTC peers),
//! driven the way a person would use them.
//!
//! `cargo xtask test` builds the binaries, starts Xvfb and PulseAudio, and exports what these
//! helpers read: `DISPLAY`, `PULSE_SERVER`, `ONMIC_STUDIO_BIN`, `ONMIC_SERVER_BIN`,
//! `ONMIC_TAURI_DRIVER`, `ONMIC_WEBKIT_DRIVER`. A test run without them fails and says so.
//! `ONMIC_STUDIO_STDERR=FILE` keeps the Studio's log (with its driver's) for a diagnosis.
#![forbid(unsafe_code)]

pub mod audio;
pub mod browser;
pub mod client_host;
pub mod console;

pub mod keys;
pub mod netns;
pub mod rtc_peer;
pub mod server;
pub mod studio;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The value of `name`, or a panic that says how to get it.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: end-to-end tests need the daemons and binaries that `cargo xtask test` prepares")
    })
}

/// The workspace root: of the checkout `cargo test` runs in (its CARGO_MANIFEST_DIR at run
/// time), not of the one this binary was built in (cargo reuses a test binary built in another
/// checkout of the same source when they share a build directory; it would then read that
/// checkout's scripts and files).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
}

/// Where screenshots go: `target/screenshots/` in the workspace.
pub fn screenshot_dir() -> PathBuf {
    let dir = workspace_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory can be created");
    dir
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port is available")
}

/// Polls `probe` every 100 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
