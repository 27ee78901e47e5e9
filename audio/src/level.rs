//! Block level meters (peak and RMS per block, with peak hold) placed before and after the chain,
//! and a small energy voice-activity detector with an adaptive noise floor and hangover.

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::Dbfs;

/// One meter reading.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LevelReading {
    /// Peak of the last block.
    pub peak: Dbfs,
    /// RMS of the last block.
    pub rms: Dbfs,
}

/// A pass-through meter stage.
#[derive(Debug, Clone, Default)]
pub struct LevelMeter {
    last: LevelReading,
}

impl LevelMeter {
    /// A meter reading silence.
    pub fn new() -> LevelMeter {
        LevelMeter {
            last: LevelReading {
                peak: Dbfs::FLOOR,
                rms: Dbfs::FLOOR,
            },
        }
    }

    /// The reading of the last block processed.
    pub fn reading(&self) -> LevelReading {
        self.last
    }
}

impl Processor for LevelMeter {
    fn prepare(&mut self, _spec: StreamSpec) -> Result<(), PrepareError> {
        self.reset();
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        self.last = LevelReading {
            peak: Dbfs::from_amplitude(block.peak()),
            rms: Dbfs::from_amplitude(block.rms()),
        };
    }

    fn reset(&mut self) {
        *self = LevelMeter::new();
    }
}

/// Energy VAD: a block is voice when it stands `margin_db` above a tracked noise floor and above
/// an absolute gate; a hangover keeps it on through short pauses between syllables.
#[derive(Debug, Clone)]
pub struct VoiceActivity {
    noise_floor_db: f32,
    started: bool,
    hang_blocks_left: u32,
    /// How far above the noise floor a block must be, in dB.
    pub margin_db: f32,
    /// Blocks below the threshold before voice turns off.
    pub hangover_blocks: u32,
    /// Absolute gate in dBFS below which nothing is voice.
    pub gate_dbfs: f32,
}

impl Default for VoiceActivity {
    fn default() -> Self {
        VoiceActivity {
            noise_floor_db: -70.0,
            started: false,
            hang_blocks_left: 0,
            margin_db: 9.0,
            hangover_blocks: 20,
            gate_dbfs: -50.0,
        }
    }
}

impl VoiceActivity {
    /// Feeds one block's RMS level; returns whether the block counts as voice.
    pub fn update(&mut self, rms: Dbfs) -> bool {
        let x = rms.0;
        if !self.started {
            self.started = true;
            self.noise_floor_db = x.max(-100.0);
        }
        // The floor follows dips at once and rises by 0.05 dB per block (5 dB/s).
        if x < self.noise_floor_db {
            self.noise_floor_db = x.max(-100.0);
        } else {
            self.noise_floor_db += 0.05;
        }
        let above = x > self.gate_dbfs && x > self.noise_floor_db + self.margin_db;
        if above {
            self.hang_blocks_left = self.hangover_blocks;
            true
        } else if self.hang_blocks_left > 0 {
            self.hang_blocks_left -= 1;
            true
        } else {
            false
        }
    }

    /// Forgets the noise floor and any hangover.
    pub fn reset(&mut self) {
        let d = VoiceActivity::default();
        self.noise_floor_db = d.noise_floor_db;
        self.started = false;
        self.hang_blocks_left = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signals::{Noise, sine_block};

    #[test]
    fn meter_reads_sine_levels() {
        let mut m = LevelMeter::new();
        let mut b = sine_block(1000.0, 0.5, 0, 2);
        m.process(&mut b);
        let r = m.reading();
        assert!((r.peak.0 - (-6.02)).abs() < 0.05, "{r:?}");
        assert!((r.rms.0 - (-9.03)).abs() < 0.05, "{r:?}");
    }

    #[test]
    fn vad_separates_bursts_from_steady_noise() {
        let mut vad = VoiceActivity::default();
        let mut noise = Noise::new(7);
        let mut voiced_in_noise = 0;
        for n in 0..300u64 {
            let mut b = Block::silent(1);
            for s in b.channel_mut(0).iter_mut() {
                *s = noise.next_sample() * 0.01; // about −45 dBFS RMS, above the gate
            }
            if (200..230).contains(&n) {
                let tone = sine_block(300.0, 0.3, n, 1);
                for (s, t) in b.channel_mut(0).iter_mut().zip(tone.channel(0)) {
                    *s += t;
                }
            }
            let v = vad.update(Dbfs::from_amplitude(b.rms()));
            if n < 200 && n > 50 && v {
                voiced_in_noise += 1;
            }
            if (200..230).contains(&n) {
                assert!(v, "burst block {n} not voiced");
            }
            if n > 260 {
                assert!(!v, "hangover too long at {n}");
            }
        }
        assert_eq!(voiced_in_noise, 0);
    }
}
