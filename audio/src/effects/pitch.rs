//! Pitch shift that keeps time, with formant control: a phase vocoder (1024-point FFT, hop 256,
//! Hann windows, `realfft`).
//!
//! Each analysis frame measures every bin's true frequency from its phase advance over one hop
//! (exact for a steady partial), moves the bin to `k·ratio` with its frequency multiplied by
//! `ratio = 2^(semitones/12)`, and re-synthesises with accumulated phases; overlap-add keeps the
//! length, so only the pitch moves. Formants: the spectral envelope (the magnitude smoothed over
//! ±7 bins ≈ ±330 Hz) is measured per frame and each moved partial is rescaled so that the
//! output's envelope is the input's stretched by `formant_factor` (1 keeps the formants where
//! they were: a voice shifted up does not become a chipmunk).
//!
//! Why not `signalsmith-stretch`: measured in `docs/decisions.md` — with a window short enough
//! for a live voice (1024–2048 samples) its partials land up to 4.7 % off the requested pitch;
//! it is accurate only from a 4096-sample window (85 ms of delay).
//!
//! Stereo: a voice is mono, so a stereo block is shifted once, on its mid `(L + R) / 2`, and the
//! result goes to both sides. That halves the cost on a stereo block (issue 12's 0.1 ms budget
//! per stereo block: about 100 µs when each side was shifted, about half now). A shifter placed
//! after an effect that made the voice stereo ([`PitchShift::keep_stereo`], set by the rack)
//! shifts each side, so that effect's width survives.
//!
//! Latency: 768 frames (16 ms). Allocation-free after [`PitchShift::new`].

use std::f32::consts::{FRAC_PI_2, PI, TAU};
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::{BLOCK_FRAMES, Frames};

/// FFT size.
pub const WINDOW: usize = 1024;
/// Hop between frames (overlap 4).
pub const INTERVAL: usize = WINDOW / 4;
/// The largest shift either way, semitones.
pub const MAX_SEMITONES: f32 = 12.0;
const BINS: usize = WINDOW / 2 + 1;
const LATENCY: usize = WINDOW - INTERVAL;
/// Half-width of the envelope smoothing, bins.
const ENV_HALF: usize = 7;

/// One channel's state.
#[derive(Debug, Clone)]
struct ChannelState {
    in_fifo: Vec<f32>,
    out_acc: Vec<f32>,
    out_fifo: Vec<f32>,
    last_phase: Vec<f32>,
    sum_phase: Vec<f32>,
}

impl ChannelState {
    fn new() -> ChannelState {
        ChannelState {
            in_fifo: vec![0.0; WINDOW],
            out_acc: vec![0.0; 2 * WINDOW],
            out_fifo: vec![0.0; WINDOW],
            last_phase: vec![0.0; BINS],
            sum_phase: vec![0.0; BINS],
        }
    }
}

/// The pitch/formant stage.
pub struct PitchShift {
    semitones: f32,
    formant: f32,
    ratio: f32,
    fwd: Arc<dyn RealToComplex<f32>>,
    inv: Arc<dyn ComplexToReal<f32>>,
    window: Vec<f32>,
    time: Vec<f32>,
    spec: Vec<Complex<f32>>,
    fwd_scratch: Vec<Complex<f32>>,
    inv_scratch: Vec<Complex<f32>>,
    mag: Vec<f32>,
    freq: Vec<f32>,
    env: Vec<f32>,
    syn_mag: Vec<f32>,
    syn_freq: Vec<f32>,
    eq: Vec<f32>,
    ch: [ChannelState; 2],
    /// Shift each side of a stereo block (after a stereo effect) instead of the mid.
    keep_stereo: bool,
    rover: usize,
}

impl std::fmt::Debug for PitchShift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PitchShift")
            .field("semitones", &self.semitones)
            .field("formant", &self.formant)
            .finish_non_exhaustive()
    }
}

impl PitchShift {
    /// Shifts by `semitones` (±12) and moves formants by `formant_factor` (0.5–2, 1 = keep).
    /// Allocates; call off the DSP thread.
    pub fn new(semitones: f32, formant_factor: f32) -> PitchShift {
        let semitones = if semitones.is_finite() {
            semitones.clamp(-MAX_SEMITONES, MAX_SEMITONES)
        } else {
            0.0
        };
        let formant = if formant_factor.is_finite() {
            formant_factor.clamp(0.5, 2.0)
        } else {
            1.0
        };
        let mut planner = RealFftPlanner::<f32>::new();
        let fwd = planner.plan_fft_forward(WINDOW);
        let inv = planner.plan_fft_inverse(WINDOW);
        let fwd_scratch = fwd.make_scratch_vec();
        let inv_scratch = inv.make_scratch_vec();
        PitchShift {
            semitones,
            formant,
            ratio: 2f32.powf(semitones / 12.0),
            window: (0..WINDOW)
                .map(|i| 0.5 - 0.5 * (TAU * i as f32 / WINDOW as f32).cos())
                .collect(),
            time: vec![0.0; WINDOW],
            spec: fwd.make_output_vec(),
            fwd,
            inv,
            fwd_scratch,
            inv_scratch,
            mag: vec![0.0; BINS],
            freq: vec![0.0; BINS],
            env: vec![0.0; BINS],
            syn_mag: vec![0.0; BINS],
            syn_freq: vec![0.0; BINS],
            eq: vec![1.0; BINS],
            ch: [ChannelState::new(), ChannelState::new()],
            keep_stereo: false,
            rover: LATENCY,
        }
    }

    /// Applies `eq`'s designed curve to the re-synthesised spectrum (bin by bin, so the voice
    /// changer's EQ costs nothing beyond the vocoder). Call off the DSP thread.
    pub fn with_eq(mut self, eq: &super::eq::GraphicEq) -> PitchShift {
        for (k, g) in self.eq.iter_mut().enumerate() {
            let f = (k as f64 * 48_000.0 / WINDOW as f64).max(1.0);
            *g = 10f64.powf(eq.response_db(f) / 20.0) as f32;
        }
        self
    }

    /// Shifts each side of a stereo block on its own (twice the cost) instead of the mid: for a
    /// shifter placed after an effect that made the voice stereo, whose width must survive.
    pub fn keep_stereo(mut self, on: bool) -> PitchShift {
        self.set_keep_stereo(on);
        self
    }

    /// As [`PitchShift::keep_stereo`], in place (off the DSP thread).
    pub fn set_keep_stereo(&mut self, on: bool) {
        self.keep_stereo = on;
    }

    /// The shift, semitones.
    pub fn semitones(&self) -> f32 {
        self.semitones
    }

    /// The formant factor.
    pub fn formant_factor(&self) -> f32 {
        self.formant
    }

    /// One analysis/synthesis frame of channel `c`.
    fn frame(&mut self, c: usize) {
        let st = &mut self.ch[c];
        let hop_phase = TAU * INTERVAL as f32 / WINDOW as f32;
        let osamp = (WINDOW / INTERVAL) as f32;
        for i in 0..WINDOW {
            self.time[i] = st.in_fifo[i] * self.window[i];
        }
        let _ =
            self.fwd
                .process_with_scratch(&mut self.time, &mut self.spec, &mut self.fwd_scratch);
        for k in 0..BINS {
            let z = self.spec[k];
            let phase = fast_atan2(z.im, z.re);
            self.mag[k] = (z.re * z.re + z.im * z.im).sqrt();
            let mut d = phase - st.last_phase[k] - k as f32 * hop_phase;
            st.last_phase[k] = phase;
            d -= TAU * round(d * INV_TAU);
            self.freq[k] = k as f32 + d * osamp / TAU;
        }
        // Spectral envelope: running mean of the magnitude over ±ENV_HALF bins.
        let mut acc: f32 = self.mag[..=ENV_HALF].iter().sum();
        for k in 0..BINS {
            let lo = k.saturating_sub(ENV_HALF);
            let hi = (k + ENV_HALF).min(BINS - 1);
            self.env[k] = acc / (hi - lo + 1) as f32 + 1e-9;
            if k + ENV_HALF + 1 < BINS {
                acc += self.mag[k + ENV_HALF + 1];
            }
            if k >= ENV_HALF {
                acc -= self.mag[k - ENV_HALF];
            }
        }
        self.syn_mag.fill(0.0);
        self.syn_freq.fill(0.0);
        let inv_formant = 1.0 / self.formant;
        for k in 0..BINS {
            let j = (k as f32 * self.ratio).round() as usize;
            if j >= BINS {
                break;
            }
            // Where the output envelope should come from: bin j / formant of the input.
            let src = j as f32 * inv_formant;
            let si = src as usize;
            let want = if si + 1 < BINS {
                let fr = src - si as f32;
                self.env[si] * (1.0 - fr) + self.env[si + 1] * fr
            } else {
                self.env[BINS - 1]
            };
            let corr = (want / self.env[k]).min(16.0);
            self.syn_mag[j] += self.mag[k] * corr;
            self.syn_freq[j] = self.freq[k] * self.ratio;
        }
        for k in 0..BINS {
            st.sum_phase[k] += self.syn_freq[k] * hop_phase;
            st.sum_phase[k] -= TAU * round(st.sum_phase[k] * INV_TAU);
            let m = self.syn_mag[k] * self.eq[k];
            if m == 0.0 {
                self.spec[k] = Complex::new(0.0, 0.0);
                continue;
            }
            let p = st.sum_phase[k];
            let c = if p > FRAC_PI_2 {
                p + FRAC_PI_2 - TAU
            } else {
                p + FRAC_PI_2
            };
            self.spec[k] = Complex::new(m * fast_sin(c), m * fast_sin(p));
        }
        self.spec[0].im = 0.0;
        self.spec[BINS - 1].im = 0.0;
        let _ =
            self.inv
                .process_with_scratch(&mut self.spec, &mut self.time, &mut self.inv_scratch);
        // Hann² at overlap 4 sums to 1.5; the inverse FFT is unnormalised.
        let g = 1.0 / (WINDOW as f32 * 1.5);
        for i in 0..WINDOW {
            st.out_acc[i] += self.time[i] * self.window[i] * g;
        }
        st.out_fifo[..INTERVAL].copy_from_slice(&st.out_acc[..INTERVAL]);
        st.out_acc.copy_within(INTERVAL.., 0);
        let n = st.out_acc.len();
        st.out_acc[n - INTERVAL..].fill(0.0);
        st.in_fifo.copy_within(INTERVAL.., 0);
    }
}

const INV_TAU: f32 = 1.0 / TAU;

/// Round to nearest for the small values phase wrapping sees (a cast, not a libm call).
#[inline]
fn round(x: f32) -> f32 {
    (if x >= 0.0 { x + 0.5 } else { x - 0.5 }) as i32 as f32
}

/// `atan2` to within 2e-5 rad (a 11th-order minimax polynomial on [0, 1] and the octant
/// symmetries): a phase error of 2e-5 rad moves a partial by 1e-5 of a bin.
#[inline]
fn fast_atan2(y: f32, x: f32) -> f32 {
    let (ax, ay) = (x.abs(), y.abs());
    let (mx, mn) = if ax > ay { (ax, ay) } else { (ay, ax) };
    if mx == 0.0 {
        return 0.0;
    }
    let a = mn / mx;
    let s = a * a;
    let mut r = a
        * (0.999_977_26
            + s * (-0.332_623_47
                + s * (0.193_543_46
                    + s * (-0.116_432_87 + s * (0.052_653_32 + s * -0.011_721_2)))));
    if ay > ax {
        r = FRAC_PI_2 - r;
    }
    if x < 0.0 {
        r = PI - r;
    }
    if y < 0.0 { -r } else { r }
}

/// `sin` on [−π, π] to within 4e-6 (folded to [−π/2, π/2], Taylor series to x⁹).
#[inline]
fn fast_sin(x: f32) -> f32 {
    let x = if x > FRAC_PI_2 {
        PI - x
    } else if x < -FRAC_PI_2 {
        -PI - x
    } else {
        x
    };
    let x2 = x * x;
    x * (1.0
        + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362_880.0)))))
}

impl Processor for PitchShift {
    fn prepare(&mut self, _spec: StreamSpec) -> Result<(), PrepareError> {
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        if block.channels() == 2 && !self.keep_stereo {
            // A voice is mono: shift the mid once and return it on both sides (half the cost of
            // shifting each side; see the module docs).
            let (l, r) = block.pair_mut();
            for i in 0..BLOCK_FRAMES {
                let rv = self.rover;
                let st = &mut self.ch[0];
                st.in_fifo[rv] = 0.5 * (l[i] + r[i]);
                let y = st.out_fifo[rv - LATENCY];
                l[i] = y;
                r[i] = y;
                self.rover += 1;
                if self.rover >= WINDOW {
                    self.rover = LATENCY;
                    self.frame(0);
                }
            }
            return;
        }
        let channels = block.channels();
        for i in 0..BLOCK_FRAMES {
            let r = self.rover;
            for c in 0..channels {
                let x = block.channel(c)[i];
                let st = &mut self.ch[c];
                st.in_fifo[r] = x;
                block.channel_mut(c)[i] = st.out_fifo[r - LATENCY];
            }
            self.rover += 1;
            if self.rover >= WINDOW {
                self.rover = LATENCY;
                for c in 0..channels {
                    self.frame(c);
                }
            }
        }
    }

    fn reset(&mut self) {
        for st in self.ch.iter_mut() {
            st.in_fifo.fill(0.0);
            st.out_acc.fill(0.0);
            st.out_fifo.fill(0.0);
            st.last_phase.fill(0.0);
            st.sum_phase.fill(0.0);
        }
        self.rover = LATENCY;
    }

    fn latency(&self) -> Frames {
        Frames(LATENCY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stereo block is shifted on its mid: a dual-mono input gives exactly the mono result on
    /// both sides; a shifter that keeps stereo shifts each side on its own.
    #[test]
    fn stereo_blocks_shift_the_mid_unless_keeping_stereo() {
        let mut mono = PitchShift::new(-4.0, 1.0);
        let mut stereo = PitchShift::new(-4.0, 1.0);
        let mut keep = PitchShift::new(-4.0, 1.0).keep_stereo(true);
        for n in 0..40u64 {
            let m = crate::test_signals::sine_block(220.0, 0.3, n, 1);
            let mut s = crate::test_signals::sine_block(220.0, 0.3, n, 2);
            let mut k = s.clone();
            // Keep-stereo input: the left side silent.
            k.channel_mut(0).fill(0.0);
            let mut m2 = m.clone();
            mono.process(&mut m2);
            stereo.process(&mut s);
            keep.process(&mut k);
            assert_eq!(s.channel(0), m2.channel(0));
            assert_eq!(s.channel(1), m2.channel(0));
            assert!(k.channel(0).iter().all(|v| *v == 0.0), "left stays silent");
            if n > 4 {
                assert_eq!(k.channel(1), m2.channel(0), "right shifted alone");
            }
        }
    }

    #[test]
    fn fast_trig_is_accurate() {
        for i in 0..=20_000 {
            let p = -PI + TAU * i as f32 / 20_000.0;
            assert!((fast_sin(p) - p.sin()).abs() < 1e-5, "sin {p}");
            let (y, x) = (p.sin() * 3.0, p.cos() * 3.0);
            let d = fast_atan2(y, x) - y.atan2(x);
            let d = d - TAU * (d / TAU).round();
            assert!(d.abs() < 2e-5, "atan2 {p}: {d}");
        }
    }
}
