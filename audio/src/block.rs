//! The fixed-size planar block every stage processes: 10 ms, up to two channels, no heap.

use crate::units::{BLOCK_FRAMES, MAX_CHANNELS};

/// One 10 ms block of planar `f32` audio in `[-1, 1]` plus its capture timestamp.
///
/// Storage is inline, so moving blocks through rings and stages never allocates.
#[derive(Clone, Debug)]
pub struct Block {
    samples: [[f32; BLOCK_FRAMES]; MAX_CHANNELS],
    channels: usize,
    /// Capture time of the first frame, in frames since the stream started (48 kHz clock).
    pub timestamp: u64,
}

impl Default for Block {
    fn default() -> Self {
        Block::silent(2)
    }
}

impl Block {
    /// A silent block with `channels` channels (clamped to 1..=2).
    pub fn silent(channels: usize) -> Block {
        Block {
            samples: [[0.0; BLOCK_FRAMES]; MAX_CHANNELS],
            channels: channels.clamp(1, MAX_CHANNELS),
            timestamp: 0,
        }
    }

    /// How many channels carry audio (1 or 2).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Changes the channel count (clamped to 1..=2); a new second channel copies the first.
    pub fn set_channels(&mut self, channels: usize) {
        let channels = channels.clamp(1, MAX_CHANNELS);
        if channels == 2 && self.channels == 1 {
            let [l, r] = &mut self.samples;
            r.copy_from_slice(l);
        }
        self.channels = channels;
    }

    /// Channel `ch` (panics if `ch >= 2`, a programming error).
    pub fn channel(&self, ch: usize) -> &[f32; BLOCK_FRAMES] {
        &self.samples[ch]
    }

    /// Channel `ch`, mutable.
    pub fn channel_mut(&mut self, ch: usize) -> &mut [f32; BLOCK_FRAMES] {
        &mut self.samples[ch]
    }

    /// Both channel buffers at once, mutable (the second is meaningful only in stereo).
    pub fn pair_mut(&mut self) -> (&mut [f32; BLOCK_FRAMES], &mut [f32; BLOCK_FRAMES]) {
        let [l, r] = &mut self.samples;
        (l, r)
    }

    /// The active channels as slices.
    pub fn active(&self) -> impl Iterator<Item = &[f32; BLOCK_FRAMES]> {
        self.samples.iter().take(self.channels)
    }

    /// The active channels as mutable slices.
    pub fn active_mut(&mut self) -> impl Iterator<Item = &mut [f32; BLOCK_FRAMES]> {
        self.samples.iter_mut().take(self.channels)
    }

    /// Fills the block with silence, keeping the channel count.
    pub fn clear(&mut self) {
        for ch in self.samples.iter_mut() {
            ch.fill(0.0);
        }
    }

    /// Copies samples and channel count from `other`.
    pub fn copy_from(&mut self, other: &Block) {
        self.samples = other.samples;
        self.channels = other.channels;
        self.timestamp = other.timestamp;
    }

    /// Reads `BLOCK_FRAMES` interleaved frames with `channels` channels from `src`.
    /// Returns false (and leaves the block untouched) if `src` is too short.
    pub fn read_interleaved(&mut self, src: &[f32], channels: usize) -> bool {
        let channels = channels.clamp(1, MAX_CHANNELS);
        if src.len() < BLOCK_FRAMES * channels {
            return false;
        }
        self.channels = channels;
        for (i, frame) in src.chunks_exact(channels).take(BLOCK_FRAMES).enumerate() {
            for (ch, s) in frame.iter().enumerate() {
                self.samples[ch][i] = *s;
            }
        }
        true
    }

    /// Writes the block interleaved into `dst` (`BLOCK_FRAMES * channels()` samples).
    /// Returns false if `dst` is too short.
    pub fn write_interleaved(&self, dst: &mut [f32]) -> bool {
        let channels = self.channels;
        if dst.len() < BLOCK_FRAMES * channels {
            return false;
        }
        for (i, frame) in dst
            .chunks_exact_mut(channels)
            .take(BLOCK_FRAMES)
            .enumerate()
        {
            for (ch, s) in frame.iter_mut().enumerate() {
                *s = self.samples[ch][i];
            }
        }
        true
    }

    /// Peak absolute sample over the active channels.
    pub fn peak(&self) -> f32 {
        self.active()
            .flat_map(|c| c.iter())
            .fold(0.0f32, |m, s| m.max(s.abs()))
    }

    /// RMS over the active channels.
    pub fn rms(&self) -> f32 {
        let mut sum = 0.0f64;
        for c in self.active() {
            for s in c {
                sum += f64::from(*s) * f64::from(*s);
            }
        }
        (sum / (BLOCK_FRAMES * self.channels) as f64).sqrt() as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_round_trip() {
        let src: Vec<f32> = (0..BLOCK_FRAMES * 2).map(|i| i as f32 / 1000.0).collect();
        let mut b = Block::silent(1);
        assert!(b.read_interleaved(&src, 2));
        assert_eq!(b.channels(), 2);
        assert_eq!(b.channel(1)[0], src[1]);
        let mut out = vec![0.0; BLOCK_FRAMES * 2];
        assert!(b.write_interleaved(&mut out));
        assert_eq!(out, src);
        assert!(!b.read_interleaved(&src[..10], 2));
    }
}
