//! Acceptance 6: seats, bans and the gift ledger survive a real process restart (SIGKILL), with
//! SQLite and with PostgreSQL (issue 16: a private cluster, `common::pg`); with PostgreSQL the
//! webhook outbox and the audit log come back too, and a stop by SIGTERM exits cleanly with the
//! room at its last version (that the shutdown waits for the writer is proven in
//! `store_writer.rs`, with the database paused).

mod common;

use common::pg::PgCluster;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_bans_and_gifts_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("onmic.sqlite3");
    let start = || Proc::start(&db, &[]);
    survives_sigkill(&start).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_bans_gifts_and_the_outbox_survive_sigkill_with_postgres() {
    let pg = PgCluster::start();
    let url = pg.database("onmic");
    let env = [
        ("ONMIC_DATABASE_URL", url.clone()),
        // Webhooks are queued (never delivered: nobody listens there).
        ("ONMIC_WEBHOOK_URL", UNREACHABLE_RECEIVER.to_owned()),
        ("ONMIC_WEBHOOK_RETRY_MS", "600000".to_owned()),
    ];
    let start = || Proc::start_env(&env);
    survives_sigkill(&start).await;
    // Everything the first run queued is in the shared database: the room's creation, the
    // joins, the seat changes and the gift (the kicked uid was never a member: a ban, no event).
    let types = pg.sql(
        "onmic",
        "SELECT string_agg(DISTINCT body::json->>'type', ',' ORDER BY body::json->>'type') FROM outbox",
    );
    for t in ["room_created", "member_joined", "seat_changed", "gift_sent"] {
        assert!(types.contains(t), "{t} missing from the outbox: {types}");
    }
    let ids = pg.sql(
        "onmic",
        "SELECT count(*) - count(DISTINCT event_id) FROM outbox",
    );
    assert_eq!(ids, "0", "every event id once");
    let kicks = pg.sql(
        "onmic",
        "SELECT count(*) FROM audit WHERE action = 'kick' AND room = 's1'",
    );
    assert_eq!(kicks, "1", "the REST kick is in the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_stop_is_clean_with_postgres() {
    let pg = PgCluster::start();
    let url = pg.database("onmic");
    let p = Proc::start_env(&[("ONMIC_DATABASE_URL", url)]);
    create_room(&p.url, "g1", "owner").await;
    let (mut owner, _) = Client::join(&p.url, "g1", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    for i in 0..50 {
        owner
            .ok(json!({ "type": "notice", "text": format!("n{i}") }))
            .await;
    }
    let (_, room) = rest(&p.url, "get", "/v1/rooms/g1", None).await;
    let version = room["version"].as_u64().expect("version");
    drop(owner);
    p.terminate();
    let stored = pg.sql("onmic", "SELECT version FROM rooms WHERE id = 'g1'");
    let stored: u64 = stored.parse().expect("a version");
    assert_eq!(stored, version, "the stored version after SIGTERM");
}

async fn survives_sigkill(start: &dyn Fn() -> Proc) {
    let p = start();
    create_room(&p.url, "s1", "owner").await;
    let (mut owner, _) = Client::join(&p.url, "s1", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (mut guest, _) = Client::join(&p.url, "s1", "guest").await;
    guest.ok(json!({ "type": "apply", "seat": 3 })).await;
    owner.ok(json!({ "type": "approve", "uid": "guest" })).await;
    guest
        .ok(json!({ "type": "send_gift", "gift": "rocket", "count": 2 }))
        .await;
    let (status, body) = rest(
        &p.url,
        "post",
        "/v1/rooms/s1/kick",
        Some(json!({ "uid": "troll", "ban_secs": 3600 })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    drop((owner, guest));
    p.kill9();

    let p = start();
    let (status, room) = rest(&p.url, "get", "/v1/rooms/s1", None).await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(room["seats"][0]["uid"], "owner", "{room}");
    assert_eq!(room["seats"][3]["uid"], "guest", "{room}");
    assert!(room["bans"]["troll"].as_u64().is_some(), "{room}");
    let (_, gifts) = rest(&p.url, "get", "/v1/rooms/s1/gifts", None).await;
    assert_eq!(gifts["ledger"].as_array().map(Vec::len), Some(1), "{gifts}");
    assert_eq!(gifts["ledger"][0]["value"], 2000);
    assert_eq!(gifts["leaderboard"][0]["uid"], "guest");

    // The guest comes back within the presence timeout: still seated, nothing lost.
    let (_, joined) = Client::join(&p.url, "s1", "guest").await;
    assert_eq!(joined["role"], "guest", "{joined}");
    assert!(joined["lost_seat"].is_null());
    // The ban still holds.
    let tok = token(&p.url, "s1", "troll").await;
    let mut troll = Client::connect(&p.url).await;
    let r = troll
        .request(json!({ "type": "join", "room": "s1", "token": tok }))
        .await;
    assert_eq!(r["code"], "banned", "{r}");
}
