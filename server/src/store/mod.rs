//! Persistence behind the [`Store`] trait: rooms (with seats and bans, as the room's state),
//! the gift ledger, the webhook outbox, the audit log, recordings and the song catalog.
//!
//! Two backends implement it: [`SqliteStore`] (one file, the default) and [`PgStore`]
//! (PostgreSQL, chosen with `database_url`, shared by several nodes). Room changes do not write
//! here directly: the hub hands them to a [`StoreWriter`] (one thread per store), which writes
//! them in order, in batches, each batch in one transaction ([`Store::write_batch`]). Reads go
//! straight to the store.

mod postgres;
mod sqlite;
mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;

use onmic_room::{Event, EventKind, RoomState, Timestamp};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use writer::{StoreWriter, WriterStatus};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused, or could not be reached.
    #[error("PostgreSQL error: {0}")]
    Postgres(String),
    /// A stored room state (JSON) could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// A stored row holds a value this server cannot use (a negative count, a key of the wrong
    /// length, ...).
    #[error("stored data is malformed: {0}")]
    Malformed(String),
    /// The database directory could not be created.
    #[error("cannot create the database directory: {0}")]
    Io(#[from] std::io::Error),
    /// The database holds a newer schema than this server knows.
    #[error(
        "the database's schema is version {found}, newer than this server's {known}; run a newer onmic-server"
    )]
    NewerSchema {
        /// The schema version found.
        found: i64,
        /// The newest version this build knows.
        known: usize,
    },
    /// Too many changes wait for the store (`store_queue_limit`): a member's request is refused
    /// rather than accepted and maybe lost.
    #[error("the store is behind ({pending} changes waiting to be written); try again shortly")]
    Behind {
        /// Changes waiting.
        pending: usize,
    },
    /// The store cannot do this (e.g. SQLite, which nodes do not share).
    #[error("not supported by this store: {0}")]
    Unsupported(&'static str),
    /// The change is in effect but was not written within the reply's wait: the writer keeps
    /// retrying, and the change is lost if the server stops before the store recovers.
    #[error(
        "the change is in effect but not saved yet (the store is failing or slow); the server keeps retrying"
    )]
    NotSaved,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        // `Display` of a server error is only its severity; the source has the message.
        match e.as_db_error() {
            Some(db) => StoreError::Postgres(format!(
                "{}: {}{}",
                db.code().code(),
                db.message(),
                db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
            )),
            None => StoreError::Postgres(match std::error::Error::source(&e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            }),
        }
    }
}

/// A stored room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomRecord {
    /// The room's full state (seats, bans, members, history).
    pub state: RoomState,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A room's state as one row: serialized once, under the room's lock, by the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRow {
    /// Room id.
    pub id: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// The state's version.
    pub version: u64,
    /// Whether it is dismissed.
    pub dismissed: bool,
    /// The state as JSON (`RoomState`).
    pub state: String,
}

impl RoomRow {
    /// The row of `state`.
    pub fn of(state: &RoomState, created_at: Timestamp) -> Result<RoomRow, StoreError> {
        Ok(RoomRow {
            id: state.id.as_str().to_owned(),
            created_at,
            version: state.version,
            dismissed: state.dismissed,
            state: serde_json::to_string(state)?,
        })
    }
}

/// One gift in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GiftRecord {
    /// Room.
    pub room: String,
    /// The room version of the gift event (unique per room).
    pub version: u64,
    /// When.
    pub at: Timestamp,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: Option<String>,
    /// Gift id.
    pub gift: String,
    /// Count.
    pub count: u32,
    /// Total value.
    pub value: u64,
}

/// A webhook to queue in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedWebhook {
    /// Unique event id (queueing the same id twice keeps the first).
    pub event_id: String,
    /// The exact body to POST.
    pub body: String,
    /// When it was queued (also its first due time).
    pub queued_at: Timestamp,
}

/// A webhook waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Row id.
    pub id: i64,
    /// Unique event id, sent to the receiver for de-duplication.
    pub event_id: String,
    /// The exact body to POST.
    pub body: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this time.
    pub next_at: Timestamp,
}

/// An admin action (or an issued token) in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// When.
    pub at: Timestamp,
    /// Who: `rest:<customer_key>` for the REST API, `member:<uid>` for a member over WebSocket,
    /// `cli` for `onmic-server token`.
    pub actor: String,
    /// From where: the peer's IP address and port, or `local` (command line, in-process).
    #[serde(default)]
    pub origin: String,
    /// Room (empty when none applies).
    pub room: String,
    /// What.
    pub action: String,
    /// Details (JSON).
    pub detail: String,
}

/// A recording of a room's mix (an Ogg Opus file under the data directory).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordingRecord {
    /// Unique id.
    pub id: String,
    /// Room.
    pub room: String,
    /// Path of the Ogg Opus file.
    pub file: String,
    /// When recording started.
    pub started_at: Timestamp,
    /// When it stopped (none while recording).
    pub stopped_at: Option<Timestamp>,
    /// Audio duration in milliseconds (once stopped).
    pub duration_ms: Option<u64>,
    /// File size in bytes (once stopped).
    pub bytes: Option<u64>,
    /// `recording`, `done`, `failed`, or `interrupted` (the server stopped without finishing
    /// it; the file is readable up to its last complete page).
    pub status: String,
    /// Why it stopped: `request`, `dismissed`, `shutdown`, or an error.
    pub reason: Option<String>,
    /// Packets the recorder could not take in time (dropped, not blocking forwarding).
    pub dropped_packets: u64,
}

impl RecordingRecord {
    /// The listing of a recording that has just started.
    pub fn started(id: String, room: String, file: String, started_at: Timestamp) -> Self {
        Self {
            id,
            room,
            file,
            started_at,
            stopped_at: None,
            duration_ms: None,
            bytes: None,
            status: "recording".into(),
            reason: None,
            dropped_packets: 0,
        }
    }
}

/// Writes that go to the store together, in one transaction: the latest state of each room
/// and recording (a newer one replaces an older one not yet written), and every gift, webhook
/// and audit entry in the order they were made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// Room states by id (the latest).
    pub rooms: BTreeMap<String, RoomRow>,
    /// Gift ledger rows (idempotent per room and version).
    pub gifts: Vec<GiftRecord>,
    /// Webhooks for the outbox (idempotent per event id).
    pub webhooks: Vec<QueuedWebhook>,
    /// Audit log entries.
    pub audit: Vec<AuditRecord>,
    /// Recordings by id (the latest).
    pub recordings: BTreeMap<String, RecordingRecord>,
}

impl WriteBatch {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows to write.
    pub fn len(&self) -> usize {
        self.rooms.len()
            + self.gifts.len()
            + self.webhooks.len()
            + self.audit.len()
            + self.recordings.len()
    }

    /// Adds `newer` after this batch: newer room and recording states win, the rest appends.
    pub fn append(&mut self, newer: WriteBatch) {
        self.rooms.extend(newer.rooms);
        self.recordings.extend(newer.recordings);
        self.gifts.extend(newer.gifts);
        self.webhooks.extend(newer.webhooks);
        self.audit.extend(newer.audit);
    }
}

/// Everything the server persists.
pub trait Store: Send + Sync + 'static {
    /// Writes a batch atomically (all of it or nothing); rows already there (same room and
    /// version of a gift, same webhook event id) are kept, not duplicated.
    fn write_batch(&self, batch: &WriteBatch) -> Result<(), StoreError>;
    /// All rooms.
    fn load_rooms(&self) -> Result<Vec<RoomRecord>, StoreError>;
    /// Makes room `room` node `to`'s if node `from` owns it (`from` `None`: nobody does), and
    /// returns it; `None` when it is not `from`'s (another node claimed it first, or no such
    /// room). A cluster's failover and draining move rooms with this; a store that nodes
    /// cannot share (SQLite) refuses.
    fn claim_room(
        &self,
        room: &str,
        from: &str,
        to: &str,
    ) -> Result<Option<RoomRecord>, StoreError> {
        let _ = (room, from, to);
        Err(StoreError::Unsupported(
            "moving a room between nodes needs a shared store (database_url)",
        ))
    }
    /// Rooms not dismissed whose owner is none of `live` (their node is gone): (room, node),
    /// oldest first, at most `limit`. Empty for a store nodes do not share.
    fn orphaned_rooms(
        &self,
        live: &[String],
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let _ = (live, limit);
        Ok(Vec::new())
    }
    /// Undelivered webhooks due at `now`, oldest first, taken for this node to deliver: no
    /// other node sharing the store gets them until this one reports them delivered or failed
    /// (or releases them). A store of one node just reads them ([`Store::due_webhooks`]).
    fn claim_webhooks(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        self.due_webhooks(now, limit)
    }
    /// Makes the webhooks claimed by node `of` (`None`: this node) and not delivered due
    /// again, for any node; returns how many.
    fn release_webhooks(&self, of: Option<&str>) -> Result<usize, StoreError> {
        let _ = of;
        Ok(0)
    }
    /// The ledger of one room, oldest first.
    fn gifts(&self, room: &str) -> Result<Vec<GiftRecord>, StoreError>;
    /// Undelivered webhooks due at `now`, oldest first.
    fn due_webhooks(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;
    /// The earliest pending webhook's due time.
    fn next_webhook_at(&self) -> Result<Option<Timestamp>, StoreError>;
    /// Marks a webhook delivered at `at`.
    fn webhook_delivered(&self, id: i64, at: Timestamp) -> Result<(), StoreError>;
    /// Records a failed attempt and when to try again.
    fn webhook_failed(&self, id: i64, next_at: Timestamp, error: &str) -> Result<(), StoreError>;
    /// The audit log, oldest first: one room's (or every room's, `None`), from `since` on, at most
    /// `limit` entries.
    fn audit_log(
        &self,
        room: Option<&str>,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// Deletes audit entries older than `before`; returns how many.
    fn prune_audit(&self, before: Timestamp) -> Result<usize, StoreError>;
    /// Deletes webhooks delivered before `delivered_before` and undelivered ones queued before
    /// `queued_before` (expired); returns (delivered, expired) counts.
    fn prune_outbox(
        &self,
        delivered_before: Timestamp,
        queued_before: Timestamp,
    ) -> Result<(usize, usize), StoreError>;
    /// Rows in the webhook outbox: (pending, delivered but kept).
    fn outbox_size(&self) -> Result<(u64, u64), StoreError>;
    /// The recordings of one room, oldest first.
    fn recordings(&self, room: &str) -> Result<Vec<RecordingRecord>, StoreError>;
    /// Marks recordings still `recording` as `interrupted` (at start-up: their server stopped
    /// without finishing them); returns how many.
    fn interrupt_recordings(&self) -> Result<usize, StoreError>;
    /// Adds a song to the DRM catalog; `false` if its code is taken.
    fn insert_song(&self, song: &crate::songs::SongRecord) -> Result<bool, StoreError>;
    /// Catalog entries whose code, title or artist contains `query` (case-insensitive), by
    /// title, at most `limit`.
    fn search_songs(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<crate::songs::SongSummary>, StoreError>;
    /// One song with its key, lyrics and encrypted package.
    fn song(&self, code: &str) -> Result<Option<crate::songs::SongRecord>, StoreError>;

    /// Inserts or replaces a room's state (a batch of one).
    fn save_room(&self, state: &RoomState, created_at: Timestamp) -> Result<(), StoreError> {
        let row = RoomRow::of(state, created_at)?;
        let mut batch = WriteBatch::default();
        batch.rooms.insert(row.id.clone(), row);
        self.write_batch(&batch)
    }
    /// Appends gifts to the ledger (idempotent per room and version).
    fn record_gifts(&self, gifts: &[GiftRecord]) -> Result<(), StoreError> {
        self.write_batch(&WriteBatch {
            gifts: gifts.to_vec(),
            ..WriteBatch::default()
        })
    }
    /// Queues webhooks (idempotent per event id).
    fn enqueue_webhooks(
        &self,
        items: &[(String, String)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let webhooks = items
            .iter()
            .map(|(event_id, body)| QueuedWebhook {
                event_id: event_id.clone(),
                body: body.clone(),
                queued_at: now,
            })
            .collect();
        self.write_batch(&WriteBatch {
            webhooks,
            ..WriteBatch::default()
        })
    }
    /// Appends to the audit log.
    fn audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.write_batch(&WriteBatch {
            audit: vec![record.clone()],
            ..WriteBatch::default()
        })
    }
    /// Inserts or updates a recording (by id).
    fn save_recording(&self, record: &RecordingRecord) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.recordings.insert(record.id.clone(), record.clone());
        self.write_batch(&batch)
    }
}

/// Opens the configured store: PostgreSQL when `database_url` is set, else the SQLite file
/// (`database`, default `<data_dir>/onmic.sqlite3`). Both create or migrate their schema.
pub fn open(config: &crate::Config) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.database_url {
        // In a cluster the database is shared: the node owns only its rooms.
        Some(url) => Arc::new(PgStore::connect_as(
            url,
            config
                .cluster_redis
                .is_some()
                .then(|| config.node_name.clone()),
        )?),
        None => Arc::new(SqliteStore::open(&config.database_path())?),
    })
}

/// The `LIKE` pattern (escape character `\`) that finds `query` anywhere, case folded: its
/// `\`, `%` and `_` match themselves. Both stores' song search uses it.
pub(crate) fn like_pattern(query: &str) -> String {
    let escaped = query
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Gift ledger rows for the gift events among `events`.
pub fn gift_records(room: &str, events: &[Event]) -> Vec<GiftRecord> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Gift {
                from,
                to,
                gift,
                count,
                value,
            } => Some(GiftRecord {
                room: room.to_owned(),
                version: e.version,
                at: e.at,
                from: from.0.clone(),
                to: to.as_ref().map(|t| t.0.clone()),
                gift: gift.0.clone(),
                count: *count,
                value: *value,
            }),
            _ => None,
        })
        .collect()
}

/// A timestamp or count as the databases' signed 64-bit integer (clamped; no real value is
/// near `i64::MAX`).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored signed integer as an unsigned one; a negative value is a malformed row.
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Malformed(format!("{what} is negative ({v})")))
}

/// A row limit as the databases' integer.
pub(crate) fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
