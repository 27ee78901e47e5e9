//! Acceptance 7: malformed JSON, unknown types, binary frames, oversized messages and floods get
//! typed error replies or a close with a reason, and the server keeps serving.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_typed_errors() {
    let server = server(config()).await;
    let base = server.url();
    create_room(&base, "b1", "owner").await;

    // Before joining.
    let mut c = Client::connect(&base).await;
    let r = c.request(json!({ "type": "heartbeat" })).await;
    assert_eq!(r["code"], "not_joined");
    let r = c
        .request(json!({ "type": "join", "room": "b1", "token": "garbage" }))
        .await;
    assert_eq!(r["code"], "token_malformed");
    let r = c
        .request(
            json!({ "type": "join", "room": "nope", "token": token(&base, "nope", "x").await }),
        )
        .await;
    assert_eq!(r["code"], "no_such_room");
    let r = c
        .request(json!({ "type": "join", "room": "b1", "token": token(&base, "other", "x").await }))
        .await;
    assert_eq!(r["code"], "token_wrong_room");

    let (mut c, _) = Client::join(&base, "b1", "aud").await;
    c.send_raw("{not json".into()).await;
    let r = c.next().await.expect("reply");
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("malformed"))
    );
    c.send_raw("[1,2,3]".into()).await;
    assert_eq!(c.next().await.expect("reply")["code"], "malformed");
    let r = c.request(json!({ "type": "teleport" })).await;
    assert_eq!(r["code"], "unknown_type");
    let r = c
        .request(json!({ "type": "enter", "uid": "aud", "admin": true }))
        .await;
    assert_eq!(
        r["code"], "unknown_type",
        "server-side actions are not requests"
    );
    let r = c.request(json!({ "type": "apply", "seat": "two" })).await;
    assert_eq!(r["code"], "malformed");
    let r = c.request(json!({ "type": "lock_seat", "seat": 1 })).await;
    assert_eq!(r["code"], "permission_denied");
    let r = c
        .request(json!({ "type": "join", "room": "b1", "token": "x" }))
        .await;
    assert_eq!(r["code"], "already_joined");
    c.ws.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .expect("send");
    assert_eq!(c.next().await.expect("reply")["code"], "binary_frame");
    // Chat has its own per-member rate limit (5 per 5 s by default).
    let mut codes = Vec::new();
    for i in 0..7 {
        let r = c
            .request(json!({ "type": "chat", "text": format!("m{i}") }))
            .await;
        codes.push(r["code"].as_str().unwrap_or("ok").to_owned());
    }
    assert_eq!(
        codes.iter().filter(|c| *c == "rate_limited").count(),
        2,
        "{codes:?}"
    );
    let r = c
        .request(json!({ "type": "chat", "text": "x".repeat(501) }))
        .await;
    assert_eq!(r["code"], "message_too_long");

    // Oversized: a typed close.
    let big = json!({ "type": "chat", "text": "y".repeat(20_000) }).to_string();
    c.send_raw(big).await;
    let closing = c.until_closed().await.expect("closing message");
    assert_eq!(closing["reason"], "too_large");

    let h = reqwest::get(format!("{base}/health")).await.expect("alive");
    assert!(h.status().is_success());
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_refused_then_closed() {
    let server = server(onmic_server::Config {
        max_frames_per_sec: 20,
        ..config()
    })
    .await;
    let base = server.url();
    create_room(&base, "f1", "owner").await;
    let (mut c, _) = Client::join(&base, "f1", "flooder").await;
    for i in 0..200 {
        let frame = json!({ "id": i, "type": "heartbeat" }).to_string();
        if c.ws.send(Message::Text(frame.into())).await.is_err() {
            break;
        }
    }
    let mut limited = 0;
    let mut closing = None;
    while let Some(m) = c.next().await {
        if m["code"] == "rate_limited" {
            limited += 1;
        }
        if m["type"] == "closing" {
            closing = Some(m);
        }
    }
    assert!(limited >= 1, "refused before being closed");
    assert_eq!(closing.expect("closing message")["reason"], "flood");
    // Others are unaffected.
    let (mut other, _) = Client::join(&base, "f1", "calm").await;
    assert_eq!(
        other.request(json!({ "type": "heartbeat" })).await["type"],
        "pong"
    );
    server.shutdown().await.expect("clean shutdown");
}
