//! Relay nodes for rooms bigger than one node (issue 16).
//!
//! When a room's node (its **origin**) already serves `relay_listeners` peer connections of the
//! room, the offer of a further listener (a member holding no seat) is placed on a **relay**: the
//! least-loaded other live node. The origin re-sends the offer to the relay
//! (`POST /cluster/relay/offer`, authenticated by the bridge header), the relay's SFU answers it
//! and the answer goes back to the client: the listener's media comes from the relay, its
//! signalling (WebSocket) stays on the origin (bridged as any WebSocket).
//!
//! A relay subscribes **once** per room to the origin: one WebSocket
//! (`GET /cluster/relay/link/{room}`, bridge header), over which the origin sends every packet
//! its SFU judged "forward" (the room's home shard taps it, [`RelayTap`]) with the sender's uid
//! and slot, and the relay's SFU writes each to its local listeners ([`crate::sfu::Sfu::feed`]).
//! Publishing authority stays with the origin: the relay forwards nothing its own peers send,
//! and a mute or kick on the origin stops what it sends to the relays at the next packet.
//!
//! The link's frames are binary WebSocket messages ([`LinkFrame`], `docs/cluster.md`); a frame
//! that does not parse is a clear error that closes the link (no panic), and a relay whose link
//! ends (the origin died, the room was dismissed) closes its listeners' peer connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use onmic_room::{EventKind, RoomId, Uid};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_tungstenite::tungstenite;

use super::{BRIDGE_HEADER, NodeRecord};
use crate::AppState;
use crate::rest::ApiError;
use crate::sfu::Sfu;

/// The link's layout version (the `hello` frame's).
pub const LINK_VERSION: u8 = 1;
/// Where a relay opens its link to the origin.
pub const LINK_PATH: &str = "/cluster/relay/link/{room}";
/// Where the origin places a listener's offer on a relay.
pub const OFFER_PATH: &str = "/cluster/relay/offer";
/// Packets the origin's SFU queues for the room's link task before it drops (and counts) them.
const TAP_QUEUE: usize = 1024;
/// Encoded frames buffered per link before a slow relay misses some (counted, never blocking).
const LINK_QUEUE: usize = 1024;
/// How long the origin waits for a relay's `hello`, and a relay for the origin's.
const HELLO_WITHIN: Duration = Duration::from_secs(3);
/// Why a relay closed a link whose room had no listener left here.
const IDLE: &str = "no listener left here";
/// A relay closes a link whose room has had no listener here for this many checks (1 s apart).
const IDLE_CHECKS: u32 = 3;
/// Largest link frame (an Opus packet is at most ~1,300 bytes; uids at most 255).
const MAX_FRAME: usize = 4096;

/// Frame kinds.
const KIND_AUDIO: u8 = 1;
const KIND_LEAVE: u8 = 2;
const KIND_HELLO: u8 = 3;

/// One packet the origin judged "forward", as the link carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkAudio {
    /// The sender.
    pub uid: Uid,
    /// Its slot (seat index): the receive m-line it is written to.
    pub slot: u8,
    /// The sender's RTP timestamp (48 kHz).
    pub rtp_time: u32,
    /// The RTP marker bit.
    pub marker: bool,
    /// The RFC 6464 level (`-dBov`, as str0m gives it), if the sender wrote one.
    pub audio_level: Option<i8>,
    /// The Opus payload, unchanged.
    pub payload: Arc<[u8]>,
}

/// A message on the relay link (one binary WebSocket message each).
#[derive(Debug, Clone, PartialEq)]
pub enum LinkFrame {
    /// First frame each way: the layout version and the sending node's id.
    Hello {
        /// [`LINK_VERSION`].
        version: u8,
        /// The sender's node id.
        node: String,
    },
    /// A forwarded packet (origin → relay).
    Audio(LinkAudio),
    /// The member left, was kicked or took a seat: the relay closes its peer connections
    /// (origin → relay).
    Leave {
        /// The member.
        uid: Uid,
    },
}

/// Why a link frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A message of zero bytes.
    #[error("empty frame")]
    Empty,
    /// The first byte names no frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Shorter than its header says.
    #[error("truncated {kind} frame: {len} bytes, at least {need} needed")]
    Truncated {
        /// The frame kind.
        kind: &'static str,
        /// Its length.
        len: usize,
        /// The length its header needs.
        need: usize,
    },
    /// Bytes after a complete frame that has no payload.
    #[error("{kind} frame has {extra} bytes after its end")]
    Trailing {
        /// The frame kind.
        kind: &'static str,
        /// How many.
        extra: usize,
    },
    /// A text field that is not UTF-8, or empty.
    #[error("bad {0}: empty or not UTF-8")]
    BadText(&'static str),
    /// An audio frame without payload.
    #[error("audio frame without payload")]
    NoPayload,
    /// A frame over [`MAX_FRAME`] bytes.
    #[error("frame of {0} bytes; at most {MAX_FRAME}")]
    TooLong(usize),
    /// Another layout version.
    #[error("relay link version {0}; this build speaks {LINK_VERSION}")]
    Version(u8),
    /// Not a binary message, or not the frame expected here.
    #[error("unexpected message: {0}")]
    Unexpected(String),
}

fn text<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a str, LinkError> {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.is_empty() => Ok(s),
        _ => Err(LinkError::BadText(what)),
    }
}

/// Pushes a length-prefixed (one byte) text, cut to 255 bytes on a character boundary.
fn push_text(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.push(end as u8);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

impl LinkFrame {
    /// The frame's bytes (`docs/cluster.md`, *Relays*).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            LinkFrame::Hello { version, node } => {
                let mut out = Vec::with_capacity(3 + node.len());
                out.extend_from_slice(&[KIND_HELLO, *version]);
                push_text(&mut out, node);
                out
            }
            LinkFrame::Leave { uid } => {
                let mut out = Vec::with_capacity(2 + uid.0.len());
                out.push(KIND_LEAVE);
                push_text(&mut out, &uid.0);
                out
            }
            LinkFrame::Audio(a) => {
                let mut out = Vec::with_capacity(9 + a.uid.0.len() + a.payload.len());
                let flags = u8::from(a.marker) | (u8::from(a.audio_level.is_some()) << 1);
                out.extend_from_slice(&[
                    KIND_AUDIO,
                    a.slot,
                    flags,
                    a.audio_level.unwrap_or(0) as u8,
                ]);
                out.extend_from_slice(&a.rtp_time.to_be_bytes());
                push_text(&mut out, &a.uid.0);
                out.extend_from_slice(&a.payload);
                out
            }
        }
    }

    /// Reads one frame; malformed input is an error, never a panic.
    pub fn decode(data: &[u8]) -> Result<LinkFrame, LinkError> {
        if data.len() > MAX_FRAME {
            return Err(LinkError::TooLong(data.len()));
        }
        let (&kind, rest) = data.split_first().ok_or(LinkError::Empty)?;
        let truncated = |kind, need| LinkError::Truncated {
            kind,
            len: data.len(),
            need,
        };
        // A one-byte length, then that many bytes of text, starting at `at`; returns the text
        // and where it ends.
        let field = |kind: &'static str, at: usize, what| -> Result<(&str, usize), LinkError> {
            let len = usize::from(*data.get(at).ok_or(truncated(kind, at + 1))?);
            let end = at + 1 + len;
            let bytes = data.get(at + 1..end).ok_or(truncated(kind, end))?;
            Ok((text(bytes, what)?, end))
        };
        match kind {
            KIND_HELLO => {
                let version = *rest.first().ok_or(truncated("hello", 3))?;
                let (node, end) = field("hello", 2, "node id")?;
                if end != data.len() {
                    return Err(LinkError::Trailing {
                        kind: "hello",
                        extra: data.len() - end,
                    });
                }
                Ok(LinkFrame::Hello {
                    version,
                    node: node.to_owned(),
                })
            }
            KIND_LEAVE => {
                let (uid, end) = field("leave", 1, "uid")?;
                if end != data.len() {
                    return Err(LinkError::Trailing {
                        kind: "leave",
                        extra: data.len() - end,
                    });
                }
                Ok(LinkFrame::Leave {
                    uid: Uid(uid.to_owned()),
                })
            }
            KIND_AUDIO => {
                if data.len() < 9 {
                    return Err(truncated("audio", 9));
                }
                let slot = data[1];
                let flags = data[2];
                let level = data[3] as i8;
                let rtp_time = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                let (uid, end) = field("audio", 8, "uid")?;
                let payload = &data[end..];
                if payload.is_empty() {
                    return Err(LinkError::NoPayload);
                }
                Ok(LinkFrame::Audio(LinkAudio {
                    uid: Uid(uid.to_owned()),
                    slot,
                    rtp_time,
                    marker: flags & 1 != 0,
                    audio_level: (flags & 2 != 0).then_some(level),
                    payload: payload.into(),
                }))
            }
            other => Err(LinkError::UnknownKind(other)),
        }
    }
}

/// The origin SFU's end of a room's relay links: offers every forwarded packet without blocking.
#[derive(Debug, Clone)]
pub struct RelayTap {
    tx: mpsc::Sender<LinkAudio>,
    dropped: Arc<AtomicU64>,
}

impl RelayTap {
    /// Queues a forwarded packet; a full queue drops it and counts it. `false`: the room's link
    /// task ended, remove the tap. Called on the SFU thread: no lock, no log, no blocking (one
    /// uid copy per packet, as the shards' own relays).
    pub fn offer(
        &self,
        uid: &Uid,
        slot: usize,
        rtp_time: u32,
        marker: bool,
        audio_level: Option<i8>,
        payload: &Arc<[u8]>,
    ) -> bool {
        let Ok(slot) = u8::try_from(slot) else {
            return true; // no room has 256 seats; nothing a relay could place
        };
        let packet = LinkAudio {
            uid: uid.clone(),
            slot,
            rtp_time,
            marker,
            audio_level,
            payload: payload.clone(),
        };
        match self.tx.try_send(packet) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// A room this node is the origin of, with relays subscribed (or being placed).
struct OriginRoom {
    /// Encoded frames for every link of the room.
    out: broadcast::Sender<Bytes>,
    /// Listeners placed on relays: uid → relay node.
    placed: HashMap<Uid, String>,
}

/// A room this node relays: its link's state (`true` once the origin said hello).
struct RelayLink {
    up: watch::Receiver<Option<Result<(), String>>>,
    id: u64,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Listeners this node (as origin) placed on relays.
    pub placed: AtomicU64,
    /// Link frames this node sent to relays.
    pub frames_out: AtomicU64,
    /// Link frames this node received from origins.
    pub frames_in: AtomicU64,
    /// Forwarded packets not sent to a relay: the tap's queue was full or a link lagged.
    pub dropped: AtomicU64,
    /// Links closed for a malformed frame, bad auth or a missing hello.
    pub link_errors: AtomicU64,
}

/// A node's relays: as origin (rooms with relays) and as relay (links to origins).
pub struct Relays {
    /// `relay_listeners`: peer connections of one room this node serves before placing further
    /// listeners on relays; none: never.
    threshold: Option<usize>,
    origin: Mutex<HashMap<RoomId, OriginRoom>>,
    links: Mutex<HashMap<RoomId, RelayLink>>,
    next_link: AtomicU64,
    /// Counters for `/metrics`.
    pub counters: RelayCounters,
    tap_dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Relays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relays")
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn error(status: StatusCode, code: &'static str, message: impl std::fmt::Display) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// What the origin sends a relay to place a listener.
#[derive(Debug, Serialize, Deserialize)]
pub struct RelayOffer {
    /// The room (held by `origin`).
    pub room: RoomId,
    /// The listener (the origin checked its token and membership).
    pub uid: Uid,
    /// The origin's node id.
    pub origin: String,
    /// The client's SDP offer (`{"type": "offer", "sdp": ...}`).
    pub offer: serde_json::Value,
}

impl Relays {
    /// No relays yet; `threshold` is `relay_listeners`.
    pub fn new(threshold: Option<usize>) -> Arc<Relays> {
        Arc::new(Relays {
            threshold,
            origin: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            next_link: AtomicU64::new(1),
            counters: RelayCounters::default(),
            tap_dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Forwarded packets not sent to a relay (tap queue full, link lagging).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed) + self.tap_dropped.load(Ordering::Relaxed)
    }

    /// Links this node holds to origins (as a relay).
    pub fn links(&self) -> usize {
        lock(&self.links).len()
    }

    /// Relay links subscribed to this node's rooms (as origin).
    pub fn subscribers(&self) -> usize {
        lock(&self.origin)
            .values()
            .map(|r| r.out.receiver_count())
            .sum()
    }

    /// The room's outgoing frames, with its link task and SFU tap started if it had none.
    fn origin_room(
        self: &Arc<Self>,
        app: &Arc<AppState>,
        room: &RoomId,
    ) -> Option<broadcast::Sender<Bytes>> {
        let sfu = app.media.clone()?;
        let mut rooms = lock(&self.origin);
        if let Some(r) = rooms.get(room) {
            return Some(r.out.clone());
        }
        let events = app.hub.subscribe(room).ok()?;
        let (out, _) = broadcast::channel(LINK_QUEUE);
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        let tap = RelayTap {
            tx,
            dropped: self.tap_dropped.clone(),
        };
        sfu.set_relay_tap(room.clone(), Some(tap)).ok()?;
        rooms.insert(
            room.clone(),
            OriginRoom {
                out: out.clone(),
                placed: HashMap::new(),
            },
        );
        tokio::spawn(origin_task(
            self.clone(),
            app.clone(),
            sfu,
            room.clone(),
            rx,
            events,
            out.clone(),
        ));
        Some(out)
    }
}

/// The origin's task for one room with relays: encodes each tapped packet once for every link,
/// tells the relays about members who left or took a seat, ends when the room is dismissed or
/// has had no link for a while.
async fn origin_task(
    relays: Arc<Relays>,
    app: Arc<AppState>,
    sfu: Arc<Sfu>,
    room: RoomId,
    mut tap: mpsc::Receiver<LinkAudio>,
    mut events: broadcast::Receiver<crate::hub::Frame>,
    out: broadcast::Sender<Bytes>,
) {
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut idle = 0u32;
    let send = |frame: LinkFrame| {
        if out.send(Bytes::from(frame.encode())).is_ok() {
            relays.counters.frames_out.fetch_add(1, Ordering::Relaxed);
        }
    };
    loop {
        tokio::select! {
            packet = tap.recv() => match packet {
                Some(p) => send(LinkFrame::Audio(p)),
                None => break,
            },
            event = events.recv() => match event {
                Ok(frame) => match &frame.event.kind {
                    EventKind::MemberLeft { uid, .. } => {
                        let was = lock(&relays.origin)
                            .get_mut(&room)
                            .and_then(|r| r.placed.remove(uid));
                        if was.is_some() {
                            send(LinkFrame::Leave { uid: uid.clone() });
                        }
                    }
                    EventKind::SeatChanged { .. } => {
                        // A listener served by a relay who took a seat: its relay peer closes
                        // (a relay forwards nothing local), its next offer lands here.
                        let Ok(snapshot) = app.hub.snapshot(&room) else { continue };
                        let seated: Vec<Uid> = lock(&relays.origin)
                            .get_mut(&room)
                            .map(|r| {
                                let seated: Vec<Uid> = r
                                    .placed
                                    .keys()
                                    .filter(|u| snapshot.seat_of(u).is_some())
                                    .cloned()
                                    .collect();
                                for u in &seated {
                                    r.placed.remove(u);
                                }
                                seated
                            })
                            .unwrap_or_default();
                        for uid in seated {
                            send(LinkFrame::Leave { uid });
                        }
                    }
                    EventKind::Dismissed => break,
                    _ => {}
                },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = check.tick() => {
                let placed = lock(&relays.origin).get(&room).map_or(0, |r| r.placed.len());
                if out.receiver_count() == 0 && placed == 0 {
                    idle += 1;
                    if idle >= 30 {
                        break;
                    }
                } else {
                    idle = 0;
                }
            }
        }
    }
    let _ = sfu.set_relay_tap(room.clone(), None);
    lock(&relays.origin).remove(&room);
    // Dropping `out` ends every link of the room: the relays close their listeners' peers.
}

/// The relay routes: the origin's link endpoint and the relay's offer endpoint.
pub fn routes<S: Clone + Send + Sync + 'static>(app: Arc<AppState>) -> Router<S> {
    Router::new()
        .route(LINK_PATH, get(link))
        .route(OFFER_PATH, post(relay_offer))
        .with_state(app)
}

/// Relay endpoints serve only nodes of this cluster (a valid bridge header).
/// The bridge header's check; `Some`: the refusal.
fn refused(app: &AppState, headers: &axum::http::HeaderMap) -> Option<Response> {
    if app.cluster.is_none() {
        return Some(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "relays need a cluster (cluster_redis)",
        ));
    }
    if !super::bridge::bridged(app, headers) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "relay endpoints need a valid {BRIDGE_HEADER} header from a node of this cluster"
            ),
        ));
    }
    None
}

/// `GET /cluster/relay/link/{room}` on the origin: a relay's link (WebSocket).
async fn link(
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(refused) = refused(&app, &headers) {
        app.relays
            .counters
            .link_errors
            .fetch_add(1, Ordering::Relaxed);
        return refused;
    }
    let room = RoomId(room);
    if app.hub.member_count(&room).is_err() {
        return error(
            StatusCode::NOT_FOUND,
            "no_such_room",
            format!("room {room} is not held by this node"),
        );
    }
    let Some(out) = app.relays.origin_room(&app, &room) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "media_unavailable",
            "the media service is not running",
        );
    };
    ws.max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| serve_link(app, room, socket, out.subscribe()))
}

/// Closes a link with a protocol error (1002) naming what was wrong.
async fn refuse(socket: &mut WebSocket, relays: &Relays, why: &LinkError) {
    relays.counters.link_errors.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%why, "relay link refused");
    let reason = format!("relay link: {why}");
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1002,
            reason: reason.chars().take(120).collect::<String>().into(),
        })))
        .await;
}

/// The origin's side of one link: waits for the relay's hello, answers it, then sends the
/// room's frames until the room ends or the relay goes; a malformed frame from the relay closes
/// the link with 1002 and the reason.
async fn serve_link(
    app: Arc<AppState>,
    room: RoomId,
    mut socket: WebSocket,
    mut frames: broadcast::Receiver<Bytes>,
) {
    let relays = &app.relays;
    let hello = match tokio::time::timeout(HELLO_WITHIN, socket.recv()).await {
        Ok(Some(Ok(Message::Binary(b)))) => LinkFrame::decode(&b),
        Ok(Some(Ok(other))) => Err(LinkError::Unexpected(
            format!("{other:?}").chars().take(40).collect(),
        )),
        Ok(_) => return,
        Err(_) => Err(LinkError::Unexpected(format!(
            "no hello within {HELLO_WITHIN:?}"
        ))),
    };
    let relay = match hello {
        Ok(LinkFrame::Hello { version, node }) if version == LINK_VERSION => node,
        Ok(LinkFrame::Hello { version, .. }) => {
            return refuse(&mut socket, relays, &LinkError::Version(version)).await;
        }
        Ok(other) => {
            let why =
                LinkError::Unexpected(format!("{other:?} before hello").chars().take(60).collect());
            return refuse(&mut socket, relays, &why).await;
        }
        Err(why) => return refuse(&mut socket, relays, &why).await,
    };
    let me = LinkFrame::Hello {
        version: LINK_VERSION,
        node: app.config.node_name.clone(),
    };
    if socket
        .send(Message::Binary(me.encode().into()))
        .await
        .is_err()
    {
        return;
    }
    tracing::info!(%room, relay, "relay linked");
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(bytes) => {
                    if socket.send(Message::Binary(bytes)).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    relays.counters.dropped.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1000,
                            reason: "the room ended on its node".into(),
                        })))
                        .await;
                    break;
                }
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => match LinkFrame::decode(&b) {
                    Ok(LinkFrame::Hello { .. }) => {}
                    Ok(other) => {
                        let why = LinkError::Unexpected(
                            format!("{other:?} from a relay").chars().take(60).collect(),
                        );
                        return refuse(&mut socket, relays, &why).await;
                    }
                    Err(why) => return refuse(&mut socket, relays, &why).await,
                },
                Some(Ok(Message::Text(_))) => {
                    let why = LinkError::Unexpected("a text message".into());
                    return refuse(&mut socket, relays, &why).await;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    tracing::info!(%room, relay, "relay unlinked");
}

/// On the origin, from `/rtc/offer`: places a listener's offer on a relay when the room has
/// outgrown this node. `None`: serve it here (no cluster, no threshold, under it, a seated
/// member, no relay available or the relay failed).
pub async fn place_listener(
    app: &Arc<AppState>,
    sfu: &Sfu,
    room: &RoomId,
    uid: &Uid,
    offer: &serde_json::Value,
) -> Option<Response> {
    let relays = &app.relays;
    let threshold = relays.threshold?;
    let cluster = app.cluster.as_ref()?;
    let snapshot = app.hub.snapshot(room).ok()?;
    if !snapshot.members.contains_key(uid) || snapshot.seat_of(uid).is_some() {
        return None; // the SFU's own answer (not_member), or a speaker: served by the origin
    }
    if sfu.room_peers(room).await.ok()? < threshold {
        return None;
    }
    // Fill the room's relays up to the threshold each, then the least-loaded other node.
    let mut counts: HashMap<String, usize> = HashMap::new();
    if let Some(r) = lock(&relays.origin).get(room) {
        for (u, node) in &r.placed {
            if u != uid {
                *counts.entry(node.clone()).or_default() += 1;
            }
        }
    }
    // Relays already serving the room first (one link each), then the least-loaded other
    // nodes; a relay that serves its own `relay_listeners` of the room refuses (503) and the
    // next is asked.
    let mut candidates: Vec<NodeRecord> = cluster
        .live_nodes()
        .into_iter()
        .filter(|n| n.id != cluster.node && n.media.is_some())
        .collect();
    candidates.sort_by_key(|n| {
        let c = counts.get(&n.id).copied().unwrap_or(0);
        (c == 0, n.load.peers as usize + c, n.id.clone())
    });
    // The link must find the room's tap: start it before the relay connects.
    relays.origin_room(app, room)?;
    let body = RelayOffer {
        room: room.clone(),
        uid: uid.clone(),
        origin: cluster.node.clone(),
        offer: offer.clone(),
    };
    for relay in candidates {
        let answer = cluster
            .http_client
            .post(format!("http://{}{OFFER_PATH}", relay.http))
            .header(BRIDGE_HEADER, cluster.bridge_header())
            .json(&body)
            .send()
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%room, relay = relay.id, %e, "relay did not answer; asking the next");
                continue;
            }
        };
        let status = answer.status();
        let Ok(bytes) = answer.bytes().await else {
            continue;
        };
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            continue; // full for this room, or its media is down
        }
        if status.is_server_error() {
            tracing::warn!(%room, relay = relay.id, %status, body = %String::from_utf8_lossy(&bytes), "relay failed; asking the next");
            continue;
        }
        return Some(relayed_answer(relays, room, uid, &relay, status, bytes));
    }
    tracing::debug!(%room, "no relay can take the listener; serving it here");
    None
}

/// The client's answer from a relay (its SDP answer, or its 4xx error), with the placement
/// remembered on success.
fn relayed_answer(
    relays: &Relays,
    room: &RoomId,
    uid: &Uid,
    relay: &NodeRecord,
    status: reqwest::StatusCode,
    bytes: Bytes,
) -> Response {
    if status.is_success() {
        if let Some(r) = lock(&relays.origin).get_mut(room) {
            r.placed.insert(uid.clone(), relay.id.clone());
        }
        relays.counters.placed.fetch_add(1, Ordering::Relaxed);
    }
    let mut response = Response::builder()
        .status(status.as_u16())
        .header("content-type", "application/json");
    if let Ok(v) = HeaderValue::from_str(&relay.id) {
        response = response.header(RELAY_HEADER, v);
    }
    response
        .body(axum::body::Body::from(bytes))
        .unwrap_or_else(|e| error(StatusCode::BAD_GATEWAY, "node_unavailable", e))
}

/// On an `/rtc/offer` answer placed on a relay: the relay's node id.
pub const RELAY_HEADER: &str = "x-onmic-relay";

/// `POST /cluster/relay/offer` on a relay: connects a listener of another node's room, with the
/// link to that origin opened first (once per room).
async fn relay_offer(
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = refused(&app, &headers) {
        return refused;
    }
    let Some(cluster) = app.cluster.clone() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no cluster");
    };
    let req: RelayOffer = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed", e),
    };
    let Some(sfu) = app.media.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "media_unavailable",
            "the media service is not running",
        );
    };
    let origin = match cluster.node_of(&req.room.0).await {
        Ok(Some(node)) if node.id == req.origin => node,
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                "no_such_room",
                format!("room {} is not held by node {}", req.room, req.origin),
            );
        }
        Err(e) => return super::bridge::error_response(&e),
    };
    if let Some(limit) = app.relays.threshold
        && sfu.room_peers(&req.room).await.unwrap_or(0) >= limit
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_unavailable",
            format!(
                "this relay serves its relay_listeners ({limit}) of room {}",
                req.room
            ),
        );
    }
    let offer: str0m::change::SdpOffer = match serde_json::from_value(req.offer) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_sdp", e),
    };
    if let Err(e) = ensure_link(&app, &sfu, &req.room, &origin).await {
        return error(
            StatusCode::BAD_GATEWAY,
            "node_unavailable",
            format!(
                "relay link to node {} for room {}: {e}",
                origin.id, req.room
            ),
        );
    }
    match sfu.connect_relayed(req.room, req.uid, offer).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => {
            let status = match e {
                crate::sfu::SfuError::BadOffer(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, e.code(), e)
        }
    }
}

/// Opens the room's link to its origin unless one is up; waits until the origin said hello.
async fn ensure_link(
    app: &Arc<AppState>,
    sfu: &Arc<Sfu>,
    room: &RoomId,
    origin: &NodeRecord,
) -> Result<(), String> {
    let mut up = {
        let mut links = lock(&app.relays.links);
        match links.get(room) {
            Some(l) => l.up.clone(),
            None => {
                let (tx, rx) = watch::channel(None);
                let id = app.relays.next_link.fetch_add(1, Ordering::Relaxed);
                links.insert(room.clone(), RelayLink { up: rx.clone(), id });
                tokio::spawn(relay_link(
                    app.clone(),
                    sfu.clone(),
                    room.clone(),
                    origin.clone(),
                    tx,
                    id,
                ));
                rx
            }
        }
    };
    let waited = tokio::time::timeout(HELLO_WITHIN * 2, up.wait_for(|s| s.is_some())).await;
    match waited {
        Ok(Ok(state)) => state.clone().unwrap_or(Err("no state".into())),
        Ok(Err(_)) => Err("the link ended".into()),
        Err(_) => Err("the origin did not answer within 6 s".into()),
    }
}

/// The relay's side of one room's link: connects, says hello, feeds every audio frame to the
/// SFU, closes listeners the origin says left; ends (closing every listener of the room here)
/// when the origin closes or fails, a frame does not parse, or the room has no listener here.
async fn relay_link(
    app: Arc<AppState>,
    sfu: Arc<Sfu>,
    room: RoomId,
    origin: NodeRecord,
    up: watch::Sender<Option<Result<(), String>>>,
    id: u64,
) {
    let relays = &app.relays;
    let outcome = run_link(&app, &sfu, &room, &origin, &up).await;
    match &outcome {
        Ok(why) => tracing::info!(%room, origin = origin.id, why, "relay link closed"),
        Err(e) => {
            relays.counters.link_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%room, origin = origin.id, %e, "relay link to the room's node lost; its listeners here are disconnected");
        }
    }
    let idle = outcome == Ok(IDLE);
    let _ = up.send(Some(Err(match outcome {
        Ok(why) => why.to_owned(),
        Err(e) => e,
    })));
    {
        let mut links = lock(&relays.links);
        if links.get(&room).is_some_and(|l| l.id == id) {
            links.remove(&room);
        }
    }
    // An idle link had no listener; one that arrived since belongs to the next link.
    if !idle {
        sfu.close_relayed(&room, None);
    }
}

async fn run_link(
    app: &Arc<AppState>,
    sfu: &Arc<Sfu>,
    room: &RoomId,
    origin: &NodeRecord,
    up: &watch::Sender<Option<Result<(), String>>>,
) -> Result<&'static str, String> {
    use tungstenite::client::IntoClientRequest;
    let cluster = app.cluster.as_ref().ok_or("no cluster")?;
    let url = format!(
        "ws://{}/cluster/relay/link/{}",
        origin.http,
        urlencoding(room.as_str())
    );
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    if let Ok(v) = HeaderValue::from_str(cluster.bridge_header()) {
        request.headers_mut().insert(BRIDGE_HEADER, v);
    }
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (mut ws, _) = tokio::time::timeout(HELLO_WITHIN, connect)
        .await
        .map_err(|_| format!("no WebSocket within {HELLO_WITHIN:?}"))?
        .map_err(|e| e.to_string())?;
    let hello = LinkFrame::Hello {
        version: LINK_VERSION,
        node: cluster.node.clone(),
    };
    ws.send(tungstenite::Message::Binary(hello.encode().into()))
        .await
        .map_err(|e| e.to_string())?;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut idle = 0u32;
    let mut linked = false;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let data = match msg {
                    Some(Ok(tungstenite::Message::Binary(b))) => b,
                    Some(Ok(tungstenite::Message::Close(c))) => {
                        return match c {
                            Some(c) if c.code == tungstenite::protocol::frame::coding::CloseCode::Normal => Ok("the origin closed it (the room ended)"),
                            Some(c) => Err(format!("the origin closed it: {} {}", u16::from(c.code), c.reason)),
                            None => Ok("the origin closed it"),
                        };
                    }
                    Some(Ok(tungstenite::Message::Text(_))) => {
                        return Err("bad frame: a text message".into());
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("the connection ended".into()),
                };
                app.relays.counters.frames_in.fetch_add(1, Ordering::Relaxed);
                match LinkFrame::decode(&data) {
                    Ok(LinkFrame::Hello { version, node }) => {
                        if version != LINK_VERSION {
                            return Err(LinkError::Version(version).to_string());
                        }
                        if node != origin.id {
                            return Err(format!("the origin said it is node {node}, not {}", origin.id));
                        }
                        linked = true;
                        let _ = up.send(Some(Ok(())));
                    }
                    Ok(_) if !linked => return Err("bad frame: a frame before hello".into()),
                    Ok(LinkFrame::Audio(a)) => {
                        sfu.feed(room, a);
                    }
                    Ok(LinkFrame::Leave { uid }) => sfu.close_relayed(room, Some(&uid)),
                    Err(e) => {
                        let _ = ws.close(None).await;
                        return Err(format!("bad frame: {e}"));
                    }
                }
            }
            _ = check.tick() => {
                if !linked {
                    continue;
                }
                if sfu.room_peers(room).await.unwrap_or(0) == 0 {
                    idle += 1;
                    if idle >= IDLE_CHECKS {
                        // Out of the links map first: an offer from now on opens a new link.
                        lock(&app.relays.links).remove(room);
                        let _ = ws.close(None).await;
                        return Ok(IDLE);
                    }
                } else {
                    idle = 0;
                }
            }
        }
    }
}

/// A room id for a URL path segment (percent-encoded but for unreserved characters).
fn urlencoding(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio() -> LinkFrame {
        LinkFrame::Audio(LinkAudio {
            uid: Uid("speaker-1".into()),
            slot: 2,
            rtp_time: 0xdead_beef,
            marker: true,
            audio_level: Some(-30),
            payload: Arc::from(&[7u8; 40][..]),
        })
    }

    /// One frame of each kind.
    fn sample_frames() -> [LinkFrame; 3] {
        [
            audio(),
            LinkFrame::Leave {
                uid: Uid("listener".into()),
            },
            LinkFrame::Hello {
                version: LINK_VERSION,
                node: "node-a".into(),
            },
        ]
    }

    #[test]
    fn frames_round_trip() {
        let mut frames = vec![LinkFrame::Audio(LinkAudio {
            uid: Uid("é".into()),
            slot: 0,
            rtp_time: 0,
            marker: false,
            audio_level: None,
            payload: Arc::from(&[1u8][..]),
        })];
        frames.extend(sample_frames());
        for f in frames {
            assert_eq!(LinkFrame::decode(&f.encode()), Ok(f.clone()), "{f:?}");
        }
    }

    /// Every truncation of every valid frame is a clear error, never a panic.
    #[test]
    fn every_truncation_is_an_error() {
        for f in sample_frames() {
            let bytes = f.encode();
            // An audio frame cut inside its payload is still a (shorter) audio frame.
            let header = match &f {
                LinkFrame::Audio(a) => 9 + a.uid.0.len(),
                _ => bytes.len(),
            };
            for n in 0..header {
                let got = LinkFrame::decode(&bytes[..n]);
                assert!(got.is_err(), "{f:?} cut to {n}: {got:?}");
            }
        }
        assert_eq!(LinkFrame::decode(&[]), Err(LinkError::Empty));
        assert_eq!(
            LinkFrame::decode(&[KIND_AUDIO, 0, 0, 0, 0, 0, 0, 0, 1, b'u']),
            Err(LinkError::NoPayload)
        );
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert_eq!(LinkFrame::decode(&[0]), Err(LinkError::UnknownKind(0)));
        assert_eq!(
            LinkFrame::decode(&[200, 1, 2]),
            Err(LinkError::UnknownKind(200))
        );
        assert!(matches!(
            LinkFrame::decode(&[KIND_LEAVE, 2, 0xff, 0xfe]),
            Err(LinkError::BadText("uid"))
        ));
        assert!(matches!(
            LinkFrame::decode(&[KIND_LEAVE, 0]),
            Err(LinkError::BadText("uid"))
        ));
        assert!(matches!(
            LinkFrame::decode(&[KIND_HELLO, 1, 1, b'a', b'x']),
            Err(LinkError::Trailing { .. })
        ));
        assert!(matches!(
            LinkFrame::decode(&vec![KIND_AUDIO; MAX_FRAME + 1]),
            Err(LinkError::TooLong(_))
        ));
        // A deterministic sweep of pseudo-random bytes: whatever comes out, no panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len % 64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            let _ = LinkFrame::decode(&bytes);
        }
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let node = "é".repeat(200); // 400 bytes
        let f = LinkFrame::Hello {
            version: 1,
            node: node.clone(),
        };
        match LinkFrame::decode(&f.encode()) {
            Ok(LinkFrame::Hello { node: got, .. }) => {
                assert_eq!(got.len(), 254);
                assert!(node.starts_with(&got));
            }
            other => panic!("{other:?}"),
        }
    }
}
