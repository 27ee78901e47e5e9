//! The WebSocket endpoint (`GET /ws`): one task per connection. The first request must be
//! `join`; then requests are answered in order, room events are pushed as they happen, a client
//! that falls behind gets a snapshot, and the server closes with a typed reason when the member
//! is replaced, kicked, timed out, dismissed or floods. See `docs/protocol.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use onmic_room::protocol::{
    ADMIN_ACTION_TYPES, CloseReason, DecodeError, MAX_MEMBERS_PAGE, MAX_MESSAGE_BYTES,
    MAX_PREJOIN_BYTES, MEMBERS_PAGE, MembershipView, Request, ServerMessage, decode_client,
};
use onmic_room::{Action, Command, Event, EventKind, RoomId, RoomState, Uid, token};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::AppState;
use crate::hub::Joined;

/// The error codes this endpoint sends besides the domain's (token, decode, room, hub codes).
pub const WS_ERROR_CODES: &[&str] = &["not_joined", "already_joined", "rate_limited"];

/// A connection that has not joined within this long is closed.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Failed joins allowed on one connection.
const MAX_JOIN_ATTEMPTS: u32 = 5;

/// Upgrades `GET /ws`. At most `max_prejoin_per_addr` connections of one IP address may be
/// waiting to join; more are refused with HTTP 429 (`too_many_connections`).
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    extensions: axum::http::Extensions,
) -> Response {
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    // A connection bridged from another node of the cluster counts against the client's
    // address, not the bridge's, and is served here (never bridged again).
    let bridged = crate::cluster::bridge::bridged(&state, &headers);
    let ip = crate::cluster::bridge::client_ip(&state, &headers, peer);
    let origin = crate::cluster::bridge::origin(&state, &headers, &extensions);
    let Some(guard) = state.hub.prejoin_enter(ip) else {
        return axum::response::IntoResponse::into_response(crate::rest::ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "too many connections from this address are waiting to join; join or close some",
        ));
    };
    // The reader holds at most MAX_MESSAGE_BYTES per connection (a frame over it closes with
    // `too_large`, 1009); before join, frames over MAX_PREJOIN_BYTES close the same way.
    // Small per-connection buffers: a room holds thousands of mostly idle connections, and the
    // 128 KiB defaults dominated the server's memory per client.
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| {
            let from = Source {
                origin,
                ip,
                bridged,
            };
            connection(socket, state, from, guard)
        })
}

/// What to do with a read error: the peer broke the protocol (close with a typed reason) or the
/// connection is gone.
fn read_error_reason(e: &axum::Error) -> Option<(CloseReason, String)> {
    // axum wraps tungstenite's errors without re-exporting them: tell them apart by their text.
    let text = e.to_string();
    if text.contains("Space limit exceeded") || text.contains("too long") {
        Some((
            CloseReason::TooLarge,
            format!("a frame is over the limit of {MAX_MESSAGE_BYTES} bytes"),
        ))
    } else if text.contains("UTF-8") || text.contains("utf-8") || text.contains("Utf8") {
        Some((
            CloseReason::BadFrame,
            "a text frame is not valid UTF-8".into(),
        ))
    } else {
        None
    }
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// What one connection follows of its room (`join`'s `membership` and `volumes`; see
/// `docs/protocol.md`, *Large audiences*).
struct View {
    /// `membership: counts`: the membership as counts and pages, not every join and leave.
    counts: bool,
    /// Whether `volume_indication` frames go to this connection.
    volumes: bool,
    me: Uid,
    owner: Uid,
    /// Counts view: the members this connection was told of (owner, admins, the seated,
    /// itself); their `member_left` is sent, other members' are not.
    known: std::collections::HashSet<Uid>,
    /// Counts view: the member count changed since the last `member_count`.
    count_dirty: bool,
}

impl View {
    fn new(me: &Uid, membership: MembershipView, volumes: bool) -> View {
        View {
            counts: membership == MembershipView::Counts,
            volumes,
            me: me.clone(),
            owner: Uid::from(""),
            known: std::collections::HashSet::new(),
            count_dirty: false,
        }
    }

    /// Trims a snapshot for a counts view (owner, admins, the seated and the connection's own
    /// uid stay) and remembers who it lists.
    fn snapshot(&mut self, snapshot: &mut RoomState) {
        if !self.counts {
            return;
        }
        let seated: std::collections::HashSet<&Uid> =
            snapshot.seats.iter().filter_map(|s| s.occupant()).collect();
        let keep: std::collections::HashSet<Uid> = snapshot
            .members
            .iter()
            .filter(|(uid, m)| {
                **uid == self.me || **uid == snapshot.owner || m.admin || seated.contains(uid)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        snapshot.members.retain(|uid, _| keep.contains(uid));
        self.owner = snapshot.owner.clone();
        self.known = keep;
    }

    /// Whether this connection gets `event` (a counts view leaves out other members' joins and
    /// leaves, except those of members it was told of).
    fn wants(&mut self, event: &Event) -> bool {
        if !self.counts {
            return true;
        }
        match &event.kind {
            EventKind::MemberJoined { member } => {
                self.count_dirty = true;
                let told = member.uid == self.me || member.uid == self.owner || member.admin;
                if told {
                    self.known.insert(member.uid.clone());
                }
                told
            }
            EventKind::MemberLeft { uid, .. } => {
                self.count_dirty = true;
                self.known.remove(uid)
            }
            EventKind::SeatChanged { seat, .. } => {
                // Someone seated is someone this connection knows of from now on.
                if let Some(uid) = seat.occupant() {
                    self.known.insert(uid.clone());
                }
                true
            }
            EventKind::RoleChanged { uid, .. } => {
                self.known.insert(uid.clone());
                true
            }
            _ => true,
        }
    }
}

async fn send(sink: &mut Sink, msg: &ServerMessage) -> bool {
    sink.send(Message::Text(msg.to_json().into())).await.is_ok()
}

async fn close(sink: &mut Sink, reason: CloseReason, message: &str) {
    let _ = send(
        sink,
        &ServerMessage::Closing {
            reason,
            message: message.to_owned(),
        },
    )
    .await;
    let frame = CloseFrame {
        code: reason.close_code(),
        reason: Utf8Bytes::from(
            serde_json::to_string(&reason)
                .unwrap_or_default()
                .trim_matches('"'),
        ),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
    let _ = sink.close().await;
}

/// Sends `member_count` (the room's member count now); false when the connection is gone.
async fn send_count(state: &AppState, room: &RoomId, sink: &mut Sink) -> bool {
    match state.hub.member_count(room) {
        Ok((members, version)) => {
            send(sink, &ServerMessage::MemberCount { members, version }).await
        }
        Err(_) => true,
    }
}

/// After a close: reads and drops what the peer still sends, until it closes too (at most 1 s).
/// Dropping a socket with unread input makes the kernel send a reset, which would destroy the
/// replies and the `closing` message still on their way to the client.
async fn linger(stream: &mut futures_util::stream::SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// After a frame the reader could not take (over the limit, not UTF-8) the rest of the input
/// cannot be parsed, so [`linger`] cannot drain it: keep the socket open a moment instead, so
/// the `closing` message and the close frame reach the peer before the kernel's reset.
async fn linger_after_error() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Counts frames per second; says whether to refuse or close.
struct FrameRate {
    window_start: Instant,
    count: u32,
    max: u32,
}

enum Verdict {
    Ok,
    Refuse,
    Close,
}

impl FrameRate {
    fn check(&mut self) -> Verdict {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        if self.count > self.max.saturating_mul(2) {
            Verdict::Close
        } else if self.count > self.max {
            Verdict::Refuse
        } else {
            Verdict::Ok
        }
    }
}

/// Reads the text of a frame, or says why the frame is not acceptable.
fn frame_text(msg: Message) -> Option<Result<Utf8Bytes, DecodeError>> {
    match msg {
        Message::Text(t) => Some(Ok(t)),
        Message::Binary(_) => Some(Err(DecodeError::Binary)),
        Message::Ping(_) | Message::Pong(_) => None,
        Message::Close(_) => Some(Err(DecodeError::Malformed("closed".into()))),
    }
}

/// Where a connection comes from.
struct Source {
    /// For the audit log: the peer address (the client's, with the bridge's, when bridged).
    origin: String,
    /// The client's IP address.
    ip: Option<std::net::IpAddr>,
    /// Bridged from another node of the cluster.
    bridged: bool,
}

async fn connection(
    socket: WebSocket,
    state: Arc<AppState>,
    from: Source,
    guard: crate::hub::PrejoinGuard,
) {
    let origin = from.origin;
    let (mut sink, mut stream) = socket.split();
    let mut rate = FrameRate {
        window_start: Instant::now(),
        count: 0,
        max: state.config.max_frames_per_sec.max(1),
    };
    let deadline = tokio::time::sleep(JOIN_TIMEOUT);
    tokio::pin!(deadline);
    let mut attempts = 0;
    // Phase 1: wait for a valid join.
    let (room, uid, joined, membership, volumes) = loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = &mut deadline => {
                close(&mut sink, CloseReason::JoinFailed, "no join within 10 s").await;
                linger(&mut stream).await;
                return;
            }
        };
        let msg = match msg {
            None => return,
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                if let Some((reason, message)) = read_error_reason(&e) {
                    close(&mut sink, reason, &message).await;
                    linger_after_error().await;
                }
                return;
            }
        };
        if matches!(msg, Message::Close(_)) {
            return;
        }
        let text = match frame_text(msg) {
            None => continue,
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                let _ = send(&mut sink, &ServerMessage::error(None, e.code(), &e)).await;
                continue;
            }
        };
        if let Verdict::Close = rate.check() {
            close(&mut sink, CloseReason::Flood, "too many frames").await;
            linger(&mut stream).await;
            return;
        }
        if text.len() > MAX_PREJOIN_BYTES {
            let message =
                format!("a frame before join is over the limit of {MAX_PREJOIN_BYTES} bytes");
            close(&mut sink, CloseReason::TooLarge, &message).await;
            linger(&mut stream).await;
            return;
        }
        let m = match decode_client(text.as_str()) {
            Ok(m) => m,
            Err(f) if matches!(f.error, DecodeError::TooLarge { .. }) => {
                close(&mut sink, CloseReason::TooLarge, &f.error.to_string()).await;
                linger(&mut stream).await;
                return;
            }
            Err(f) => {
                let _ = send(
                    &mut sink,
                    &ServerMessage::error(f.id, f.error.code(), &f.error),
                )
                .await;
                continue;
            }
        };
        let Request::Join {
            room,
            token,
            membership,
            volumes,
        } = m.request
        else {
            let _ = send(
                &mut sink,
                &ServerMessage::error(m.id, "not_joined", "send join first"),
            )
            .await;
            continue;
        };
        // In a cluster, a room held by another node is served there: this connection becomes
        // a bridge to a connection on that node, which gets this very `join`.
        if let Some(cluster) = state.cluster.as_ref().filter(|_| !from.bridged)
            && state.hub.member_count(&room).is_err()
        {
            let remote = match cluster.node_of(&room.0).await {
                Ok(None) => None,
                Ok(Some(node)) => Some(
                    crate::cluster::bridge::open_ws(cluster, &node, &room.0, &text, from.ip).await,
                ),
                Err(e) => Some(Err(e)),
            };
            match remote {
                None => {}
                Some(Ok(remote)) => {
                    drop(guard);
                    crate::cluster::bridge::pipe(&mut sink, &mut stream, remote).await;
                    // The room's node may have closed it because the room moved (draining):
                    // the client's next join reads the pin again.
                    cluster.forget(&room.0);
                    return;
                }
                Some(Err(e)) => {
                    tracing::warn!(%e, "cannot bridge a join to the room's node");
                    attempts += 1;
                    let _ = send(&mut sink, &ServerMessage::error(m.id, e.code(), &e)).await;
                    if attempts >= MAX_JOIN_ATTEMPTS {
                        close(&mut sink, CloseReason::JoinFailed, "too many failed joins").await;
                        linger(&mut stream).await;
                        return;
                    }
                    continue;
                }
            }
        }
        let now = state.hub.now();
        let cfg = &state.config;
        let verified = token::verify(
            cfg.token_secret.as_bytes(),
            &token,
            &cfg.app_id.as_str().into(),
            &room,
            now,
        );
        let result = match verified {
            Err(e) => Err(ServerMessage::error(m.id, e.code(), &e)),
            Ok(claims) => match state.hub.join(&room, &claims, m.id) {
                Ok(j) => Ok((claims.uid.clone(), j)),
                Err(e) => Err(ServerMessage::error(m.id, e.code(), &e)),
            },
        };
        match result {
            Ok((uid, joined)) => break (room, uid, joined, membership, volumes),
            Err(reply) => {
                attempts += 1;
                let _ = send(&mut sink, &reply).await;
                if attempts >= MAX_JOIN_ATTEMPTS {
                    close(&mut sink, CloseReason::JoinFailed, "too many failed joins").await;
                    linger(&mut stream).await;
                    return;
                }
            }
        }
    };
    drop(guard);
    let conn_id = joined.conn_id;
    let member = Member {
        room: &room,
        uid: &uid,
        origin: &origin,
    };
    let view = View::new(&uid, membership, volumes);
    serve_member(
        &state,
        member,
        joined,
        view,
        &mut sink,
        &mut stream,
        &mut rate,
    )
    .await;
    state.hub.disconnected(&room, &uid, conn_id);
    linger(&mut stream).await;
}

/// Who a joined connection is.
struct Member<'a> {
    room: &'a RoomId,
    uid: &'a Uid,
    origin: &'a str,
}

async fn serve_member(
    state: &AppState,
    member: Member<'_>,
    joined: Joined,
    mut view: View,
    sink: &mut Sink,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    rate: &mut FrameRate,
) {
    let Joined {
        mut reply,
        mut events,
        version,
        close: mut closer,
        mut volumes,
        ..
    } = joined;
    let Member { room, uid, origin } = member;
    let mut seen = version;
    if let ServerMessage::Joined { snapshot, .. } = &mut reply {
        view.snapshot(snapshot);
    }
    if !send(sink, &reply).await {
        return;
    }
    if view.counts && !send_count(state, room, sink).await {
        return;
    }
    // Counts view: at most one `member_count` a second, only when the count changed.
    let mut count_tick = tokio::time::interval(Duration::from_secs(1));
    count_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            reason = closer.recv() => {
                if let Some(reason) = reason {
                    // Deliver what happened first (e.g. the kick event), then close.
                    while let Ok(f) = events.try_recv() {
                        if f.event.version > seen {
                            seen = f.event.version;
                            if view.wants(&f.event) {
                                let _ = sink.send(Message::Text(f.json)).await;
                            }
                        }
                    }
                    close(sink, reason, "").await;
                    return;
                }
            }
            _ = count_tick.tick(), if view.counts && view.count_dirty => {
                view.count_dirty = false;
                if !send_count(state, room, sink).await {
                    return;
                }
            }
            volume = volumes.recv(), if view.volumes => match volume {
                Ok(json) => {
                    if sink.send(Message::Text(json)).await.is_err() {
                        return;
                    }
                }
                // Old levels are worthless: skip what was missed.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            frame = events.recv() => match frame {
                Ok(f) => {
                    // Write this frame and whatever else is already queued, then flush once:
                    // one syscall per burst instead of one per event.
                    let mut next = Some(f);
                    let mut burst = 0;
                    while let Some(f) = next.take() {
                        if f.event.version > seen {
                            seen = f.event.version;
                            if view.wants(&f.event) && sink.feed(Message::Text(f.json)).await.is_err() {
                                return;
                            }
                        }
                        burst += 1;
                        if burst < 64 {
                            next = events.try_recv().ok();
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // The client missed events: send the state instead.
                    let Ok(mut snapshot) = state.hub.snapshot(room) else { return };
                    view.snapshot(&mut snapshot);
                    seen = snapshot.version;
                    if !send(sink, &ServerMessage::Snapshot { id: None, snapshot }).await {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            msg = stream.next() => {
                let msg = match msg {
                    None => return,
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => {
                        if let Some((reason, message)) = read_error_reason(&e) {
                            close(sink, reason, &message).await;
                            linger_after_error().await;
                        }
                        return;
                    }
                };
                if matches!(msg, Message::Close(_)) {
                    return;
                }
                let Some(text) = frame_text(msg) else { continue };
                match rate.check() {
                    Verdict::Ok => {}
                    Verdict::Refuse => {
                        let e = ServerMessage::error(None, "rate_limited", "too many frames per second");
                        if !send(sink, &e).await {
                            return;
                        }
                        continue;
                    }
                    Verdict::Close => {
                        close(sink, CloseReason::Flood, "too many frames").await;
                        return;
                    }
                }
                let text = match text {
                    Ok(t) => t,
                    Err(e) => {
                        if !send(sink, &ServerMessage::error(None, e.code(), &e)).await {
                            return;
                        }
                        continue;
                    }
                };
                let m = match decode_client(text.as_str()) {
                    Ok(m) => m,
                    Err(f) if matches!(f.error, DecodeError::TooLarge { .. }) => {
                        close(sink, CloseReason::TooLarge, &f.error.to_string()).await;
                        return;
                    }
                    Err(f) => {
                        let e = ServerMessage::error(f.id, f.error.code(), &f.error);
                        if !send(sink, &e).await {
                            return;
                        }
                        continue;
                    }
                };
                state.hub.touch(room, uid);
                let reply = match m.request {
                    Request::Join { .. } => ServerMessage::error(m.id, "already_joined", "already joined"),
                    Request::Heartbeat => ServerMessage::Pong { id: m.id, version: seen },
                    Request::Snapshot => match state.hub.snapshot(room) {
                        Ok(mut snapshot) => {
                            view.snapshot(&mut snapshot);
                            seen = seen.max(snapshot.version);
                            ServerMessage::Snapshot { id: m.id, snapshot }
                        }
                        Err(e) => ServerMessage::error(m.id, e.code(), &e),
                    },
                    Request::Action(action) => {
                        let leaving = matches!(action, Action::Leave);
                        let audited = serde_json::to_value(&action)
                            .ok()
                            .filter(|v| v["type"].as_str().is_some_and(|t| ADMIN_ACTION_TYPES.contains(&t)));
                        match state.hub.execute(room, Command::member(uid.clone(), action)) {
                            Ok(evs) => {
                                if let Some(detail) = audited {
                                    let what = detail["type"].as_str().unwrap_or_default().to_owned();
                                    let actor = format!("member:{uid}");
                                    state.hub.audit(state.hub.now(), &actor, origin, room.as_str(), &what, &detail);
                                }
                                // The effects go out before the reply.
                                let target = evs.last().map(|e| e.version).unwrap_or(seen);
                                while seen < target {
                                    match events.try_recv() {
                                        Ok(f) => {
                                            if f.event.version > seen {
                                                seen = f.event.version;
                                                if view.wants(&f.event) && sink.send(Message::Text(f.json)).await.is_err() {
                                                    return;
                                                }
                                            }
                                        }
                                        Err(TryRecvError::Lagged(_)) => {
                                            let Ok(mut snapshot) = state.hub.snapshot(room) else { return };
                                            view.snapshot(&mut snapshot);
                                            seen = snapshot.version;
                                            if !send(sink, &ServerMessage::Snapshot { id: None, snapshot }).await {
                                                return;
                                            }
                                        }
                                        Err(_) => break,
                                    }
                                }
                                // "ok" means saved: wait for the writer (the room's lock is free).
                                if let Err(e) = state.hub.durable().await {
                                    let sent = send(sink, &ServerMessage::error(m.id, e.code(), &e)).await;
                                    // A member who left is gone either way.
                                    if !sent || leaving {
                                        let _ = sink.close().await;
                                        return;
                                    }
                                    continue;
                                }
                                let ok = ServerMessage::Ok { id: m.id, version: target.max(seen) };
                                if leaving {
                                    let _ = send(sink, &ok).await;
                                    let _ = sink.close().await;
                                    return;
                                }
                                ok
                            }
                            Err(e) => ServerMessage::error(m.id, e.code(), &e),
                        }
                    }
                    Request::Members { after, limit } => {
                        let limit = limit.unwrap_or(MEMBERS_PAGE).clamp(1, MAX_MEMBERS_PAGE) as usize;
                        match state.hub.members_page(room, after.as_ref(), limit) {
                            Ok((members, next, total)) => ServerMessage::Members { id: m.id, members, next, total },
                            Err(e) => ServerMessage::error(m.id, e.code(), &e),
                        }
                    }
                    _ => ServerMessage::error(m.id, "unknown_type", "unsupported request"),
                };
                if !send(sink, &reply).await {
                    return;
                }
            }
        }
    }
}
