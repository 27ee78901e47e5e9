//! A push's threads: the mixer (tap → jitter buffers → 20 ms mix → PCM to the encoder, and the
//! speakers' levels), the encoder's output reader (ADTS → AAC frames), and the sender (RTMP
//! connection, muxing, reconnects, status). None of them runs on an SFU thread; the SFU only
//! offers packets to the bounded tap.
//!
//! Stream time: AAC frame `k` is stamped `k · 1024 / 48` ms. ffmpeg's AAC encoder puts 1024
//! samples of priming before the first input sample, so mix sample `s` plays at stream time
//! `(s + 1024) / 48` ms. The levels of an interval are stamped with the stream time where the
//! interval ends (they exist from then on); the `onVolume` message is written just before the
//! first audio frame at or after that time, and that frame carries them too. The encoder puts out
//! that frame only after it got mix samples written after the levels were queued, so the levels
//! are always there first (one channel, in order).

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use onmic_room::RoomId;
use tokio::sync::oneshot;

use super::flv::{self, AdtsFrame, AdtsReader, SpeakerLevel};
use super::rtmp::{Listener, Publisher, RtmpError, ServerEvent};
use super::{
    CONNECT_TIMEOUT, PushError, PushSettings, PushState, PushStatus, PushTap, TAP_CAPACITY,
    TapPacket,
};
use crate::hub::Hub;
use crate::recording::source::{RATE, Source};
use crate::sfu::level::SPEAKING_THRESHOLD;

/// Samples per channel of one mixed frame (20 ms).
const FRAME: usize = 960;
const FRAME_TIME: Duration = Duration::from_millis(20);
/// Samples per AAC-LC frame.
const AAC_FRAME: u64 = 1024;
/// ffmpeg's AAC encoder priming (its `initial_padding`).
const ENCODER_DELAY: u64 = 1024;
/// A publisher silent this long is forgotten (its decoder freed).
const SOURCE_IDLE: Duration = Duration::from_secs(10);
/// The first retry waits this long; each next one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How long the encoder may take to flush after its input closed.
const ENCODER_DRAIN: Duration = Duration::from_secs(3);
/// The last bytes of the encoder's error output kept for messages.
const STDERR_KEEP: usize = 2048;

/// When and why the push was asked to stop (the first reason wins).
type StopSignal = Arc<Mutex<Option<(Instant, String)>>>;

fn signal(stop: &StopSignal, reason: &str) {
    let mut s = stop.lock().unwrap_or_else(|p| p.into_inner());
    s.get_or_insert_with(|| (Instant::now(), reason.to_owned()));
}

fn stopped(stop: &StopSignal) -> Option<(Instant, String)> {
    stop.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// What reaches the sender thread.
enum Input {
    Audio(AdtsFrame),
    /// The encoder's output ended (with its error output if it failed).
    AudioEnd(Option<String>),
    Levels {
        t: u32,
        speakers: Vec<SpeakerLevel>,
    },
    /// Something the RTMP server said on connection `generation`, or that connection's end.
    Server {
        generation: u64,
        event: Result<ServerEvent, String>,
    },
}

/// A status with nothing done yet.
pub(super) fn empty_status(room: &RoomId) -> PushStatus {
    PushStatus {
        id: String::new(),
        room: room.as_str().to_owned(),
        url: String::new(),
        codec: "aac",
        bitrate_kbps: 0,
        level_interval_ms: 0,
        state: PushState::Connecting,
        started_at: 0,
        stopped_at: None,
        reason: None,
        duration_ms: 0,
        bytes_sent: 0,
        audio_frames: 0,
        frames_dropped: 0,
        level_messages: 0,
        reconnects: 0,
        failed_attempts: 0,
        last_error: None,
        dropped_packets: 0,
    }
}

/// A running push: its threads and shared status.
pub(super) struct Push {
    status: Arc<Mutex<PushStatus>>,
    stop: StopSignal,
    dropped: Arc<AtomicU64>,
    sender: Option<JoinHandle<PushStatus>>,
    helpers: Vec<JoinHandle<()>>,
}

impl Push {
    /// Starts the encoder and the threads. `ready` answers once the first connection published
    /// (or failed); the tap is for the SFU.
    #[allow(clippy::type_complexity)]
    pub(super) fn start(
        hub: Arc<Hub>,
        room: RoomId,
        settings: PushSettings,
    ) -> Result<
        (
            Push,
            PushTap,
            oneshot::Receiver<Result<PushStatus, PushError>>,
        ),
        PushError,
    > {
        let ffmpeg = hub.config().push_ffmpeg.clone();
        let mut child = Command::new(&ffmpeg)
            // No probing of the raw input: ffmpeg's default analysis held the first second.
            .args(["-hide_banner", "-loglevel", "error", "-probesize", "32"])
            .args(["-analyzeduration", "0", "-f", "s16le", "-ar"])
            .arg(RATE.to_string())
            .args(["-ac", "2", "-i", "pipe:0", "-c:a", "aac", "-b:a"])
            .arg(format!("{}k", settings.bitrate_kbps))
            .args(["-f", "adts", "-flush_packets", "1", "pipe:1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PushError::Encoder(format!("cannot run {ffmpeg:?}: {e}")))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            return Err(PushError::Encoder("no pipes to the encoder".into()));
        };
        let started_at = hub.now();
        let safe = crate::recording::file_safe(&room);
        let mut status = empty_status(&room);
        status.id = format!("push-{}-{safe}", started_at.0);
        status.url = settings.target.tc_url.clone();
        status.bitrate_kbps = settings.bitrate_kbps;
        status.level_interval_ms = settings.level_interval_ms;
        status.started_at = started_at.0;
        let status = Arc::new(Mutex::new(status));
        let stop: StopSignal = Arc::new(Mutex::new(None));
        let dropped = Arc::new(AtomicU64::new(0));
        let (tap_tx, tap_rx) = mpsc::sync_channel(TAP_CAPACITY);
        let (inputs, input_rx) = mpsc::channel::<Input>();
        let (ready_tx, ready) = oneshot::channel();
        let errors = Arc::new(Mutex::new(String::new()));
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| PushError::Encoder(format!("cannot start a thread: {e}")))
        };
        let mut helpers = Vec::new();
        {
            let errors = errors.clone();
            helpers.push(spawn(
                "onmic-push-err",
                Box::new(move || keep_tail(stderr, &errors)),
            )?);
        }
        {
            let inputs = inputs.clone();
            let errors = errors.clone();
            helpers.push(spawn(
                "onmic-push-aac",
                Box::new(move || read_encoder(stdout, &inputs, &errors)),
            )?);
        }
        {
            let mixer = Mixer::new(settings.level_interval_ms, stdin, child, inputs.clone());
            let stop = stop.clone();
            helpers.push(spawn(
                "onmic-push-mix",
                Box::new(move || mixer.run(&tap_rx, &stop)),
            )?);
        }
        let sender = {
            let s = SenderLoop {
                hub,
                settings,
                status: status.clone(),
                stop: stop.clone(),
                inputs,
                conn: None,
                generation: 0,
                frames: 0,
                rate: RATE,
                config: None,
                pending: VecDeque::new(),
                retry_at: None,
            };
            std::thread::Builder::new()
                .name("onmic-push".into())
                .spawn(move || s.run(input_rx, ready_tx))
                .map_err(|e| PushError::Encoder(format!("cannot start a thread: {e}")))?
        };
        let tap = PushTap {
            tx: tap_tx,
            dropped: dropped.clone(),
        };
        Ok((
            Push {
                status,
                stop,
                dropped,
                sender: Some(sender),
                helpers,
            },
            tap,
            ready,
        ))
    }

    /// Whether the push ended (stopped or failed).
    pub(super) fn is_finished(&self) -> bool {
        self.sender.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The status now.
    pub(super) fn status(&self) -> PushStatus {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        s.dropped_packets = self.dropped.load(Ordering::Relaxed);
        s
    }

    /// Asks the push to stop at this instant (the first reason wins).
    pub(super) fn stop(&mut self, reason: &str) {
        signal(&self.stop, reason);
    }

    /// Waits for every thread; the final status (`None` if the sender panicked).
    pub(super) fn join(mut self) -> Option<PushStatus> {
        let status = self.sender.take().and_then(|t| t.join().ok());
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
        status.map(|mut s| {
            s.dropped_packets = self.dropped.load(Ordering::Relaxed);
            s
        })
    }
}

impl Drop for Push {
    /// A push dropped without a stop (its server dropped) still ends: its threads and encoder
    /// wind down on their own.
    fn drop(&mut self) {
        signal(&self.stop, "shutdown");
    }
}

/// Keeps the last [`STDERR_KEEP`] bytes of the encoder's error output.
fn keep_tail(mut stderr: impl Read, into: &Mutex<String>) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stderr.read(&mut buf) {
        if n == 0 {
            break;
        }
        let mut s = into.lock().unwrap_or_else(|p| p.into_inner());
        s.push_str(&String::from_utf8_lossy(&buf[..n]));
        if s.len() > STDERR_KEEP {
            let mut cut = s.len() - STDERR_KEEP;
            while !s.is_char_boundary(cut) {
                cut += 1;
            }
            s.drain(..cut);
        }
    }
}

/// Splits the encoder's ADTS output into frames for the sender; reads to the end even when the
/// sender is gone, so the encoder never blocks on a full pipe.
fn read_encoder(mut stdout: impl Read, inputs: &Sender<Input>, errors: &Mutex<String>) {
    let mut reader = AdtsReader::default();
    let mut buf = [0u8; 8192];
    let mut failure = None;
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                failure = Some(format!("reading the encoder: {e}"));
                break;
            }
        };
        if failure.is_some() {
            continue;
        }
        reader.push(&buf[..n]);
        loop {
            match reader.poll() {
                Ok(Some(frame)) => {
                    let _ = inputs.send(Input::Audio(frame));
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
    }
    // Let the error reader catch up with the encoder's last words.
    std::thread::sleep(Duration::from_millis(50));
    let tail = errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .trim()
        .to_owned();
    let failure = failure.or_else(|| (!tail.is_empty()).then_some(tail));
    let _ = inputs.send(Input::AudioEnd(failure));
}

/// Mixes the publishers every 20 ms, feeds the encoder, measures the levels.
struct Mixer {
    sources: HashMap<String, (Source, Instant)>,
    /// Loudest sample of each speaker in the current level window.
    window: HashMap<String, f32>,
    window_frames: u64,
    level_every: u64,
    frames: u64,
    mix: Vec<f32>,
    scratch: Vec<f32>,
    pcm: Vec<u8>,
    stdin: Option<ChildStdin>,
    child: Child,
    inputs: Sender<Input>,
}

impl Mixer {
    fn new(level_interval_ms: u32, stdin: ChildStdin, child: Child, inputs: Sender<Input>) -> Self {
        Mixer {
            sources: HashMap::new(),
            window: HashMap::new(),
            window_frames: 0,
            level_every: u64::from(level_interval_ms / 20).max(1),
            frames: 0,
            mix: vec![0.0; 2 * FRAME],
            scratch: vec![0.0; 2 * FRAME],
            pcm: Vec::with_capacity(4 * FRAME),
            stdin: Some(stdin),
            child,
            inputs,
        }
    }

    fn run(mut self, rx: &Receiver<TapPacket>, stop: &StopSignal) {
        let started = Instant::now();
        let due = |k: u64| FRAME_TIME * u32::try_from(k + 1).unwrap_or(u32::MAX);
        let mut tap_open = true;
        let outcome = loop {
            if let Some((at, _)) = stopped(stop) {
                // Up to the stop time, then the encoder's input ends.
                let total = at.saturating_duration_since(started).as_micros() * u128::from(RATE)
                    / 1_000_000;
                let mut ok = true;
                while ok && u128::from(self.frames) * (FRAME as u128) < total.max(1) {
                    ok = self.mix_frame(at);
                }
                break ok;
            }
            let wait = (started + due(self.frames)).saturating_duration_since(Instant::now());
            let wait = wait.min(Duration::from_millis(20));
            if tap_open {
                match rx.recv_timeout(wait) {
                    Ok(p) => self.take(p),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => tap_open = false,
                }
            } else {
                std::thread::sleep(wait);
            }
            let now = Instant::now();
            let mut ok = true;
            while ok && started + due(self.frames) <= now {
                ok = self.mix_frame(now);
            }
            if !ok {
                break false;
            }
        };
        if !outcome {
            // The encoder or the sender is gone: end the push.
            signal(stop, "failed");
        }
        drop(self.stdin.take());
        let deadline = Instant::now() + ENCODER_DRAIN;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
    }

    fn take(&mut self, p: TapPacket) {
        let key = p.uid.as_str();
        if !self.sources.contains_key(key) {
            match Source::new() {
                Ok(s) => {
                    self.sources.insert(key.to_owned(), (s, p.arrived));
                }
                Err(e) => {
                    tracing::warn!(%e, "no decoder for a publisher; its audio is not pushed");
                    return;
                }
            }
        }
        if let Some(entry) = self.sources.get_mut(key) {
            entry.1 = p.arrived;
            let _ = entry.0.push(p.arrived, p.ts, &p.payload);
        }
    }

    /// One 20 ms frame to the encoder; `false` if the encoder or sender is gone.
    fn mix_frame(&mut self, now: Instant) -> bool {
        self.mix.fill(0.0);
        for (uid, (s, _)) in &mut self.sources {
            self.scratch.fill(0.0);
            s.mix_into(now, &mut self.scratch);
            let mut peak = 0.0f32;
            for (m, x) in self.mix.iter_mut().zip(&self.scratch) {
                *m += x;
                peak = peak.max(x.abs());
            }
            if peak > 0.0 {
                let w = self.window.entry(uid.clone()).or_insert(0.0);
                *w = w.max(peak);
            }
        }
        self.sources.retain(|_, (s, seen)| {
            !s.is_idle() || now.saturating_duration_since(*seen) < SOURCE_IDLE
        });
        self.pcm.clear();
        for x in &self.mix {
            let v = (x.clamp(-1.0, 1.0) * 32767.0) as i16;
            self.pcm.extend_from_slice(&v.to_le_bytes());
        }
        let Some(stdin) = self.stdin.as_mut() else {
            return false;
        };
        if stdin.write_all(&self.pcm).is_err() {
            return false;
        }
        self.frames += 1;
        self.window_frames += 1;
        if self.window_frames == self.level_every {
            // Stamped with the stream time where the interval ends: the levels exist from
            // then on, and the encoder has not yet put out the frame that plays there.
            let end = self.frames * FRAME as u64;
            let t = (end + ENCODER_DELAY) * 1000 / u64::from(RATE);
            let mut speakers: Vec<SpeakerLevel> = self
                .window
                .drain()
                .map(|(uid, peak)| {
                    let volume = (peak.min(1.0) * 255.0).round() as u8;
                    SpeakerLevel {
                        uid,
                        volume,
                        speaking: volume > SPEAKING_THRESHOLD,
                    }
                })
                .collect();
            speakers.sort_by(|a, b| a.uid.cmp(&b.uid));
            self.window_frames = 0;
            let levels = Input::Levels {
                t: u32::try_from(t).unwrap_or(u32::MAX),
                speakers,
            };
            if self.inputs.send(levels).is_err() {
                return false;
            }
        }
        true
    }
}

/// One RTMP connection and whether the stream headers went out on it.
struct Conn {
    publisher: Publisher,
    headers_sent: bool,
    /// Bytes counted into the status so far.
    counted: u64,
}

/// Owns the RTMP connection: muxes audio and levels, reconnects, keeps the status.
struct SenderLoop {
    hub: Arc<Hub>,
    settings: PushSettings,
    status: Arc<Mutex<PushStatus>>,
    stop: StopSignal,
    /// For the connections' reader threads.
    inputs: Sender<Input>,
    conn: Option<Conn>,
    generation: u64,
    /// AAC frames encoded so far (the stream clock).
    frames: u64,
    rate: u32,
    /// The AudioSpecificConfig from the first frame.
    config: Option<[u8; 2]>,
    /// Levels waiting for the audio of their time.
    pending: VecDeque<(u32, Vec<SpeakerLevel>)>,
    /// When to try connecting again (while reconnecting).
    retry_at: Option<Instant>,
}

impl SenderLoop {
    fn update(&self, f: impl FnOnce(&mut PushStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn snapshot(&self) -> PushStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn run(
        mut self,
        rx: Receiver<Input>,
        ready: oneshot::Sender<Result<PushStatus, PushError>>,
    ) -> PushStatus {
        match self.connect() {
            Ok(()) => {
                self.update(|s| s.state = PushState::Live);
                tracing::info!(room = %self.snapshot().room, url = %self.settings.target.tc_url, "push started");
                self.announce("push_started");
                let _ = ready.send(Ok(self.snapshot()));
            }
            Err(e) => {
                let error = match e {
                    RtmpError::Refused(m) => PushError::Refused(m),
                    other => PushError::Unreachable(other.to_string()),
                };
                signal(&self.stop, "failed");
                self.update(|s| {
                    s.state = PushState::Failed;
                    s.last_error = Some(error.to_string());
                    s.reason = Some(error.to_string());
                    s.failed_attempts = 1;
                });
                self.finish_status();
                let _ = ready.send(Err(error));
                return self.snapshot();
            }
        }
        let outcome: Result<(), String> = loop {
            let wait = self.retry_at.map_or(Duration::from_secs(1), |t| {
                t.saturating_duration_since(Instant::now())
            });
            match rx.recv_timeout(wait) {
                Ok(Input::Audio(frame)) => self.audio(frame),
                Ok(Input::Levels { t, speakers }) => self.pending.push_back((t, speakers)),
                Ok(Input::Server { generation, event }) if generation == self.generation => {
                    match event {
                        Ok(ServerEvent::Ping(ts)) => {
                            if let Some(c) = self.conn.as_mut()
                                && let Err(e) = c.publisher.pong(ts)
                            {
                                self.lost(e.to_string());
                            }
                        }
                        Ok(ServerEvent::Error(m)) => self.lost(format!("the server said {m}")),
                        Ok(ServerEvent::Other) => {}
                        Err(m) => self.lost(m),
                    }
                }
                Ok(Input::Server { .. }) => {}
                Ok(Input::AudioEnd(failure)) => {
                    let asked = stopped(&self.stop).is_some_and(|(_, r)| r != "failed");
                    match failure {
                        Some(e) if !asked => break Err(format!("the AAC encoder stopped: {e}")),
                        _ => {
                            self.flush_levels(u32::MAX);
                            break Ok(());
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break Ok(()),
            }
            if self.conn.is_none()
                && let Err(e) = self.retry()
            {
                break Err(e);
            }
        };
        if let Some(c) = self.conn.take() {
            let sent = c.publisher.bytes_sent - c.counted;
            c.publisher.close();
            self.update(|s| s.bytes_sent += sent);
        }
        match outcome {
            Ok(()) => {
                let reason = stopped(&self.stop).map_or_else(|| "stopped".into(), |(_, r)| r);
                self.update(|s| {
                    s.state = PushState::Stopped;
                    s.reason = Some(reason);
                });
                self.finish_status();
                self.announce("push_stopped");
            }
            Err(e) => {
                signal(&self.stop, "failed");
                tracing::warn!(room = %self.snapshot().room, error = %e, "push failed");
                self.update(|s| {
                    s.state = PushState::Failed;
                    s.reason = Some(e.clone());
                    s.last_error = Some(e);
                });
                self.finish_status();
                self.announce("push_failed");
            }
        }
        let s = self.snapshot();
        tracing::info!(room = %s.room, state = ?s.state, duration_ms = s.duration_ms, bytes = s.bytes_sent, "push ended");
        s
    }

    fn finish_status(&self) {
        let now = self.hub.now();
        self.update(|s| s.stopped_at = Some(now.0));
    }

    fn announce(&self, kind: &str) {
        let now = self.hub.now();
        let hook = crate::webhook::push(&self.hub.config().app_id, &self.snapshot(), kind, now);
        self.hub.queue_webhooks(&[hook], now);
    }

    /// One attempt: connect, publish, start the connection's reader thread.
    fn connect(&mut self) -> Result<(), RtmpError> {
        let (publisher, reads) = Publisher::connect(&self.settings.target, CONNECT_TIMEOUT)?;
        self.generation += 1;
        let generation = self.generation;
        let inputs = self.inputs.clone();
        std::thread::Builder::new()
            .name("onmic-push-rtmp".into())
            .spawn(move || {
                let mut listener = Listener::new(reads);
                loop {
                    let event = listener.next_event().map_err(|e| e.to_string());
                    let end = event.is_err();
                    if inputs.send(Input::Server { generation, event }).is_err() || end {
                        return;
                    }
                }
            })?;
        self.conn = Some(Conn {
            // The set-up's bytes count too (added with the first audio frame's).
            counted: 0,
            publisher,
            headers_sent: false,
        });
        self.update(|s| {
            s.failed_attempts = 0;
        });
        Ok(())
    }

    /// The connection broke: count what it sent, schedule the first retry.
    fn lost(&mut self, error: String) {
        if let Some(c) = self.conn.take() {
            let sent = c.publisher.bytes_sent - c.counted;
            c.publisher.close();
            self.update(|s| s.bytes_sent += sent);
        }
        tracing::warn!(room = %self.snapshot().room, %error, "push connection lost; reconnecting");
        self.retry_at = Some(Instant::now() + FIRST_BACKOFF);
        self.update(|s| {
            s.state = PushState::Reconnecting;
            s.last_error = Some(error);
        });
    }

    /// Reconnects when due; `Err` once `push_retries` attempts in a row failed.
    fn retry(&mut self) -> Result<(), String> {
        let Some(at) = self.retry_at else {
            return Ok(());
        };
        if Instant::now() < at || stopped(&self.stop).is_some() {
            return Ok(());
        }
        match self.connect() {
            Ok(()) => {
                self.retry_at = None;
                self.update(|s| {
                    s.state = PushState::Live;
                    s.reconnects += 1;
                });
                tracing::info!(room = %self.snapshot().room, "push reconnected");
                Ok(())
            }
            Err(e) => {
                let mut failed = 0;
                self.update(|s| {
                    s.failed_attempts += 1;
                    failed = s.failed_attempts;
                    s.last_error = Some(e.to_string());
                });
                let limit = self.hub.config().push_retries;
                if failed >= limit {
                    return Err(format!(
                        "gave up after {failed} reconnection attempts (push_retries): {e}"
                    ));
                }
                let backoff = (FIRST_BACKOFF * 2u32.saturating_pow(failed)).min(MAX_BACKOFF);
                self.retry_at = Some(Instant::now() + backoff);
                Ok(())
            }
        }
    }

    /// Stream time (ms) of AAC frame `k`.
    fn time_of(&self, k: u64) -> u32 {
        u32::try_from(k * AAC_FRAME * 1000 / u64::from(self.rate.max(1))).unwrap_or(u32::MAX)
    }

    fn audio(&mut self, frame: AdtsFrame) {
        if self.frames == 0 {
            self.rate = frame.rate;
        }
        let config = *self.config.get_or_insert(frame.config);
        let ts = self.time_of(self.frames);
        self.frames += 1;
        let end = self.time_of(self.frames);
        let Some(conn) = self.conn.as_mut() else {
            self.pending.retain(|(t, _)| *t > ts);
            self.update(|s| s.frames_dropped += 1);
            return;
        };
        let mut result = Ok(());
        if !conn.headers_sent {
            result = conn
                .publisher
                .data(ts, &flv::on_metadata(self.settings.bitrate_kbps, self.rate))
                .and_then(|()| conn.publisher.audio(ts, &flv::aac_sequence_header(config)));
            conn.headers_sent = true;
        }
        let mut embedded = None;
        if result.is_ok() {
            embedded = self.flush_levels(ts);
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        // The newest levels due also ride in this frame (a data stream element in front).
        let body = match embedded {
            Some((t, speakers)) => {
                let mut raw = flv::levels_dse(t, &speakers);
                raw.extend_from_slice(&frame.raw);
                flv::aac_frame(&raw)
            }
            None => flv::aac_frame(&frame.raw),
        };
        let result = result.and_then(|()| conn.publisher.audio(ts, &body));
        let sent = conn.publisher.bytes_sent - conn.counted;
        conn.counted = conn.publisher.bytes_sent;
        match result {
            Ok(()) => self.update(|s| {
                s.audio_frames += 1;
                s.duration_ms = u64::from(end);
                s.bytes_sent += sent;
            }),
            Err(e) => {
                self.update(|s| s.bytes_sent += sent);
                if let Some(c) = self.conn.as_mut() {
                    c.counted = c.publisher.bytes_sent;
                }
                self.lost(e.to_string());
            }
        }
    }

    /// Writes the `onVolume` messages stamped at or before `until`; returns the newest of them
    /// (to ride in the next audio frame too).
    fn flush_levels(&mut self, until: u32) -> Option<(u32, Vec<SpeakerLevel>)> {
        let interval = self.settings.level_interval_ms;
        let mut newest = None;
        while self.pending.front().is_some_and(|(t, _)| *t <= until) {
            let Some((t, speakers)) = self.pending.pop_front() else {
                break;
            };
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            if let Err(e) = conn
                .publisher
                .data(t, &flv::on_volume(t, interval, &speakers))
            {
                self.lost(e.to_string());
                continue;
            }
            self.update(|s| s.level_messages += 1);
            newest = Some((t, speakers));
        }
        newest
    }
}
