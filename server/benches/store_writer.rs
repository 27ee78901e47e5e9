//! The store's commit path, SQLite and PostgreSQL side by side (issue 16). Prints, per backend:
//!
//! - **commit** — `Hub::execute` of one change (the time a room's lock is held: the room's
//!   handling, serializing its state and handing it to the writer), against
//! - **synchronous write** — what the commit path paid under the lock before the writer:
//!   writing that room state and its webhooks to the store in place;
//! - **commit → durable** — a change's `execute` then `durable()` one at a time (what a client
//!   waits for its `ok`, p50/p99);
//! - **throughput** — 20,000 changes made as fast as one thread can, then `durable()`: changes
//!   and rows written per second, and the batches the writer needed.
//!
//! PostgreSQL is a private cluster (`tests/common/pg.rs`) with its default durability (fsync
//! on, `synchronous_commit` on); SQLite is a file in WAL mode with `synchronous=NORMAL`, as the
//! server runs them. Run: `cargo bench -p onmic-server --bench store_writer`.
#![allow(missing_docs)]

#[path = "../tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use onmic_room::{Action, Command, RoomId, RoomSettings, RoomState, Timestamp};
use onmic_server::store::{Store, WriteBatch};
use onmic_server::{Config, Hub, PgStore, SqliteStore, SystemClock};

const LATENCY_SAMPLES: usize = 500;
const THROUGHPUT_CHANGES: usize = 20_000;

fn enter(uid: &str) -> Command {
    Command::system(Action::Enter {
        uid: uid.into(),
        admin: false,
        publish_until: None,
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn bench(name: &str, store: Arc<dyn Store>) {
    let config = Arc::new(Config {
        // Webhooks are queued (one row per member event), never delivered here.
        webhook_url: Some("http://127.0.0.1:9/hooks".into()),
        store_queue_limit: usize::MAX,
        ..Config::default()
    });
    let hub = Arc::new(Hub::new(config, store.clone(), Arc::new(SystemClock)).expect("hub"));
    let req: onmic_server::hub::CreateRoom =
        serde_json::from_value(serde_json::json!({ "id": "b1", "owner": "owner" })).expect("req");
    hub.create_room(req, "bench").expect("room");
    let room = RoomId::from("b1");
    // A room with some members, so that its state is not trivially small.
    for i in 0..50 {
        hub.execute(&room, enter(&format!("m{i}"))).expect("enter");
    }
    hub.durable().await.expect("written");
    let state_bytes = serde_json::to_string(&hub.snapshot(&room).expect("room"))
        .expect("json")
        .len();

    // Commit alone, and commit then durable.
    let mut commit = Vec::with_capacity(LATENCY_SAMPLES);
    let mut durable = Vec::with_capacity(LATENCY_SAMPLES);
    for i in 0..LATENCY_SAMPLES {
        let uid = format!("l{i}");
        let t = Instant::now();
        hub.execute(&room, enter(&uid)).expect("enter");
        commit.push(t.elapsed());
        hub.durable().await.expect("written");
        durable.push(t.elapsed());
        hub.execute(&room, Command::member(uid.as_str(), Action::Leave))
            .expect("leave");
    }
    hub.durable().await.expect("written");

    // The old path: the same rows written in place, one change at a time.
    let mut state = RoomState::new(
        "sync".into(),
        "o".into(),
        "t".into(),
        RoomSettings::default(),
    );
    let mut sync = Vec::with_capacity(LATENCY_SAMPLES);
    let template = hub.snapshot(&room).expect("room");
    state.members = template.members.clone();
    for i in 0..LATENCY_SAMPLES {
        state.version += 1;
        let t = Instant::now();
        store.save_room(&state, Timestamp(1)).expect("save");
        store
            .enqueue_webhooks(
                &[(format!("sync:{i}"), "{\"type\":\"member_joined\"}".into())],
                Timestamp(1),
            )
            .expect("queue");
        sync.push(t.elapsed());
    }

    // Throughput.
    let before = hub.store().outbox_size().expect("outbox");
    let t = Instant::now();
    for i in 0..THROUGHPUT_CHANGES / 2 {
        let uid = format!("t{i}");
        hub.execute(&room, enter(&uid)).expect("enter");
        hub.execute(&room, Command::member(uid.as_str(), Action::Leave))
            .expect("leave");
    }
    let made = t.elapsed();
    let most_pending = hub.store_status().pending;
    hub.durable().await.expect("written");
    let total = t.elapsed();
    let after = hub.store().outbox_size().expect("outbox");
    let rows = (after.0 + after.1) - (before.0 + before.1);

    for v in [&mut commit, &mut durable, &mut sync] {
        v.sort();
    }
    println!("{name} (room state {state_bytes} bytes of JSON):");
    println!(
        "  commit (under the room's lock)      p50 {:>8.1} us  p99 {:>8.1} us",
        us(pct(&commit, 0.5)),
        us(pct(&commit, 0.99))
    );
    println!(
        "  synchronous write (the old path)    p50 {:>8.1} us  p99 {:>8.1} us",
        us(pct(&sync, 0.5)),
        us(pct(&sync, 0.99))
    );
    println!(
        "  commit -> durable, one at a time    p50 {:>8.1} us  p99 {:>8.1} us",
        us(pct(&durable, 0.5)),
        us(pct(&durable, 0.99))
    );
    println!(
        "  throughput: {THROUGHPUT_CHANGES} changes made in {:.0} ms ({:.0}/s), all {} webhook rows + states written after {:.0} ms ({:.0} changes/s); {most_pending} rows were waiting when the last change was made",
        made.as_secs_f64() * 1e3,
        THROUGHPUT_CHANGES as f64 / made.as_secs_f64(),
        rows,
        total.as_secs_f64() * 1e3,
        THROUGHPUT_CHANGES as f64 / total.as_secs_f64(),
    );
    // A batch of 1,000 webhook rows alone, written directly.
    let batch = WriteBatch {
        webhooks: (0..1000)
            .map(|i| onmic_server::store::QueuedWebhook {
                event_id: format!("batch:{i}"),
                body: "{\"type\":\"member_left\",\"data\":{\"uid\":\"someone\"}}".into(),
                queued_at: Timestamp(1),
            })
            .collect(),
        ..WriteBatch::default()
    };
    let t = Instant::now();
    store.write_batch(&batch).expect("batch");
    println!(
        "  one batch of 1,000 webhook rows: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let lost = hub.close_store(Duration::from_secs(30));
    assert_eq!(lost, 0);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("bench.sqlite3")).expect("sqlite"));
    rt.block_on(bench("SQLite (WAL, synchronous=NORMAL)", sqlite));
    let cluster = pg::PgCluster::start_with(&[]);
    let url = cluster.database("bench");
    let postgres: Arc<dyn Store> = Arc::new(PgStore::connect(&url).expect("postgres"));
    rt.block_on(bench(
        "PostgreSQL 15 (Unix socket, fsync on, synchronous_commit on)",
        postgres,
    ));
}
