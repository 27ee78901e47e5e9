//! The SFU: forwards Opus RTP from members on unmuted seats to everyone else in the room, without
//! transcoding, and enforces the room's seats on every packet (anti-bombing).
//!
//! Layers, sans-IO first:
//! - [`router`]: the per-room forwarding decision (peers, stream ownership, who may publish now,
//!   bombing detection and its rate limit, volume indication). No sockets, no clock.
//! - [`level`]: RFC 6464 audio levels → 0–255 volume and speaking flags.
//! - [`driver`]: the network edge — one thread, one UDP socket, a str0m `Rtc` per peer.
//! - [`http`]: signalling (`POST /rtc/offer`).
//!
//! See `docs/sfu.md` for the design, the measured choice of WebRTC stack and what is missing.

pub mod driver;
pub mod http;
pub mod level;
pub mod router;

pub use driver::{Sfu, SfuConfig, SfuError, SfuStats};
pub use level::{SPEAKING_THRESHOLD, VolumeReport};
pub use router::{
    Bombing, BombingPolicy, Decision, DropReason, PeerCounters, PeerId, Router, StreamId,
};
