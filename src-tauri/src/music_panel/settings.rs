//! The music panel's settings (`settings.music`): what the panel remembers between runs.

use onmic_audio::music::{Ducking, MusicCommand, PlayOptions};
use serde::{Deserialize, Serialize};
use specta::Type;

use super::PADS;

/// Ducking under the host's voice.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct DuckingPanel {
    /// On or off.
    pub enabled: bool,
    /// How far the music goes down, dB (0–60).
    pub amount_db: f32,
    /// Time to duck once the voice starts, ms (1–2000).
    pub attack_ms: f32,
    /// Time to come back once the voice stops, ms (1–5000).
    pub release_ms: f32,
    /// Voice level above which the host counts as speaking, dBFS (−80–0).
    pub threshold_dbfs: f32,
}

impl Default for DuckingPanel {
    fn default() -> Self {
        let d = Ducking::default();
        Self {
            enabled: d.enabled,
            amount_db: d.amount_db,
            attack_ms: d.attack_ms,
            release_ms: d.release_ms,
            threshold_dbfs: d.threshold_dbfs,
        }
    }
}

/// One sound pad.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct PadSlot {
    /// Label shown on the pad (the file's name unless the host renames it).
    pub name: String,
    /// The clip's file.
    pub path: Option<String>,
    /// Published (heard by the room) or only in the host's output.
    pub publish: bool,
}

/// The PCM socket source.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct PcmSettings {
    /// Listen for PCM while live.
    pub enabled: bool,
    /// TCP port on 127.0.0.1 (1024–65535).
    pub port: u16,
    /// The host hears the injected PCM too.
    pub local_playback: bool,
}

impl Default for PcmSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            port: 7611,
            local_playback: true,
        }
    }
}

/// Everything the music panel remembers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct MusicSettings {
    /// Music volume in the published stream, percent (0–150).
    pub publish_volume: f32,
    /// Music volume in the host's output, percent (0–150).
    pub playout_volume: f32,
    /// Only the host hears the music (not published).
    pub loopback: bool,
    /// While music plays, it replaces the microphone in the published stream.
    pub replace: bool,
    /// Times each track plays: 1, 2, …; −1 = forever (applies to the next track opened).
    pub cycle: i32,
    /// Key shift, semitones (−12…+12), tempo kept.
    pub key_shift: i32,
    /// Ducking under the host's voice.
    pub ducking: DuckingPanel,
    /// Go on to the next playlist entry when a track ends.
    pub auto_advance: bool,
    /// Crossfade between playlist entries, seconds (0 = none, up to 12).
    pub crossfade_s: f32,
    /// The playlist: file paths or http(s) URLs.
    pub playlist: Vec<String>,
    /// The pads (always [`PADS`]).
    pub pads: Vec<PadSlot>,
    /// The PCM socket source.
    pub pcm: PcmSettings,
    /// The cue output (pre-listening on a second device).
    pub cue: CueSettings,
    /// A capture device as a music source.
    pub capture: CaptureSettings,
}

impl Default for MusicSettings {
    fn default() -> Self {
        Self {
            publish_volume: 100.0,
            playout_volume: 100.0,
            loopback: false,
            replace: false,
            cycle: 1,
            key_shift: 0,
            ducking: DuckingPanel::default(),
            auto_advance: true,
            crossfade_s: 3.0,
            playlist: Vec::new(),
            pads: vec![PadSlot::default(); PADS],
            pcm: PcmSettings::default(),
            cue: CueSettings::default(),
            capture: CaptureSettings::default(),
        }
    }
}

fn clampf(v: f32, lo: f32, hi: f32, default: f32) -> f32 {
    if v.is_finite() {
        v.clamp(lo, hi)
    } else {
        default
    }
}

impl MusicSettings {
    /// Numbers within their ranges, [`PADS`] pads, a playlist of at most 500 entries.
    pub fn clamped(mut self) -> Self {
        let d = MusicSettings::default();
        self.publish_volume = clampf(self.publish_volume, 0.0, 150.0, d.publish_volume);
        self.playout_volume = clampf(self.playout_volume, 0.0, 150.0, d.playout_volume);
        if self.cycle == 0 || self.cycle < -1 {
            self.cycle = 1;
        }
        self.cycle = self.cycle.min(999);
        self.key_shift = self.key_shift.clamp(-12, 12);
        let k = &mut self.ducking;
        k.amount_db = clampf(k.amount_db, 0.0, 60.0, d.ducking.amount_db);
        k.attack_ms = clampf(k.attack_ms, 1.0, 2000.0, d.ducking.attack_ms);
        k.release_ms = clampf(k.release_ms, 1.0, 5000.0, d.ducking.release_ms);
        k.threshold_dbfs = clampf(k.threshold_dbfs, -80.0, 0.0, d.ducking.threshold_dbfs);
        self.crossfade_s = clampf(self.crossfade_s, 0.0, 12.0, d.crossfade_s);
        self.playlist.retain(|p| !p.trim().is_empty());
        self.playlist.truncate(500);
        self.pads.resize(PADS, PadSlot::default());
        if self.pcm.port < 1024 {
            self.pcm.port = d.pcm.port;
        }
        for id in [&mut self.cue.device, &mut self.capture.device] {
            if id
                .as_ref()
                .is_some_and(|d| d.trim().is_empty() || d.len() > 512)
            {
                *id = None;
            }
        }
        self
    }

    pub(crate) fn ducking(&self) -> Ducking {
        Ducking {
            enabled: self.ducking.enabled,
            amount_db: self.ducking.amount_db,
            attack_ms: self.ducking.attack_ms,
            release_ms: self.ducking.release_ms,
            threshold_dbfs: self.ducking.threshold_dbfs,
        }
    }

    pub(crate) fn play_options(&self, fade_in_ms: u32) -> PlayOptions {
        PlayOptions {
            loopback: self.loopback,
            replace: self.replace,
            cycle: self.cycle,
            publish_volume: self.publish_volume / 100.0,
            playout_volume: self.playout_volume / 100.0,
            start_ms: 0,
            ducking: self.ducking(),
            key_shift: self.key_shift,
            fade_in_ms,
        }
    }

    /// The commands that bring a playing track from `old` to these settings.
    pub(crate) fn commands_since(&self, old: &MusicSettings) -> Vec<MusicCommand> {
        let mut c = Vec::new();
        if self.publish_volume != old.publish_volume {
            c.push(MusicCommand::SetPublishVolume {
                volume: self.publish_volume / 100.0,
            });
        }
        if self.playout_volume != old.playout_volume {
            c.push(MusicCommand::SetPlayoutVolume {
                volume: self.playout_volume / 100.0,
            });
        }
        if self.loopback != old.loopback {
            c.push(MusicCommand::SetLoopback {
                loopback: self.loopback,
            });
        }
        if self.replace != old.replace {
            c.push(MusicCommand::SetReplace {
                replace: self.replace,
            });
        }
        if self.ducking != old.ducking {
            c.push(MusicCommand::SetDucking {
                ducking: self.ducking(),
            });
        }
        if self.key_shift != old.key_shift {
            c.push(MusicCommand::SetKeyShift {
                semitones: self.key_shift,
            });
        }
        c
    }
}

/// The cue output: the second device a track is pre-listened on (the DJ's headphones).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct CueSettings {
    /// Output device id (`None`: no cue; the cue never falls back to the main output).
    pub device: Option<String>,
}

/// A capture device played as music (a line-in, or another app's output through the sound
/// server's monitor source).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct CaptureSettings {
    /// Play it while live.
    pub enabled: bool,
    /// Input device id.
    pub device: Option<String>,
    /// The host hears it too.
    pub local_playback: bool,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            device: None,
            local_playback: true,
        }
    }
}
