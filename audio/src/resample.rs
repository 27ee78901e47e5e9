//! Whole-buffer resampling to the engine rate (rubato FFT resampler), for files and test inputs.
//! Device streams use the same resampler type block by block at the edge.

use rubato::{FftFixedIn, Resampler};

/// Why resampling failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResampleError {
    /// The rate pair or channel count is not usable.
    #[error("cannot resample {from} Hz → {to} Hz with {channels} channels: {message}")]
    Setup {
        /// Source rate.
        from: u32,
        /// Target rate.
        to: u32,
        /// Channels.
        channels: usize,
        /// The resampler's reason.
        message: String,
    },
    /// Processing failed.
    #[error("resampling failed: {0}")]
    Process(String),
}

/// Resamples planar `channels` from `from` Hz to `to` Hz; output length is `len * to / from`
/// (rounded), aligned in time with the input (the resampler's delay is removed).
pub fn resample_planar(
    channels: &[Vec<f32>],
    from: u32,
    to: u32,
) -> Result<Vec<Vec<f32>>, ResampleError> {
    if from == to || channels.is_empty() {
        return Ok(channels.to_vec());
    }
    let n_ch = channels.len();
    let len = channels[0].len();
    let chunk = 1024;
    let mut rs =
        FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 2, n_ch).map_err(|e| {
            ResampleError::Setup {
                from,
                to,
                channels: n_ch,
                message: e.to_string(),
            }
        })?;
    let delay = rs.output_delay();
    let want = (len as u64 * u64::from(to) / u64::from(from)) as usize;
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(want + delay + chunk); n_ch];
    let mut pos = 0;
    let mut buf: Vec<Vec<f32>> = vec![vec![0.0; chunk]; n_ch];
    while out[0].len() < want + delay {
        for (c, b) in buf.iter_mut().enumerate() {
            for (i, s) in b.iter_mut().enumerate() {
                *s = channels[c].get(pos + i).copied().unwrap_or(0.0);
            }
        }
        pos += chunk;
        let res = rs
            .process(&buf, None)
            .map_err(|e| ResampleError::Process(e.to_string()))?;
        for (o, r) in out.iter_mut().zip(res) {
            o.extend_from_slice(&r);
        }
    }
    for o in out.iter_mut() {
        o.drain(..delay);
        o.truncate(want);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signals::dominant_frequency;

    #[test]
    fn resampled_tone_keeps_frequency_and_length() {
        let x: Vec<f32> = (0..22_050)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 22_050.0).sin() * 0.5)
            .collect();
        let y = resample_planar(&[x], 22_050, 48_000).expect("resample");
        assert_eq!(y[0].len(), 48_000);
        let f = dominant_frequency(&y[0][4800..43_200], 900.0, 1100.0, 2.0);
        assert!((f - 1000.0).abs() < 1.0, "{f}");
        // Aligned: the first samples follow the sine's start, not a delay of silence.
        assert!(y[0][100].abs() > 0.05);
    }
}

/// The resampler state shared by both directions.
struct EdgeCore {
    rs: rubato::FastFixedIn<f32>,
    channels: usize,
    chunk: usize,
    inbuf: Vec<Vec<f32>>,
    filled: usize,
    outbuf: Vec<Vec<f32>>,
}

impl EdgeCore {
    /// Converts interleaved `input`, handing each converted interleaved sample to `out`.
    fn feed(&mut self, input: &[f32], mut out: impl FnMut(f32)) {
        for frame in input.chunks_exact(self.channels) {
            for (c, s) in frame.iter().enumerate() {
                self.inbuf[c][self.filled] = *s;
            }
            self.filled += 1;
            if self.filled == self.chunk {
                self.filled = 0;
                if let Ok((_, n)) = self
                    .rs
                    .process_into_buffer(&self.inbuf, &mut self.outbuf, None)
                {
                    for i in 0..n {
                        for c in 0..self.channels {
                            out(self.outbuf[c][i]);
                        }
                    }
                }
            }
        }
    }
}

/// Block-by-block resampling at the device edge (a device that cannot run at 48 kHz), for use
/// inside a device callback: all buffers are allocated in `new`; `push`/`pull` never allocate.
/// Polynomial (cubic) interpolation in chunks of 128 frames: cheap, with a delay under 3 ms.
pub struct EdgeResampler {
    core: EdgeCore,
    /// Converted samples waiting to be taken (interleaved), for `pull`.
    pending: std::collections::VecDeque<f32>,
}

impl std::fmt::Debug for EdgeResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeResampler")
            .field("channels", &self.core.channels)
            .finish_non_exhaustive()
    }
}

impl EdgeResampler {
    /// A resampler from `from` Hz to `to` Hz for `channels` interleaved channels.
    pub fn new(from: u32, to: u32, channels: usize) -> Result<EdgeResampler, ResampleError> {
        let chunk = 128;
        let setup = |e: &dyn std::fmt::Display| ResampleError::Setup {
            from,
            to,
            channels,
            message: e.to_string(),
        };
        let rs = rubato::FastFixedIn::<f32>::new(
            f64::from(to) / f64::from(from),
            1.0,
            rubato::PolynomialDegree::Cubic,
            chunk,
            channels.max(1),
        )
        .map_err(|e| setup(&e))?;
        let max_out = rs.output_frames_max();
        Ok(EdgeResampler {
            core: EdgeCore {
                rs,
                channels: channels.max(1),
                chunk,
                inbuf: vec![vec![0.0; chunk]; channels.max(1)],
                filled: 0,
                outbuf: vec![vec![0.0; max_out]; channels.max(1)],
            },
            pending: std::collections::VecDeque::with_capacity(
                (max_out + chunk) * channels.max(1) * 64,
            ),
        })
    }

    /// Converts interleaved `input` (capture direction), handing each converted interleaved
    /// sample to `out`.
    pub fn push(&mut self, input: &[f32], out: impl FnMut(f32)) {
        self.core.feed(input, out);
    }

    /// Fills interleaved `output` (playback direction) with converted samples, taking input
    /// from `source`, which fills a slice of interleaved input and returns how many samples it
    /// wrote (missing input is silence).
    pub fn pull(&mut self, output: &mut [f32], mut source: impl FnMut(&mut [f32]) -> usize) {
        let mut scratch = [0.0f32; 256];
        let want = self.core.chunk.min(scratch.len() / self.core.channels) * self.core.channels;
        while self.pending.len() < output.len() {
            let got = source(&mut scratch[..want]).min(want);
            scratch[got..want].fill(0.0);
            let pending = &mut self.pending;
            let cap = pending.capacity();
            self.core.feed(&scratch[..want], |s| {
                if pending.len() < cap {
                    pending.push_back(s);
                }
            });
        }
        for o in output.iter_mut() {
            *o = self.pending.pop_front().unwrap_or(0.0);
        }
    }
}

#[cfg(test)]
mod edge_tests {
    use super::*;
    use crate::test_signals::dominant_frequency;

    #[test]
    fn edge_resampler_keeps_tone_both_ways() {
        // 44.1 kHz device → engine 48 kHz, by push.
        let mut up = EdgeResampler::new(44_100, 48_000, 2).expect("resampler");
        let input: Vec<f32> = (0..44_100)
            .flat_map(|i| {
                let s = (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 44_100.0).sin() * 0.5;
                [s, -s]
            })
            .collect();
        let mut out = Vec::new();
        for chunk in input.chunks(441 * 2) {
            up.push(chunk, |s| out.push(s));
        }
        let left: Vec<f32> = out.iter().step_by(2).copied().collect();
        assert!((left.len() as i64 - 48_000).abs() < 300, "{}", left.len());
        let f = dominant_frequency(&left[4800..43_200], 900.0, 1100.0, 1.0);
        assert!((f - 1000.0).abs() < 1.0, "{f}");
        // Engine 48 kHz → 44.1 kHz device, by pull.
        let mut down = EdgeResampler::new(48_000, 44_100, 1).expect("resampler");
        let src: Vec<f32> = (0..48_000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin() * 0.5)
            .collect();
        let mut pos = 0;
        let mut dev = vec![0.0f32; 44_100];
        for block in dev.chunks_mut(441) {
            down.pull(block, |buf| {
                let n = buf.len().min(src.len() - pos);
                buf[..n].copy_from_slice(&src[pos..pos + n]);
                pos += n;
                n
            });
        }
        let g = dev;
        // Measure at 44.1 kHz: a 1 kHz tone there looks like 1000·48000/44100 Hz on the 48 kHz
        // helper's scale.
        let f = dominant_frequency(&g[4410..39_690], 1000.0, 1200.0, 1.0) * 44_100.0 / 48_000.0;
        assert!((f - 1000.0).abs() < 1.0, "{f}");
    }
}
