//! The SQLite store: one file, WAL mode, schema migrations by `user_version`.

use std::path::Path;
use std::sync::Mutex;

use onmic_room::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AuditRecord, GiftRecord, OutboxItem, RecordingRecord, RoomRecord, Store, StoreError,
    WriteBatch, sql_limit, to_i64, to_u64,
};

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

/// The SQLite store: one file, WAL mode, schema migrations by `user_version` (`MIGRATIONS`).
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
        if usize::try_from(have).is_ok_and(|v| v > MIGRATIONS.len()) {
            return Err(StoreError::NewerSchema {
                found: have,
                known: MIGRATIONS.len(),
            });
        }
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

fn sql_ts(t: Timestamp) -> i64 {
    to_i64(t.0)
}

/// Column `i` as an unsigned integer; a negative value is a conversion error naming the column.
fn uint(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let v: i64 = r.get(i)?;
    u64::try_from(v).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Integer, Box::new(e))
    })
}

/// Like [`uint`] for a nullable column.
fn opt_uint(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<u64>> {
    match r.get::<_, Option<i64>>(i)? {
        None => Ok(None),
        Some(_) => uint(r, i).map(Some),
    }
}

impl Store for SqliteStore {
    fn write_batch(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut room = tx.prepare_cached(
                "INSERT INTO rooms (id, created_at, version, dismissed, state) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET version = ?3, dismissed = ?4, state = ?5",
            )?;
            for r in batch.rooms.values() {
                room.execute(params![
                    r.id,
                    sql_ts(r.created_at),
                    to_i64(r.version),
                    r.dismissed,
                    r.state
                ])?;
            }
            let mut gift = tx.prepare_cached(
                "INSERT OR IGNORE INTO gifts (room, version, at, sender, recipient, gift, count, value)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for g in &batch.gifts {
                gift.execute(params![
                    g.room,
                    to_i64(g.version),
                    sql_ts(g.at),
                    g.from,
                    g.to,
                    g.gift,
                    g.count,
                    to_i64(g.value)
                ])?;
            }
            let mut hook = tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox (event_id, body, next_at, queued_at) VALUES (?1, ?2, ?3, ?3)",
            )?;
            for w in &batch.webhooks {
                hook.execute(params![w.event_id, w.body, sql_ts(w.queued_at)])?;
            }
            let mut audit = tx.prepare_cached(
                "INSERT INTO audit (at, actor, origin, room, action, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for r in &batch.audit {
                audit.execute(params![
                    sql_ts(r.at),
                    r.actor,
                    r.origin,
                    r.room,
                    r.action,
                    r.detail
                ])?;
            }
            let mut rec = tx.prepare_cached(
                "INSERT INTO recordings
                    (id, room, file, started_at, stopped_at, duration_ms, bytes, status, reason, dropped_packets)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(id) DO UPDATE SET stopped_at = ?5, duration_ms = ?6, bytes = ?7,
                    status = ?8, reason = ?9, dropped_packets = ?10",
            )?;
            for r in batch.recordings.values() {
                rec.execute(params![
                    r.id,
                    r.room,
                    r.file,
                    sql_ts(r.started_at),
                    r.stopped_at.map(sql_ts),
                    r.duration_ms.map(to_i64),
                    r.bytes.map(to_i64),
                    r.status,
                    r.reason,
                    to_i64(r.dropped_packets)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn load_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, created_at, state FROM rooms ORDER BY created_at, id")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, uint(r, 1)?, r.get::<_, String>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, created, json) = row?;
            out.push(RoomRecord {
                state: serde_json::from_str(&json)
                    .map_err(|e| StoreError::Malformed(format!("room {id}'s stored state: {e}")))?,
                created_at: Timestamp(created),
            });
        }
        Ok(out)
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
                version: uint(r, 0)?,
                at: Timestamp(uint(r, 1)?),
                from: r.get(2)?,
                to: r.get(3)?,
                gift: r.get(4)?,
                count: r.get(5)?,
                value: uint(r, 6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn due_webhooks(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, event_id, body, attempts, next_at FROM outbox
             WHERE delivered_at IS NULL AND next_at <= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![sql_ts(now), sql_limit(limit)], |r| {
            Ok(OutboxItem {
                id: r.get(0)?,
                event_id: r.get(1)?,
                body: r.get(2)?,
                attempts: r.get(3)?,
                next_at: Timestamp(uint(r, 4)?),
            })
        })?;
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
        v.map(|v| to_u64(v, "a webhook's next_at").map(Timestamp))
            .transpose()
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
        let rows = stmt.query_map(params![room, sql_ts(since), sql_limit(limit)], |r| {
            Ok(AuditRecord {
                at: Timestamp(uint(r, 0)?),
                actor: r.get(1)?,
                origin: r.get(2)?,
                room: r.get(3)?,
                action: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
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
            to_u64(pending, "the outbox's pending count")?,
            to_u64(delivered, "the outbox's delivered count")?,
        ))
    }

    fn recordings(&self, room: &str) -> Result<Vec<RecordingRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, room, file, started_at, stopped_at, duration_ms, bytes, status, reason,
                    dropped_packets
             FROM recordings WHERE room = ?1 ORDER BY started_at, id",
        )?;
        let rows = stmt.query_map([room], |r| {
            Ok(RecordingRecord {
                id: r.get(0)?,
                room: r.get(1)?,
                file: r.get(2)?,
                started_at: Timestamp(uint(r, 3)?),
                stopped_at: opt_uint(r, 4)?.map(Timestamp),
                duration_ms: opt_uint(r, 5)?,
                bytes: opt_uint(r, 6)?,
                status: r.get(7)?,
                reason: r.get(8)?,
                dropped_packets: uint(r, 9)?,
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
                to_i64(s.duration_ms),
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
        let pattern = super::like_pattern(query);
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT code, title, artist, duration_ms, length(package), lyrics IS NOT NULL
             FROM songs
             WHERE lower(code) LIKE ?1 ESCAPE '\\' OR lower(title) LIKE ?1 ESCAPE '\\'
                OR lower(artist) LIKE ?1 ESCAPE '\\'
             ORDER BY title, code LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![pattern, sql_limit(limit)], |r| {
            Ok(crate::songs::SongSummary {
                code: r.get(0)?,
                title: r.get(1)?,
                artist: r.get(2)?,
                duration_ms: uint(r, 3)?,
                package_bytes: uint(r, 4)?,
                has_lyrics: r.get(5)?,
            })
        })?;
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
                        duration_ms: uint(r, 3)?,
                        lyrics: r.get(4)?,
                        key: key.try_into().map_err(|k: Vec<u8>| {
                            rusqlite::Error::FromSqlConversionFailure(
                                5,
                                rusqlite::types::Type::Blob,
                                format!("a song key of {} bytes, not 32", k.len()).into(),
                            )
                        })?,
                        package: r.get(6)?,
                        imported_at: Timestamp(uint(r, 7)?),
                    })
                },
            )
            .optional()?)
    }
}
