//! A stereo test signal for tests and demos: 440 Hz on the left, 660 Hz on the right, encoded
//! with the engine's own Opus encoder (music profile: 48 kHz stereo, 128 kbps, 20 ms), ready for
//! [`crate::Publisher::send`]. The end-to-end tests (a browser must find each tone on its own
//! channel) and this crate's tests use it.

use onmic_audio::Block;
use onmic_audio::opus::{OpusEncoder, OpusError, OpusProfile};

/// The tone generator: 0.3 peak sines, 440 Hz left and 660 Hz right.
pub struct StereoTone {
    encoder: OpusEncoder,
    index: u64,
    block: Block,
}

impl StereoTone {
    /// A tone starting at RTP timestamp 0.
    pub fn new() -> Result<StereoTone, OpusError> {
        Ok(StereoTone {
            encoder: OpusEncoder::new(OpusProfile::music(), 0, 0)?,
            index: 0,
            block: Block::silent(2),
        })
    }

    /// The next 20 ms packet and its RTP timestamp.
    pub fn next_packet(&mut self) -> Result<(Vec<u8>, u32), OpusError> {
        loop {
            let start = self.index * onmic_audio::BLOCK_FRAMES as u64;
            let (l, r) = self.block.pair_mut();
            #[allow(clippy::needless_range_loop)] // two channels indexed by one sample index
            for i in 0..onmic_audio::BLOCK_FRAMES {
                let t = (start + i as u64) as f64 / 48_000.0;
                l[i] = (0.3 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as f32;
                r[i] = (0.3 * (2.0 * std::f64::consts::PI * 660.0 * t).sin()) as f32;
            }
            self.block.timestamp = start;
            self.index += 1;
            if let Some(p) = self.encoder.push_block(&self.block)? {
                return Ok((p.payload().to_vec(), p.rtp_timestamp));
            }
        }
    }
}
