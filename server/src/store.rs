//! Persistence behind the [`Store`] trait: rooms (with seats and bans, as the room's state),
//! the gift ledger, the webhook outbox and the audit log. [`SqliteStore`] is the default; other
//! backends (PostgreSQL for multi-node, DESIGN §7) implement the same trait.

use std::path::Path;
use std::sync::Mutex;

use onmic_room::{Event, EventKind, RoomState, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The database directory could not be created.
    #[error("cannot create the database directory: {0}")]
    Io(#[from] std::io::Error),
}

/// A stored room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomRecord {
    /// The room's full state (seats, bans, members, history).
    pub state: RoomState,
    /// When it was created.
    pub created_at: Timestamp,
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

/// Everything the server persists.
pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces a room's state.
    fn save_room(&self, state: &RoomState, created_at: Timestamp) -> Result<(), StoreError>;
    /// All rooms.
    fn load_rooms(&self) -> Result<Vec<RoomRecord>, StoreError>;
    /// Appends gifts to the ledger (idempotent per room and version).
    fn record_gifts(&self, gifts: &[GiftRecord]) -> Result<(), StoreError>;
    /// The ledger of one room, oldest first.
    fn gifts(&self, room: &str) -> Result<Vec<GiftRecord>, StoreError>;
    /// Queues webhooks (idempotent per event id).
    fn enqueue_webhooks(
        &self,
        items: &[(String, String)],
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Undelivered webhooks due at `now`, oldest first.
    fn due_webhooks(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;
    /// The earliest pending webhook's due time.
    fn next_webhook_at(&self) -> Result<Option<Timestamp>, StoreError>;
    /// Marks a webhook delivered at `at`.
    fn webhook_delivered(&self, id: i64, at: Timestamp) -> Result<(), StoreError>;
    /// Records a failed attempt and when to try again.
    fn webhook_failed(&self, id: i64, next_at: Timestamp, error: &str) -> Result<(), StoreError>;
    /// Appends to the audit log.
    fn audit(&self, record: &AuditRecord) -> Result<(), StoreError>;
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
    /// Inserts or updates a recording (by id).
    fn save_recording(&self, record: &RecordingRecord) -> Result<(), StoreError>;
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

const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE rooms (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        version INTEGER NOT NULL,
        dismissed INTEGER NOT NULL,
        state TEXT NOT NULL
     );
     CREATE TABLE gifts (
        room TEXT NOT NULL,
        version INTEGER NOT NULL,
        at INTEGER NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT,
        gift TEXT NOT NULL,
        count INTEGER NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (room, version)
     );
     CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL,
        delivered_at INTEGER,
        last_error TEXT
     );
     CREATE INDEX outbox_due ON outbox (delivered_at, next_at);
     CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        room TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
     );",
    // 2: recordings.
    "CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        room TEXT NOT NULL,
        file TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        stopped_at INTEGER,
        duration_ms INTEGER,
        bytes INTEGER,
        status TEXT NOT NULL,
        reason TEXT,
        dropped_packets INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX recordings_room ON recordings (room, started_at);",
    // 3: retention (queued time of webhooks), the audit log's origin, indexes for pruning.
    "ALTER TABLE outbox ADD COLUMN queued_at INTEGER NOT NULL DEFAULT 0;
     UPDATE outbox SET queued_at = next_at;
     CREATE INDEX outbox_delivered ON outbox (delivered_at);
     CREATE INDEX outbox_queued ON outbox (queued_at);
     ALTER TABLE audit ADD COLUMN origin TEXT NOT NULL DEFAULT '';
     CREATE INDEX audit_at ON audit (at);
     CREATE INDEX audit_room ON audit (room, id);",
    // 4: the DRM song catalog (`songs`): the package is encrypted, the key is the song's own.
    "CREATE TABLE songs (
        code TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        artist TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        lyrics TEXT,
        song_key BLOB NOT NULL,
        package BLOB NOT NULL,
        imported_at INTEGER NOT NULL
     );",
];

/// The SQLite store: one file, WAL mode, schema migrations by `user_version`.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`; `:memory:` opens a private one.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()?
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Connection::open(path)?
        };
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let have: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let have = usize::try_from(have).unwrap_or(0);
        for (i, m) in MIGRATIONS.iter().enumerate().skip(have) {
            conn.execute_batch(&format!(
                "BEGIN; {m} PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))?;
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (statements are atomic).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn ts(v: i64) -> Timestamp {
    Timestamp(u64::try_from(v).unwrap_or(0))
}

fn sql_ts(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

impl Store for SqliteStore {
    fn save_room(&self, state: &RoomState, created_at: Timestamp) -> Result<(), StoreError> {
        let json = serde_json::to_string(state)?;
        self.conn().execute(
            "INSERT INTO rooms (id, created_at, version, dismissed, state) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET version = ?3, dismissed = ?4, state = ?5",
            params![
                state.id.as_str(),
                sql_ts(created_at),
                i64::try_from(state.version).unwrap_or(i64::MAX),
                state.dismissed,
                json
            ],
        )?;
        Ok(())
    }

    fn load_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT created_at, state FROM rooms ORDER BY created_at")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (created, json) = row?;
            out.push(RoomRecord {
                state: serde_json::from_str(&json)?,
                created_at: ts(created),
            });
        }
        Ok(out)
    }

    fn record_gifts(&self, gifts: &[GiftRecord]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for g in gifts {
            tx.execute(
                "INSERT OR IGNORE INTO gifts (room, version, at, sender, recipient, gift, count, value)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    g.room,
                    i64::try_from(g.version).unwrap_or(i64::MAX),
                    sql_ts(g.at),
                    g.from,
                    g.to,
                    g.gift,
                    g.count,
                    i64::try_from(g.value).unwrap_or(i64::MAX)
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn gifts(&self, room: &str) -> Result<Vec<GiftRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT version, at, sender, recipient, gift, count, value FROM gifts
             WHERE room = ?1 ORDER BY version",
        )?;
        let rows = stmt.query_map([room], |r| {
            Ok(GiftRecord {
                room: room.to_owned(),
                version: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                at: ts(r.get(1)?),
                from: r.get(2)?,
                to: r.get(3)?,
                gift: r.get(4)?,
                count: r.get(5)?,
                value: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn enqueue_webhooks(
        &self,
        items: &[(String, String)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (event_id, body) in items {
            tx.execute(
                "INSERT OR IGNORE INTO outbox (event_id, body, next_at, queued_at) VALUES (?1, ?2, ?3, ?3)",
                params![event_id, body, sql_ts(now)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn due_webhooks(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, event_id, body, attempts, next_at FROM outbox
             WHERE delivered_at IS NULL AND next_at <= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![sql_ts(now), i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(OutboxItem {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    body: r.get(2)?,
                    attempts: r.get(3)?,
                    next_at: ts(r.get(4)?),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn next_webhook_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let v: Option<i64> = self
            .conn()
            .query_row(
                "SELECT MIN(next_at) FROM outbox WHERE delivered_at IS NULL",
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(v.map(ts))
    }

    fn webhook_delivered(&self, id: i64, at: Timestamp) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1 WHERE id = ?1",
            params![id, sql_ts(at)],
        )?;
        Ok(())
    }

    fn webhook_failed(&self, id: i64, next_at: Timestamp, error: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3 WHERE id = ?1",
            params![id, sql_ts(next_at), error],
        )?;
        Ok(())
    }

    fn audit(&self, r: &AuditRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO audit (at, actor, origin, room, action, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![sql_ts(r.at), r.actor, r.origin, r.room, r.action, r.detail],
        )?;
        Ok(())
    }

    fn audit_log(
        &self,
        room: Option<&str>,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at, actor, origin, room, action, detail FROM audit
             WHERE (?1 IS NULL OR room = ?1) AND at >= ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                room,
                sql_ts(since),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(AuditRecord {
                    at: ts(r.get(0)?),
                    actor: r.get(1)?,
                    origin: r.get(2)?,
                    room: r.get(3)?,
                    action: r.get(4)?,
                    detail: r.get(5)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn prune_audit(&self, before: Timestamp) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM audit WHERE at < ?1", [sql_ts(before)])?)
    }

    fn prune_outbox(
        &self,
        delivered_before: Timestamp,
        queued_before: Timestamp,
    ) -> Result<(usize, usize), StoreError> {
        let conn = self.conn();
        let delivered = conn.execute(
            "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?1",
            [sql_ts(delivered_before)],
        )?;
        let expired = conn.execute(
            "DELETE FROM outbox WHERE delivered_at IS NULL AND queued_at < ?1",
            [sql_ts(queued_before)],
        )?;
        Ok((delivered, expired))
    }

    fn outbox_size(&self) -> Result<(u64, u64), StoreError> {
        let (pending, delivered): (i64, i64) = self.conn().query_row(
            "SELECT COUNT(*) - COUNT(delivered_at), COUNT(delivered_at) FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((
            u64::try_from(pending).unwrap_or(0),
            u64::try_from(delivered).unwrap_or(0),
        ))
    }

    fn save_recording(&self, r: &RecordingRecord) -> Result<(), StoreError> {
        let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.conn().execute(
            "INSERT INTO recordings
                (id, room, file, started_at, stopped_at, duration_ms, bytes, status, reason, dropped_packets)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(id) DO UPDATE SET stopped_at = ?5, duration_ms = ?6, bytes = ?7,
                status = ?8, reason = ?9, dropped_packets = ?10",
            params![
                r.id,
                r.room,
                r.file,
                sql_ts(r.started_at),
                r.stopped_at.map(sql_ts),
                r.duration_ms.map(big),
                r.bytes.map(big),
                r.status,
                r.reason,
                big(r.dropped_packets)
            ],
        )?;
        Ok(())
    }

    fn recordings(&self, room: &str) -> Result<Vec<RecordingRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, room, file, started_at, stopped_at, duration_ms, bytes, status, reason,
                    dropped_packets
             FROM recordings WHERE room = ?1 ORDER BY started_at, id",
        )?;
        let un = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
        let rows = stmt.query_map([room], |r| {
            Ok(RecordingRecord {
                id: r.get(0)?,
                room: r.get(1)?,
                file: r.get(2)?,
                started_at: ts(r.get(3)?),
                stopped_at: r.get::<_, Option<i64>>(4)?.map(ts),
                duration_ms: un(r.get(5)?),
                bytes: un(r.get(6)?),
                status: r.get(7)?,
                reason: r.get(8)?,
                dropped_packets: un(r.get(9)?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn interrupt_recordings(&self) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "UPDATE recordings SET status = 'interrupted', reason = 'server stopped'
             WHERE status = 'recording'",
            [],
        )?)
    }

    fn insert_song(&self, s: &crate::songs::SongRecord) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO songs
             (code, title, artist, duration_ms, lyrics, song_key, package, imported_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                s.code,
                s.title,
                s.artist,
                i64::try_from(s.duration_ms).unwrap_or(i64::MAX),
                s.lyrics,
                &s.key[..],
                s.package,
                sql_ts(s.imported_at)
            ],
        )?;
        Ok(n == 1)
    }

    fn search_songs(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<crate::songs::SongSummary>, StoreError> {
        let escaped = query
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = format!("%{escaped}%");
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT code, title, artist, duration_ms, length(package), lyrics IS NOT NULL
             FROM songs
             WHERE lower(code) LIKE ?1 ESCAPE '\\' OR lower(title) LIKE ?1 ESCAPE '\\'
                OR lower(artist) LIKE ?1 ESCAPE '\\'
             ORDER BY title, code LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![pattern, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(crate::songs::SongSummary {
                    code: r.get(0)?,
                    title: r.get(1)?,
                    artist: r.get(2)?,
                    duration_ms: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                    package_bytes: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                    has_lyrics: r.get(5)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn song(&self, code: &str) -> Result<Option<crate::songs::SongRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT code, title, artist, duration_ms, lyrics, song_key, package, imported_at
                 FROM songs WHERE code = ?1",
                params![code],
                |r| {
                    let key: Vec<u8> = r.get(5)?;
                    Ok(crate::songs::SongRecord {
                        code: r.get(0)?,
                        title: r.get(1)?,
                        artist: r.get(2)?,
                        duration_ms: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                        lyrics: r.get(4)?,
                        key: key.try_into().unwrap_or([0; 32]),
                        package: r.get(6)?,
                        imported_at: ts(r.get(7)?),
                    })
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onmic_room::RoomSettings;

    #[test]
    fn rooms_gifts_outbox_and_audit_survive_reopening() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("db/onmic.sqlite3");
        {
            let s = SqliteStore::open(&path).expect("open");
            let state = RoomState::new("r".into(), "o".into(), "t".into(), RoomSettings::default());
            s.save_room(&state, Timestamp(5)).expect("save");
            let g = GiftRecord {
                room: "r".into(),
                version: 3,
                at: Timestamp(9),
                from: "a".into(),
                to: None,
                gift: "rose".into(),
                count: 2,
                value: 2,
            };
            s.record_gifts(&[g.clone(), g]).expect("gifts, twice");
            let items = vec![("e1".to_owned(), "{}".to_owned())];
            s.enqueue_webhooks(&items, Timestamp(1)).expect("queue");
            s.enqueue_webhooks(&items, Timestamp(1))
                .expect("queue again");
            s.audit(&AuditRecord {
                origin: "127.0.0.1:1".into(),
                at: Timestamp(1),
                actor: "k".into(),
                room: "r".into(),
                action: "kick".into(),
                detail: "{}".into(),
            })
            .expect("audit");
        }
        let s = SqliteStore::open(&path).expect("reopen");
        assert_eq!(s.load_rooms().expect("rooms").len(), 1);
        assert_eq!(s.gifts("r").expect("gifts").len(), 1);
        let due = s.due_webhooks(Timestamp(1), 10).expect("due");
        assert_eq!(due.len(), 1);
        s.webhook_failed(due[0].id, Timestamp(100), "500")
            .expect("fail");
        assert!(s.due_webhooks(Timestamp(99), 10).expect("due").is_empty());
        assert_eq!(s.next_webhook_at().expect("next"), Some(Timestamp(100)));
        s.webhook_delivered(due[0].id, Timestamp(100))
            .expect("done");
        assert_eq!(s.next_webhook_at().expect("next"), None);
        assert_eq!(
            s.audit_log(Some("r"), Timestamp(0), 10)
                .expect("audit")
                .len(),
            1
        );
    }

    #[test]
    fn outbox_and_audit_are_pruned_by_age() {
        let s = SqliteStore::open(Path::new(":memory:")).expect("open");
        let items: Vec<_> = (0..10)
            .map(|i| (format!("e{i}"), "{}".to_owned()))
            .collect();
        s.enqueue_webhooks(&items[..5], Timestamp(1_000))
            .expect("queue");
        s.enqueue_webhooks(&items[5..], Timestamp(5_000))
            .expect("queue");
        for it in s.due_webhooks(Timestamp(1_000), 3).expect("due") {
            s.webhook_delivered(it.id, Timestamp(2_000))
                .expect("delivered");
        }
        assert_eq!(s.outbox_size().expect("size"), (7, 3));
        // Delivered before 3000 go; undelivered queued before 3000 expire.
        assert_eq!(
            s.prune_outbox(Timestamp(3_000), Timestamp(3_000))
                .expect("prune"),
            (3, 2)
        );
        assert_eq!(s.outbox_size().expect("size"), (5, 0));
        for at in [10, 20, 30] {
            s.audit(&AuditRecord {
                at: Timestamp(at),
                actor: "k".into(),
                origin: "local".into(),
                room: "r".into(),
                action: "kick".into(),
                detail: "{}".into(),
            })
            .expect("audit");
        }
        assert_eq!(s.prune_audit(Timestamp(20)).expect("prune"), 1);
        let left = s.audit_log(None, Timestamp(0), 10).expect("log");
        assert_eq!(left.iter().map(|r| r.at.0).collect::<Vec<_>>(), [20, 30]);
        assert_eq!(s.audit_log(None, Timestamp(25), 10).expect("log").len(), 1);
        assert!(
            s.audit_log(Some("other"), Timestamp(0), 10)
                .expect("log")
                .is_empty()
        );
    }

    #[test]
    fn recordings_survive_reopening_and_unfinished_ones_are_marked_interrupted() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("onmic.sqlite3");
        let mut rec = RecordingRecord::started(
            "rec-1".into(),
            "r".into(),
            "/data/rec-1.opus".into(),
            Timestamp(10),
        );
        {
            let s = SqliteStore::open(&path).expect("open");
            s.save_recording(&rec).expect("insert");
            let mut done = rec.clone();
            done.id = "rec-0".into();
            done.started_at = Timestamp(5);
            s.save_recording(&done).expect("insert");
            done.status = "done".into();
            done.stopped_at = Some(Timestamp(9));
            done.duration_ms = Some(4000);
            done.bytes = Some(65_000);
            done.reason = Some("request".into());
            s.save_recording(&done).expect("update");
            assert!(s.recordings("other").expect("list").is_empty());
        }
        let s = SqliteStore::open(&path).expect("reopen");
        assert_eq!(s.interrupt_recordings().expect("interrupt"), 1);
        let list = s.recordings("r").expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, "rec-0");
        assert_eq!(list[0].status, "done");
        assert_eq!(list[0].duration_ms, Some(4000));
        rec.status = "interrupted".into();
        rec.reason = Some("server stopped".into());
        assert_eq!(list[1], rec);
    }
}
