//! WebRTC AEC3 via `sonora`, kept as a reference implementation for benchmarks and comparison:
//! it reaches a higher ERLE than [`crate::aec::Aec`] but its suppressor eats ~60 % of the near end
//! in double talk, and it allocates on every block. The chain uses [`crate::aec::Aec`].
//!
//! The far-end reference must be exactly what is sent to the output device (remote seats plus
//! local music); feed it with [`Aec3::analyze_render`] before processing the capture block that
//! was recorded while it played.

use sonora::Config;
use sonora::config::EchoCanceller;

use crate::apm::Apm;
use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::Frames;

/// The canceller's delay at 48 kHz for broadband noise (band split plus block framing), measured
/// by `tests/latency_probe.rs`; the band split's phase response makes speech appear later.
pub const AEC_LATENCY: Frames = Frames(238);

/// The AEC3 stage.
#[derive(Debug)]
pub struct Aec3 {
    apm: Apm,
    delay_ms: i32,
}

impl Default for Aec3 {
    fn default() -> Self {
        Aec3::new()
    }
}

impl Aec3 {
    /// An AEC3 instance (high-pass filter enforced, as the reference implementation does).
    pub fn new() -> Aec3 {
        Aec3 {
            apm: Apm::new(Config {
                echo_canceller: Some(EchoCanceller::default()),
                ..Default::default()
            }),
            delay_ms: 0,
        }
    }

    /// Feeds one 10 ms block of the far-end reference.
    pub fn analyze_render(&mut self, far: &Block) {
        self.apm.analyze_render(far);
    }

    /// Tells the canceller the expected render→capture delay (device buffers), in ms.
    pub fn set_stream_delay_ms(&mut self, ms: i32) {
        self.delay_ms = ms.clamp(0, 500);
        self.apm.set_stream_delay_ms(self.delay_ms);
    }
}

impl Processor for Aec3 {
    fn prepare(&mut self, spec: StreamSpec) -> Result<(), PrepareError> {
        self.apm.prepare(spec, "aec")?;
        self.apm.set_stream_delay_ms(self.delay_ms);
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        self.apm.set_stream_delay_ms(self.delay_ms);
        self.apm.process(block);
    }

    fn reset(&mut self) {
        self.apm.reinit();
    }

    fn latency(&self) -> Frames {
        AEC_LATENCY
    }
}
