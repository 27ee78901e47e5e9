//! The one trait every DSP stage implements.
//!
//! Contract: `prepare` may allocate and fail; `process` runs on the real-time DSP thread and must
//! never allocate, lock, log or block; `reset` clears state so that the same input gives the same
//! output again; `latency` says how many frames the stage delays its input.

use crate::block::Block;
use crate::units::{Frames, SampleRate};

/// What a stage is prepared for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// Sample rate (the engine always runs at 48 kHz).
    pub rate: SampleRate,
    /// Channels of the blocks the stage will see (1 or 2).
    pub channels: usize,
}

impl Default for StreamSpec {
    fn default() -> Self {
        StreamSpec {
            rate: crate::units::ENGINE_RATE,
            channels: 2,
        }
    }
}

/// Why a stage could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareError {
    /// The stage does not support this rate or channel count.
    #[error("unsupported stream: {rate} Hz, {channels} channels")]
    Unsupported {
        /// Requested rate in Hz.
        rate: u32,
        /// Requested channel count.
        channels: usize,
    },
    /// The underlying library refused the configuration.
    #[error("{stage}: {message}")]
    Library {
        /// The stage's name.
        stage: &'static str,
        /// What the library said.
        message: String,
    },
}

/// A DSP stage working in place on fixed 10 ms blocks.
pub trait Processor: Send {
    /// Allocates and configures for `spec`; the only place a stage may allocate.
    fn prepare(&mut self, spec: StreamSpec) -> Result<(), PrepareError>;
    /// Processes one block in place. Real-time safe.
    fn process(&mut self, block: &mut Block);
    /// Clears internal state (filters, envelopes, adaptation) without reallocating.
    fn reset(&mut self);
    /// Called on the DSP thread when the stage is switched back on after it was off (and not
    /// processing); a stage whose learnt state goes stale meanwhile forgets it here. Real-time
    /// safe; the default keeps everything.
    fn resume(&mut self) {}
    /// Frames of delay this stage adds.
    fn latency(&self) -> Frames {
        Frames::ZERO
    }
}
