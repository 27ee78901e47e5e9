//! Capture from a PulseAudio source with a server-side queue, speaking PulseAudio's protocol
//! directly (the `pulseaudio` crate cpal itself uses).
//!
//! Why not through cpal: cpal 0.18 asks PulseAudio for a record stream whose `maxlength` equals
//! its `fragsize` — one period (10 ms). PulseAudio keeps captured audio that is not yet on its
//! way to the client in a per-stream queue of `maxlength` bytes and silently drops what does not
//! fit, so whenever the server's main loop or this process is late by more than one period (a
//! busy machine: the end-to-end test lost 55–65 % of the capture once loaded), the audio is simply
//! gone. The engine stamps blocks by count, so the dropped audio turned into a stream that runs
//! slower than real time at every listener: half concealed, quieter, smeared. Here the period
//! stays 10 ms (`fragsize`, with `adjust_latency` so the source runs at that latency) but the
//! queue holds [`QUEUE_SECONDS`] of audio, so lateness delays audio instead of losing it; the
//! engine drains a backlog at once and the listeners' jitter buffers absorb the burst.
//!
//! The callback converts little-endian `f32` bytes and pushes them into the engine's ring (or
//! through the edge resampler); it does not allocate, lock, log or make a syscall. A watchdog
//! thread polls the stream's timing every [`WATCH_PERIOD`] for the latency and notices a lost
//! server or source.

use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use futures::FutureExt as _;
use futures::executor::block_on;
use pulseaudio::protocol;

use super::{DeviceStream, FAILED, LOST, OpenedStream, StreamRequest, StreamStatus};
use crate::devices::DeviceError;

/// Capture the server may queue for this stream while the client is late, in seconds.
pub const QUEUE_SECONDS: u32 = 1;

/// How often the watchdog asks the server for the stream's timing.
const WATCH_PERIOD: Duration = Duration::from_millis(250);

/// How long connecting to the server may take before the open fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening waits for the first captured audio.
const START_TIMEOUT: Duration = Duration::from_secs(3);

/// Samples converted per step on the resampling path (stack buffer).
const SCRATCH: usize = 512;

/// A running PulseAudio record stream; dropping it stops the stream.
pub(super) struct PulseInput {
    stop: Arc<AtomicBool>,
    watchdog: Option<JoinHandle<()>>,
    // Dropped after the watchdog (which holds a clone) has stopped: the last handle going sends
    // the server the stream's deletion without waiting for the answer.
    _stream: pulseaudio::RecordStream,
    _client: pulseaudio::Client,
}

/// How long dropping a stream waits for the watchdog to end before leaving it to end alone.
const DROP_WAIT: Duration = Duration::from_millis(200);

impl Drop for PulseInput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Delete the stream on the server now, without waiting for the answer: the watchdog's
        // clone would otherwise keep it (and its callback) alive until its own round trip ends.
        let _ = self._stream.clone().delete().now_or_never();
        if let Some(w) = self.watchdog.take() {
            w.thread().unpark();
            // A latency query can go unanswered for a long time (seen: over two minutes while
            // another client of the same process played to the same sink), and whoever drops
            // a capture (switching device, stopping a capture source) must not hang on it: wait
            // briefly, then let the thread end by itself when its answer comes.
            let deadline = std::time::Instant::now() + DROP_WAIT;
            while !w.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if w.is_finished() {
                let _ = w.join();
            }
        }
    }
}

fn backend(id: &str, reason: impl std::fmt::Display) -> DeviceError {
    DeviceError::Backend {
        id: id.to_owned(),
        reason: reason.to_string(),
    }
}

fn connect(id: &str) -> Result<pulseaudio::Client, DeviceError> {
    // The handshake has no socket timeout of its own: bound it as cpal does.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let name = CString::new(format!("onmic-capture-{}", std::process::id()))
            .expect("a formatted number has no NUL byte");
        let _ = tx.send(pulseaudio::Client::from_env(&name));
    });
    match rx.recv_timeout(CONNECT_TIMEOUT) {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(DeviceError::HostUnavailable {
            host: "PulseAudio".into(),
            reason: e.to_string(),
        }),
        Err(_) => Err(DeviceError::HostUnavailable {
            host: "PulseAudio".into(),
            reason: format!("no answer within {CONNECT_TIMEOUT:?} (opening {id})"),
        }),
    }
}

/// Pushes whole little-endian `f32` samples from `bytes` into `ring` (through `edge` when the
/// stream is not at 48 kHz); returns the samples the full ring refused.
fn deliver(
    bytes: &[u8],
    ring: &mut rtrb::Producer<f32>,
    edge: &mut Option<crate::resample::EdgeResampler>,
    picker: &mut Option<super::Picker>,
) -> u64 {
    let mut samples = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if let Some(picker) = picker.as_mut() {
        return super::push_picked(samples, picker, edge, ring);
    }
    // Whole samples a stack buffer at a time.
    let mut lost = 0u64;
    let mut scratch = [0.0f32; SCRATCH];
    loop {
        let mut n = 0;
        for (slot, s) in scratch.iter_mut().zip(samples.by_ref()) {
            *slot = s;
            n += 1;
        }
        if n == 0 {
            return lost;
        }
        lost += super::push_edge_or_ring(&scratch[..n], edge, ring);
    }
}

/// Opens PulseAudio source `source` (device `id`) per `req` (48 kHz unless asked otherwise;
/// the server converts), pushing interleaved `f32` frames into `ring`. `probe` as for
/// [`super::open_input`].
pub(super) fn open(
    source: &str,
    id: String,
    req: &StreamRequest,
    pick: Option<super::ChannelPick>,
    mut ring: rtrb::Producer<f32>,
    probe: Option<fn(bool)>,
) -> Result<DeviceStream, DeviceError> {
    let channels = req.channels.unwrap_or(2).clamp(1, 2);
    let rate = req.sample_rate.unwrap_or(48_000);
    let period = req.buffer_frames.unwrap_or(480).max(1);
    let client = connect(&id)?;
    let source_name = CString::new(source).map_err(|e| backend(&id, e))?;
    // A pick records every channel of the source in its own order (its own channel map: the
    // server then remixes nothing) and keeps two in the callback.
    let (stream_channels, channel_map, mut picker) = match pick {
        None => (
            channels,
            if channels == 1 {
                protocol::ChannelMap::mono()
            } else {
                protocol::ChannelMap::stereo()
            },
            None,
        ),
        Some(p) => {
            let info = block_on(client.source_info_by_name(source_name.clone())).map_err(|e| {
                DeviceError::NotFound {
                    id: format!("{id} ({e})"),
                }
            })?;
            let n = u16::from(info.sample_spec.channels);
            p.check(n).map_err(|e| backend(&id, e))?;
            (
                n,
                info.channel_map,
                Some(super::Picker::new(p, n, usize::from(channels))),
            )
        }
    };
    let bytes_per_frame = 4 * u32::from(stream_channels);
    let params = protocol::RecordStreamParams {
        sample_spec: protocol::SampleSpec {
            format: protocol::SampleFormat::Float32Le,
            sample_rate: rate,
            channels: stream_channels as u8,
        },
        channel_map,
        source_name: Some(source_name),
        buffer_attr: protocol::stream::BufferAttr {
            max_length: rate * QUEUE_SECONDS * bytes_per_frame,
            fragment_size: period * bytes_per_frame,
            ..Default::default()
        },
        flags: protocol::stream::StreamFlags {
            adjust_latency: true,
            ..Default::default()
        },
        ..Default::default()
    };

    let status = Arc::new(StreamStatus::default());
    let mut edge = super::edge_resampler(&id, rate, 48_000, channels)
        .map_err(|e| DeviceError::from_cpal(&id, &e))?;
    let st = status.clone();
    // A sample may straddle two deliveries: its first bytes wait here.
    let mut carry = [0u8; 4];
    let mut carried = 0usize;
    let callback = move |data: &[u8]| {
        if let Some(p) = probe {
            p(true);
        }
        let mut bytes = data;
        let mut lost = 0u64;
        if carried > 0 {
            let take = (4 - carried).min(bytes.len());
            carry[carried..carried + take].copy_from_slice(&bytes[..take]);
            carried += take;
            bytes = &bytes[take..];
            if carried == 4 {
                lost += deliver(&carry, &mut ring, &mut edge, &mut picker);
                carried = 0;
            }
        }
        let whole = bytes.len() / 4 * 4;
        lost += deliver(&bytes[..whole], &mut ring, &mut edge, &mut picker);
        let rest = &bytes[whole..];
        carry[..rest.len()].copy_from_slice(rest);
        carried = rest.len();
        if lost > 0 {
            st.xruns.fetch_add(lost, Ordering::Relaxed);
        }
        if let Some(p) = probe {
            p(false);
        }
    };
    let stream = block_on(client.create_record_stream(params, callback)).map_err(|e| {
        DeviceError::NotFound {
            id: format!("{id} ({e})"),
        }
    })?;

    // Return once audio flows, as cpal's `play` does (the monitor of an idle null sink can take
    // over a second to deliver its first fragment), but never hang on a source that stays silent.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let first = stream.clone();
    std::thread::spawn(move || {
        let _ = started_tx.send(block_on(first.started()));
    });
    let _ = started_rx.recv_timeout(START_TIMEOUT);

    let stop = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (stop, status, stream) = (stop.clone(), status.clone(), stream.clone());
        let spec = protocol::SampleSpec {
            format: protocol::SampleFormat::Float32Le,
            sample_rate: rate,
            channels: stream_channels as u8,
        };
        std::thread::Builder::new()
            .name("onmic-pulse-watch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match block_on(stream.timing_info()) {
                        Ok(t) => {
                            // Source latency plus what is queued for us on the server.
                            let queued = (t.write_offset - t.read_offset).max(0) as usize;
                            let latency = Duration::from_micros(t.source_usec)
                                + spec.bytes_to_duration(queued);
                            status
                                .latency_us
                                .store(latency.as_micros() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let lost = matches!(
                                e,
                                pulseaudio::ClientError::Disconnected
                                    | pulseaudio::ClientError::ServerError(_)
                            );
                            status
                                .state
                                .store(if lost { LOST } else { FAILED }, Ordering::Relaxed);
                            return;
                        }
                    }
                    std::thread::park_timeout(WATCH_PERIOD);
                }
            })
            .map_err(|e| backend(&id, e))?
    };
    Ok(DeviceStream {
        opened: OpenedStream {
            id,
            sample_rate: rate,
            channels,
            buffer_frames: Some(period),
        },
        status,
        _stream: super::Backend::Pulse(PulseInput {
            stop,
            watchdog: Some(watchdog),
            _stream: stream,
            _client: client,
        }),
    })
}
