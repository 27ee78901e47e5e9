//! CDN push (旁路推流): the room's mix, AAC-LC 48 kHz stereo in FLV over RTMP, to an RTMP server
//! (nginx-rtmp, SRS, a CDN's ingest), with the speakers' levels as timed `onVolume` data
//! messages. Started and stopped over REST; one push per room, at most `push_max` per server.
//!
//! Data path, never blocking the SFU: the room's home shard offers each forwarded packet to the
//! push's [`PushTap`] (a bounded channel; full: dropped and counted). The push's threads do the
//! rest (`worker`): the mixer decodes and mixes the publishers every 20 ms of wall-clock time
//! (as the recorder does, with [`crate::recording::source::Source`]) and measures each speaker's
//! level; an `ffmpeg` child encodes the PCM to AAC (ADTS on a pipe); the sender muxes the
//! frames and the levels into RTMP messages with aligned stream timestamps ([`flv`], [`rtmp`]).
//! A lost connection is retried with backoff (`push_retries` attempts: 0.5 s, 1 s, 2 s, … up to
//! 8 s apart), then the push fails. Format and figures: `docs/push.md`.

pub mod amf0;
pub mod flv;
pub mod rtmp;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onmic_room::{EventKind, RoomId, Uid};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::hub::Hub;
use crate::sfu::Sfu;
pub use rtmp::Target;

/// Packets queued between the SFU and the push's mixer (~3 s of 3 speakers).
pub const TAP_CAPACITY: usize = 512;
/// Default AAC bit rate.
pub const DEFAULT_BITRATE_KBPS: u32 = 128;
/// Default spacing of the `onVolume` messages.
pub const DEFAULT_LEVEL_INTERVAL_MS: u32 = 200;
/// Longest accepted URL and stream key.
pub const MAX_URL_CHARS: usize = 1024;
/// See [`MAX_URL_CHARS`].
pub const MAX_KEY_CHARS: usize = 256;
/// TCP connect and RTMP set-up timeout of one attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a push could not be started, stopped or kept going.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// No such room.
    #[error("no such room")]
    NoSuchRoom,
    /// The room was dismissed.
    #[error("the room was dismissed")]
    Dismissed,
    /// The room is being pushed already.
    #[error("this room is already being pushed; stop that push first")]
    AlreadyPushing,
    /// No push of this room is running (or ever ran, for the status).
    #[error("this room is not being pushed; start a push first")]
    NotPushing,
    /// The URL or stream key is unusable.
    #[error("{0}")]
    InvalidUrl(String),
    /// A codec other than AAC was asked for.
    #[error(
        "codec {0:?} is not supported: use \"aac\" (Opus in FLV needs Enhanced RTMP, which nginx-rtmp and ffmpeg 5.1 do not read; see docs/push.md)"
    )]
    UnsupportedCodec(String),
    /// `push_max` pushes run already.
    #[error("this server runs its maximum of {0} pushes (push_max); stop one first")]
    Limit(usize),
    /// The RTMP server could not be reached (refused, timed out, broke the handshake).
    #[error("cannot reach the RTMP server: {0}")]
    Unreachable(String),
    /// The RTMP server refused to let us publish.
    #[error("{0}")]
    Refused(String),
    /// The AAC encoder (`ffmpeg`) could not be started or died.
    #[error("the AAC encoder failed: {0}; install ffmpeg or set push_ffmpeg to its path")]
    Encoder(String),
    /// The media service is not running.
    #[error("the media service is not running")]
    Stopped,
}

impl PushError {
    /// The wire error code.
    pub fn code(&self) -> &'static str {
        match self {
            PushError::NoSuchRoom => "no_such_room",
            PushError::Dismissed => "room_dismissed",
            PushError::AlreadyPushing => "already_pushing",
            PushError::NotPushing => "not_pushing",
            PushError::InvalidUrl(_) => "invalid_push_url",
            PushError::UnsupportedCodec(_) => "unsupported_codec",
            PushError::Limit(_) => "push_limit",
            PushError::Unreachable(_) => "rtmp_unreachable",
            PushError::Refused(_) => "rtmp_refused",
            PushError::Encoder(_) => "encoder_failed",
            PushError::Stopped => "media_unavailable",
        }
    }
}

/// The body of `POST /v1/rooms/{room}/push/start`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// `rtmp://host[:port]/app`.
    pub url: String,
    /// The stream key (the name published under the application).
    pub stream_key: String,
    /// `"aac"` (the default and the only one).
    #[serde(default)]
    pub codec: Option<String>,
    /// AAC bit rate, 32–320 (default 128).
    #[serde(default)]
    pub bitrate_kbps: Option<u32>,
    /// Spacing of the `onVolume` messages, 100–1000 ms (default 200).
    #[serde(default)]
    pub level_interval_ms: Option<u32>,
}

/// A checked [`PushRequest`].
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Where to.
    pub target: Target,
    /// AAC bit rate.
    pub bitrate_kbps: u32,
    /// `onVolume` spacing.
    pub level_interval_ms: u32,
}

impl PushRequest {
    /// Checks the request: the URL's form, the key, the codec and the ranges.
    pub fn check(&self) -> Result<PushSettings, PushError> {
        let codec = self.codec.as_deref().unwrap_or("aac");
        if !codec.eq_ignore_ascii_case("aac") {
            return Err(PushError::UnsupportedCodec(codec.to_owned()));
        }
        let bitrate_kbps = self.bitrate_kbps.unwrap_or(DEFAULT_BITRATE_KBPS);
        if !(32..=320).contains(&bitrate_kbps) {
            return Err(PushError::InvalidUrl(format!(
                "bitrate_kbps {bitrate_kbps} is out of range (32-320)"
            )));
        }
        let level_interval_ms = self.level_interval_ms.unwrap_or(DEFAULT_LEVEL_INTERVAL_MS);
        if !(100..=1000).contains(&level_interval_ms) || !level_interval_ms.is_multiple_of(20) {
            return Err(PushError::InvalidUrl(format!(
                "level_interval_ms {level_interval_ms} must be a multiple of 20 in 100-1000"
            )));
        }
        let target = parse_target(&self.url, &self.stream_key)?;
        Ok(PushSettings {
            target,
            bitrate_kbps,
            level_interval_ms,
        })
    }
}

/// Parses `rtmp://host[:port]/app[/…][?query]` and checks the stream key.
pub fn parse_target(url: &str, key: &str) -> Result<Target, PushError> {
    let bad = |m: &str| PushError::InvalidUrl(format!("url {url:?}: {m}"));
    if url.chars().count() > MAX_URL_CHARS {
        return Err(PushError::InvalidUrl(format!(
            "url is over {MAX_URL_CHARS} characters"
        )));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("contains spaces or control characters"));
    }
    let Some(rest) = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("rtmp://"))
        .and_then(|_| url.get(7..))
    else {
        return Err(bad(
            "must start with rtmp:// (rtmps and other schemes are not supported)",
        ));
    };
    let (authority, app) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(bad(
            "credentials in the URL are not supported; use the stream key",
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unclosed [ in the host"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad("junk after the host")),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    let port = match port {
        None => 1935,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port must be 1-65535"))?,
    };
    let app = app.trim_end_matches('/');
    if app.is_empty() {
        return Err(bad("names no application (rtmp://host/app)"));
    }
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(PushError::InvalidUrl(format!(
            "stream_key must be 1-{MAX_KEY_CHARS} characters"
        )));
    }
    if key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(PushError::InvalidUrl(
            "stream_key contains spaces or control characters".into(),
        ));
    }
    Ok(Target {
        host: host.to_owned(),
        port,
        app: app.to_owned(),
        tc_url: url.trim_end_matches('/').to_owned(),
        key: key.to_owned(),
    })
}

/// Where a push is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushState {
    /// The first connection is being made.
    Connecting,
    /// Publishing.
    Live,
    /// The connection was lost; retrying with backoff.
    Reconnecting,
    /// Stopped (request, dismissed room, shutdown); `reason` says which.
    Stopped,
    /// Gave up: the first connection failed, the retries ran out or the encoder died.
    Failed,
}

/// What `GET /v1/rooms/{room}/push` shows.
#[derive(Debug, Clone, Serialize)]
pub struct PushStatus {
    /// `push-<started_at>-<room>`.
    pub id: String,
    /// The room.
    pub room: String,
    /// The RTMP URL (the stream key is never shown).
    pub url: String,
    /// `aac`.
    pub codec: &'static str,
    /// AAC bit rate.
    pub bitrate_kbps: u32,
    /// `onVolume` spacing.
    pub level_interval_ms: u32,
    /// See [`PushState`].
    pub state: PushState,
    /// Unix milliseconds.
    pub started_at: u64,
    /// Unix milliseconds, once ended.
    pub stopped_at: Option<u64>,
    /// Why it ended: `request`, `dismissed`, `shutdown`, or the error.
    pub reason: Option<String>,
    /// Stream time of the audio sent so far (ms): the end of the last AAC frame written.
    pub duration_ms: u64,
    /// Bytes written to RTMP connections (all attempts).
    pub bytes_sent: u64,
    /// AAC frames written.
    pub audio_frames: u64,
    /// AAC frames encoded while no connection was up (dropped).
    pub frames_dropped: u64,
    /// `onVolume` messages written.
    pub level_messages: u64,
    /// Successful reconnections.
    pub reconnects: u64,
    /// Failed connection attempts since the last success.
    pub failed_attempts: u32,
    /// The last connection or encoder error.
    pub last_error: Option<String>,
    /// Packets the SFU could not queue for the mixer (it fell behind).
    pub dropped_packets: u64,
}

/// One forwarded packet for the push's mixer.
#[derive(Debug)]
pub(crate) struct TapPacket {
    uid: Uid,
    ts: u64,
    arrived: Instant,
    payload: Arc<[u8]>,
}

/// The SFU's end of a push: offers forwarded packets without blocking.
#[derive(Debug, Clone)]
pub struct PushTap {
    tx: SyncSender<TapPacket>,
    dropped: Arc<AtomicU64>,
}

impl PushTap {
    /// Queues a forwarded packet (RTP time `ts` at 48 kHz, extended) of `uid`; a full queue drops
    /// it and counts it. `false`: the push ended, remove the tap.
    pub fn offer(&self, uid: &Uid, ts: u64, payload: &Arc<[u8]>) -> bool {
        let packet = TapPacket {
            uid: uid.clone(),
            ts,
            arrived: Instant::now(),
            payload: payload.clone(),
        };
        crate::recording::offer_tap(&self.tx, &self.dropped, packet)
    }
}

/// A running push as the manager holds it.
struct Running {
    push: worker::Push,
}

/// Every push of this server: at most one running per room, and the last status of each room.
pub struct Pushes {
    hub: Arc<Hub>,
    media: Option<Arc<Sfu>>,
    running: Mutex<HashMap<RoomId, Running>>,
    last: Mutex<HashMap<RoomId, PushStatus>>,
}

impl std::fmt::Debug for Pushes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pushes").finish_non_exhaustive()
    }
}

impl Pushes {
    /// No pushes yet.
    pub fn new(hub: Arc<Hub>, media: Option<Arc<Sfu>>) -> Arc<Pushes> {
        Arc::new(Pushes {
            hub,
            media,
            running: Mutex::new(HashMap::new()),
            last: Mutex::new(HashMap::new()),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn last(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, PushStatus>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts pushing `room`; answers once the RTMP server accepted the publication (or with why
    /// it did not).
    pub async fn start(
        self: &Arc<Self>,
        room: RoomId,
        request: PushRequest,
    ) -> Result<PushStatus, PushError> {
        let settings = request.check()?;
        let snapshot = self
            .hub
            .snapshot(&room)
            .map_err(|_| PushError::NoSuchRoom)?;
        if snapshot.dismissed {
            return Err(PushError::Dismissed);
        }
        let media = self.media.clone().ok_or(PushError::Stopped)?;
        let events = self
            .hub
            .subscribe(&room)
            .map_err(|_| PushError::NoSuchRoom)?;
        let max = self.hub.config().push_max;
        let (tap, ready) = {
            let mut running = self.running();
            running.retain(|_, r| !r.push.is_finished());
            if running.contains_key(&room) {
                return Err(PushError::AlreadyPushing);
            }
            if running.len() >= max {
                return Err(PushError::Limit(max));
            }
            let (push, tap, ready) = worker::Push::start(self.hub.clone(), room.clone(), settings)?;
            running.insert(room.clone(), Running { push });
            (tap, ready)
        };
        let first = ready
            .await
            .unwrap_or_else(|_| Err(PushError::Encoder("the push thread ended".into())));
        match first {
            Ok(status) => {
                if media.set_push_tap(room.clone(), Some(tap)).is_err() {
                    self.finish(&room, "media service stopped").await;
                    return Err(PushError::Stopped);
                }
                self.watch(room, events);
                Ok(status)
            }
            Err(e) => {
                self.finish(&room, "failed").await;
                Err(e)
            }
        }
    }

    /// Stops the room's push; answers with its final status once its stream is closed.
    pub async fn stop(&self, room: &RoomId, reason: &str) -> Result<PushStatus, PushError> {
        self.hub.snapshot(room).map_err(|_| PushError::NoSuchRoom)?;
        let running = self.take(room);
        let Some(running) = running else {
            return Err(PushError::NotPushing);
        };
        if running.push.is_finished() {
            // It failed on its own: report that, and count the stop as not needed.
            let status = self.end(room, running).await;
            self.last().insert(room.clone(), status);
            return Err(PushError::NotPushing);
        }
        let mut running = running;
        running.push.stop(reason);
        Ok(self.end(room, running).await)
    }

    /// Takes the room's push out of the running ones and files its status as the room's last
    /// at once, under the same lock: until `end` files the final status (after the push's
    /// threads have ended) a status request must see this push, not the one before it (a client
    /// polling a push that gave up read the previous push's failure for that moment).
    fn take(&self, room: &RoomId) -> Option<Running> {
        let mut running = self.running();
        let taken = running.remove(room)?;
        self.last().insert(room.clone(), taken.push.status());
        Some(taken)
    }

    /// The running push's status, or the last one's.
    pub fn status(&self, room: &RoomId) -> Result<PushStatus, PushError> {
        self.hub.snapshot(room).map_err(|_| PushError::NoSuchRoom)?;
        if let Some(r) = self.running().get(room) {
            return Ok(r.push.status());
        }
        self.last().get(room).cloned().ok_or(PushError::NotPushing)
    }

    /// Stops every push (server shutdown) and waits for their streams to close.
    pub async fn stop_all(&self, reason: &str) {
        let all: Vec<(RoomId, Running)> = {
            let mut running = self.running();
            let all: Vec<(RoomId, Running)> = running.drain().collect();
            let mut last = self.last();
            for (room, r) in &all {
                last.insert(room.clone(), r.push.status());
            }
            all
        };
        for (room, mut running) in all {
            running.push.stop(reason);
            let status = self.end(&room, running).await;
            self.last().insert(room, status);
        }
    }

    /// Removes the tap, stops the push (if still running) with `reason` and waits for it.
    async fn end(&self, room: &RoomId, mut running: Running) -> PushStatus {
        if let Some(media) = &self.media {
            let _ = media.set_push_tap(room.clone(), None);
        }
        running.push.stop("request");
        let push = running.push;
        let status = tokio::task::spawn_blocking(move || push.join())
            .await
            .unwrap_or_else(|_| {
                tracing::error!("a push thread panicked");
                None
            });
        let status = status.unwrap_or_else(|| {
            let mut s = self
                .last()
                .get(room)
                .cloned()
                .unwrap_or_else(|| worker::empty_status(room));
            s.state = PushState::Failed;
            s
        });
        self.last().insert(room.clone(), status.clone());
        status
    }

    async fn finish(&self, room: &RoomId, reason: &str) {
        let running = self.take(room);
        if let Some(mut running) = running {
            running.push.stop(reason);
            self.end(room, running).await;
        }
    }

    /// Stops the push when the room is dismissed, and files its status when it fails alone.
    fn watch(self: &Arc<Self>, room: RoomId, mut events: broadcast::Receiver<crate::hub::Frame>) {
        let pushes = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            loop {
                let dismissed = tokio::select! {
                    e = events.recv() => match e {
                        Ok(frame) => matches!(frame.event.kind, EventKind::Dismissed),
                        Err(broadcast::error::RecvError::Lagged(_)) => false,
                        Err(broadcast::error::RecvError::Closed) => true,
                    },
                    _ = every.tick() => false,
                };
                let Some(pushes) = pushes.upgrade() else {
                    return;
                };
                let finished = match pushes.running().get(&room) {
                    None => return, // stopped by request
                    Some(r) => r.push.is_finished(),
                };
                if dismissed || finished {
                    let running = pushes.take(&room);
                    if let Some(mut running) = running {
                        if dismissed {
                            running.push.stop("dismissed");
                        }
                        pushes.end(&room, running).await;
                    }
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_host_port_and_application() {
        let t = parse_target("rtmp://cdn.example.com/live", "k").expect("valid");
        assert_eq!(
            (t.host.as_str(), t.port, t.app.as_str()),
            ("cdn.example.com", 1935, "live")
        );
        let t = parse_target("RTMP://10.0.0.1:1936/app/sub/?auth=x", "k").expect("valid");
        assert_eq!((t.port, t.app.as_str()), (1936, "app/sub/?auth=x"));
        let t = parse_target("rtmp://[::1]:1935/live/", "k").expect("valid");
        assert_eq!(
            (t.host.as_str(), t.app.as_str(), t.tc_url.as_str()),
            ("::1", "live", "rtmp://[::1]:1935/live")
        );
        for bad in [
            "rtmp://[::1/x",
            "rtmp://h:x/a",
            "rtmp://:1935/a",
            "rtmps://h/a",
            "rtmp://h",
            "rtmp://h/",
        ] {
            assert!(
                matches!(parse_target(bad, "k"), Err(PushError::InvalidUrl(_))),
                "{bad}"
            );
        }
        // Multi-byte input never splits inside a character.
        assert!(parse_target("rtmp://é/ü", "ключ").is_ok());
        assert!(parse_target("ŕtmp://h/a", "k").is_err());
    }
}
