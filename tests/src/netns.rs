//! Running a test inside its own loopback-only network namespace: WebRTC stacks (Chromium,
//! str0m, webrtc-rs) gather candidates on every interface, and tests may send traffic only to
//! loopback. The shared implementation is the `onmic-netns` crate.

pub use onmic_netns::inside_netns;
