//! WebRTC's classic noise suppressor via `sonora`, kept for comparison: it allocates once per
//! block, so the chain uses [`crate::ns::NoiseSuppressor`] instead.

use sonora::Config;
use sonora::config::{NoiseSuppression, NoiseSuppressionLevel};

use crate::apm::Apm;
use crate::block::Block;
use crate::ns::NsLevel;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::Frames;

/// The suppressor's delay at 48 kHz (band split plus its overlap-add), measured by
/// `tests/latency_probe.rs`.
pub const NS_LATENCY: Frames = Frames(334);

/// The WebRTC noise suppression stage.
#[derive(Debug)]
pub struct WebRtcNs {
    apm: Apm,
}

impl Default for WebRtcNs {
    fn default() -> Self {
        WebRtcNs::new(NsLevel::default())
    }
}

impl WebRtcNs {
    /// A suppressor at `level`.
    pub fn new(level: NsLevel) -> WebRtcNs {
        let level = match level {
            NsLevel::Low => NoiseSuppressionLevel::Low,
            NsLevel::Moderate => NoiseSuppressionLevel::Moderate,
            NsLevel::High => NoiseSuppressionLevel::High,
            NsLevel::VeryHigh => NoiseSuppressionLevel::VeryHigh,
        };
        WebRtcNs {
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

impl Processor for WebRtcNs {
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
