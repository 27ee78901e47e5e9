//! Server-side recording of a room's mix to Ogg Opus.
//!
//! The SFU's forwarding thread hands every forwarded packet of a recorded room to a
//! [`Recording`] through a bounded channel ([`Recording::offer`] never blocks: a full channel
//! drops the packet and counts it). The recording's own thread does the rest, off the forwarding
//! path: one [`source::Source`] per publisher (jitter buffer ordered by RTP time, Opus decode,
//! FEC/PLC on gaps), a mix to 48 kHz stereo every 20 ms of wall-clock time (silence when nobody
//! speaks, so the file's duration is stop − start), Opus re-encode at 128 kbps stereo, and an
//! Ogg Opus file ([`ogg_opus`]) under `<data_dir>/recordings/`. The recording is listed in the
//! store (`recording` → `done`, or `failed`; `interrupted` after a crash) and announced with the
//! `recording_started` / `recording_stopped` webhooks.
//!
//! Stopping ([`Recording::stop`]) fixes the stop time, closes the channel, and lets the thread
//! drain what is queued, encode up to the stop time, end the stream (end-trimmed to the exact
//! duration), fsync, and update the store; join the returned handle for the final record.

pub mod ogg_opus;
pub mod source;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use onmic_room::RoomId;
use opus::{Application, Bitrate, Channels, Encoder};
use tokio::sync::oneshot;

use crate::hub::Hub;
use crate::store::RecordingRecord;
use ogg_opus::OggOpusWriter;
use source::Source;

/// Samples per channel of one mixed frame (20 ms at 48 kHz).
pub const FRAME: usize = 960;
/// Bit rate of the recording (Opus, stereo).
pub const BITRATE: i32 = 128_000;
/// Packets queued between the forwarding thread and the recorder (~3 s of 3 speakers).
pub const TAP_CAPACITY: usize = 512;
/// A publisher silent this long is forgotten (its decoder freed).
const SOURCE_IDLE: Duration = Duration::from_secs(10);
const FRAME_TIME: Duration = Duration::from_millis(20);

/// Why a recording could not be started, stopped or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// No such room.
    #[error("no such room")]
    NoSuchRoom,
    /// The room was dismissed.
    #[error("the room was dismissed; recordings of it can only be listed")]
    Dismissed,
    /// A recording of this room is running.
    #[error("this room is already being recorded; stop that recording first")]
    AlreadyRecording,
    /// No recording of this room is running.
    #[error("this room is not being recorded; start a recording first")]
    NotRecording,
    /// The file could not be written.
    #[error("cannot write the recording file: {0}; check that the data directory is writable")]
    Io(#[from] std::io::Error),
    /// The Opus codec refused (should not happen with valid settings).
    #[error("Opus codec error: {0}")]
    Codec(#[from] opus::Error),
    /// The store refused.
    #[error("storage: {0}")]
    Store(#[from] crate::StoreError),
    /// The media service is not running.
    #[error("the media service is not running")]
    Stopped,
}

impl RecordingError {
    /// The wire error code.
    pub fn code(&self) -> &'static str {
        match self {
            RecordingError::NoSuchRoom => "no_such_room",
            RecordingError::Dismissed => "room_dismissed",
            RecordingError::AlreadyRecording => "already_recording",
            RecordingError::NotRecording => "not_recording",
            RecordingError::Io(_) | RecordingError::Codec(_) | RecordingError::Store(_) => {
                "recording_failed"
            }
            RecordingError::Stopped => "media_unavailable",
        }
    }
}

/// One forwarded packet for the recorder.
#[derive(Debug)]
struct TapPacket {
    source: u64,
    ts: u64,
    arrived: Instant,
    payload: Arc<[u8]>,
}

/// When and why the recording was asked to stop.
type StopSignal = Arc<Mutex<Option<(Instant, String)>>>;

/// The result a recording thread ends with.
pub type Finished = Result<RecordingRecord, RecordingError>;

/// A running recording, as the forwarding thread holds it.
#[derive(Debug)]
pub struct Recording {
    id: String,
    tx: SyncSender<TapPacket>,
    dropped: Arc<AtomicU64>,
    stop: StopSignal,
    thread: JoinHandle<Finished>,
}

impl Recording {
    /// Starts recording `room` into `<dir>/<id>.opus`. The thread answers `ready` once the file
    /// and its listing exist (or with the reason it could not start). Time starts now.
    pub fn start(
        hub: Arc<Hub>,
        room: RoomId,
        dir: PathBuf,
        ready: oneshot::Sender<Finished>,
    ) -> std::io::Result<Recording> {
        let started = Instant::now();
        let started_at = hub.now();
        let safe = file_safe(&room);
        let id = format!("rec-{}-{safe}", started_at.0);
        let (tx, rx) = std::sync::mpsc::sync_channel(TAP_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let stop: StopSignal = Arc::new(Mutex::new(None));
        let record = RecordingRecord::started(
            id.clone(),
            room.as_str().to_owned(),
            dir.join(format!("{id}.opus"))
                .to_string_lossy()
                .into_owned(),
            started_at,
        );
        let thread = {
            let (dropped, stop) = (dropped.clone(), stop.clone());
            std::thread::Builder::new()
                .name("onmic-recorder".into())
                .spawn(move || Recorder::run(hub, record, dir, started, rx, dropped, stop, ready))?
        };
        Ok(Recording {
            id,
            tx,
            dropped,
            stop,
            thread,
        })
    }

    /// The recording's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the recording thread has ended (failed, or stopped).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Hands a forwarded packet to the recorder without blocking; a full queue drops it and
    /// counts it. `false`: the recorder is gone (it failed), stop offering.
    pub fn offer(&self, source: u64, ts: u64, payload: &Arc<[u8]>) -> bool {
        let packet = TapPacket {
            source,
            ts,
            arrived: Instant::now(),
            payload: payload.clone(),
        };
        offer_tap(&self.tx, &self.dropped, packet)
    }

    /// Stops at this instant for `reason`; join the handle for the final record.
    pub fn stop(self, reason: &str) -> JoinHandle<Finished> {
        let mut s = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        s.get_or_insert_with(|| (Instant::now(), reason.to_owned()));
        drop(s);
        drop(self.tx);
        self.thread
    }
}

/// Mixes the publishers and writes the file; lives on the recording thread.
struct Recorder {
    record: RecordingRecord,
    started: Instant,
    sources: HashMap<u64, (Source, Instant)>,
    encoder: Encoder,
    /// The file; taken when the stream ends.
    writer: Option<OggOpusWriter<BufWriter<File>>>,
    /// The newest encoded packet, held back so the last one can end the stream.
    pending: Option<Vec<u8>>,
    frames: u64,
    mix: Vec<f32>,
    encoded: Vec<u8>,
}

impl Recorder {
    #[allow(clippy::too_many_arguments)]
    fn run(
        hub: Arc<Hub>,
        record: RecordingRecord,
        dir: PathBuf,
        started: Instant,
        rx: Receiver<TapPacket>,
        dropped: Arc<AtomicU64>,
        stop: StopSignal,
        ready: oneshot::Sender<Finished>,
    ) -> Finished {
        let mut rec = match Recorder::open(hub.clone(), record, &dir, started) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(%e, "recording could not start");
                let _ = ready.send(Err(RecordingError::Io(std::io::Error::other(
                    e.to_string(),
                ))));
                return Err(e);
            }
        };
        let _ = ready.send(Ok(rec.record.clone()));
        tracing::info!(id = %rec.record.id, file = %rec.record.file, "recording started");
        let result = rec.record_until_stopped(&rx);
        let (at, reason) = stop
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| (Instant::now(), "server stopped".into()));
        rec.record.dropped_packets = dropped.load(Ordering::Relaxed);
        let result = result.and_then(|()| rec.finish(at));
        let now = hub.now();
        match result {
            Ok(()) => {
                rec.record.status = "done".into();
                rec.record.reason = Some(reason);
            }
            Err(ref e) => {
                tracing::error!(id = %rec.record.id, %e, "recording failed");
                rec.record.status = "failed".into();
                rec.record.reason = Some(e.to_string());
            }
        }
        rec.record.stopped_at = Some(now);
        rec.record.bytes = std::fs::metadata(&rec.record.file).ok().map(|m| m.len());
        // Through the store's writer: this thread never waits on the database.
        hub.save_recording(&rec.record);
        announce(&hub, &rec.record, false);
        tracing::info!(id = %rec.record.id, status = %rec.record.status, duration_ms = ?rec.record.duration_ms, "recording stopped");
        result?;
        Ok(rec.record)
    }

    fn open(
        hub: Arc<Hub>,
        record: RecordingRecord,
        dir: &std::path::Path,
        started: Instant,
    ) -> Result<Recorder, RecordingError> {
        std::fs::create_dir_all(dir)?;
        let file = File::create_new(&record.file)?;
        let mut encoder = Encoder::new(source::RATE, Channels::Stereo, Application::Audio)?;
        encoder.set_bitrate(Bitrate::Bits(BITRATE))?;
        let pre_skip = u16::try_from(encoder.get_lookahead()?).unwrap_or(312);
        let serial = record
            .id
            .bytes()
            .fold(0x0421_u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        let comments = vec![
            format!("ROOM={}", record.room),
            format!("ONMIC_RECORDING={}", record.id),
        ];
        let writer = OggOpusWriter::new(BufWriter::new(file), serial, 2, pre_skip, &comments)?;
        hub.save_recording(&record);
        announce(&hub, &record, true);
        Ok(Recorder {
            record,
            started,
            sources: HashMap::new(),
            encoder,
            writer: Some(writer),
            pending: None,
            frames: 0,
            mix: vec![0.0; 2 * FRAME],
            encoded: vec![0; 4000],
        })
    }

    /// When frame `k` (0-based) is due: its 20 ms have passed.
    fn due(&self, frame: u64) -> Instant {
        self.started + FRAME_TIME * u32::try_from(frame + 1).unwrap_or(u32::MAX)
    }

    fn record_until_stopped(&mut self, rx: &Receiver<TapPacket>) -> Result<(), RecordingError> {
        loop {
            let wait = self
                .due(self.frames)
                .saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(p) => self.take(p),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            let now = Instant::now();
            while self.due(self.frames) <= now {
                self.mix_frame(now)?;
            }
        }
    }

    fn take(&mut self, p: TapPacket) {
        let entry = match self.sources.entry(p.source) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => match Source::new() {
                Ok(s) => v.insert((s, p.arrived)),
                Err(e) => {
                    tracing::warn!(%e, "no decoder for a publisher; its audio is not recorded");
                    return;
                }
            },
        };
        entry.1 = p.arrived;
        let _ = entry.0.push(p.arrived, p.ts, &p.payload);
    }

    fn mix_frame(&mut self, now: Instant) -> Result<(), RecordingError> {
        self.mix.fill(0.0);
        for (s, _) in self.sources.values_mut() {
            s.mix_into(now, &mut self.mix);
        }
        self.sources.retain(|_, (s, seen)| {
            !s.is_idle() || now.saturating_duration_since(*seen) < SOURCE_IDLE
        });
        for x in &mut self.mix {
            *x = x.clamp(-1.0, 1.0);
        }
        let n = self.encoder.encode_float(&self.mix, &mut self.encoded)?;
        if let Some(prev) = self.pending.replace(self.encoded[..n].to_vec())
            && let Some(w) = self.writer.as_mut()
        {
            w.write_audio(&prev, FRAME as u64)?;
        }
        self.frames += 1;
        Ok(())
    }

    /// Encodes up to the stop time and ends the stream, trimmed to exactly `at - started`.
    fn finish(&mut self, at: Instant) -> Result<(), RecordingError> {
        let elapsed = at.saturating_duration_since(self.started);
        let total = u64::try_from(elapsed.as_micros() * u128::from(source::RATE) / 1_000_000)
            .unwrap_or(u64::MAX);
        while self.frames == 0 || self.frames * (FRAME as u64) < total {
            self.mix_frame(at)?;
        }
        let last = self.pending.take().unwrap_or_default();
        let Some(writer) = self.writer.take() else {
            return Ok(()); // already finished
        };
        let out = writer.finish(&last, FRAME as u64, total)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        self.record.duration_ms = Some(total * 1000 / u64::from(source::RATE));
        Ok(())
    }
}

/// Queues `packet` for a tap's consumer (a recorder, a CDN push's mixer) without blocking: a
/// full queue drops it and counts it in `dropped`. `false`: the consumer is gone.
pub(crate) fn offer_tap<T>(tx: &SyncSender<T>, dropped: &AtomicU64, packet: T) -> bool {
    match tx.try_send(packet) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            dropped.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

/// `room` with every character but ASCII letters and digits as `_`: safe in a file name and in
/// the ids of recordings and pushes.
pub(crate) fn file_safe(room: &RoomId) -> String {
    room.as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Queues the `recording_started` / `recording_stopped` webhook.
fn announce(hub: &Hub, record: &RecordingRecord, started: bool) {
    let now = hub.now();
    let hook = crate::webhook::recording(&hub.config().app_id, record, started, now);
    hub.queue_webhooks(&[hook], now);
}
