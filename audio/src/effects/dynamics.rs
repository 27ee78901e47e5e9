//! Dynamics with OBS's parameters: noise gate, compressor, de-esser. Channels are linked (one
//! gain for both); levels are sample peaks in dBFS (a full-scale sine is 0 dB).

use serde::{Deserialize, Serialize};

use super::filters::{Biquad, Coefs, amp_to_db, db_to_amp, one_pole};
use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::BLOCK_FRAMES;

/// OBS's noise gate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GateSettings {
    /// The gate closes when the level falls below this (dBFS).
    pub close_threshold_db: f32,
    /// The gate opens when the level rises above this (dBFS, ≥ close threshold).
    pub open_threshold_db: f32,
    /// Time to open fully, ms.
    pub attack_ms: f32,
    /// Time the gate stays open after the level falls below the close threshold, ms.
    pub hold_ms: f32,
    /// Time to close fully, ms.
    pub release_ms: f32,
}

impl Default for GateSettings {
    fn default() -> Self {
        // OBS's defaults.
        GateSettings {
            close_threshold_db: -32.0,
            open_threshold_db: -26.0,
            attack_ms: 25.0,
            hold_ms: 200.0,
            release_ms: 150.0,
        }
    }
}

/// The noise gate: closed means gain 0 (silence), so attenuation below the threshold is total.
#[derive(Debug, Clone)]
pub struct NoiseGate {
    s: GateSettings,
    open: f32,
    close: f32,
    attack_step: f32,
    release_step: f32,
    hold: u32,
    env_decay: f32,
    env: f32,
    is_open: bool,
    held: u32,
    gain: f32,
    min_gain: f32,
}

impl NoiseGate {
    /// A gate with `s` (clamped to sane ranges).
    pub fn new(s: GateSettings) -> NoiseGate {
        let close = s.close_threshold_db.clamp(-96.0, 0.0);
        let open = s.open_threshold_db.clamp(close, 0.0);
        let ms = |v: f32, lo: f32, hi: f32| if v.is_finite() { v.clamp(lo, hi) } else { lo };
        let s = GateSettings {
            close_threshold_db: close,
            open_threshold_db: open,
            attack_ms: ms(s.attack_ms, 0.1, 1000.0),
            hold_ms: ms(s.hold_ms, 0.0, 5000.0),
            release_ms: ms(s.release_ms, 0.1, 5000.0),
        };
        NoiseGate {
            open: db_to_amp(open),
            close: db_to_amp(close),
            attack_step: 1.0 / (s.attack_ms * 48.0),
            release_step: 1.0 / (s.release_ms * 48.0),
            hold: (s.hold_ms * 48.0) as u32,
            // The level detector: instant peak, 10 ms decay (OBS decays its level too).
            env_decay: one_pole(10.0),
            env: 0.0,
            is_open: false,
            held: 0,
            gain: 0.0,
            min_gain: 1.0,
            s,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> GateSettings {
        self.s
    }

    /// The lowest gain of the last block in dB (a gain-reduction meter).
    pub fn gain_reduction_db(&self) -> f32 {
        amp_to_db(self.min_gain)
    }
}

impl Processor for NoiseGate {
    fn prepare(&mut self, _spec: StreamSpec) -> Result<(), PrepareError> {
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        let stereo = block.channels() == 2;
        let (l, r) = block.pair_mut();
        self.min_gain = 1.0;
        for i in 0..BLOCK_FRAMES {
            let x = linked_peak(stereo, l, r, i);
            self.env = x.max(self.env * self.env_decay);
            if self.env >= self.open {
                self.is_open = true;
                self.held = self.hold;
            } else if self.env < self.close && self.is_open {
                if self.held > 0 {
                    self.held -= 1;
                } else {
                    self.is_open = false;
                }
            }
            self.gain = if self.is_open {
                (self.gain + self.attack_step).min(1.0)
            } else {
                (self.gain - self.release_step).max(0.0)
            };
            l[i] *= self.gain;
            if stereo {
                r[i] *= self.gain;
            }
            self.min_gain = self.min_gain.min(self.gain);
        }
    }

    fn reset(&mut self) {
        self.env = 0.0;
        self.is_open = false;
        self.held = 0;
        self.gain = 0.0;
    }
}

/// OBS's compressor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompressorSettings {
    /// Ratio (1–32): above the threshold, `ratio` dB in give 1 dB out.
    pub ratio: f32,
    /// Threshold, dBFS.
    pub threshold_db: f32,
    /// Attack, ms.
    pub attack_ms: f32,
    /// Release, ms.
    pub release_ms: f32,
    /// Output (make-up) gain, dB.
    pub output_gain_db: f32,
}

impl Default for CompressorSettings {
    fn default() -> Self {
        // OBS's defaults.
        CompressorSettings {
            ratio: 10.0,
            threshold_db: -18.0,
            attack_ms: 6.0,
            release_ms: 60.0,
            output_gain_db: 0.0,
        }
    }
}

/// A feed-forward peak compressor with a hard knee: the level is the sample peak (instant rise,
/// falling with the release time); the gain reduction it asks for is reached with the attack
/// time and let go with the release time (so a steady tone sits exactly on the static curve).
#[derive(Debug, Clone)]
pub struct Compressor {
    s: CompressorSettings,
    att: f32,
    rel: f32,
    slope: f32,
    makeup: f32,
    env: f32,
    gain_db: f32,
    min_gain: f32,
}

impl Compressor {
    /// A compressor with `s` (clamped).
    pub fn new(s: CompressorSettings) -> Compressor {
        let fin = |v: f32, d: f32| if v.is_finite() { v } else { d };
        let s = CompressorSettings {
            ratio: fin(s.ratio, 1.0).clamp(1.0, 32.0),
            threshold_db: fin(s.threshold_db, 0.0).clamp(-60.0, 0.0),
            attack_ms: fin(s.attack_ms, 1.0).clamp(0.1, 500.0),
            release_ms: fin(s.release_ms, 1.0).clamp(1.0, 2000.0),
            output_gain_db: fin(s.output_gain_db, 0.0).clamp(-32.0, 32.0),
        };
        Compressor {
            att: one_pole(s.attack_ms),
            rel: one_pole(s.release_ms),
            slope: 1.0 - 1.0 / s.ratio,
            makeup: db_to_amp(s.output_gain_db),
            env: 0.0,
            gain_db: 0.0,
            min_gain: 1.0,
            s,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> CompressorSettings {
        self.s
    }

    /// The largest gain reduction of the last block, dB (≤ 0; a meter).
    pub fn gain_reduction_db(&self) -> f32 {
        amp_to_db(self.min_gain)
    }

    /// The static curve: output level for a steady input level, dB.
    pub fn static_curve_db(&self, input_db: f32) -> f32 {
        let over = (input_db - self.s.threshold_db).max(0.0);
        input_db - over * self.slope + self.s.output_gain_db
    }
}

impl Processor for Compressor {
    fn prepare(&mut self, _spec: StreamSpec) -> Result<(), PrepareError> {
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        let stereo = block.channels() == 2;
        let (l, r) = block.pair_mut();
        self.min_gain = 1.0;
        for i in 0..BLOCK_FRAMES {
            let x = linked_peak(stereo, l, r, i);
            self.env = x.max(self.env * self.rel);
            let over = amp_to_db(self.env) - self.s.threshold_db;
            let target = if over > 0.0 { -over * self.slope } else { 0.0 };
            let c = if target < self.gain_db {
                self.att
            } else {
                self.rel
            };
            self.gain_db = target + c * (self.gain_db - target);
            let g = if self.gain_db < -1e-4 {
                db_to_amp(self.gain_db)
            } else {
                1.0
            };
            self.min_gain = self.min_gain.min(g);
            let g = g * self.makeup;
            l[i] *= g;
            if stereo {
                r[i] *= g;
            }
        }
    }

    fn reset(&mut self) {
        self.env = 0.0;
        self.gain_db = 0.0;
    }
}

/// A de-esser: compresses only the sibilance band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeEsserSettings {
    /// Sibilance starts here (the high-pass corner of the detector and of the reduced band), Hz.
    pub frequency_hz: f32,
    /// Sibilance above this peak level is reduced, dBFS.
    pub threshold_db: f32,
    /// Ratio applied to the band above the threshold.
    pub ratio: f32,
    /// Largest reduction, dB.
    pub max_reduction_db: f32,
    /// Attack, ms.
    pub attack_ms: f32,
    /// Release, ms.
    pub release_ms: f32,
}

impl Default for DeEsserSettings {
    fn default() -> Self {
        DeEsserSettings {
            frequency_hz: 5500.0,
            threshold_db: -30.0,
            ratio: 4.0,
            max_reduction_db: 12.0,
            attack_ms: 1.0,
            release_ms: 60.0,
        }
    }
}

/// Split-band de-esser: the band above the frequency is `hi = x − lp(x)` (so `lp(x) + hi` is the
/// input exactly, phase included) and `out = x − (1 − g)·hi`; the detector is a high-pass at the
/// same frequency. With no sibilance (g = 1) the output is the input.
#[derive(Debug, Clone)]
pub struct DeEsser {
    s: DeEsserSettings,
    hp: Biquad,
    lp: Biquad,
    gain_db: f32,
    att: f32,
    rel: f32,
    slope: f32,
    /// The largest reduction, dB (negative).
    floor: f32,
    env: f32,
    min_gain: f32,
}

impl DeEsser {
    /// A de-esser with `s` (clamped).
    pub fn new(s: DeEsserSettings) -> DeEsser {
        let fin = |v: f32, d: f32| if v.is_finite() { v } else { d };
        let s = DeEsserSettings {
            frequency_hz: fin(s.frequency_hz, 5500.0).clamp(2000.0, 16000.0),
            threshold_db: fin(s.threshold_db, -30.0).clamp(-60.0, 0.0),
            ratio: fin(s.ratio, 4.0).clamp(1.0, 32.0),
            max_reduction_db: fin(s.max_reduction_db, 12.0).clamp(0.0, 40.0),
            attack_ms: fin(s.attack_ms, 1.0).clamp(0.1, 100.0),
            release_ms: fin(s.release_ms, 60.0).clamp(1.0, 1000.0),
        };
        DeEsser {
            hp: Biquad::new(Coefs::high_pass(
                f64::from(s.frequency_hz),
                std::f64::consts::FRAC_1_SQRT_2,
            )),
            lp: Biquad::new(Coefs::low_pass(
                f64::from(s.frequency_hz),
                std::f64::consts::FRAC_1_SQRT_2,
            )),
            gain_db: 0.0,
            att: one_pole(s.attack_ms),
            rel: one_pole(s.release_ms),
            slope: 1.0 - 1.0 / s.ratio,
            floor: -s.max_reduction_db,
            env: 0.0,
            min_gain: 1.0,
            s,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> DeEsserSettings {
        self.s
    }

    /// The largest reduction of the sibilance band in the last block, dB (≤ 0).
    pub fn gain_reduction_db(&self) -> f32 {
        amp_to_db(self.min_gain)
    }
}

impl Processor for DeEsser {
    fn prepare(&mut self, _spec: StreamSpec) -> Result<(), PrepareError> {
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        let stereo = block.channels() == 2;
        let (l, r) = block.pair_mut();
        self.min_gain = 1.0;
        for i in 0..BLOCK_FRAMES {
            let dl = self.hp.tick(0, l[i]);
            let dr = if stereo { self.hp.tick(1, r[i]) } else { 0.0 };
            let hl = l[i] - self.lp.tick(0, l[i]);
            let hr = if stereo {
                r[i] - self.lp.tick(1, r[i])
            } else {
                0.0
            };
            let x = dl.abs().max(dr.abs());
            self.env = x.max(self.env * self.rel);
            let over = amp_to_db(self.env) - self.s.threshold_db;
            let target = if over > 0.0 {
                (-over * self.slope).max(self.floor)
            } else {
                0.0
            };
            let c = if target < self.gain_db {
                self.att
            } else {
                self.rel
            };
            self.gain_db = target + c * (self.gain_db - target);
            if self.gain_db < -1e-4 {
                let g = db_to_amp(self.gain_db);
                self.min_gain = self.min_gain.min(g);
                l[i] -= (1.0 - g) * hl;
                if stereo {
                    r[i] -= (1.0 - g) * hr;
                }
            }
        }
    }

    fn reset(&mut self) {
        self.hp.reset();
        self.lp.reset();
        self.env = 0.0;
        self.gain_db = 0.0;
    }
}

/// The level a stereo-linked detector sees at frame `i`: the louder channel's magnitude (the
/// first channel's alone on a mono block), shared by the gate and the compressor.
#[inline]
fn linked_peak(stereo: bool, l: &[f32], r: &[f32], i: usize) -> f32 {
    if stereo {
        l[i].abs().max(r[i].abs())
    } else {
        l[i].abs()
    }
}
