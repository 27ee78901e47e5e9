//! Acceptance 6: seats, bans and the gift ledger survive a real process restart (SIGKILL).

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_bans_and_gifts_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("onmic.sqlite3");
    let p = Proc::start(&db, &[]);
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

    let p = Proc::start(&db, &[]);
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
