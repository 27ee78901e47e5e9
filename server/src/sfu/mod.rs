//! The SFU: forwards Opus RTP from members on unmuted seats to everyone else in the room, without
//! transcoding, and enforces the room's seats on every packet (anti-bombing).
//!
//! Layers, sans-IO first:
//! - [`router`]: the per-room forwarding decision (peers, stream ownership, who may publish now,
//!   bombing detection and its rate limit, volume indication). No sockets, no clock.
//! - [`level`]: RFC 6464 audio levels → 0–255 volume and speaking flags.
//! - [`driver`]: the network edge — one thread, one UDP socket, a str0m `Rtc` per peer.
//! - `sendmmsg`: the batched send of a fan-out (the crate's one FFI module).
//! - `stamped`: the receive with the kernel's arrival time, to shed audio a late shard held.
//! - [`http`]: signalling (`POST /rtc/offer`).
//!
//! See `docs/sfu.md` for the design, the measured choice of WebRTC stack and what is missing.

pub mod driver;
pub mod http;
pub mod level;
mod prefetch;
pub mod room_sync;
pub mod router;
mod sendmmsg;
mod stamped;

pub use driver::{Sfu, SfuConfig, SfuError, SfuStats};

use str0m::RtcConfig;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, Pt};
use str0m::rtp::{Extension, ExtensionMap};

/// The WebRTC stack the SFU runs on: "str0m 0.25", or "rtc 0.21" when built with the `bench-rtc`
/// feature and `ONMIC_SFU_STACK=rtc` is set (a driver for the capacity bench only, issue 5).
pub fn stack() -> &'static str {
    #[cfg(feature = "bench-rtc")]
    if std::env::var("ONMIC_SFU_STACK").as_deref() == Ok("rtc") {
        return "rtc 0.21";
    }
    "str0m 0.25"
}

/// The Opus payload type every Onmic peer negotiates.
pub const OPUS_PT: u8 = 111;

/// A str0m configuration with Onmic's one codec: Opus 48 kHz stereo (`stereo=1;
/// sprop-stereo=1`), 10 ms minimum packet time, in-band FEC. The SFU and str0m-based clients
/// (tests, benches) start from it so both sides of a call negotiate the same thing.
pub fn opus_rtc_config() -> RtcConfig {
    let mut config = str0m::Rtc::builder().clear_codecs();
    config.codec_config().add_config(
        Pt::from(OPUS_PT),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams {
            min_p_time: Some(10),
            use_inband_fec: Some(true),
            stereo: Some(true),
            sprop_stereo: Some(true),
            ..FormatParams::default()
        },
    );
    config
}
/// The RTP header extensions the SFU's peers negotiate: the RFC 6464 audio level (volume
/// indication, and passed on with every forwarded packet) and the BUNDLE `mid`, nothing else.
/// str0m's standard map also offers transport-wide sequence numbers (TWCC), absolute send time
/// and the simulcast/video extensions. The SFU does no bandwidth estimation for audio, yet with
/// TWCC negotiated str0m numbered every forwarded copy and kept the last 1,000 send records per
/// peer connection: ~84 KiB per listener (heaptrack of the capacity bench, docs/sfu.md).
pub fn sfu_extension_map() -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    exts.set(1, Extension::AudioLevel);
    exts.set(4, Extension::RtpMid);
    exts
}

pub use level::{SPEAKING_THRESHOLD, VolumeGate, VolumeReport};
pub use router::{
    Bombing, BombingPolicy, Decision, DropReason, PeerCounters, PeerId, Router, StreamId,
};
