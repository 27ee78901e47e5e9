//! Onmic's audio engine: devices (cpal), the DSP chain, Opus, meters, volume indication and
//! offline file processing. No network and no UI; the Studio and the offline tools drive it.
//!
//! Contract:
//! - Internally everything runs at 48 kHz in fixed 10 ms [`Block`]s (480 frames, 1–2 channels).
//! - Every DSP stage implements [`Processor`]: it allocates only in `prepare`; `process` is
//!   real-time safe (no allocation, lock, log or syscall), which a counting-allocator test proves.
//! - The [`chain::Chain`] is the capture path (channel map → AEC → AI-NS → NS → AGC → limiter →
//!   meters); [`opus::OpusEncoder`] turns the publish bus into RTP-timestamped Opus packets and
//!   [`playout`] turns received packets back into audio through an adaptive [`jitter::JitterBuffer`]
//!   (target delay from the measured arrival jitter, surplus given back by [`time_scale`]).
//! - [`offline`] runs the same chain file to file; the `onmic-audio` binary is its CLI.
//!
//! Real-time contract: code that runs in a device callback or the DSP loop never allocates,
//! locks, logs or blocks; audio crosses threads through SPSC rings.
#![forbid(unsafe_code)]
// DSP loops index several parallel buffers by the same frame index; iterator zips of three or
// four buffers read worse than the index.
#![allow(clippy::needless_range_loop)]

pub mod aec;
pub mod aec3;
pub mod agc;
pub mod ai_ns;
mod apm;
pub mod block;
pub mod chain;
pub mod debug_tap;
pub mod devices;
pub mod ear_monitor;
pub mod effects;
pub mod engine;
pub mod jitter;
pub mod level;
pub mod limiter;
pub mod meter;
pub mod music;
pub mod ns;
pub mod ns_webrtc;
pub mod offline;
pub mod ogg_opus;
pub mod opus;
pub mod output_reader;
pub mod playout;
pub mod processor;
pub mod resample;
pub mod streams;
pub mod switch;
pub mod test_signals;
pub mod time_scale;
pub mod units;
pub mod volume_indication;

pub use block::Block;
pub use devices::{DeviceError, DeviceInfo, DeviceList, Direction, describe_input, list_devices};
pub use meter::{ChannelLevel, InputMeter, MeterReading};
pub use processor::{PrepareError, Processor, StreamSpec};
pub use units::{BLOCK_FRAMES, Dbfs, ENGINE_RATE, Frames, SampleRate, VolumePercent};
