//! Streaming conversion of decoded PCM (any rate, any channel count) to 48 kHz interleaved
//! stereo, with an exact frame count: `frames_in · 48000 / rate` frames come out once flushed,
//! aligned with the input (the resampler's delay is dropped).

use rubato::{FftFixedIn, Resampler};

use super::RATE;
use crate::resample::ResampleError;

/// Input frames per resampler call.
const CHUNK: usize = 1024;

/// Converts interleaved PCM to 48 kHz interleaved stereo (mono is copied to both sides; of more
/// than two channels the first two are kept).
pub(crate) struct To48 {
    rate: u32,
    channels: usize,
    rs: Option<FftFixedIn<f32>>,
    inbuf: Vec<Vec<f32>>,
    filled: usize,
    /// Output frames still to drop (the resampler's delay).
    skip: usize,
    frames_in: u64,
    frames_out: u64,
}

impl To48 {
    /// A converter for `channels` at `rate` Hz.
    pub(crate) fn new(rate: u32, channels: usize) -> Result<To48, ResampleError> {
        let work = channels.clamp(1, 2);
        let setup = |m: String| ResampleError::Setup {
            from: rate,
            to: RATE,
            channels,
            message: m,
        };
        if rate == 0 || channels == 0 {
            return Err(setup("no sample rate or channels".into()));
        }
        let rs = if rate == RATE {
            None
        } else {
            Some(
                FftFixedIn::<f32>::new(rate as usize, RATE as usize, CHUNK, 2, work)
                    .map_err(|e| setup(e.to_string()))?,
            )
        };
        let skip = rs.as_ref().map_or(0, |r| r.output_delay());
        Ok(To48 {
            rate,
            channels,
            rs,
            inbuf: vec![vec![0.0; CHUNK]; work],
            filled: 0,
            skip,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Source rate.
    pub(crate) fn rate(&self) -> u32 {
        self.rate
    }

    /// Source channels.
    pub(crate) fn channels(&self) -> usize {
        self.channels
    }

    /// Forgets everything buffered (a seek).
    pub(crate) fn reset(&mut self) {
        if let Some(rs) = self.rs.as_mut() {
            rs.reset();
            self.skip = rs.output_delay();
        }
        self.filled = 0;
        self.frames_in = 0;
        self.frames_out = 0;
    }

    /// Converts `input` (interleaved, `channels()` channels), appending stereo to `out`.
    pub(crate) fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), ResampleError> {
        let ch = self.channels;
        let frames = input.len() / ch;
        self.frames_in += frames as u64;
        if self.rs.is_none() {
            out.reserve(frames * 2);
            for f in input.chunks_exact(ch) {
                let l = f[0];
                let r = if ch >= 2 { f[1] } else { l };
                out.push(l);
                out.push(r);
            }
            self.frames_out += frames as u64;
            return Ok(());
        }
        for f in input.chunks_exact(ch) {
            self.inbuf[0][self.filled] = f[0];
            if self.inbuf.len() == 2 {
                self.inbuf[1][self.filled] = f[1];
            }
            self.filled += 1;
            if self.filled == CHUNK {
                self.run(out, None)?;
            }
        }
        Ok(())
    }

    /// Pushes out everything still inside (end of stream) so that exactly
    /// `frames_in · 48000 / rate` frames have come out in total.
    pub(crate) fn flush(&mut self, out: &mut Vec<f32>) -> Result<(), ResampleError> {
        let want = self.frames_in * u64::from(RATE) / u64::from(self.rate);
        if self.rs.is_some() {
            let mut guard = 0;
            while self.frames_out < want && guard < 64 {
                for c in self.inbuf.iter_mut() {
                    c[self.filled..].fill(0.0);
                }
                self.filled = CHUNK;
                self.run(out, Some(want))?;
                guard += 1;
            }
        }
        Ok(())
    }

    fn run(&mut self, out: &mut Vec<f32>, limit: Option<u64>) -> Result<(), ResampleError> {
        self.filled = 0;
        let Some(rs) = self.rs.as_mut() else {
            return Ok(());
        };
        let res = rs
            .process(&self.inbuf, None)
            .map_err(|e| ResampleError::Process(e.to_string()))?;
        let n = res[0].len();
        let mut start = self.skip.min(n);
        self.skip -= start;
        let mut end = n;
        if let Some(l) = limit {
            let room = l.saturating_sub(self.frames_out) as usize;
            end = end.min(start + room);
        }
        start = start.min(end);
        out.reserve((end - start) * 2);
        for i in start..end {
            let l = res[0][i];
            let r = if res.len() == 2 { res[1][i] } else { l };
            out.push(l);
            out.push(r);
        }
        self.frames_out += (end - start) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signals::dominant_frequency;

    #[test]
    fn exact_length_and_pitch_from_44k1_mono() {
        let input: Vec<f32> = (0..44_100 * 2)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 44_100.0).sin() * 0.5)
            .collect();
        let mut r = To48::new(44_100, 1).expect("resampler");
        let mut out = Vec::new();
        for c in input.chunks(777) {
            r.push(c, &mut out).expect("push");
        }
        r.flush(&mut out).expect("flush");
        assert_eq!(out.len(), 96_000 * 2);
        let left: Vec<f32> = out.iter().step_by(2).copied().collect();
        let f = dominant_frequency(&left[4800..90_000], 950.0, 1050.0, 0.5);
        assert!((f - 1000.0).abs() < 0.5, "{f}");
        // Aligned: the first zero crossing upwards is at the start.
        assert!(left[0].abs() < 0.05, "{}", left[0]);
    }
}
