//! Live on/off for a stage without clicks: a switched-on stage warms up for one block with its
//! output discarded, then crossfades in over one block; switching off crossfades back to the dry
//! signal over one block, after which the stage is skipped entirely.
//!
//! A stage with one block of latency either keeps that latency while off (`keep_latency`, so the
//! dry path is delayed to match and nothing shifts in time) or drops it (the dry path is not
//! delayed; the crossfade then blends two offsets of the same audio for 10 ms, which is smooth).

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::{BLOCK_FRAMES, Frames};

/// A stage with a live toggle. Supports stages whose latency is 0 or one block.
#[derive(Debug)]
pub struct Switched<P> {
    inner: P,
    on: bool,
    wet: f32,
    warm: bool,
    keep_latency: bool,
    dry: Block,
    prev_input: Block,
}

impl<P: Processor> Switched<P> {
    /// Wraps `inner`, initially `on` or off; see the module doc for `keep_latency`.
    pub fn new(inner: P, on: bool, keep_latency: bool) -> Switched<P> {
        Switched {
            inner,
            on,
            wet: if on { 1.0 } else { 0.0 },
            warm: on,
            keep_latency,
            dry: Block::silent(2),
            prev_input: Block::silent(2),
        }
    }

    /// Turns the stage on or off; the change is crossfaded over the next blocks.
    pub fn set_on(&mut self, on: bool) {
        if on && !self.on {
            self.warm = false;
        }
        self.on = on;
    }

    /// Whether the stage is (turning) on.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Whether the stage currently affects the output at all.
    pub fn is_active(&self) -> bool {
        self.on || self.wet > 0.0
    }

    /// The wrapped stage.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The wrapped stage, mutable.
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }
}

impl<P: Processor> Processor for Switched<P> {
    fn prepare(&mut self, spec: StreamSpec) -> Result<(), PrepareError> {
        self.inner.prepare(spec)
    }

    fn process(&mut self, block: &mut Block) {
        let delayed = self.keep_latency && self.inner.latency().get() >= BLOCK_FRAMES;
        if !self.on && self.wet == 0.0 {
            if delayed {
                self.dry.copy_from(&self.prev_input);
                self.prev_input.copy_from(block);
                let ts = block.timestamp;
                block.copy_from(&self.dry);
                block.timestamp = ts;
            }
            return;
        }
        if delayed {
            self.dry.copy_from(&self.prev_input);
            self.prev_input.copy_from(block);
            self.dry.timestamp = block.timestamp;
            self.dry.set_channels(block.channels());
        } else {
            self.dry.copy_from(block);
        }
        self.inner.process(block);
        if self.on && !self.warm {
            // Warm-up block: the stage has seen fresh input once; keep the dry output.
            self.warm = true;
            block.copy_from(&self.dry);
            return;
        }
        let target = if self.on { 1.0 } else { 0.0 };
        if self.wet == target && target == 1.0 {
            return;
        }
        let step = (target - self.wet) / BLOCK_FRAMES as f32;
        let start = self.wet;
        let channels = block.channels();
        for ch in 0..channels {
            let dry = self.dry.channel(ch);
            let out = block.channel_mut(ch);
            for i in 0..BLOCK_FRAMES {
                let g = start + step * (i + 1) as f32;
                out[i] = out[i] * g + dry[i] * (1.0 - g);
            }
        }
        self.wet = target;
    }

    fn reset(&mut self) {
        self.inner.reset();
        self.dry.clear();
        self.prev_input.clear();
    }

    fn latency(&self) -> Frames {
        if self.is_active() || self.keep_latency {
            self.inner.latency()
        } else {
            Frames::ZERO
        }
    }
}
