//! The SFU never waits on the store (issue 16): with the PostgreSQL cluster frozen (SIGSTOP),
//! a seated speaker is still forwarded, and a member who sends audio without a seat is reported
//! and kicked by the SFU's own thread (a room change committed in memory), never forwarded; the
//! kick and ban reach the database once it resumes. Real str0m peers inside a loopback-only
//! network namespace, a real PostgreSQL.
//!
//! Needs root (for `ip netns`) and Debian's `postgresql`.

mod common;
mod sfu_support;

use std::sync::atomic::Ordering;

use common::pg::PgCluster;
use common::*;
use onmic_room::RoomId;
use onmic_server::Config;
use sfu_support::*;

#[test]
fn the_sfu_forwards_reports_and_kicks_while_postgres_is_frozen() {
    in_netns(
        "the_sfu_forwards_reports_and_kicks_while_postgres_is_frozen",
        scenario,
    );
}

async fn scenario() {
    let pg = PgCluster::start();
    let server = server(Config {
        database: None,
        database_url: Some(pg.database("onmic")),
        bombing_ban_ms: Some(600_000),
        ..config()
    })
    .await;
    let base = server.url();
    let room = "frozen";
    let setup = owner_and_listener(&base, room).await;
    // Everything that goes through REST (tokens) happens before the freeze: a REST answer waits
    // for its audit entry to be written.
    let (_bomber_ws, _) = Client::join(&base, room, "bomber").await;
    let bomber = Peer::connect(&base, room, &token(&base, room, "bomber").await, 4).await;
    let mut events = server
        .hub()
        .subscribe(&RoomId::from(room))
        .expect("subscribe");
    server
        .hub()
        .durable()
        .await
        .expect("written before the freeze");

    pg.pause();
    let heard_before = setup.listener.from(1);
    bomber.sending.store(true, Ordering::Relaxed);
    let (mut reported, mut kicked) = (false, false);
    until(
        "the bomber reported and kicked while the store is frozen",
        || {
            note_bomber(&mut events, "bomber", &mut reported, &mut kicked);
            reported && kicked
        },
    )
    .await;
    until("the seated owner is still forwarded", || {
        setup.listener.from(1) >= heard_before + 50
    })
    .await;
    assert_eq!(setup.listener.from(4), 0, "the bomber was never forwarded");
    let waiting = server.hub().store_status().pending;
    assert!(waiting > 0, "the changes wait for the frozen store");
    println!(
        "PostgreSQL frozen: {} packets forwarded from the speaker, the bomber reported and kicked, {waiting} rows waiting",
        setup.listener.from(1) - heard_before
    );

    pg.resume();
    server
        .hub()
        .durable()
        .await
        .expect("written after the resume");
    let state = pg.sql("onmic", "SELECT state FROM rooms WHERE id = 'frozen'");
    let state: serde_json::Value = serde_json::from_str(&state).expect("state JSON");
    assert!(
        state["bans"]["bomber"].as_u64().is_some(),
        "the ban is stored: {}",
        state["bans"]
    );
    drop(setup);
    server.shutdown().await.expect("clean shutdown");
}
