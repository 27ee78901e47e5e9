//! The commit path does not wait on the store (issue 16): with the PostgreSQL cluster frozen
//! (SIGSTOP on every one of its processes), rooms still take commands, broadcast their events and
//! answer the SFU's questions; the changes wait in the writer and reach the database in order
//! once it resumes. A full queue refuses members' requests (not the system's); a reply that says
//! "ok" waits for the write (`not_saved` when it cannot); a shutdown writes what is pending; a
//! failing store is retried and loses nothing.
//!
//! No wall-clock assertions: "does not wait" is shown by work finishing while the database
//! cannot answer at all. The 20 s limits only catch a hang (the store's own call timeout is 30 s).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::pg::PgCluster;
use common::*;
use onmic_room::{Action, Command, RoomId, Timestamp, Uid};
use onmic_server::store::{Store, StoreError, WriteBatch};
use onmic_server::{Config, Hub, SqliteStore, SystemClock};
use serde_json::json;

const HANG: Duration = Duration::from_secs(20);

fn pg_config(url: String) -> Config {
    Config {
        database: None,
        database_url: Some(url),
        ..config()
    }
}

fn enter(uid: &str) -> Command {
    Command::system(Action::Enter {
        uid: uid.into(),
        admin: false,
        publish_until: None,
    })
}

/// Runs `work` on a thread of its own and returns its result, or fails after [`HANG`].
async fn within_hang<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    tokio::time::timeout(HANG, rx)
        .await
        .expect("the work waited on the frozen store")
        .expect("the work panicked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_take_commands_and_the_sfu_gets_answers_while_postgres_is_frozen() {
    let pg = PgCluster::start();
    let server = server(pg_config(pg.database("onmic"))).await;
    let hub = server.hub().clone();
    create_room(&server.url(), "f1", "owner").await;
    let room = RoomId::from("f1");
    let publisher = Command::system(Action::Enter {
        uid: "owner".into(),
        admin: false,
        publish_until: Some(Timestamp(onmic_room::config::MAX_SAFE_INTEGER)),
    });
    hub.execute(&room, publisher).expect("owner enters");
    hub.execute(
        &room,
        Command::member(
            "owner",
            Action::TakeSeat {
                seat: onmic_room::SeatIndex(0),
            },
        ),
    )
    .expect("owner takes the host seat");
    let mut events = hub.subscribe(&room).expect("subscribe");
    hub.durable().await.expect("written before the freeze");

    pg.pause();
    let worker_hub = hub.clone();
    let worker_room = room.clone();
    let (committed, published) = within_hang(move || {
        let hub = worker_hub;
        let room = worker_room;
        // One change alone first: the writer takes it at once and its write hangs on the frozen
        // database; its row still counts as not written (it was left out while in flight).
        hub.execute(&room, enter("first")).expect("enter");
        std::thread::sleep(Duration::from_millis(300));
        let status = hub.store_status();
        assert!(
            status.pending > 0,
            "the batch being written counts as pending: {status:?}"
        );
        let mut committed = 1;
        for i in 0..200 {
            let uid = format!("u{i}");
            hub.execute(&room, enter(&uid)).expect("enter");
            hub.execute(&room, Command::member(uid.as_str(), Action::Leave))
                .expect("leave");
            committed += 2;
        }
        // The SFU's seams: who may publish, and a bombing report (a system command).
        let published = hub.may_publish(&room, &Uid::from("owner"));
        hub.execute(&room, enter("bomber")).expect("enter");
        hub.report_bombing(&room, &Uid::from("bomber"), "audio without a seat")
            .expect("the report is committed");
        (committed + 2, published)
    })
    .await;
    assert!(published, "the seated owner may publish");
    let mut seen = 0;
    while let Ok(frame) = events.try_recv() {
        seen += 1;
        let _ = frame;
    }
    // The first join, two events per enter/leave pair (joined, left), the bomber's join and
    // the report.
    assert_eq!(
        seen, committed,
        "every event was broadcast while the store was frozen"
    );
    let status = hub.store_status();
    assert!(
        status.pending > 0,
        "the changes wait in the writer: {status:?}"
    );
    println!(
        "with PostgreSQL frozen: {committed} events committed and broadcast; {} row(s) waiting (a room's states coalesce into its latest)",
        status.pending
    );

    pg.resume();
    hub.durable().await.expect("written after the resume");
    assert_eq!(hub.store_status().pending, 0);
    let version = hub.snapshot(&room).expect("room").version;
    let stored = pg.sql("onmic", "SELECT version FROM rooms WHERE id = 'f1'");
    assert_eq!(
        stored,
        version.to_string(),
        "the last state reached the database"
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_members_not_the_system_and_ok_means_saved() {
    let pg = PgCluster::start();
    let server = server(Config {
        store_queue_limit: 20,
        webhook_url: Some(UNREACHABLE_RECEIVER.into()),
        ..pg_config(pg.database("onmic"))
    })
    .await;
    let base = server.url();
    let hub = server.hub().clone();
    create_room(&base, "q1", "owner").await;
    let (mut owner, _) = Client::join(&base, "q1", "owner").await;
    let (mut guest, _) = Client::join(&base, "q1", "guest").await;
    let room = RoomId::from("q1");

    pg.pause();
    // A member's request is applied and broadcast at once, but its "ok" waits for the write:
    // the database is frozen, so the answer is `not_saved` after the wait.
    let reply = owner
        .request(json!({ "type": "notice", "text": "frozen" }))
        .await;
    assert_eq!(reply["code"], "not_saved", "{reply}");
    while !guest
        .events
        .iter()
        .any(|e| e.to_string().contains("frozen"))
    {
        guest
            .next()
            .await
            .expect("the guest sees the notice while the store is frozen");
    }

    let worker_hub = hub.clone();
    let worker_room = room.clone();
    let refused = within_hang(move || {
        let (hub, room) = (worker_hub, worker_room);
        let mut accepted = 0;
        for i in 0..1000 {
            let uid = format!("m{i}");
            hub.execute(&room, enter(&uid))
                .expect("the system is never refused");
            match hub.execute(&room, Command::member(uid.as_str(), Action::Leave)) {
                Ok(_) => accepted += 1,
                Err(e) => return (accepted, e.code(), e.to_string()),
            }
        }
        panic!("1000 members' changes accepted with store_queue_limit 20");
    })
    .await;
    let (accepted, code, message) = refused;
    assert_eq!(code, "store_behind", "{message}");
    println!("queue limit 20 rows: {accepted} member changes accepted, then: {message}");
    // Timers and the SFU still go in.
    hub.report_bombing(&room, &Uid::from("guest"), "no seat")
        .expect("a system change over the limit");

    pg.resume();
    hub.durable().await.expect("everything written");
    let reply = owner
        .request(json!({ "type": "notice", "text": "thawed" }))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    // The outbox holds every webhook of what was applied, each once.
    let (status, _) = rest(&base, "get", "/v1/rooms/q1", None).await;
    assert_eq!(status, 200);
    let bombings = pg.sql(
        "onmic",
        "SELECT count(*) FROM outbox WHERE body::json->>'type' = 'bombing_detected'",
    );
    assert_eq!(bombings, "1");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_writes_what_is_pending() {
    let pg = PgCluster::start();
    let server = server(pg_config(pg.database("onmic"))).await;
    let hub = server.hub().clone();
    create_room(&server.url(), "s1", "owner").await;
    let room = RoomId::from("s1");
    pg.pause();
    let worker_hub = hub.clone();
    let worker_room = room.clone();
    within_hang(move || {
        for i in 0..100 {
            worker_hub
                .execute(&worker_room, enter(&format!("u{i}")))
                .expect("enter");
        }
    })
    .await;
    let version = hub.snapshot(&room).expect("room").version;
    let shutdown = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !shutdown.is_finished(),
        "the shutdown finished while the database was frozen: it did not wait for the writer"
    );
    pg.resume();
    shutdown.await.expect("joined").expect("clean shutdown");
    let stored = pg.sql("onmic", "SELECT version FROM rooms WHERE id = 's1'");
    assert_eq!(stored, version.to_string());
}

/// SQLite that fails its first `failures` batches, to show retries (the failure is injected,
/// the database is real).
struct Flaky {
    inner: SqliteStore,
    failures: AtomicUsize,
}

impl Store for Flaky {
    fn write_batch(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Malformed("injected failure".into()));
        }
        self.inner.write_batch(batch)
    }
    fn load_rooms(&self) -> Result<Vec<onmic_server::store::RoomRecord>, StoreError> {
        self.inner.load_rooms()
    }
    fn gifts(&self, room: &str) -> Result<Vec<onmic_server::store::GiftRecord>, StoreError> {
        self.inner.gifts(room)
    }
    fn due_webhooks(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<onmic_server::store::OutboxItem>, StoreError> {
        self.inner.due_webhooks(now, limit)
    }
    fn next_webhook_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.next_webhook_at()
    }
    fn webhook_delivered(&self, id: i64, at: Timestamp) -> Result<(), StoreError> {
        self.inner.webhook_delivered(id, at)
    }
    fn webhook_failed(&self, id: i64, next: Timestamp, error: &str) -> Result<(), StoreError> {
        self.inner.webhook_failed(id, next, error)
    }
    fn audit_log(
        &self,
        room: Option<&str>,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<onmic_server::store::AuditRecord>, StoreError> {
        self.inner.audit_log(room, since, limit)
    }
    fn prune_audit(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.inner.prune_audit(before)
    }
    fn prune_outbox(&self, d: Timestamp, q: Timestamp) -> Result<(usize, usize), StoreError> {
        self.inner.prune_outbox(d, q)
    }
    fn outbox_size(&self) -> Result<(u64, u64), StoreError> {
        self.inner.outbox_size()
    }
    fn recordings(
        &self,
        room: &str,
    ) -> Result<Vec<onmic_server::store::RecordingRecord>, StoreError> {
        self.inner.recordings(room)
    }
    fn interrupt_recordings(&self) -> Result<usize, StoreError> {
        self.inner.interrupt_recordings()
    }
    fn insert_song(&self, song: &onmic_server::songs::SongRecord) -> Result<bool, StoreError> {
        self.inner.insert_song(song)
    }
    fn search_songs(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<onmic_server::songs::SongSummary>, StoreError> {
        self.inner.search_songs(query, limit)
    }
    fn song(&self, code: &str) -> Result<Option<onmic_server::songs::SongRecord>, StoreError> {
        self.inner.song(code)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_is_retried_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("onmic.sqlite3");
    let store = Arc::new(Flaky {
        inner: SqliteStore::open(&path).expect("open"),
        failures: AtomicUsize::new(4),
    });
    let cfg = Arc::new(Config {
        webhook_url: Some(UNREACHABLE_RECEIVER.into()),
        ..config()
    });
    let hub = Hub::new(cfg, store.clone(), Arc::new(SystemClock)).expect("hub");
    let req: onmic_server::hub::CreateRoom =
        serde_json::from_value(json!({ "id": "x1", "owner": "owner" })).expect("request");
    hub.create_room(req, "test").expect("created");
    let room = RoomId::from("x1");
    for i in 0..20 {
        hub.execute(&room, enter(&format!("u{i}"))).expect("enter");
    }
    let failing = hub.store_status();
    hub.durable().await.expect("written after the retries");
    assert_eq!(
        store.failures.load(Ordering::SeqCst),
        0,
        "all 4 failures happened"
    );
    println!("while failing: {failing:?}");
    let reopened = SqliteStore::open(&path).expect("reopen");
    let rooms = reopened.load_rooms().expect("rooms");
    assert_eq!(rooms.len(), 1);
    assert_eq!(
        rooms[0].state.version,
        hub.snapshot(&room).expect("room").version
    );
    let (pending, _) = reopened.outbox_size().expect("outbox");
    // room_created + 20 member_joined, each once.
    assert_eq!(pending, 21);
    assert_eq!(
        reopened
            .audit_log(Some("x1"), Timestamp(0), 10)
            .expect("audit")
            .len(),
        1
    );
    assert_eq!(hub.store_status().failing_ms, None, "recovered");
}
