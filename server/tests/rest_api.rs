//! Acceptance 8: every REST endpoint with and without valid auth; the OpenAPI document matches
//! the routes.

mod common;

use std::collections::BTreeSet;

use common::*;
use onmic_room::token;
use onmic_server::rest::{OPENAPI, REST_ROUTES};
use serde_json::{Value, json};

fn concrete(path: &str) -> String {
    path.replace("{room}", "api")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_missing_or_wrong_credentials() {
    let server = server(config()).await;
    let base = server.url();
    for (method, path) in REST_ROUTES {
        let path = concrete(path);
        let body = (*method == "post").then(|| json!({}));
        for auth in [
            None,
            Some("Bearer wrong:creds"),
            Some("Basic dGVzdA=="),
            Some("Bearer test-key:"),
        ] {
            let (status, reply) = rest_with(&base, method, &path, body.clone(), auth).await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}: {reply}");
            assert_eq!(reply["code"], "unauthorized");
        }
    }
    server.shutdown().await.expect("clean shutdown");
}

#[test]
fn openapi_document_lists_exactly_the_routes() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = REST_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_works_with_valid_credentials() {
    let server = server(config()).await;
    let base = server.url();
    // The served document is the checked-in one.
    let served = reqwest::get(format!("{base}/openapi.json"))
        .await
        .expect("served")
        .text()
        .await
        .expect("text");
    assert_eq!(served, OPENAPI);

    // Create: ok, duplicate, malformed body, bad id.
    create_room(&base, "api", "owner").await;
    let dup = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({ "id": "api", "owner": "x" })),
    )
    .await;
    assert_eq!((dup.0, dup.1["code"].as_str()), (409, Some("room_exists")));
    let bad = rest(&base, "post", "/v1/rooms", Some(json!({ "owner": "x" }))).await;
    assert_eq!(
        (bad.0, bad.1["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let bad = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({ "id": "a b", "owner": "x" })),
    )
    .await;
    assert_eq!(bad.0, 400);

    let (status, list) = rest(&base, "get", "/v1/rooms", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["rooms"][0]["id"], "api");
    assert_eq!(rest(&base, "get", "/v1/rooms/api", None).await.0, 200);
    assert_eq!(rest(&base, "get", "/v1/rooms/nope", None).await.0, 404);

    let (mut owner, _) = Client::join(&base, "api", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (mut guest, _) = Client::join(&base, "api", "guest").await;
    guest.ok(json!({ "type": "apply" })).await;
    owner.ok(json!({ "type": "approve", "uid": "guest" })).await;
    let (mut aud, _) = Client::join(&base, "api", "aud").await;

    let (_, all) = rest(&base, "get", "/v1/rooms/api/members", None).await;
    assert_eq!(all["members"].as_array().map(Vec::len), Some(3), "{all}");
    let (_, hosts) = rest(&base, "get", "/v1/rooms/api/members?hosts_only=true", None).await;
    let hosts: BTreeSet<&str> = hosts["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["uid"].as_str())
        .collect();
    assert_eq!(hosts, BTreeSet::from(["owner", "guest"]));

    let post = |path: &'static str, body: Value| {
        let base = base.clone();
        async move { rest(&base, "post", path, Some(body)).await }
    };
    let (s, r) = post("/v1/rooms/api/seat_mute", json!({ "uid": "guest" })).await;
    assert_eq!(s, 200, "{r}");
    let snap = server.hub().snapshot(&"api".into()).expect("room");
    assert!(snap.seat_of(&"guest".into()).expect("seated").host_muted);
    let r = guest.request(json!({ "type": "unmute_self" })).await;
    assert_eq!(r["code"], "host_muted");
    assert_eq!(
        post("/v1/rooms/api/seat_unmute", json!({ "uid": "guest" }))
            .await
            .0,
        200
    );
    let (s, r) = post("/v1/rooms/api/seat_mute", json!({ "uid": "aud" })).await;
    assert_eq!((s, r["code"].as_str()), (409, Some("not_seated")));

    let (s, _) = post(
        "/v1/rooms/api/chat_mute",
        json!({ "uid": "aud", "duration_secs": 60 }),
    )
    .await;
    assert_eq!(s, 200);
    let r = aud.request(json!({ "type": "chat", "text": "hi" })).await;
    assert_eq!(r["code"], "chat_muted");
    assert_eq!(
        post("/v1/rooms/api/chat_unmute", json!({ "uid": "aud" }))
            .await
            .0,
        200
    );
    aud.ok(json!({ "type": "chat", "text": "hi" })).await;

    let (s, r) = post(
        "/v1/rooms/api/floor",
        json!({ "uid": "guest", "grant": true }),
    )
    .await;
    assert_eq!((s, r["code"].as_str()), (409, Some("not_floor_mode")));
    let game = json!({ "id": "game", "owner": "owner", "mode": "floor_control" });
    assert_eq!(rest(&base, "post", "/v1/rooms", Some(game)).await.0, 201);
    let (_, _g) = Client::join(&base, "game", "player").await;
    let (s, r) = rest(
        &base,
        "post",
        "/v1/rooms/game/floor",
        Some(json!({ "uid": "player", "grant": true })),
    )
    .await;
    assert_eq!(s, 200, "{r}");

    let (s, _) = post(
        "/v1/rooms/api/kick",
        json!({ "uid": "aud", "ban_secs": 60 }),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        aud.until_closed().await.expect("closing")["reason"],
        "kicked"
    );
    assert_eq!(
        post("/v1/rooms/api/unban", json!({ "uid": "aud" })).await.0,
        200
    );
    let (s, r) = post("/v1/rooms/api/unban", json!({ "uid": "aud" })).await;
    assert_eq!((s, r["code"].as_str()), (409, Some("not_banned")));
    let (s, r) = post("/v1/rooms/api/kick", json!({ "uid": "owner" })).await;
    assert_eq!((s, r["code"].as_str()), (409, Some("target_protected")));

    guest
        .ok(json!({ "type": "send_gift", "gift": "heart", "count": 2 }))
        .await;
    let (s, gifts) = rest(&base, "get", "/v1/rooms/api/gifts", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        gifts["leaderboard"][0],
        json!({ "uid": "guest", "value": 20 })
    );

    let (s, t) = rest(
        &base,
        "post",
        "/v1/tokens",
        Some(json!({ "room": "api", "uid": "z", "privileges": ["join", "admin"], "ttl_secs": 60 })),
    )
    .await;
    assert_eq!(s, 200);
    let claims = token::verify(
        b"tok-secret",
        t["token"].as_str().expect("token"),
        &"app".into(),
        &"api".into(),
        server.hub().now(),
    )
    .expect("the issued token verifies");
    assert!(claims.allows(token::Privilege::Admin, server.hub().now()));
    let (s, _) = rest(
        &base,
        "post",
        "/v1/tokens",
        Some(json!({ "room": "api", "uid": "" })),
    )
    .await;
    assert_eq!(s, 400);

    assert_eq!(post("/v1/rooms/api/dismiss", json!({})).await.0, 200);
    assert_eq!(
        owner.until_closed().await.expect("closing")["reason"],
        "dismissed"
    );
    let (s, r) = post("/v1/rooms/api/dismiss", json!({})).await;
    assert_eq!((s, r["code"].as_str()), (409, Some("room_dismissed")));

    // Every admin action is in the audit log.
    let log = server
        .hub()
        .store()
        .audit_log(Some("api"), onmic_room::Timestamp(0), 1000)
        .expect("audit");
    let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
    for a in [
        "create_room",
        "seat_mute",
        "seat_unmute",
        "chat_mute",
        "chat_unmute",
        "kick",
        "unban",
        "dismiss",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    server.shutdown().await.expect("clean shutdown");
}
