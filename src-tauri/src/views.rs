//! What the UI sees of engine types: plain data with TypeScript bindings.

use onmic_audio::{ChannelLevel, DeviceInfo, DeviceList, Direction};
use serde::Serialize;
use specta::Type;

/// A device in the UI's lists.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    /// Stable id to select and persist.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Whether it captures.
    pub is_input: bool,
    /// The system default for its direction.
    pub is_default: bool,
    /// Channels of its default format.
    pub channels: u16,
    /// Sample rate of its default format, Hz.
    pub sample_rate: u32,
}

impl From<&DeviceInfo> for DeviceView {
    fn from(d: &DeviceInfo) -> Self {
        Self {
            id: d.id.clone(),
            name: d.name.clone(),
            is_input: d.direction == Direction::Input,
            is_default: d.is_default,
            channels: d.channels,
            sample_rate: d.sample_rate,
        }
    }
}

/// Both device lists.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct DeviceListView {
    /// The audio system in use.
    pub host: String,
    /// Capture devices, default first.
    pub inputs: Vec<DeviceView>,
    /// Playback devices, default first.
    pub outputs: Vec<DeviceView>,
}

impl From<&DeviceList> for DeviceListView {
    fn from(l: &DeviceList) -> Self {
        Self {
            host: l.host.clone(),
            inputs: l.inputs.iter().map(DeviceView::from).collect(),
            outputs: l.outputs.iter().map(DeviceView::from).collect(),
        }
    }
}

/// One channel's level.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct LevelView {
    /// Sample peak, dBFS.
    pub peak_dbfs: f32,
    /// RMS, dBFS (a full-scale sine reads −3 dB).
    pub rms_dbfs: f32,
}

impl From<&ChannelLevel> for LevelView {
    fn from(c: &ChannelLevel) -> Self {
        Self {
            peak_dbfs: c.peak_dbfs,
            rms_dbfs: c.rms_dbfs,
        }
    }
}
