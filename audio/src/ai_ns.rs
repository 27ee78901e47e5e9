//! AI noise suppression (RNNoise via `nnnoiseless`) with a strength 0–100 %: the output is the
//! denoised signal mixed with the (latency-aligned) original, so 100 % is full RNNoise and 50 %
//! keeps some ambience.

use nnnoiseless::DenoiseState;

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::{BLOCK_FRAMES, Frames};

/// RNNoise's own delay: its analysis window overlaps one frame.
pub const AI_NS_LATENCY: Frames = Frames(BLOCK_FRAMES);

/// Warms RNNoise's per-thread FFT plan cache on the calling thread (it allocates the first time a
/// thread runs RNNoise). The engine calls this on its DSP thread before processing starts.
pub fn prime_thread() {
    let mut st = DenoiseState::new();
    let mut noise = crate::test_signals::Noise::new(1);
    let input: Vec<f32> = (0..BLOCK_FRAMES)
        .map(|_| noise.next_sample() * 3000.0)
        .collect();
    let mut out = vec![0.0f32; BLOCK_FRAMES];
    for _ in 0..3 {
        st.process_frame(&mut out, &input);
    }
}

/// The AI noise suppression stage.
pub struct AiNoiseSuppressor {
    states: Vec<Box<DenoiseState<'static>>>,
    strength: f32,
    scratch_in: [f32; BLOCK_FRAMES],
    scratch_out: [f32; BLOCK_FRAMES],
    dry: [[f32; BLOCK_FRAMES]; 2],
    /// The input lined up with the last output block (the dry path's block).
    aligned: [[f32; BLOCK_FRAMES]; 2],
    /// RNNoise's speech probability for the last input block and the one before, per channel.
    vad: [[f32; 2]; 2],
    /// Blocks processed since it was prepared, reset or resumed (up to 2): `aligned` holds the
    /// input only from the second on (the first lines up with whatever came before the pause).
    primed: u8,
    channels: usize,
}

impl std::fmt::Debug for AiNoiseSuppressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiNoiseSuppressor")
            .field("strength", &self.strength)
            .finish()
    }
}

impl Default for AiNoiseSuppressor {
    fn default() -> Self {
        AiNoiseSuppressor::new(1.0)
    }
}

impl AiNoiseSuppressor {
    /// A suppressor with `strength` in 0..=1.
    pub fn new(strength: f32) -> AiNoiseSuppressor {
        AiNoiseSuppressor {
            states: Vec::new(),
            strength: strength.clamp(0.0, 1.0),
            scratch_in: [0.0; BLOCK_FRAMES],
            scratch_out: [0.0; BLOCK_FRAMES],
            dry: [[0.0; BLOCK_FRAMES]; 2],
            aligned: [[0.0; BLOCK_FRAMES]; 2],
            vad: [[0.0; 2]; 2],
            primed: 0,
            channels: 1,
        }
    }

    /// The input lined up with the last block it put out (its input one block earlier), channel
    /// `ch`: what the classic NS after it learns the noise from.
    pub fn aligned_input(&self, ch: usize) -> &[f32] {
        &self.aligned[ch.min(1)]
    }

    /// Whether [`Self::aligned_input`] holds the input that lines up with the last output block.
    pub fn reference_ready(&self) -> bool {
        self.primed >= 2
    }

    /// RNNoise's speech probability (0..=1) around the last block it put out: the larger of its
    /// reading for that block's input and for the input after it, over the channels.
    pub fn speech_probability(&self) -> f32 {
        self.vad[..self.states.len().min(2)]
            .iter()
            .map(|v| v[0].max(v[1]))
            .fold(0.0, f32::max)
    }

    /// Sets the strength (0..=1); takes effect on the next block, allocation-free.
    pub fn set_strength(&mut self, strength: f32) {
        self.strength = strength.clamp(0.0, 1.0);
    }
}

impl Processor for AiNoiseSuppressor {
    fn prepare(&mut self, spec: StreamSpec) -> Result<(), PrepareError> {
        if spec.rate.hz() != 48_000 || !(1..=2).contains(&spec.channels) {
            return Err(PrepareError::Unsupported {
                rate: spec.rate.hz(),
                channels: spec.channels,
            });
        }
        self.channels = spec.channels;
        self.states = (0..spec.channels).map(|_| DenoiseState::new()).collect();
        self.dry = [[0.0; BLOCK_FRAMES]; 2];
        self.aligned = [[0.0; BLOCK_FRAMES]; 2];
        self.vad = [[0.0; 2]; 2];
        self.primed = 0;
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        let s = self.strength;
        let n = block.channels().min(self.states.len());
        for ch in 0..n {
            let x = block.channel_mut(ch);
            for (d, v) in self.scratch_in.iter_mut().zip(x.iter()) {
                *d = v * 32768.0;
            }
            let vad = self.states[ch].process_frame(&mut self.scratch_out, &self.scratch_in);
            self.vad[ch] = [self.vad[ch][1], vad];
            // Dry path delayed by one block to line up with RNNoise's output.
            for i in 0..BLOCK_FRAMES {
                let wet = self.scratch_out[i] / 32768.0;
                let dry = self.dry[ch][i];
                self.aligned[ch][i] = dry;
                self.dry[ch][i] = x[i];
                x[i] = wet * s + dry * (1.0 - s);
            }
        }
        self.primed = self.primed.saturating_add(1).min(2);
        if block.channels() == 2 && n == 1 {
            let (l, r) = block.pair_mut();
            r.copy_from_slice(l);
        }
    }

    fn reset(&mut self) {
        // DenoiseState has no in-place reset; rebuilding allocates, so the engine only resets
        // off the DSP thread.
        for st in self.states.iter_mut() {
            *st = DenoiseState::new();
        }
        self.dry = [[0.0; BLOCK_FRAMES]; 2];
        self.aligned = [[0.0; BLOCK_FRAMES]; 2];
        self.vad = [[0.0; 2]; 2];
        self.primed = 0;
    }

    fn resume(&mut self) {
        self.primed = 0;
    }

    fn latency(&self) -> Frames {
        AI_NS_LATENCY
    }
}
