//! The reverb: Freeverb's topology (8 damped feedback combs in parallel and 4 series all-passes
//! per channel, the right channel's delays 23 samples longer) with three changes that make its
//! parameters mean what the docs say:
//!
//! - each comb's feedback is computed from the decay time, `g = 10^(−3·d / (T60·fs))`, so every
//!   comb decays 60 dB in `decay_s` (Freeverb's room size only sets one feedback for all combs);
//!   `room_size` (0–1) maps to the decay time `0.2 · 25^room_size` s (0.2–5 s), and also scales
//!   the delay lengths (a larger room has sparser, later reflections);
//! - a pre-delay line (0–200 ms) before the tank;
//! - the input gain is normalised by the combs' mean energy, so `wet` = 1 gives a tail about as
//!   loud as the dry voice whatever the decay.
//!
//! `width` 0–1 mixes the two tank outputs (Freeverb's width). With `wet` = 0 and `dry` = 1 the
//! output is the input bit for bit (`x · 1.0 + 0.0 · tail`).

use serde::{Deserialize, Serialize};

use super::filters::{Biquad, Coefs};
use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::BLOCK_FRAMES;

/// Freeverb's comb delays at 44.1 kHz.
const COMBS: [usize; 8] = [1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617];
/// Freeverb's all-pass delays at 44.1 kHz.
const ALLPASSES: [usize; 4] = [556, 441, 341, 225];
/// Right-channel offset.
const SPREAD: usize = 23;
/// Longest pre-delay, ms.
pub const MAX_PREDELAY_MS: f32 = 200.0;

/// The custom reverb's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReverbSettings {
    /// 0–1: decay time `0.2·25^room_size` s (0.2–5 s) and delay lengths ×(0.7 + 0.6·room_size).
    pub room_size: f32,
    /// 0–1: how much faster high frequencies decay (one-pole low-pass in each comb).
    pub damping: f32,
    /// Level of the reverb tail, 0–1.
    pub wet: f32,
    /// Level of the direct voice, 0–1.
    pub dry: f32,
    /// Delay before the tail starts, ms (0–200).
    pub pre_delay_ms: f32,
    /// Stereo width of the tail, 0 (mono) – 1 (full).
    pub width: f32,
    /// The tail's low cut, Hz (20 = none); keeps boominess out of long tails.
    pub low_cut_hz: f32,
}

impl Default for ReverbSettings {
    fn default() -> Self {
        ReverbSettings {
            room_size: 0.5,
            damping: 0.5,
            wet: 0.3,
            dry: 1.0,
            pre_delay_ms: 10.0,
            width: 1.0,
            low_cut_hz: 20.0,
        }
    }
}

impl ReverbSettings {
    /// The decay time this room size gives, seconds (60 dB at low frequencies).
    pub fn decay_s(&self) -> f32 {
        0.2 * 25f32.powf(self.room_size.clamp(0.0, 1.0))
    }

    /// The RT60 range the docs promise for these settings, seconds: the broadband RT60 measured
    /// from an impulse response (T20) is 0.65–1.0 × the decay time, because damping makes the
    /// high frequencies die faster than the low ones the decay time is set for.
    pub fn rt60_range(&self) -> (f32, f32) {
        let d = self.decay_s();
        (0.65 * d, d)
    }

    fn clamped(self) -> ReverbSettings {
        let u = |v: f32, d: f32| if v.is_finite() { v.clamp(0.0, 1.0) } else { d };
        ReverbSettings {
            room_size: u(self.room_size, 0.5),
            damping: u(self.damping, 0.5),
            wet: u(self.wet, 0.0),
            dry: u(self.dry, 1.0),
            pre_delay_ms: if self.pre_delay_ms.is_finite() {
                self.pre_delay_ms.clamp(0.0, MAX_PREDELAY_MS)
            } else {
                0.0
            },
            width: u(self.width, 1.0),
            low_cut_hz: if self.low_cut_hz.is_finite() {
                self.low_cut_hz.clamp(20.0, 1000.0)
            } else {
                20.0
            },
        }
    }
}

#[derive(Debug, Clone)]
struct Comb {
    buf: Vec<f32>,
    pos: usize,
    feedback: f32,
    store: f32,
}

impl Comb {
    #[inline]
    fn tick(&mut self, x: f32, damp: f32) -> f32 {
        let y = self.buf[self.pos];
        self.store = y * (1.0 - damp) + self.store * damp;
        self.buf[self.pos] = x + self.store * self.feedback;
        self.pos += 1;
        if self.pos == self.buf.len() {
            self.pos = 0;
        }
        y
    }
}

#[derive(Debug, Clone)]
struct AllPass {
    buf: Vec<f32>,
    pos: usize,
}

impl AllPass {
    #[inline]
    fn tick(&mut self, x: f32) -> f32 {
        let b = self.buf[self.pos];
        self.buf[self.pos] = x + b * 0.5;
        self.pos += 1;
        if self.pos == self.buf.len() {
            self.pos = 0;
        }
        b - x
    }
}

/// The reverb stage: mono or stereo in, stereo out.
#[derive(Debug, Clone)]
pub struct Reverb {
    s: ReverbSettings,
    combs: [Vec<Comb>; 2],
    allpasses: [Vec<AllPass>; 2],
    pre: Vec<f32>,
    pre_len: usize,
    pre_pos: usize,
    in_gain: f32,
    wet1: f32,
    wet2: f32,
    low_cut: Option<Biquad>,
    tank_in: [f32; BLOCK_FRAMES],
}

impl Reverb {
    /// Builds the delay lines for `s` (allocates; call off the DSP thread).
    pub fn new(s: ReverbSettings) -> Reverb {
        let s = s.clamped();
        let t60 = s.decay_s();
        let scale = 48_000.0 / 44_100.0 * (0.7 + 0.6 * s.room_size);
        let mut energy = 0.0;
        let combs = [0, SPREAD].map(|off| {
            COMBS
                .iter()
                .map(|d| {
                    let len = (((*d + off) as f32) * scale) as usize;
                    let feedback = 10f32.powf(-3.0 * len as f32 / (t60 * 48_000.0));
                    energy += 1.0 / (1.0 - feedback * feedback);
                    Comb {
                        buf: vec![0.0; len],
                        pos: 0,
                        feedback,
                        store: 0.0,
                    }
                })
                .collect::<Vec<_>>()
        });
        let allpasses = [0, SPREAD].map(|off| {
            ALLPASSES
                .iter()
                .map(|d| AllPass {
                    buf: vec![0.0; (((*d + off) as f32) * 48_000.0 / 44_100.0) as usize],
                    pos: 0,
                })
                .collect::<Vec<_>>()
        });
        // Mean comb energy per channel for a unit impulse; the all-passes keep energy.
        let per_channel = energy / 16.0 * 8.0;
        let pre_len = (s.pre_delay_ms * 48.0) as usize;
        Reverb {
            combs,
            allpasses,
            pre: vec![0.0; pre_len.max(1)],
            pre_len,
            pre_pos: 0,
            in_gain: 1.0 / per_channel.sqrt(),
            wet1: s.wet * (s.width / 2.0 + 0.5),
            wet2: s.wet * ((1.0 - s.width) / 2.0),
            low_cut: (s.low_cut_hz > 20.0).then(|| {
                Biquad::new(Coefs::high_pass(
                    f64::from(s.low_cut_hz),
                    std::f64::consts::FRAC_1_SQRT_2,
                ))
            }),
            tank_in: [0.0; BLOCK_FRAMES],
            s,
        }
    }

    /// The settings in force (after clamping).
    pub fn settings(&self) -> ReverbSettings {
        self.s
    }
}

impl Processor for Reverb {
    fn prepare(&mut self, _spec: StreamSpec) -> Result<(), PrepareError> {
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        let stereo_in = block.channels() == 2;
        block.set_channels(2);
        let (l, r) = block.pair_mut();
        if self.wet1 == 0.0 && self.wet2 == 0.0 {
            // No tail: the dry path alone (bit-transparent at dry = 1).
            let dry = self.s.dry;
            if dry != 1.0 {
                for i in 0..BLOCK_FRAMES {
                    l[i] *= dry;
                    r[i] *= dry;
                }
            }
            return;
        }
        // The tank's mono input, pre-delayed.
        for i in 0..BLOCK_FRAMES {
            let x = if stereo_in { 0.5 * (l[i] + r[i]) } else { l[i] };
            let x = match self.low_cut.as_mut() {
                Some(f) => f.tick(0, x),
                None => x,
            };
            self.tank_in[i] = if self.pre_len == 0 {
                x
            } else {
                let d = self.pre[self.pre_pos];
                self.pre[self.pre_pos] = x;
                self.pre_pos = (self.pre_pos + 1) % self.pre_len;
                d
            };
        }
        let damp = self.s.damping * 0.4;
        let (dry, wet1, wet2, g) = (self.s.dry, self.wet1, self.wet2, self.in_gain);
        let [cl, cr] = &mut self.combs;
        let [al, ar] = &mut self.allpasses;
        for i in 0..BLOCK_FRAMES {
            let x = self.tank_in[i] * g;
            let mut yl = 0.0;
            let mut yr = 0.0;
            for c in cl.iter_mut() {
                yl += c.tick(x, damp);
            }
            for c in cr.iter_mut() {
                yr += c.tick(x, damp);
            }
            for a in al.iter_mut() {
                yl = a.tick(yl);
            }
            for a in ar.iter_mut() {
                yr = a.tick(yr);
            }
            l[i] = l[i] * dry + (yl * wet1 + yr * wet2);
            r[i] = r[i] * dry + (yr * wet1 + yl * wet2);
        }
    }

    fn reset(&mut self) {
        for c in self.combs.iter_mut().flatten() {
            c.buf.fill(0.0);
            c.store = 0.0;
        }
        for a in self.allpasses.iter_mut().flatten() {
            a.buf.fill(0.0);
        }
        self.pre.fill(0.0);
        if let Some(f) = self.low_cut.as_mut() {
            f.reset();
        }
    }
}
