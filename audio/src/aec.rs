//! Acoustic echo cancellation: a frequency-domain Kalman filter (state-space partitioned-block
//! adaptive filter after Enzner & Vary, overlap-save, 10 ms partitions) plus a residual-echo
//! postfilter driven by the filter's own uncertainty. Allocation-free after `prepare`, no added
//! latency.
//!
//! Each bin of each partition carries its own uncertainty, so the step is large while the echo
//! path is unknown and shrinks by itself when the error is dominated by near-end speech (double
//! talk) — no double-talk detector. The postfilter removes what the filter itself says is left
//! (½ Σ P|X|²) and keeps gain ≈ 1 in bins where near-end speech dominates the error.
//!
//! Far-end alignment: a bulk delay ([`Aec::set_stream_delay_ms`], the devices' render→capture
//! delay minus a margin) followed by a filter spanning [`TAIL_MS`]. The reference must be what
//! is sent to the output device; feed it with [`Aec::analyze_render`] before processing the
//! capture block recorded while it played.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::BLOCK_FRAMES;

const N: usize = BLOCK_FRAMES;
const M: usize = 2 * BLOCK_FRAMES;
const BINS: usize = BLOCK_FRAMES + 1;
/// Echo tail the filter spans after the bulk delay, in ms (10 partitions of 10 ms).
pub const TAIL_MS: usize = 100;
const P: usize = TAIL_MS / 10;
/// Longest bulk delay, in ms.
pub const MAX_BULK_DELAY_MS: usize = 500;
/// The bulk delay stops this short of the reported device delay, so jitter never makes the echo
/// arrive before the filter's window.
const BULK_MARGIN_MS: usize = 20;

type Spectrum = Vec<Complex<f32>>;

/// The echo canceller stage (mono: a stereo block is processed on its first channel and the
/// result copied to both).
pub struct Aec {
    fwd: Option<Arc<dyn RealToComplex<f32>>>,
    inv: Option<Arc<dyn ComplexToReal<f32>>>,
    fwd_scratch: Spectrum,
    inv_scratch: Spectrum,
    w: Vec<Spectrum>,
    p: Vec<Vec<f32>>,
    psi_s: Vec<f32>,
    xs: Vec<Spectrum>,
    x_pos: usize,
    far_frame: Vec<f32>,
    far_pending: [f32; N],
    far_fresh: bool,
    bulk: Vec<f32>,
    bulk_pos: usize,
    bulk_delay: usize,
    delay_ms: i32,
    time: Vec<f32>,
    spec: Spectrum,
    e_spec: Spectrum,
    sx: Vec<f32>,
    gain: Vec<f32>,
    /// Transition factor A (how fast the echo path may drift).
    pub transition: f32,
    /// Residual-echo postfilter over-subtraction (0 = off).
    pub postfilter: f32,
}

impl std::fmt::Debug for Aec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aec").finish_non_exhaustive()
    }
}

impl Default for Aec {
    fn default() -> Self {
        Aec::new()
    }
}

impl Aec {
    /// An unprepared canceller.
    pub fn new() -> Aec {
        Aec {
            fwd: None,
            inv: None,
            fwd_scratch: Vec::new(),
            inv_scratch: Vec::new(),
            w: Vec::new(),
            p: Vec::new(),
            psi_s: Vec::new(),
            xs: Vec::new(),
            x_pos: 0,
            far_frame: Vec::new(),
            far_pending: [0.0; N],
            far_fresh: false,
            bulk: Vec::new(),
            bulk_pos: 0,
            bulk_delay: 0,
            delay_ms: 0,
            time: Vec::new(),
            spec: Vec::new(),
            e_spec: Vec::new(),
            sx: Vec::new(),
            gain: Vec::new(),
            postfilter: 1.5,
            transition: 0.9995,
        }
    }

    /// Feeds one block of the far-end reference.
    pub fn analyze_render(&mut self, far: &Block) {
        let stereo = far.channels() == 2;
        let (l, r) = (far.channel(0), far.channel(1));
        for i in 0..N {
            self.far_pending[i] = if stereo { 0.5 * (l[i] + r[i]) } else { l[i] };
        }
        self.far_fresh = true;
    }

    /// Tells the canceller the render→capture delay of the devices, in ms (0–500).
    pub fn set_stream_delay_ms(&mut self, ms: i32) {
        self.delay_ms = ms.clamp(0, MAX_BULK_DELAY_MS as i32);
        let frames = (self.delay_ms as usize).saturating_sub(BULK_MARGIN_MS) * 48;
        self.bulk_delay = frames.min(self.bulk.len().saturating_sub(N));
    }

    fn fft(&mut self) {
        if let Some(f) = &self.fwd {
            let _ = f.process_with_scratch(&mut self.time, &mut self.spec, &mut self.fwd_scratch);
        }
    }

    fn ifft(&mut self) {
        if let Some(i) = &self.inv {
            self.spec[0].im = 0.0;
            self.spec[BINS - 1].im = 0.0;
            let _ = i.process_with_scratch(&mut self.spec, &mut self.time, &mut self.inv_scratch);
        }
    }
}

impl Processor for Aec {
    fn prepare(&mut self, spec: StreamSpec) -> Result<(), PrepareError> {
        if spec.rate.hz() != 48_000 {
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
        let zero = vec![Complex::new(0.0, 0.0); BINS];
        self.w = vec![zero.clone(); P];
        self.xs = vec![zero.clone(); P];
        self.p = vec![vec![0.0; BINS]; P];
        self.psi_s = vec![0.0; BINS];
        self.sx = vec![0.0; BINS];
        self.gain = vec![1.0; BINS];
        self.far_frame = vec![0.0; M];
        self.bulk = vec![0.0; MAX_BULK_DELAY_MS * 48 + N];
        self.set_stream_delay_ms(self.delay_ms);
        self.time = vec![0.0; M];
        self.e_spec = zero.clone();
        self.spec = zero;
        self.reset();
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        if self.fwd.is_none() {
            return;
        }
        // Far end: newest spectrum of [previous block, this block].
        let far = if self.far_fresh {
            self.far_pending
        } else {
            [0.0; N]
        };
        self.far_fresh = false;
        let len = self.bulk.len();
        self.far_frame.copy_within(N.., 0);
        for i in 0..N {
            let w = (self.bulk_pos + i) % len;
            self.bulk[w] = far[i];
            self.far_frame[N + i] = self.bulk[(w + len - self.bulk_delay) % len];
        }
        self.bulk_pos = (self.bulk_pos + N) % len;
        self.time.copy_from_slice(&self.far_frame);
        self.fft();
        self.x_pos = (self.x_pos + 1) % P;
        self.xs[self.x_pos].copy_from_slice(&self.spec);

        // Echo estimate.
        self.spec.fill(Complex::new(0.0, 0.0));
        for q in 0..P {
            let x = &self.xs[(self.x_pos + P - q) % P];
            for ((s, w), xk) in self.spec.iter_mut().zip(&self.w[q]).zip(x) {
                *s += w * xk;
            }
        }
        self.ifft();
        let mic = block.channel_mut(0);
        let mut e = [0.0f32; N];
        for i in 0..N {
            e[i] = mic[i] - self.time[N + i] / M as f32;
            mic[i] = e[i];
        }
        self.time[..N].fill(0.0);
        self.time[N..].copy_from_slice(&e);
        self.fft();
        self.e_spec.copy_from_slice(&self.spec);

        // Kalman gain per bin: expected error power = residual echo (½ Σ P|X|², the ½ from the
        // zero-padded error) + near-end/noise power ψ_s.
        self.sx.fill(0.0);
        for q in 0..P {
            let x = &self.xs[(self.x_pos + P - q) % P];
            for k in 0..BINS {
                self.sx[k] += self.p[q][k] * x[k].norm_sqr();
            }
        }
        for k in 0..BINS {
            let pe = self.e_spec[k].norm_sqr();
            let near = (pe - 0.5 * self.sx[k]).max(1e-12);
            self.psi_s[k] = 0.5 * self.psi_s[k] + 0.5 * near;
        }
        // Residual-echo postfilter: the filter's own misadjustment (½ Σ P|X|²) against the error
        // power; near-end speech raises the error power, so its bins keep gain ≈ 1.
        if self.postfilter > 0.0 {
            for k in 0..BINS {
                let pe = self.e_spec[k].norm_sqr() + 1e-12;
                let g = (1.0 - self.postfilter * 0.5 * self.sx[k] / pe).clamp(0.03, 1.0);
                self.gain[k] = if g < self.gain[k] {
                    g
                } else {
                    0.5 * self.gain[k] + 0.5 * g
                };
                self.spec[k] = self.e_spec[k] * self.gain[k];
            }
            self.ifft();
            let mic = block.channel_mut(0);
            for i in 0..N {
                mic[i] = self.time[N + i] / M as f32;
            }
        }
        let a2 = self.transition * self.transition;
        for q in 0..P {
            let xi = (self.x_pos + P - q) % P;
            for k in 0..BINS {
                let denom = 0.5 * self.sx[k] + self.psi_s[k] + 1e-12;
                let g = self.p[q][k] / denom;
                self.spec[k] = self.xs[xi][k].conj() * self.e_spec[k] * g;
                let x2 = self.xs[xi][k].norm_sqr();
                let pk = self.p[q][k] * (1.0 - 0.5 * g * x2).max(0.0);
                self.p[q][k] = a2 * pk + (1.0 - a2) * self.w[q][k].norm_sqr() + 1e-12;
            }
            // Constrain the update to the first N taps.
            self.ifft();
            self.time[N..].fill(0.0);
            for t in self.time[..N].iter_mut() {
                *t /= M as f32;
            }
            self.fft();
            for (w, g) in self.w[q].iter_mut().zip(&self.spec) {
                *w += g;
            }
        }
        if block.channels() == 2 {
            let (l, r) = block.pair_mut();
            r.copy_from_slice(l);
        }
    }

    fn reset(&mut self) {
        for w in self.w.iter_mut() {
            w.fill(Complex::new(0.0, 0.0));
        }
        for p in self.p.iter_mut() {
            p.fill(0.05);
        }
        self.psi_s.fill(0.0);
        for x in self.xs.iter_mut() {
            x.fill(Complex::new(0.0, 0.0));
        }
        self.far_frame.fill(0.0);
        self.bulk.fill(0.0);
        self.gain.fill(1.0);
        self.far_fresh = false;
    }
}
