//! Automatic gain control: brings active speech to a target level (−18 dBFS RMS by default) from
//! anywhere between about −50 and 0 dBFS, boosting quiet talkers and taming loud ones.
//!
//! WebRTC's AGC2 only ever adds gain, so a loud talker would stay loud; this stage estimates the
//! active-speech level with the energy VAD, derives a gain (−30…+36 dB), moves it at most
//! 12 dB/s up and 24 dB/s down, freezes it in pauses (so noise is not pumped up between words)
//! and interpolates it per sample (no zipper noise). Peaks are left to the bus limiter.

use crate::block::Block;
use crate::level::VoiceActivity;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::{BLOCK_FRAMES, Dbfs};

/// The default target: −18 dBFS active-speech RMS.
pub const DEFAULT_TARGET: Dbfs = Dbfs(-18.0);

/// The AGC stage.
#[derive(Debug, Clone)]
pub struct Agc {
    target_db: f32,
    vad: VoiceActivity,
    level_db: Option<f32>,
    gain_db: f32,
    applied_gain: f32,
    /// The last block's gain ramp: its gain before the block and its step per sample.
    last_ramp: (f32, f32),
    adapt: bool,
    /// Most boost, dB.
    pub max_gain_db: f32,
    /// Most cut, dB (negative).
    pub min_gain_db: f32,
}

impl Default for Agc {
    fn default() -> Self {
        Agc::new()
    }
}

impl Agc {
    /// An AGC aiming at [`DEFAULT_TARGET`].
    pub fn new() -> Agc {
        Agc::with_target(DEFAULT_TARGET)
    }

    /// An AGC aiming at `target` active-speech RMS.
    pub fn with_target(target: Dbfs) -> Agc {
        Agc {
            target_db: target.0,
            vad: VoiceActivity::default(),
            level_db: None,
            gain_db: 0.0,
            applied_gain: 1.0,
            last_ramp: (1.0, 0.0),
            adapt: true,
            max_gain_db: 36.0,
            min_gain_db: -30.0,
        }
    }

    /// Whether the next blocks may move the gain: the chain allows it only while the echo
    /// canceller says its output is near-end sound, so echo is never raised.
    pub fn set_adaptation(&mut self, allowed: bool) {
        self.adapt = allowed;
    }

    /// The gain now applied, in dB.
    pub fn gain_db(&self) -> f32 {
        self.gain_db
    }

    /// Multiplies `x`, one block of a second signal, by the gain ramp the last block got (the
    /// offline CLI's split of the output into near end and echo, docs/voice-chain.md).
    pub fn apply_last_gain(&self, x: &mut [f32]) {
        let (start, step) = self.last_ramp;
        for (i, s) in x.iter_mut().enumerate() {
            *s *= start + step * (i + 1) as f32;
        }
    }
}

impl Processor for Agc {
    fn prepare(&mut self, _spec: StreamSpec) -> Result<(), PrepareError> {
        self.reset();
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        let rms = Dbfs::from_amplitude(block.rms());
        // The VAD judges the input, so a quiet talker is still detected before any gain.
        let voiced = self.vad.update(rms) && rms.0 > -60.0 && self.adapt;
        if voiced {
            // Speech level: the mean power of voiced blocks, ~0.5 s time constant.
            let level = match self.level_db {
                None => rms.0,
                Some(l) => {
                    // Average in the power domain so loud syllables dominate, like an RMS.
                    let p = 10f32.powf(l / 10.0);
                    let x = 10f32.powf(rms.0 / 10.0);
                    let a = 0.02;
                    10.0 * (p + (x - p) * a).max(1e-12).log10()
                }
            };
            self.level_db = Some(level);
            let wanted = (self.target_db - level).clamp(self.min_gain_db, self.max_gain_db);
            let per_block_up = 12.0 * BLOCK_FRAMES as f32 / 48_000.0;
            let per_block_down = 24.0 * BLOCK_FRAMES as f32 / 48_000.0;
            self.gain_db += (wanted - self.gain_db).clamp(-per_block_down, per_block_up);
        }
        let target = 10f32.powf(self.gain_db / 20.0);
        let start = self.applied_gain;
        let step = (target - start) / BLOCK_FRAMES as f32;
        self.last_ramp = (start, step);
        for ch in block.active_mut() {
            for (i, s) in ch.iter_mut().enumerate() {
                *s *= start + step * (i + 1) as f32;
            }
        }
        self.applied_gain = target;
    }

    fn reset(&mut self) {
        self.vad.reset();
        self.level_db = None;
        self.gain_db = 0.0;
        self.applied_gain = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signals::sine_block;

    #[test]
    fn steady_tone_converges_to_target() {
        let mut agc = Agc::new();
        agc.prepare(StreamSpec::default()).expect("prepare");
        let mut last = 0.0;
        for n in 0..600u64 {
            // Bursts so the VAD sees speech-like onsets.
            let amp = if (n / 30) % 2 == 0 { 0.01 } else { 0.0 };
            let mut b = sine_block(300.0, amp, n, 1);
            agc.process(&mut b);
            if amp > 0.0 {
                last = Dbfs::from_amplitude(b.rms()).0;
            }
        }
        assert!((last + 18.0).abs() < 1.5, "{last}");
    }
}
