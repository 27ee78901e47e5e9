//! Voice effects: room-acoustics presets, voice changer, beautifiers, pitch, a 10-band EQ,
//! noise gate, compressor, de-esser and a custom reverb (`docs/effects.md` lists every preset's
//! parameters; `onmic-audio effects` prints them).
//!
//! - [`EffectSettings`] is what a host picks: a list of [`Effect`]s in chain order, serialisable
//!   (serde) so a UI can save, name and restore it.
//! - [`EffectRack`] is that list built into DSP stages. Building allocates (delay lines, the
//!   pitch shifter, the EQ design) and happens off the DSP thread; processing never allocates.
//! - [`EffectsSlot`] sits in the chain after noise suppression and AGC, before the music mix and
//!   the limiter. A new rack (a preset change or any parameter move) is sent to the DSP thread
//!   ([`crate::engine::Control::SetEffects`]), warmed up in parallel for as long as its latency,
//!   then crossfaded in over 20 ms; the old rack goes back to be dropped elsewhere
//!   ([`crate::engine::Garbage::Effects`]). Nothing clicks (`tests/effects.rs` measures it).
//! - A mono voice becomes stereo where the preset is stereo (reverbs, virtual stereo, 3D voice).

pub mod dynamics;
pub mod eq;
pub mod filters;
pub mod pitch;
pub mod reverb;
pub mod spatial;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::{BLOCK_FRAMES, Frames};
use dynamics::{Compressor, CompressorSettings, DeEsser, DeEsserSettings, GateSettings, NoiseGate};
use eq::{EqSettings, GraphicEq};
use filters::{Biquad, Coefs};
use pitch::PitchShift;
use reverb::{Reverb, ReverbSettings};
use spatial::{Rotate3d, Rotate3dSettings, VirtualStereo};

/// Room-acoustics presets (Agora's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomPreset {
    /// A karaoke room: medium hall, bright.
    Ktv,
    /// A concert hall: long decay, late pre-delay.
    VocalConcert,
    /// A recording studio: short, dark room.
    Studio,
    /// An old record: band-limited, slightly saturated, a small box.
    Phonograph,
    /// Mono voice widened to stereo (complementary combs) in a small room.
    VirtualStereo,
    /// A large, wide space.
    Spacious,
    /// A long airy tail, the voice set back.
    Ethereal,
    /// The voice circles the listener (period settable).
    #[serde(rename = "3d_voice")]
    Voice3d,
}

/// Voice-changer presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangerPreset {
    /// A middle-aged man.
    Uncle,
    /// An old man.
    OldMan,
    /// A boy.
    Boy,
    /// A young woman.
    Sister,
    /// A girl.
    Girl,
    /// "Pig king" (猪八戒): a fat, nasal comic voice.
    PigKing,
    /// Hulk: a huge, dark voice.
    Hulk,
}

/// Beautifier presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeautifierPreset {
    /// Magnetic: warm low end, close and compressed.
    Magnetic,
    /// Fresh: light low end, airy top.
    Fresh,
    /// Vital: forward presence, compressed.
    Vital,
}

/// One effect in a rack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Effect {
    /// A room-acoustics preset; `rotate` is used by 3D voice only.
    Room {
        /// Which preset.
        preset: RoomPreset,
        /// 3D voice's period and depth.
        #[serde(default)]
        rotate: Rotate3dSettings,
    },
    /// A voice-changer preset.
    VoiceChanger {
        /// Which preset.
        preset: ChangerPreset,
    },
    /// A beautifier preset.
    Beautifier {
        /// Which preset.
        preset: BeautifierPreset,
    },
    /// Pitch shift in semitones (±12), tempo kept; formants kept unless `formant_factor` ≠ 1.
    Pitch {
        /// The shift.
        semitones: f32,
        /// Formant factor (0.5–2; 1 keeps the formants).
        #[serde(default = "one")]
        formant_factor: f32,
    },
    /// The 10-band EQ.
    Eq(EqSettings),
    /// The noise gate.
    Gate(GateSettings),
    /// The compressor.
    Compressor(CompressorSettings),
    /// The de-esser.
    DeEsser(DeEsserSettings),
    /// The custom reverb.
    Reverb(ReverbSettings),
}

fn one() -> f32 {
    1.0
}

/// What a host picked: effects in chain order (empty = no effects, bit-transparent).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EffectSettings {
    /// The effects, first to last.
    pub effects: Vec<Effect>,
}

/// Most effects in one rack.
pub const MAX_EFFECTS: usize = 16;

/// Why an effect name or setting was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EffectError {
    /// No effect has this name.
    #[error("unknown effect {0:?}; `onmic-audio effects` lists them")]
    UnknownEffect(String),
    /// The effect has no parameter of this name.
    #[error("effect {effect}: unknown parameter {key:?} (it takes: {allowed})")]
    UnknownParameter {
        /// The effect.
        effect: String,
        /// The parameter given.
        key: String,
        /// The parameters it takes.
        allowed: &'static str,
    },
    /// A parameter is not `key=number`.
    #[error("effect {effect}: {detail}")]
    BadValue {
        /// The effect.
        effect: String,
        /// What is wrong.
        detail: String,
    },
    /// More than [`MAX_EFFECTS`] effects.
    #[error("at most {MAX_EFFECTS} effects in a chain, {0} given")]
    TooMany(usize),
}

/// Every preset and parametric effect name, in the order `onmic-audio effects` lists them.
pub const EFFECT_NAMES: [&str; 25] = [
    "ktv",
    "vocal_concert",
    "studio",
    "phonograph",
    "virtual_stereo",
    "spacious",
    "ethereal",
    "3d_voice",
    "uncle",
    "old_man",
    "boy",
    "sister",
    "girl",
    "pig_king",
    "hulk",
    "magnetic",
    "fresh",
    "vital",
    "pitch",
    "eq",
    "gate",
    "compressor",
    "deesser",
    "reverb",
    "none",
];

impl RoomPreset {
    /// All room presets.
    pub const ALL: [RoomPreset; 8] = [
        RoomPreset::Ktv,
        RoomPreset::VocalConcert,
        RoomPreset::Studio,
        RoomPreset::Phonograph,
        RoomPreset::VirtualStereo,
        RoomPreset::Spacious,
        RoomPreset::Ethereal,
        RoomPreset::Voice3d,
    ];

    /// The preset's name.
    pub fn name(self) -> &'static str {
        EFFECT_NAMES[self as usize]
    }

    /// The reverb the preset uses.
    pub fn reverb(self) -> ReverbSettings {
        let r = |room_size, damping, wet, dry, pre_delay_ms, width, low_cut_hz| ReverbSettings {
            room_size,
            damping,
            wet,
            dry,
            pre_delay_ms,
            width,
            low_cut_hz,
        };
        match self {
            RoomPreset::Ktv => r(0.55, 0.45, 0.30, 1.0, 15.0, 0.8, 150.0),
            RoomPreset::VocalConcert => r(0.70, 0.30, 0.35, 1.0, 30.0, 1.0, 120.0),
            RoomPreset::Studio => r(0.30, 0.60, 0.20, 1.0, 5.0, 0.6, 200.0),
            RoomPreset::Phonograph => r(0.10, 0.70, 0.15, 1.0, 0.0, 0.0, 300.0),
            RoomPreset::VirtualStereo => r(0.35, 0.50, 0.15, 1.0, 8.0, 1.0, 150.0),
            RoomPreset::Spacious => r(0.80, 0.35, 0.40, 1.0, 40.0, 1.0, 150.0),
            RoomPreset::Ethereal => r(0.92, 0.15, 0.55, 0.8, 80.0, 1.0, 300.0),
            RoomPreset::Voice3d => r(0.35, 0.50, 0.15, 1.0, 8.0, 1.0, 150.0),
        }
    }

    /// The preset's documented RT60 range in seconds (what `tests/effects.rs` checks on the
    /// impulse response the CLI makes of a click).
    pub fn rt60_range(self) -> (f32, f32) {
        self.reverb().rt60_range()
    }
}

impl ChangerPreset {
    /// All voice-changer presets.
    pub const ALL: [ChangerPreset; 7] = [
        ChangerPreset::Uncle,
        ChangerPreset::OldMan,
        ChangerPreset::Boy,
        ChangerPreset::Sister,
        ChangerPreset::Girl,
        ChangerPreset::PigKing,
        ChangerPreset::Hulk,
    ];

    /// The preset's name.
    pub fn name(self) -> &'static str {
        EFFECT_NAMES[8 + self as usize]
    }

    /// (semitones, formant factor, EQ band gains in dB).
    pub fn parameters(self) -> (f32, f32, [f32; 10]) {
        match self {
            ChangerPreset::Uncle => (-3.0, 0.92, [0., 2., 3., 1., 0., 0., -1., -2., -2., -3.]),
            ChangerPreset::OldMan => (-4.0, 0.88, [0., 0., 0., -2., 1., 3., 2., -2., -4., -6.]),
            ChangerPreset::Boy => (4.0, 1.12, [0., -3., -3., -1., 0., 1., 2., 2., 1., 0.]),
            ChangerPreset::Sister => (3.0, 1.10, [0., -2., -2., 0., 0., 0., 1., 2., 2., 1.]),
            ChangerPreset::Girl => (6.0, 1.20, [0., -4., -4., -2., 0., 0., 1., 2., 3., 2.]),
            ChangerPreset::PigKing => (2.0, 0.75, [0., 0., 2., 3., 4., 2., 0., -2., -4., -6.]),
            ChangerPreset::Hulk => (-7.0, 0.75, [3., 4., 3., 1., 0., -1., -2., -3., -4., -6.]),
        }
    }
}

impl BeautifierPreset {
    /// All beautifiers.
    pub const ALL: [BeautifierPreset; 3] = [
        BeautifierPreset::Magnetic,
        BeautifierPreset::Fresh,
        BeautifierPreset::Vital,
    ];

    /// The preset's name.
    pub fn name(self) -> &'static str {
        EFFECT_NAMES[15 + self as usize]
    }

    /// (EQ band gains in dB, compressor if any, reverb).
    pub fn parameters(self) -> ([f32; 10], Option<CompressorSettings>, ReverbSettings) {
        let comp = |ratio, threshold_db, output_gain_db| CompressorSettings {
            ratio,
            threshold_db,
            attack_ms: 6.0,
            release_ms: 80.0,
            output_gain_db,
        };
        let rev = |room_size, wet| ReverbSettings {
            room_size,
            damping: 0.6,
            wet,
            dry: 1.0,
            pre_delay_ms: 5.0,
            width: 0.5,
            low_cut_hz: 200.0,
        };
        match self {
            BeautifierPreset::Magnetic => (
                [0., 1., 3., 1., -1., -1., 0., 1., 0., 0.],
                Some(comp(2.0, -24.0, 2.0)),
                rev(0.25, 0.12),
            ),
            BeautifierPreset::Fresh => (
                [-6., -4., -2., 0., 0., 0., 1., 2., 3., 2.],
                None,
                rev(0.25, 0.10),
            ),
            BeautifierPreset::Vital => (
                [0., 0., 1., 0., -1., 0., 2., 3., 2., 1.],
                Some(comp(3.0, -20.0, 3.0)),
                rev(0.20, 0.08),
            ),
        }
    }
}

fn eq_of(bands_db: [f32; 10]) -> EqSettings {
    EqSettings {
        bands_db,
        preamp_db: 0.0,
    }
}

/// Parameter names of each parametric effect (for messages and the listing).
const ROOM3D_KEYS: &str = "period, depth";
const PITCH_KEYS: &str = "semitones, formant";
const EQ_KEYS: &str = "31, 62, 125, 250, 500, 1k, 2k, 4k, 8k, 16k, preamp";
const GATE_KEYS: &str = "close, open, attack, hold, release";
const COMP_KEYS: &str = "ratio, threshold, attack, release, gain";
const DEESS_KEYS: &str = "freq, threshold, ratio, max, attack, release";
const REVERB_KEYS: &str = "size, damping, wet, dry, predelay, width, lowcut";

impl Effect {
    /// Parses `NAME` or `NAME:key=value,key=value` (the CLI's `--effect`), e.g. `ktv`,
    /// `3d_voice:period=4`, `pitch:semitones=-3`, `eq:1k=3,8k=-2`, `reverb:size=0.6,wet=0.4`.
    pub fn parse(spec: &str) -> Result<Effect, EffectError> {
        let spec = spec.trim();
        let (name, params) = match spec.split_once(':') {
            Some((n, p)) => (n.trim(), p.trim()),
            None => (spec, ""),
        };
        let mut kv: Vec<(&str, f32)> = Vec::new();
        let parts: Vec<&str> = if params.is_empty() {
            Vec::new()
        } else {
            params.split(',').map(str::trim).collect()
        };
        for part in parts {
            let (k, v) = part.split_once('=').ok_or_else(|| EffectError::BadValue {
                effect: name.into(),
                detail: format!("{part:?} is not key=value"),
            })?;
            let v: f32 = v.trim().parse().map_err(|_| EffectError::BadValue {
                effect: name.into(),
                detail: format!("{part:?}: {:?} is not a number", v.trim()),
            })?;
            if !v.is_finite() {
                return Err(EffectError::BadValue {
                    effect: name.into(),
                    detail: format!("{part:?} is not a finite number"),
                });
            }
            kv.push((k.trim(), v));
        }
        let unknown = |key: &str, allowed: &'static str| EffectError::UnknownParameter {
            effect: name.into(),
            key: key.into(),
            allowed,
        };
        let no_params = |e: Effect| match kv.first() {
            Some((k, _)) => Err(unknown(k, "none")),
            None => Ok(e),
        };
        if let Some(p) = RoomPreset::ALL.iter().find(|p| p.name() == name) {
            if *p != RoomPreset::Voice3d {
                return no_params(Effect::Room {
                    preset: *p,
                    rotate: Rotate3dSettings::default(),
                });
            }
            let mut rotate = Rotate3dSettings::default();
            for (k, v) in &kv {
                match *k {
                    "period" => rotate.period_s = *v,
                    "depth" => rotate.depth = *v,
                    _ => return Err(unknown(k, ROOM3D_KEYS)),
                }
            }
            return Ok(Effect::Room { preset: *p, rotate });
        }
        if let Some(p) = ChangerPreset::ALL.iter().find(|p| p.name() == name) {
            return no_params(Effect::VoiceChanger { preset: *p });
        }
        if let Some(p) = BeautifierPreset::ALL.iter().find(|p| p.name() == name) {
            return no_params(Effect::Beautifier { preset: *p });
        }
        match name {
            "pitch" => {
                let (mut semitones, mut formant_factor) = (0.0, 1.0);
                for (k, v) in &kv {
                    match *k {
                        "semitones" => semitones = *v,
                        "formant" => formant_factor = *v,
                        _ => return Err(unknown(k, PITCH_KEYS)),
                    }
                }
                Ok(Effect::Pitch {
                    semitones,
                    formant_factor,
                })
            }
            "eq" => {
                let mut s = EqSettings::default();
                for (k, v) in &kv {
                    let labels = [
                        "31", "62", "125", "250", "500", "1k", "2k", "4k", "8k", "16k",
                    ];
                    match labels.iter().position(|l| l == k) {
                        Some(i) => s.bands_db[i] = *v,
                        None if *k == "preamp" => s.preamp_db = *v,
                        None => return Err(unknown(k, EQ_KEYS)),
                    }
                }
                Ok(Effect::Eq(s))
            }
            "gate" => {
                let mut s = GateSettings::default();
                for (k, v) in &kv {
                    match *k {
                        "close" => s.close_threshold_db = *v,
                        "open" => s.open_threshold_db = *v,
                        "attack" => s.attack_ms = *v,
                        "hold" => s.hold_ms = *v,
                        "release" => s.release_ms = *v,
                        _ => return Err(unknown(k, GATE_KEYS)),
                    }
                }
                Ok(Effect::Gate(s))
            }
            "compressor" => {
                let mut s = CompressorSettings::default();
                for (k, v) in &kv {
                    match *k {
                        "ratio" => s.ratio = *v,
                        "threshold" => s.threshold_db = *v,
                        "attack" => s.attack_ms = *v,
                        "release" => s.release_ms = *v,
                        "gain" => s.output_gain_db = *v,
                        _ => return Err(unknown(k, COMP_KEYS)),
                    }
                }
                Ok(Effect::Compressor(s))
            }
            "deesser" => {
                let mut s = DeEsserSettings::default();
                for (k, v) in &kv {
                    match *k {
                        "freq" => s.frequency_hz = *v,
                        "threshold" => s.threshold_db = *v,
                        "ratio" => s.ratio = *v,
                        "max" => s.max_reduction_db = *v,
                        "attack" => s.attack_ms = *v,
                        "release" => s.release_ms = *v,
                        _ => return Err(unknown(k, DEESS_KEYS)),
                    }
                }
                Ok(Effect::DeEsser(s))
            }
            "reverb" => {
                let mut s = ReverbSettings::default();
                for (k, v) in &kv {
                    match *k {
                        "size" => s.room_size = *v,
                        "damping" => s.damping = *v,
                        "wet" => s.wet = *v,
                        "dry" => s.dry = *v,
                        "predelay" => s.pre_delay_ms = *v,
                        "width" => s.width = *v,
                        "lowcut" => s.low_cut_hz = *v,
                        _ => return Err(unknown(k, REVERB_KEYS)),
                    }
                }
                Ok(Effect::Reverb(s))
            }
            _ => Err(EffectError::UnknownEffect(name.into())),
        }
    }

    /// Whether the effect turns a mono voice into stereo.
    pub fn is_stereo(&self) -> bool {
        matches!(
            self,
            Effect::Room { .. } | Effect::Beautifier { .. } | Effect::Reverb(_)
        )
    }
}

impl EffectSettings {
    /// Parses `--effect` arguments in chain order; `none` alone means no effects.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<EffectSettings, EffectError> {
        let specs: Vec<&str> = specs
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| s.trim() != "none")
            .collect();
        if specs.len() > MAX_EFFECTS {
            return Err(EffectError::TooMany(specs.len()));
        }
        Ok(EffectSettings {
            effects: specs
                .into_iter()
                .map(Effect::parse)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether the rack's output is stereo.
    pub fn is_stereo(&self) -> bool {
        self.effects.iter().any(Effect::is_stereo)
    }
}

impl fmt::Display for ReverbSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reverb size={} (decay {:.2} s) damping={} wet={} dry={} predelay={} ms width={} lowcut={} Hz",
            self.room_size,
            self.decay_s(),
            self.damping,
            self.wet,
            self.dry,
            self.pre_delay_ms,
            self.width,
            self.low_cut_hz
        )
    }
}

fn fmt_bands(b: &[f32; 10]) -> String {
    let labels = [
        "31", "62", "125", "250", "500", "1k", "2k", "4k", "8k", "16k",
    ];
    let parts: Vec<String> = labels
        .iter()
        .zip(b)
        .filter(|(_, g)| **g != 0.0)
        .map(|(l, g)| format!("{l}={g:+}"))
        .collect();
    if parts.is_empty() {
        "flat".into()
    } else {
        parts.join(",")
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::Room { preset, rotate } => {
                write!(f, "{}: ", preset.name())?;
                match preset {
                    RoomPreset::Phonograph => write!(
                        f,
                        "band-pass 300–3500 Hz, saturation drive 2, {}",
                        preset.reverb()
                    )?,
                    RoomPreset::VirtualStereo => {
                        write!(f, "complementary combs 9 ms a=0.7, {}", preset.reverb())?
                    }
                    RoomPreset::Ethereal => {
                        write!(f, "high shelf 6 kHz +3 dB, {}", preset.reverb())?
                    }
                    RoomPreset::Voice3d => write!(
                        f,
                        "circles the listener, period={} s depth={} (ITD ≤ 0.6 ms), {}",
                        rotate.period_s,
                        rotate.depth,
                        preset.reverb()
                    )?,
                    _ => write!(f, "{}", preset.reverb())?,
                }
                let (lo, hi) = preset.rt60_range();
                write!(f, "; RT60 {lo:.2}–{hi:.2} s")
            }
            Effect::VoiceChanger { preset } => {
                let (st, ff, eq) = preset.parameters();
                write!(
                    f,
                    "{}: pitch {st:+} semitones, formant ×{ff}, eq {}",
                    preset.name(),
                    fmt_bands(&eq)
                )?;
                if *preset == ChangerPreset::Hulk {
                    write!(f, ", compressor ratio 4 threshold −24 dB gain +4 dB")?;
                }
                Ok(())
            }
            Effect::Beautifier { preset } => {
                let (eq, comp, rev) = preset.parameters();
                write!(f, "{}: eq {}", preset.name(), fmt_bands(&eq))?;
                if let Some(c) = comp {
                    write!(
                        f,
                        ", compressor ratio {} threshold {} dB gain {:+} dB",
                        c.ratio, c.threshold_db, c.output_gain_db
                    )?;
                }
                write!(f, ", {rev}")
            }
            Effect::Pitch {
                semitones,
                formant_factor,
            } => write!(
                f,
                "pitch: {semitones:+} semitones, formant ×{formant_factor}"
            ),
            Effect::Eq(s) => write!(
                f,
                "eq: {} preamp={:+} dB",
                fmt_bands(&s.bands_db),
                s.preamp_db
            ),
            Effect::Gate(s) => write!(
                f,
                "gate: close={} dB open={} dB attack={} ms hold={} ms release={} ms",
                s.close_threshold_db, s.open_threshold_db, s.attack_ms, s.hold_ms, s.release_ms
            ),
            Effect::Compressor(s) => write!(
                f,
                "compressor: ratio={} threshold={} dB attack={} ms release={} ms gain={:+} dB",
                s.ratio, s.threshold_db, s.attack_ms, s.release_ms, s.output_gain_db
            ),
            Effect::DeEsser(s) => write!(
                f,
                "deesser: freq={} Hz threshold={} dB ratio={} max={} dB attack={} ms release={} ms",
                s.frequency_hz,
                s.threshold_db,
                s.ratio,
                s.max_reduction_db,
                s.attack_ms,
                s.release_ms
            ),
            Effect::Reverb(s) => write!(f, "{s}"),
        }
    }
}

/// The listing `onmic-audio effects` prints: one line per preset and parametric effect
/// (defaults shown) with its parameters.
pub fn catalogue() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for n in EFFECT_NAMES.iter().filter(|n| **n != "none") {
        if let Ok(e) = Effect::parse(n) {
            let keys = match *n {
                "3d_voice" => ROOM3D_KEYS,
                "pitch" => PITCH_KEYS,
                "eq" => EQ_KEYS,
                "gate" => GATE_KEYS,
                "compressor" => COMP_KEYS,
                "deesser" => DEESS_KEYS,
                "reverb" => REVERB_KEYS,
                _ => "",
            };
            let line = if keys.is_empty() {
                e.to_string()
            } else {
                format!("{e} [parameters: {keys}]")
            };
            v.push((n.to_string(), line));
        }
    }
    v
}

/// Soft saturation `tanh(drive·x)/tanh(drive)` (the phonograph's worn groove).
#[derive(Debug, Clone, Copy)]
pub struct Saturator {
    drive: f32,
    norm: f32,
}

impl Saturator {
    /// A saturator with `drive` (1–10).
    pub fn new(drive: f32) -> Saturator {
        let drive = drive.clamp(1.0, 10.0);
        Saturator {
            drive,
            norm: 1.0 / drive.tanh(),
        }
    }
}

/// One built stage.
#[derive(Debug)]
enum Stage {
    Eq(GraphicEq),
    Filters(Vec<Biquad>),
    Saturate(Saturator),
    Gate(NoiseGate),
    Compressor(Compressor),
    DeEsser(DeEsser),
    Reverb(Box<Reverb>),
    Pitch(Box<PitchShift>),
    Stereo(VirtualStereo),
    Rotate(Rotate3d),
}

impl Stage {
    fn process(&mut self, block: &mut Block) {
        match self {
            Stage::Eq(s) => s.process(block),
            Stage::Filters(fs) => {
                for ch in 0..block.channels() {
                    for f in fs.iter_mut() {
                        f.run(ch, block.channel_mut(ch));
                    }
                }
            }
            Stage::Saturate(s) => {
                for ch in block.active_mut() {
                    for x in ch.iter_mut() {
                        *x = (s.drive * *x).tanh() * s.norm;
                    }
                }
            }
            Stage::Gate(s) => s.process(block),
            Stage::Compressor(s) => s.process(block),
            Stage::DeEsser(s) => s.process(block),
            Stage::Reverb(s) => s.process(block),
            Stage::Pitch(s) => s.process(block),
            Stage::Stereo(s) => s.process(block),
            Stage::Rotate(s) => s.process(block),
        }
    }

    fn latency(&self) -> usize {
        match self {
            Stage::Pitch(p) => p.latency().get(),
            _ => 0,
        }
    }
}

/// Gain reduction the dynamics stages applied in the last block, dB (≤ 0; 0 when absent), for
/// the Studio's meters.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EffectMeters {
    /// The noise gate (−∞ → −200 when closed).
    pub gate_db: f32,
    /// The compressor.
    pub compressor_db: f32,
    /// The de-esser (its band only).
    pub deesser_db: f32,
}

/// Effect settings built into DSP stages (see the module doc).
#[derive(Debug, Default)]
pub struct EffectRack {
    settings: EffectSettings,
    stages: Vec<Stage>,
}

impl EffectRack {
    /// Builds the stages of `settings` (allocates; call off the DSP thread).
    pub fn new(settings: &EffectSettings) -> Result<EffectRack, EffectError> {
        if settings.effects.len() > MAX_EFFECTS {
            return Err(EffectError::TooMany(settings.effects.len()));
        }
        let mut stages = Vec::new();
        let mut stereo_before = false;
        for e in &settings.effects {
            let from = stages.len();
            build(e, &mut stages);
            // A pitch stage shifts the mid of a stereo block (a voice is mono) unless an earlier
            // effect made the voice stereo on purpose.
            if stereo_before {
                for s in &mut stages[from..] {
                    if let Stage::Pitch(p) = s {
                        p.set_keep_stereo(true);
                    }
                }
            }
            stereo_before |= e.is_stereo();
        }
        Ok(EffectRack {
            settings: settings.clone(),
            stages,
        })
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &EffectSettings {
        &self.settings
    }

    /// Frames of delay the rack adds (the pitch shifter's).
    pub fn latency(&self) -> Frames {
        Frames(self.stages.iter().map(Stage::latency).sum())
    }

    /// Gain reduction of the dynamics stages in the last block.
    pub fn meters(&self) -> EffectMeters {
        let mut m = EffectMeters::default();
        for s in &self.stages {
            match s {
                Stage::Gate(g) => m.gate_db = m.gate_db.min(g.gain_reduction_db()),
                Stage::Compressor(c) => {
                    m.compressor_db = m.compressor_db.min(c.gain_reduction_db())
                }
                Stage::DeEsser(d) => m.deesser_db = m.deesser_db.min(d.gain_reduction_db()),
                _ => {}
            }
        }
        m
    }

    /// Whether the rack does nothing.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }
}

fn build(e: &Effect, stages: &mut Vec<Stage>) {
    match e {
        Effect::Room { preset, rotate } => {
            match preset {
                RoomPreset::Phonograph => {
                    stages.push(Stage::Filters(vec![
                        Biquad::new(Coefs::high_pass(300.0, 0.707)),
                        Biquad::new(Coefs::low_pass(3500.0, 0.707)),
                        Biquad::new(Coefs::peaking(1500.0, 1.0, 3.0)),
                    ]));
                    stages.push(Stage::Saturate(Saturator::new(2.0)));
                }
                RoomPreset::VirtualStereo => {
                    stages.push(Stage::Stereo(VirtualStereo::new(9.0, 0.7)))
                }
                RoomPreset::Ethereal => stages.push(Stage::Filters(vec![Biquad::new(
                    Coefs::high_shelf(6000.0, 3.0),
                )])),
                RoomPreset::Voice3d => stages.push(Stage::Rotate(Rotate3d::new(*rotate))),
                _ => {}
            }
            stages.push(Stage::Reverb(Box::new(Reverb::new(preset.reverb()))));
        }
        Effect::VoiceChanger { preset } => {
            let (st, ff, eq) = preset.parameters();
            // The preset's EQ is applied inside the vocoder, on its spectrum.
            stages.push(Stage::Pitch(Box::new(
                PitchShift::new(st, ff).with_eq(&GraphicEq::new(eq_of(eq))),
            )));
            if *preset == ChangerPreset::Hulk {
                stages.push(Stage::Compressor(Compressor::new(CompressorSettings {
                    ratio: 4.0,
                    threshold_db: -24.0,
                    attack_ms: 6.0,
                    release_ms: 80.0,
                    output_gain_db: 4.0,
                })));
            }
        }
        Effect::Beautifier { preset } => {
            let (eq, comp, rev) = preset.parameters();
            stages.push(Stage::Eq(GraphicEq::new(eq_of(eq))));
            if let Some(c) = comp {
                stages.push(Stage::Compressor(Compressor::new(c)));
            }
            stages.push(Stage::Reverb(Box::new(Reverb::new(rev))));
        }
        Effect::Pitch {
            semitones,
            formant_factor,
        } => stages.push(Stage::Pitch(Box::new(PitchShift::new(
            *semitones,
            *formant_factor,
        )))),
        Effect::Eq(s) => stages.push(Stage::Eq(GraphicEq::new(*s))),
        Effect::Gate(s) => stages.push(Stage::Gate(NoiseGate::new(*s))),
        Effect::Compressor(s) => stages.push(Stage::Compressor(Compressor::new(*s))),
        Effect::DeEsser(s) => stages.push(Stage::DeEsser(DeEsser::new(*s))),
        Effect::Reverb(s) => stages.push(Stage::Reverb(Box::new(Reverb::new(*s)))),
    }
}

impl Processor for EffectRack {
    fn prepare(&mut self, _spec: StreamSpec) -> Result<(), PrepareError> {
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        for s in self.stages.iter_mut() {
            s.process(block);
        }
    }

    fn reset(&mut self) {
        for s in self.stages.iter_mut() {
            match s {
                Stage::Eq(x) => x.reset(),
                Stage::Filters(fs) => fs.iter_mut().for_each(Biquad::reset),
                Stage::Saturate(_) => {}
                Stage::Gate(x) => x.reset(),
                Stage::Compressor(x) => x.reset(),
                Stage::DeEsser(x) => x.reset(),
                Stage::Reverb(x) => x.reset(),
                Stage::Pitch(x) => x.reset(),
                Stage::Stereo(x) => x.reset(),
                Stage::Rotate(x) => x.reset(),
            }
        }
    }

    fn latency(&self) -> Frames {
        EffectRack::latency(self)
    }
}

/// Blocks a rack change crossfades over (20 ms).
pub const CROSSFADE_BLOCKS: usize = 2;

/// The chain's effect stage: the rack in force and the one replacing it (see the module doc).
#[derive(Debug)]
pub struct EffectsSlot {
    current: Box<EffectRack>,
    next: Option<Box<EffectRack>>,
    warm_left: usize,
    fade: usize,
    retired: Option<Box<EffectRack>>,
    input: Block,
    scratch: Block,
}

impl Default for EffectsSlot {
    fn default() -> Self {
        EffectsSlot {
            current: Box::default(),
            next: None,
            warm_left: 0,
            fade: 0,
            retired: None,
            input: Block::silent(2),
            scratch: Block::silent(2),
        }
    }
}

impl EffectsSlot {
    /// Starts the change to `rack`; returns a rack that was waiting and is now replaced (to be
    /// dropped off the DSP thread). Allocation-free.
    pub fn set(&mut self, rack: Box<EffectRack>) -> Option<Box<EffectRack>> {
        // Warm the new rack for as long as it delays its input (plus a block) so that it has
        // output by the time the crossfade starts.
        self.warm_left = rack.latency().get().div_ceil(BLOCK_FRAMES) + 1;
        self.fade = 0;
        self.next.replace(rack)
    }

    /// Puts `rack` in force at once, without a crossfade; returns the rack it replaces.
    pub fn replace_now(&mut self, rack: Box<EffectRack>) -> Box<EffectRack> {
        std::mem::replace(&mut self.current, rack)
    }

    /// The rack in force.
    pub fn current(&self) -> &EffectRack {
        &self.current
    }

    /// A rack that has been crossfaded out, to be dropped off the DSP thread.
    pub fn take_retired(&mut self) -> Option<Box<EffectRack>> {
        self.retired.take()
    }

    /// Exchanges the racks in force with `other` (a chain replacing this one takes them over).
    pub fn swap(&mut self, other: &mut EffectsSlot) {
        std::mem::swap(self, other);
    }

    /// Frames of delay the rack in force adds.
    pub fn latency(&self) -> Frames {
        self.current.latency()
    }

    /// Processes one block in place.
    pub fn process(&mut self, block: &mut Block) {
        let Some(next) = self.next.as_mut() else {
            self.current.process(block);
            return;
        };
        self.input.copy_from(block);
        self.current.process(block);
        self.scratch.copy_from(&self.input);
        next.process(&mut self.scratch);
        if self.warm_left > 0 {
            self.warm_left -= 1;
            return;
        }
        if block.channels() != self.scratch.channels() {
            block.set_channels(2);
            self.scratch.set_channels(2);
        }
        let total = (CROSSFADE_BLOCKS * BLOCK_FRAMES) as f32;
        let start = (self.fade * BLOCK_FRAMES) as f32;
        for ch in 0..block.channels() {
            let b = self.scratch.channel(ch);
            let a = block.channel_mut(ch);
            for i in 0..BLOCK_FRAMES {
                let g = (start + (i + 1) as f32) / total;
                a[i] = a[i] * (1.0 - g) + b[i] * g;
            }
        }
        // Hold at the end of the fade (the new rack's output exactly) until the previous
        // retired rack has been collected: it must never be dropped here.
        if self.fade + 1 < CROSSFADE_BLOCKS {
            self.fade += 1;
        } else if self.retired.is_none()
            && let Some(next) = self.next.take()
        {
            self.retired = Some(std::mem::replace(&mut self.current, next));
        }
    }
}
