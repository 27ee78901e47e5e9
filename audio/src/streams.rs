//! Device streams for the engine: open an input or output by id with a requested rate, channel
//! count and buffer size, falling back to what the device offers; the callbacks only move
//! samples between the device and an SPSC ring (no allocation, lock, log or syscall) and record
//! the real latency from the stream timestamps. A device that fails (unplugged, server gone)
//! raises a flag the owner polls ([`StreamStatus`]); the engine keeps running on silence and the
//! owner re-opens the device when it returns or the user picks another.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use cpal::traits::{DeviceTrait, StreamTrait};

use crate::devices::{DeviceError, find_input, find_output};

/// What to open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRequest {
    /// Device id (`None` = the default device).
    pub id: Option<String>,
    /// Wanted rate (default 48 kHz).
    pub sample_rate: Option<u32>,
    /// Wanted channels (default: the device's).
    pub channels: Option<u16>,
    /// Wanted period in frames (default 480 = 10 ms).
    pub buffer_frames: Option<u32>,
}

/// What was actually opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedStream {
    /// The device id.
    pub id: String,
    /// The rate in use.
    pub sample_rate: u32,
    /// Channels in use.
    pub channels: u16,
    /// The fixed period in frames, or `None` if the device's default buffer had to be used.
    pub buffer_frames: Option<u32>,
}

/// Health of a running stream, shared with its callbacks.
#[derive(Debug, Default)]
pub struct StreamStatus {
    state: AtomicU8,
    latency_us: AtomicU64,
    xruns: AtomicU64,
    callback_hook_done: AtomicU8,
}

const OK: u8 = 0;
const LOST: u8 = 1;
const FAILED: u8 = 2;

impl StreamStatus {
    /// Whether the device disappeared (unplugged, server gone).
    pub fn device_lost(&self) -> bool {
        self.state.load(Ordering::Relaxed) == LOST
    }

    /// Whether the stream failed for another reason.
    pub fn failed(&self) -> bool {
        self.state.load(Ordering::Relaxed) != OK
    }

    /// The device's own latency as its last callback reported it (capture → callback for an
    /// input, callback → playback for an output).
    pub fn latency(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.latency_us.load(Ordering::Relaxed))
    }

    /// Samples dropped because the ring was full (input) or empty (output).
    pub fn xruns(&self) -> u64 {
        self.xruns.load(Ordering::Relaxed)
    }
}

/// A running device stream; dropping it stops the device.
pub struct DeviceStream {
    /// What was opened.
    pub opened: OpenedStream,
    /// Shared health.
    pub status: Arc<StreamStatus>,
    _stream: cpal::Stream,
}

impl std::fmt::Debug for DeviceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStream")
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

fn on_error(status: &Arc<StreamStatus>) -> impl FnMut(cpal::Error) + Send + 'static {
    let status = status.clone();
    move |e: cpal::Error| {
        let s = if matches!(e.kind(), cpal::ErrorKind::DeviceNotAvailable) {
            LOST
        } else {
            FAILED
        };
        status.state.store(s, Ordering::Relaxed);
    }
}

/// Picks the configuration: the request where the device supports it, the device default
/// otherwise, with the requested fixed period (the caller falls back to the default buffer).
fn choose(
    default: cpal::SupportedStreamConfig,
    supports: impl Fn(u16, u32) -> bool,
    req: &StreamRequest,
) -> cpal::StreamConfig {
    let mut config = default.config();
    let rate = req.sample_rate.unwrap_or(48_000);
    let channels = req.channels.unwrap_or(config.channels);
    if supports(channels, rate) {
        config.channels = channels;
        config.sample_rate = rate;
    } else if supports(config.channels, rate) {
        config.sample_rate = rate;
    }
    config.buffer_size = cpal::BufferSize::Fixed(req.buffer_frames.unwrap_or(480));
    config
}

/// Opens an input; the callback pushes interleaved `f32` frames into `ring`.
/// `hook` runs on the callback thread at its first call (tests mark the thread with it).
pub fn open_input(
    req: &StreamRequest,
    ring: rtrb::Producer<f32>,
    hook: Option<fn()>,
) -> Result<DeviceStream, DeviceError> {
    let (device, id) = find_input(req.id.as_deref())?;
    let default = device
        .default_input_config()
        .map_err(|e| DeviceError::from_cpal(&id, &e))?;
    let ranges: Vec<_> = device
        .supported_input_configs()
        .map(|c| c.collect())
        .unwrap_or_default();
    let supports = |ch: u16, rate: u32| {
        ranges.iter().any(|r: &cpal::SupportedStreamConfigRange| {
            r.channels() == ch && r.min_sample_rate() <= rate && rate <= r.max_sample_rate()
        })
    };
    let mut config = choose(default, supports, req);
    let status = Arc::new(StreamStatus::default());
    let build = |config: &cpal::StreamConfig, mut ring: rtrb::Producer<f32>| {
        let st = status.clone();
        device.build_input_stream::<f32, _, _>(
            *config,
            move |data: &[f32], info: &cpal::InputCallbackInfo| {
                if st.callback_hook_done.swap(1, Ordering::Relaxed) == 0
                    && let Some(h) = hook
                {
                    h();
                }
                let ts = info.timestamp();
                let lat = ts.callback.duration_since(ts.capture);
                st.latency_us
                    .store(lat.as_micros() as u64, Ordering::Relaxed);
                let n = data.len().min(ring.slots());
                if let Ok(chunk) = ring.write_chunk_uninit(n) {
                    chunk.fill_from_iter(data[..n].iter().copied());
                }
                if n < data.len() {
                    st.xruns
                        .fetch_add((data.len() - n) as u64, Ordering::Relaxed);
                }
            },
            on_error(&status),
            None,
        )
    };
    // Some backends refuse a fixed period: probe it with a throwaway ring, then fall back to the
    // device's default buffer.
    let fixed = build(&config, rtrb::RingBuffer::new(1).0).is_ok();
    if !fixed {
        config.buffer_size = cpal::BufferSize::Default;
    }
    let stream = build(&config, ring).map_err(|e| DeviceError::from_cpal(&id, &e))?;
    stream.play().map_err(|e| DeviceError::from_cpal(&id, &e))?;
    Ok(DeviceStream {
        opened: OpenedStream {
            id,
            sample_rate: config.sample_rate,
            channels: config.channels,
            buffer_frames: fixed.then(|| req.buffer_frames.unwrap_or(480)),
        },
        status,
        _stream: stream,
    })
}

/// Opens an output; the callback pulls interleaved `f32` frames from `ring` and plays silence
/// when it runs dry. `hook` runs on the callback thread at its first call.
pub fn open_output(
    req: &StreamRequest,
    ring: rtrb::Consumer<f32>,
    hook: Option<fn()>,
) -> Result<DeviceStream, DeviceError> {
    let (device, id) = find_output(req.id.as_deref())?;
    let default = device
        .default_output_config()
        .map_err(|e| DeviceError::from_cpal(&id, &e))?;
    let ranges: Vec<_> = device
        .supported_output_configs()
        .map(|c| c.collect())
        .unwrap_or_default();
    let supports = |ch: u16, rate: u32| {
        ranges.iter().any(|r: &cpal::SupportedStreamConfigRange| {
            r.channels() == ch && r.min_sample_rate() <= rate && rate <= r.max_sample_rate()
        })
    };
    let mut config = choose(default, supports, req);
    let status = Arc::new(StreamStatus::default());
    let build = |config: &cpal::StreamConfig, mut ring: rtrb::Consumer<f32>| {
        let st = status.clone();
        device.build_output_stream::<f32, _, _>(
            *config,
            move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                if st.callback_hook_done.swap(1, Ordering::Relaxed) == 0
                    && let Some(h) = hook
                {
                    h();
                }
                let ts = info.timestamp();
                let lat = ts.playback.duration_since(ts.callback);
                st.latency_us
                    .store(lat.as_micros() as u64, Ordering::Relaxed);
                let n = data.len().min(ring.slots());
                if let Ok(chunk) = ring.read_chunk(n) {
                    let (a, b) = chunk.as_slices();
                    data[..a.len()].copy_from_slice(a);
                    data[a.len()..a.len() + b.len()].copy_from_slice(b);
                    chunk.commit_all();
                }
                if n < data.len() {
                    data[n..].fill(0.0);
                    st.xruns
                        .fetch_add((data.len() - n) as u64, Ordering::Relaxed);
                }
            },
            on_error(&status),
            None,
        )
    };
    let fixed = build(&config, rtrb::RingBuffer::new(1).1).is_ok();
    if !fixed {
        config.buffer_size = cpal::BufferSize::Default;
    }
    let stream = build(&config, ring).map_err(|e| DeviceError::from_cpal(&id, &e))?;
    stream.play().map_err(|e| DeviceError::from_cpal(&id, &e))?;
    Ok(DeviceStream {
        opened: OpenedStream {
            id,
            sample_rate: config.sample_rate,
            channels: config.channels,
            buffer_frames: fixed.then(|| req.buffer_frames.unwrap_or(480)),
        },
        status,
        _stream: stream,
    })
}
