//! Audio devices: enumeration and the errors a user can act on.
//!
//! The host is cpal's default for the platform: on Linux the PulseAudio host when a PulseAudio
//! (or PipeWire-pulse) server answers, ALSA otherwise; CoreAudio on macOS; WASAPI on Windows.
//! Device ids are cpal's stable `host:device` strings, safe to persist in settings.

use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, HostTrait};
use serde::Serialize;

/// Which way audio flows through a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Capture: a microphone, a line input, a monitor of an output.
    Input,
    /// Playback: speakers, headphones, a virtual sink.
    Output,
}

/// One device as the user sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// Stable id (`host:device`), what settings store and [`crate::meter::InputMeter`] opens.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Input or output.
    pub direction: Direction,
    /// Whether this is the system's default device for its direction.
    pub is_default: bool,
    /// Channels of the device's default configuration.
    pub channels: u16,
    /// Sample rate of the device's default configuration, in Hz.
    pub sample_rate: u32,
}

/// Every input and output device of the audio host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeviceList {
    /// The audio host the devices belong to (`PulseAudio`, `ALSA`, `CoreAudio`, `WASAPI`, ...).
    pub host: String,
    /// Capture devices, the default first.
    pub inputs: Vec<DeviceInfo>,
    /// Playback devices, the default first.
    pub outputs: Vec<DeviceInfo>,
}

impl DeviceList {
    /// The input whose id is `id`, or with `None` the one flagged as the default.
    pub fn input(&self, id: Option<&str>) -> Option<&DeviceInfo> {
        self.inputs.iter().find(|d| match id {
            Some(id) => d.id == id,
            None => d.is_default,
        })
    }
}

/// Why a device operation failed; each variant says what the user can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The audio system itself is not reachable.
    #[error("the audio system ({host}) is not available: {reason}. {HOW_TO_FIX}")]
    HostUnavailable {
        /// The host that failed.
        host: String,
        /// What the host said.
        reason: String,
    },
    /// The device id names no present device.
    #[error(
        "the audio device `{id}` is not present; it may have been unplugged. Pick another device."
    )]
    NotFound {
        /// The id that was asked for.
        id: String,
    },
    /// No input device exists at all.
    #[error("there is no audio input device. {HOW_TO_FIX}")]
    NoInputDevice,
    /// The device refused the configuration.
    #[error("the audio device `{id}` refused the stream configuration: {reason}")]
    Unsupported {
        /// The device.
        id: String,
        /// What the backend said.
        reason: String,
    },
    /// The device is in use by another program; retrying may help.
    #[error(
        "the audio device `{id}` is busy (another program may hold it exclusively); close that program or try again"
    )]
    Busy {
        /// The device.
        id: String,
    },
    /// The OS refused access.
    #[error(
        "access to the audio device `{id}` was denied: allow microphone access for Onmic Studio in the system settings"
    )]
    PermissionDenied {
        /// The device.
        id: String,
    },
    /// Anything else the backend reported.
    #[error("audio backend error on `{id}`: {reason}")]
    Backend {
        /// The device, or the host when no device is involved.
        id: String,
        /// What the backend said.
        reason: String,
    },
}

const HOW_TO_FIX: &str = "Connect a microphone or sound card; on Linux make sure PulseAudio or \
PipeWire is running (`pactl info` should answer), then press Refresh.";

impl DeviceError {
    /// Whether trying the same thing again later may succeed without the user changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Busy { .. } | Self::HostUnavailable { .. })
    }

    /// Maps a cpal error about `id` to the variant the user can act on.
    pub(crate) fn from_cpal(id: &str, err: &cpal::Error) -> Self {
        use cpal::ErrorKind as K;
        let id = id.to_owned();
        match err.kind() {
            K::DeviceNotAvailable => Self::NotFound { id },
            K::DeviceBusy => Self::Busy { id },
            K::PermissionDenied => Self::PermissionDenied { id },
            K::UnsupportedConfig | K::UnsupportedOperation | K::InvalidInput => Self::Unsupported {
                id,
                reason: err.to_string(),
            },
            K::HostUnavailable => Self::HostUnavailable {
                host: id,
                reason: err.to_string(),
            },
            _ => Self::Backend {
                id,
                reason: err.to_string(),
            },
        }
    }
}

/// The platform's audio host, made once and shared: on Linux each `cpal::Host` is a connection
/// to the sound server, and the device checks run every second (the meter's and the live
/// session's), so a new host per call was a connect, handshake and disconnect every second (and
/// the `pulseaudio` crate logs each orderly disconnect as an error). A host whose server went
/// away is replaced by [`host_after_failure`].
pub(crate) fn host() -> Arc<cpal::Host> {
    let mut shared = HOST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    shared
        .get_or_insert_with(|| Arc::new(cpal::default_host()))
        .clone()
}

static HOST: Mutex<Option<Arc<cpal::Host>>> = Mutex::new(None);

/// After a failed look-up: if `host` can no longer list devices (its sound server restarted or
/// went away), a fresh host replaces it and is returned; otherwise `None` (the failure was real).
fn host_after_failure(host: &Arc<cpal::Host>) -> Option<Arc<cpal::Host>> {
    if host.devices().is_ok() {
        return None;
    }
    let mut shared = HOST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if shared.as_ref().is_some_and(|h| Arc::ptr_eq(h, host)) {
        *shared = None;
    }
    drop(shared);
    Some(self::host())
}

/// Lists every input and output device; an empty list is not an error.
pub fn list_devices() -> Result<DeviceList, DeviceError> {
    let host = host();
    let host = match host.devices() {
        Ok(_) => host,
        Err(_) => host_after_failure(&host).unwrap_or(host),
    };
    let host_name = host.id().name().to_owned();
    let default_in = host.default_input_device().and_then(|d| d.id().ok());
    let default_out = host.default_output_device().and_then(|d| d.id().ok());
    let devices = host.devices().map_err(|e| DeviceError::HostUnavailable {
        host: host_name.clone(),
        reason: e.to_string(),
    })?;
    let mut list = DeviceList {
        host: host_name,
        ..DeviceList::default()
    };
    for device in devices {
        // A device that vanishes between listing and describing is simply not listed.
        let Ok(id) = device.id() else { continue };
        let name = device
            .description()
            .map(|d| d.name().to_owned())
            .unwrap_or_else(|_| id.to_string());
        if let Ok(config) = device.default_input_config() {
            list.inputs.push(DeviceInfo {
                id: id.to_string(),
                name: name.clone(),
                direction: Direction::Input,
                is_default: default_in.as_ref() == Some(&id),
                channels: config.channels(),
                sample_rate: config.sample_rate(),
            });
        }
        if let Ok(config) = device.default_output_config() {
            list.outputs.push(DeviceInfo {
                id: id.to_string(),
                name,
                direction: Direction::Output,
                is_default: default_out.as_ref() == Some(&id),
                channels: config.channels(),
                sample_rate: config.sample_rate(),
            });
        }
    }
    // Default first, then by name: what a person scanning the list expects.
    for group in [&mut list.inputs, &mut list.outputs] {
        group.sort_by(|a, b| {
            b.is_default
                .cmp(&a.is_default)
                .then_with(|| a.name.cmp(&b.name))
        });
    }
    Ok(list)
}

/// The input `id` (the default input when `None`) as opening it would find it — the same
/// look-up as [`crate::InputMeter::open`] and the live capture — without opening a stream.
pub fn describe_input(id: Option<&str>) -> Result<DeviceInfo, DeviceError> {
    let (device, id) = find_input(id)?;
    let config = device
        .default_input_config()
        .map_err(|e| DeviceError::from_cpal(&id, &e))?;
    Ok(input_info(&device, id, &config))
}

/// What an input found under `id` is, at its default format `config`.
pub(crate) fn input_info(
    device: &cpal::Device,
    id: String,
    config: &cpal::SupportedStreamConfig,
) -> DeviceInfo {
    let name = device
        .description()
        .map(|d| d.name().to_owned())
        .unwrap_or_else(|_| id.clone());
    DeviceInfo {
        id,
        name,
        direction: Direction::Input,
        is_default: false,
        channels: config.channels(),
        sample_rate: config.sample_rate(),
    }
}

/// Finds a device by id, or the default input device when `id` is `None`.
pub(crate) fn find_input(id: Option<&str>) -> Result<(cpal::Device, String), DeviceError> {
    let host = host();
    find_input_on(&host, id).or_else(|e| match host_after_failure(&host) {
        Some(fresh) => find_input_on(&fresh, id),
        None => Err(e),
    })
}

fn find_input_on(
    host: &cpal::Host,
    id: Option<&str>,
) -> Result<(cpal::Device, String), DeviceError> {
    let device = match id {
        None => {
            // Some hosts name a default input even when nothing can capture (ALSA with no
            // devices): what the device list shows decides.
            let any_input = host
                .devices()
                .is_ok_and(|mut all| all.any(|d| d.default_input_config().is_ok()));
            if !any_input {
                return Err(DeviceError::NoInputDevice);
            }
            host.default_input_device()
                .ok_or(DeviceError::NoInputDevice)?
        }
        Some(id) => by_id(host, id)?,
    };
    Ok(with_id(device, id))
}

/// Finds an output device by id, or the default output device when `id` is `None`.
pub(crate) fn find_output(id: Option<&str>) -> Result<(cpal::Device, String), DeviceError> {
    let host = host();
    // PulseAudio: every output gets a connection of its own. cpal creates its playback streams
    // with sync id 0, so the server puts all of one connection's streams in one sync group and
    // refuses ("Invalid argument") a second stream on another sink while the first plays: the
    // cue on the DJ's headphones beside the main output, say. A device found on a fresh host
    // keeps that host's connection for as long as its stream lives.
    if host.id().name() == "PulseAudio"
        && let Ok(own) = cpal::host_from_id(host.id())
        && let Ok(found) = find_output_on(&own, id)
    {
        return Ok(found);
    }
    find_output_on(&host, id).or_else(|e| match host_after_failure(&host) {
        Some(fresh) => find_output_on(&fresh, id),
        None => Err(e),
    })
}

fn find_output_on(
    host: &cpal::Host,
    id: Option<&str>,
) -> Result<(cpal::Device, String), DeviceError> {
    let device = match id {
        None => host
            .default_output_device()
            .ok_or_else(|| DeviceError::NotFound {
                id: "default output".to_owned(),
            })?,
        Some(id) => by_id(host, id)?,
    };
    Ok(with_id(device, id))
}

/// The present device whose cpal id string is `id`.
fn by_id(host: &cpal::Host, id: &str) -> Result<cpal::Device, DeviceError> {
    let not_found = || DeviceError::NotFound { id: id.to_owned() };
    let parsed: cpal::DeviceId = id.parse().map_err(|_| not_found())?;
    host.device_by_id(&parsed).ok_or_else(not_found)
}

/// Pairs a device with its id string (the one asked for, or "default", if the host has none).
fn with_id(device: cpal::Device, asked: Option<&str>) -> (cpal::Device, String) {
    let id = device
        .id()
        .map(|d| d.to_string())
        .unwrap_or_else(|_| asked.unwrap_or("default").to_owned());
    (device, id)
}
