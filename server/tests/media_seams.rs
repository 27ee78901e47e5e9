//! The seams the media layer (SFU) uses: "may uid X publish in room R now", the stream of seat,
//! mute and floor changes, and raising `bombing_detected` (event + webhook in the outbox).

mod common;

use common::*;
use onmic_room::{EventKind, RoomId, Uid};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn may_publish_follows_seats_and_mutes_and_bombing_is_raised() {
    // A receiver that refuses every connection: the webhooks stay pending in the outbox.
    let server = server(onmic_server::Config {
        webhook_url: Some(UNREACHABLE_RECEIVER.into()),
        ..config()
    })
    .await;
    let base = server.url();
    create_room(&base, "m1", "owner").await;
    let hub = server.hub().clone();
    let room = RoomId::from("m1");
    let owner_uid = Uid::from("owner");
    let mut changes = hub.subscribe(&room).expect("subscribe");

    let (mut owner, _) = Client::join(&base, "m1", "owner").await;
    assert!(!hub.may_publish(&room, &owner_uid), "not seated yet");
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    assert!(hub.may_publish(&room, &owner_uid));
    owner.ok(json!({ "type": "mute_self" })).await;
    assert!(!hub.may_publish(&room, &owner_uid), "self-muted");
    owner.ok(json!({ "type": "unmute_self" })).await;
    assert!(hub.may_publish(&room, &owner_uid));
    assert!(!hub.may_publish(&room, &Uid::from("stranger")));
    assert!(!hub.may_publish(&RoomId::from("nope"), &owner_uid));

    hub.report_bombing(&room, &Uid::from("intruder"), "RTP without a seat")
        .expect("reported");
    let mut kinds = Vec::new();
    while let Ok(frame) = changes.try_recv() {
        kinds.push(frame.event.kind.clone());
    }
    assert!(
        matches!(kinds[0], EventKind::MemberJoined { .. }),
        "{kinds:?}"
    );
    let seat_changes = kinds
        .iter()
        .filter(|k| matches!(k, EventKind::SeatChanged { .. }))
        .count();
    assert_eq!(seat_changes, 3, "take, mute, unmute: {kinds:?}");
    assert!(matches!(
        kinds.last(),
        Some(EventKind::BombingDetected { uid, .. }) if uid.as_str() == "intruder"
    ));
    // The receiver refuses: the webhook waits in the outbox.
    let queued = hub
        .store()
        .due_webhooks(onmic_room::Timestamp(u64::MAX), 100)
        .expect("outbox");
    let bombing = queued
        .iter()
        .find(|w| w.body.contains("\"bombing_detected\""))
        .expect("bombing_detected webhook queued");
    let body: serde_json::Value = serde_json::from_str(&bombing.body).expect("json");
    assert_eq!(body["data"]["uid"], "intruder");
    server.shutdown().await.expect("clean shutdown");
}
