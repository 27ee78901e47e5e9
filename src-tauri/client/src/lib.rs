//! The Studio's room client: joins a room over the WebSocket (`docs/protocol.md`), publishes this
//! member's Opus over WebRTC (the `webrtc` crate) while the room says it holds an unmuted seat,
//! subscribes to every seat and hands each remote member's decoded audio (the engine's
//! [`onmic_audio::playout::RemoteStream`]: jitter buffer, FEC, loss concealment) to the
//! application, and recovers from network drops (ICE first, then a media restart, then a full
//! rejoin). Design and figures: `docs/client.md`.
#![forbid(unsafe_code)]

mod client;
pub mod error;
pub mod link_stats;
mod media;
mod rr_forward;
pub mod test_tone;
pub mod wire;

pub use client::{
    ClientConfig, ClientEvent, ClientStats, ConnectionState, Publisher, ReconnectPolicy,
    RemoteChange, RoomClient, may_publish, remote_key,
};
pub use error::ClientError;
pub use media::OPUS_FMTP;
