//! The host's audio console settings (mode, processing, gain, mutes, output, ear monitor) and
//! how they become engine controls. Pure: [`AudioSettings::controls_since`] says which
//! [`Control`]s turn one set of settings into another, so a change applies live, without a
//! reconnect, and only what changed is sent.

use std::collections::BTreeMap;

use onmic_audio::chain::{ChainConfig, Mode, Toggles};
use onmic_audio::ear_monitor::{EarMonitorConfig, EarSource};
use onmic_audio::engine::Control;
use onmic_audio::streams::ChannelPick;
use serde::{Deserialize, Serialize};
use specta::Type;

/// The two product modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum AudioMode {
    /// Stereo sound-card input, processing off, Opus 128 kbps stereo.
    #[default]
    Soundcard,
    /// Mono voice, processing on, the Opus voice profile.
    Voice,
}

/// What the ear monitor plays back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum EarSourceSetting {
    /// The input before any processing (no added latency).
    #[default]
    Raw,
    /// After echo cancellation and noise suppression.
    WithNs,
    /// The voice as published (with effects).
    WithEffects,
}

/// The ear monitor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct EarSettings {
    /// On or off.
    pub enabled: bool,
    /// Volume in percent, 0–150.
    pub volume: f32,
    /// What is heard.
    pub source: EarSourceSetting,
}

impl Default for EarSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            volume: 100.0,
            source: EarSourceSetting::Raw,
        }
    }
}

/// Everything on the audio console, persisted with the settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct AudioSettings {
    /// Sound-card or voice.
    pub mode: AudioMode,
    /// Echo cancellation.
    pub aec: bool,
    /// Classic noise suppression.
    pub ns: bool,
    /// AI noise suppression.
    pub ai_ns: bool,
    /// AI-NS strength in percent, 0–100.
    pub ai_ns_strength: f32,
    /// Automatic gain control.
    pub agc: bool,
    /// Input gain in dB, −24 to +12.
    pub input_gain_db: f32,
    /// Which two channels of a multi-channel input are used, 1-based `[left, right]` (voice
    /// mode mixes the two); `None`: the input's first two (a stereo input as it is).
    pub input_channels: Option<[u16; 2]>,
    /// The output device (`None`: the system default).
    pub output_device: Option<String>,
    /// Mute the voice, keep the music.
    pub voice_muted: bool,
    /// Mute everything sent.
    pub send_muted: bool,
    /// The ear monitor.
    pub ear: EarSettings,
    /// Local playback volume per speaker (uid → percent, 0–150); absent means 100.
    pub speaker_volumes: BTreeMap<String, f32>,
}

impl Default for AudioSettings {
    fn default() -> Self {
        Self::for_mode(AudioMode::Soundcard)
    }
}

impl AudioSettings {
    /// The defaults of `mode` (its processing toggles), everything else neutral.
    pub fn for_mode(mode: AudioMode) -> Self {
        let t = engine_mode(mode).default_toggles();
        Self {
            mode,
            aec: t.aec,
            ns: t.ns,
            ai_ns: t.ai_ns,
            ai_ns_strength: 100.0,
            agc: t.agc,
            input_gain_db: 0.0,
            input_channels: None,
            output_device: None,
            voice_muted: false,
            send_muted: false,
            ear: EarSettings::default(),
            speaker_volumes: BTreeMap::new(),
        }
    }

    /// Brings every number into its range (NaN becomes the default): settings come from the UI
    /// and from a file on disk.
    pub fn clamped(mut self) -> Self {
        let fix = |v: f32, lo: f32, hi: f32, default: f32| {
            if v.is_finite() {
                v.clamp(lo, hi)
            } else {
                default
            }
        };
        self.ai_ns_strength = fix(self.ai_ns_strength, 0.0, 100.0, 100.0);
        self.input_gain_db = fix(self.input_gain_db, -24.0, 12.0, 0.0);
        self.ear.volume = fix(self.ear.volume, 0.0, 150.0, 100.0);
        for v in self.speaker_volumes.values_mut() {
            *v = fix(*v, 0.0, 150.0, 100.0);
        }
        if self.input_pick().is_none() {
            self.input_channels = None;
        }
        self
    }

    /// The input channels as the engine takes them (0-based), `None` for the default or a pair
    /// out of range.
    pub fn input_pick(&self) -> Option<ChannelPick> {
        let [l, r] = self.input_channels?;
        ChannelPick::new(l.checked_sub(1)?, r.checked_sub(1)?).ok()
    }

    /// Which processing stages are on.
    pub fn toggles(&self) -> Toggles {
        Toggles {
            aec: self.aec,
            ns: self.ns,
            ai_ns: self.ai_ns,
            agc: self.agc,
        }
    }

    /// The chain these settings ask for.
    pub fn chain_config(&self) -> ChainConfig {
        let mut c = ChainConfig::for_mode(engine_mode(self.mode));
        c.toggles = self.toggles();
        c.ai_ns_strength = self.ai_ns_strength / 100.0;
        c
    }

    /// The ear monitor as the engine takes it.
    pub fn ear_config(&self) -> EarMonitorConfig {
        EarMonitorConfig {
            enabled: self.ear.enabled,
            source: match self.ear.source {
                EarSourceSetting::Raw => EarSource::Raw,
                EarSourceSetting::WithNs => EarSource::WithNs,
                EarSourceSetting::WithEffects => EarSource::WithEffects,
            },
            volume: self.ear.volume / 100.0,
        }
    }

    /// The input gain as a linear factor.
    pub fn input_gain(&self) -> f32 {
        10f32.powf(self.input_gain_db / 20.0)
    }

    /// The controls that take an engine running `prev` to `self`, in order. A mode change is
    /// [`EngineChange::Mode`] (a new chain and encoder, built off the DSP thread by the caller);
    /// a new output device is [`EngineChange::Output`].
    pub fn changes_since(&self, prev: &AudioSettings) -> Vec<EngineChange> {
        let mut out = Vec::new();
        if self.mode != prev.mode {
            out.push(EngineChange::Mode(self.chain_config()));
        } else {
            if self.toggles() != prev.toggles() {
                out.push(EngineChange::Control(Control::SetToggles(self.toggles())));
            }
            if self.ai_ns_strength != prev.ai_ns_strength {
                out.push(EngineChange::Control(Control::SetAiNsStrength(
                    self.ai_ns_strength / 100.0,
                )));
            }
        }
        if self.input_gain_db != prev.input_gain_db {
            out.push(EngineChange::Control(Control::SetInputGain(
                self.input_gain(),
            )));
        }
        if self.voice_muted != prev.voice_muted {
            out.push(EngineChange::Control(Control::SetVoiceMuted(
                self.voice_muted,
            )));
        }
        if self.send_muted != prev.send_muted {
            out.push(EngineChange::Control(Control::SetSendMuted(
                self.send_muted,
            )));
        }
        if self.ear != prev.ear {
            out.push(EngineChange::Control(Control::SetEarMonitor(
                self.ear_config(),
            )));
        }
        if self.output_device != prev.output_device {
            out.push(EngineChange::Output(self.output_device.clone()));
        }
        if self.input_channels != prev.input_channels {
            out.push(EngineChange::InputChannels(self.input_pick()));
        }
        out
    }

    /// Everything the engine needs to start from its defaults and reach `self`.
    pub fn initial_changes(&self) -> Vec<EngineChange> {
        // The engine starts in sound-card mode with default toggles, unity gain, nothing muted.
        // The devices open on the chosen output and input channels.
        let base = AudioSettings {
            output_device: self.output_device.clone(),
            input_channels: self.input_channels,
            ..AudioSettings::for_mode(AudioMode::Soundcard)
        };
        self.changes_since(&base)
    }
}

/// One step of applying settings to a running engine.
#[derive(Debug)]
pub enum EngineChange {
    /// A control message.
    Control(Control),
    /// Switch mode: a new chain of this configuration and the mode's encoder.
    Mode(ChainConfig),
    /// Play on this output device (`None`: the default).
    Output(Option<String>),
    /// Capture these channels of the input (`None`: its first two).
    InputChannels(Option<ChannelPick>),
}

fn engine_mode(mode: AudioMode) -> Mode {
    match mode {
        AudioMode::Soundcard => Mode::Soundcard,
        AudioMode::Voice => Mode::Voice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(changes: &[EngineChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                EngineChange::Control(c) => format!("{c:?}")
                    .split('(')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                EngineChange::Mode(c) => format!("Mode({:?})", c.mode),
                EngineChange::Output(o) => format!("Output({o:?})"),
                EngineChange::InputChannels(p) => format!("InputChannels({p:?})"),
            })
            .collect()
    }

    #[test]
    fn only_what_changed_is_sent() {
        let a = AudioSettings::default();
        assert!(a.changes_since(&a).is_empty());
        let mut b = a.clone();
        b.ns = true;
        b.input_gain_db = -6.0;
        assert_eq!(kinds(&b.changes_since(&a)), ["SetToggles", "SetInputGain"]);
        let mut c = b.clone();
        c.send_muted = true;
        c.ear.enabled = true;
        c.output_device = Some("speakers".into());
        assert_eq!(
            kinds(&c.changes_since(&b)),
            [
                "SetSendMuted",
                "SetEarMonitor",
                "Output(Some(\"speakers\"))"
            ]
        );
    }

    #[test]
    fn input_channels_are_one_based_checked_and_switched_live() {
        let a = AudioSettings::default();
        assert_eq!(a.input_pick(), None);
        let b = AudioSettings {
            input_channels: Some([3, 4]),
            ..a.clone()
        };
        assert_eq!(b.input_pick(), Some(ChannelPick::new(2, 3).unwrap()));
        match b.changes_since(&a).as_slice() {
            [EngineChange::InputChannels(Some(p))] => assert_eq!((p.left, p.right), (2, 3)),
            other => panic!("{other:?}"),
        }
        match a.changes_since(&b).as_slice() {
            [EngineChange::InputChannels(None)] => {}
            other => panic!("{other:?}"),
        }
        // The devices open on the saved pair: nothing to switch after the start.
        assert!(b.initial_changes().is_empty());
        // Channel 0 or beyond 64 (a hand-edited file) is the default.
        for bad in [[0, 1], [1, 65]] {
            let c = AudioSettings {
                input_channels: Some(bad),
                ..a.clone()
            }
            .clamped();
            assert_eq!(c.input_channels, None, "{bad:?}");
        }
    }

    #[test]
    fn a_mode_change_carries_the_chosen_toggles() {
        let a = AudioSettings::default();
        let mut b = AudioSettings::for_mode(AudioMode::Voice);
        b.agc = false;
        let changes = b.changes_since(&a);
        match changes.as_slice() {
            [EngineChange::Mode(cfg)] => {
                assert_eq!(cfg.mode, Mode::Voice);
                assert!(cfg.toggles.aec && cfg.toggles.ns && !cfg.toggles.agc);
            }
            other => panic!("{:?}", kinds(other)),
        }
    }

    #[test]
    fn out_of_range_values_are_clamped_and_nan_is_the_default() {
        let mut s = AudioSettings {
            input_gain_db: 40.0,
            ai_ns_strength: f32::NAN,
            ..AudioSettings::default()
        };
        s.ear.volume = -3.0;
        s.speaker_volumes.insert("a".into(), f32::INFINITY);
        let s = s.clamped();
        assert_eq!(s.input_gain_db, 12.0);
        assert_eq!(s.ai_ns_strength, 100.0);
        assert_eq!(s.ear.volume, 0.0);
        assert_eq!(s.speaker_volumes["a"], 100.0);
        assert!((AudioSettings::default().input_gain() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn the_initial_changes_reach_the_saved_settings_from_the_engine_defaults() {
        assert!(AudioSettings::default().initial_changes().is_empty());
        let mut s = AudioSettings::for_mode(AudioMode::Voice);
        s.voice_muted = true;
        s.output_device = Some("x".into());
        // The output device is opened at start, not switched.
        assert_eq!(
            kinds(&s.initial_changes()),
            ["Mode(Voice)", "SetVoiceMuted"]
        );
    }
}
