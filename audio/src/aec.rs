//! Acoustic echo cancellation for real rooms: a delay estimator that finds and follows the
//! device's render→capture delay, a partitioned-block frequency-domain Kalman filter (after
//! Enzner & Vary; overlap-save, 10 ms partitions, [`TAIL_MS`] of room tail after the delay) and
//! a residual-echo suppressor. Allocation-free after `prepare`, no added latency.
//!
//! * **Delay**: binary spectra (Kleijn's delay estimator, as in WebRTC): per 10 ms block each of
//!   32 bands (300 Hz–6.7 kHz) is 1 when its energy is above its running mean, for the far end
//!   and the microphone; the far-end lag (0–[`MAX_DELAY_MS`] in 10 ms steps) whose bits agree
//!   best with the microphone's, averaged over far-end activity, is the delay. A new delay is
//!   taken after it has won for 250 ms of far-end speech; the filter's partitions shift with it,
//!   so what was learnt is kept. The filter starts 50 ms before the estimate (which lands up to
//!   30 ms after the direct path).
//! * **Filter**: each bin of each partition carries its own uncertainty, so the step is large
//!   while the echo path is unknown and shrinks by itself when the error is dominated by near-end
//!   speech (double talk) — no double-talk detector. The filter's constraint (its second half of
//!   taps zeroed) is applied to four partitions per block in turn (alternately constrained, as in
//!   Speex's MDF), which keeps the cost of a 400 ms filter within budget.
//! * **Residual echo**: what the filter leaves is predicted from the far end's power spectra
//!   through a second, power-domain path (per partition and bin, learnt by NLMS on |E|² while the
//!   far end talks alone and the coherent filter explains a good part of the microphone, so a
//!   reference that never echoes teaches it nothing): it follows clock drift and the room's
//!   tail, which the coherent filter does not fully cancel. Beside it the coherent estimate
//!   (leak × |echo estimate|², Valin's estimator as in Speex, plus the filter's misadjustment
//!   ½ Σ P|X|²). A near-end detector (the error above [`DT_RATIO`] × the residual for
//!   [`DT_BLOCKS`] blocks, held 250 ms) switches the power prediction's over-subtraction from 8
//!   (far end alone: the echo goes) to 1 (double talk: bins where the near end dominates are
//!   kept) and freezes its learning; the coherent estimate is over-subtracted by 2. Gain floor
//!   −40 dB.
//! * **Coherence** (as WebRTC's older AEC uses it): the magnitude-squared coherence of the
//!   microphone with the echo estimate, per bin (spectra smoothed over ~65 ms). Echo alone keeps
//!   it high even where the coherent filter cancels only a few dB (clock drift, the tail), a
//!   near-end talker lowers it. The near-end state needs the mean coherence below
//!   [`NEAR_COH`] (the error-above-residual test alone fired on echo in rooms whose residual it
//!   under-predicts), and a bin coherent above [`ECHO_COH`] ([`ECHO_COH_NEAR`] in the near-end
//!   state) has its power prediction over-subtracted by [`ECHO_OVERSUB`]: echo-only bins are
//!   cut hard while bins the near end dominates keep the gentle gain.
//!   [`Aec::near_end_active`] tells later stages (the AGC) whether what is left is
//!   near-end speech.
//!
//! The reference must be what is sent to the output device; feed it with
//! [`Aec::analyze_render`] before processing the capture block recorded while it played.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::BLOCK_FRAMES;

const N: usize = BLOCK_FRAMES;
const M: usize = 2 * BLOCK_FRAMES;
const BINS: usize = BLOCK_FRAMES + 1;
/// Echo tail the filter spans after the estimated delay, in ms (40 partitions of 10 ms).
pub const TAIL_MS: usize = 400;
const P: usize = TAIL_MS / 10;
/// Longest device delay the estimator looks for, in ms.
pub const MAX_DELAY_MS: usize = 500;
const LAGS: usize = MAX_DELAY_MS / 10 + 1;
const HIST: usize = LAGS + P;
/// The filter starts this many blocks before the estimated delay: the binary-spectrum estimate
/// lands 10–30 ms after the direct path (it finds where the room's energy lines up best), and a
/// filter that starts after the direct path cannot cancel it (2 blocks: RT60 0.8 s / 300 ms
/// estimated at 330 ms, ERLE 6 dB).
const MARGIN: usize = 5;
/// Partitions constrained per block.
const CONSTRAIN: usize = 4;
const BANDS: usize = 32;
const BAND_START: usize = 6;
const BAND_WIDTH: usize = 4;
/// Coherence of the microphone with the echo estimate: bins averaged for the near-end
/// detector (300 Hz–6 kHz)...
const COH_LO: usize = 6;
const COH_HI: usize = 120;
/// ...and the smoothing of the spectra it is computed from (about 65 ms).
const COH_SMOOTH: f32 = 0.85;
/// The near-end state needs the mean coherence below this (echo alone stays above it even where
/// the coherent filter cancels little, because the estimate still follows the echo).
const NEAR_COH: f32 = 0.6;
/// A bin whose coherence is above this (far end alone) or [`ECHO_COH_NEAR`] (near-end state) is
/// echo: its power-path prediction is over-subtracted by [`ECHO_OVERSUB`].
const ECHO_COH: f32 = 0.5;
const ECHO_COH_NEAR: f32 = 0.7;
const ECHO_OVERSUB: f32 = 64.0;
/// Far-end activity threshold: block power of −50 dBFS.
const FAR_ACTIVE: f32 = 1e-5;
/// Deepest residual-echo gain (−40 dB).
const MIN_GAIN: f32 = 0.01;
/// Over-subtraction of the coherent residual estimate.
const COHERENT_OVERSUB: f32 = 2.0;
/// Step of the residual-echo power path (NLMS on power spectra).
const MU_POWER: f32 = 0.6;
/// Far-end blocks after which the power path counts as learnt (its update is gated then).
const POWER_LEARN_BLOCKS: u32 = 100;
/// Near end: the error's power above this multiple of the residual-echo estimate...
const DT_RATIO: f32 = 2.0;
/// ...for this many blocks in a row (an echo onset the estimate lags is shorter)...
const DT_BLOCKS: u32 = 3;
/// ...puts the suppressor in its near-end state for this many blocks (250 ms).
const DT_HOLD: u32 = 25;

type Spectrum = Vec<Complex<f32>>;

/// The echo canceller stage (mono: a stereo block is processed on its first channel and the
/// result copied to both).
pub struct Aec {
    fwd: Option<Arc<dyn RealToComplex<f32>>>,
    inv: Option<Arc<dyn ComplexToReal<f32>>>,
    fwd_scratch: Spectrum,
    inv_scratch: Spectrum,
    hist: Vec<Spectrum>,
    hist_pow: Vec<Vec<f32>>,
    far_bits: Vec<u32>,
    hist_pos: usize,
    w: Vec<Spectrum>,
    p: Vec<Vec<f32>>,
    psi_s: Vec<f32>,
    sx: Vec<f32>,
    gain: Vec<f32>,
    eh: Vec<f32>,
    yh: Vec<f32>,
    erl: Vec<f32>,
    /// Residual-echo power path: per partition and bin, how much of the far end's power is
    /// left in the error (learnt on power spectra, so clock drift and the tail's fine structure
    /// do not bias it).
    h2: Vec<Vec<f32>>,
    /// Residual echo predicted for this block, per bin.
    r2: Vec<f32>,
    tmp: Vec<f32>,
    /// Blocks of far-end activity the residual path has learnt on.
    h2_blocks: u32,
    pey: f32,
    pyy: f32,
    leak: f32,
    far_prev: [f32; N],
    mic_prev: [f32; N],
    far_pending: [f32; N],
    far_fresh: bool,
    far_mean: [f32; BANDS],
    mic_mean: [f32; BANDS],
    cost: Vec<f32>,
    candidate: usize,
    candidate_blocks: u32,
    active_blocks: u32,
    bulk: usize,
    hint_ms: i32,
    delay_found: bool,
    constrain_pos: usize,
    time: Vec<f32>,
    spec: Spectrum,
    e_spec: Spectrum,
    y_spec: Spectrum,
    near_active: bool,
    far_active: bool,
    /// Transition factor A (how fast the echo path may drift).
    pub transition: f32,
    /// Residual-echo suppressor over-subtraction while the far end talks alone (0 = off).
    pub postfilter: f32,
    /// Over-subtraction while the near end talks (double talk).
    pub postfilter_near: f32,
    /// Blocks the near-end state holds after the error last exceeded the residual estimate.
    hold: u32,
    /// Consecutive blocks the error has exceeded [`DT_RATIO`] × the residual estimate.
    over: u32,
    /// Smoothed auto- and cross-spectra of the microphone (D) and the echo estimate (Y), and
    /// their magnitude-squared coherence per bin and averaged over [`COH_LO`]..=[`COH_HI`].
    s_dd: Vec<f32>,
    s_yy: Vec<f32>,
    s_dy: Spectrum,
    coh_k: Vec<f32>,
    coh: f32,
}

impl std::fmt::Debug for Aec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aec")
            .field("delay_ms", &self.delay_ms())
            .finish_non_exhaustive()
    }
}

impl Default for Aec {
    fn default() -> Self {
        Aec::new()
    }
}

fn band_bits(spec: &[Complex<f32>], mean: &mut [f32; BANDS], update: bool) -> u32 {
    let mut bits = 0u32;
    for (b, m) in mean.iter_mut().enumerate() {
        let s = BAND_START + b * BAND_WIDTH;
        let e: f32 = spec[s..s + BAND_WIDTH].iter().map(|c| c.norm_sqr()).sum();
        let e = (e + 1e-9).ln();
        if update {
            *m += 0.02 * (e - *m);
        }
        if e > *m {
            bits |= 1 << b;
        }
    }
    bits
}

impl Aec {
    /// An unprepared canceller.
    pub fn new() -> Aec {
        Aec {
            fwd: None,
            inv: None,
            fwd_scratch: Vec::new(),
            inv_scratch: Vec::new(),
            hist: Vec::new(),
            hist_pow: Vec::new(),
            far_bits: Vec::new(),
            hist_pos: 0,
            w: Vec::new(),
            p: Vec::new(),
            psi_s: Vec::new(),
            sx: Vec::new(),
            gain: Vec::new(),
            eh: Vec::new(),
            yh: Vec::new(),
            erl: Vec::new(),
            h2: Vec::new(),
            r2: Vec::new(),
            tmp: Vec::new(),
            h2_blocks: 0,
            pey: 0.0,
            pyy: 0.0,
            leak: 1.0,
            far_prev: [0.0; N],
            mic_prev: [0.0; N],
            far_pending: [0.0; N],
            far_fresh: false,
            far_mean: [0.0; BANDS],
            mic_mean: [0.0; BANDS],
            cost: Vec::new(),
            candidate: 0,
            candidate_blocks: 0,
            active_blocks: 0,
            bulk: 0,
            hint_ms: 0,
            delay_found: false,
            constrain_pos: 0,
            time: Vec::new(),
            spec: Vec::new(),
            e_spec: Vec::new(),
            y_spec: Vec::new(),
            near_active: true,
            far_active: false,
            postfilter: 8.0,
            postfilter_near: 1.0,
            transition: 0.999,
            hold: 0,
            over: 0,
            s_dd: Vec::new(),
            s_yy: Vec::new(),
            s_dy: Vec::new(),
            coh_k: Vec::new(),
            coh: 0.0,
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

    /// Tells the canceller the devices' render→capture delay, in ms (0–500): where the filter
    /// starts until the estimator has found the delay itself.
    pub fn set_stream_delay_ms(&mut self, ms: i32) {
        self.hint_ms = ms.clamp(0, MAX_DELAY_MS as i32);
        if !self.delay_found {
            let blocks = (self.hint_ms as usize / 10).saturating_sub(MARGIN);
            self.shift_to(blocks);
        }
    }

    /// The render→capture delay the filter is aligned to now, in ms (its start plus the margin).
    pub fn delay_ms(&self) -> usize {
        (self.bulk + MARGIN) * 10
    }

    /// Whether the estimator has found the delay from the signals.
    pub fn delay_found(&self) -> bool {
        self.delay_found
    }

    /// Whether the last block's output is near-end sound rather than echo: true when the far end
    /// was silent or the error clearly exceeded the residual echo expected from the far end.
    pub fn near_end_active(&self) -> bool {
        self.near_active
    }

    /// The residual-echo leak estimate (what fraction of the echo estimate's power is left).
    pub fn leak(&self) -> f32 {
        self.leak
    }

    /// Moves the filter's start to `blocks` after the far end, shifting what it has learnt.
    fn shift_to(&mut self, blocks: usize) {
        let blocks = blocks.min(LAGS - 1);
        if blocks == self.bulk {
            return;
        }
        if !self.w.is_empty() {
            // Partition q of the new filter is partition q + d of the old one.
            if blocks > self.bulk {
                let d = (blocks - self.bulk).min(P);
                self.w.rotate_left(d);
                self.p.rotate_left(d);
                self.h2.rotate_left(d);
                for q in P - d..P {
                    self.w[q].fill(Complex::new(0.0, 0.0));
                    self.p[q].fill(0.05);
                    self.h2[q].fill(0.0);
                }
            } else {
                let d = (self.bulk - blocks).min(P);
                self.w.rotate_right(d);
                self.p.rotate_right(d);
                self.h2.rotate_right(d);
                for q in 0..d {
                    self.w[q].fill(Complex::new(0.0, 0.0));
                    self.p[q].fill(0.05);
                    self.h2[q].fill(0.0);
                }
            }
        }
        self.bulk = blocks;
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

    fn update_delay(&mut self, mic_bits: u32, far_power: f32) {
        if far_power < FAR_ACTIVE {
            return;
        }
        self.active_blocks = self.active_blocks.saturating_add(1);
        let mut best = 0;
        let mut sum = 0.0;
        for lag in 0..LAGS {
            let fb = self.far_bits[(self.hist_pos + HIST - lag) % HIST];
            let c = (fb ^ mic_bits).count_ones() as f32;
            self.cost[lag] += 0.03 * (c - self.cost[lag]);
            sum += self.cost[lag];
            if self.cost[lag] < self.cost[best] {
                best = lag;
            }
        }
        if self.active_blocks < 50 {
            return;
        }
        let mean = sum / LAGS as f32;
        if self.cost[best] > mean - 2.0 {
            return;
        }
        if best == self.candidate {
            self.candidate_blocks = self.candidate_blocks.saturating_add(1);
        } else {
            self.candidate = best;
            self.candidate_blocks = 0;
        }
        if self.candidate_blocks >= 25 {
            let start = best.saturating_sub(MARGIN);
            // Within one block of the current start: leave it (the filter covers it).
            if !self.delay_found || start.abs_diff(self.bulk) > 1 {
                self.shift_to(start);
            }
            self.delay_found = true;
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
        self.hist = vec![zero.clone(); HIST];
        self.hist_pow = vec![vec![0.0; BINS]; HIST];
        self.far_bits = vec![0; HIST];
        self.p = vec![vec![0.0; BINS]; P];
        self.psi_s = vec![0.0; BINS];
        self.sx = vec![0.0; BINS];
        self.gain = vec![1.0; BINS];
        self.eh = vec![0.0; BINS];
        self.yh = vec![0.0; BINS];
        self.erl = vec![1.0; BINS];
        self.h2 = vec![vec![0.0; BINS]; P];
        self.r2 = vec![0.0; BINS];
        self.tmp = vec![0.0; BINS];
        self.cost = vec![BANDS as f32 / 2.0; LAGS];
        self.time = vec![0.0; M];
        self.e_spec = zero.clone();
        self.s_dy = zero.clone();
        self.s_dd = vec![0.0; BINS];
        self.s_yy = vec![0.0; BINS];
        self.coh_k = vec![0.0; BINS];
        self.y_spec = zero.clone();
        self.spec = zero;
        self.reset();
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        if self.fwd.is_none() {
            return;
        }
        // Far end: spectrum of [previous block, this block] into the history.
        let far = if self.far_fresh {
            self.far_pending
        } else {
            [0.0; N]
        };
        self.far_fresh = false;
        let far_power = far.iter().map(|s| s * s).sum::<f32>() / N as f32;
        self.far_active = far_power >= FAR_ACTIVE;
        self.time[..N].copy_from_slice(&self.far_prev);
        self.time[N..].copy_from_slice(&far);
        self.far_prev = far;
        self.fft();
        self.hist_pos = (self.hist_pos + 1) % HIST;
        self.hist[self.hist_pos].copy_from_slice(&self.spec);
        for (pw, x) in self.hist_pow[self.hist_pos].iter_mut().zip(&self.spec) {
            *pw = x.norm_sqr();
        }
        let far_active = self.far_active;
        self.far_bits[self.hist_pos] = band_bits(&self.spec, &mut self.far_mean, far_active);

        // Microphone bits for the delay estimator.
        self.time[..N].copy_from_slice(&self.mic_prev);
        self.time[N..].copy_from_slice(block.channel(0));
        self.mic_prev.copy_from_slice(block.channel(0));
        self.fft();
        let mic_bits = band_bits(&self.spec, &mut self.mic_mean, far_active);
        self.update_delay(mic_bits, far_power);

        let base = self.hist_pos + HIST - self.bulk;
        // Echo estimate.
        self.y_spec.fill(Complex::new(0.0, 0.0));
        for q in 0..P {
            let x = &self.hist[(base - q) % HIST];
            for ((s, w), xk) in self.y_spec.iter_mut().zip(&self.w[q]).zip(x) {
                *s += w * xk;
            }
        }
        self.spec.copy_from_slice(&self.y_spec);
        self.ifft();
        let mic = block.channel_mut(0);
        let mut e = [0.0f32; N];
        let mut yt = [0.0f32; N];
        for i in 0..N {
            yt[i] = self.time[N + i] / M as f32;
            e[i] = mic[i] - yt[i];
            mic[i] = e[i];
        }
        self.time[..N].fill(0.0);
        self.time[N..].copy_from_slice(&e);
        self.fft();
        self.e_spec.copy_from_slice(&self.spec);
        // Coherence of the microphone with the echo estimate (both framed as the error is:
        // D = E + Y), smoothed per bin, averaged over 300 Hz–6 kHz.
        self.time[..N].fill(0.0);
        self.time[N..].copy_from_slice(&yt);
        self.fft();
        {
            let a = COH_SMOOTH;
            let mut sum = 0.0f32;
            for k in 0..BINS {
                let y = self.spec[k];
                let d = self.e_spec[k] + y;
                self.s_dd[k] = a * self.s_dd[k] + (1.0 - a) * d.norm_sqr();
                self.s_yy[k] = a * self.s_yy[k] + (1.0 - a) * y.norm_sqr();
                self.s_dy[k] = self.s_dy[k] * a + d * y.conj() * (1.0 - a);
                let c = self.s_dy[k].norm_sqr() / (self.s_dd[k] * self.s_yy[k] + 1e-20);
                self.coh_k[k] = c;
                if (COH_LO..=COH_HI).contains(&k) {
                    sum += c;
                }
            }
            self.coh = sum / (COH_HI - COH_LO + 1) as f32;
        }

        // Kalman: expected error power = residual echo (½ Σ P|X|², the ½ from the zero-padded
        // error) + near-end/noise power ψ_s.
        self.sx.fill(0.0);
        for q in 0..P {
            let xp = &self.hist_pow[(base - q) % HIST];
            for ((s, p), x2) in self.sx.iter_mut().zip(&self.p[q]).zip(xp) {
                *s += p * x2;
            }
        }
        for k in 0..BINS {
            let pe = self.e_spec[k].norm_sqr();
            let near = (pe - 0.5 * self.sx[k]).max(1e-12);
            self.psi_s[k] = 0.5 * self.psi_s[k] + 0.5 * near;
        }

        // Residual echo: leak (correlation of |E|² and |Y|² over time) × |Y|².
        // Σ W·X is the natural-scale spectrum of the whole 2N frame of the echo estimate.
        let scale = 0.5;
        if self.far_active {
            let (mut pey, mut pyy) = (0.0f32, 0.0f32);
            for k in 0..BINS {
                let ee = self.e_spec[k].norm_sqr();
                let yy = self.y_spec[k].norm_sqr() * scale;
                pey += (ee - self.eh[k]) * (yy - self.yh[k]);
                pyy += (yy - self.yh[k]) * (yy - self.yh[k]);
                self.eh[k] += 0.01 * (ee - self.eh[k]);
                self.yh[k] += 0.01 * (yy - self.yh[k]);
            }
            let beta = 0.02;
            self.pey += beta * (pey - self.pey);
            self.pyy += beta * (pyy - self.pyy);
            self.pey = self.pey.max(0.005 * self.pyy);
            self.leak = (self.pey / (self.pyy + 1e-20)).clamp(0.0, 1.0);
        }
        // Per bin, what fraction of the echo estimate is left, learnt while the error is well
        // below the echo estimate (echo alone, no near end).
        let (mut err_all, mut echo_all) = (0.0f32, 0.0f32);
        for k in 0..BINS {
            err_all += self.e_spec[k].norm_sqr();
            echo_all += self.y_spec[k].norm_sqr() * scale;
        }
        // It falls fast and rises slowly, so a near-end talker the gate lets through raises it
        // little.
        if self.far_active && err_all < 0.3 * echo_all {
            for k in 0..BINS {
                let yy = self.y_spec[k].norm_sqr() * scale + 1e-12;
                let r = (self.e_spec[k].norm_sqr() / yy).min(1.0);
                let rate = if r < self.erl[k] { 0.1 } else { 0.02 };
                self.erl[k] += rate * (r - self.erl[k]);
            }
        }
        // Residual echo predicted from the far end's power through the learnt power path.
        self.r2.fill(0.0);
        for q in 0..P {
            let xp = &self.hist_pow[(base - q) % HIST];
            for ((r, h), x2) in self.r2.iter_mut().zip(&self.h2[q]).zip(xp) {
                *r += h * x2;
            }
        }
        let (mut err_pow, mut res_pow) = (0.0f32, 0.0f32);
        for k in 0..BINS {
            let ee = self.e_spec[k].norm_sqr() + 1e-12;
            let coherent =
                self.leak.max(self.erl[k]) * self.y_spec[k].norm_sqr() * scale + 0.5 * self.sx[k];
            let residual = self.r2[k].max(coherent);
            self.tmp[k] = coherent;
            err_pow += ee;
            res_pow += residual;
        }
        if err_pow > DT_RATIO * res_pow + 1e-9 && self.coh < NEAR_COH {
            self.over = self.over.saturating_add(1);
        } else {
            self.over = 0;
        }
        if self.over >= DT_BLOCKS {
            self.hold = DT_HOLD;
        } else {
            self.hold = self.hold.saturating_sub(1);
        }
        let pf = if self.hold > 0 {
            self.postfilter_near
        } else {
            self.postfilter
        };
        if self.postfilter > 0.0 {
            for k in 0..BINS {
                let ee = self.e_spec[k].norm_sqr() + 1e-12;
                // The state's over-subtraction applies to the power path's prediction; the
                // coherent estimate keeps its own (2), which a reference that never echoes
                // leaves at the filter's small misadjustment.
                // A bin the echo estimate explains (coherent with the microphone) is echo: it
                // gets the strong over-subtraction, in the near-end state only when very
                // coherent (a bin the near end dominates is not).
                let thr = if self.hold == 0 {
                    ECHO_COH
                } else {
                    ECHO_COH_NEAR
                };
                let pfk = if self.coh_k[k] > thr {
                    ECHO_OVERSUB.max(pf)
                } else {
                    pf
                };
                let r = (pfk * self.r2[k]).max(COHERENT_OVERSUB * self.tmp[k]);
                let g = (1.0 - r / ee).clamp(MIN_GAIN, 1.0);
                self.gain[k] = if g < self.gain[k] {
                    g
                } else {
                    0.5 * self.gain[k] + 0.5 * g
                };
            }
        }
        // Learn the power path on far-end activity, unless the error is far above what it
        // predicts once it has learnt (double talk); each bin's correction is bounded by twice
        // its prediction, so a near-end burst cannot blow it up.
        let r2_sum: f32 = self.r2.iter().sum();
        let converged = self.h2_blocks >= POWER_LEARN_BLOCKS;
        // Only where the coherent filter explains a good part of the microphone (its echo
        // estimate at least half the error's power): a reference that never reaches the
        // microphone (music on headphones) must not teach it the near end.
        let echoing = echo_all >= 0.5 * err_all;
        if self.far_active && echoing && (!converged || (self.hold == 0 && err_pow <= 4.0 * r2_sum))
        {
            self.h2_blocks = self.h2_blocks.saturating_add(1);
            // Per bin, Σ_q X2² normalises the step (NLMS on power spectra).
            self.tmp.iter_mut().for_each(|v| *v = 0.0);
            for q in 0..P {
                let xp = &self.hist_pow[(base - q) % HIST];
                for (s, x2) in self.tmp.iter_mut().zip(xp) {
                    *s += x2 * x2;
                }
            }
            for k in 0..BINS {
                let ee = self.e_spec[k].norm_sqr();
                let err = ee - self.r2[k];
                let err = if converged {
                    err.min(2.0 * self.r2[k] + 1e-6)
                } else {
                    err
                };
                self.tmp[k] = MU_POWER * err / (self.tmp[k] + 1e-12);
            }
            for q in 0..P {
                let xp = &self.hist_pow[(base - q) % HIST];
                for ((h, x2), st) in self.h2[q].iter_mut().zip(xp).zip(&self.tmp) {
                    *h = (*h + st * x2).max(0.0);
                }
            }
        }
        // Near end: the error clearly above the echo the filter expects to be left (which
        // includes the room's tail after the far end stops).
        self.near_active = err_pow > 4.0 * res_pow + 1e-9;
        if self.postfilter > 0.0 {
            for k in 0..BINS {
                self.spec[k] = self.e_spec[k] * self.gain[k];
            }
            self.ifft();
            let mic = block.channel_mut(0);
            for i in 0..N {
                mic[i] = self.time[N + i] / M as f32;
            }
        }

        // Filter update (unconstrained), then the constraint on CONSTRAIN partitions in turn.
        let a2 = self.transition * self.transition;
        for k in 0..BINS {
            // `sx` now holds the inverse of the expected error power per bin.
            self.sx[k] = 1.0 / (0.5 * self.sx[k] + self.psi_s[k] + 1e-12);
        }
        for q in 0..P {
            let xi = (base - q) % HIST;
            let x = &self.hist[xi];
            let xp = &self.hist_pow[xi];
            let w = &mut self.w[q];
            let p = &mut self.p[q];
            for k in 0..BINS {
                let g = p[k] * self.sx[k];
                w[k] += x[k].conj() * self.e_spec[k] * g;
                let pk = p[k] * (1.0 - 0.5 * g * xp[k]).max(0.0);
                p[k] = a2 * pk + (1.0 - a2) * w[k].norm_sqr() + 1e-12;
            }
        }
        for _ in 0..CONSTRAIN {
            let q = self.constrain_pos;
            self.constrain_pos = (self.constrain_pos + 1) % P;
            self.spec.copy_from_slice(&self.w[q]);
            self.ifft();
            self.time[N..].fill(0.0);
            for t in self.time[..N].iter_mut() {
                *t /= M as f32;
            }
            self.fft();
            self.w[q].copy_from_slice(&self.spec);
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
        for x in self.hist.iter_mut() {
            x.fill(Complex::new(0.0, 0.0));
        }
        for x in self.hist_pow.iter_mut() {
            x.fill(0.0);
        }
        self.far_bits.fill(0);
        self.cost.fill(BANDS as f32 / 2.0);
        self.far_mean = [0.0; BANDS];
        self.mic_mean = [0.0; BANDS];
        self.eh.fill(0.0);
        self.yh.fill(0.0);
        self.erl.fill(1.0);
        for h in self.h2.iter_mut() {
            h.fill(0.0);
        }
        self.r2.fill(0.0);
        self.h2_blocks = 0;
        self.s_dd.fill(0.0);
        self.s_yy.fill(0.0);
        self.s_dy.fill(Complex::new(0.0, 0.0));
        self.coh = 0.0;
        self.hold = 0;
        self.over = 0;
        self.pey = 0.0;
        self.pyy = 0.0;
        self.leak = 1.0;
        self.candidate = 0;
        self.candidate_blocks = 0;
        self.active_blocks = 0;
        self.delay_found = false;
        self.far_prev = [0.0; N];
        self.mic_prev = [0.0; N];
        self.gain.fill(1.0);
        self.far_fresh = false;
        self.near_active = true;
        self.far_active = false;
        self.bulk = (self.hint_ms as usize / 10).saturating_sub(MARGIN);
    }
}
