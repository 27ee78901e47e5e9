//! Acceptance 4: a client that stops heartbeating loses its seat after the (shortened) presence
//! timeout, the others see it, and on return the client is told before it may publish.

mod common;

use std::time::{Duration, Instant};

use common::*;
use onmic_room::{RoomId, Uid};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_loses_its_seat_and_is_told_on_return() {
    let server = server(onmic_server::Config {
        webhook_url: Some(UNREACHABLE_RECEIVER.into()),
        presence_timeout_ms: 2500,
        ..config()
    })
    .await;
    let base = server.url();
    create_room(&base, "p1", "owner").await;
    let (mut owner, _) = Client::join(&base, "p1", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (mut guest, _) = Client::join(&base, "p1", "guest").await;
    guest.ok(json!({ "type": "apply", "seat": 1 })).await;
    owner.ok(json!({ "type": "approve", "uid": "guest" })).await;
    assert!(
        server
            .hub()
            .may_publish(&RoomId::from("p1"), &Uid::from("guest"))
    );

    // The guest goes silent; the owner keeps heartbeating and watches.
    let started = Instant::now();
    let saw = |c: &Client, ty: &str, reason: &str| {
        c.events
            .iter()
            .any(|e| e["type"] == ty && e["reason"] == reason)
    };
    while !(saw(&owner, "seat_changed", "offline") && saw(&owner, "member_left", "timeout")) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no timeout seen"
        );
        owner.request(json!({ "type": "heartbeat" })).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seat1 = owner
        .events
        .iter()
        .find(|e| e["type"] == "seat_changed" && e["reason"] == "offline")
        .expect("offline seat event");
    assert_eq!(seat1["seat"]["index"], 1);
    assert_eq!(seat1["seat"]["state"], "empty");
    let left = owner
        .events
        .iter()
        .find(|e| e["type"] == "member_left")
        .expect("member_left");
    assert_eq!(left["uid"], "guest");
    let closing = guest.until_closed().await.expect("closing message");
    assert_eq!(closing["reason"], "timeout");
    assert!(
        !server
            .hub()
            .may_publish(&RoomId::from("p1"), &Uid::from("guest"))
    );

    // The webhooks went out (queued in the outbox; the receiver refuses them here).
    let hooks = server
        .hub()
        .store()
        .due_webhooks(onmic_room::Timestamp(u64::MAX), 1000)
        .expect("outbox");
    assert!(
        hooks.iter().any(|w| w.body.contains("\"member_left\"")
            && w.body.contains("\"timeout\"")
            && w.body.contains("\"guest\"")),
        "member_left(timeout) webhook queued"
    );
    assert!(
        hooks.iter().any(|w| w.body.contains("\"offline\"")),
        "seat_changed(offline) webhook queued"
    );

    // The owner kept heartbeating and kept its seat.
    let snap = server.hub().snapshot(&RoomId::from("p1")).expect("room");
    assert!(snap.seat_of(&Uid::from("owner")).is_some());

    // On return, the very first message is the state, with the lost seat.
    let tok = token(&base, "p1", "guest").await;
    let mut back = Client::connect(&base).await;
    back.send_raw(json!({ "id": 1, "type": "join", "room": "p1", "token": tok }).to_string())
        .await;
    let first = back.next().await.expect("a reply");
    assert_eq!(first["type"], "joined", "{first}");
    assert_eq!(first["lost_seat"]["seat"], 1, "{first}");
    assert_eq!(first["lost_seat"]["reason"], "offline");
    assert_eq!(first["role"], "audience");
    assert_eq!(first["snapshot"]["seats"][1]["state"], "empty");
    assert!(
        !server
            .hub()
            .may_publish(&RoomId::from("p1"), &Uid::from("guest"))
    );
    server.shutdown().await.expect("clean shutdown");
}
