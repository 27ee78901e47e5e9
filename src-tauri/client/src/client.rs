//! [`RoomClient`]: one member's session — the WebSocket, the peer connection, publishing,
//! subscribing and recovery — driven by one task.

use std::collections::HashMap;
use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use onmic_audio::opus::OpusPacket;
use onmic_audio::playout::{RemoteInput, RemoteStream};
use onmic_room::RoomMode;
use onmic_room::protocol::{CloseReason, ServerMessage, SpeakerVolume};
use onmic_room::state::EventKind;
use onmic_room::{Action, Event, LostSeat, Role, RoomState, SeatIndex, Uid};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::error::ClientError;
use crate::link_stats::{LINK_STATS_INTERVAL, LinkSample};
use crate::media::{self, Media, PcEvent, PublishTarget};
use crate::wire::{self, Frame, ServerUrl};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How to reach the room.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The room server, `http://host:port`.
    pub server_url: String,
    /// The room id.
    pub room: String,
    /// A room token for this member (`docs/protocol.md`, Tokens).
    pub token: String,
    /// The minimum jitter buffering per remote, in packets (20 ms each): playout starts once this
    /// many are in, and the engine's adaptive target (which follows the measured arrival jitter)
    /// never goes below `jitter_depth − 1` packets of slack. Default 1: the target follows the
    /// network down to the latency floor (see `docs/client.md`, Mouth-to-ear latency).
    pub jitter_depth: usize,
    /// The local address for media; `None` picks the address that routes to the server.
    pub local_ip: Option<IpAddr>,
    /// Publish only while the room says this member holds an unmuted seat. Always `true` in the
    /// app; `false` exists only so tests can check the server's own enforcement.
    pub publish_gate: bool,
    /// Recovery timings.
    pub reconnect: ReconnectPolicy,
}

impl ClientConfig {
    /// A configuration with the defaults.
    pub fn new(
        server_url: impl Into<String>,
        room: impl Into<String>,
        token: impl Into<String>,
    ) -> ClientConfig {
        ClientConfig {
            server_url: server_url.into(),
            room: room.into(),
            token: token.into(),
            jitter_depth: 1,
            local_ip: None,
            publish_gate: true,
            reconnect: ReconnectPolicy::default(),
        }
    }
}

/// When the client decides a connection is gone and how often it tries again.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    /// No frame from the server for this long: the WebSocket is dead, rejoin.
    pub liveness_timeout: Duration,
    /// ICE without answers for this long: the media is `Disconnected` (it may come back).
    pub ice_disconnected: Duration,
    /// ICE without answers for this long: `Failed`, restart the media.
    pub ice_failed: Duration,
    /// Wait between failed attempts (media restart or rejoin).
    pub retry_interval: Duration,
    /// Give up rejoining after this long (`None`: keep trying until closed).
    pub give_up_after: Option<Duration>,
}

impl Default for ReconnectPolicy {
    fn default() -> ReconnectPolicy {
        ReconnectPolicy {
            liveness_timeout: Duration::from_secs(15),
            ice_disconnected: Duration::from_secs(2),
            ice_failed: Duration::from_secs(6),
            retry_interval: Duration::from_secs(1),
            give_up_after: None,
        }
    }
}

/// The session's connection state, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Joined; media negotiating.
    Connecting,
    /// Joined and media connected.
    Connected,
    /// The WebSocket is up but the media path is lost; ICE may recover, else the media is
    /// restarted (new offer).
    MediaReconnecting,
    /// The WebSocket is lost: rejoining (new WebSocket, new peer connection). Publishing is
    /// stopped until the new `joined` says what this member still holds.
    Rejoining,
    /// Ended for good (see [`ClientEvent::Closed`]).
    Closed,
}

/// What the client tells the application.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The connection state changed.
    State(ConnectionState),
    /// Joined (first time or after a rejoin), with the room as the server sent it.
    Joined {
        /// This member's role.
        role: Role,
        /// Whether this is a rejoin.
        rejoin: bool,
    },
    /// This member lost its seat while away (no ghost mic: publishing stays off).
    LostSeat(LostSeat),
    /// A room event, already applied to [`RoomClient::room`].
    Room(Event),
    /// The room state was replaced by a snapshot.
    Snapshot,
    /// The loss the SFU reports for this member's outgoing audio (RTCP receiver reports), in
    /// percent, when it changes: feed it to the engine (`Control::SetExpectedLoss`) so Opus FEC
    /// carries as much redundancy as the path needs.
    SendLoss(u8),
    /// A reading of the peer connection's statistics, every [`LINK_STATS_INTERVAL`] while the
    /// media is connected.
    Link(Box<LinkSample>),
    /// Who is speaking and how loud (the server's volume indication, every 500 ms while
    /// someone speaks): seat ripples.
    Volumes(Vec<SpeakerVolume>),
    /// The session ended.
    Closed {
        /// The server's reason, if it gave one.
        reason: Option<CloseReason>,
        /// Detail.
        message: String,
    },
}

/// A remote member's audio appears or goes (feed [`RemoteChange::Added`]'s stream to the
/// engine with `Control::AddRemote`, remove it with `Control::RemoveRemote(key)`).
#[derive(Debug)]
pub enum RemoteChange {
    /// A member started to be heard on a seat.
    Added {
        /// Who.
        uid: Uid,
        /// Their seat.
        seat: usize,
        /// The engine's id for it ([`remote_key`]).
        key: u64,
        /// Decoded audio (jitter buffer + PLC/FEC), pulled by the engine's playout.
        stream: Box<RemoteStream>,
    },
    /// That member's stream ended (left the seat, or the connection was replaced).
    Removed {
        /// Who.
        uid: Uid,
        /// The engine's id.
        key: u64,
    },
}

/// The engine's `u64` id of a remote member (FNV-1a of the uid).
pub fn remote_key(uid: &Uid) -> u64 {
    uid.as_str().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Counters.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Opus packets written to the peer connection.
    pub packets_sent: AtomicU64,
    /// Packets not sent because this member may not publish now.
    pub packets_withheld: AtomicU64,
    /// Packets dropped: no connection, queue full, or the write failed.
    pub packets_dropped: AtomicU64,
    /// RTP packets received and handed to a remote's jitter buffer.
    pub packets_received: AtomicU64,
    /// RTP packets on a slot whose seat is empty in this client's view, or unusable.
    pub packets_unattributed: AtomicU64,
    /// Server frames that could not be read.
    pub malformed_frames: AtomicU64,
    /// Media restarts (new offer on the same WebSocket).
    pub media_restarts: AtomicU64,
    /// Full rejoins (new WebSocket and peer connection).
    pub rejoins: AtomicU64,
    received_by: Mutex<HashMap<Uid, u64>>,
}

impl ClientStats {
    /// Packets received from one member.
    pub fn received_from(&self, uid: &Uid) -> u64 {
        self.received_by
            .lock()
            .map(|m| m.get(uid).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

struct SlotSink {
    uid: Uid,
    key: u64,
    input: RemoteInput,
}

struct Shared {
    me: Uid,
    room: RoomState,
    /// The current WebSocket has been joined and its `joined` applied.
    in_session: bool,
    publish_gate: bool,
    target: Option<PublishTarget>,
    sinks: Vec<Option<SlotSink>>,
}

impl Shared {
    fn may_publish(&self) -> bool {
        if !self.in_session {
            return false;
        }
        if !self.publish_gate {
            return true;
        }
        may_publish(&self.room, &self.me, now_ms())
    }
}

/// The room's rule for "may this member publish now" (mirrors `onmic_room::Room::may_publish`,
/// evaluated on the client's copy of the state).
pub fn may_publish(room: &RoomState, uid: &Uid, now_ms: u64) -> bool {
    let Some(m) = room.members.get(uid) else {
        return false;
    };
    let Some(seat) = room.seat_of(uid) else {
        return false;
    };
    !room.dismissed
        && !seat.host_muted
        && !seat.self_muted
        && m.publish_until.is_some_and(|t| now_ms < t.0)
        && (room.settings.mode != RoomMode::FloorControl || room.floor.contains(uid))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

enum Command {
    Request(serde_json::Value, oneshot::Sender<Result<u64, ClientError>>),
    Close(oneshot::Sender<()>),
}

/// Sends Opus packets for this member; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<(Vec<u8>, u32)>,
    shared: Arc<Mutex<Shared>>,
    stats: Arc<ClientStats>,
}

impl Publisher {
    /// Queues one Opus packet with its RTP timestamp (48 kHz clock). Returns `false` when it was
    /// not queued: this member may not publish now (counted as withheld) or the queue is full.
    pub fn send(&self, payload: &[u8], rtp_timestamp: u32) -> bool {
        let allowed = self.shared.lock().map(|s| s.may_publish()).unwrap_or(false);
        if !allowed {
            self.stats.packets_withheld.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if self.tx.try_send((payload.to_vec(), rtp_timestamp)).is_err() {
            self.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Publishes the engine's packets (`EngineHandle.packets`) until the client stops: polls the
    /// ring every 2 ms on a task (the DSP thread only pushes into the ring).
    pub fn spawn_from_engine(self, mut packets: rtrb::Consumer<OpusPacket>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            loop {
                tick.tick().await;
                while let Ok(p) = packets.pop() {
                    if p.is_dtx() {
                        continue;
                    }
                    self.send(p.payload(), p.rtp_timestamp);
                }
                if self.tx.is_closed() {
                    return;
                }
            }
        })
    }
}

/// One member's live session in a room.
pub struct RoomClient {
    cmd: mpsc::UnboundedSender<Command>,
    shared: Arc<Mutex<Shared>>,
    stats: Arc<ClientStats>,
    publish_tx: mpsc::Sender<(Vec<u8>, u32)>,
    /// Room and connection events, in order. Drain it (it is unbounded).
    pub events: mpsc::UnboundedReceiver<ClientEvent>,
    /// Remote members' decoded audio appearing and going. Drain it (it is unbounded).
    pub remotes: mpsc::UnboundedReceiver<RemoteChange>,
    task: Option<JoinHandle<()>>,
}

impl RoomClient {
    /// Joins the room over the WebSocket and negotiates media with the SFU. Returns once joined;
    /// media connects in the background ([`ConnectionState::Connected`] follows).
    pub async fn connect(config: ClientConfig) -> Result<RoomClient, ClientError> {
        let server = wire::server_url(&config.server_url)?;
        let local_ip = match config.local_ip {
            Some(ip) => ip,
            None => route_to(&server)?,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| ClientError::Media(format!("HTTP client: {e}")))?;
        let (ws, joined) = join(&server, &config).await?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let (remotes_tx, remotes) = mpsc::unbounded_channel();
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (publish_tx, publish_rx) = mpsc::channel(64);
        let (pc_tx, pc_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(ClientStats::default());
        let shared = Arc::new(Mutex::new(Shared {
            me: joined.uid.clone(),
            room: joined.snapshot.clone(),
            in_session: true,
            publish_gate: config.publish_gate,
            target: None,
            sinks: Vec::new(),
        }));
        let mut actor = Actor {
            config,
            server,
            local_ip,
            http,
            shared: shared.clone(),
            stats: stats.clone(),
            events: events_tx,
            remotes: remotes_tx,
            pc_tx,
            pc_rx,
            cmd_rx,
            media: None,
            generation: 0,
            next_id: 2,
            pending: HashMap::new(),
            media_retry_at: Some(Instant::now()),
            media_connected: false,
            state: ConnectionState::Connecting,
            readers: Vec::new(),
            send_loss: None,
            last_stats: Instant::now(),
        };
        actor.emit(ClientEvent::State(ConnectionState::Connecting));
        actor.on_joined(&joined, false);
        let publisher = tokio::spawn(publish_loop(publish_rx, shared.clone(), stats.clone()));
        let task = tokio::spawn(async move {
            actor.run(ws).await;
            publisher.abort();
        });
        Ok(RoomClient {
            cmd,
            shared,
            stats,
            publish_tx,
            events,
            remotes,
            task: Some(task),
        })
    }

    /// This member's uid.
    pub fn uid(&self) -> Uid {
        self.shared
            .lock()
            .map(|s| s.me.clone())
            .unwrap_or_else(|e| e.into_inner().me.clone())
    }

    /// The room as this client knows it.
    pub fn room(&self) -> RoomState {
        self.shared
            .lock()
            .map(|s| s.room.clone())
            .unwrap_or_else(|e| e.into_inner().room.clone())
    }

    /// Whether this member may publish now (joined, on an unmuted seat).
    pub fn may_publish(&self) -> bool {
        self.shared.lock().map(|s| s.may_publish()).unwrap_or(false)
    }

    /// The counters.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// A handle to publish Opus packets.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            tx: self.publish_tx.clone(),
            shared: self.shared.clone(),
            stats: self.stats.clone(),
        }
    }

    /// Sends a request (`{"type": ..., fields}` of `docs/protocol.md`, without `id`) and waits
    /// for its reply: the room version on `ok`.
    pub async fn request(&self, mut body: serde_json::Value) -> Result<u64, ClientError> {
        if let Some(obj) = body.as_object_mut() {
            obj.remove("id");
        }
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Request(body, tx))
            .map_err(|_| ClientError::Stopped)?;
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Stopped),
            Err(_) => Err(ClientError::Timeout(Duration::from_secs(10))),
        }
    }

    /// Sends one of the room's own request types ([`Action`], serialised by `onmic-room`, never
    /// built by hand here) and waits for its reply: the room version on `ok`.
    pub async fn act(&self, action: Action) -> Result<u64, ClientError> {
        let body = serde_json::to_value(&action)
            .map_err(|e| ClientError::Malformed(format!("a request that cannot be sent: {e}")))?;
        self.request(body).await
    }

    /// `take_seat` (owner: seat 0 or a regular seat; admin: a regular seat).
    pub async fn take_seat(&self, seat: u16) -> Result<u64, ClientError> {
        self.act(Action::TakeSeat {
            seat: SeatIndex(seat),
        })
        .await
    }

    /// `apply` for a seat (`None`: any free seat).
    pub async fn apply(&self, seat: Option<u16>) -> Result<u64, ClientError> {
        self.act(Action::Apply {
            seat: seat.map(SeatIndex),
        })
        .await
    }

    /// `approve` an applicant (owner, admin).
    pub async fn approve(&self, uid: &str) -> Result<u64, ClientError> {
        self.act(Action::Approve { uid: uid.into() }).await
    }

    /// `leave_seat`.
    pub async fn leave_seat(&self) -> Result<u64, ClientError> {
        self.act(Action::LeaveSeat).await
    }

    /// `mute_self` / `unmute_self`.
    pub async fn set_self_muted(&self, muted: bool) -> Result<u64, ClientError> {
        self.act(if muted {
            Action::MuteSelf
        } else {
            Action::UnmuteSelf
        })
        .await
    }

    /// Leaves the room (`leave`), closes the peer connection and stops.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.act(Action::Leave)).await;
        self.stop().await;
    }

    /// Stops without `leave` (the server keeps the member until its presence timeout).
    pub async fn stop(&mut self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for RoomClient {
    fn drop(&mut self) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.cmd.send(Command::Close(tx));
    }
}

/// The local address the OS would use to reach the server (no packet is sent).
fn route_to(server: &ServerUrl) -> Result<IpAddr, ClientError> {
    let target: std::net::SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&server.authority)
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ClientError::Unreachable {
            url: server.http.clone(),
            detail: "the host name does not resolve".into(),
        })?;
    let any: IpAddr = if target.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind((any, 0)).and_then(|s| {
        s.connect(target)?;
        s.local_addr()
    });
    socket
        .map(|a| a.ip())
        .map_err(|e| ClientError::Unreachable {
            url: server.http.clone(),
            detail: format!("no route: {e}"),
        })
}

struct Joined {
    uid: Uid,
    role: Role,
    snapshot: RoomState,
    lost_seat: Option<LostSeat>,
    heartbeat_ms: u64,
}

/// Opens the WebSocket and joins; returns the socket and the `joined` reply.
async fn join(server: &ServerUrl, config: &ClientConfig) -> Result<(Ws, Joined), ClientError> {
    let limit = Duration::from_secs(5);
    let unreachable = |e: String| ClientError::Unreachable {
        url: server.ws.clone(),
        detail: e,
    };
    let (mut ws, _) = tokio::time::timeout(limit, tokio_tungstenite::connect_async(&server.ws))
        .await
        .map_err(|_| ClientError::Timeout(limit))?
        .map_err(|e| unreachable(e.to_string()))?;
    let join = json!({ "id": 1, "type": "join", "room": config.room, "token": config.token });
    ws.send(Message::text(join.to_string()))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .map_err(|_| ClientError::Timeout(limit))?;
        let text = match msg {
            None => return Err(unreachable("the server closed the connection".into())),
            Some(Err(e)) => return Err(unreachable(e.to_string())),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) => {
                return Err(unreachable("the server closed the connection".into()));
            }
            Some(Ok(_)) => continue,
        };
        match wire::parse_frame(&text)? {
            Frame::Unknown(_) => continue,
            Frame::Message(m) => match *m {
                ServerMessage::Joined {
                    uid,
                    role,
                    snapshot,
                    lost_seat,
                    heartbeat_ms,
                    ..
                } => {
                    return Ok((
                        ws,
                        Joined {
                            uid,
                            role,
                            snapshot,
                            lost_seat,
                            heartbeat_ms,
                        },
                    ));
                }
                ServerMessage::Error { code, message, .. } => {
                    return Err(ClientError::Refused { code, message });
                }
                ServerMessage::Closing { reason, message } => {
                    return Err(ClientError::Closed {
                        reason: Some(reason),
                        message,
                    });
                }
                other => {
                    return Err(ClientError::Malformed(format!(
                        "expected `joined` after `join`, got {other:?}"
                    )));
                }
            },
        }
    }
}

/// Refusals after which trying again cannot help.
fn is_final(e: &ClientError) -> bool {
    match e {
        ClientError::Refused { code, .. } => {
            code.starts_with("token_")
                || matches!(
                    code.as_str(),
                    "banned" | "no_such_room" | "room_dismissed" | "not_member"
                )
        }
        ClientError::Closed { reason, .. } => !matches!(
            reason,
            Some(CloseReason::Timeout) | Some(CloseReason::ServerShutdown) | None
        ),
        ClientError::BadServerUrl(_) | ClientError::Malformed(_) => true,
        _ => false,
    }
}

/// Writes queued packets to the current connection's track.
async fn publish_loop(
    mut rx: mpsc::Receiver<(Vec<u8>, u32)>,
    shared: Arc<Mutex<Shared>>,
    stats: Arc<ClientStats>,
) {
    let mut sequence: u16 = media::random_u32() as u16;
    let mut level = LevelMeter::new();
    while let Some((payload, ts)) = rx.recv().await {
        // Checked again here: the seat may have gone while the packet waited.
        let (allowed, target) = match shared.lock() {
            Ok(s) => (s.may_publish(), s.target.clone()),
            Err(_) => return,
        };
        if !allowed {
            stats.packets_withheld.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some(target) = target else {
            stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        sequence = sequence.wrapping_add(1);
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: target.payload_type,
                sequence_number: sequence,
                timestamp: ts,
                ssrc: target.ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::from(payload),
        };
        let (dbov, voice) = level.measure(&packet.payload);
        let ext = rtc::rtp::extension::HeaderExtension::AudioLevel(
            rtc::rtp::extension::audio_level_extension::AudioLevelExtension { level: dbov, voice },
        );
        match target.track.write_rtp_with_extensions(packet, &[ext]).await {
            Ok(()) => stats.packets_sent.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.packets_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The RFC 6464 level of this member's own packets, for the SFU's speaking detection and volume
/// indication: the packet is decoded again (~20 µs per 20 ms packet) because the engine's packet
/// ring carries no level.
struct LevelMeter {
    decoder: Option<onmic_audio::opus::OpusDecoder>,
    pcm: Vec<f32>,
}

impl LevelMeter {
    fn new() -> LevelMeter {
        LevelMeter {
            decoder: onmic_audio::opus::OpusDecoder::new().ok(),
            pcm: vec![0.0; onmic_audio::opus::MAX_DECODE_FRAMES * 2],
        }
    }

    /// Level in −dBov (0 loudest, 127 silence) and a voice-activity flag (louder than −50 dBov).
    fn measure(&mut self, payload: &[u8]) -> (u8, bool) {
        let Some(d) = self.decoder.as_mut() else {
            return (127, false);
        };
        let frames = d.decode(payload, &mut self.pcm).unwrap_or(0);
        let n = (frames * 2).min(self.pcm.len());
        if n == 0 {
            return (127, false);
        }
        let power = self.pcm[..n].iter().map(|x| x * x).sum::<f32>() / n as f32;
        let dbov = if power <= 0.0 {
            127.0
        } else {
            (-10.0 * power.log10()).clamp(0.0, 127.0)
        };
        (dbov.round() as u8, dbov <= 50.0)
    }
}

enum End {
    /// The WebSocket is gone; rejoin.
    Lost(String),
    /// The session ended for good.
    Final(Option<CloseReason>, String),
    /// The application closed the client.
    Stopped(Option<oneshot::Sender<()>>),
}

struct Actor {
    config: ClientConfig,
    server: ServerUrl,
    local_ip: IpAddr,
    http: reqwest::Client,
    shared: Arc<Mutex<Shared>>,
    stats: Arc<ClientStats>,
    events: mpsc::UnboundedSender<ClientEvent>,
    remotes: mpsc::UnboundedSender<RemoteChange>,
    pc_tx: mpsc::UnboundedSender<PcEvent>,
    pc_rx: mpsc::UnboundedReceiver<PcEvent>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    media: Option<Media>,
    generation: u64,
    next_id: u64,
    pending: HashMap<u64, oneshot::Sender<Result<u64, ClientError>>>,
    media_retry_at: Option<Instant>,
    media_connected: bool,
    state: ConnectionState,
    readers: Vec<JoinHandle<()>>,
    send_loss: Option<u8>,
    last_stats: Instant,
}

impl Actor {
    fn emit(&self, e: ClientEvent) {
        let _ = self.events.send(e);
    }

    fn set_state(&mut self, s: ConnectionState) {
        if self.state != s {
            self.state = s;
            self.emit(ClientEvent::State(s));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_joined(&mut self, j: &Joined, rejoin: bool) {
        {
            let mut s = self.lock();
            s.me = j.uid.clone();
            s.room = j.snapshot.clone();
            s.in_session = true;
        }
        self.emit(ClientEvent::Joined {
            role: j.role,
            rejoin,
        });
        if let Some(lost) = &j.lost_seat {
            self.emit(ClientEvent::LostSeat(lost.clone()));
        }
        self.drop_stale_sinks();
    }

    async fn run(&mut self, mut ws: Ws) {
        let mut heartbeat_ms = 10_000;
        let started = Instant::now();
        loop {
            let end = self.serve(&mut ws, heartbeat_ms).await;
            let _ = ws.close(None).await;
            let (reason, message) = match end {
                End::Stopped(done) => {
                    self.teardown_media().await;
                    self.set_state(ConnectionState::Closed);
                    self.emit(ClientEvent::Closed {
                        reason: None,
                        message: "closed by the application".into(),
                    });
                    if let Some(d) = done {
                        let _ = d.send(());
                    }
                    return;
                }
                End::Final(reason, message) => (reason, message),
                End::Lost(why) => {
                    tracing::info!(%why, "room connection lost; rejoining");
                    self.lock().in_session = false;
                    self.fail_pending("the connection to the room server was lost");
                    self.teardown_media().await;
                    self.set_state(ConnectionState::Rejoining);
                    match self.rejoin(started).await {
                        Ok((new_ws, hb)) => {
                            ws = new_ws;
                            heartbeat_ms = hb;
                            continue;
                        }
                        Err(End::Stopped(done)) => {
                            self.set_state(ConnectionState::Closed);
                            if let Some(d) = done {
                                let _ = d.send(());
                            }
                            return;
                        }
                        Err(End::Final(reason, message)) => (reason, message),
                        Err(End::Lost(m)) => (None, m),
                    }
                }
            };
            self.lock().in_session = false;
            self.teardown_media().await;
            self.fail_pending("the session ended");
            self.set_state(ConnectionState::Closed);
            self.emit(ClientEvent::Closed { reason, message });
            return;
        }
    }

    fn fail_pending(&mut self, why: &str) {
        for (_, tx) in self.pending.drain() {
            let _ = tx.send(Err(ClientError::Unreachable {
                url: self.server.ws.clone(),
                detail: why.to_owned(),
            }));
        }
    }

    async fn rejoin(&mut self, started: Instant) -> Result<(Ws, u64), End> {
        let give_up = self
            .config
            .reconnect
            .give_up_after
            .map(|d| Instant::now() + d);
        loop {
            // Requests made meanwhile fail at once: nobody can answer them now.
            while let Ok(c) = self.cmd_rx.try_recv() {
                match c {
                    Command::Request(_, tx) => {
                        let _ = tx.send(Err(ClientError::Unreachable {
                            url: self.server.ws.clone(),
                            detail: "reconnecting to the room".into(),
                        }));
                    }
                    Command::Close(done) => return Err(End::Stopped(Some(done))),
                }
            }
            match join(&self.server, &self.config).await {
                Ok((ws, joined)) => {
                    self.stats.rejoins.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        after = ?started.elapsed(),
                        lost_seat = joined.lost_seat.is_some(),
                        "rejoined the room"
                    );
                    self.on_joined(&joined, true);
                    self.media_retry_at = Some(Instant::now());
                    self.set_state(ConnectionState::Connecting);
                    return Ok((ws, joined.heartbeat_ms));
                }
                Err(e) if is_final(&e) => {
                    let reason = match &e {
                        ClientError::Closed { reason, .. } => *reason,
                        _ => None,
                    };
                    return Err(End::Final(reason, e.to_string()));
                }
                Err(e) => tracing::debug!(%e, "rejoin attempt failed"),
            }
            if give_up.is_some_and(|t| Instant::now() >= t) {
                return Err(End::Final(None, "gave up reconnecting to the room".into()));
            }
            tokio::time::sleep(self.config.reconnect.retry_interval).await;
        }
    }

    async fn teardown_media(&mut self) {
        for r in self.readers.drain(..) {
            r.abort();
        }
        let sinks: Vec<SlotSink> = {
            let mut s = self.lock();
            s.target = None;
            s.sinks.drain(..).flatten().collect()
        };
        for sink in sinks {
            let _ = self.remotes.send(RemoteChange::Removed {
                uid: sink.uid,
                key: sink.key,
            });
        }
        if let Some(m) = self.media.take() {
            m.close().await;
        }
        self.media_connected = false;
    }

    async fn restart_media(&mut self) {
        self.teardown_media().await;
        self.generation += 1;
        let slots = self.lock().room.seats.len();
        let opened = media::open(media::Offer {
            http: &self.http,
            server: &self.server,
            room: &self.config.room,
            token: &self.config.token,
            local_ip: self.local_ip,
            slots,
            generation: self.generation,
            ice_disconnected: self.config.reconnect.ice_disconnected,
            ice_failed: self.config.reconnect.ice_failed,
            events: self.pc_tx.clone(),
        })
        .await;
        match opened {
            Ok(m) => {
                {
                    let mut s = self.lock();
                    s.target = Some(m.target.clone());
                    s.sinks = (0..m.slot_mids.len()).map(|_| None).collect();
                }
                self.media = Some(m);
                self.media_retry_at = None;
            }
            Err(e) => {
                tracing::debug!(%e, "media (re)start failed; retrying");
                self.media_retry_at = Some(Instant::now() + self.config.reconnect.retry_interval);
            }
        }
    }

    async fn send(&mut self, ws: &mut Ws, body: serde_json::Value) -> Result<(), End> {
        ws.send(Message::text(body.to_string()))
            .await
            .map_err(|e| End::Lost(format!("sending: {e}")))
    }

    async fn serve(&mut self, ws: &mut Ws, heartbeat_ms: u64) -> End {
        let beat = Duration::from_millis((heartbeat_ms / 2).clamp(500, 2_000));
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut last_heard = Instant::now();
        let mut last_beat = Instant::now();
        loop {
            tokio::select! {
                frame = ws.next() => {
                    last_heard = Instant::now();
                    let text = match frame {
                        None => return End::Lost("the server closed the connection".into()),
                        Some(Err(e)) => return End::Lost(e.to_string()),
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(_))) => {
                            return End::Lost("the server closed the connection".into())
                        }
                        Some(Ok(_)) => continue,
                    };
                    match wire::parse_frame(&text) {
                        Ok(Frame::Message(m)) => {
                            if let Some(end) = self.on_message(ws, *m).await {
                                return end;
                            }
                        }
                        Ok(Frame::Unknown(kind)) => tracing::debug!(%kind, "unknown server message ignored"),
                        Err(e) => {
                            self.stats.malformed_frames.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%e, "unreadable server frame ignored");
                        }
                    }
                }
                ev = self.pc_rx.recv() => {
                    if let Some(ev) = ev {
                        self.on_pc_event(ev).await;
                    }
                }
                cmd = self.cmd_rx.recv() => match cmd {
                    None => return End::Stopped(None),
                    Some(Command::Close(done)) => return End::Stopped(Some(done)),
                    Some(Command::Request(mut body, tx)) => {
                        let id = self.next_id;
                        self.next_id += 1;
                        body["id"] = json!(id);
                        self.pending.insert(id, tx);
                        if let Err(end) = self.send(ws, body).await {
                            return end;
                        }
                    }
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now.duration_since(last_heard) > self.config.reconnect.liveness_timeout {
                        return End::Lost("no answer from the server".into());
                    }
                    if now.duration_since(last_beat) >= beat {
                        last_beat = now;
                        let id = self.next_id;
                        self.next_id += 1;
                        if let Err(end) = self.send(ws, json!({"id": id, "type": "heartbeat"})).await {
                            return end;
                        }
                    }
                    if self.media_connected && now.duration_since(self.last_stats) >= LINK_STATS_INTERVAL {
                        self.last_stats = now;
                        self.poll_link_stats().await;
                    }
                    if self.media_retry_at.is_some_and(|t| now >= t) {
                        if self.media.is_some() {
                            self.stats.media_restarts.fetch_add(1, Ordering::Relaxed);
                        }
                        self.restart_media().await;
                    }
                }
            }
        }
    }

    /// Reads the peer connection's statistics: reports the loss the SFU's receiver reports give
    /// for this member's audio (for FEC) and hands the whole reading to the application.
    async fn poll_link_stats(&mut self) {
        let Some(m) = &self.media else { return };
        let now = Instant::now();
        let report =
            m.pc.get_stats(now, webrtc::peer_connection::StatsSelector::None)
                .await;
        let mut sample = LinkSample::from_report(now, &report, m.target.ssrc, |mid| {
            m.slot_mids.iter().position(|x| x == mid)
        });
        // webrtc-rs 0.21 leaves `remote-inbound-rtp` at its defaults: the reports come from
        // the forwarder instead (`rr_forward.rs`).
        if let Ok(latest) = m.reports.lock()
            && latest.is_some()
        {
            sample.reported = *latest;
        }
        if let Some(r) = sample.reported {
            let percent = (r.fraction_lost * 100.0).round() as u8;
            if self.send_loss != Some(percent) {
                self.send_loss = Some(percent);
                self.emit(ClientEvent::SendLoss(percent));
            }
        }
        self.emit(ClientEvent::Link(Box::new(sample)));
    }

    async fn on_message(&mut self, ws: &mut Ws, m: ServerMessage) -> Option<End> {
        match m {
            ServerMessage::Ok { id, version } => {
                if let Some(tx) = id.and_then(|id| self.pending.remove(&id)) {
                    let _ = tx.send(Ok(version));
                }
            }
            ServerMessage::Error { id, code, message } => {
                match id.and_then(|id| self.pending.remove(&id)) {
                    Some(tx) => {
                        let _ = tx.send(Err(ClientError::Refused { code, message }));
                    }
                    None => tracing::debug!(%code, %message, "server error"),
                }
            }
            ServerMessage::Pong { version, .. } => {
                let behind = self.lock().room.version < version;
                if behind && let Err(end) = self.send(ws, json!({"type": "snapshot"})).await {
                    return Some(end);
                }
            }
            ServerMessage::Snapshot { snapshot, .. } => {
                self.lock().room = snapshot;
                self.drop_stale_sinks();
                self.emit(ClientEvent::Snapshot);
            }
            ServerMessage::Event { event } => {
                let gap = {
                    let mut s = self.lock();
                    if event.version == s.room.version + 1 {
                        s.room.apply(&event);
                        false
                    } else {
                        event.version > s.room.version
                    }
                };
                if gap {
                    if let Err(end) = self.send(ws, json!({"type": "snapshot"})).await {
                        return Some(end);
                    }
                } else {
                    if matches!(event.kind, EventKind::SeatChanged { .. }) {
                        self.drop_stale_sinks();
                    }
                    self.emit(ClientEvent::Room(event));
                }
            }
            ServerMessage::Closing { reason, message } => {
                return Some(match reason {
                    CloseReason::Timeout | CloseReason::ServerShutdown => {
                        End::Lost(format!("server closing: {reason:?}"))
                    }
                    _ => End::Final(Some(reason), message),
                });
            }
            ServerMessage::VolumeIndication { speakers } => {
                self.emit(ClientEvent::Volumes(speakers));
            }
            ServerMessage::Joined { .. } => {
                self.stats.malformed_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("a second `joined` on one connection ignored");
            }
            _ => {}
        }
        None
    }

    /// Ends the remote streams whose seat no longer holds the member they were made for.
    fn drop_stale_sinks(&mut self) {
        let gone: Vec<SlotSink> = {
            let mut s = self.lock();
            let Shared { room, sinks, .. } = &mut *s;
            sinks
                .iter_mut()
                .enumerate()
                .filter_map(|(i, slot)| {
                    let stale = slot.as_ref().is_some_and(|sink| {
                        room.seats.get(i).and_then(|seat| seat.occupant()) != Some(&sink.uid)
                    });
                    if stale { slot.take() } else { None }
                })
                .collect()
        };
        for sink in gone {
            let _ = self.remotes.send(RemoteChange::Removed {
                uid: sink.uid,
                key: sink.key,
            });
        }
    }

    async fn on_pc_event(&mut self, ev: PcEvent) {
        match ev {
            PcEvent::State(g, state) if g == self.generation => match state {
                RTCPeerConnectionState::Connected => {
                    self.media_connected = true;
                    self.set_state(ConnectionState::Connected);
                }
                RTCPeerConnectionState::Disconnected => {
                    self.set_state(ConnectionState::MediaReconnecting);
                }
                RTCPeerConnectionState::Failed => {
                    self.set_state(ConnectionState::MediaReconnecting);
                    self.media_retry_at = Some(Instant::now());
                }
                _ => {}
            },
            PcEvent::Track(g, track) if g == self.generation => {
                let Some(media) = &self.media else { return };
                let Some(slot) = media.slot_of(&track).await else {
                    tracing::warn!("a remote track on an unknown m-line ignored");
                    return;
                };
                let reader = tokio::spawn(read_track(
                    track,
                    slot,
                    self.shared.clone(),
                    self.stats.clone(),
                    self.remotes.clone(),
                    self.config.jitter_depth,
                ));
                self.readers.push(reader);
            }
            _ => {}
        }
    }
}

/// Hands one slot's RTP to the remote stream of whoever sits on that seat now.
async fn read_track(
    track: Arc<dyn TrackRemote>,
    slot: usize,
    shared: Arc<Mutex<Shared>>,
    stats: Arc<ClientStats>,
    remotes: mpsc::UnboundedSender<RemoteChange>,
    jitter_depth: usize,
) {
    while let Some(ev) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(p) = ev else {
            continue;
        };
        if p.payload.is_empty() {
            stats.packets_unattributed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        let occupant = s
            .room
            .seats
            .get(slot)
            .and_then(|seat| seat.occupant())
            .filter(|uid| **uid != s.me)
            .cloned();
        let Some(uid) = occupant else {
            stats.packets_unattributed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut changes = Vec::new();
        let fresh = s
            .sinks
            .get(slot)
            .is_some_and(|sink| sink.as_ref().is_none_or(|sink| sink.uid != uid));
        if fresh {
            // One stream per member: if it moved seats, its old slot's stream ends.
            for other in s.sinks.iter_mut() {
                if other.as_ref().is_some_and(|o| o.uid == uid)
                    && let Some(o) = other.take()
                {
                    changes.push(RemoteChange::Removed {
                        uid: o.uid,
                        key: o.key,
                    });
                }
            }
            if let Some(Some(old)) = s.sinks.get_mut(slot).map(Option::take) {
                changes.push(RemoteChange::Removed {
                    uid: old.uid,
                    key: old.key,
                });
            }
            let key = remote_key(&uid);
            match RemoteStream::new(key, jitter_depth) {
                Ok((stream, input)) => {
                    s.sinks[slot] = Some(SlotSink {
                        uid: uid.clone(),
                        key,
                        input,
                    });
                    changes.push(RemoteChange::Added {
                        uid: uid.clone(),
                        seat: slot,
                        key,
                        stream: Box::new(stream),
                    });
                }
                Err(e) => tracing::error!(%e, "cannot create a decoder for a remote"),
            }
        }
        let pushed = match s.sinks.get_mut(slot).and_then(Option::as_mut) {
            Some(sink) => sink
                .input
                .push(p.header.sequence_number, p.header.timestamp, &p.payload)
                .unwrap_or(false),
            None => false,
        };
        drop(guard);
        for c in changes {
            let _ = remotes.send(c);
        }
        if pushed {
            stats.packets_received.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut m) = stats.received_by.lock() {
                *m.entry(uid).or_default() += 1;
            }
        } else {
            stats.packets_unattributed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
