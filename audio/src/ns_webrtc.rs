//! Classic noise suppression (WebRTC NS via `sonora`), four aggressiveness levels.

use sonora::Config;
use sonora::config::{NoiseSuppression, NoiseSuppressionLevel};

use crate::apm::Apm;
use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::Frames;

/// The suppressor's delay at 48 kHz (band split plus its overlap-add), measured by
/// `tests/latency_probe.rs`.
pub const NS_LATENCY: Frames = Frames(334);

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

/// The noise suppression stage.
#[derive(Debug)]
pub struct NoiseSuppressor {
    apm: Apm,
}

impl Default for NoiseSuppressor {
    fn default() -> Self {
        NoiseSuppressor::new(NsLevel::default())
    }
}

impl NoiseSuppressor {
    /// A suppressor at `level`.
    pub fn new(level: NsLevel) -> NoiseSuppressor {
        let level = match level {
            NsLevel::Low => NoiseSuppressionLevel::Low,
            NsLevel::Moderate => NoiseSuppressionLevel::Moderate,
            NsLevel::High => NoiseSuppressionLevel::High,
            NsLevel::VeryHigh => NoiseSuppressionLevel::VeryHigh,
        };
        NoiseSuppressor {
            apm: Apm::new(Config {
                noise_suppression: Some(NoiseSuppression {
                    level,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
}

impl Processor for NoiseSuppressor {
    fn prepare(&mut self, spec: StreamSpec) -> Result<(), PrepareError> {
        self.apm.prepare(spec, "ns")
    }

    fn process(&mut self, block: &mut Block) {
        self.apm.process(block);
    }

    fn reset(&mut self) {
        self.apm.reinit();
    }

    fn latency(&self) -> Frames {
        NS_LATENCY
    }
}
