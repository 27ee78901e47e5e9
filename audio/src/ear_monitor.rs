//! The ear monitor: the host hears their own voice (raw, with NS, or with all effects — like the
//! RTC SDKs' ear-monitoring filter types) at 0–150 % volume, added to what the output device
//! plays; the music is already in that output (the playout mix), so it is not added twice. It runs inside the DSP block that captured the voice, so the engine adds
//! no buffering of its own beyond the block (see [`EarMonitor::added_latency`]).

use crate::block::Block;
use crate::units::{BLOCK_FRAMES, Frames};

/// Which version of the voice the host hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarSource {
    /// The mic as captured (channel-mapped), lowest latency.
    #[default]
    Raw,
    /// After echo cancellation and noise suppression.
    WithNs,
    /// Fully processed voice (AGC and effects), before the music mix.
    WithEffects,
}

/// Ear-monitor settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarMonitorConfig {
    /// On or off.
    pub enabled: bool,
    /// Which voice.
    pub source: EarSource,
    /// Volume 0..=1.5.
    pub volume: f32,
}

impl Default for EarMonitorConfig {
    fn default() -> Self {
        EarMonitorConfig {
            enabled: false,
            source: EarSource::Raw,
            volume: 1.0,
        }
    }
}

/// The ear-monitor mixer.
#[derive(Debug, Clone, Default)]
pub struct EarMonitor {
    config: EarMonitorConfig,
    applied: f32,
}

impl EarMonitor {
    /// A monitor with `config`.
    pub fn new(config: EarMonitorConfig) -> EarMonitor {
        EarMonitor {
            config,
            applied: 0.0,
        }
    }

    /// Changes settings live (volume changes are ramped).
    pub fn set_config(&mut self, config: EarMonitorConfig) {
        self.config = EarMonitorConfig {
            volume: config.volume.clamp(0.0, 1.5),
            ..config
        };
    }

    /// The settings.
    pub fn config(&self) -> EarMonitorConfig {
        self.config
    }

    /// Latency the engine adds to the monitored voice: the chosen tap's processing delay (the
    /// stages before it), on top of the device's own buffers. `chain_latency` is the delay of
    /// the stages before the NS/effects taps.
    pub fn added_latency(&self, chain_latency: Frames) -> Frames {
        match self.config.source {
            EarSource::Raw => Frames::ZERO,
            EarSource::WithNs | EarSource::WithEffects => chain_latency,
        }
    }

    /// Adds the monitored voice (`raw`, `ns` or `effects` per the source) to `out`.
    pub fn mix(&mut self, out: &mut Block, raw: &Block, ns: &Block, effects: &Block) {
        let target = if self.config.enabled {
            self.config.volume
        } else {
            0.0
        };
        let start = self.applied;
        self.applied = target;
        if start == 0.0 && target == 0.0 {
            return;
        }
        let voice = match self.config.source {
            EarSource::Raw => raw,
            EarSource::WithNs => ns,
            EarSource::WithEffects => effects,
        };
        out.set_channels(2);
        let step = (target - start) / BLOCK_FRAMES as f32;
        for ch in 0..2 {
            let v = voice.channel(if voice.channels() == 2 { ch } else { 0 });
            let dst = out.channel_mut(ch);
            for i in 0..BLOCK_FRAMES {
                dst[i] += v[i] * (start + step * (i + 1) as f32);
            }
        }
    }
}
