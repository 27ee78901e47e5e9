//! Mono → stereo: virtual stereo (complementary comb filters) and 3D voice (the voice circles
//! the listener: constant-power panning with an interaural delay on the far ear).

use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::BLOCK_FRAMES;

/// Virtual stereo: `L = (x + a·x(t−d)) / √(1+a²)`, `R = (x − a·x(t−d)) / √(1+a²)`.
///
/// The two channels have complementary comb responses (peaks of one at the notches of the
/// other), so they decorrelate (for white noise the correlation is `(1−a²)/(1+a²)`) while each
/// keeps the input's power and their sum is the input's spectrum.
#[derive(Debug, Clone)]
pub struct VirtualStereo {
    line: Vec<f32>,
    pos: usize,
    a: f32,
    norm: f32,
}

impl VirtualStereo {
    /// Delay `delay_ms` (1–30 ms) and depth `a` (0–1).
    pub fn new(delay_ms: f32, a: f32) -> VirtualStereo {
        let len = ((delay_ms.clamp(1.0, 30.0)) * 48.0) as usize;
        let a = a.clamp(0.0, 1.0);
        VirtualStereo {
            line: vec![0.0; len],
            pos: 0,
            a,
            norm: 1.0 / (1.0 + a * a).sqrt(),
        }
    }
}

impl Processor for VirtualStereo {
    fn prepare(&mut self, _spec: StreamSpec) -> Result<(), PrepareError> {
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        let stereo_in = block.channels() == 2;
        block.set_channels(2);
        let (l, r) = block.pair_mut();
        let len = self.line.len();
        for i in 0..BLOCK_FRAMES {
            let x = if stereo_in { 0.5 * (l[i] + r[i]) } else { l[i] };
            let d = self.line[self.pos];
            self.line[self.pos] = x;
            self.pos += 1;
            if self.pos == len {
                self.pos = 0;
            }
            l[i] = (x + self.a * d) * self.norm;
            r[i] = (x - self.a * d) * self.norm;
        }
    }

    fn reset(&mut self) {
        self.line.fill(0.0);
    }
}

/// 3D voice's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rotate3dSettings {
    /// Seconds per full circle around the listener (1–60).
    pub period_s: f32,
    /// How far to the sides the voice goes, 0 (centre) – 1 (hard left/right).
    pub depth: f32,
}

impl Default for Rotate3dSettings {
    fn default() -> Self {
        Rotate3dSettings {
            period_s: 10.0,
            depth: 0.9,
        }
    }
}

/// Largest interaural delay, samples (0.6 ms).
const MAX_ITD: usize = 29;

/// 3D voice: azimuth `φ(t) = 2πt/period`; balance `θ = π/4·(1 + depth·sin φ)`; gains
/// `L = √2·cos θ`, `R = √2·sin θ` (constant power, each channel's mean power over a period equals
/// the input's); the ear facing away hears the voice up to 0.6 ms later (interaural time
/// difference, linear interpolation).
#[derive(Debug, Clone)]
pub struct Rotate3d {
    s: Rotate3dSettings,
    phase: f64,
    step: f64,
    line: [f32; 64],
    pos: usize,
}

impl Rotate3d {
    /// A rotator with `s` (clamped).
    pub fn new(s: Rotate3dSettings) -> Rotate3d {
        let s = Rotate3dSettings {
            period_s: if s.period_s.is_finite() {
                s.period_s.clamp(1.0, 60.0)
            } else {
                10.0
            },
            depth: if s.depth.is_finite() {
                s.depth.clamp(0.0, 1.0)
            } else {
                0.9
            },
        };
        Rotate3d {
            step: std::f64::consts::TAU / (f64::from(s.period_s) * 48_000.0),
            s,
            phase: 0.0,
            line: [0.0; 64],
            pos: 0,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Rotate3dSettings {
        self.s
    }

    #[inline]
    fn delayed(&self, d: f32) -> f32 {
        let di = d as usize;
        let frac = d - di as f32;
        let a = self.line[(self.pos + 64 - di) & 63];
        let b = self.line[(self.pos + 64 - di - 1) & 63];
        a + (b - a) * frac
    }
}

impl Processor for Rotate3d {
    fn prepare(&mut self, _spec: StreamSpec) -> Result<(), PrepareError> {
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        let stereo_in = block.channels() == 2;
        block.set_channels(2);
        let (l, r) = block.pair_mut();
        let depth = f64::from(self.s.depth);
        for i in 0..BLOCK_FRAMES {
            let x = if stereo_in { 0.5 * (l[i] + r[i]) } else { l[i] };
            self.pos = (self.pos + 1) & 63;
            self.line[self.pos] = x;
            let s = self.phase.sin();
            let theta = std::f64::consts::FRAC_PI_4 * (1.0 + depth * s);
            let gl = (std::f64::consts::SQRT_2 * theta.cos()) as f32;
            let gr = (std::f64::consts::SQRT_2 * theta.sin()) as f32;
            // s > 0: the voice is to the right, the left ear hears it later.
            let itd = (s.abs() * depth) as f32 * MAX_ITD as f32;
            let (dl, dr) = if s > 0.0 { (itd, 0.0) } else { (0.0, itd) };
            l[i] = gl * self.delayed(dl);
            r[i] = gr * self.delayed(dr);
            self.phase += self.step;
            if self.phase >= std::f64::consts::TAU {
                self.phase -= std::f64::consts::TAU;
            }
        }
    }

    fn reset(&mut self) {
        self.phase = 0.0;
        self.line = [0.0; 64];
    }
}
