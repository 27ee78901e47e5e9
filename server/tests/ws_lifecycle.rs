//! Acceptance 3: a whole seat lifecycle over real WebSocket connections, seen identically and in
//! order by the owner, the guest and a third member.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seat_lifecycle_is_seen_identically_by_everyone() {
    let server = server(config()).await;
    let base = server.url();
    create_room(&base, "r1", "owner").await;
    let (mut owner, _) = Client::join(&base, "r1", "owner").await;
    let (mut guest, _) = Client::join(&base, "r1", "guest").await;
    let (mut third, joined) = Client::join(&base, "r1", "third").await;
    let start = joined["snapshot"]["version"].as_u64().expect("version");

    guest.ok(json!({ "type": "apply", "seat": 2 })).await;
    // The audience cannot approve.
    let denied = third
        .request(json!({ "type": "approve", "uid": "guest" }))
        .await;
    assert_eq!(denied["code"], "permission_denied", "{denied}");
    owner.ok(json!({ "type": "approve", "uid": "guest" })).await;
    owner.ok(json!({ "type": "mute_seat", "seat": 2 })).await;
    let refused = guest.request(json!({ "type": "unmute_self" })).await;
    assert_eq!(refused["code"], "host_muted", "{refused}");
    owner.ok(json!({ "type": "unmute_seat", "seat": 2 })).await;
    owner
        .ok(json!({ "type": "kick_from_seat", "seat": 2 }))
        .await;
    let kicked = owner
        .ok(json!({ "type": "kick", "uid": "guest", "ban_ms": 600_000 }))
        .await;
    let last = kicked["version"].as_u64().expect("version");

    // The guest sees everything up to its kick, then a close with the reason.
    let closing = guest.until_closed().await.expect("closing message");
    assert_eq!(closing["reason"], "kicked");
    third.until_version(last).await;
    owner.until_version(last).await;

    let after = |c: &Client| -> Vec<serde_json::Value> {
        c.events
            .iter()
            .filter(|e| e["version"].as_u64().unwrap_or(0) > start)
            .cloned()
            .collect()
    };
    let (o, g, t) = (after(&owner), after(&guest), after(&third));
    assert_eq!(o, t, "owner and third member saw the same events");
    assert_eq!(o, g, "the guest saw the same events before its close");
    let versions: Vec<u64> = o
        .iter()
        .map(|e| e["version"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "{versions:?}"
    );
    let kinds: Vec<&str> = o.iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
    assert_eq!(
        kinds,
        [
            "application_added",
            "application_removed",
            "seat_changed",
            "seat_changed",
            "seat_changed",
            "seat_changed",
            "member_left",
            "banned"
        ]
    );
    let reasons: Vec<&str> = o.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert_eq!(
        reasons,
        [
            "accepted",
            "taken",
            "mute_changed",
            "mute_changed",
            "kicked_off",
            "kicked"
        ]
    );

    // Rejoining is refused while the ban holds.
    let tok = token(&base, "r1", "guest").await;
    let mut again = Client::connect(&base).await;
    let reply = again
        .request(json!({ "type": "join", "room": "r1", "token": tok }))
        .await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "banned", "{reply}");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_connection_of_a_uid_wins() {
    let server = server(config()).await;
    let base = server.url();
    create_room(&base, "r2", "owner").await;
    let (mut first, _) = Client::join(&base, "r2", "owner").await;
    let (mut second, _) = Client::join(&base, "r2", "owner").await;
    let closing = first.until_closed().await.expect("closing message");
    assert_eq!(closing["reason"], "replaced");
    let pong = second.request(json!({ "type": "heartbeat" })).await;
    assert_eq!(pong["type"], "pong");
    server.shutdown().await.expect("clean shutdown");
}
