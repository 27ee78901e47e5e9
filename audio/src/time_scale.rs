//! Time-scale compression for the playout ("accelerate", after NetEQ): shortens decoded audio by
//! one pitch period so a jitter buffer can give back delay without dropping audible frames.
//!
//! The period is the lag (within the caller's range) where the signal best matches itself: the
//! normalised cross-correlation of `x[0..τ)` with `x[τ..2τ)`, searched on every second lag and
//! sample, then refined at full resolution. Those two periods are cross-faded into one, so a
//! periodic signal (voice, a held note) comes out seamlessly, τ frames shorter. Quiet audio
//! (below −60 dBFS) is shortened by the longest lag allowed without a search. A signal that is
//! not periodic enough (correlation below the caller's threshold) is left alone: the caller
//! retries on the next block and lowers the threshold if the surplus persists.
//!
//! Written by hand rather than taken from a crate: it must run on the DSP thread without
//! allocation, in place on the playout's interleaved FIFO; the time-stretch crates found
//! (SoundTouch bindings, offline WSOLA implementations) allocate per call or need a C++ library.

/// Mean square below which audio is treated as silence (−60 dBFS).
const QUIET_MEAN_SQUARE: f32 = 1e-6;

/// Correlation of `x[0..lag)` with `x[lag..2·lag)` over interleaved stereo, every `step`th frame.
fn correlation(buf: &[f32], lag: usize, step: usize) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    let mut i = 0;
    while i < lag {
        for ch in 0..2 {
            let a = buf[2 * i + ch];
            let b = buf[2 * (i + lag) + ch];
            ab += a * b;
            aa += a * a;
            bb += b * b;
        }
        i += step;
    }
    if aa <= f32::EPSILON || bb <= f32::EPSILON {
        return 0.0;
    }
    ab / (aa * bb).sqrt()
}

/// Shortens the first `frames` frames of interleaved stereo `buf` by one period between
/// `min_lag` and `max_lag` frames (the lag is capped at `frames / 2`) when the signal there is
/// quiet or its correlation at that period reaches `threshold`. Returns the frames removed
/// (0 = left alone); the audio after the splice moves down, so the caller's FIFO shrinks by that
/// many frames. Allocation-free.
pub fn accelerate(
    buf: &mut [f32],
    frames: usize,
    min_lag: usize,
    max_lag: usize,
    threshold: f32,
) -> usize {
    let frames = frames.min(buf.len() / 2);
    let max_lag = max_lag.min(frames / 2);
    let min_lag = min_lag.max(1);
    if max_lag < min_lag {
        return 0;
    }
    let span = 2 * max_lag;
    let energy: f32 = buf[..2 * span].iter().map(|s| s * s).sum::<f32>() / (2 * span) as f32;
    let lag = if energy < QUIET_MEAN_SQUARE {
        max_lag
    } else {
        let mut best = (min_lag, f32::MIN);
        let mut lag = min_lag;
        while lag <= max_lag {
            let c = correlation(buf, lag, 2);
            if c > best.1 {
                best = (lag, c);
            }
            lag += 2;
        }
        let coarse = best.0;
        best = (coarse, f32::MIN);
        for lag in coarse.saturating_sub(1).max(min_lag)..=(coarse + 1).min(max_lag) {
            let c = correlation(buf, lag, 1);
            if c > best.1 {
                best = (lag, c);
            }
        }
        if best.1 < threshold {
            return 0;
        }
        best.0
    };
    let inv = 1.0 / lag as f32;
    for i in 0..lag {
        let w = (i as f32 + 0.5) * inv;
        for ch in 0..2 {
            let a = buf[2 * i + ch];
            let b = buf[2 * (i + lag) + ch];
            buf[2 * i + ch] = a + (b - a) * w;
        }
    }
    buf.copy_within(4 * lag..2 * frames, 2 * lag);
    lag
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stereo_sine(freq: f32, frames: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|i| {
                let s = (2.0 * std::f32::consts::PI * freq * i as f32 / 48_000.0).sin() * 0.5;
                [s, -s]
            })
            .collect()
    }

    #[test]
    fn removes_whole_periods_of_a_tone_without_a_click() {
        // 200 Hz: a period of 240 frames.
        let mut buf = stereo_sine(200.0, 1440);
        let removed = accelerate(&mut buf, 1440, 120, 480, 0.9);
        assert!(removed == 240 || removed == 480, "removed {removed}");
        let out = &buf[..2 * (1440 - removed)];
        let want = stereo_sine(200.0, 1440 - removed);
        let err = out
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.02, "the splice deviates by {err}");
    }

    #[test]
    fn leaves_noise_alone_unless_forced_and_shortens_silence() {
        let mut seed = 1u32;
        let mut noise: Vec<f32> = (0..2 * 1440)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        let copy = noise.clone();
        assert_eq!(accelerate(&mut noise, 1440, 120, 480, 0.9), 0);
        assert_eq!(noise, copy, "left alone means untouched");
        let forced = accelerate(&mut noise, 1440, 120, 480, -1.0);
        assert!((120..=480).contains(&forced));
        let mut quiet = vec![0.0f32; 2 * 1440];
        assert_eq!(accelerate(&mut quiet, 1440, 120, 480, 0.9), 480);
        // Too little audio for the smallest lag: nothing happens.
        assert_eq!(accelerate(&mut quiet, 200, 120, 480, 0.9), 0);
    }
}
