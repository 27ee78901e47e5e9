//! The anti-bombing kick-and-ban is a room setting (`bombing` in the create request, persisted
//! with the room) that wins over the server-wide default (`bombing_ban_ms`): a room that asks
//! for kick-and-ban gets it on a server that only reports, and a `report_only` room keeps its
//! bomber on a server that bans. Real str0m peers inside a loopback-only network namespace.
//!
//! Needs root (for `ip netns`).

mod common;
mod sfu_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use onmic_room::RoomId;
use onmic_server::Config;
use serde_json::json;
use sfu_support::*;

#[test]
fn the_rooms_bombing_setting_wins_over_the_server_default() {
    in_netns(
        "the_rooms_bombing_setting_wins_over_the_server_default",
        scenario,
    );
}

/// What happened to `bomber` in `room` after it sent audio without a seat: (reported, kicked).
async fn bomb(server: &onmic_server::RunningServer, room: &str, settle: Duration) -> (bool, bool) {
    let base = server.url();
    let mut events = server
        .hub()
        .subscribe(&RoomId::from(room))
        .expect("subscribe");
    let (mut owner, _) = Client::join(&base, room, "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (_bomber_ws, _) = Client::join(&base, room, "bomber").await;
    let listener = Peer::connect(&base, room, &token(&base, room, "owner").await, 1).await;
    let bomber = Peer::connect(&base, room, &token(&base, room, "bomber").await, 4).await;
    bomber.sending.store(true, Ordering::Relaxed);
    let (mut reported, mut kicked) = (false, false);
    let mut scan = |events: &mut tokio::sync::broadcast::Receiver<onmic_server::hub::Frame>| {
        note_bomber(events, "bomber", &mut reported, &mut kicked);
        (reported, kicked)
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !scan(&mut events).0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a kick time to happen (it follows the report at once when configured).
    tokio::time::sleep(settle).await;
    let (reported, kicked) = scan(&mut events);
    assert_eq!(listener.from(4), 0, "the bomber was never forwarded");
    (reported, kicked)
}

async fn scenario() {
    // A server that only reports; the room asks for kick-and-ban.
    let server = server(config()).await;
    let base = server.url();
    let (status, body) = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({
            "id": "strict", "owner": "owner",
            "bombing": { "action": "kick_and_ban", "ban_ms": 600_000 },
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, room) = rest(&base, "get", "/v1/rooms/strict", None).await;
    assert_eq!(
        room["settings"]["bombing"],
        json!({ "action": "kick_and_ban", "ban_ms": 600_000 }),
        "the setting is part of the room's state: {room}"
    );
    let (reported, kicked) = bomb(&server, "strict", Duration::from_secs(1)).await;
    assert!(reported && kicked, "reported {reported}, kicked {kicked}");
    let mut again = Client::connect(&base).await;
    let tok = token(&base, "strict", "bomber").await;
    let reply = again
        .request(json!({ "type": "join", "room": "strict", "token": tok }))
        .await;
    assert_eq!(reply["code"], "banned", "{reply}");
    // A bad setting is refused when the room is created.
    let (status, body) = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({ "id": "bad", "owner": "o", "bombing": { "action": "explode" } })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    server.shutdown().await.expect("clean shutdown");

    // A server that bans by default; the room says report only.
    let server = common::server(Config {
        bombing_ban_ms: Some(600_000),
        ..config()
    })
    .await;
    let base = server.url();
    let (status, body) = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({ "id": "lenient", "owner": "owner", "bombing": { "action": "report_only" } })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (reported, kicked) = bomb(&server, "lenient", Duration::from_secs(1)).await;
    assert!(reported, "still reported");
    assert!(!kicked, "report_only keeps the sender in the room");
    // The owner changes the policy of a live room (its media router already open) over the
    // WebSocket: the next bomber is kicked and banned, and the change is in the room's state.
    let (status, body) = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({ "id": "switched", "owner": "owner", "bombing": { "action": "report_only" } })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (mut owner, _) = Client::join(&base, "switched", "owner").await;
    let _owner_peer = Peer::connect(
        &base,
        "switched",
        &token(&base, "switched", "owner").await,
        1,
    )
    .await;
    let (mut guest, _) = Client::join(&base, "switched", "guest").await;
    let refused = guest
        .request(json!({ "type": "set_rules", "bombing": { "action": "kick_and_ban", "ban_ms": 60_000 } }))
        .await;
    assert_eq!(
        refused["code"], "permission_denied",
        "only the owner: {refused}"
    );
    owner
        .ok(
            json!({ "type": "set_rules", "bombing": { "action": "kick_and_ban", "ban_ms": 600_000 },
                    "chat": { "who": "seated", "slow_mode_ms": 2000 } }),
        )
        .await;
    let (_, room) = rest(&base, "get", "/v1/rooms/switched", None).await;
    assert_eq!(
        room["settings"]["bombing"],
        json!({ "action": "kick_and_ban", "ban_ms": 600_000 }),
        "{room}"
    );
    assert_eq!(
        room["settings"]["chat"],
        json!({ "who": "seated", "slow_mode_ms": 2000 })
    );
    drop(owner);
    let (reported, kicked) = bomb(&server, "switched", Duration::from_secs(1)).await;
    assert!(
        reported && kicked,
        "after the change: reported {reported}, kicked {kicked}"
    );
    // Without a room setting the server default applies.
    create_room(&base, "default", "owner").await;
    let (reported, kicked) = bomb(&server, "default", Duration::from_secs(1)).await;
    assert!(reported && kicked, "reported {reported}, kicked {kicked}");
    server.shutdown().await.expect("clean shutdown");
}
