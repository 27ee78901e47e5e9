//! Acoustic echo cancellation for real rooms: a delay estimator that finds and follows the
//! device's render→capture delay, a partitioned-block frequency-domain Kalman filter (after
//! Enzner & Vary; overlap-save, 10 ms partitions, [`TAIL_MS`] of room tail after the delay) and
//! a residual-echo suppressor. Allocation-free after `prepare`; the suppressor adds 5 ms of
//! latency (its low-delay overlap-add, [`SYN_D`]).
//!
//! * **Delay**: binary spectra (Kleijn's delay estimator, as in WebRTC): per 10 ms block each of
//!   32 bands (300 Hz–6.7 kHz) is 1 when its energy is above its running mean, for the far end
//!   and the microphone; the far-end lag (0–[`MAX_DELAY_MS`] in 10 ms steps) whose bits agree
//!   best with the microphone's, averaged over far-end activity, is the delay. A new delay is
//!   taken after it has won for 200 ms of far-end speech (not counted in the near-end state once
//!   a delay is found: the microphone's bits are the near end's then); the filter's partitions
//!   shift with it, so what was learnt is kept. The filter starts 50 ms before the estimate
//!   (which lands up to 30 ms after the direct path).
//! * **Filter**: each bin of each partition carries its own uncertainty, so the step is large
//!   while the echo path is unknown and shrinks by itself when the error is dominated by near-end
//!   speech (double talk) — no double-talk detector. The uncertainty starts small ([`P_INIT`])
//!   and decays along a room's tail after the echo's expected start: the delay estimator's best
//!   lag until the delay is found, the found delay after. The filter's constraint (its second
//!   half of taps zeroed) is applied to four partitions per block in turn (alternately
//!   constrained, as in Speex's MDF), which keeps the cost of a 400 ms filter within budget.
//!   Beside it a **slow filter** (as WebRTC AEC3 pairs a refined and a coarse filter) steps by
//!   [`SLOW_STEP`] of the Kalman gain on its own error over the first [`SLOW_PARTS`]
//!   partitions (the Kalman filter's taps after them), so its gradient noise is lower once the
//!   path is learnt; the output (and everything the suppressor reads) is the error of whichever
//!   has the lower smoothed error power, and the Kalman filter's taps are copied into the slow
//!   one when it is clearly ahead (the start, a changed path).
//! * **Clock drift**: the reference is read back through a fractional-delay interpolator
//!   (16-tap Kaiser-windowed sinc) at a lag that moves by the estimated drift every sample. The
//!   drift is measured every 250 ms from how far the filter's taps slid (the phase turn of its
//!   spectra over 200 Hz–4 kHz) and taken into the rate in part, so the loop closes over a few
//!   seconds; the lag wraps by a block together with the filter's start, so it stays bounded.
//!   With the filter at the far end's first block the lag cannot fall under its least; there,
//!   when the echo comes ever earlier and the filter's first taps are empty, the reference is
//!   read [`HEADROOM`] samples later and the taps moved as much earlier (in a far-end pause),
//!   so the lag can fall again. The filter itself then only has to follow what the rate misses
//!   (transition 0.998 with the far end alone, 0.9998 in the near-end state).
//! * **Residual echo**: what the filter leaves is predicted from the far end's power spectra
//!   through a second, power-domain path (per partition and bin, learnt by NLMS on |E|² while the
//!   far end talks alone and the coherent filter explains a good part of the microphone, so a
//!   reference that never echoes teaches it nothing): it follows clock drift and the room's
//!   tail, which the coherent filter does not fully cancel. Beside it the coherent estimate
//!   (leak × |echo estimate|², Valin's estimator as in Speex, plus the filter's misadjustment
//!   ½ Σ P|X|²). A near-end detector (the error above [`DT_RATIO`] × the residual for
//!   [`DT_BLOCKS`] blocks, held 250 ms; 400 ms after [`DT_BLOCKS_LONG`] once the path is
//!   learnt; entered only while the microphone is above [`NEAR_ERL`] of the echo a learnt
//!   echo-return loss predicts from the far end) switches the power prediction's over-subtraction from 8
//!   (far end alone: the echo goes) to 4 (double talk, where the gain takes Wiener's form, so
//!   bins where the near end dominates are kept) and lets it learn only downwards (where the smoothed error is under its
//!   prediction: the coherent filter has improved since); the coherent estimate is
//!   over-subtracted by 2 (1 in the near-end state). Gain floor −40 dB.
//! * **Framing of the suppressor**: its gains are applied on a windowed analysis of the error
//!   (the last 20 ms, Mauler & Martin's low-delay windows) and resynthesised by overlap-add
//!   every 5 ms; everything it compares with the error is on the same window: the far end's
//!   power spectra the power path learns on and predicts from, the echo estimate's spectrum
//!   and the filter's misadjustment (Σ P|X|² on the windowed far end). The coherent estimate's
//!   two parts are weighted by the bin's coherence (c and √c), so a reference that never
//!   echoes (the filter fits the near end through its leakage) leaves the near end alone. In
//!   the gain (not in the near-end detector) the misadjustment counts × [`MISADJ_SLOW`] while
//!   the slow filter's output goes on and × [`MISADJ_NEAR`] in the near-end state.
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
use crate::units::{BLOCK_FRAMES, Frames};

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
/// The filter's initial uncertainty per bin and partition (the Kalman state's P)... (0.01: the
/// linear filter alone 16.9 dB on ten echo rooms, 2–12 s, against 15.2 with 0.05; 0.005 took
/// RT60 0.8 s / 300 ms to 22.4 dB ERLE through the chain, bar 25.)
const P_INIT: f32 = 0.01;
/// ...and, once the delay is found, its cap on each partition after the direct path: this factor
/// per 10 ms partition (a room-decay prior; 0.92: double talk PESQ +0.01 to +0.12 and EchoDT 0
/// to +0.7 dB in every room of the sweep, ERLE bars kept; 0.85 cost RT60 0.6 s / 200 ms 0.2
/// PESQ, and a decaying P from the start, before the delay is known, starved long delays).
const P_TAIL_DECAY: f32 = 0.92;
/// Before the delay is found, P after the delay estimator's current best lag (two partitions
/// after it) is capped by this factor per partition, re-applied whenever the best lag moves:
/// the early prior that follows the echo instead of assuming it is near.
const P_EARLY_DECAY: f32 = 0.9;
/// Smoothing of the Kalman filter's near-end/noise power estimate ψ per block (0.5 before;
/// 0.8–0.9 helped with the far end alone but cost double talk: a slow ψ lags a near-end onset).
const PSI_SMOOTH: f32 = 0.7;
/// Partitions constrained per block.
const CONSTRAIN: usize = 4;
/// The slow filter (a second set of taps beside the Kalman filter's, as in WebRTC AEC3's
/// refined/coarse pair): it steps by this fraction of the Kalman gain on its own error, so its
/// gradient noise is lower once the path is learnt, while the Kalman filter follows changes.
/// The error (and echo estimate) of whichever has the lower smoothed error power goes on...
const SLOW_STEP: f32 = 0.5;
/// ...smoothed by this per block (about half a second)...
const SLOW_SELECT_SMOOTH: f32 = 0.98;
/// ...and the Kalman filter's taps are copied into the slow filter, with the far end active
/// and outside the near-end state, when its error power is under this fraction of the slow
/// filter's (the path changed, or the start).
const SLOW_COPY: f32 = 0.8;
/// The filter's misadjustment (Σ P|Xw|², from the Kalman filter's uncertainty) counts in the
/// suppressor's gain at this fraction while the slow filter's output goes on (its gradient
/// noise is lower than the Kalman filter's P says)...
const MISADJ_SLOW: f32 = 0.25;
/// ...and at this fraction in the near-end state, where the residual estimate ran 4–4.5 dB over
/// the true residual in bins the near end holds. Both apply to the gain only: the near-end
/// detector keeps the whole misadjustment (with it scaled there too, false near-end states on
/// echo took RT60 0.8 s / 300 ms from 26.2 to 25.2 dB ERLE).
const MISADJ_NEAR: f32 = 0.25;
/// Partitions the slow filter spans from the filter's start (100 ms: the direct path and the
/// early reflections); after them it shares the Kalman filter's taps. The whole 40 read the
/// same on the sweep (double talk echo 16.64 against 16.61 dB down, PESQ 2.491 against 2.497)
/// at four times the cost (+0.9 M instructions a block against +0.3 M).
const SLOW_PARTS: usize = 10;
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
/// ...and by this in the near-end state (with Wiener's form, below), where a coherent bin
/// still carries near end.
const ECHO_OVERSUB_NEAR: f32 = 8.0;
/// In the near-end state the gain is E² / (E² + NEAR_WIENER × residual) (Wiener's form) rather
/// than 1 − residual / E²: the residual it is given runs 10–14 dB over the true residual in
/// double talk (the coherent estimate's over-subtraction), and subtraction cut holes in the
/// near end; Wiener's form never takes a bin at its predicted residual below 1 / (1 +
/// NEAR_WIENER). 2 against subtraction: double talk PESQ +0.10 to +0.32 and echo 0.5–1.2 dB
/// further down in every room of the sweep; 1 kept more near end but took RT60 0.6 s / 0 ms to
/// 34.9 dB ERLE (false near-end states on echo keep more of it). 4 since the aec12 round, with
/// the power prediction over-subtracted by 4 in that state ([`Aec::postfilter_near`]): the
/// echo left on the AEC's output, read exactly (`report.py`'s EchoAEC), 0.7–1.7 dB further
/// down in all nine double-talk rooms of the sweep (19.96–27.69 → 21.68–28.74 dB) for PESQ
/// 2.660 → 2.593 (lowest 2.355 → 2.279); `tests/dsp_quality.rs`'s double talk keeps 87.4 % of
/// the near end (90.0 % with 2; an earlier suppressor failed its 75 % with 4).
const NEAR_WIENER: f32 = 4.0;
/// ...used only while the coherent filter's echo estimate is at least this fraction of the
/// error's power.
const NEAR_WIENER_ECHOING: f32 = 0.25;
/// Far-end blocks a lag must win in a row before the filter moves to it (200 ms; 250 ms before
/// the aec12 round: the delay found sooner, double talk at RT60 0.4 s / 200 ms PESQ 2.28 →
/// 2.42 and its echo left on the AEC's output 21.68 → 21.87 dB; the echo rooms' ERLE −0.1 to
/// +3.0 dB. 150 ms read as well, 100 ms took a wrong first lag at RT60 0.8 s / 200 ms, ERLE
/// 48.7 → −0.1 dB: in long rooms which lag wins first moves with this count).
const DELAY_WIN_BLOCKS: u32 = 20;
/// Far-end activity threshold: block power of −50 dBFS.
const FAR_ACTIVE: f32 = 1e-5;
/// Deepest residual-echo gain (−40 dB).
const MIN_GAIN: f32 = 0.01;
/// Over-subtraction of the coherent residual estimate while the far end talks alone...
const COHERENT_OVERSUB: f32 = 2.0;
/// ...and in the near-end state (with the coherence weighting the coherent estimate no longer
/// dominates bins the near end holds; 1: echo in double talk 0.1–0.5 dB further down).
const COHERENT_OVERSUB_NEAR: f32 = 1.0;
/// Step of the residual-echo power path (NLMS on power spectra).
const MU_POWER: f32 = 0.6;
/// Far-end blocks after which the power path counts as learnt (its update is gated then).
const POWER_LEARN_BLOCKS: u32 = 100;
/// Near end: the error's power above this multiple of the residual-echo estimate...
const DT_RATIO: f32 = 2.0;
/// ...for this many blocks in a row (an echo onset the estimate lags is shorter)...
const DT_BLOCKS: u32 = 3;
/// ...puts the suppressor in its near-end state for this many blocks (250 ms)...
const DT_HOLD: u32 = 25;
/// ...or, for [`DT_BLOCKS_LONG`] blocks in a row once the filter has had [`DT_LONG_AFTER`]
/// far-end blocks since the delay was found, for this many (400 ms): a talker's short pauses
/// then keep the near-end state, whose gains keep the near end (double talk on the sweep: PESQ
/// mean 2.210 → 2.380, 1.72–2.78 → 2.01–2.76; echo 15.75 → 16.16 dB down; the echo left in the
/// first 0.5 s after the near end stops, the far end going on, 19.5 → 18.8 dB under the
/// microphone). Before the filter has learnt the path, an error above the residual for longer
/// is still often echo (RT60 0.8 s / 300 ms: 26.5 → 22.6 dB ERLE with the long hold from the
/// start).
const DT_HOLD_LONG: u32 = 40;
const DT_BLOCKS_LONG: u32 = 6;
const DT_LONG_AFTER: u32 = 100;
/// Entering the near-end state also needs the microphone's power (smoothed, 300 Hz–6 kHz) above
/// this fraction of the echo the far end would make through a learnt per-bin echo-return
/// loss: a loud far-end burst the filter has not learnt (RT60 0.8 s / 300 ms at 4.3 s, the
/// error 3–7 dB over the residual, the mean coherence 0.56–0.61) reads 0.39–0.43 of its
/// prediction, a talker mostly above it. Only the entry is gated (a state already held
/// goes on without it).
const NEAR_ERL: f32 = 0.6;
/// The echo-return loss is learnt per bin from the microphone's power over the far end's
/// power in the filter's first [`ERL_PARTS`] partitions after the direct path, both smoothed
/// by [`ERL_SMOOTH`] per block, at [`ERL_RATE`] per block while the far end talks alone and the
/// microphone is coherent with the echo estimate (mean above [`ERL_COH`]).
const ERL_PARTS: usize = 8;
const ERL_SMOOTH: f32 = 0.9;
const ERL_RATE: f32 = 0.05;
const ERL_COH: f32 = 0.7;

/// The suppressor's synthesis delay, in samples (5 ms): its gains are applied on frames of the
/// last [`M`] samples of the error, windowed by a long analysis window and resynthesised by a
/// short one (Mauler & Martin's low-delay analysis–synthesis), one frame every `SYN_D` samples.
/// The residual it subtracts is predicted on the same window (the far end's and the echo
/// estimate's spectra on it), so a reference's leakage does not reach bins the error's window
/// keeps apart.
const SYN_D: usize = 240;
/// Synthesis frames per block.
const SYN_FRAMES: usize = N / SYN_D;

/// Taps of the reference's fractional-delay interpolator (a Kaiser-windowed sinc) and the
/// fractional positions it is tabulated at.
const INTERP_TAPS: usize = 16;
const INTERP_PHASES: usize = 256;
/// Reference samples kept for the interpolator (a power of two).
const RING: usize = 2048;
/// The least lag (samples) the interpolator can read the reference at: its half length.
const LAG_MIN: f64 = (INTERP_TAPS / 2 + 1) as f64;
/// Where the reference's lag starts: at its least. Any lag ahead of the echo costs a path with
/// no device delay its first taps (0.5 ms of lag took the synthetic double-talk test of
/// `tests/dsp_quality.rs` from 77 % of the near end kept to 73 %). A capture clock running slow
/// against the playout clock (the echo comes ever earlier) is followed by a block more lag and
/// the filter's start a block earlier; with the filter at the far end's first block (a device
/// delay under 60 ms) the lag stays at its least and the filter tracks that drift itself.
const LAG_START: f64 = LAG_MIN;
/// The lag above which it is taken down a block (and the filter's start a block later): a
/// block and a half above its least, so a lag just raised by a block does not fall back.
const LAG_HIGH: f64 = LAG_MIN + 1.5 * N as f64;
/// The most lag the ring holds (reached only with the filter at its latest start, where the
/// lag cannot be taken down a block).
const LAG_CAP: f64 = (RING - N - INTERP_TAPS) as f64;
/// Blocks between two measurements of the echo path's drift (250 ms; 1 s before the aec11
/// round: with [`DRIFT_GAIN`] 0.4 instead of 0.7 the loop reaches the drift sooner in the
/// rooms whose delay is found late, RT60 0.4 s / 200 ms echo in double talk 15.07 → 15.35 dB).
const DRIFT_BLOCKS: u32 = 25;
/// Far-end blocks before the first drift measurement (1 s; 2 s before the aec8 round: the
/// first measurement then came after the double talk of the sweep had started, and the filter,
/// slow there, had to follow the rate's first large step in it: RT60 0.4 s / 200 ms echo in
/// double talk 13.2 → 13.7 dB, the sweep's mean 15.66 → 15.75 dB).
const DRIFT_START: u32 = 100;
/// Bins whose phase the drift is read from (200 Hz–4 kHz).
const DRIFT_LO: usize = 4;
const DRIFT_HI: usize = 80;
const DRIFT_BINS: usize = DRIFT_HI - DRIFT_LO + 1;
/// Largest drift the filter's shift is searched for per measurement, in samples, and the step.
const DRIFT_SEARCH: f32 = 8.0;
const DRIFT_STEP: f32 = 1.0 / 16.0;
/// A measurement counts when the filter's change is this well explained by a pure shift.
const DRIFT_FIT: f32 = 0.7;
/// Fraction of a measured drift taken into the resampling rate per measurement.
const DRIFT_GAIN: f64 = 0.4;
/// Samples the reference is read later (and the filter's taps moved earlier) when the lag is
/// pinned at its least with the filter at the far end's first block, the echo comes ever
/// earlier and the filter's first taps are empty (0.5 ms: at 17 ppm 30 s of drift).
const HEADROOM: usize = 24;
/// The filter's first taps count as empty when the largest of its first [`HEADROOM`] + half the
/// interpolator's taps is this far under the largest tap of its first two partitions (−20 dB).
const HEADROOM_EMPTY: f32 = 0.01;
/// Far-end blocks in a row without activity before the taps are moved (the history the filter
/// spans is then mostly silence, whose lag does not matter; the sweep's pauses are 310–390 ms).
const HEADROOM_QUIET: u32 = 30;
/// The largest clock drift followed (±200 ppm; hosts drift ±100 ppm).
const DRIFT_MAX: f64 = 200e-6;

type Spectrum = Vec<Complex<f32>>;

/// The near end's part of the canceller's processing ([`Aec::enable_components`]): its part
/// of the microphone for this block, its history on the error's frames, its synthesis
/// overlap-add, and the last block's output and near-end part of it.
struct Components {
    near_in: [f32; N],
    hist: Vec<f32>,
    ola: Vec<f32>,
    near_out: [f32; N],
    out: [f32; N],
}

/// The echo canceller stage (mono: a stereo block is processed on its first channel and the
/// result copied to both).
pub struct Aec {
    fwd: Option<Arc<dyn RealToComplex<f32>>>,
    inv: Option<Arc<dyn ComplexToReal<f32>>>,
    fwd_scratch: Spectrum,
    inv_scratch: Spectrum,
    hist: Vec<Spectrum>,
    hist_pow: Vec<Vec<f32>>,
    /// The far end's power spectra on the suppressor's analysis window (what the residual is
    /// predicted from), per frame of the history.
    hist_pow_w: Vec<Vec<f32>>,
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
    /// The error's power per bin, smoothed over ~30 ms (the power path's downward learning).
    ee_s: Vec<f32>,
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
    /// The best lag the early prior on P was last applied for (before the delay is found).
    prior_lag: usize,
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
    /// Transition factor A (how fast the echo path may drift) while the far end talks alone...
    pub transition: f32,
    /// ...and in the near-end state (double talk), where a filter that moves fast learns the
    /// near end (0.9998 since the aec11 round, 0.9995 before: echo in double talk +0.04 to
    /// +0.28 dB in all nine rooms of the sweep once the pinned room's drift is followed).
    pub transition_near: f32,
    /// Residual-echo suppressor over-subtraction while the far end talks alone (0 = off).
    pub postfilter: f32,
    /// Over-subtraction of the power path's prediction while the near end talks (double talk;
    /// 4 since the aec12 round, 1 before: alone, 4 took the echo left in double talk 0.1–0.9 dB
    /// further down on the AEC's output, most in RT60 0.4 s / 200 ms, for PESQ 2.660 → 2.637).
    pub postfilter_near: f32,
    /// Whether the clock drift is estimated and the reference resampled by it.
    pub drift_tracking: bool,
    /// Blocks the near-end state holds after the error last exceeded the residual estimate.
    hold: u32,
    /// Consecutive blocks the error has exceeded [`DT_RATIO`] × the residual estimate.
    over: u32,
    /// Far-end blocks since the delay was found.
    found_blocks: u32,
    /// Smoothed auto- and cross-spectra of the microphone (D) and the echo estimate (Y), and
    /// their magnitude-squared coherence per bin and averaged over [`COH_LO`]..=[`COH_HI`].
    s_dd: Vec<f32>,
    s_yy: Vec<f32>,
    s_dy: Spectrum,
    coh_k: Vec<f32>,
    coh: f32,
    /// The far end as it came (a ring of samples), read by a fractional-delay interpolator at
    /// `lag` samples behind its newest sample; `lag` moves by `rate` per sample: the clock
    /// drift between playout and capture, estimated from how the filter's taps move.
    ring: Vec<f32>,
    ring_pos: usize,
    lag: f64,
    rate: f64,
    interp: Vec<f32>,
    /// The filter's spectra over [`DRIFT_LO`]..=[`DRIFT_HI`] at the last drift measurement,
    /// the blocks (and far-end blocks) since, and whether the snapshot is comparable.
    w_snap: Vec<Spectrum>,
    snap_blocks: u32,
    snap_active: u32,
    snap_valid: bool,
    /// Whether the reference is to be read [`HEADROOM`] samples later at the next far-end
    /// pause, and how many blocks the far end has been quiet.
    headroom_pending: bool,
    far_quiet: u32,
    /// The linear filter's output of the last block (before the suppressor), for studies.
    linear: [f32; N],
    /// The error's last `M + N` samples (the suppressor's frames end in this block), the echo
    /// estimate's last `M`, the analysis and synthesis windows, the error's and the echo
    /// estimate's spectra on the analysis window (the frame ending with this block), the
    /// filter's misadjustment on it, and the synthesis overlap-add, whose first `SYN_D` samples
    /// are output next.
    e_hist: Vec<f32>,
    y_hist: Vec<f32>,
    win_a: Vec<f32>,
    win_s: Vec<f32>,
    ew_spec: Spectrum,
    yw_spec: Spectrum,
    sxw: Vec<f32>,
    ola: Vec<f32>,
    /// The near end's own part of the output, for studies ([`Aec::enable_components`]).
    components: Option<Box<Components>>,
    /// Scales the windowed frame's power to a 10 ms block's (N / Σ win_a²).
    win_norm: f32,
    /// The slow filter's taps, its echo estimate's spectrum, its error's spectrum, the
    /// Kalman filter's error spectrum (what the Kalman update and ψ use whichever filter's
    /// output goes on), and the two errors' smoothed powers.
    w_slow: Vec<Spectrum>,
    y_slow_spec: Spectrum,
    e_slow_spec: Spectrum,
    e_fast_spec: Spectrum,
    fast_pow: f32,
    slow_pow: f32,
    /// The learnt echo-return loss per bin, the far end's power at the path's start and the
    /// microphone's, both smoothed, and the microphone over the echo they predict.
    erl_k: Vec<f32>,
    far_s: Vec<f32>,
    mic_s: Vec<f32>,
    erl_ratio: f32,
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

/// Adds to `out` the echo the taps `w` make of the far end's spectra in `hist` over the
/// partitions `parts` (partition q reads the block `base − q`).
fn add_echo(
    out: &mut [Complex<f32>],
    w: &[Spectrum],
    hist: &[Spectrum],
    base: usize,
    parts: std::ops::Range<usize>,
) {
    for q in parts {
        let x = &hist[(base - q) % HIST];
        for ((s, wk), xk) in out.iter_mut().zip(&w[q]).zip(x) {
            *s += wk * xk;
        }
    }
}

/// Moves partition-indexed `parts` with the filter's start going from `from` to `to` blocks
/// after the far end (partition q afterwards is partition q + to − from before); `clear` empties
/// the partitions that come in new.
fn slide<T>(parts: &mut [T], from: usize, to: usize, clear: impl FnMut(&mut T)) {
    let n = parts.len();
    if to > from {
        let d = (to - from).min(n);
        parts.rotate_left(d);
        parts[n - d..].iter_mut().for_each(clear);
    } else {
        let d = (from - to).min(n);
        parts.rotate_right(d);
        parts[..d].iter_mut().for_each(clear);
    }
}

fn power(x: &[f32; N]) -> f32 {
    x.iter().map(|s| s * s).sum::<f32>() / N as f32
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
            hist_pow_w: Vec::new(),
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
            ee_s: Vec::new(),
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
            prior_lag: usize::MAX,
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
            postfilter_near: 4.0,
            transition: 0.998,
            transition_near: 0.9998,
            drift_tracking: true,
            hold: 0,
            over: 0,
            found_blocks: 0,
            s_dd: Vec::new(),
            s_yy: Vec::new(),
            s_dy: Vec::new(),
            coh_k: Vec::new(),
            coh: 0.0,
            ring: Vec::new(),
            ring_pos: 0,
            lag: LAG_START,
            rate: 0.0,
            interp: Vec::new(),
            w_snap: Vec::new(),
            snap_blocks: 0,
            snap_active: 0,
            snap_valid: false,
            headroom_pending: false,
            far_quiet: 0,
            linear: [0.0; N],
            e_hist: Vec::new(),
            y_hist: Vec::new(),
            win_a: Vec::new(),
            win_s: Vec::new(),
            ew_spec: Vec::new(),
            yw_spec: Vec::new(),
            sxw: Vec::new(),
            ola: Vec::new(),
            components: None,
            win_norm: 1.0,
            w_slow: Vec::new(),
            y_slow_spec: Vec::new(),
            e_slow_spec: Vec::new(),
            e_fast_spec: Vec::new(),
            fast_pow: 0.0,
            slow_pow: 0.0,
            erl_k: Vec::new(),
            far_s: Vec::new(),
            mic_s: Vec::new(),
            erl_ratio: 0.0,
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

    /// The last block's linear-filter output (the microphone minus the echo estimate, before
    /// the residual-echo suppressor): what `examples/aec_linear.rs` studies.
    pub fn linear_output(&self) -> &[f32] {
        &self.linear
    }

    /// Makes the canceller also carry the microphone's near-end part through its processing,
    /// for studies of what it leaves of the echo (the offline CLI's `--near-component`):
    /// before each [`Processor::process`] the near end's part of that block goes in with
    /// [`Aec::set_near_component`], and after it [`Aec::components`] gives the block's output
    /// and the near end's part of it — the same suppressor gains on the same frames, so the
    /// rest, output − near part, is exactly what is left of the echo (and of anything else the
    /// microphone held besides the near end). Allocates: not for the live path.
    pub fn enable_components(&mut self) {
        self.components = Some(Box::new(Components {
            near_in: [0.0; N],
            hist: vec![0.0; M + N],
            ola: vec![0.0; 2 * SYN_D],
            near_out: [0.0; N],
            out: [0.0; N],
        }));
    }

    /// The near end's part of the next block's microphone (channel 0; `near` shorter than a
    /// block is padded with silence). Nothing happens unless [`Aec::enable_components`] was
    /// called.
    pub fn set_near_component(&mut self, near: &[f32]) {
        if let Some(c) = self.components.as_mut() {
            let n = near.len().min(N);
            c.near_in[..n].copy_from_slice(&near[..n]);
            c.near_in[n..].fill(0.0);
        }
    }

    /// The last block's output (channel 0) and the near end's part of it, if
    /// [`Aec::enable_components`] was called.
    pub fn components(&self) -> Option<(&[f32], &[f32])> {
        self.components
            .as_ref()
            .map(|c| (&c.out[..], &c.near_out[..]))
    }

    /// The near end's part of this block's output: its history through the suppressor's frames
    /// with this block's gains (or delayed as the error is, with the suppressor off).
    fn near_part(&mut self, c: &mut Components) {
        if self.postfilter <= 0.0 {
            c.near_out
                .copy_from_slice(&c.hist[M - SYN_D..M + N - SYN_D]);
            return;
        }
        for j in 1..=SYN_FRAMES {
            Self::window_into(
                &mut self.time,
                &c.hist[j * SYN_D..j * SYN_D + M],
                &self.win_a,
            );
            self.fft();
            self.synthesize(&mut c.ola, &mut c.near_out[(j - 1) * SYN_D..j * SYN_D]);
        }
    }

    /// Applies this block's gains to the frame's spectrum in `self.spec`, overlap-adds its
    /// synthesis into `ola` and moves the `SYN_D` samples it completes to `out`.
    fn synthesize(&mut self, ola: &mut [f32], out: &mut [f32]) {
        for (s, g) in self.spec.iter_mut().zip(&self.gain) {
            *s *= *g;
        }
        self.ifft();
        for (i, o) in ola.iter_mut().enumerate() {
            let t = M - 2 * SYN_D + i;
            *o += self.time[t] * self.win_s[t] / M as f32;
        }
        out.copy_from_slice(&ola[..SYN_D]);
        ola.copy_within(SYN_D.., 0);
        ola[SYN_D..].fill(0.0);
    }

    /// The residual-echo leak estimate (what fraction of the echo estimate's power is left).
    pub fn leak(&self) -> f32 {
        self.leak
    }

    /// The lag (samples) the reference is read at now, behind its newest sample (for studies:
    /// `examples/aec_linear.rs` traces it).
    pub fn lag_samples(&self) -> f64 {
        self.lag
    }

    /// The clock drift the reference is resampled by, in ppm (positive: the playout clock runs
    /// fast against the capture clock, so the echo comes ever earlier).
    pub fn drift_ppm(&self) -> f64 {
        -self.rate * 1e6
    }

    /// The next block of the reference, read from the ring at the current lag (which moves by
    /// the drift rate per sample).
    fn resample(&mut self, lag: f64, out: &mut [f32; N]) {
        let newest = self.ring_pos + RING - 1;
        let half = INTERP_TAPS / 2;
        for (i, o) in out.iter_mut().enumerate() {
            let lag = (lag + self.rate * (i + 1) as f64).clamp(LAG_MIN, LAG_CAP);
            // Position newest − t: the sample `back` behind the newest, plus `frac`.
            let t = (N - 1 - i) as f64 + lag;
            let back = t.ceil();
            let frac = back - t;
            let phase = (frac * INTERP_PHASES as f64).round() as usize;
            let h = &self.interp[phase * INTERP_TAPS..(phase + 1) * INTERP_TAPS];
            // Taps at offsets −(half − 1)..=half around the sample `back` behind the newest.
            let first = newest - back as usize - (half - 1);
            let mut acc = 0.0f32;
            for (k, hk) in h.iter().enumerate() {
                acc += hk * self.ring[(first + k) % RING];
            }
            *o = acc;
        }
    }

    /// Puts `x[start..start + M]` times the analysis window into `time`.
    fn window_into(time: &mut [f32], x: &[f32], win: &[f32]) {
        for ((t, v), w) in time.iter_mut().zip(x).zip(win) {
            *t = v * w;
        }
    }

    /// Pushes the far end's frame [`prev`, `cur`] into the history (spectrum, power, bits).
    fn push_frame(&mut self, prev: &[f32; N], cur: &[f32; N], far_active: bool) {
        self.time[..N].copy_from_slice(prev);
        self.time[N..].copy_from_slice(cur);
        self.fft();
        self.hist_pos = (self.hist_pos + 1) % HIST;
        self.hist[self.hist_pos].copy_from_slice(&self.spec);
        for (pw, x) in self.hist_pow[self.hist_pos].iter_mut().zip(&self.spec) {
            *pw = x.norm_sqr();
        }
        self.far_bits[self.hist_pos] = band_bits(&self.spec, &mut self.far_mean, far_active);
        // The same frame on the suppressor's analysis window, scaled to a block's power.
        for (i, t) in self.time.iter_mut().enumerate() {
            *t = if i < N { prev[i] } else { cur[i - N] } * self.win_a[i];
        }
        self.fft();
        for (pw, x) in self.hist_pow_w[self.hist_pos].iter_mut().zip(&self.spec) {
            *pw = x.norm_sqr() * self.win_norm;
        }
    }

    /// Measures how far the filter's taps moved since the last measurement (the phase turn of
    /// its spectra over 200 Hz–4 kHz that best explains the change, searched to a sixteenth of
    /// a sample) and takes part of it into the drift rate: a filter that keeps sliding later
    /// means the reference must lag more. The filter's own tracking lags the drift, so the
    /// loop closes over a few measurements.
    fn track_drift(&mut self) {
        if !self.drift_tracking {
            return;
        }
        self.far_quiet = if self.far_active {
            0
        } else {
            self.far_quiet + 1
        };
        if self.headroom_pending && self.far_quiet >= HEADROOM_QUIET {
            // The lag can fall again: the reference is read HEADROOM samples later and the
            // taps move as much earlier. The measurement in progress is dropped.
            self.headroom_pending = false;
            self.shift_taps_earlier(true, HEADROOM);
            self.shift_taps_earlier(false, HEADROOM);
            self.lag += HEADROOM as f64;
            self.snap_valid = false;
        }
        self.snap_blocks += 1;
        if self.far_active {
            self.snap_active += 1;
        }
        if self.snap_blocks < DRIFT_BLOCKS {
            return;
        }
        if self.snap_valid
            && self.snap_active >= DRIFT_BLOCKS / 2
            && self.active_blocks >= DRIFT_START
        {
            let mut c = [Complex::new(0.0f32, 0.0); DRIFT_BINS];
            for (w, snap) in self.w.iter().zip(&self.w_snap) {
                for ((ck, wk), sk) in c.iter_mut().zip(&w[DRIFT_LO..=DRIFT_HI]).zip(snap) {
                    *ck += wk * sk.conj();
                }
            }
            let total: f32 = c.iter().map(|v| v.norm()).sum();
            let steps = (2.0 * DRIFT_SEARCH / DRIFT_STEP) as usize;
            let (mut best, mut best_d) = (f32::MIN, 0.0f32);
            for st in 0..=steps {
                let d = -DRIFT_SEARCH + st as f32 * DRIFT_STEP;
                // A shift of d samples later turns bin k by e^{−j2πkd/M}: undo it.
                let w0 = 2.0 * std::f32::consts::PI * d / M as f32;
                let r = Complex::from_polar(1.0, w0);
                let mut z = Complex::from_polar(1.0, w0 * DRIFT_LO as f32);
                let mut sum = 0.0f32;
                for ck in &c {
                    sum += (ck * z).re;
                    z *= r;
                }
                if sum > best {
                    best = sum;
                    best_d = d;
                }
            }
            let per_sample = best_d as f64 / (self.snap_blocks as usize * N) as f64;
            // A lag pinned at its least (the filter starts at the far end's first block, so
            // it cannot start a block earlier instead) cannot follow a faster fall: the rate is
            // not wound up beyond what the lag does.
            let pinned = self.bulk == 0 && self.lag <= LAG_MIN + 0.5 && per_sample < 0.0;
            let fits = total > 0.0 && best > DRIFT_FIT * total;
            if pinned && fits && self.delay_found && !self.headroom_pending && self.taps_empty() {
                // ...unless the filter's first taps are empty: then the reference can be read
                // later and the taps moved earlier (at the next far-end pause).
                self.headroom_pending = true;
            }
            if fits && !pinned {
                self.rate = (self.rate + DRIFT_GAIN * per_sample).clamp(-DRIFT_MAX, DRIFT_MAX);
            }
        }
        for (snap, w) in self.w_snap.iter_mut().zip(&self.w) {
            snap.copy_from_slice(&w[DRIFT_LO..=DRIFT_HI]);
        }
        self.snap_valid = true;
        self.snap_blocks = 0;
        self.snap_active = 0;
    }

    /// Partition `q`'s taps in the time domain (the slow filter's where it has its own).
    fn partition_taps(&mut self, slow: bool, q: usize, out: &mut [f32; N]) {
        let src = if slow && q < SLOW_PARTS {
            &self.w_slow[q]
        } else {
            &self.w[q]
        };
        self.spec.copy_from_slice(src);
        self.ifft();
        for (o, t) in out.iter_mut().zip(&self.time[..N]) {
            *o = t / M as f32;
        }
    }

    /// Whether the filter's first [`HEADROOM`] taps (and the interpolator's half length) are
    /// empty: their largest [`HEADROOM_EMPTY`] under the largest of the first two partitions.
    fn taps_empty(&mut self) -> bool {
        let mut t = [0.0f32; N];
        self.partition_taps(false, 0, &mut t);
        let head = t[..HEADROOM + INTERP_TAPS / 2]
            .iter()
            .fold(0.0f32, |m, v| m.max(v * v));
        let mut peak = t.iter().fold(0.0f32, |m, v| m.max(v * v));
        self.partition_taps(false, 1, &mut t);
        peak = t.iter().fold(peak, |m, v| m.max(v * v));
        peak > 0.0 && head < HEADROOM_EMPTY * peak
    }

    /// Moves the Kalman (or the slow) filter's taps `j` samples earlier across its partitions
    /// (the first `j` taps are dropped; the slow filter's last partition takes the Kalman
    /// filter's next one's first taps).
    fn shift_taps_earlier(&mut self, slow: bool, j: usize) {
        let parts = if slow { SLOW_PARTS } else { P };
        let mut cur = [0.0f32; N];
        let mut next = [0.0f32; N];
        self.partition_taps(slow, 0, &mut cur);
        for q in 0..parts {
            if q + 1 < P {
                self.partition_taps(slow, q + 1, &mut next);
            } else {
                next.fill(0.0);
            }
            self.time[..N - j].copy_from_slice(&cur[j..]);
            self.time[N - j..N].copy_from_slice(&next[..j]);
            self.time[N..].fill(0.0);
            self.fft();
            if slow {
                self.w_slow[q].copy_from_slice(&self.spec);
            } else {
                self.w[q].copy_from_slice(&self.spec);
            }
            cur = next;
        }
    }

    /// Moves the filter's start to `blocks` after the far end, shifting what it has learnt.
    fn shift_to(&mut self, blocks: usize) {
        let blocks = blocks.min(LAGS - 1);
        if blocks == self.bulk {
            return;
        }
        // Partition q of the new filter is partition q + d of the old one (nothing to move
        // before `prepare`: the vectors are empty).
        let (from, zero) = (self.bulk, Complex::new(0.0, 0.0));
        slide(&mut self.w, from, blocks, |w| w.fill(zero));
        slide(&mut self.w_slow, from, blocks, |w| w.fill(zero));
        slide(&mut self.p, from, blocks, |p| p.fill(P_INIT));
        slide(&mut self.h2, from, blocks, |h| h.fill(0.0));
        if self.snap_valid {
            // The drift measurement's snapshot moves with the taps (partition q stays partition
            // q), so a delay found between two measurements does not cost one (before the
            // aec11 round it was dropped: RT60 0.4 s / 200 ms measured at 4.0 s, not 3.0 s).
            slide(&mut self.w_snap, from, blocks, |s| s.fill(zero));
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

    /// Zeroes the second half of one partition's taps in the time domain (the filter's
    /// constraint: a partition is N taps, the FFT frame M = 2N).
    fn constrain(&mut self, taps: &mut [Complex<f32>]) {
        self.spec.copy_from_slice(taps);
        self.ifft();
        self.time[N..].fill(0.0);
        for t in self.time[..N].iter_mut() {
            *t /= M as f32;
        }
        self.fft();
        taps.copy_from_slice(&self.spec);
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
        if !self.delay_found && best != self.prior_lag {
            // Until the delay is found, the partitions from two after the current best lag on
            // are capped by a prior that decays along a room's tail, so the filter spends its
            // early steps where the echo is. Applied when the best lag moves, so a later best lag finds its
            // partitions capped only as far as the earlier one's tail reached them.
            self.prior_lag = best;
            let lead = best.saturating_sub(self.bulk) + 2;
            let mut prior = P_INIT;
            for p in self.p.iter_mut().skip(lead + 1) {
                prior *= P_EARLY_DECAY;
                for v in p.iter_mut() {
                    *v = v.min(prior);
                }
            }
        }
        if self.delay_found && self.hold > 0 {
            // In the near-end state the microphone's bits are mostly the near end's: a lag
            // that wins there is not the echo's (RT60 0.6 s / 200 ms moved the filter to 430
            // ms in double talk and lost its taps). The costs still learn.
            return;
        }
        if best == self.candidate {
            self.candidate_blocks = self.candidate_blocks.saturating_add(1);
        } else {
            self.candidate = best;
            self.candidate_blocks = 0;
        }
        if self.candidate_blocks >= DELAY_WIN_BLOCKS {
            let start = best.saturating_sub(MARGIN);
            // Within one block of the current start: leave it (the filter covers it).
            if !self.delay_found || start.abs_diff(self.bulk) > 1 {
                self.shift_to(start);
            }
            if !self.delay_found {
                // The delay is known now: the filter's uncertainty is capped by a prior that
                // decays along the room's tail from the direct path, so the late partitions,
                // where the echo is weak, take smaller steps than the early ones (uniform
                // until now, while the echo could be anywhere).
                let mut prior = P_INIT;
                for (q, p) in self.p.iter_mut().enumerate() {
                    if q > MARGIN {
                        prior *= P_TAIL_DECAY;
                    }
                    for v in p.iter_mut() {
                        *v = v.min(prior);
                    }
                }
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
        self.hist_pow_w = vec![vec![0.0; BINS]; HIST];
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
        self.ee_s = vec![0.0; BINS];
        self.cost = vec![BANDS as f32 / 2.0; LAGS];
        self.time = vec![0.0; M];
        self.e_spec = zero.clone();
        self.s_dy = zero.clone();
        self.s_dd = vec![0.0; BINS];
        self.s_yy = vec![0.0; BINS];
        self.coh_k = vec![0.0; BINS];
        self.y_spec = zero.clone();
        self.w_snap = vec![vec![Complex::new(0.0, 0.0); DRIFT_BINS]; P];
        self.ring = vec![0.0; RING];
        self.interp = interpolator();
        let (wa, ws) = low_delay_windows();
        self.win_norm = N as f32 / wa.iter().map(|w| w * w).sum::<f32>();
        self.win_a = wa;
        self.win_s = ws;
        self.e_hist = vec![0.0; M + N];
        self.y_hist = vec![0.0; M];
        self.ola = vec![0.0; 2 * SYN_D];
        self.ew_spec = zero.clone();
        self.yw_spec = zero.clone();
        self.sxw = vec![0.0; BINS];
        self.w_slow = vec![zero.clone(); P];
        self.y_slow_spec = zero.clone();
        self.e_slow_spec = zero.clone();
        self.e_fast_spec = zero.clone();
        self.erl_k = vec![0.0; BINS];
        self.far_s = vec![0.0; BINS];
        self.mic_s = vec![0.0; BINS];
        self.spec = zero;
        self.reset();
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        if self.fwd.is_none() {
            return;
        }
        // Far end: spectrum of [previous block, this block] into the history.
        let raw = if self.far_fresh {
            self.far_pending
        } else {
            [0.0; N]
        };
        self.far_fresh = false;
        for (i, v) in raw.iter().enumerate() {
            self.ring[(self.ring_pos + i) % RING] = *v;
        }
        self.ring_pos = (self.ring_pos + N) % RING;
        // The reference resampled by the drift: read `lag` samples behind what came in.
        let step = self.rate * N as f64;
        let mut far = [0.0f32; N];
        let mut push = true;
        if self.lag + step > LAG_HIGH && self.bulk + 1 < LAGS {
            // A block and a half more lag than the least: read the reference a block later and
            // start the filter a block later. This block gives two frames (at the old lag, then at
            // the new), so the history stays one stream at the new lag and the filter's taps
            // keep their meaning.
            let mut old = [0.0f32; N];
            self.resample(self.lag, &mut old);
            let prev = self.far_prev;
            self.push_frame(&prev, &old, power(&old) >= FAR_ACTIVE);
            self.far_prev = old;
            self.lag -= N as f64;
            self.resample(self.lag, &mut far);
            self.bulk += 1;
            self.cost.rotate_right(1);
            self.candidate = (self.candidate + 1).min(LAGS - 1);
        } else if step < 0.0 && self.lag + step < LAG_MIN && self.bulk > 0 {
            // The reference must be read earlier than the interpolator can: a block more lag
            // and the filter's start a block earlier. This block's frame at the new lag is the
            // last one at the old, already in the history.
            self.lag += N as f64;
            far = self.far_prev;
            push = false;
            self.bulk -= 1;
            self.cost.rotate_left(1);
            self.candidate = self.candidate.saturating_sub(1);
        } else {
            self.resample(self.lag, &mut far);
        }
        self.lag = (self.lag + step).clamp(LAG_MIN, LAG_CAP);
        let far_power = power(&far);
        self.far_active = far_power >= FAR_ACTIVE;
        let far_active = self.far_active;
        if push {
            let prev = self.far_prev;
            self.push_frame(&prev, &far, far_active);
            self.far_prev = far;
        }

        // Microphone bits for the delay estimator.
        self.time[..N].copy_from_slice(&self.mic_prev);
        self.time[N..].copy_from_slice(block.channel(0));
        self.mic_prev.copy_from_slice(block.channel(0));
        self.fft();
        let mic_bits = band_bits(&self.spec, &mut self.mic_mean, far_active);
        self.update_delay(mic_bits, far_power);

        let base = self.hist_pos + HIST - self.bulk;
        // Echo estimate: the partitions after the slow filter's first (shared by both), then
        // the Kalman filter's own first ones.
        self.y_spec.fill(Complex::new(0.0, 0.0));
        add_echo(&mut self.y_spec, &self.w, &self.hist, base, SLOW_PARTS..P);
        self.y_slow_spec.copy_from_slice(&self.y_spec);
        add_echo(&mut self.y_spec, &self.w, &self.hist, base, 0..SLOW_PARTS);
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
        // The Kalman filter's error spectrum (its update and ψ use it).
        self.time[..N].fill(0.0);
        self.time[N..].copy_from_slice(&e);
        self.fft();
        self.e_fast_spec.copy_from_slice(&self.spec);
        // The slow filter's echo estimate and error (the microphone is e + yt).
        add_echo(
            &mut self.y_slow_spec,
            &self.w_slow,
            &self.hist,
            base,
            0..SLOW_PARTS,
        );
        self.spec.copy_from_slice(&self.y_slow_spec);
        self.ifft();
        let mut e_slow = [0.0f32; N];
        let mut y_slow = [0.0f32; N];
        for i in 0..N {
            y_slow[i] = self.time[N + i] / M as f32;
            e_slow[i] = e[i] + yt[i] - y_slow[i];
        }
        let a = SLOW_SELECT_SMOOTH;
        self.fast_pow = a * self.fast_pow + (1.0 - a) * power(&e);
        self.slow_pow = a * self.slow_pow + (1.0 - a) * power(&e_slow);
        self.time[..N].fill(0.0);
        self.time[N..].copy_from_slice(&e_slow);
        self.fft();
        self.e_slow_spec.copy_from_slice(&self.spec);
        let mut slow_out = false;
        if self.far_active && self.hold == 0 && self.fast_pow < SLOW_COPY * self.slow_pow {
            // The Kalman filter is clearly ahead (the start, a changed path): the slow one
            // starts again from its taps.
            for (ws, w) in self.w_slow.iter_mut().zip(&self.w).take(SLOW_PARTS) {
                ws.copy_from_slice(w);
            }
            self.slow_pow = self.fast_pow;
        } else if self.slow_pow < self.fast_pow {
            // The slow filter's output goes on (the suppressor, the coherence and the leak
            // see its error and echo estimate).
            e = e_slow;
            yt = y_slow;
            self.y_spec.copy_from_slice(&self.y_slow_spec);
            slow_out = true;
        }
        self.linear = e;
        // The error's and the echo estimate's spectra on the suppressor's analysis window (the
        // frame of the last M samples, ending with this block).
        self.e_hist.copy_within(N.., 0);
        self.e_hist[M..].copy_from_slice(&e);
        if let Some(c) = self.components.as_mut() {
            // The linear filter subtracts an estimate made of the far end alone: the near end's
            // part of its error is the near end's part of the microphone, as it came.
            c.hist.copy_within(N.., 0);
            c.hist[M..].copy_from_slice(&c.near_in);
        }
        self.y_hist.copy_within(N.., 0);
        self.y_hist[N..].copy_from_slice(&yt);
        Self::window_into(&mut self.time, &self.e_hist[N..], &self.win_a);
        self.fft();
        self.ew_spec.copy_from_slice(&self.spec);
        Self::window_into(&mut self.time, &self.y_hist, &self.win_a);
        self.fft();
        self.yw_spec.copy_from_slice(&self.spec);
        if slow_out {
            self.e_spec.copy_from_slice(&self.e_slow_spec);
        } else {
            self.e_spec.copy_from_slice(&self.e_fast_spec);
        }
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
        // error) + near-end/noise power ψ_s, taken as the Kalman filter's whole error power
        // (nothing of the predicted misadjustment taken off: the gain's denominator counts the
        // residual echo twice and the filter steps more gently, so it learns the near end less
        // in double talk; since the aec9 round with the far end alone too).
        self.sx.fill(0.0);
        for q in 0..P {
            let xp = &self.hist_pow[(base - q) % HIST];
            for ((s, p), x2) in self.sx.iter_mut().zip(&self.p[q]).zip(xp) {
                *s += p * x2;
            }
        }
        for k in 0..BINS {
            let near = self.e_fast_spec[k].norm_sqr().max(1e-12);
            self.psi_s[k] = PSI_SMOOTH * self.psi_s[k] + (1.0 - PSI_SMOOTH) * near;
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
        // Residual echo predicted from the far end's power through the learnt power path, and
        // the filter's misadjustment, both on the suppressor's analysis window.
        self.r2.fill(0.0);
        self.sxw.fill(0.0);
        for q in 0..P {
            let xp = &self.hist_pow_w[(base - q) % HIST];
            for (((r, s), (h, p)), x2) in self
                .r2
                .iter_mut()
                .zip(self.sxw.iter_mut())
                .zip(self.h2[q].iter().zip(&self.p[q]))
                .zip(xp)
            {
                *r += h * x2;
                *s += p * x2;
            }
        }
        let wn = self.win_norm;
        // The misadjustment's weight in the gain (the detector below keeps all of it); the
        // state is the last block's (this block's is decided from the residual computed here).
        let misadj = if slow_out { MISADJ_SLOW } else { 1.0 }
            * if self.hold > 0 { MISADJ_NEAR } else { 1.0 };
        let (mut err_pow, mut res_pow) = (0.0f32, 0.0f32);
        for k in 0..BINS {
            let ee = self.ew_spec[k].norm_sqr() * wn + 1e-12;
            // The echo estimate's part and the filter's misadjustment count as far as the
            // microphone is coherent with the echo estimate in this bin (fully, and as the
            // square root of it): a reference that never echoes still gets an estimate there
            // (the filter fits the near end through the reference's leakage), but not a
            // coherent one, and its near end is then left alone (tests/music.rs).
            let c = self.coh_k[k];
            let echo_part = c * self.leak.max(self.erl[k]) * self.yw_spec[k].norm_sqr() * wn;
            let mis = c.sqrt() * self.sxw[k];
            let residual = self.r2[k].max(echo_part + mis);
            self.tmp[k] = echo_part + misadj * mis;
            err_pow += ee;
            res_pow += residual;
        }
        // Does the far end, through the learnt echo-return loss, explain the microphone?
        let learn_erl = self.far_active && self.hold == 0 && self.coh > ERL_COH;
        let (mut mic_sum, mut echo_sum) = (0.0f32, 0.0f32);
        let rows: [usize; ERL_PARTS] = std::array::from_fn(|q| (base + HIST - MARGIN - q) % HIST);
        for k in COH_LO..=COH_HI {
            let mut x = 0.0f32;
            for &row in &rows {
                x += self.hist_pow[row][k];
            }
            self.far_s[k] = ERL_SMOOTH * self.far_s[k] + (1.0 - ERL_SMOOTH) * x;
            self.mic_s[k] = ERL_SMOOTH * self.mic_s[k] + (1.0 - ERL_SMOOTH) * self.s_dd[k];
            if learn_erl && self.far_s[k] > 1e-9 {
                let r = self.mic_s[k] / self.far_s[k];
                self.erl_k[k] += ERL_RATE * (r - self.erl_k[k]);
            }
            mic_sum += self.mic_s[k];
            echo_sum += self.erl_k[k] * self.far_s[k];
        }
        self.erl_ratio = mic_sum / (echo_sum + 1e-12);
        let may_enter = self.hold > 0 || self.erl_ratio > NEAR_ERL;
        if err_pow > DT_RATIO * res_pow + 1e-9 && self.coh < NEAR_COH && may_enter {
            self.over = self.over.saturating_add(1);
        } else {
            self.over = 0;
        }
        if self.delay_found && self.far_active {
            self.found_blocks = self.found_blocks.saturating_add(1);
        }
        if self.over >= DT_BLOCKS_LONG && self.found_blocks >= DT_LONG_AFTER {
            self.hold = DT_HOLD_LONG.max(self.hold.saturating_sub(1));
        } else if self.over >= DT_BLOCKS {
            self.hold = DT_HOLD.max(self.hold.saturating_sub(1));
        } else {
            self.hold = self.hold.saturating_sub(1);
        }
        let pf = if self.hold > 0 {
            self.postfilter_near
        } else {
            self.postfilter
        };
        // In the near-end state, while the coherent filter's echo estimate is a fair part of the
        // error (the reference echoes), the gain takes Wiener's form (below); a reference that
        // never echoes keeps power subtraction (tests/music.rs: its near end moved by 1.1 dB
        // otherwise, bar 1).
        let wiener = self.hold > 0 && echo_all >= NEAR_WIENER_ECHOING * err_all;
        if self.postfilter > 0.0 {
            for k in 0..BINS {
                let ee = self.ew_spec[k].norm_sqr() * wn + 1e-12;
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
                let oversub = if wiener {
                    ECHO_OVERSUB_NEAR
                } else {
                    ECHO_OVERSUB
                };
                let pfk = if self.coh_k[k] > thr {
                    oversub.max(pf)
                } else {
                    pf
                };
                let co = if self.hold > 0 {
                    COHERENT_OVERSUB_NEAR
                } else {
                    COHERENT_OVERSUB
                };
                let r = (pfk * self.r2[k]).max(co * self.tmp[k]);
                let g = if wiener {
                    ee / (ee + NEAR_WIENER * r)
                } else {
                    1.0 - r / ee
                }
                .clamp(MIN_GAIN, 1.0);
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
        for k in 0..BINS {
            self.ee_s[k] = 0.7 * self.ee_s[k] + 0.3 * self.ew_spec[k].norm_sqr() * wn;
        }
        let learn_up = self.far_active
            && echoing
            && (!converged || (self.hold == 0 && err_pow <= 4.0 * r2_sum));
        // In the near-end state it still learns downwards, where the error smoothed over ~30 ms
        // is under its prediction: a near end only adds power, so a prediction above the error
        // is one the coherent filter has overtaken since it was learnt (it goes on converging
        // in double talk). On the smoothed error (single frames dip under the mean), and only
        // in that state (with the far end alone, in a room whose drift the filter follows by
        // itself, it took the prediction too low: RT60 0.6 s / 0 ms 38.4 → 27.5 dB).
        let learn_down = !learn_up && self.far_active && converged && self.hold > 0;
        if learn_up || learn_down {
            if learn_up {
                self.h2_blocks = self.h2_blocks.saturating_add(1);
            }
            // Per bin, Σ_q X2² normalises the step (NLMS on power spectra).
            self.tmp.iter_mut().for_each(|v| *v = 0.0);
            for q in 0..P {
                let xp = &self.hist_pow_w[(base - q) % HIST];
                for (s, x2) in self.tmp.iter_mut().zip(xp) {
                    *s += x2 * x2;
                }
            }
            for k in 0..BINS {
                let ee = self.ew_spec[k].norm_sqr() * wn;
                let err = if learn_down {
                    (self.ee_s[k] - self.r2[k]).min(0.0)
                } else {
                    ee - self.r2[k]
                };
                let err = if converged {
                    err.min(2.0 * self.r2[k] + 1e-6)
                } else {
                    err
                };
                self.tmp[k] = MU_POWER * err / (self.tmp[k] + 1e-12);
            }
            for q in 0..P {
                let xp = &self.hist_pow_w[(base - q) % HIST];
                for ((h, x2), st) in self.h2[q].iter_mut().zip(xp).zip(&self.tmp) {
                    *h = (*h + st * x2).max(0.0);
                }
            }
        }
        // Near end: the error clearly above the echo the filter expects to be left (which
        // includes the room's tail after the far end stops).
        self.near_active = err_pow > 4.0 * res_pow + 1e-9;
        if self.postfilter > 0.0 {
            // One frame every SYN_D samples, each with this block's gains; the overlap-add's
            // completed SYN_D samples go out (the output lags the error by SYN_D).
            for j in 1..=SYN_FRAMES {
                if j == SYN_FRAMES {
                    self.spec.copy_from_slice(&self.ew_spec);
                } else {
                    Self::window_into(
                        &mut self.time,
                        &self.e_hist[j * SYN_D..j * SYN_D + M],
                        &self.win_a,
                    );
                    self.fft();
                }
                // The overlap-add is moved out for the moment (an empty Vec takes its place: no
                // allocation) so that the synthesis on `self` can work on it.
                let mut ola = std::mem::take(&mut self.ola);
                self.synthesize(
                    &mut ola,
                    &mut block.channel_mut(0)[(j - 1) * SYN_D..j * SYN_D],
                );
                self.ola = ola;
            }
        } else {
            // No suppressor: the error, delayed as the suppressor's output would be.
            block
                .channel_mut(0)
                .copy_from_slice(&self.e_hist[M - SYN_D..M + N - SYN_D]);
        }
        if let Some(mut c) = self.components.take() {
            self.near_part(&mut c);
            c.out.copy_from_slice(block.channel(0));
            self.components = Some(c);
        }

        // Filter update (unconstrained), then the constraint on CONSTRAIN partitions in turn.
        let a = if self.hold > 0 {
            self.transition_near
        } else {
            self.transition
        };
        let a2 = a * a;
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
            let ws = &mut self.w_slow[q];
            let slow = q < SLOW_PARTS;
            for k in 0..BINS {
                let g = p[k] * self.sx[k];
                w[k] += x[k].conj() * self.e_fast_spec[k] * g;
                if slow {
                    ws[k] += x[k].conj() * self.e_slow_spec[k] * (SLOW_STEP * g);
                }
                let pk = p[k] * (1.0 - 0.5 * g * xp[k]).max(0.0);
                p[k] = a2 * pk + (1.0 - a2) * w[k].norm_sqr() + 1e-12;
            }
        }
        for _ in 0..CONSTRAIN {
            let q = self.constrain_pos;
            self.constrain_pos = (self.constrain_pos + 1) % P;
            // Each partition is moved out for the moment (an empty Vec takes its place: no
            // allocation) so that the FFT scratch on `self` can work on it.
            let mut taps = std::mem::take(&mut self.w[q]);
            self.constrain(&mut taps);
            self.w[q] = taps;
            if q < SLOW_PARTS {
                let mut taps = std::mem::take(&mut self.w_slow[q]);
                self.constrain(&mut taps);
                self.w_slow[q] = taps;
            }
        }
        self.track_drift();
        if block.channels() == 2 {
            let (l, r) = block.pair_mut();
            r.copy_from_slice(l);
        }
    }

    fn reset(&mut self) {
        for w in self.w.iter_mut().chain(self.w_slow.iter_mut()) {
            w.fill(Complex::new(0.0, 0.0));
        }
        self.fast_pow = 0.0;
        self.slow_pow = 0.0;
        self.erl_k.fill(0.0);
        self.far_s.fill(0.0);
        self.mic_s.fill(0.0);
        self.erl_ratio = 0.0;
        for p in self.p.iter_mut() {
            p.fill(P_INIT);
        }
        self.psi_s.fill(0.0);
        for x in self.hist.iter_mut() {
            x.fill(Complex::new(0.0, 0.0));
        }
        for x in self.hist_pow.iter_mut() {
            x.fill(0.0);
        }
        for x in self.hist_pow_w.iter_mut() {
            x.fill(0.0);
        }
        self.e_hist.fill(0.0);
        self.y_hist.fill(0.0);
        self.ola.fill(0.0);
        if let Some(c) = self.components.as_mut() {
            c.hist.fill(0.0);
            c.ola.fill(0.0);
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
        self.ee_s.fill(0.0);
        self.h2_blocks = 0;
        self.s_dd.fill(0.0);
        self.s_yy.fill(0.0);
        self.s_dy.fill(Complex::new(0.0, 0.0));
        self.coh = 0.0;
        self.hold = 0;
        self.over = 0;
        self.found_blocks = 0;
        self.pey = 0.0;
        self.pyy = 0.0;
        self.leak = 1.0;
        self.candidate = 0;
        self.candidate_blocks = 0;
        self.active_blocks = 0;
        self.prior_lag = usize::MAX;
        self.delay_found = false;
        self.far_prev = [0.0; N];
        self.mic_prev = [0.0; N];
        self.gain.fill(1.0);
        self.far_fresh = false;
        self.near_active = true;
        self.far_active = false;
        self.bulk = (self.hint_ms as usize / 10).saturating_sub(MARGIN);
        self.ring.fill(0.0);
        self.ring_pos = 0;
        self.lag = LAG_START;
        self.rate = 0.0;
        self.snap_valid = false;
        self.headroom_pending = false;
        self.far_quiet = 0;
        self.snap_blocks = 0;
        self.snap_active = 0;
    }

    fn latency(&self) -> Frames {
        Frames(SYN_D)
    }
}

/// The suppressor's low-delay analysis and synthesis windows over [`M`] samples (Mauler &
/// Martin 2007): the analysis window rises as a square-root Hann over the first `M − SYN_D`
/// samples and falls as one over the last `SYN_D`; the synthesis window is non-zero only over
/// the last `2 SYN_D`, where the two windows' product is a Hann of that length, so frames
/// every `SYN_D` samples add back to the input delayed by `SYN_D`.
fn low_delay_windows() -> (Vec<f32>, Vec<f32>) {
    let hann = |n: usize, len: usize| {
        0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / len as f64).cos()
    };
    let rise = M - SYN_D;
    let wa: Vec<f64> = (0..M)
        .map(|n| {
            if n < rise {
                hann(n, 2 * rise).sqrt()
            } else {
                hann(n - (M - 2 * SYN_D), 2 * SYN_D).sqrt()
            }
        })
        .collect();
    let ws = (0..M)
        .map(|n| {
            if n < M - 2 * SYN_D {
                0.0
            } else {
                (hann(n - (M - 2 * SYN_D), 2 * SYN_D) / wa[n].max(1e-9)) as f32
            }
        })
        .collect();
    (wa.into_iter().map(|w| w as f32).collect(), ws)
}

/// The fractional-delay interpolator's taps: for each of `INTERP_PHASES + 1` fractions f of a
/// sample, a sinc centred f after the tap at offset 0 (offsets −7..=8), Kaiser-windowed (β 7),
/// normalised to unit gain at DC.
fn interpolator() -> Vec<f32> {
    fn i0(x: f64) -> f64 {
        let (mut sum, mut term) = (1.0, 1.0);
        for k in 1..30 {
            term *= (x / (2.0 * k as f64)).powi(2);
            sum += term;
        }
        sum
    }
    let beta = 7.0;
    let half = (INTERP_TAPS / 2) as f64;
    let mut t = vec![0.0f32; (INTERP_PHASES + 1) * INTERP_TAPS];
    for p in 0..=INTERP_PHASES {
        let f = p as f64 / INTERP_PHASES as f64;
        let row = &mut t[p * INTERP_TAPS..(p + 1) * INTERP_TAPS];
        let mut sum = 0.0;
        let mut taps = [0.0f64; INTERP_TAPS];
        for (k, tap) in taps.iter_mut().enumerate() {
            let o = k as f64 - (half - 1.0);
            let u = f - o;
            let sinc = if u.abs() < 1e-9 {
                1.0
            } else {
                (std::f64::consts::PI * u).sin() / (std::f64::consts::PI * u)
            };
            let r = u / half;
            let win = if r.abs() < 1.0 {
                i0(beta * (1.0 - r * r).sqrt()) / i0(beta)
            } else {
                0.0
            };
            *tap = sinc * win;
            sum += *tap;
        }
        for (v, tap) in row.iter_mut().zip(taps) {
            *v = (tap / sum) as f32;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signals::Noise;

    const FS: usize = 48_000;

    /// Noise low-passed by two 4-sample moving averages (most of its power under 6 kHz).
    fn far_end(secs: usize) -> Vec<f32> {
        let mut n = Noise::new(7);
        let x: Vec<f32> = (0..secs * FS + 8).map(|_| n.next_sample()).collect();
        let y: Vec<f32> = x.windows(4).map(|w| w.iter().sum::<f32>() / 4.0).collect();
        y.windows(4)
            .map(|w| w.iter().sum::<f32>() / 4.0)
            .take(secs * FS)
            .collect()
    }

    /// `far` played by a clock `ppm` fast against the capture clock (linearly interpolated, as
    /// `scripts/voice_eval/material.py` does), through a sparse path 100 ms late.
    fn drifted_echo(far: &[f32], ppm: f64) -> Vec<f32> {
        drifted_echo_after(far, ppm, 4800)
    }

    /// The same through the path `delay` samples late.
    fn drifted_echo_after(far: &[f32], ppm: f64, delay: usize) -> Vec<f32> {
        let taps = [(0usize, 0.5f32), (37, -0.3), (211, 0.2), (960, 0.1)];
        (0..far.len())
            .map(|m| {
                let mut acc = 0.0;
                for &(k, g) in &taps {
                    let Some(n) = m.checked_sub(delay + k) else {
                        continue;
                    };
                    let pos = n as f64 * (1.0 + ppm * 1e-6);
                    let i = pos.floor() as usize;
                    let f = (pos - i as f64) as f32;
                    if i + 1 < far.len() {
                        acc += g * (far[i] * (1.0 - f) + far[i + 1] * f);
                    }
                }
                acc
            })
            .collect()
    }

    /// The linear filter's echo reduction over the last 4 s (suppressor off), and the drift
    /// the canceller estimated.
    fn linear_erle(ppm: f64, tracking: bool) -> (f64, f64) {
        linear_erle_from(ppm, tracking, LAG_START).0
    }

    /// The same with the reference's lag starting at `lag`; also the lag at the end.
    fn linear_erle_from(ppm: f64, tracking: bool, lag: f64) -> ((f64, f64), f64) {
        let far = far_end(16);
        let echo = drifted_echo(&far, ppm);
        let (erle, ppm, lag, _) = linear_run(&far, &echo, tracking, lag);
        ((erle, ppm), lag)
    }

    /// The linear filter alone (no suppressor) on `far` and its `echo`, drift tracking on or
    /// off, the reference's lag starting at `lag`: its ERLE after 12 s, the estimated drift
    /// (ppm), and the lag and the filter's start (blocks) at the end.
    fn linear_run(far: &[f32], echo: &[f32], tracking: bool, lag: f64) -> (f64, f64, f64, usize) {
        let mut aec = Aec::new();
        aec.postfilter = 0.0;
        aec.drift_tracking = tracking;
        aec.prepare(StreamSpec {
            channels: 1,
            ..StreamSpec::default()
        })
        .expect("prepare");
        aec.lag = lag;
        let (mut e, mut r) = (0.0f64, 0.0f64);
        let mut fb = Block::silent(1);
        let mut mb = Block::silent(1);
        for (b, (f, m)) in far.chunks_exact(N).zip(echo.chunks_exact(N)).enumerate() {
            fb.channel_mut(0).copy_from_slice(f);
            mb.channel_mut(0).copy_from_slice(m);
            aec.analyze_render(&fb);
            aec.process(&mut mb);
            if b * N >= 12 * FS {
                e += m.iter().map(|v| (v * v) as f64).sum::<f64>();
                r += mb.channel(0).iter().map(|v| (v * v) as f64).sum::<f64>();
            }
        }
        (10.0 * (e / r).log10(), aec.drift_ppm(), aec.lag, aec.bulk)
    }

    /// Runs a canceller with its near-end split on (`postfilter` as given) over `far` and a
    /// microphone of `echo` + `near`; per sample: the output, the near end's part of it, and
    /// the linear filter's output.
    fn split_run(far: &[f32], echo: &[f32], near: &[f32], postfilter: f32) -> [Vec<f32>; 3] {
        let mut aec = Aec::new();
        aec.postfilter = postfilter;
        aec.prepare(StreamSpec {
            channels: 1,
            ..StreamSpec::default()
        })
        .expect("prepare");
        aec.enable_components();
        let mut out: [Vec<f32>; 3] = Default::default();
        let mut fb = Block::silent(1);
        let mut mb = Block::silent(1);
        for ((f, e), n) in far
            .chunks_exact(N)
            .zip(echo.chunks_exact(N))
            .zip(near.chunks_exact(N))
        {
            fb.channel_mut(0).copy_from_slice(f);
            for ((m, e), n) in mb.channel_mut(0).iter_mut().zip(e).zip(n) {
                *m = e + n;
            }
            aec.set_near_component(n);
            aec.analyze_render(&fb);
            aec.process(&mut mb);
            let (o, np) = aec.components().expect("components on");
            assert_eq!(o, mb.channel(0), "components() gives the block's output");
            out[0].extend_from_slice(o);
            out[1].extend_from_slice(np);
            out[2].extend_from_slice(aec.linear_output());
        }
        out
    }

    /// A near end that starts after 4 s of far end alone, 6 dB under the echo.
    fn talker(len: usize) -> Vec<f32> {
        let mut n = Noise::new(11);
        (0..len)
            .map(|i| {
                let v = n.next_sample();
                if i < 4 * FS {
                    0.0
                } else {
                    0.25 * v * (1.0 + (i as f32 / 2400.0).sin())
                }
            })
            .collect()
    }

    /// With no far end there is nothing to cancel: the split gives the whole output to the
    /// near end (the same gains on the same frames), with and without the suppressor.
    #[test]
    fn the_split_gives_everything_to_the_near_end_without_an_echo() {
        let near = talker(8 * FS);
        let silent = vec![0.0; near.len()];
        for pf in [0.0, 1.0] {
            let [out, near_part, _] = split_run(&silent, &silent, &near, pf);
            let worst = out
                .iter()
                .zip(&near_part)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-6,
                "postfilter {pf}: output − near part up to {worst}"
            );
            let power: f32 = out[4 * FS..].iter().map(|v| v * v).sum();
            assert!(power > 1.0, "the near end came through ({power})");
        }
    }

    /// With the suppressor off the echo left is the linear filter's residual, delayed as the
    /// output is; with it on, the split's echo left is smaller still, in double talk.
    #[test]
    fn the_split_leaves_the_linear_residual_and_the_suppressor_takes_more() {
        let far = far_end(10);
        let echo = drifted_echo(&far, 0.0);
        let near = talker(far.len());
        let [out, near_part, linear] = split_run(&far, &echo, &near, 0.0);
        let d = SYN_D;
        let mut worst = 0.0f32;
        for t in 2 * FS..far.len() {
            let left = out[t] - near_part[t];
            let residual = linear[t - d] - near[t - d];
            worst = worst.max((left - residual).abs());
        }
        assert!(worst < 1e-5, "echo left vs linear residual: up to {worst}");
        let dt = |v: &[f32], w: &[f32]| -> f64 {
            v[5 * FS..]
                .iter()
                .zip(&w[5 * FS..])
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum()
        };
        let lin_left = dt(&out, &near_part);
        let [out, near_part, _] = split_run(&far, &echo, &near, 1.0);
        let sup_left = dt(&out, &near_part);
        let echo_in: f64 = echo[5 * FS..].iter().map(|v| f64::from(*v).powi(2)).sum();
        let (lin_db, sup_db) = (
            10.0 * (echo_in / lin_left).log10(),
            10.0 * (echo_in / sup_left).log10(),
        );
        assert!(
            sup_db > lin_db + 3.0,
            "in double talk the suppressor leaves {sup_db:.1} dB down, the linear filter {lin_db:.1}"
        );
    }

    /// A playout clock 90 ppm fast: the echo comes ever earlier, so the reference's lag falls
    /// under its least within the first seconds and is taken up a block while the filter's
    /// start moves a block earlier. The drift is found, and the linear filter cancels more
    /// than it does without resampling.
    #[test]
    fn follows_clock_drift() {
        let (erle, ppm) = linear_erle(90.0, true);
        let (plain, _) = linear_erle(90.0, false);
        println!(
            "drift 90 ppm: estimated {ppm:.1} ppm, linear ERLE {erle:.1} dB (without: {plain:.1} dB)"
        );
        assert!((ppm - 90.0).abs() < 5.0, "estimated {ppm:.1} ppm");
        assert!(
            erle >= plain + 6.0,
            "ERLE {erle:.1} dB, without resampling {plain:.1} dB"
        );
    }

    /// A playout clock 90 ppm slow: the echo comes ever later. With the lag started just under
    /// where it is taken down a block (as after a long session), it is within the first
    /// seconds, with the filter's start a block later; the drift is still found and followed.
    #[test]
    fn follows_clock_drift_across_a_block() {
        let start = LAG_HIGH - 20.0;
        let ((erle, ppm), lag) = linear_erle_from(-90.0, true, start);
        let ((plain, _), _) = linear_erle_from(-90.0, false, start);
        println!(
            "drift -90 ppm: estimated {ppm:.1} ppm, lag {start:.0} -> {lag:.0} samples, linear ERLE {erle:.1} dB (without: {plain:.1} dB)"
        );
        assert!(lag < start - 200.0, "the lag did not wrap: {lag:.0}");
        assert!((ppm + 90.0).abs() < 5.0, "estimated {ppm:.1} ppm");
        assert!(
            erle >= plain + 6.0,
            "ERLE {erle:.1} dB, without resampling {plain:.1} dB"
        );
    }

    /// A playout clock 30 ppm fast with no device delay (the path 2 ms late, a far end that
    /// pauses 400 ms every 2 s): the filter starts at the far end's first block, so the lag
    /// cannot fall under its least; once the delay is found and the filter's first taps are
    /// seen empty, the reference is read `HEADROOM` samples later at a pause and the drift is
    /// followed from there.
    #[test]
    fn follows_an_earlier_echo_with_no_device_delay() {
        let run = |tracking: bool| {
            let mut far = far_end(16);
            for (i, v) in far.iter_mut().enumerate() {
                if i % (2 * FS) >= 2 * FS - 2 * FS / 5 {
                    *v = 0.0;
                }
            }
            let echo = drifted_echo_after(&far, 30.0, 96);
            linear_run(&far, &echo, tracking, LAG_START)
        };
        let (erle, ppm, lag, bulk) = run(true);
        let (plain, ..) = run(false);
        println!(
            "drift 30 ppm, no device delay: estimated {ppm:.1} ppm, lag {lag:.1} samples, start {bulk} blocks, linear ERLE {erle:.1} dB (without: {plain:.1} dB)"
        );
        assert_eq!(bulk, 0, "the filter left the far end's first block");
        assert!(lag > LAG_MIN + 1.0, "the lag stayed at its least");
        assert!((ppm - 30.0).abs() < 5.0, "estimated {ppm:.1} ppm");
        assert!(
            erle >= plain + 3.0,
            "ERLE {erle:.1} dB, without resampling {plain:.1} dB"
        );
    }

    /// No drift: the estimate stays near zero.
    #[test]
    fn no_drift_no_resampling() {
        let (erle, ppm) = linear_erle(0.0, true);
        println!("no drift: estimated {ppm:.1} ppm, linear ERLE {erle:.1} dB");
        assert!(ppm.abs() < 2.0, "estimated {ppm:.1} ppm");
    }
}
