//! The store's behaviour, the same scenarios against both backends: SQLite (a file in a
//! temporary directory) and PostgreSQL (a private cluster per test, `common::pg`). Each
//! scenario gets `open`, which opens the same database again (a reopen is a restart), and
//! `raw`, which runs SQL on it behind the store's back (to plant malformed rows).

mod common;

use common::pg::PgCluster;
use onmic_room::{RoomSettings, RoomState, Timestamp};
use onmic_server::songs::SongRecord;
use onmic_server::store::{
    AuditRecord, GiftRecord, QueuedWebhook, RecordingRecord, RoomRow, Store, StoreError, WriteBatch,
};
use onmic_server::{PgStore, SqliteStore};

type Open<'a> = &'a dyn Fn() -> Result<Box<dyn Store>, StoreError>;
type Raw<'a> = &'a dyn Fn(&str);

/// Runs `scenario` against a SQLite file and against a fresh PostgreSQL database.
macro_rules! both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;

            #[test]
            fn sqlite() {
                let dir = tempfile::tempdir().expect("tmp");
                let path = dir.path().join("db/onmic.sqlite3");
                let open = || SqliteStore::open(&path).map(|s| Box::new(s) as Box<dyn Store>);
                let raw = |sql: &str| {
                    rusqlite::Connection::open(&path)
                        .expect("open")
                        .execute_batch(sql)
                        .expect("raw SQL");
                };
                super::$scenario(&open, &raw, false);
            }

            #[test]
            fn postgres() {
                let pg = PgCluster::start();
                let url = pg.database("onmic");
                let open = || PgStore::connect(&url).map(|s| Box::new(s) as Box<dyn Store>);
                let raw = |sql: &str| {
                    pg.sql("onmic", sql);
                };
                super::$scenario(&open, &raw, true);
            }
        }
    )*};
}

both!(
    rooms_gifts_outbox_and_audit_survive_reopening,
    outbox_and_audit_are_pruned_by_age,
    recordings_survive_reopening_and_unfinished_ones_are_marked_interrupted,
    a_batch_keeps_the_latest_state_and_the_order_of_webhooks,
    songs_are_stored_searched_and_read_back,
    malformed_rows_are_clear_errors,
    a_newer_schema_is_refused,
);

fn open(o: Open) -> Box<dyn Store> {
    o().expect("the store opens")
}

fn gift(version: u64) -> GiftRecord {
    GiftRecord {
        room: "r".into(),
        version,
        at: Timestamp(9),
        from: "a".into(),
        to: None,
        gift: "rose".into(),
        count: 2,
        value: 2,
    }
}

fn audit(at: u64) -> AuditRecord {
    AuditRecord {
        at: Timestamp(at),
        actor: "k".into(),
        origin: "local".into(),
        room: "r".into(),
        action: "kick".into(),
        detail: "{}".into(),
    }
}

fn rooms_gifts_outbox_and_audit_survive_reopening(o: Open, _: Raw, _: bool) {
    {
        let s = open(o);
        let state = RoomState::new("r".into(), "o".into(), "t".into(), RoomSettings::default());
        s.save_room(&state, Timestamp(5)).expect("save");
        let g = GiftRecord {
            to: Some("b".into()),
            ..gift(3)
        };
        s.record_gifts(&[g.clone(), g]).expect("gifts, twice");
        let items = vec![("e1".to_owned(), "{}".to_owned())];
        s.enqueue_webhooks(&items, Timestamp(1)).expect("queue");
        s.enqueue_webhooks(&items, Timestamp(1))
            .expect("queue again");
        s.audit(&AuditRecord {
            origin: "127.0.0.1:1".into(),
            ..audit(1)
        })
        .expect("audit");
    }
    let s = open(o);
    let rooms = s.load_rooms().expect("rooms");
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].created_at, Timestamp(5));
    assert_eq!(rooms[0].state.owner.as_str(), "o");
    let gifts = s.gifts("r").expect("gifts");
    assert_eq!(gifts.len(), 1, "idempotent per room and version");
    assert_eq!(gifts[0].to.as_deref(), Some("b"));
    assert_eq!(gifts[0].count, 2);
    let due = s.due_webhooks(Timestamp(1), 10).expect("due");
    assert_eq!(due.len(), 1, "idempotent per event id");
    assert_eq!(due[0].attempts, 0);
    s.webhook_failed(due[0].id, Timestamp(100), "500")
        .expect("fail");
    assert!(s.due_webhooks(Timestamp(99), 10).expect("due").is_empty());
    assert_eq!(s.next_webhook_at().expect("next"), Some(Timestamp(100)));
    assert_eq!(
        s.due_webhooks(Timestamp(100), 10).expect("due")[0].attempts,
        1
    );
    s.webhook_delivered(due[0].id, Timestamp(100))
        .expect("done");
    assert_eq!(s.next_webhook_at().expect("next"), None);
    let log = s.audit_log(Some("r"), Timestamp(0), 10).expect("audit");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].origin, "127.0.0.1:1");
}

fn outbox_and_audit_are_pruned_by_age(o: Open, _: Raw, _: bool) {
    let s = open(o);
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
        s.audit(&audit(at)).expect("audit");
    }
    assert_eq!(s.prune_audit(Timestamp(20)).expect("prune"), 1);
    let left = s.audit_log(None, Timestamp(0), 10).expect("log");
    assert_eq!(left.iter().map(|r| r.at.0).collect::<Vec<_>>(), [20, 30]);
    assert_eq!(s.audit_log(None, Timestamp(25), 10).expect("log").len(), 1);
    assert_eq!(s.audit_log(None, Timestamp(0), 1).expect("log").len(), 1);
    assert!(
        s.audit_log(Some("other"), Timestamp(0), 10)
            .expect("log")
            .is_empty()
    );
}

fn recordings_survive_reopening_and_unfinished_ones_are_marked_interrupted(
    o: Open,
    _: Raw,
    _: bool,
) {
    let mut rec = RecordingRecord::started(
        "rec-1".into(),
        "r".into(),
        "/data/rec-1.opus".into(),
        Timestamp(10),
    );
    {
        let s = open(o);
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
        done.dropped_packets = 3;
        s.save_recording(&done).expect("update");
        assert!(s.recordings("other").expect("list").is_empty());
    }
    let s = open(o);
    assert_eq!(s.interrupt_recordings().expect("interrupt"), 1);
    let list = s.recordings("r").expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, "rec-0");
    assert_eq!(list[0].status, "done");
    assert_eq!(list[0].duration_ms, Some(4000));
    assert_eq!(list[0].dropped_packets, 3);
    rec.status = "interrupted".into();
    rec.reason = Some("server stopped".into());
    assert_eq!(list[1], rec);
}

fn a_batch_keeps_the_latest_state_and_the_order_of_webhooks(o: Open, _: Raw, _: bool) {
    let s = open(o);
    let mut state = RoomState::new("r".into(), "o".into(), "t".into(), RoomSettings::default());
    let mut batch = WriteBatch::default();
    let row = RoomRow::of(&state, Timestamp(1)).expect("row");
    batch.rooms.insert(row.id.clone(), row);
    let hooks = |from: u64, to: u64| -> Vec<QueuedWebhook> {
        (from..to)
            .map(|i| QueuedWebhook {
                event_id: format!("r:{i}"),
                body: format!("{{\"n\":{i}}}"),
                queued_at: Timestamp(7),
            })
            .collect()
    };
    batch.webhooks = hooks(1, 200);
    batch.gifts = vec![gift(4)];
    batch.audit = vec![audit(1), audit(2)];
    let mut newer = WriteBatch::default();
    state.version = 9;
    state.title = "newer".into();
    let row = RoomRow::of(&state, Timestamp(1)).expect("row");
    newer.rooms.insert(row.id.clone(), row);
    // A repeated event id keeps the first body.
    newer.webhooks = hooks(199, 400);
    newer.webhooks[0].body = "{\"dup\":true}".into();
    newer.gifts = vec![gift(4), gift(5)];
    batch.append(newer);
    assert_eq!(batch.rooms.len(), 1, "the newer state replaced the older");
    s.write_batch(&batch).expect("batch");
    s.write_batch(&WriteBatch::default())
        .expect("an empty batch");
    let rooms = s.load_rooms().expect("rooms");
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].state.version, 9);
    assert_eq!(rooms[0].state.title, "newer");
    let due = s.due_webhooks(Timestamp(7), 1000).expect("due");
    let order: Vec<String> = due.iter().map(|d| d.event_id.clone()).collect();
    let expected: Vec<String> = (1..400).map(|i| format!("r:{i}")).collect();
    assert_eq!(order, expected, "the outbox keeps the queue's order");
    assert_eq!(due[198].body, "{\"n\":199}");
    assert_eq!(s.gifts("r").expect("gifts").len(), 2);
    assert_eq!(s.audit_log(None, Timestamp(0), 10).expect("audit").len(), 2);
}

fn songs_are_stored_searched_and_read_back(o: Open, _: Raw, _: bool) {
    let s = open(o);
    let song = |code: &str, title: &str| SongRecord {
        code: code.into(),
        title: title.into(),
        artist: "Ada 100%".into(),
        duration_ms: 180_000,
        lyrics: (code == "a1").then(|| "[00:01.00]la".to_owned()),
        key: [7; 32],
        package: vec![1, 2, 3, 4, 5],
        imported_at: Timestamp(11),
    };
    assert!(s.insert_song(&song("a1", "Moon River")).expect("insert"));
    assert!(s.insert_song(&song("b2", "Blue Moon")).expect("insert"));
    assert!(
        !s.insert_song(&song("a1", "Another")).expect("insert"),
        "a taken code"
    );
    let found = s.search_songs("MOON", 10).expect("search");
    assert_eq!(
        found.iter().map(|f| f.title.as_str()).collect::<Vec<_>>(),
        ["Blue Moon", "Moon River"],
        "case-insensitive, by title"
    );
    assert_eq!(found[1].package_bytes, 5);
    assert!(found[1].has_lyrics && !found[0].has_lyrics);
    assert_eq!(s.search_songs("100%", 10).expect("search").len(), 2);
    assert!(
        s.search_songs("0_%", 10).expect("search").is_empty(),
        "% and _ are literal"
    );
    assert_eq!(s.search_songs("", 1).expect("search").len(), 1);
    assert_eq!(s.song("a1").expect("song"), Some(song("a1", "Moon River")));
    assert_eq!(s.song("zz").expect("song"), None);
}

fn malformed_rows_are_clear_errors(o: Open, raw: Raw, pg: bool) {
    let s = open(o);
    s.record_gifts(&[gift(1)]).expect("gift");
    s.insert_song(&SongRecord {
        code: "k1".into(),
        title: "t".into(),
        artist: "a".into(),
        duration_ms: 1,
        lyrics: None,
        key: [1; 32],
        package: vec![],
        imported_at: Timestamp(1),
    })
    .expect("song");
    raw(
        "INSERT INTO rooms (id, created_at, version, dismissed, state) VALUES ('bad', 1, 1, false, '{not json')",
    );
    let err = s.load_rooms().expect_err("corrupt state").to_string();
    assert!(
        err.contains("malformed") && err.contains("room bad"),
        "{err}"
    );
    raw("UPDATE gifts SET value = -5");
    let err = s.gifts("r").expect_err("negative value").to_string();
    assert!(err.contains("value") || err.contains("6"), "{err}");
    raw(if pg {
        "UPDATE songs SET song_key = decode(repeat('00', 64), 'hex')"
    } else {
        "UPDATE songs SET song_key = zeroblob(64)"
    });
    let err = s.song("k1").expect_err("a 64-byte key").to_string();
    assert!(err.contains("64"), "{err}");
    // The server refuses to start on such a database, with the same message.
    drop(s);
    let err = o()
        .and_then(|s| s.load_rooms())
        .expect_err("still corrupt")
        .to_string();
    assert!(err.contains("room bad"), "{err}");
}

fn a_newer_schema_is_refused(o: Open, raw: Raw, pg: bool) {
    drop(open(o));
    // Each backend counts its schema its own way.
    raw(if pg {
        "UPDATE onmic_schema SET version = 99"
    } else {
        "PRAGMA user_version = 99"
    });
    match o() {
        Err(e @ StoreError::NewerSchema { found: 99, .. }) => {
            assert!(e.to_string().contains("newer"), "{e}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}

#[test]
fn an_unreachable_or_misnamed_postgres_is_a_clear_error() {
    let err = PgStore::connect("postgres://onmic@/onmic?host=/nonexistent-onmic-dir")
        .expect_err("no server there")
        .to_string();
    assert!(err.contains("PostgreSQL"), "{err}");
    let err = PgStore::connect("not a url = = =")
        .expect_err("not a connection string")
        .to_string();
    assert!(err.contains("database_url"), "{err}");
}

/// Nodes of a cluster sharing one PostgreSQL database (`PgStore::connect_as`): each loads only
/// the rooms it owns (and takes those nobody owns), a node's write of a room another node took
/// over is dropped (fencing), a room moves with one winning claim, and two nodes claiming the
/// outbox at the same time never get the same row.
#[test]
fn postgres_nodes_own_their_rooms_and_claim_each_webhook_once() {
    let pg = PgCluster::start();
    let url = pg.database("onmic");
    let room =
        |id: &str| RoomState::new(id.into(), "o".into(), "t".into(), RoomSettings::default());
    let alone = PgStore::connect(&url).expect("a server without a cluster");
    alone.save_room(&room("r0"), Timestamp(1)).expect("save r0");
    let a = PgStore::connect_as(&url, Some("a".into())).expect("node a");
    let b = PgStore::connect_as(&url, Some("b".into())).expect("node b");
    a.save_room(&room("r1"), Timestamp(2)).expect("save r1");
    b.save_room(&room("r2"), Timestamp(3)).expect("save r2");
    let ids = |s: &PgStore| -> Vec<String> {
        s.load_rooms()
            .expect("rooms")
            .into_iter()
            .map(|r| r.state.id.as_str().to_owned())
            .collect()
    };
    // a starts first: it takes the room nobody owned.
    assert_eq!(ids(&a), ["r0", "r1"]);
    assert_eq!(ids(&b), ["r2"]);
    assert_eq!(
        ids(&alone),
        ["r0", "r1", "r2"],
        "without a cluster: every room"
    );
    assert_eq!(
        pg.sql(
            "onmic",
            "SELECT string_agg(id || '=' || node, ',' ORDER BY id) FROM rooms"
        ),
        "r0=a,r1=a,r2=b"
    );
    // a is dead: its rooms are orphaned; b takes r1, and a second claim from a loses.
    assert_eq!(
        b.orphaned_rooms(&["b".into()], 10).expect("orphans"),
        [
            ("r0".to_owned(), "a".to_owned()),
            ("r1".to_owned(), "a".to_owned())
        ]
    );
    let taken = b
        .claim_room("r1", "a", "b")
        .expect("claim")
        .expect("b wins");
    assert_eq!(taken.state.id.as_str(), "r1");
    assert!(
        b.claim_room("r1", "a", "c").expect("claim").is_none(),
        "one winner"
    );
    assert_eq!(ids(&b), ["r1", "r2"]);
    // a, not dead after all, writes r1: dropped, b's state stays.
    let mut stale = room("r1");
    stale.version = 41;
    a.save_room(&stale, Timestamp(2))
        .expect("a fenced write is not an error");
    let mut fresh = room("r1");
    fresh.version = 7;
    b.save_room(&fresh, Timestamp(2)).expect("the owner writes");
    assert_eq!(
        pg.sql("onmic", "SELECT version || node FROM rooms WHERE id = 'r1'"),
        "7b"
    );
    // A store nodes do not share cannot move rooms.
    let dir = tempfile::tempdir().expect("tmp");
    let sqlite = SqliteStore::open(&dir.path().join("x.sqlite3")).expect("sqlite");
    assert!(matches!(
        sqlite.claim_room("r1", "a", "b"),
        Err(StoreError::Unsupported(_))
    ));

    // 300 webhooks, claimed by a and b at the same time, 7 at a time.
    let hooks: Vec<(String, String)> = (0..300)
        .map(|i| (format!("e{i}"), "{}".to_owned()))
        .collect();
    // Real times: a release makes rows due at the wall clock's now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    a.enqueue_webhooks(&hooks, Timestamp(now - 1000))
        .expect("queue");
    let claim_all = |s: &PgStore| {
        let mut got = Vec::new();
        loop {
            let batch = s.claim_webhooks(Timestamp(now), 7).expect("claim");
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|w| w.event_id));
        }
    };
    let (from_a, from_b) = std::thread::scope(|t| {
        let ta = t.spawn(|| claim_all(&a));
        let tb = t.spawn(|| claim_all(&b));
        (ta.join().expect("a"), tb.join().expect("b"))
    });
    eprintln!("claimed: a {}, b {}", from_a.len(), from_b.len());
    let mut all: Vec<&String> = from_a.iter().chain(&from_b).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 300, "every row claimed");
    assert_eq!(from_a.len() + from_b.len(), 300, "no row claimed twice");
    // Claimed rows are nobody else's until released; b's released, a gets them.
    assert!(
        a.claim_webhooks(Timestamp(now + 1000), 500)
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        a.release_webhooks(Some("b")).expect("release"),
        from_b.len()
    );
    // Due now, not in 5 minutes as a's own claims.
    let later = Timestamp(now + 60_000);
    let again = a.claim_webhooks(later, 500).expect("claim");
    assert_eq!(again.len(), from_b.len());
    // Delivered rows are done; failed ones due again, for anyone.
    a.webhook_delivered(again[0].id, later).expect("delivered");
    a.webhook_failed(again[1].id, later, "HTTP 500")
        .expect("failed");
    let due: Vec<String> = b
        .claim_webhooks(later, 500)
        .expect("claim")
        .into_iter()
        .map(|w| w.event_id)
        .collect();
    assert_eq!(due, [again[1].event_id.clone()]);
}
