//! Classic noise suppression: an STFT Wiener filter (20 ms sqrt-Hann frames, 10 ms hop) with a
//! decision-directed a-priori SNR and a noise spectrum tracked as the minimum of the smoothed
//! power (falls at once, rises by at most 1.7 dB/s, so speech never counts as noise). Allocation-free after `prepare`; one block of latency (the overlap-add).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::{BLOCK_FRAMES, Frames};

const N: usize = BLOCK_FRAMES;
const M: usize = 2 * BLOCK_FRAMES;
const BINS: usize = BLOCK_FRAMES + 1;

/// The noise floor may rise this much per block (+1.7 dB/s): slow enough that a talker's
/// sustained vowels never become "noise", fast enough for a fan that starts.
const MIN_RISE: f32 = 1.004;
/// Noise power over its tracked minimum (the minimum of a smoothed periodogram sits ~4 dB
/// below its mean).
const NOISE_BIAS: f32 = 2.5;

/// How hard the suppressor works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NsLevel {
    /// About 6 dB.
    Low,
    /// About 12 dB.
    Moderate,
    /// About 18 dB.
    #[default]
    High,
    /// About 21 dB.
    VeryHigh,
}

#[derive(Debug, Clone)]
struct ChannelState {
    input: Vec<f32>,
    overlap: Vec<f32>,
    smoothed: Vec<f32>,
    minimum: Vec<f32>,
    clean_prev: Vec<f32>,
    frames: u32,
}

impl Default for NoiseSuppressor {
    fn default() -> Self {
        NoiseSuppressor::new(NsLevel::default())
    }
}

/// The noise suppression stage.
pub struct NoiseSuppressor {
    fwd: Option<Arc<dyn RealToComplex<f32>>>,
    inv: Option<Arc<dyn ComplexToReal<f32>>>,
    fwd_scratch: Vec<Complex<f32>>,
    inv_scratch: Vec<Complex<f32>>,
    window: Vec<f32>,
    time: Vec<f32>,
    spec: Vec<Complex<f32>>,
    channels: Vec<ChannelState>,
    min_gain: f32,
}

impl std::fmt::Debug for NoiseSuppressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseSuppressor")
            .field("min_gain", &self.min_gain)
            .finish_non_exhaustive()
    }
}

impl NoiseSuppressor {
    /// A suppressor whose deepest cut follows `level` (8, 14, 20 or 25 dB).
    pub fn new(level: NsLevel) -> NoiseSuppressor {
        let floor_db: f32 = match level {
            NsLevel::Low => -8.0,
            NsLevel::Moderate => -14.0,
            NsLevel::High => -20.0,
            NsLevel::VeryHigh => -25.0,
        };
        NoiseSuppressor {
            fwd: None,
            inv: None,
            fwd_scratch: Vec::new(),
            inv_scratch: Vec::new(),
            window: Vec::new(),
            time: Vec::new(),
            spec: Vec::new(),
            channels: Vec::new(),
            min_gain: 10f32.powf(floor_db / 20.0),
        }
    }
}

impl Processor for NoiseSuppressor {
    fn prepare(&mut self, spec: StreamSpec) -> Result<(), PrepareError> {
        if spec.rate.hz() != 48_000 || !(1..=2).contains(&spec.channels) {
            return Err(PrepareError::Unsupported {
                rate: spec.rate.hz(),
                channels: spec.channels,
            });
        }
        let mut planner = RealFftPlanner::<f32>::new();
        let fwd = planner.plan_fft_forward(M);
        let inv = planner.plan_fft_inverse(M);
        self.fwd_scratch = fwd.make_scratch_vec();
        self.inv_scratch = inv.make_scratch_vec();
        self.fwd = Some(fwd);
        self.inv = Some(inv);
        // sqrt of a periodic Hann: analysis × synthesis = Hann, which overlap-adds to 1 at 50 %.
        self.window = (0..M)
            .map(|i| (0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / M as f32).cos()).sqrt())
            .collect();
        self.time = vec![0.0; M];
        self.spec = vec![Complex::new(0.0, 0.0); BINS];
        self.channels = (0..spec.channels)
            .map(|_| ChannelState {
                input: vec![0.0; M],
                overlap: vec![0.0; N],
                smoothed: vec![0.0; BINS],
                minimum: vec![0.0; BINS],
                clean_prev: vec![0.0; BINS],
                frames: 0,
            })
            .collect();
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        let (Some(fwd), Some(inv)) = (self.fwd.clone(), self.inv.clone()) else {
            return;
        };
        let n_ch = block.channels().min(self.channels.len());
        for ch in 0..n_ch {
            let st = &mut self.channels[ch];
            let x = block.channel_mut(ch);
            st.input.copy_within(N.., 0);
            st.input[N..].copy_from_slice(x);
            for i in 0..M {
                self.time[i] = st.input[i] * self.window[i];
            }
            let _ = fwd.process_with_scratch(&mut self.time, &mut self.spec, &mut self.fwd_scratch);
            st.frames = st.frames.saturating_add(1);
            let first = st.frames == 1;
            for k in 0..BINS {
                let p = self.spec[k].norm_sqr();
                // Power smoothing, then continuous minimum tracking (rises slowly, falls at once).
                st.smoothed[k] = if first {
                    p
                } else {
                    0.7 * st.smoothed[k] + 0.3 * p
                };
                let s = st.smoothed[k];
                st.minimum[k] = if first || s < st.minimum[k] {
                    s
                } else {
                    MIN_RISE * st.minimum[k]
                };
                st.minimum[k] = st.minimum[k].max(1e-12);
                let noise = NOISE_BIAS * st.minimum[k];
                let post = p / noise;
                let prio =
                    (0.98 * st.clean_prev[k] / noise + 0.02 * (post - 1.0).max(0.0)).max(1e-3);
                let g = (prio / (1.0 + prio)).max(self.min_gain);
                self.spec[k] *= g;
                st.clean_prev[k] = g * g * p;
            }
            self.spec[0].im = 0.0;
            self.spec[BINS - 1].im = 0.0;
            let _ = inv.process_with_scratch(&mut self.spec, &mut self.time, &mut self.inv_scratch);
            for i in 0..N {
                x[i] = st.overlap[i] + self.time[i] * self.window[i] / M as f32;
                st.overlap[i] = self.time[N + i] * self.window[N + i] / M as f32;
            }
        }
        if block.channels() == 2 && n_ch == 1 {
            let (l, r) = block.pair_mut();
            r.copy_from_slice(l);
        }
    }

    fn reset(&mut self) {
        for st in self.channels.iter_mut() {
            st.input.fill(0.0);
            st.overlap.fill(0.0);
            st.smoothed.fill(0.0);
            st.minimum.fill(0.0);
            st.clean_prev.fill(0.0);
            st.frames = 0;
        }
    }

    fn latency(&self) -> Frames {
        Frames(N)
    }
}
