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
