//! Input level metering: peak and RMS per channel, computed in the device callback and read
//! anywhere else without locks.
//!
//! The callback side ([`LevelAccumulator`]) sums squares and tracks peaks over fixed blocks and
//! pushes one small [`BlockLevel`] per block into an SPSC ring (rtrb); when the ring is full the
//! block is dropped (the reader is late, the audio thread never waits). The reader side
//! ([`LevelReader`]) drains the ring at whatever rate the UI wants (~30 Hz) and folds the blocks
//! into one [`MeterReading`]. Levels are plain dBFS: a full-scale square wave reads 0 dB RMS, a
//! full-scale sine reads −3.01 dB RMS and 0 dB peak.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use cpal::traits::{DeviceTrait, StreamTrait};
use serde::Serialize;

use crate::devices::{DeviceError, DeviceInfo, find_input, input_info};

/// Most channels a meter tracks; further channels of a wider device are ignored.
pub const MAX_CHANNELS: usize = 8;

/// The level reported for digital silence, in dBFS (JSON has no −∞).
pub const SILENCE_DBFS: f32 = -100.0;

/// Peak and sum of squares of one block, per channel.
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockLevel {
    peak: [f32; MAX_CHANNELS],
    sum_sq: [f32; MAX_CHANNELS],
    frames: u32,
}

/// The level of one channel over a reading's window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ChannelLevel {
    /// Sample peak, dBFS.
    pub peak_dbfs: f32,
    /// Root mean square, dBFS.
    pub rms_dbfs: f32,
}

/// Levels over everything captured since the previous reading.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeterReading {
    /// One entry per metered channel.
    pub channels: Vec<ChannelLevel>,
    /// How many frames the reading covers.
    pub frames: u64,
    /// Whether any sample reached full scale (|x| ≥ 1.0).
    pub clipped: bool,
}

/// The callback half: feed it interleaved samples; it never allocates, locks or blocks.
pub struct LevelAccumulator {
    channels: usize,
    block_frames: u32,
    current: BlockLevel,
    producer: rtrb::Producer<BlockLevel>,
}

/// The reader half: drain it from any thread that is not the audio thread.
pub struct LevelReader {
    channels: usize,
    consumer: rtrb::Consumer<BlockLevel>,
}

/// Creates a connected accumulator/reader pair for `channels` channels (capped at
/// [`MAX_CHANNELS`]), publishing one block every `block_frames` frames and buffering up to
/// `capacity` blocks for a slow reader.
pub fn level_meter(
    channels: usize,
    block_frames: u32,
    capacity: usize,
) -> (LevelAccumulator, LevelReader) {
    let channels = channels.clamp(1, MAX_CHANNELS);
    let (producer, consumer) = rtrb::RingBuffer::new(capacity.max(1));
    (
        LevelAccumulator {
            channels,
            block_frames: block_frames.max(1),
            current: BlockLevel::default(),
            producer,
        },
        LevelReader { channels, consumer },
    )
}

impl LevelAccumulator {
    /// Accumulates interleaved samples with `stride` channels per frame (the device's count).
    pub fn push_interleaved<T>(&mut self, data: &[T], stride: usize)
    where
        T: cpal::Sample,
        f32: cpal::FromSample<T>,
    {
        let stride = stride.max(1);
        let metered = self.channels.min(stride);
        for frame in data.chunks_exact(stride) {
            for (ch, sample) in frame.iter().take(metered).enumerate() {
                let x: f32 = sample.to_sample::<f32>();
                let a = x.abs();
                if a > self.current.peak[ch] {
                    self.current.peak[ch] = a;
                }
                self.current.sum_sq[ch] += x * x;
            }
            self.current.frames += 1;
            if self.current.frames >= self.block_frames {
                // A full ring means the reader is behind: dropping a block only thins the meter.
                let _ = self.producer.push(self.current);
                self.current = BlockLevel::default();
            }
        }
    }
}

/// Converts a linear amplitude to dBFS, floored at [`SILENCE_DBFS`].
pub fn to_dbfs(linear: f32) -> f32 {
    if linear <= 0.0 {
        SILENCE_DBFS
    } else {
        (20.0 * linear.log10()).max(SILENCE_DBFS)
    }
}

impl LevelReader {
    /// Channels this reader reports.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Folds every block published since the last call into one reading; `None` if none arrived.
    pub fn read(&mut self) -> Option<MeterReading> {
        let mut peak = [0f32; MAX_CHANNELS];
        let mut sum_sq = [0f64; MAX_CHANNELS];
        let mut frames = 0u64;
        while let Ok(block) = self.consumer.pop() {
            for ch in 0..self.channels {
                peak[ch] = peak[ch].max(block.peak[ch]);
                sum_sq[ch] += f64::from(block.sum_sq[ch]);
            }
            frames += u64::from(block.frames);
        }
        if frames == 0 {
            return None;
        }
        let channels = (0..self.channels)
            .map(|ch| ChannelLevel {
                peak_dbfs: to_dbfs(peak[ch]),
                rms_dbfs: to_dbfs((sum_sq[ch] / frames as f64).sqrt() as f32),
            })
            .collect();
        let clipped = peak.iter().any(|&p| p >= 1.0);
        Some(MeterReading {
            channels,
            frames,
            clipped,
        })
    }
}

const STATUS_OK: u8 = 0;
const STATUS_DEVICE_LOST: u8 = 1;
const STATUS_BACKEND_ERROR: u8 = 2;

/// A running capture stream on one input device that only meters its level.
pub struct InputMeter {
    device: DeviceInfo,
    reader: LevelReader,
    status: Arc<AtomicU8>,
    _stream: cpal::Stream,
}

impl std::fmt::Debug for InputMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputMeter")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl InputMeter {
    /// Opens `id` (or the default input when `None`) at its default format with a 10 ms buffer
    /// where the device allows it, and starts metering.
    pub fn open(id: Option<&str>) -> Result<Self, DeviceError> {
        let (device, id) = find_input(id)?;
        let config = device
            .default_input_config()
            .map_err(|e| DeviceError::from_cpal(&id, &e))?;
        let rate = config.sample_rate();
        let channels = config.channels();
        let period = (rate / 100).max(1); // 10 ms
        let info = input_info(&device, id.clone(), &config);
        let status = Arc::new(AtomicU8::new(STATUS_OK));
        let mut stream_config = config.config();
        // A 10 ms period first; some backends refuse a fixed period, then take the device's own.
        let mut attempt = |buffer_size| {
            stream_config.buffer_size = buffer_size;
            // 10 ms blocks, two seconds of slack for a reader that stalls.
            let (acc, reader) = level_meter(channels.into(), period, 200);
            build(
                &device,
                &stream_config,
                config.sample_format(),
                acc,
                &status,
                &id,
            )
            .map(|stream| (stream, reader))
        };
        let (stream, reader) = match attempt(cpal::BufferSize::Fixed(period)) {
            Err(DeviceError::Unsupported { .. }) => attempt(cpal::BufferSize::Default)?,
            other => other?,
        };
        stream.play().map_err(|e| DeviceError::from_cpal(&id, &e))?;
        Ok(Self {
            device: info,
            reader,
            status,
            _stream: stream,
        })
    }

    /// The device being metered.
    pub fn device(&self) -> &DeviceInfo {
        &self.device
    }

    /// The level since the previous call (`None` when no audio arrived).
    pub fn read(&mut self) -> Option<MeterReading> {
        self.reader.read()
    }

    /// The error that stopped the stream, if any (the device was unplugged, the server died).
    pub fn failure(&self) -> Option<DeviceError> {
        let id = self.device.id.clone();
        match self.status.load(Ordering::Relaxed) {
            STATUS_OK => None,
            STATUS_DEVICE_LOST => Some(DeviceError::NotFound { id }),
            _ => Some(DeviceError::Backend {
                id,
                reason: "the capture stream stopped".into(),
            }),
        }
    }
}

fn build(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    format: cpal::SampleFormat,
    acc: LevelAccumulator,
    status: &Arc<AtomicU8>,
    id: &str,
) -> Result<cpal::Stream, DeviceError> {
    use cpal::SampleFormat as F;
    match format {
        F::F32 => build_typed::<f32>(device, config, acc, status, id),
        F::I16 => build_typed::<i16>(device, config, acc, status, id),
        F::I32 => build_typed::<i32>(device, config, acc, status, id),
        F::U16 => build_typed::<u16>(device, config, acc, status, id),
        F::U8 => build_typed::<u8>(device, config, acc, status, id),
        other => Err(DeviceError::Unsupported {
            id: id.to_owned(),
            reason: format!("sample format {other}"),
        }),
    }
}

fn build_typed<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut acc: LevelAccumulator,
    status: &Arc<AtomicU8>,
    id: &str,
) -> Result<cpal::Stream, DeviceError>
where
    T: cpal::SizedSample,
    f32: cpal::FromSample<T>,
{
    let stride = usize::from(config.channels);
    let status = Arc::clone(status);
    device
        .build_input_stream::<T, _, _>(
            *config,
            move |data: &[T], _info| acc.push_interleaved(data, stride),
            move |err| {
                let code = match err.kind() {
                    cpal::ErrorKind::Xrun
                    | cpal::ErrorKind::RealtimeDenied
                    | cpal::ErrorKind::DeviceChanged => return,
                    cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::StreamInvalidated => {
                        STATUS_DEVICE_LOST
                    }
                    _ => STATUS_BACKEND_ERROR,
                };
                status.store(code, Ordering::Relaxed);
            },
            None,
        )
        .map_err(|e| DeviceError::from_cpal(id, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amplitude: f32, freq: f32, frames: usize, channels: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|n| {
                let x = amplitude * (2.0 * std::f32::consts::PI * freq * n as f32 / 48_000.0).sin();
                std::iter::repeat_n(x, channels)
            })
            .collect()
    }

    #[test]
    fn sine_reads_its_rms_and_peak() {
        let (mut acc, mut reader) = level_meter(2, 480, 64);
        acc.push_interleaved(&sine(0.25, 1000.0, 4800, 2), 2);
        let r = reader.read().expect("ten blocks were published");
        assert_eq!(r.frames, 4800);
        for ch in &r.channels {
            assert!((ch.rms_dbfs - (-15.05)).abs() < 0.05, "rms {}", ch.rms_dbfs);
            assert!(
                (ch.peak_dbfs - (-12.04)).abs() < 0.05,
                "peak {}",
                ch.peak_dbfs
            );
        }
        assert!(!r.clipped);
        assert!(reader.read().is_none(), "a drained reader has nothing new");
    }

    #[test]
    fn silence_reads_the_floor_and_channels_stay_apart() {
        let (mut acc, mut reader) = level_meter(2, 480, 64);
        let data: Vec<i16> = (0..960)
            .flat_map(|n| [if n % 2 == 0 { i16::MAX } else { i16::MIN }, 0])
            .collect();
        acc.push_interleaved(&data, 2);
        let r = reader.read().expect("two blocks");
        assert!(
            r.channels[0].rms_dbfs > -0.1,
            "left is a full-scale square: {}",
            r.channels[0].rms_dbfs
        );
        assert_eq!(r.channels[1].rms_dbfs, SILENCE_DBFS);
        assert!(r.clipped);
    }

    #[test]
    fn a_partial_block_waits_and_a_full_ring_drops_instead_of_blocking() {
        let (mut acc, mut reader) = level_meter(1, 480, 2);
        acc.push_interleaved(&[0.5f32; 479], 1);
        assert!(reader.read().is_none(), "479 of 480 frames publish nothing");
        acc.push_interleaved(&[0.5f32; 480 * 10], 1);
        let r = reader.read().expect("the ring kept what fitted");
        assert_eq!(r.frames, 960, "two blocks fit, the rest were dropped");
    }

    #[test]
    fn wider_devices_are_capped_and_odd_tails_ignored() {
        let (mut acc, mut reader) = level_meter(16, 1, 4);
        assert_eq!(reader.channels(), MAX_CHANNELS);
        acc.push_interleaved(&[0.1f32; 17], 16);
        let r = reader.read().expect("one whole frame");
        assert_eq!(r.channels.len(), MAX_CHANNELS);
        assert_eq!(r.frames, 1);
    }
}
