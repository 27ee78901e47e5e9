//! Onmic's audio engine: devices (cpal), the DSP chain, music sources, effects, Opus and meters.
//! No network and no UI; the Studio and the offline tools drive it.
//!
//! Real-time contract: code that runs in a device callback or the DSP loop never allocates,
//! locks, logs or blocks; audio crosses threads through SPSC rings.
#![forbid(unsafe_code)]

pub mod devices;
pub mod meter;

pub use devices::{DeviceError, DeviceInfo, DeviceList, Direction, list_devices};
pub use meter::{ChannelLevel, InputMeter, MeterReading};
