//! Deterministic test signals shared by unit tests, benches and the offline tests.

use crate::block::Block;
use crate::units::BLOCK_FRAMES;

/// Block `index` of a continuous sine at `freq` Hz and `amplitude` peak, same on every channel.
pub fn sine_block(freq: f32, amplitude: f32, index: u64, channels: usize) -> Block {
    let mut b = Block::silent(channels);
    let start = index * BLOCK_FRAMES as u64;
    for i in 0..BLOCK_FRAMES {
        let t = (start + i as u64) as f64 / 48_000.0;
        let s = (amplitude as f64 * (2.0 * std::f64::consts::PI * freq as f64 * t).sin()) as f32;
        for ch in b.active_mut() {
            ch[i] = s;
        }
    }
    b.timestamp = start;
    b
}

/// A sine of `frames` samples at 48 kHz.
pub fn sine(freq: f32, amplitude: f32, frames: usize) -> Vec<f32> {
    (0..frames)
        .map(|i| {
            let t = i as f64 / 48_000.0;
            (amplitude as f64 * (2.0 * std::f64::consts::PI * freq as f64 * t).sin()) as f32
        })
        .collect()
}

/// A deterministic white-noise generator (xorshift), uniform in `[-amplitude, amplitude]`.
#[derive(Debug, Clone)]
pub struct Noise {
    state: u64,
}

impl Noise {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Noise {
        Noise { state: seed.max(1) }
    }

    /// The next sample in `[-1, 1]`.
    pub fn next_sample(&mut self) -> f32 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// RMS of a slice.
pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    let s: f64 = x.iter().map(|v| f64::from(*v) * f64::from(*v)).sum();
    (s / x.len() as f64).sqrt() as f32
}

/// The frequency (Hz) with the most energy in `x` at 48 kHz, by a Goertzel sweep from `lo` to
/// `hi` in `step` Hz, refined by parabolic interpolation.
pub fn dominant_frequency(x: &[f32], lo: f32, hi: f32, step: f32) -> f32 {
    let mut best = (lo, 0.0f64);
    let mut f = lo;
    let mut powers = Vec::new();
    while f <= hi {
        let p = goertzel_power(x, f);
        powers.push((f, p));
        if p > best.1 {
            best = (f, p);
        }
        f += step;
    }
    let i = powers.iter().position(|(f, _)| *f == best.0).unwrap_or(0);
    if i > 0 && i + 1 < powers.len() {
        let (a, b, c) = (
            powers[i - 1].1.sqrt(),
            powers[i].1.sqrt(),
            powers[i + 1].1.sqrt(),
        );
        let denom = a - 2.0 * b + c;
        if denom.abs() > 1e-12 {
            let delta = 0.5 * (a - c) / denom;
            return best.0 + (delta as f32) * step;
        }
    }
    best.0
}

/// Goertzel power of `x` at `freq` Hz (48 kHz).
pub fn goertzel_power(x: &[f32], freq: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(freq) / 48_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for v in x {
        let s = f64::from(*v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Level of the `freq` component of `x` as dB of its amplitude (a sine of amplitude 0.25 reads
/// −12 dB): the median over 50 ms windows (whole cycles of any multiple of 20 Hz), so a dropout
/// of a busy machine's sound server spoils a window, not the reading. Panics on less than one
/// window (a recording that came back empty must not read as silence).
pub fn tone_db_median(x: &[f32], freq: f32) -> f64 {
    const WINDOW: usize = 2_400;
    let mut v: Vec<f64> = x
        .chunks_exact(WINDOW)
        .map(|w| {
            let amp2 = goertzel_power(w, freq) * 4.0 / (WINDOW as f64 * WINDOW as f64);
            10.0 * (amp2 + 1e-20).log10()
        })
        .collect();
    assert!(
        !v.is_empty(),
        "{} samples: less than one 50 ms window",
        x.len()
    );
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
