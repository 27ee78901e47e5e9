//! The room hub: every live room, driven through its sans-IO [`Room`], with persistence, webhook
//! queueing, fan-out to connections and timers around it.
//!
//! Each room sits behind its own mutex; a command is handled, handed to the store's writer (the
//! room's state, gifts and webhooks in one submit) and broadcast while that lock is held, so
//! storage, webhooks and every subscriber see one order. Nothing under the lock waits on the
//! database: the writer ([`StoreWriter`]) writes in the background, in order, in batches, and a
//! reply that must mean "saved" awaits [`Hub::durable`] after the lock is released.
//! Events are serialized once per room and shared by all connections (`Frame`).
//!
//! Seams for the media layer: [`Hub::may_publish`], [`Hub::subscribe`] (seat, mute and floor
//! changes arrive as events) and [`Hub::report_bombing`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use onmic_room::protocol::{CloseReason, ServerMessage, SpeakerVolume};
use onmic_room::token::{Claims, Privilege};
use onmic_room::{
    Action, Command, Event, EventKind, ImPolicy, LeaveReason, LostSeat, Room, RoomError, RoomId,
    RoomSettings, RoomState, Timestamp, Uid,
};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::config::Config;
use crate::store::{
    AuditRecord, QueuedWebhook, RecordingRecord, RoomRow, Store, StoreError, StoreWriter,
    WriterStatus, gift_records,
};
use crate::webhook;

/// Where the hub reads the time; tests may inject their own.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock (milliseconds since the Unix epoch).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// One event, serialized once for every subscriber.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The event.
    pub event: Arc<Event>,
    /// `ServerMessage::Event` as a JSON text frame (cheap to clone).
    pub json: axum::extract::ws::Utf8Bytes,
}

/// Why a hub operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// No room with this id.
    #[error("no such room")]
    NoSuchRoom,
    /// A room with this id exists (or existed).
    #[error("room already exists")]
    RoomExists,
    /// The request is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A uid or room id breaks the identity rule.
    #[error(transparent)]
    Id(#[from] onmic_room::IdError),
    /// The room id renders like an existing room's.
    #[error("room id renders like the existing room {0}; pick another")]
    ConfusableRoomId(RoomId),
    /// The room refused the command.
    #[error(transparent)]
    Room(#[from] RoomError),
    /// Storage failed, is behind, or has not saved the change yet.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long a reply waits for its change to be written before answering `not_saved`.
pub const DURABLE_WAIT: Duration = Duration::from_secs(5);

impl HubError {
    /// The wire error code.
    pub fn code(&self) -> &'static str {
        match self {
            HubError::NoSuchRoom => "no_such_room",
            HubError::RoomExists => "room_exists",
            HubError::Invalid(_) => "invalid_request",
            HubError::Id(e) => e.code(),
            HubError::ConfusableRoomId(_) => "confusable_room_id",
            HubError::Room(e) => e.code(),
            HubError::Store(StoreError::Behind { .. }) => "store_behind",
            HubError::Store(StoreError::NotSaved) => "not_saved",
            HubError::Store(_) => "internal",
        }
    }
}

struct Conn {
    id: u64,
    close: mpsc::UnboundedSender<CloseReason>,
}

struct RoomInner {
    room: Room,
    created_at: Timestamp,
    conns: HashMap<Uid, Conn>,
    /// Handed to another node ([`Hub::detach`]): commands and joins are refused.
    gone: bool,
}

struct RoomCell {
    inner: Mutex<RoomInner>,
    tx: broadcast::Sender<Frame>,
    /// `volume_indication` frames: not room events (no version), dropped for a lagging client.
    volumes: broadcast::Sender<axum::extract::ws::Utf8Bytes>,
}

impl RoomCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, RoomInner> {
        // The room is only mutated through `Room::handle`, which leaves it consistent even if a
        // later step panicked; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a joining connection gets.
pub struct Joined {
    /// The `joined` reply (snapshot first, lost seat included).
    pub reply: ServerMessage,
    /// Events after the snapshot.
    pub events: broadcast::Receiver<Frame>,
    /// Version of the snapshot; skip frames at or below it.
    pub version: u64,
    /// Close requests for this connection (replaced, kicked, timed out, dismissed).
    pub close: mpsc::UnboundedReceiver<CloseReason>,
    /// The connection's id in the room.
    pub conn_id: u64,
    /// `volume_indication` frames for this room.
    pub volumes: broadcast::Receiver<axum::extract::ws::Utf8Bytes>,
}

/// A room taken out of the hub for a handover ([`Hub::detach`]).
pub struct DetachedRoom {
    /// The room.
    pub id: RoomId,
    cell: Arc<RoomCell>,
}

impl std::fmt::Debug for DetachedRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetachedRoom")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A request to create a room.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct CreateRoom {
    /// Room id (the identity rule: 1-64 of `A-Z a-z 0-9 - _ .`, not `.` or `..`).
    pub id: RoomId,
    /// Owner uid.
    pub owner: Uid,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Regular seats (default from the config).
    #[serde(default)]
    pub seat_count: Option<u16>,
    /// Boss seat settings, if wanted.
    #[serde(default)]
    pub boss_seat: Option<onmic_room::BossSeatSettings>,
    /// Speaking mode.
    #[serde(default)]
    pub mode: onmic_room::RoomMode,
    /// Anti-bombing answer of this room (default: the server's `bombing_ban_ms`).
    #[serde(default)]
    pub bombing: Option<onmic_room::BombingAction>,
    /// Chat rules of this room (default: everyone may chat, no slow mode).
    #[serde(default)]
    pub chat: onmic_room::ChatRules,
}

/// What [`Hub::census`] counts.
#[derive(Debug, Default, Clone)]
pub struct Census {
    /// Every room held.
    pub ids: Vec<RoomId>,
    /// Of those, the dismissed ones.
    pub dismissed: Vec<RoomId>,
    /// Rooms not dismissed.
    pub active: usize,
    /// Members of those rooms.
    pub members: usize,
}

/// All rooms of this server.
pub struct Hub {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    /// Writes every change, in order, off the room locks.
    writer: StoreWriter,
    clock: Arc<dyn Clock>,
    rooms: RwLock<HashMap<RoomId, Arc<RoomCell>>>,
    next_conn: std::sync::atomic::AtomicU64,
    /// Woken when webhooks were written to the outbox.
    pub webhooks_queued: Arc<Notify>,
    /// WebSocket connections waiting to join, per IP address.
    prejoin: Arc<Mutex<HashMap<std::net::IpAddr, u32>>>,
}

/// A WebSocket connection that has not joined yet, counted against its address until dropped.
#[derive(Debug)]
pub struct PrejoinGuard {
    counts: Arc<Mutex<HashMap<std::net::IpAddr, u32>>>,
    ip: Option<std::net::IpAddr>,
}

impl Drop for PrejoinGuard {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&ip);
            }
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub over `store`, restoring every stored room.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Hub, StoreError> {
        let webhooks_queued = Arc::new(Notify::new());
        let wake = webhooks_queued.clone();
        let writer = StoreWriter::start(store.clone(), move |batch| {
            if !batch.webhooks.is_empty() {
                wake.notify_one();
            }
        })?;
        let hub = Hub {
            config,
            store,
            writer,
            clock,
            rooms: RwLock::new(HashMap::new()),
            next_conn: 1.into(),
            webhooks_queued,
            prejoin: Arc::default(),
        };
        let now = hub.clock.now();
        let mut rooms = HashMap::new();
        for rec in hub.store.load_rooms()? {
            let id = rec.state.id.clone();
            let room = Room::restore(rec.state, hub.policy(), now);
            rooms.insert(id, hub.cell(room, rec.created_at));
        }
        tracing::info!(rooms = rooms.len(), "rooms restored");
        *hub.rooms.write().unwrap_or_else(|p| p.into_inner()) = rooms;
        Ok(hub)
    }

    fn cell(&self, room: Room, created_at: Timestamp) -> Arc<RoomCell> {
        let (tx, _) = broadcast::channel(4096);
        // A few: an old volume report is worthless, a lagging client just skips them.
        let (volumes, _) = broadcast::channel(4);
        Arc::new(RoomCell {
            volumes,
            inner: Mutex::new(RoomInner {
                room,
                created_at,
                conns: HashMap::new(),
                gone: false,
            }),
            tx,
        })
    }

    /// Counts a connection from `ip` that has not joined yet; `None` when the address already
    /// has `max_prejoin_per_addr` of them. (No address, e.g. in-process: not limited.)
    pub fn prejoin_enter(&self, ip: Option<std::net::IpAddr>) -> Option<PrejoinGuard> {
        if let Some(ip) = ip {
            let mut counts = self.prejoin.lock().unwrap_or_else(|p| p.into_inner());
            let n = counts.entry(ip).or_insert(0);
            if *n >= self.config.max_prejoin_per_addr {
                return None;
            }
            *n += 1;
        }
        Some(PrejoinGuard {
            counts: self.prejoin.clone(),
            ip,
        })
    }

    /// The IM policy rooms get from the configuration.
    pub fn policy(&self) -> ImPolicy {
        ImPolicy {
            max_chat_chars: self.config.max_chat_chars,
            chat_burst: self.config.chat_burst,
            chat_window: Duration::from_millis(self.config.chat_window_ms),
            word_filter: self.config.word_filter.clone(),
            ..ImPolicy::default()
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store, for reads that see every change committed before the call: it first waits
    /// (up to [`DURABLE_WAIT`]) for the writer to write them. Call it off the room's lock.
    /// Writes go through the hub, in order.
    pub fn store(&self) -> &dyn Store {
        if !self.writer.flush_blocking(DURABLE_WAIT) {
            tracing::debug!("reading the store while its writer is behind");
        }
        &*self.store
    }

    /// Runs a read of the store ([`Hub::store`]: after the writer) on a blocking thread, so
    /// that an async handler never holds its runtime thread while the database answers (or
    /// does not).
    pub async fn read<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.on_blocking_thread(true, read).await
    }

    /// `call` on a blocking thread, with the store after the writer (`flushed`) or as it is.
    async fn on_blocking_thread<T, F>(
        self: &Arc<Self>,
        flushed: bool,
        call: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let hub = self.clone();
        tokio::task::spawn_blocking(move || {
            call(if flushed {
                hub.store()
            } else {
                hub.store_unflushed()
            })
        })
        .await
        .unwrap_or_else(|e| Err(StoreError::Io(std::io::Error::other(e.to_string()))))
    }

    /// Runs `call` on the store without waiting for the writer ([`Hub::store_unflushed`]), on a
    /// blocking thread: the webhook delivery worker's claims and updates, which must not hold a
    /// runtime thread while PostgreSQL is slow or gone (a held worker also holds the task it
    /// woke last, which no other worker may take: members' requests then waited for it).
    pub async fn call_unflushed<T, F>(self: &Arc<Self>, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.on_blocking_thread(false, call).await
    }

    /// The store for a read that must not wait for the writer (`/health`): it may miss changes
    /// of the last batch.
    pub fn store_unflushed(&self) -> &dyn Store {
        &*self.store
    }

    /// Waits, without holding a lock or blocking a thread, until every change made before this
    /// call is written; `not_saved` after [`DURABLE_WAIT`] (the change stays in effect and
    /// queued). Replies that tell a client "done" await this first.
    pub async fn durable(&self) -> Result<(), HubError> {
        let seq = self.writer.submitted();
        if self.writer.wait_written(seq, DURABLE_WAIT).await {
            Ok(())
        } else {
            Err(StoreError::NotSaved.into())
        }
    }

    /// The store writer's health (rows waiting, failing since when).
    pub fn store_status(&self) -> WriterStatus {
        self.writer.status()
    }

    /// Writes every pending change and stops the writer, waiting at most `timeout`; returns the
    /// rows that could not be written. For shutdown: later changes are not written.
    pub fn close_store(&self, timeout: Duration) -> usize {
        self.writer.close(timeout)
    }

    /// Queues a recording's listing for the store (no waiting).
    pub fn save_recording(&self, record: &RecordingRecord) {
        let record = record.clone();
        self.writer.submit(|b| {
            b.recordings.insert(record.id.clone(), record);
        });
    }

    /// Refuses a member's change while too many rows wait for the store (`store_queue_limit`).
    fn check_backlog(&self) -> Result<(), HubError> {
        let pending = self.writer.pending();
        if pending > self.config.store_queue_limit {
            return Err(StoreError::Behind { pending }.into());
        }
        Ok(())
    }

    /// Now, from the injected clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn get(&self, id: &RoomId) -> Result<Arc<RoomCell>, HubError> {
        self.rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or(HubError::NoSuchRoom)
    }

    fn all(&self) -> Vec<Arc<RoomCell>> {
        self.rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Creates a room.
    /// Creates a room and records it in the audit log as `actor`, from `local` (in-process
    /// callers such as the Studio's local room).
    pub fn create_room(&self, req: CreateRoom, actor: &str) -> Result<RoomState, HubError> {
        let detail = serde_json::json!({ "request": &req });
        let id = req.id.0.clone();
        let state = self.create_room_unaudited(req)?;
        self.audit(self.now(), actor, "local", &id, "create_room", &detail);
        Ok(state)
    }

    /// Creates a room without an audit entry, for callers that write their own (the REST API
    /// records every request with its origin).
    pub fn create_room_unaudited(&self, req: CreateRoom) -> Result<RoomState, HubError> {
        req.id.check().map_err(HubError::Id)?;
        req.owner.check().map_err(HubError::Id)?;
        if req.title.chars().count() > onmic_room::im::MAX_TITLE_CHARS {
            return Err(HubError::Invalid(format!(
                "title: at most {} characters",
                onmic_room::im::MAX_TITLE_CHARS
            )));
        }
        if !req.title.is_empty()
            && let Err(onmic_room::im::TextError::Control(c)) =
                onmic_room::im::check_text(&req.title, false)
        {
            return Err(HubError::Invalid(format!(
                "title may not contain the control character U+{c:04X}"
            )));
        }
        if let Some(boss) = &req.boss_seat {
            boss.check()?;
        }
        if let Some(bombing) = &req.bombing {
            bombing.check()?;
        }
        req.chat.check()?;
        let seat_count = req.seat_count.unwrap_or(self.config.seat_count);
        if seat_count == 0 || seat_count > 64 {
            return Err(HubError::Invalid("seat_count: 1-64".into()));
        }
        let settings = RoomSettings {
            seat_count,
            boss_seat: req.boss_seat.clone(),
            mode: req.mode,
            bombing: req.bombing,
            chat: req.chat,
            presence_timeout: Duration::from_millis(self.config.presence_timeout_ms),
            ..RoomSettings::default()
        };
        let now = self.now();
        let room = Room::new(
            req.id.clone(),
            req.owner.clone(),
            req.title.clone(),
            settings,
            self.policy(),
        );
        let state = room.snapshot();
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        if rooms.contains_key(&req.id) {
            return Err(HubError::RoomExists);
        }
        if let Some(other) = rooms
            .keys()
            .find(|other| onmic_room::ids::looks_alike(other.as_str(), req.id.as_str()))
        {
            return Err(HubError::ConfusableRoomId(other.clone()));
        }
        let row = RoomRow::of(&state, now)?;
        let hook = webhook::room_created(&self.config.app_id, &state, now);
        let hooks = self.webhook_rows(&[hook], now);
        // Submitted under the rooms' lock: the room's later commits come after this one.
        self.writer.submit(|b| {
            b.rooms.insert(row.id.clone(), row);
            b.webhooks.extend(hooks);
        });
        rooms.insert(req.id.clone(), self.cell(room, now));
        drop(rooms);
        Ok(state)
    }

    /// Whether this hub holds room `id` (dismissed or not).
    pub fn holds(&self, id: &RoomId) -> bool {
        self.get(id).is_ok()
    }

    /// Takes over a room another node held (cluster failover or draining): restores it from
    /// its stored record as a restart does (members kept, each with a fresh presence timeout;
    /// seats, mutes, bans and chat rules as stored). `false` if this hub holds it already.
    pub fn adopt(&self, rec: crate::store::RoomRecord) -> bool {
        let id = rec.state.id.clone();
        let now = self.now();
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        if rooms.contains_key(&id) {
            return false;
        }
        let room = Room::restore(rec.state, self.policy(), now);
        rooms.insert(id, self.cell(room, rec.created_at));
        true
    }

    /// Lets go of room `id` (another node owns it now): its connections are told the server is
    /// going away (`server_shutdown`, so clients reconnect, through any node, to its new node)
    /// and it is forgotten here. Returns its members' count, or `None` if not held.
    pub fn release(&self, id: &RoomId) -> Option<usize> {
        let cell = self
            .rooms
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)?;
        let mut inner = cell.lock();
        let members = inner.room.state().members.len();
        for (_, conn) in inner.conns.drain() {
            let _ = conn.close.send(CloseReason::ServerShutdown);
        }
        Some(members)
    }

    /// Takes room `id` out of this hub for a handover (draining): from now on its commands
    /// and joins are refused (`no_such_room`: the client reconnects) while its connections
    /// stay open until [`Hub::close_detached`]. Every change made before is submitted to the
    /// writer (await [`Hub::durable`] to have it written). `None` if not held or dismissed.
    pub fn detach(&self, id: &RoomId) -> Option<DetachedRoom> {
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        let cell = rooms.get(id)?.clone();
        {
            let mut inner = cell.lock();
            if inner.room.state().dismissed {
                return None;
            }
            inner.gone = true;
        }
        rooms.remove(id);
        Some(DetachedRoom {
            id: id.clone(),
            cell,
        })
    }

    /// Puts back a room whose handover failed.
    pub fn reattach(&self, d: DetachedRoom) {
        d.cell.lock().gone = false;
        self.rooms
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(d.id, d.cell);
    }

    /// Closes the connections of a room handed over, with `why`; returns how many.
    pub fn close_detached(&self, d: DetachedRoom, why: CloseReason) -> usize {
        let mut inner = d.cell.lock();
        let n = inner.conns.len();
        for (_, conn) in inner.conns.drain() {
            let _ = conn.close.send(why);
        }
        n
    }

    /// Ids of every room with its created time.
    pub fn list(&self) -> Vec<(RoomState, Timestamp)> {
        let mut v: Vec<_> = self
            .all()
            .iter()
            .map(|c| {
                let i = c.lock();
                (i.room.snapshot(), i.created_at)
            })
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
        v
    }

    /// A room's current state.
    pub fn snapshot(&self, id: &RoomId) -> Result<RoomState, HubError> {
        Ok(self.get(id)?.lock().room.snapshot())
    }

    /// Runs a command in a room; on success the events are persisted, queued and broadcast.
    pub fn execute(&self, id: &RoomId, command: Command) -> Result<Vec<Event>, HubError> {
        if matches!(command.actor, onmic_room::Actor::Member(_)) {
            self.check_backlog()?;
        }
        let cell = self.get(id)?;
        let mut inner = cell.lock();
        if inner.gone {
            return Err(HubError::NoSuchRoom);
        }
        let now = self.now();
        let events = inner.room.handle(now, command)?;
        self.commit(id, &cell, &mut inner, &events, now);
        Ok(events)
    }

    /// Queues webhooks for the outbox (through the writer, which wakes the delivery worker once
    /// they are written); nothing is queued when no `webhook_url` is configured (nobody would
    /// ever receive them).
    pub fn queue_webhooks(&self, hooks: &[(String, String)], now: Timestamp) {
        let rows = self.webhook_rows(hooks, now);
        if !rows.is_empty() {
            self.writer.submit(|b| b.webhooks.extend(rows));
        }
    }

    fn webhook_rows(&self, hooks: &[(String, String)], now: Timestamp) -> Vec<QueuedWebhook> {
        if self.config.webhook_url.is_none() {
            return Vec::new();
        }
        hooks
            .iter()
            .map(|(event_id, body)| QueuedWebhook {
                event_id: event_id.clone(),
                body: body.clone(),
                queued_at: now,
            })
            .collect()
    }

    /// Deletes what outlived its retention: webhooks delivered more than `webhook_retention_secs`
    /// ago, undelivered ones queued more than that ago (expired), and audit entries older than
    /// `audit_retention_days`. The server calls this every minute, on a blocking thread; like
    /// every read through [`Hub::store`] it first waits for the writer.
    pub fn prune(&self, now: Timestamp) {
        let store = self.store();
        let keep = Duration::from_secs(self.config.webhook_retention_secs);
        match store.prune_outbox(now.minus(keep), now.minus(keep)) {
            Ok((_, 0)) => {}
            Ok((_, expired)) => tracing::warn!(
                expired,
                "undelivered webhooks dropped after webhook_retention_secs; is the receiver at webhook_url up?"
            ),
            Err(e) => tracing::error!(%e, "pruning the webhook outbox failed"),
        }
        let days = Duration::from_secs(self.config.audit_retention_days.saturating_mul(86_400));
        if let Err(e) = store.prune_audit(now.minus(days)) {
            tracing::error!(%e, "pruning the audit log failed");
        }
    }

    /// Records an admin action or an issued token in the audit log (through the writer; a
    /// failing store is retried and logged there). `actor` is `rest:<key>`, `member:<uid>` or
    /// `cli`; `origin` the peer address.
    pub fn audit(
        &self,
        now: Timestamp,
        actor: &str,
        origin: &str,
        room: &str,
        action: &str,
        detail: &impl serde::Serialize,
    ) {
        let rec = AuditRecord {
            at: now,
            actor: actor.to_owned(),
            origin: origin.to_owned(),
            room: room.to_owned(),
            action: action.to_owned(),
            detail: serde_json::to_string(detail).unwrap_or_default(),
        };
        self.writer.submit(|b| b.audit.push(rec));
    }

    /// Hands the room's state, gifts and webhooks to the writer (one submit, no I/O),
    /// broadcasts, and closes connections the events end.
    fn commit(
        &self,
        id: &RoomId,
        cell: &RoomCell,
        inner: &mut RoomInner,
        events: &[Event],
        now: Timestamp,
    ) {
        if events.is_empty() {
            return;
        }
        // Serialized straight from the room, no copy of the state.
        let row = match RoomRow::of(inner.room.state(), inner.created_at) {
            Ok(row) => Some(row),
            Err(e) => {
                tracing::error!(room = %id, %e, "serializing the room failed; its state is not saved");
                None
            }
        };
        let gifts = gift_records(id.as_str(), events);
        let hooks = self.webhook_rows(&webhook::room_events(&self.config.app_id, id, events), now);
        // One submit: a batch holding this state holds these gifts and webhooks too.
        self.writer.submit(|b| {
            if let Some(row) = row {
                b.rooms.insert(row.id.clone(), row);
            }
            b.gifts.extend(gifts);
            b.webhooks.extend(hooks);
        });
        let mut closes = Vec::new();
        for event in events {
            let json = ServerMessage::Event {
                event: event.clone(),
            }
            .to_json()
            .into();
            // No receivers is fine: nobody is connected.
            let _ = cell.tx.send(Frame {
                event: Arc::new(event.clone()),
                json,
            });
            match &event.kind {
                EventKind::MemberLeft { uid, reason } => {
                    let why = match reason {
                        LeaveReason::Kicked => Some(CloseReason::Kicked),
                        LeaveReason::Timeout => Some(CloseReason::Timeout),
                        LeaveReason::Quit => None,
                    };
                    if let (Some(why), Some(conn)) = (why, inner.conns.remove(uid)) {
                        closes.push((conn, why));
                    }
                }
                EventKind::Dismissed => {
                    closes.extend(
                        inner
                            .conns
                            .drain()
                            .map(|(_, c)| (c, CloseReason::Dismissed)),
                    );
                }
                _ => {}
            }
        }
        // Close only after the whole batch is queued, so the closed member sees all of it.
        for (conn, why) in closes {
            let _ = conn.close.send(why);
        }
    }

    /// A member joins over a connection with verified token claims. The newest connection of a
    /// uid wins; the older one is told `replaced`.
    pub fn join(
        &self,
        id: &RoomId,
        claims: &Claims,
        req_id: Option<u64>,
    ) -> Result<Joined, HubError> {
        self.check_backlog()?;
        let cell = self.get(id)?;
        let mut inner = cell.lock();
        if inner.gone {
            return Err(HubError::NoSuchRoom);
        }
        let now = self.now();
        let enter = Action::Enter {
            uid: claims.uid.clone(),
            admin: claims.allows(Privilege::Admin, now),
            // A token signed elsewhere may run to u64::MAX: clamp it so that `publish_until`
            // still fits a JavaScript number when it is sent.
            publish_until: claims
                .valid_until(Privilege::PublishAudio, now)
                .map(|t| Timestamp(t.0.min(onmic_room::config::MAX_SAFE_INTEGER))),
        };
        let events = inner.room.handle(now, Command::system(enter))?;
        self.commit(id, &cell, &mut inner, &events, now);
        let rx = cell.tx.subscribe();
        let volumes = cell.volumes.subscribe();
        let (close_tx, close_rx) = mpsc::unbounded_channel();
        let conn_id = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(old) = inner.conns.insert(
            claims.uid.clone(),
            Conn {
                id: conn_id,
                close: close_tx,
            },
        ) {
            let _ = old.close.send(CloseReason::Replaced);
        }
        let lost_seat: Option<LostSeat> = inner.room.take_lost_seat(&claims.uid);
        let snapshot = inner.room.snapshot();
        let role = snapshot
            .role(&claims.uid)
            .unwrap_or(onmic_room::Role::Audience);
        let version = snapshot.version;
        let reply = ServerMessage::Joined {
            id: req_id,
            uid: claims.uid.clone(),
            role,
            snapshot,
            lost_seat,
            gifts: inner.room.policy().gifts.clone(),
            heartbeat_ms: self.config.presence_timeout_ms / 3,
        };
        Ok(Joined {
            reply,
            events: rx,
            version,
            close: close_rx,
            conn_id,
            volumes,
        })
    }

    /// A connection ended; forget it if it is still the uid's current one. The member stays in
    /// the room until it leaves or the presence timeout takes it.
    pub fn disconnected(&self, id: &RoomId, uid: &Uid, conn_id: u64) {
        if let Ok(cell) = self.get(id) {
            let mut inner = cell.lock();
            if inner.conns.get(uid).is_some_and(|c| c.id == conn_id) {
                inner.conns.remove(uid);
            }
        }
    }

    /// Records that a member was heard from.
    pub fn touch(&self, id: &RoomId, uid: &Uid) {
        if let Ok(cell) = self.get(id) {
            let now = self.now();
            cell.lock().room.touch(uid, now);
        }
    }

    /// Media seam: may `uid` publish audio in room `id` right now?
    pub fn may_publish(&self, id: &RoomId, uid: &Uid) -> bool {
        let now = self.now();
        self.get(id)
            .map(|c| c.lock().room.may_publish(uid, now))
            .unwrap_or(false)
    }

    /// Media seam: every event of a room from now on (seat, mute, floor and membership changes).
    pub fn subscribe(&self, id: &RoomId) -> Result<broadcast::Receiver<Frame>, HubError> {
        Ok(self.get(id)?.tx.subscribe())
    }

    /// Media seam: audio was seen from a member who may not publish (raises the event and the
    /// `bombing_detected` webhook).
    pub fn report_bombing(&self, id: &RoomId, uid: &Uid, detail: &str) -> Result<(), HubError> {
        let action = Action::ReportBombing {
            uid: uid.clone(),
            detail: detail.to_owned(),
        };
        self.execute(id, Command::system(action)).map(|_| ())
    }

    /// Media seam: pushes one `volume_indication` to every connection of the room (the SFU's
    /// levels; see `sfu::level::VolumeGate` for when).
    pub fn push_volumes(&self, id: &RoomId, speakers: Vec<SpeakerVolume>) -> Result<(), HubError> {
        let cell = self.get(id)?;
        let json = ServerMessage::VolumeIndication { speakers }.to_json();
        // No receivers is fine: nobody is connected.
        let _ = cell.volumes.send(json.into());
        Ok(())
    }

    /// Every room this hub holds (dismissed ones too), and the rooms not dismissed with their
    /// members: a node's load for the cluster registry and `/metrics`.
    pub fn census(&self) -> Census {
        let mut census = Census::default();
        for cell in self.all() {
            let inner = cell.lock();
            let state = inner.room.state();
            census.ids.push(state.id.clone());
            if state.dismissed {
                census.dismissed.push(state.id.clone());
            } else {
                census.active += 1;
                census.members += state.members.len();
            }
        }
        census
    }

    /// How many members room `id` has, and its version (for `member_count`).
    pub fn member_count(&self, id: &RoomId) -> Result<(usize, u64), HubError> {
        let cell = self.get(id)?;
        let inner = cell.lock();
        let state = inner.room.state();
        Ok((state.members.len(), state.version))
    }

    /// One page of room `id`'s members in uid order, after `after` (none: from the first), at
    /// most `limit`: the page, the uid to continue after (none: last page) and how many members
    /// the room has. Costs the page, not the room.
    pub fn members_page(
        &self,
        id: &RoomId,
        after: Option<&Uid>,
        limit: usize,
    ) -> Result<(Vec<onmic_room::Member>, Option<Uid>, usize), HubError> {
        use std::ops::Bound;
        let cell = self.get(id)?;
        let inner = cell.lock();
        let members = &inner.room.state().members;
        let from = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.clone()));
        let mut page: Vec<onmic_room::Member> = members
            .range((from, Bound::Unbounded))
            .take(limit.saturating_add(1))
            .map(|(_, m)| m.clone())
            .collect();
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|m| m.uid.clone())
        } else {
            None
        };
        Ok((page, next, members.len()))
    }

    /// Fires due room timers; the server calls this periodically.
    pub fn tick(&self) {
        let now = self.now();
        for cell in self.all() {
            let mut inner = cell.lock();
            if inner.room.poll_timeout().is_some_and(|t| t <= now) {
                let events = inner.room.handle_timeout(now);
                let id = inner.room.state().id.clone();
                self.commit(&id, &cell, &mut inner, &events, now);
            }
        }
    }

    /// Tells every connection the server is going away.
    pub fn shutdown(&self) {
        for cell in self.all() {
            for (_, conn) in cell.lock().conns.drain() {
                let _ = conn.close.send(CloseReason::ServerShutdown);
            }
        }
    }
}
