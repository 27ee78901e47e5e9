//! Live on/off for a stage without clicks: a switched-on stage warms up for one block with its
//! output discarded, then crossfades in over one block; switching off crossfades back to the dry
//! signal over one block, after which the stage is skipped entirely.
//!
//! A stage with latency either keeps that latency while off (`keep_latency`: the dry path goes
//! through a delay line of the same length, so nothing shifts in time and the crossfade blends
//! aligned signals) or drops it (the dry path is not delayed; the one-block crossfade then blends
//! two offsets of the same audio, which is smooth, and the off state adds no delay).

use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::units::{BLOCK_FRAMES, Frames};

/// A stage with a live toggle.
#[derive(Debug)]
pub struct Switched<P> {
    inner: P,
    on: bool,
    wet: f32,
    warm: bool,
    keep_latency: bool,
    dry: Block,
    ring: [Vec<f32>; 2],
    ring_pos: usize,
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
            ring: [Vec::new(), Vec::new()],
            ring_pos: 0,
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

    /// Copies `block` into `self.dry`, through the delay line when latency is kept.
    fn capture_dry(&mut self, block: &Block) {
        self.dry.copy_from(block);
        let len = self.ring[0].len();
        if len == 0 {
            return;
        }
        let channels = block.channels();
        let start = self.ring_pos;
        for ch in 0..channels {
            let ring = &mut self.ring[ch];
            let dry = self.dry.channel_mut(ch);
            let mut pos = start;
            for s in dry.iter_mut() {
                std::mem::swap(s, &mut ring[pos]);
                pos += 1;
                if pos == len {
                    pos = 0;
                }
            }
        }
        self.ring_pos = (start + BLOCK_FRAMES) % len;
    }
}

impl<P: Processor> Processor for Switched<P> {
    fn prepare(&mut self, spec: StreamSpec) -> Result<(), PrepareError> {
        self.inner.prepare(spec)?;
        let len = if self.keep_latency {
            self.inner.latency().get()
        } else {
            0
        };
        self.ring = [vec![0.0; len], vec![0.0; len]];
        self.ring_pos = 0;
        Ok(())
    }

    fn process(&mut self, block: &mut Block) {
        self.capture_dry(block);
        if !self.on && self.wet == 0.0 {
            let ts = block.timestamp;
            block.copy_from(&self.dry);
            block.timestamp = ts;
            return;
        }
        if self.on && !self.warm && self.wet == 0.0 {
            // Back on after it stopped processing: whatever it learnt is from another time.
            self.inner.resume();
        }
        self.inner.process(block);
        if self.on && !self.warm {
            // Warm-up block: the stage has seen fresh input once; keep the dry output.
            self.warm = true;
            let ts = block.timestamp;
            block.copy_from(&self.dry);
            block.timestamp = ts;
            return;
        }
        let target = if self.on { 1.0 } else { 0.0 };
        if self.wet == target && target == 1.0 {
            return;
        }
        let step = (target - self.wet) / BLOCK_FRAMES as f32;
        let start = self.wet;
        for ch in 0..block.channels() {
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
        for r in self.ring.iter_mut() {
            r.fill(0.0);
        }
    }

    fn latency(&self) -> Frames {
        if self.is_active() || self.keep_latency {
            self.inner.latency()
        } else {
            Frames::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signals::sine_block;

    /// A stage that delays by 100 frames and scales by 0.5.
    struct Delay100 {
        buf: Vec<f32>,
    }

    impl Processor for Delay100 {
        fn prepare(&mut self, _spec: StreamSpec) -> Result<(), PrepareError> {
            self.buf = vec![0.0; 100];
            Ok(())
        }
        fn process(&mut self, block: &mut Block) {
            let x = block.channel_mut(0);
            let mut tmp = [0.0f32; BLOCK_FRAMES];
            tmp[..100].copy_from_slice(&self.buf);
            tmp[100..].copy_from_slice(&x[..BLOCK_FRAMES - 100]);
            self.buf.copy_from_slice(&x[BLOCK_FRAMES - 100..]);
            for (o, t) in x.iter_mut().zip(tmp) {
                *o = t * 0.5;
            }
        }
        fn reset(&mut self) {}
        fn latency(&self) -> Frames {
            Frames(100)
        }
    }

    /// Toggling a delaying stage with kept latency never jumps by more than a sine's slope allows.
    #[test]
    fn toggles_are_click_free_with_kept_latency() {
        let mut s = Switched::new(Delay100 { buf: Vec::new() }, false, true);
        s.prepare(StreamSpec {
            channels: 1,
            ..StreamSpec::default()
        })
        .expect("prepare");
        let mut prev = 0.0f32;
        let mut max_step = 0.0f32;
        for n in 0..60u64 {
            if n % 10 == 5 {
                let on = !s.is_on();
                s.set_on(on);
            }
            let mut b = sine_block(200.0, 0.5, n, 1);
            s.process(&mut b);
            for v in b.channel(0) {
                max_step = max_step.max((v - prev).abs());
                prev = *v;
            }
        }
        // A 200 Hz sine at 0.5 moves at most 0.5·2π·200/48000 ≈ 0.013 per sample.
        assert!(max_step < 0.014, "step {max_step}");
        assert_eq!(s.latency(), Frames(100));
    }
}
