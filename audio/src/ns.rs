//! Classic noise suppression: an STFT Wiener filter (20 ms sqrt-Hann frames, 10 ms hop) with a
//! decision-directed a-priori SNR and a noise spectrum estimated by minima-controlled recursive
//! averaging (MCRA, Cohen & Berdugo 2002): the power spectrum, smoothed over time and
//! neighbouring bins, is compared with its minimum over the last 5–10 s; where it stays near
//! that minimum (no speech) the noise estimate follows the input's power with a 0.2 s time
//! constant, where it rises well above it (speech) the estimate holds. So the estimate is the
//! noise's mean power, not a minimum that needs a bias guess, it settles within a few seconds
//! of any start, and sustained speech never becomes "noise" unless a bin stays loud for longer
//! than the window. After digital silence (a muted or idle input, the zeros a stage with latency
//! starts with) it suppresses again within one to two windows, where the old floor (a minimum that
//! rose 1.7 dB/s) took over a minute to climb back from zero; switched back on after being off, it
//! starts afresh ([`Processor::resume`]). (Digital silence is learnt as what it is, zero noise:
//! skipping it made clean speech with exact zeros between words, after RNNoise, count as noise,
//! PESQ 4.09 → 2.96.) Allocation-free after `prepare`; one block of latency
//! (the overlap-add).
//!
//! With the AI-NS in front ([`NoiseSuppressor::set_reference`]) it works beside it, not after
//! it: the noise is learnt from the AI-NS's input, and that input gets, per bin, the smaller of
//! this stage's gain and the AI-NS's; RNNoise's speech probability decides when learning starts
//! and holds it back in bins well above their minimum. Alone, the gain is pulled toward the floor
//! where speech is unlikely (OM-LSA's form). docs/voice-chain.md has the figures.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::{BLOCK_FRAMES, Frames};

const N: usize = BLOCK_FRAMES;
const M: usize = 2 * BLOCK_FRAMES;
const BINS: usize = BLOCK_FRAMES + 1;

/// Time smoothing of the power spectrum the minimum is searched on.
const ALPHA_S: f32 = 0.8;
/// The minimum is searched over windows of this many frames (5 s): the minimum in force covers
/// the last 5–10 s. Shorter windows let sustained speech become "noise": with 1.5 s, clean
/// speech at −10 dBFS through the voice chain fell to PESQ 3.69, with 3 s to 3.90 (5 s: 4.07).
const MIN_WINDOW: u32 = 500;
/// Smoothed power over its minimum above which a bin counts as speech. The minimum over a 5–10 s
/// window lies further below the noise's mean than over Cohen's 1.5 s, so his 5 let the noise's
/// own peaks count as speech and the estimate sat low (white noise alone: 11.6 dB down in pauses
/// with 5, 14.0 with 8, 16.7 with 12; 12 cost fan noise PESQ 1.53 → 1.45).
const SPEECH_RATIO: f32 = 8.0;
/// Smoothing of the speech-presence probability.
const ALPHA_P: f32 = 0.2;
/// Smoothing of the noise estimate while no speech is present (0.2 s time constant).
const ALPHA_D: f32 = 0.95;
/// The noise estimate never exceeds this many times the minimum: what it learnt from speech
/// before the minimum had seen a quieter moment (the first frames of a stream that starts with
/// talking) falls away as soon as it has.
const NOISE_CAP: f32 = 4.0;
/// Weight of the previous frame's clean estimate in the decision-directed a-priori SNR. 0.98
/// (Ephraim–Malah's) lags a speech offset by several frames and smears low-SNR speech; with the
/// AI-NS in front, 0.8 measured PESQ +0.1 on white and fan noise and STOI +0.03.
const DD: f32 = 0.8;
/// The noise estimate is scaled by this in the gain rule (over-subtraction; pink and fan noise
/// in pauses about 1 dB further down, clean speech unchanged).
const OVER: f32 = 1.5;
/// Alone (no AI-NS in front), the gain is pulled toward the floor where speech is unlikely
/// (OM-LSA's form, Cohen 2003: G = G_wiener^q · G_min^(1−q), q the a-posteriori speech-presence
/// probability for an a-priori SNR of this under speech, 7 dB). The Wiener gain alone left
/// musical noise 19 dB down in pauses (white noise, steady state); with this, 27 dB. With the
/// AI-NS in front it is not used: RNNoise's own gain already closes the pauses, and there it
/// cost PESQ 0.05 and clean speech 0.15.
const SPP_XI: f32 = 5.0;
/// With the AI-NS in front, its speech probability below which a frame counts as a pause: the
/// estimator starts learning at the first such frame, not on a stream's first (talking) frame.
const VAD_PAUSE: f32 = 0.5;
/// With the AI-NS in front, a bin whose smoothed power is over this many times its minimum
/// learns only as far as the AI-NS says the frame is not speech. Bins that stay near their
/// minimum (a fan's hum, also under speech) keep learning at any speech probability.
const VAD_GATE_RATIO: f32 = 3.0;
/// The minimum search starts this many frames after the first: the first frames after silence
/// hold the signal's onset in part of the window, and a minimum taken there pinned random bins
/// near zero for the first 5–10 s (their noise estimate stayed 10–16 dB low).
const SETTLE: u32 = 3;
/// Mean square (−130 dBFS) below which a frame is digital silence.
const SILENCE_POWER: f32 = 1e-13;

/// How hard the suppressor works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NsLevel {
    /// At most 8 dB.
    Low,
    /// At most 14 dB.
    Moderate,
    /// At most 32 dB (the default).
    #[default]
    High,
    /// At most 40 dB.
    VeryHigh,
}

#[derive(Debug, Clone)]
struct ChannelState {
    /// The signal the gains are applied to and the noise is learnt from: the AI-NS stage's
    /// input when it runs in front, else this stage's own input.
    input: Vec<f32>,
    /// This stage's own input (the AI-NS's output when it runs in front).
    ai_input: Vec<f32>,
    overlap: Vec<f32>,
    /// Power smoothed over time and neighbouring bins.
    smoothed: Vec<f32>,
    /// Its minimum over the current window and the one before.
    minimum: Vec<f32>,
    /// Its minimum over the current window so far.
    window_min: Vec<f32>,
    /// Speech-presence probability per bin.
    presence: Vec<f32>,
    /// The noise power estimate.
    noise: Vec<f32>,
    clean_prev: Vec<f32>,
    /// Frames learnt from.
    frames: u32,
}

impl ChannelState {
    fn new() -> ChannelState {
        ChannelState {
            input: vec![0.0; M],
            ai_input: vec![0.0; M],
            overlap: vec![0.0; N],
            smoothed: vec![0.0; BINS],
            minimum: vec![0.0; BINS],
            window_min: vec![0.0; BINS],
            presence: vec![0.0; BINS],
            noise: vec![0.0; BINS],
            clean_prev: vec![0.0; BINS],
            frames: 0,
        }
    }

    fn clear(&mut self) {
        self.input.fill(0.0);
        self.ai_input.fill(0.0);
        self.overlap.fill(0.0);
        self.forget();
    }

    /// Forgets what was learnt about the noise.
    fn forget(&mut self) {
        self.smoothed.fill(0.0);
        self.minimum.fill(0.0);
        self.window_min.fill(0.0);
        self.presence.fill(0.0);
        self.noise.fill(0.0);
        self.clean_prev.fill(0.0);
        self.frames = 0;
    }
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
    spec_ai: Vec<Complex<f32>>,
    power: Vec<f32>,
    channels: Vec<ChannelState>,
    min_gain: f32,
    /// The AI-NS stage's input lined up with this block, per channel (see [`Self::set_reference`]).
    reference: [[f32; N]; 2],
    has_reference: bool,
    /// The AI-NS's speech probability for this block (0 without it).
    speech: f32,
    /// For studies ([`NoiseSuppressor::enable_split`]): the gains of the last block on channel
    /// 0, and a second signal's input history and overlap-add on the same frames.
    split: Option<Box<NsSplit>>,
}

/// [`NoiseSuppressor::enable_split`]'s state.
struct NsSplit {
    gain: Vec<f32>,
    input: Vec<f32>,
    overlap: Vec<f32>,
}

impl std::fmt::Debug for NoiseSuppressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseSuppressor")
            .field("min_gain", &self.min_gain)
            .finish_non_exhaustive()
    }
}

impl NoiseSuppressor {
    /// A suppressor whose deepest cut follows `level` (8, 14, 26 or 32 dB).
    pub fn new(level: NsLevel) -> NoiseSuppressor {
        let floor_db: f32 = match level {
            NsLevel::Low => -8.0,
            NsLevel::Moderate => -14.0,
            NsLevel::High => -32.0,
            NsLevel::VeryHigh => -40.0,
        };
        NoiseSuppressor {
            fwd: None,
            inv: None,
            fwd_scratch: Vec::new(),
            inv_scratch: Vec::new(),
            window: Vec::new(),
            time: Vec::new(),
            spec: Vec::new(),
            spec_ai: Vec::new(),
            power: Vec::new(),
            channels: Vec::new(),
            min_gain: 10f32.powf(floor_db / 20.0),
            reference: [[0.0; N]; 2],
            has_reference: false,
            speech: 0.0,
            split: None,
        }
    }

    /// Makes the stage keep each block's gains on channel 0 so that [`Self::split_block`] can
    /// put a second signal through the same gains on the same frames (the offline CLI's split
    /// of the output into near end and echo, docs/voice-chain.md). Allocates: not for the live
    /// path.
    pub fn enable_split(&mut self) {
        self.split = Some(Box::new(NsSplit {
            gain: vec![1.0; BINS],
            input: vec![0.0; M],
            overlap: vec![0.0; N],
        }));
    }

    /// Puts `x`, one block of a second signal lined up with what the stage's gains of its last
    /// block were applied to (the AI-NS's input with a reference, else the stage's own input),
    /// through those gains with the stage's frames and overlap-add, in place. The stage's
    /// output is linear in that input once its gains are fixed, so a part of it comes out as
    /// its part of the output. Does nothing without [`Self::enable_split`].
    pub fn split_block(&mut self, x: &mut [f32]) {
        let (Some(fwd), Some(sp)) = (self.fwd.clone(), self.split.as_mut()) else {
            return;
        };
        sp.input.copy_within(N.., 0);
        let n = x.len().min(N);
        sp.input[N..N + n].copy_from_slice(&x[..n]);
        sp.input[N + n..].fill(0.0);
        for i in 0..M {
            self.time[i] = sp.input[i] * self.window[i];
        }
        let _ = fwd.process_with_scratch(&mut self.time, &mut self.spec, &mut self.fwd_scratch);
        for (c, g) in self.spec.iter_mut().zip(&sp.gain) {
            *c *= *g;
        }
        let mut overlap = std::mem::take(&mut sp.overlap);
        self.synthesize(&mut overlap, &mut x[..n]);
        if let Some(sp) = self.split.as_mut() {
            sp.overlap = overlap;
        }
    }

    /// The inverse FFT of `self.spec` (its DC and Nyquist bins made real), windowed and
    /// overlap-added with `overlap` into `x` (a block, or its first samples); the frame's second
    /// half stays in `overlap` for the next block.
    fn synthesize(&mut self, overlap: &mut [f32], x: &mut [f32]) {
        let Some(inv) = self.inv.clone() else {
            return;
        };
        self.spec[0].im = 0.0;
        self.spec[BINS - 1].im = 0.0;
        let _ = inv.process_with_scratch(&mut self.spec, &mut self.time, &mut self.inv_scratch);
        for i in 0..x.len().min(N) {
            x[i] = overlap[i] + self.time[i] * self.window[i] / M as f32;
            overlap[i] = self.time[N + i] * self.window[N + i] / M as f32;
        }
    }

    /// Tells the stage, before it processes the next block, what the AI-NS in front of it had as
    /// input (lined up with that block: `channels[ch]`, one block each) and its speech
    /// probability. The stage then learns the noise from the AI-NS's input, where it is as
    /// stationary as it came in (RNNoise's gains make what is left of a fan's hum come and go),
    /// and applies to that input the smaller of its own gain and the AI-NS's (its output's
    /// magnitude over its input's, per bin): two suppressors in parallel, not in series, so
    /// speech is cut no more than the stricter of the two cuts it. `None`: the stage works on
    /// its own input (no AI-NS in front: `speech` 0; an AI-NS just switched on whose input does
    /// not line up yet: `speech` 1, which keeps a fresh estimator from starting). Allocation-free.
    pub fn set_reference(&mut self, reference: Option<&[&[f32]]>, speech: f32) {
        match reference {
            Some(channels) => {
                for (dst, src) in self.reference.iter_mut().zip(channels.iter()) {
                    let n = src.len().min(N);
                    dst[..n].copy_from_slice(&src[..n]);
                }
                self.has_reference = true;
            }
            None => self.has_reference = false,
        }
        self.speech = speech.clamp(0.0, 1.0);
    }
}

/// One frame of MCRA noise estimation from the frame's power spectrum `p`; `speech` is the AI-NS's
/// speech probability (0 without it).
fn learn(st: &mut ChannelState, p: &[f32], speech: f32) {
    let first = st.frames == 0;
    st.frames = st.frames.saturating_add(1);
    let new_window = st.frames.is_multiple_of(MIN_WINDOW);
    for k in 0..BINS {
        let lo = p[k.saturating_sub(1)];
        let hi = p[(k + 1).min(BINS - 1)];
        let pf = 0.25 * lo + 0.5 * p[k] + 0.25 * hi;
        if first {
            st.smoothed[k] = pf;
            st.minimum[k] = pf;
            st.window_min[k] = pf;
            // Nothing is known of the noise yet: it is learnt from here on (starting from this
            // frame's power would keep a stream's first syllable as "noise").
            st.noise[k] = 0.0;
            st.presence[k] = 0.0;
            continue;
        }
        let s = ALPHA_S * st.smoothed[k] + (1.0 - ALPHA_S) * pf;
        st.smoothed[k] = s;
        if st.frames <= SETTLE {
            st.minimum[k] = s;
            st.window_min[k] = s;
        } else if new_window {
            st.minimum[k] = st.window_min[k].min(s);
            st.window_min[k] = s;
        } else {
            st.minimum[k] = st.minimum[k].min(s);
            st.window_min[k] = st.window_min[k].min(s);
        }
        let present = if s > SPEECH_RATIO * st.minimum[k] {
            1.0
        } else {
            0.0
        };
        st.presence[k] = ALPHA_P * st.presence[k] + (1.0 - ALPHA_P) * present;
        let gated = if s > VAD_GATE_RATIO * st.minimum[k] {
            speech
        } else {
            0.0
        };
        let a = ALPHA_D + (1.0 - ALPHA_D) * st.presence[k].max(gated);
        st.noise[k] = (a * st.noise[k] + (1.0 - a) * p[k]).min(NOISE_CAP * st.minimum[k]);
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
        self.spec_ai = vec![Complex::new(0.0, 0.0); BINS];
        self.power = vec![0.0; BINS];
        self.channels = (0..spec.channels).map(|_| ChannelState::new()).collect();
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        let (Some(fwd), true) = (self.fwd.clone(), self.inv.is_some()) else {
            return;
        };
        let n_ch = block.channels().min(self.channels.len());
        let with_ai = self.has_reference;
        let speech = self.speech;
        for ch in 0..n_ch {
            let st = &mut self.channels[ch];
            let x = block.channel_mut(ch);
            st.ai_input.copy_within(N.., 0);
            st.ai_input[N..].copy_from_slice(x);
            st.input.copy_within(N.., 0);
            if with_ai {
                st.input[N..].copy_from_slice(&self.reference[ch]);
            } else {
                st.input[N..].copy_from_slice(x);
            }
            for i in 0..M {
                self.time[i] = st.input[i] * self.window[i];
            }
            let _ = fwd.process_with_scratch(&mut self.time, &mut self.spec, &mut self.fwd_scratch);
            for (p, c) in self.power.iter_mut().zip(self.spec.iter()) {
                *p = c.norm_sqr();
            }
            if with_ai {
                for i in 0..M {
                    self.time[i] = st.ai_input[i] * self.window[i];
                }
                let _ = fwd.process_with_scratch(
                    &mut self.time,
                    &mut self.spec_ai,
                    &mut self.fwd_scratch,
                );
            }
            // Until it has heard something, digital silence (an idle input, the zeros of a stage
            // with latency before it) teaches it nothing, and it leaves the signal alone; with
            // the AI-NS in front it starts at the first frame that is not speech.
            let mean_square = st.input.iter().map(|v| v * v).sum::<f32>() / M as f32;
            if st.frames > 0 || (mean_square >= SILENCE_POWER && speech < VAD_PAUSE) {
                learn(st, &self.power, speech);
            }
            let learnt = st.frames > 0;
            for k in 0..BINS {
                let p = self.power[k];
                let gw = if learnt {
                    let noise = (OVER * st.noise[k]).max(1e-20);
                    let post = p / noise;
                    let prio = (DD * st.clean_prev[k] / noise + (1.0 - DD) * (post - 1.0).max(0.0))
                        .max(1e-3);
                    let g = (prio / (1.0 + prio)).max(self.min_gain);
                    if with_ai {
                        g
                    } else {
                        // Speech-presence probability on the power smoothed over neighbouring
                        // bins (a lone bin's peak in noise is no evidence of speech).
                        let lo = self.power[k.saturating_sub(1)];
                        let hi = self.power[(k + 1).min(BINS - 1)];
                        let smoothed = (0.25 * lo + 0.5 * p + 0.25 * hi) / noise;
                        let q = 1.0
                            / (1.0
                                + (1.0 + SPP_XI)
                                    * (-(smoothed * SPP_XI / (1.0 + SPP_XI)).min(50.0)).exp());
                        (q * g.ln() + (1.0 - q) * self.min_gain.ln()).exp()
                    }
                } else {
                    1.0
                };
                st.clean_prev[k] = gw * gw * p;
                let g = if with_ai {
                    // The AI-NS's own gain in this bin (its output over its input), at most 1.
                    let ai = self.spec_ai[k].norm_sqr();
                    let g_ai = if ai < p {
                        (ai / p.max(1e-30)).sqrt()
                    } else {
                        1.0
                    };
                    gw.min(g_ai)
                } else {
                    gw
                };
                self.spec[k] *= g;
                if ch == 0
                    && let Some(sp) = self.split.as_mut()
                {
                    sp.gain[k] = g;
                }
            }
            // The overlap-add is moved out for the moment (an empty Vec takes its place: no
            // allocation) so that the synthesis on `self` can work on it.
            let mut overlap = std::mem::take(&mut self.channels[ch].overlap);
            self.synthesize(&mut overlap, x);
            self.channels[ch].overlap = overlap;
        }
        if block.channels() == 2 && n_ch == 1 {
            let (l, r) = block.pair_mut();
            r.copy_from_slice(l);
        }
    }

    fn reset(&mut self) {
        for st in self.channels.iter_mut() {
            st.clear();
        }
    }

    fn resume(&mut self) {
        // What was learnt before the stage was switched off may no longer be the room's noise
        // (and the minimum would hold the old floor for up to 3 s).
        for st in self.channels.iter_mut() {
            st.forget();
        }
    }

    fn latency(&self) -> Frames {
        Frames(N)
    }
}
