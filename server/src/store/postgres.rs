//! The PostgreSQL store (`database_url`): the same tables as SQLite, shared by every node that
//! points at the same database.
//!
//! The [`Store`] trait is synchronous (SQLite is), so this store runs tokio-postgres on a
//! runtime of its own (one worker thread) with a small deadpool of connections, and each call
//! waits for its answer on a channel: callable from any thread, async or not, without nesting
//! runtimes. A call that gets no answer within 30 s fails with an error; a broken connection is
//! replaced by the pool on the next call. Plain TCP or a Unix socket, no TLS.
//!
//! Schema versions are counted in `onmic_schema` (one row), applied under an advisory lock so
//! that nodes starting together do not race; version 1 is the schema of SQLite's version 4.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use onmic_room::Timestamp;
use tokio_postgres::{NoTls, Row};

use super::{
    AuditRecord, GiftRecord, OutboxItem, RecordingRecord, RoomRecord, Store, StoreError,
    WriteBatch, sql_limit, to_i64, to_u64,
};

/// Longest wait for one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections in the pool (the writer's, the webhook worker's, request handlers').
const POOL_SIZE: usize = 4;
/// The advisory lock that serializes migrations across nodes ("onmic" in ASCII).
const MIGRATION_LOCK: i64 = 0x006f_6e6d_6963;

const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite has at its version 4.
    "CREATE TABLE rooms (
        id TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        dismissed BOOLEAN NOT NULL,
        state TEXT NOT NULL
     );
     CREATE TABLE gifts (
        room TEXT NOT NULL,
        version BIGINT NOT NULL,
        at BIGINT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT,
        gift TEXT NOT NULL,
        count BIGINT NOT NULL,
        value BIGINT NOT NULL,
        PRIMARY KEY (room, version)
     );
     CREATE TABLE outbox (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_at BIGINT NOT NULL,
        delivered_at BIGINT,
        last_error TEXT,
        queued_at BIGINT NOT NULL
     );
     CREATE INDEX outbox_due ON outbox (next_at, id) WHERE delivered_at IS NULL;
     CREATE INDEX outbox_delivered ON outbox (delivered_at);
     CREATE INDEX outbox_queued ON outbox (queued_at);
     CREATE TABLE audit (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        origin TEXT NOT NULL DEFAULT '',
        room TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE INDEX audit_at ON audit (at);
     CREATE INDEX audit_room ON audit (room, id);
     CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        room TEXT NOT NULL,
        file TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        stopped_at BIGINT,
        duration_ms BIGINT,
        bytes BIGINT,
        status TEXT NOT NULL,
        reason TEXT,
        dropped_packets BIGINT NOT NULL DEFAULT 0
     );
     CREATE INDEX recordings_room ON recordings (room, started_at);
     CREATE TABLE songs (
        code TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        artist TEXT NOT NULL,
        duration_ms BIGINT NOT NULL,
        lyrics TEXT,
        song_key BYTEA NOT NULL,
        package BYTEA NOT NULL,
        imported_at BIGINT NOT NULL
     );",
    // 2: shared by a cluster's nodes: each room's owner node (NULL: written by a server
    // without a cluster), and which node holds a webhook it is delivering.
    "ALTER TABLE rooms ADD COLUMN node TEXT;
     CREATE INDEX rooms_node ON rooms (node) WHERE NOT dismissed;
     ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
     CREATE INDEX outbox_claimed ON outbox (claimed_by) WHERE delivered_at IS NULL;",
];

/// How long a webhook claimed by a node stays its own before another node may claim it again
/// (the node died without delivering it and nobody took its rooms over).
pub const WEBHOOK_LEASE: Duration = Duration::from_secs(300);

/// The PostgreSQL store (see the module's contract).
pub struct PgStore {
    /// This node's id in a cluster (`node_name`): it loads and writes only the rooms it owns.
    /// `None`: a server alone on the database, which loads and writes every room.
    node: Option<String>,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime may block, which panics on an async thread; this does not block.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn client(pool: &Pool) -> Result<Object, StoreError> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => StoreError::from(e),
        other => StoreError::Postgres(format!("no connection: {other}")),
    })
}

fn u64_at(row: &Row, i: usize, what: &str) -> Result<u64, StoreError> {
    to_u64(row.try_get::<_, i64>(i)?, what)
}

fn opt_u64_at(row: &Row, i: usize, what: &str) -> Result<Option<u64>, StoreError> {
    row.try_get::<_, Option<i64>>(i)?
        .map(|v| to_u64(v, what))
        .transpose()
}

fn ts_at(row: &Row, i: usize, what: &str) -> Result<Timestamp, StoreError> {
    u64_at(row, i, what).map(Timestamp)
}

fn ts(t: Timestamp) -> i64 {
    to_i64(t.0)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A `rooms` row of (id, created_at, state).
fn room_record(r: &Row) -> Result<RoomRecord, StoreError> {
    let id: String = r.try_get(0)?;
    let state: String = r.try_get(2)?;
    Ok(RoomRecord {
        state: serde_json::from_str(&state)
            .map_err(|e| StoreError::Malformed(format!("room {id}'s stored state: {e}")))?,
        created_at: ts_at(r, 1, "a room's created_at")?,
    })
}

/// An `outbox` row of (id, event_id, body, attempts, next_at).
fn outbox_item(r: &Row) -> Result<OutboxItem, StoreError> {
    Ok(OutboxItem {
        id: r.try_get(0)?,
        event_id: r.try_get(1)?,
        body: r.try_get(2)?,
        attempts: u32::try_from(r.try_get::<_, i64>(3)?)
            .map_err(|_| StoreError::Malformed("a webhook's attempts are out of range".into()))?,
        next_at: ts_at(r, 4, "a webhook's next_at")?,
    })
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`, or `host=/run/postgresql
    /// dbname=onmic user=onmic`) and creates or migrates the schema.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        Self::connect_as(url, None)
    }

    /// [`PgStore::connect`] for node `node` of a cluster: it loads only the rooms it owns (and
    /// those nobody owns, which it takes), its writes of a room another node owns are dropped
    /// (fencing), and webhooks it claims are marked with its id.
    pub fn connect_as(url: &str, node: Option<String>) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Postgres(format!(
                "database_url is not a PostgreSQL connection string: {e}"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("onmic-server");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("onmic-postgres")
            .enable_all()
            .build()?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(Duration::from_secs(10)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Postgres(format!("cannot build the connection pool: {e}")))?;
        let store = PgStore {
            node,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            pool,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Runs `call` on the store's runtime and waits for its answer.
    fn call<T, Fut>(&self, call: impl FnOnce(Pool) -> Fut) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let fut = call(self.pool.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let answer = tokio::time::timeout(CALL_TIMEOUT, fut)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Postgres(format!(
                        "no answer within {} s",
                        CALL_TIMEOUT.as_secs()
                    )))
                });
            let _ = tx.send(answer);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Postgres(
                "the PostgreSQL client has stopped".into(),
            ))
        })
    }

    fn migrate(&self) -> Result<(), StoreError> {
        self.call(|pool| async move {
            let mut c = client(&pool).await?;
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS onmic_schema (version BIGINT NOT NULL)")
                .await?;
            let have: i64 = match tx
                .query_opt("SELECT version FROM onmic_schema", &[])
                .await?
            {
                Some(row) => row.try_get(0)?,
                None => {
                    tx.execute("INSERT INTO onmic_schema (version) VALUES (0)", &[])
                        .await?;
                    0
                }
            };
            let known = MIGRATIONS.len();
            let have = usize::try_from(have)
                .ok()
                .filter(|v| *v <= known)
                .ok_or(StoreError::NewerSchema { found: have, known })?;
            for m in &MIGRATIONS[have..] {
                tx.batch_execute(m).await?;
            }
            tx.execute(
                "UPDATE onmic_schema SET version = $1",
                &[&i64::try_from(known).unwrap_or(i64::MAX)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

impl Store for PgStore {
    fn write_batch(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let b = batch.clone();
        let node = self.node.clone();
        let fenced = self.call(|pool| async move {
            let mut c = client(&pool).await?;
            let tx = c.transaction().await?;
            let mut fenced = Vec::new();
            // One statement per table, the rows as arrays.
            if !b.rooms.is_empty() {
                let rows = b.rooms.values();
                let ids: Vec<&str> = rows.clone().map(|r| r.id.as_str()).collect();
                let created: Vec<i64> = rows.clone().map(|r| ts(r.created_at)).collect();
                let versions: Vec<i64> = rows.clone().map(|r| to_i64(r.version)).collect();
                let dismissed: Vec<bool> = rows.clone().map(|r| r.dismissed).collect();
                let states: Vec<&str> = rows.map(|r| r.state.as_str()).collect();
                // A node writes only the rooms it owns (or nobody owns): a room another node
                // took over is not overwritten by a node that lost it (fencing). A server
                // without a cluster (no node) writes every room and keeps the owner.
                let written = tx
                    .query(
                        "INSERT INTO rooms (id, created_at, version, dismissed, state, node)
                         SELECT u.*, $6::text FROM UNNEST($1::text[], $2::bigint[], $3::bigint[],
                            $4::bool[], $5::text[]) AS u
                         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version,
                            dismissed = EXCLUDED.dismissed, state = EXCLUDED.state,
                            node = COALESCE(EXCLUDED.node, rooms.node)
                         WHERE EXCLUDED.node IS NULL OR rooms.node IS NULL
                            OR rooms.node = EXCLUDED.node
                         RETURNING id",
                        &[&ids, &created, &versions, &dismissed, &states, &node],
                    )
                    .await?;
                if written.len() < ids.len() {
                    let written: std::collections::HashSet<String> = written
                        .iter()
                        .filter_map(|r| r.try_get::<_, String>(0).ok())
                        .collect();
                    fenced = ids
                        .iter()
                        .filter(|id| !written.contains(**id))
                        .map(|id| (*id).to_owned())
                        .collect();
                }
            }
            if !b.gifts.is_empty() {
                let g = &b.gifts;
                let rooms: Vec<&str> = g.iter().map(|g| g.room.as_str()).collect();
                let versions: Vec<i64> = g.iter().map(|g| to_i64(g.version)).collect();
                let at: Vec<i64> = g.iter().map(|g| ts(g.at)).collect();
                let from: Vec<&str> = g.iter().map(|g| g.from.as_str()).collect();
                let to: Vec<Option<&str>> = g.iter().map(|g| g.to.as_deref()).collect();
                let gift: Vec<&str> = g.iter().map(|g| g.gift.as_str()).collect();
                let count: Vec<i64> = g.iter().map(|g| i64::from(g.count)).collect();
                let value: Vec<i64> = g.iter().map(|g| to_i64(g.value)).collect();
                tx.execute(
                    "INSERT INTO gifts (room, version, at, sender, recipient, gift, count, value)
                     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[],
                        $5::text[], $6::text[], $7::bigint[], $8::bigint[])
                     ON CONFLICT (room, version) DO NOTHING",
                    &[&rooms, &versions, &at, &from, &to, &gift, &count, &value],
                )
                .await?;
            }
            if !b.webhooks.is_empty() {
                let w = &b.webhooks;
                let ids: Vec<&str> = w.iter().map(|w| w.event_id.as_str()).collect();
                let bodies: Vec<&str> = w.iter().map(|w| w.body.as_str()).collect();
                let at: Vec<i64> = w.iter().map(|w| ts(w.queued_at)).collect();
                // WITH ORDINALITY keeps the queue's order in the row ids.
                tx.execute(
                    "INSERT INTO outbox (event_id, body, next_at, queued_at)
                     SELECT e, b, a, a FROM UNNEST($1::text[], $2::text[], $3::bigint[])
                        WITH ORDINALITY AS u(e, b, a, n) ORDER BY n
                     ON CONFLICT (event_id) DO NOTHING",
                    &[&ids, &bodies, &at],
                )
                .await?;
            }
            if !b.audit.is_empty() {
                let a = &b.audit;
                let at: Vec<i64> = a.iter().map(|r| ts(r.at)).collect();
                let actor: Vec<&str> = a.iter().map(|r| r.actor.as_str()).collect();
                let origin: Vec<&str> = a.iter().map(|r| r.origin.as_str()).collect();
                let room: Vec<&str> = a.iter().map(|r| r.room.as_str()).collect();
                let action: Vec<&str> = a.iter().map(|r| r.action.as_str()).collect();
                let detail: Vec<&str> = a.iter().map(|r| r.detail.as_str()).collect();
                tx.execute(
                    "INSERT INTO audit (at, actor, origin, room, action, detail)
                     SELECT t, ac, o, r, an, d FROM UNNEST($1::bigint[], $2::text[], $3::text[],
                        $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS u(t, ac, o, r, an, d, n)
                     ORDER BY n",
                    &[&at, &actor, &origin, &room, &action, &detail],
                )
                .await?;
            }
            if !b.recordings.is_empty() {
                let stmt = tx
                    .prepare(
                        "INSERT INTO recordings
                            (id, room, file, started_at, stopped_at, duration_ms, bytes, status, reason,
                             dropped_packets)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (id) DO UPDATE SET stopped_at = $5, duration_ms = $6,
                            bytes = $7, status = $8, reason = $9, dropped_packets = $10",
                    )
                    .await?;
                for r in b.recordings.values() {
                    tx.execute(
                        &stmt,
                        &[
                            &r.id,
                            &r.room,
                            &r.file,
                            &ts(r.started_at),
                            &r.stopped_at.map(ts),
                            &r.duration_ms.map(to_i64),
                            &r.bytes.map(to_i64),
                            &r.status,
                            &r.reason,
                            &to_i64(r.dropped_packets),
                        ],
                    )
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(fenced)
        })?;
        if !fenced.is_empty() {
            tracing::warn!(
                rooms = ?fenced,
                "not written: another node owns these rooms now (they were taken over)"
            );
        }
        Ok(())
    }

    fn load_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let node = self.node.clone();
        self.call(|pool| async move {
            let c = client(&pool).await?;
            let rows = match &node {
                None => {
                    c.query(
                        "SELECT id, created_at, state FROM rooms ORDER BY created_at, id",
                        &[],
                    )
                    .await?
                }
                Some(node) => {
                    // Rooms nobody owns (written without a cluster) become this node's.
                    c.execute("UPDATE rooms SET node = $1 WHERE node IS NULL", &[node])
                        .await?;
                    c.query(
                        "SELECT id, created_at, state FROM rooms WHERE node = $1
                         ORDER BY created_at, id",
                        &[node],
                    )
                    .await?
                }
            };
            rows.iter().map(room_record).collect()
        })
    }

    fn claim_room(
        &self,
        room: &str,
        from: &str,
        to: &str,
    ) -> Result<Option<RoomRecord>, StoreError> {
        let (room, from, to) = (room.to_owned(), from.to_owned(), to.to_owned());
        self.call(|pool| async move {
            let c = client(&pool).await?;
            let row = c
                .query_opt(
                    "UPDATE rooms SET node = $3 WHERE id = $1 AND node IS NOT DISTINCT FROM $2
                     RETURNING id, created_at, state",
                    &[&room, &from, &to],
                )
                .await?;
            row.as_ref().map(room_record).transpose()
        })
    }

    fn orphaned_rooms(
        &self,
        live: &[String],
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let live = live.to_vec();
        self.call(move |pool| async move {
            let c = client(&pool).await?;
            let rows = c
                .query(
                    "SELECT id, node FROM rooms
                     WHERE NOT dismissed AND node IS NOT NULL AND node <> ALL($1::text[])
                     ORDER BY created_at, id LIMIT $2",
                    &[&live, &sql_limit(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    fn claim_webhooks(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let node = self.node.clone().unwrap_or_default();
        let lease = ts(now.plus(WEBHOOK_LEASE));
        self.call(move |pool| async move {
            let c = client(&pool).await?;
            // Rows another node is sending are locked or leased: each row goes to one node.
            let mut rows = c
                .query(
                    "UPDATE outbox SET claimed_by = $3, next_at = $4 WHERE id IN (
                        SELECT id FROM outbox WHERE delivered_at IS NULL AND next_at <= $1
                        ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
                     RETURNING id, event_id, body, attempts, next_at",
                    &[&ts(now), &sql_limit(limit), &node, &lease],
                )
                .await?
                .iter()
                .map(outbox_item)
                .collect::<Result<Vec<_>, _>>()?;
            rows.sort_by_key(|r| r.id);
            Ok(rows)
        })
    }

    fn release_webhooks(&self, of: Option<&str>) -> Result<usize, StoreError> {
        let node = of
            .map(str::to_owned)
            .unwrap_or_else(|| self.node.clone().unwrap_or_default());
        self.call(move |pool| async move {
            let n = client(&pool)
                .await?
                .execute(
                    "UPDATE outbox SET claimed_by = NULL, next_at = LEAST(next_at, $2)
                     WHERE claimed_by = $1 AND delivered_at IS NULL",
                    &[&node, &ts(Timestamp(unix_ms()))],
                )
                .await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn gifts(&self, room: &str) -> Result<Vec<GiftRecord>, StoreError> {
        let room = room.to_owned();
        self.call(|pool| async move {
            let c = client(&pool).await?;
            let rows = c
                .query(
                    "SELECT version, at, sender, recipient, gift, count, value FROM gifts
                     WHERE room = $1 ORDER BY version",
                    &[&room],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(GiftRecord {
                        room: room.clone(),
                        version: u64_at(r, 0, "a gift's version")?,
                        at: ts_at(r, 1, "a gift's time")?,
                        from: r.try_get(2)?,
                        to: r.try_get(3)?,
                        gift: r.try_get(4)?,
                        count: u32::try_from(r.try_get::<_, i64>(5)?).map_err(|_| {
                            StoreError::Malformed("a gift's count is out of range".into())
                        })?,
                        value: u64_at(r, 6, "a gift's value")?,
                    })
                })
                .collect()
        })
    }

    fn due_webhooks(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        self.call(move |pool| async move {
            let c = client(&pool).await?;
            let rows = c
                .query(
                    "SELECT id, event_id, body, attempts, next_at FROM outbox
                     WHERE delivered_at IS NULL AND next_at <= $1 ORDER BY id LIMIT $2",
                    &[&ts(now), &sql_limit(limit)],
                )
                .await?;
            rows.iter().map(outbox_item).collect()
        })
    }

    fn next_webhook_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.call(|pool| async move {
            let c = client(&pool).await?;
            let row = c
                .query_one(
                    "SELECT MIN(next_at) FROM outbox WHERE delivered_at IS NULL",
                    &[],
                )
                .await?;
            Ok(opt_u64_at(&row, 0, "a webhook's next_at")?.map(Timestamp))
        })
    }

    fn webhook_delivered(&self, id: i64, at: Timestamp) -> Result<(), StoreError> {
        self.call(move |pool| async move {
            client(&pool)
                .await?
                .execute(
                    "UPDATE outbox SET delivered_at = $2, attempts = attempts + 1, claimed_by = NULL
                     WHERE id = $1",
                    &[&id, &ts(at)],
                )
                .await?;
            Ok(())
        })
    }

    fn webhook_failed(&self, id: i64, next_at: Timestamp, error: &str) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.call(move |pool| async move {
            client(&pool)
                .await?
                .execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_at = $2, last_error = $3,
                        claimed_by = NULL
                     WHERE id = $1",
                    &[&id, &ts(next_at), &error],
                )
                .await?;
            Ok(())
        })
    }

    fn audit_log(
        &self,
        room: Option<&str>,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let room = room.map(str::to_owned);
        self.call(move |pool| async move {
            let c = client(&pool).await?;
            let rows = c
                .query(
                    "SELECT at, actor, origin, room, action, detail FROM audit
                     WHERE ($1::text IS NULL OR room = $1) AND at >= $2 ORDER BY id LIMIT $3",
                    &[&room, &ts(since), &sql_limit(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditRecord {
                        at: ts_at(r, 0, "an audit entry's time")?,
                        actor: r.try_get(1)?,
                        origin: r.try_get(2)?,
                        room: r.try_get(3)?,
                        action: r.try_get(4)?,
                        detail: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }

    fn prune_audit(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.call(move |pool| async move {
            let n = client(&pool)
                .await?
                .execute("DELETE FROM audit WHERE at < $1", &[&ts(before)])
                .await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn prune_outbox(
        &self,
        delivered_before: Timestamp,
        queued_before: Timestamp,
    ) -> Result<(usize, usize), StoreError> {
        self.call(move |pool| async move {
            let c = client(&pool).await?;
            let delivered = c
                .execute(
                    "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1",
                    &[&ts(delivered_before)],
                )
                .await?;
            let expired = c
                .execute(
                    "DELETE FROM outbox WHERE delivered_at IS NULL AND queued_at < $1",
                    &[&ts(queued_before)],
                )
                .await?;
            Ok((
                usize::try_from(delivered).unwrap_or(usize::MAX),
                usize::try_from(expired).unwrap_or(usize::MAX),
            ))
        })
    }

    fn outbox_size(&self) -> Result<(u64, u64), StoreError> {
        self.call(|pool| async move {
            let row = client(&pool)
                .await?
                .query_one(
                    "SELECT COUNT(*) - COUNT(delivered_at), COUNT(delivered_at) FROM outbox",
                    &[],
                )
                .await?;
            Ok((
                u64_at(&row, 0, "the outbox's pending count")?,
                u64_at(&row, 1, "the outbox's delivered count")?,
            ))
        })
    }

    fn recordings(&self, room: &str) -> Result<Vec<RecordingRecord>, StoreError> {
        let room = room.to_owned();
        self.call(|pool| async move {
            let c = client(&pool).await?;
            let rows = c
                .query(
                    "SELECT id, room, file, started_at, stopped_at, duration_ms, bytes, status,
                        reason, dropped_packets
                     FROM recordings WHERE room = $1 ORDER BY started_at, id",
                    &[&room],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(RecordingRecord {
                        id: r.try_get(0)?,
                        room: r.try_get(1)?,
                        file: r.try_get(2)?,
                        started_at: ts_at(r, 3, "a recording's start")?,
                        stopped_at: opt_u64_at(r, 4, "a recording's stop")?.map(Timestamp),
                        duration_ms: opt_u64_at(r, 5, "a recording's duration")?,
                        bytes: opt_u64_at(r, 6, "a recording's size")?,
                        status: r.try_get(7)?,
                        reason: r.try_get(8)?,
                        dropped_packets: u64_at(r, 9, "a recording's dropped packets")?,
                    })
                })
                .collect()
        })
    }

    fn interrupt_recordings(&self) -> Result<usize, StoreError> {
        let node = self.node.clone();
        self.call(|pool| async move {
            // In a cluster, only the recordings of this node's rooms: the others' go on.
            let n = client(&pool)
                .await?
                .execute(
                    "UPDATE recordings SET status = 'interrupted', reason = 'server stopped'
                     WHERE status = 'recording' AND ($1::text IS NULL
                        OR room IN (SELECT id FROM rooms WHERE node = $1))",
                    &[&node],
                )
                .await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn insert_song(&self, s: &crate::songs::SongRecord) -> Result<bool, StoreError> {
        let s = s.clone();
        self.call(move |pool| async move {
            let n = client(&pool)
                .await?
                .execute(
                    "INSERT INTO songs
                        (code, title, artist, duration_ms, lyrics, song_key, package, imported_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (code) DO NOTHING",
                    &[
                        &s.code,
                        &s.title,
                        &s.artist,
                        &to_i64(s.duration_ms),
                        &s.lyrics,
                        &&s.key[..],
                        &s.package,
                        &ts(s.imported_at),
                    ],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn search_songs(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<crate::songs::SongSummary>, StoreError> {
        let pattern = super::like_pattern(query);
        self.call(move |pool| async move {
            let c = client(&pool).await?;
            let rows = c
                .query(
                    "SELECT code, title, artist, duration_ms, octet_length(package)::bigint,
                        lyrics IS NOT NULL
                     FROM songs
                     WHERE lower(code) LIKE $1 ESCAPE '\\' OR lower(title) LIKE $1 ESCAPE '\\'
                        OR lower(artist) LIKE $1 ESCAPE '\\'
                     ORDER BY title, code LIMIT $2",
                    &[&pattern, &sql_limit(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(crate::songs::SongSummary {
                        code: r.try_get(0)?,
                        title: r.try_get(1)?,
                        artist: r.try_get(2)?,
                        duration_ms: u64_at(r, 3, "a song's duration")?,
                        package_bytes: u64_at(r, 4, "a song's package size")?,
                        has_lyrics: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }

    fn song(&self, code: &str) -> Result<Option<crate::songs::SongRecord>, StoreError> {
        let code = code.to_owned();
        self.call(|pool| async move {
            let c = client(&pool).await?;
            let Some(r) = c
                .query_opt(
                    "SELECT code, title, artist, duration_ms, lyrics, song_key, package, imported_at
                     FROM songs WHERE code = $1",
                    &[&code],
                )
                .await?
            else {
                return Ok(None);
            };
            let key: Vec<u8> = r.try_get(5)?;
            let key_len = key.len();
            Ok(Some(crate::songs::SongRecord {
                code: r.try_get(0)?,
                title: r.try_get(1)?,
                artist: r.try_get(2)?,
                duration_ms: u64_at(&r, 3, "a song's duration")?,
                lyrics: r.try_get(4)?,
                key: key.try_into().map_err(|_| {
                    StoreError::Malformed(format!("song {code}'s key is {key_len} bytes, not 32"))
                })?,
                package: r.try_get(6)?,
                imported_at: ts_at(&r, 7, "a song's import time")?,
            }))
        })
    }
}
