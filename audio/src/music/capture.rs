//! A second capture device as a music source: a line-in, or the system's loopback of another
//! app's output (a PulseAudio/PipeWire "monitor" source), played as a music voice with local
//! playback on or off.
//!
//! The device is opened with the engine's input path ([`crate::streams::open_input`]: 48 kHz,
//! 10 ms period where the backend allows it, edge-resampled otherwise); its callback only moves
//! samples into a ring. A pump thread turns them into 10 ms stereo chunks for a
//! [`super::PcmInjector`]'s voice (mono is copied to both sides; of more channels the first two
//! are kept). Two devices run on two clocks, so the pump keeps the queue short: above
//! `MAX_QUEUE_MS` of audio waiting it drops a block (the latency stays bounded); when the device
//! delivers late, the voice plays silence for that block, exactly like an injection underrun —
//! the microphone path is never touched.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::cue::MusicDeviceError;
use super::inject::PcmInjector;
use super::player::MusicVoice;
use crate::streams::{DeviceStream, StreamRequest, open_input};
use crate::units::BLOCK_FRAMES;

/// Most audio waiting for the engine before the pump drops a block, ms.
pub const MAX_QUEUE_MS: usize = 200;

/// Counters of a capture source.
#[derive(Debug, Default)]
pub struct CaptureSourceStats {
    /// 48 kHz frames handed to the engine.
    pub frames: AtomicU64,
    /// Frames dropped to keep the latency bounded (the device runs faster than the engine).
    pub dropped_frames: AtomicU64,
}

/// A capture device playing as music. Dropping it closes the device and ends its voice.
pub struct CaptureSource {
    stream: DeviceStream,
    injector: Arc<std::sync::Mutex<PcmInjector>>,
    running: Arc<AtomicBool>,
    stats: Arc<CaptureSourceStats>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CaptureSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureSource")
            .field("device", &self.stream.opened)
            .finish_non_exhaustive()
    }
}

impl CaptureSource {
    /// Opens capture device `req.id` (e.g. `pulseaudio:other_app_sink.monitor`, or a line-in)
    /// and returns the source and its voice for [`crate::engine::Control::AddMusic`]. Published
    /// at volume 1; heard locally if `local_playback`.
    pub fn open(
        req: &StreamRequest,
        local_playback: bool,
    ) -> Result<(CaptureSource, Box<MusicVoice>), MusicDeviceError> {
        let (ring_p, mut ring_c) = rtrb::RingBuffer::<f32>::new(48_000 * 2);
        let stream = open_input(req, ring_p, None)?;
        let channels = usize::from(stream.opened.channels.max(1));
        let (injector, voice) = PcmInjector::new(local_playback);
        let injector = Arc::new(std::sync::Mutex::new(injector));
        let running = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(CaptureSourceStats::default());
        let (inj2, run2, stats2) = (injector.clone(), running.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("onmic-capture-music".into())
            .spawn(move || {
                let block = BLOCK_FRAMES * channels;
                let mut buf = vec![0.0f32; block];
                let mut stereo = vec![0.0f32; BLOCK_FRAMES * 2];
                let max_queue = MAX_QUEUE_MS * 48;
                while run2.load(Ordering::Acquire) {
                    let Ok(chunk) = ring_c.read_chunk(block) else {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    };
                    let (a, b) = chunk.as_slices();
                    buf[..a.len()].copy_from_slice(a);
                    buf[a.len()..a.len() + b.len()].copy_from_slice(b);
                    chunk.commit_all();
                    for i in 0..BLOCK_FRAMES {
                        let l = buf[i * channels];
                        let r = if channels > 1 {
                            buf[i * channels + 1]
                        } else {
                            l
                        };
                        stereo[2 * i] = l;
                        stereo[2 * i + 1] = r;
                    }
                    let Ok(mut inj) = inj2.lock() else {
                        return;
                    };
                    if inj.queued_frames() + BLOCK_FRAMES > max_queue {
                        stats2
                            .dropped_frames
                            .fetch_add(BLOCK_FRAMES as u64, Ordering::Relaxed);
                        continue;
                    }
                    let lost = inj.push(&stereo, 48_000, 2).unwrap_or(0);
                    stats2
                        .frames
                        .fetch_add(BLOCK_FRAMES as u64 - lost, Ordering::Relaxed);
                    stats2.dropped_frames.fetch_add(lost, Ordering::Relaxed);
                }
            })
            .map_err(MusicDeviceError::Thread)?;
        Ok((
            CaptureSource {
                stream,
                injector,
                running,
                stats,
                thread: Some(thread),
            },
            voice,
        ))
    }

    /// The device as opened.
    pub fn device(&self) -> &crate::streams::OpenedStream {
        &self.stream.opened
    }

    /// The device's health (lost, failed, latency, xruns).
    pub fn status(&self) -> &crate::streams::StreamStatus {
        &self.stream.status
    }

    /// Counters.
    pub fn stats(&self) -> &CaptureSourceStats {
        &self.stats
    }

    /// The id of its voice in the engine.
    pub fn id(&self) -> u64 {
        self.with(|i| i.id())
    }

    /// Whether the host hears it.
    pub fn set_local_playback(&self, on: bool) {
        self.with(|i| i.set_local_playback(on));
    }

    /// Whether it is published.
    pub fn set_publish(&self, on: bool) {
        self.with(|i| i.set_publish(on));
    }

    /// Whether it replaces the microphone in the published stream.
    pub fn set_replace(&self, on: bool) {
        self.with(|i| i.set_replace(on));
    }

    /// Volume in the published stream, 0..=1.5.
    pub fn set_publish_volume(&self, v: f32) {
        self.with(|i| i.set_publish_volume(v));
    }

    /// Volume in the host's output, 0..=1.5.
    pub fn set_playout_volume(&self, v: f32) {
        self.with(|i| i.set_playout_volume(v));
    }

    /// Blocks in which the engine found nothing from the device.
    pub fn underruns(&self) -> u64 {
        self.with(|i| i.underruns())
    }

    fn with<T>(&self, f: impl FnOnce(&mut PcmInjector) -> T) -> T {
        let mut g = match self.injector.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }
}

impl Drop for CaptureSource {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
