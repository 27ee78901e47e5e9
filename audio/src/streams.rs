//! Device streams for the engine: open an input or output by id with a requested rate, channel
//! count and buffer size, falling back to what the device offers; the callbacks only move
//! samples between the device and an SPSC ring (no allocation, lock, log or syscall) and record
//! the real latency from the stream timestamps. A device that fails (unplugged, server gone)
//! raises a flag the owner polls ([`StreamStatus`]); the engine keeps running on silence and the
//! owner re-opens the device when it returns or the user picks another. A device that cannot run
//! at 48 kHz is resampled inside its callback ([`EdgeResampler`], allocation-free).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use cpal::traits::{DeviceTrait, StreamTrait};

use crate::devices::{DeviceError, find_input, find_output};
use crate::output_reader::OutputReader;
use crate::resample::EdgeResampler;

mod pick;
#[cfg(target_os = "linux")]
mod pulse_input;

pub use pick::{ChannelPick, MAX_DEVICE_CHANNELS, PickError, Picker};

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
    trimmed: AtomicU64,
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

    /// Output frames skipped to give back latency that an earlier underrun or a slower output
    /// clock had added ([`OutputReader`]).
    pub fn trimmed_frames(&self) -> u64 {
        self.trimmed.load(Ordering::Relaxed)
    }
}

/// A running device stream; dropping it stops the device.
pub struct DeviceStream {
    /// What was opened.
    pub opened: OpenedStream,
    /// Shared health.
    pub status: Arc<StreamStatus>,
    _stream: Backend,
}

/// What keeps a device stream running.
enum Backend {
    Cpal(#[allow(dead_code)] cpal::Stream),
    /// A PulseAudio input opened directly (see `pulse_input`: cpal's record queue is too short).
    #[cfg(target_os = "linux")]
    Pulse(#[allow(dead_code)] pulse_input::PulseInput),
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

/// The edge resampler a stream needs, if its rate is not the engine's.
fn edge_resampler(
    id: &str,
    from: u32,
    to: u32,
    channels: u16,
) -> Result<Option<EdgeResampler>, cpal::Error> {
    if from == to {
        return Ok(None);
    }
    EdgeResampler::new(from, to, usize::from(channels))
        .map(Some)
        .map_err(|e| {
            let _ = id;
            cpal::Error::with_message(cpal::ErrorKind::UnsupportedConfig, e.to_string())
        })
}

/// Opens an input; the callback pushes interleaved `f32` frames into `ring`.
/// `probe` is called with `true` on entering and `false` on leaving every callback (tests count
/// allocations in between).
pub fn open_input(
    req: &StreamRequest,
    ring: rtrb::Producer<f32>,
    probe: Option<fn(bool)>,
) -> Result<DeviceStream, DeviceError> {
    open_input_pick(req, None, ring, probe)
}

/// Like [`open_input`], keeping channels `pick` of a multi-channel input: the device is opened
/// with every channel it has (at least as many as the pick names) and the callback delivers
/// `req.channels` (1: the pair's mean, 2: the pair) into `ring`. A pick the device cannot carry is
/// refused with [`DeviceError::Backend`] naming the channel.
pub fn open_input_pick(
    req: &StreamRequest,
    pick: Option<ChannelPick>,
    ring: rtrb::Producer<f32>,
    probe: Option<fn(bool)>,
) -> Result<DeviceStream, DeviceError> {
    let (device, id) = find_input(req.id.as_deref())?;
    #[cfg(target_os = "linux")]
    if let Some(source) = id.strip_prefix("pulseaudio:") {
        let source = source.to_owned();
        return pulse_input::open(&source, id, req, pick, ring, probe);
    }
    let default = device
        .default_input_config()
        .map_err(|e| DeviceError::from_cpal(&id, &e))?;
    // What the ring gets: the pick's 1 or 2 channels, else what was asked (the device's own count
    // when nothing was).
    let want = match pick {
        Some(_) => Some(req.channels.unwrap_or(2).clamp(1, 2)),
        None => req.channels,
    };
    let mut req = req.clone();
    if let Some(p) = pick {
        p.check(default.channels().max(p.device_channels()))
            .map_err(|e| backend_error(&id, e))?;
        req.channels = Some(default.channels().max(p.device_channels()));
    }
    let req = &req;
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
        // The channels delivered: a pick, or the request where the device opened otherwise.
        let delivered = delivered_channels(pick, want, config.channels);
        let mut picker = (delivered != config.channels || pick.is_some()).then(|| {
            Picker::new(
                pick.unwrap_or(ChannelPick::FIRST_PAIR),
                config.channels,
                usize::from(delivered),
            )
        });
        // A device that cannot run at 48 kHz is resampled here, at the edge.
        let mut edge = edge_resampler(&id, config.sample_rate, 48_000, delivered)?;
        device.build_input_stream::<f32, _, _>(
            *config,
            move |data: &[f32], info: &cpal::InputCallbackInfo| {
                if let Some(p) = probe {
                    p(true);
                }
                let ts = info.timestamp();
                let lat = ts.callback.duration_since(ts.capture);
                st.latency_us
                    .store(lat.as_micros() as u64, Ordering::Relaxed);
                let lost = match picker.as_mut() {
                    // Picked channels (or a channel count the device chose).
                    Some(picker) => push_picked(data.iter().copied(), picker, &mut edge, &mut ring),
                    None => push_edge_or_ring(data, &mut edge, &mut ring),
                };
                if lost > 0 {
                    st.xruns.fetch_add(lost, Ordering::Relaxed);
                }
                if let Some(p) = probe {
                    p(false);
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
            channels: delivered_channels(pick, want, config.channels),
            buffer_frames: fixed.then(|| req.buffer_frames.unwrap_or(480)),
        },
        status,
        _stream: Backend::Cpal(stream),
    })
}

/// The channels an input delivers into its ring: the wanted 1 or 2 where a pick is given or the
/// device opened with another count than asked, the device's own count otherwise.
fn delivered_channels(pick: Option<ChannelPick>, want: Option<u16>, device: u16) -> u16 {
    match want {
        Some(w) if pick.is_some() || (w != device && w <= 2) => w.clamp(1, 2),
        _ => device,
    }
}

/// Samples assembled per step on the picking path (stack buffer).
const PICK_SCRATCH: usize = 512;

/// Pushes `buf` into `ring`, through `edge` (a device not at 48 kHz) when there is one; returns
/// the samples the full ring refused. Real-time safe: no allocation.
fn push_edge_or_ring(
    buf: &[f32],
    edge: &mut Option<EdgeResampler>,
    ring: &mut rtrb::Producer<f32>,
) -> u64 {
    match edge.as_mut() {
        Some(edge) => {
            let mut lost = 0u64;
            edge.push(buf, |s| {
                if ring.push(s).is_err() {
                    lost += 1;
                }
            });
            lost
        }
        None => {
            let n = buf.len().min(ring.slots());
            if let Ok(chunk) = ring.write_chunk_uninit(n) {
                chunk.fill_from_iter(buf[..n].iter().copied());
            }
            (buf.len() - n) as u64
        }
    }
}

/// Feeds a device's interleaved `samples` through `picker` and pushes the picked frames, a stack
/// buffer at a time, as [`push_edge_or_ring`] does; returns the samples the full ring refused.
fn push_picked(
    samples: impl Iterator<Item = f32>,
    picker: &mut Picker,
    edge: &mut Option<EdgeResampler>,
    ring: &mut rtrb::Producer<f32>,
) -> u64 {
    let mut lost = 0u64;
    let mut scratch = [0.0f32; PICK_SCRATCH];
    let mut n = 0usize;
    for s in samples {
        picker.feed(s, &mut |x| {
            scratch[n] = x;
            n += 1;
        });
        if n + 2 > PICK_SCRATCH {
            lost += push_edge_or_ring(&scratch[..n], edge, ring);
            n = 0;
        }
    }
    lost + push_edge_or_ring(&scratch[..n], edge, ring)
}

fn backend_error(id: &str, reason: impl std::fmt::Display) -> DeviceError {
    DeviceError::Backend {
        id: id.to_owned(),
        reason: reason.to_string(),
    }
}

/// Opens an output; the callback plays the interleaved `f32` frames of `ring` in order, silence
/// when it runs dry (a ring filled ahead, such as a file, plays whole). `probe` as for
/// [`open_input`].
pub fn open_output(
    req: &StreamRequest,
    ring: rtrb::Consumer<f32>,
    probe: Option<fn(bool)>,
) -> Result<DeviceStream, DeviceError> {
    open_output_with(req, ring, probe, false)
}

/// Opens an output for a ring written in real time (the engine's): like [`open_output`], but
/// through an [`OutputReader`] that skips a backlog the last half second showed was never
/// needed, so a late block or a slower output clock does not add latency for good.
pub fn open_live_output(
    req: &StreamRequest,
    ring: rtrb::Consumer<f32>,
    probe: Option<fn(bool)>,
) -> Result<DeviceStream, DeviceError> {
    open_output_with(req, ring, probe, true)
}

fn open_output_with(
    req: &StreamRequest,
    ring: rtrb::Consumer<f32>,
    probe: Option<fn(bool)>,
    live: bool,
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
        let mut edge = edge_resampler(&id, 48_000, config.sample_rate, config.channels)?;
        let channels = usize::from(config.channels);
        let mut reader = if live {
            OutputReader::new(channels)
        } else {
            OutputReader::in_order(channels)
        };
        let count = |st: &StreamStatus, missing: usize, trimmed: usize| {
            if missing > 0 {
                st.xruns.fetch_add(missing as u64, Ordering::Relaxed);
            }
            if trimmed > 0 {
                st.trimmed.fetch_add(trimmed as u64, Ordering::Relaxed);
            }
        };
        device.build_output_stream::<f32, _, _>(
            *config,
            move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                if let Some(p) = probe {
                    p(true);
                }
                let ts = info.timestamp();
                let lat = ts.playback.duration_since(ts.callback);
                st.latency_us
                    .store(lat.as_micros() as u64, Ordering::Relaxed);
                if let Some(edge) = edge.as_mut() {
                    let (mut missing, mut trimmed) = (0, 0);
                    edge.pull(data, |buf| {
                        let r = reader.read(&mut ring, buf);
                        missing += buf.len().saturating_sub(r.from_ring);
                        trimmed += r.trimmed_frames;
                        buf.len()
                    });
                    count(&st, missing, trimmed);
                    if let Some(p) = probe {
                        p(false);
                    }
                    return;
                }
                let r = reader.read(&mut ring, data);
                count(
                    &st,
                    data.len().saturating_sub(r.from_ring),
                    r.trimmed_frames,
                );
                if let Some(p) = probe {
                    p(false);
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
        _stream: Backend::Cpal(stream),
    })
}

/// A device change the UI should show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceEvent {
    /// The device stopped (unplugged, server gone); the engine keeps running on silence.
    Lost {
        /// Input or output.
        direction: crate::devices::Direction,
        /// The device id.
        id: String,
    },
    /// The device is back (or another was picked) and streaming again.
    Reopened {
        /// Input or output.
        direction: crate::devices::Direction,
        /// The device id.
        id: String,
    },
}

/// The engine's input and output devices, re-opened when they come back.
///
/// Drive contract: call [`EngineDevices::poll`] periodically (the Studio does it with its meter
/// tick, ~30 Hz); it reports losses and re-opens a lost device once its id is listed again,
/// handing the engine a fresh ring through a control message.
#[derive(Debug)]
pub struct EngineDevices {
    input_req: StreamRequest,
    output_req: StreamRequest,
    input: Option<DeviceStream>,
    output: Option<DeviceStream>,
    capture_channels: usize,
    input_pick: Option<ChannelPick>,
}

/// Ring capacity per direction, in frames.
const DEVICE_RING_FRAMES: usize = 48_000;

impl EngineDevices {
    /// Opens both devices on the engine's rings.
    pub fn open(
        io: crate::engine::EngineIo,
        capture_channels: usize,
        input_req: StreamRequest,
        output_req: StreamRequest,
    ) -> Result<EngineDevices, DeviceError> {
        EngineDevices::open_pick(io, capture_channels, input_req, None, output_req)
    }

    /// Like [`EngineDevices::open`], capturing channels `input_pick` of a multi-channel input
    /// ([`open_input_pick`]).
    pub fn open_pick(
        io: crate::engine::EngineIo,
        capture_channels: usize,
        input_req: StreamRequest,
        input_pick: Option<ChannelPick>,
        output_req: StreamRequest,
    ) -> Result<EngineDevices, DeviceError> {
        let mut input_req = input_req;
        input_req.channels = Some(capture_channels as u16);
        let mut output_req = output_req;
        output_req.channels = Some(2);
        let input = open_input_pick(&input_req, input_pick, io.capture, None)?;
        let output = open_live_output(&output_req, io.output, None)?;
        Ok(EngineDevices {
            input_req,
            output_req,
            input: Some(input),
            output: Some(output),
            capture_channels,
            input_pick,
        })
    }

    /// The input channels in use (`None`: the device's first one or two).
    pub fn input_pick(&self) -> Option<ChannelPick> {
        self.input_pick
    }

    /// Captures other channels of the input (reopening it; the engine keeps running). On an error
    /// (the device lacks the channel) the input keeps its previous channels.
    pub fn set_input_pick(
        &mut self,
        handle: &mut crate::engine::EngineHandle,
        pick: Option<ChannelPick>,
    ) -> Result<(), DeviceError> {
        if pick == self.input_pick && self.input.is_some() {
            return Ok(());
        }
        let before = self.input_pick;
        self.input_pick = pick;
        if let Err(e) = self.reopen_input(handle) {
            self.input_pick = before;
            return Err(e);
        }
        Ok(())
    }

    /// The running input, if any.
    pub fn input(&self) -> Option<&DeviceStream> {
        self.input.as_ref()
    }

    /// The running output, if any.
    pub fn output(&self) -> Option<&DeviceStream> {
        self.output.as_ref()
    }

    /// Switches the input to another device (the user picked one).
    pub fn switch_input(
        &mut self,
        handle: &mut crate::engine::EngineHandle,
        req: StreamRequest,
    ) -> Result<(), DeviceError> {
        self.input_req = StreamRequest {
            channels: Some(self.capture_channels as u16),
            ..req
        };
        self.input = None;
        self.reopen_input(handle)
    }

    /// Switches the output to another device (the user picked one); playback moves there.
    pub fn switch_output(
        &mut self,
        handle: &mut crate::engine::EngineHandle,
        req: StreamRequest,
    ) -> Result<(), DeviceError> {
        self.output_req = StreamRequest {
            channels: Some(2),
            ..req
        };
        self.output = None;
        self.reopen_output(handle)
    }

    fn reopen_input(
        &mut self,
        handle: &mut crate::engine::EngineHandle,
    ) -> Result<(), DeviceError> {
        let (p, c) = rtrb::RingBuffer::new(DEVICE_RING_FRAMES * self.capture_channels);
        let stream = open_input_pick(&self.input_req, self.input_pick, p, None)?;
        handle
            .send(crate::engine::Control::ReplaceCaptureRing(c))
            .map_err(|e| DeviceError::Backend {
                id: stream.opened.id.clone(),
                reason: e.to_string(),
            })?;
        self.input = Some(stream);
        Ok(())
    }

    fn reopen_output(
        &mut self,
        handle: &mut crate::engine::EngineHandle,
    ) -> Result<(), DeviceError> {
        let (p, c) = rtrb::RingBuffer::new(DEVICE_RING_FRAMES * 2);
        let stream = open_live_output(&self.output_req, c, None)?;
        handle
            .send(crate::engine::Control::ReplaceOutputRing(p))
            .map_err(|e| DeviceError::Backend {
                id: stream.opened.id.clone(),
                reason: e.to_string(),
            })?;
        self.output = Some(stream);
        Ok(())
    }

    /// Checks both devices; returns what changed since the last call.
    pub fn poll(&mut self, handle: &mut crate::engine::EngineHandle) -> Vec<DeviceEvent> {
        use crate::devices::Direction;
        let mut events = Vec::new();
        let list = crate::devices::list_devices().ok();
        // Listed under `id`? (PulseAudio moves a stream whose device vanished to the fallback
        // device instead of failing it, so absence from the list is the reliable signal.)
        let listed = |id: &str, inputs: bool| -> bool {
            list.as_ref().is_some_and(|l| {
                let group = if inputs { &l.inputs } else { &l.outputs };
                group.iter().any(|d| d.id == id)
            })
        };
        if let Some(s) = &self.input
            && (s.status.failed() || (list.is_some() && !listed(&s.opened.id, true)))
        {
            events.push(DeviceEvent::Lost {
                direction: Direction::Input,
                id: s.opened.id.clone(),
            });
            self.input = None;
        }
        if let Some(s) = &self.output
            && (s.status.failed() || (list.is_some() && !listed(&s.opened.id, false)))
        {
            events.push(DeviceEvent::Lost {
                direction: Direction::Output,
                id: s.opened.id.clone(),
            });
            self.output = None;
        }
        let wanted = |req: &StreamRequest, inputs: bool| {
            req.id.as_deref().is_none_or(|id| listed(id, inputs))
        };
        if self.input.is_none()
            && wanted(&self.input_req, true)
            && self.reopen_input(handle).is_ok()
        {
            events.push(DeviceEvent::Reopened {
                direction: Direction::Input,
                id: self
                    .input
                    .as_ref()
                    .map(|s| s.opened.id.clone())
                    .unwrap_or_default(),
            });
        }
        if self.output.is_none()
            && wanted(&self.output_req, false)
            && self.reopen_output(handle).is_ok()
        {
            events.push(DeviceEvent::Reopened {
                direction: Direction::Output,
                id: self
                    .output
                    .as_ref()
                    .map(|s| s.opened.id.clone())
                    .unwrap_or_default(),
            });
        }
        events
    }
}
