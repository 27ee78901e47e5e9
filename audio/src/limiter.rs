//! The publish-bus limiter: the bus never exceeds its ceiling, and below it the limiter is
//! bit-transparent (gain exactly 1.0, so `x * 1.0 == x`).
//!
//! Gain is linked across channels, attacks instantly (no look-ahead, so no added latency and no
//! overshoot) and releases exponentially; once the release gets within 1e-4 of unity (an inaudible −80 dB step) it snaps to
//! exactly 1.0 so quiet programme material passes bit for bit.

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::{BLOCK_FRAMES, Dbfs};

/// The default ceiling: −1 dBFS.
pub const DEFAULT_CEILING: Dbfs = Dbfs(-1.0);

/// A stereo-linked peak limiter.
#[derive(Debug, Clone)]
pub struct Limiter {
    ceiling: f32,
    release_ms: f32,
    release_coef: f32,
    gain: f32,
    min_gain_in_block: f32,
    /// The gain each sample of the last block got (for the offline split, docs/voice-chain.md).
    last_gains: [f32; BLOCK_FRAMES],
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(DEFAULT_CEILING)
    }
}

impl Limiter {
    /// A limiter with the given ceiling and a 60 ms release.
    pub fn new(ceiling: Dbfs) -> Limiter {
        let mut l = Limiter {
            ceiling: ceiling.amplitude(),
            release_ms: 60.0,
            release_coef: 0.0,
            gain: 1.0,
            min_gain_in_block: 1.0,
            last_gains: [1.0; BLOCK_FRAMES],
        };
        l.release_coef = release_coef(l.release_ms, 48_000);
        l
    }

    /// The ceiling as a linear amplitude.
    pub fn ceiling(&self) -> f32 {
        self.ceiling
    }

    /// Multiplies `x`, one block of a second signal, by the gain each sample of the last block
    /// got (the offline CLI's split of the output into near end and echo, docs/voice-chain.md;
    /// the ceiling's clamp of a product rounded over it is not applied).
    pub fn apply_last_gains(&self, x: &mut [f32]) {
        for (s, g) in x.iter_mut().zip(&self.last_gains) {
            *s *= *g;
        }
    }

    /// The smallest gain applied during the last block (1.0 = untouched), for a meter.
    pub fn gain_reduction(&self) -> Dbfs {
        Dbfs::from_amplitude(self.min_gain_in_block)
    }
}

fn release_coef(ms: f32, rate: u32) -> f32 {
    (-1.0 / (ms * 0.001 * rate as f32)).exp()
}

impl Processor for Limiter {
    fn prepare(&mut self, spec: StreamSpec) -> Result<(), PrepareError> {
        self.release_coef = release_coef(self.release_ms, spec.rate.hz());
        self.reset();
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        let ceiling = self.ceiling;
        let coef = self.release_coef;
        let mut g = self.gain;
        let mut min_g = 1.0f32;
        let stereo = block.channels() == 2;
        let (l, r) = block.pair_mut();
        for i in 0..l.len() {
            let peak = if stereo {
                l[i].abs().max(r[i].abs())
            } else {
                l[i].abs()
            };
            // Release towards unity, then attack instantly if this sample would exceed the ceiling.
            if g < 1.0 {
                g = 1.0 - (1.0 - g) * coef;
                if g > 1.0 - 1e-4 {
                    g = 1.0;
                }
            }
            if peak * g > ceiling {
                g = ceiling / peak;
            }
            if g < 1.0 {
                l[i] *= g;
                if stereo {
                    r[i] *= g;
                }
                // Rounding may leave the product a hair above the ceiling.
                l[i] = l[i].clamp(-ceiling, ceiling);
                if stereo {
                    r[i] = r[i].clamp(-ceiling, ceiling);
                }
            }
            min_g = min_g.min(g);
            if let Some(v) = self.last_gains.get_mut(i) {
                *v = g;
            }
        }
        self.gain = g;
        self.min_gain_in_block = min_g;
    }

    fn reset(&mut self) {
        self.gain = 1.0;
        self.min_gain_in_block = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signals::sine_block;

    #[test]
    fn below_ceiling_is_bit_transparent() {
        let mut lim = Limiter::default();
        lim.prepare(StreamSpec::default()).expect("prepare");
        for n in 0..50u64 {
            let mut b = sine_block(997.0, 0.89, n, 2); // −1.01 dBFS peak
            let orig = b.clone();
            lim.process(&mut b);
            for ch in 0..2 {
                for (a, o) in b.channel(ch).iter().zip(orig.channel(ch)) {
                    assert_eq!(a.to_bits(), o.to_bits());
                }
            }
        }
    }

    #[test]
    fn never_exceeds_ceiling_and_recovers() {
        let mut lim = Limiter::default();
        lim.prepare(StreamSpec::default()).expect("prepare");
        for n in 0..20u64 {
            let mut b = sine_block(440.0, 4.0, n, 2); // +12 dBFS
            lim.process(&mut b);
            assert!(b.peak() <= lim.ceiling() + 1e-7, "peak {}", b.peak());
        }
        assert!(lim.gain_reduction().0 < -10.0);
        // After a second of quiet programme the limiter is transparent again.
        for n in 0..100u64 {
            let mut b = sine_block(440.0, 0.1, n, 2);
            let orig = b.clone();
            lim.process(&mut b);
            if n > 70 {
                assert_eq!(b.channel(0), orig.channel(0));
            }
        }
    }

    #[test]
    fn reset_repeats_output() {
        let mut lim = Limiter::default();
        lim.prepare(StreamSpec::default()).expect("prepare");
        let run = |lim: &mut Limiter| {
            let mut out = Vec::new();
            for n in 0..5u64 {
                let mut b = sine_block(300.0, 2.0, n, 2);
                lim.process(&mut b);
                out.extend_from_slice(b.channel(0));
            }
            out
        };
        let a = run(&mut lim);
        lim.reset();
        let b = run(&mut lim);
        assert_eq!(a, b);
    }
}
