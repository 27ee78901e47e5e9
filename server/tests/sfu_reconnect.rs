//! Reconnecting (issue 5, acceptance 4, server side): a new offer replaces a member's peer
//! connection; a seat lost while away is not forwarded. Runs inside its own loopback-only network
//! namespace (root needed).

mod common;
mod sfu_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use onmic_room::RoomId;
use onmic_server::Config;
use serde_json::json;
use sfu_support::*;

#[test]
fn a_new_offer_replaces_the_peer_and_a_seat_lost_while_away_is_not_forwarded() {
    in_netns(
        "a_new_offer_replaces_the_peer_and_a_seat_lost_while_away_is_not_forwarded",
        reconnects,
    );
}

async fn reconnects() {
    let server = server(Config {
        presence_timeout_ms: 2000,
        ..config()
    })
    .await;
    let base = server.url();
    create_room(&base, "re", "owner").await;
    let (mut owner, _) = Client::join(&base, "re", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (mut guest, _) = Client::join(&base, "re", "guest").await;
    guest.ok(json!({ "type": "apply", "seat": 1 })).await;
    owner.ok(json!({ "type": "approve", "uid": "guest" })).await;
    let owner_token = token(&base, "re", "owner").await;
    let guest_token = token(&base, "re", "guest").await;

    // The owner listens; the guest publishes from a first peer connection, then reconnects.
    let listener = Peer::connect(&base, "re", &owner_token, 1).await;
    let first = Peer::connect(&base, "re", &guest_token, 2).await;
    first.sending.store(true, Ordering::Relaxed);
    until("the first connection is heard", || listener.from(2) >= 10).await;
    let second = Peer::connect(&base, "re", &guest_token, 5).await;
    second.sending.store(true, Ordering::Relaxed);
    until("the new connection is heard", || listener.from(5) >= 10).await;
    stays_still(&[&listener], 2, "the replaced connection").await;
    drop(first);

    // The guest's WebSocket goes silent past the presence timeout: seat released, member gone,
    // its peer connection closed. The owner keeps heartbeating. Nobody sends audio meanwhile, so
    // no packet makes the SFU look at the room's events (the case where a stale `member_left`
    // could later hit the guest's next connection).
    second.sending.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + WAIT;
    loop {
        owner.request(json!({ "type": "heartbeat" })).await;
        let gone = server
            .hub()
            .snapshot(&RoomId::from("re"))
            .expect("room")
            .seat_of(&onmic_room::Uid::from("guest"))
            .is_none();
        if gone {
            break;
        }
        assert!(Instant::now() < deadline, "the guest never timed out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(guest);
    stays_still(&[&listener], 5, "after the seat was lost").await;

    // Back after the long drop: the join says the seat was lost; audio sent anyway (a client that
    // ignored it) reaches nobody.
    let (mut guest_again, joined) = Client::join(&base, "re", "guest").await;
    assert_eq!(joined["lost_seat"]["seat"], 1, "{joined}");
    owner.request(json!({ "type": "heartbeat" })).await;
    let third = Peer::connect(&base, "re", &guest_token, 6).await;
    third.sending.store(true, Ordering::Relaxed);
    stays_still(&[&listener], 6, "publishing without the seat").await;
    assert_eq!(listener.from(6), 0);

    // Seated again, the same new connection is heard: the old session's `member_left` acted on
    // the old peers only, not on this one.
    guest_again.ok(json!({ "type": "apply", "seat": 1 })).await;
    owner.ok(json!({ "type": "approve", "uid": "guest" })).await;
    until("the reseated guest is heard on its new connection", || {
        listener.from(6) >= 10
    })
    .await;
    drop((listener, second, third));
    server.shutdown().await.expect("clean shutdown");
}
