//! Issue 14's findings, each reproduced: look-alike identities, unbounded values, control and
//! invisible text, duplicate JSON keys, pre-join limits and close codes, REST errors, the audit
//! trail and the secrets of `onmic-server config`. (The outbox's retention is in
//! `webhook_outbox.rs`.)

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use onmic_room::token::{self, Claims, Grant, Privilege};
use onmic_room::{Timestamp, Uid};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};

/// A token signed with the test secret for any uid: what an app that does not check uids would
/// hand out (the REST API refuses these uids, so the join must refuse them too).
fn forged_token(room: &str, uid: &str, now: Timestamp) -> String {
    forged_token_until(room, uid, now, Timestamp(now.0 + 3_600_000))
}

fn forged_token_until(room: &str, uid: &str, now: Timestamp, expires: Timestamp) -> String {
    let grant = |privilege| Grant {
        privilege,
        not_before: now,
        expires,
    };
    let claims = Claims {
        app: "app".into(),
        room: room.into(),
        uid: Uid::from(uid),
        issued: now,
        grants: vec![grant(Privilege::Join), grant(Privilege::PublishAudio)],
    };
    token::issue(b"tok-secret", &claims)
}

/// Reads until the server closes: the `closing` message (if any) and the close frame's code.
async fn close_of(client: &mut Client) -> (Option<Value>, Option<u16>) {
    let mut closing = None;
    loop {
        let msg = tokio::time::timeout(WAIT, client.ws.next())
            .await
            .expect("the server closes within the wait");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["type"] == "closing" {
                    closing = Some(v);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return (closing, frame.map(|f: CloseFrame| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (closing, None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_that_could_impersonate_are_refused() {
    let server = server(config()).await;
    let base = server.url();
    // Token issuance.
    let long = "a".repeat(5000);
    for uid in [
        " ",
        "a\0b",
        "line\nbreak",
        "\u{202e}evil",
        "owner ",
        long.as_str(),
    ] {
        let (s, b) = rest(
            &base,
            "post",
            "/v1/tokens",
            Some(json!({ "room": "r1", "uid": uid })),
        )
        .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("invalid_uid")),
            "{uid:?}: {b}"
        );
    }
    // Room ids are URL path segments.
    for id in ["x/sub", "..", ".", "a b", ""] {
        let (s, b) = rest(
            &base,
            "post",
            "/v1/rooms",
            Some(json!({ "id": id, "owner": "owner" })),
        )
        .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("invalid_room_id")),
            "{id:?}: {b}"
        );
        let (s, b) = rest(
            &base,
            "post",
            "/v1/tokens",
            Some(json!({ "room": id, "uid": "u" })),
        )
        .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("invalid_room_id")),
            "{id:?}: {b}"
        );
    }
    create_room(&base, "r1", "owner").await;
    let (s, b) = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({ "id": "R1", "owner": "owner" })),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (409, Some("confusable_room_id")),
        "{b}"
    );

    // At join: the owner's uid with a trailing space, another case, full-width, NFD; and the
    // reported control/bidi uids, all with validly signed tokens.
    let (_owner, _) = Client::join(&base, "r1", "owner").await;
    let (_celine, _) = Client::join(&base, "r1", "céline").await;
    let now = server.hub().now();
    for (uid, code) in [
        ("owner ", "invalid_uid"),
        ("Owner", "confusable_uid"),
        ("OWNER", "confusable_uid"),
        ("ｏｗｎｅｒ", "invalid_uid"),
        ("0wner", "confusable_uid"),
        ("ce\u{301}line", "invalid_uid"),
        ("Céline", "confusable_uid"),
        (" ", "invalid_uid"),
        ("a\0b", "invalid_uid"),
        ("line\nbreak", "invalid_uid"),
        ("\u{202e}evil", "invalid_uid"),
    ] {
        let mut c = Client::connect(&base).await;
        let r = c
            .request(json!({ "type": "join", "room": "r1", "token": forged_token("r1", uid, now) }))
            .await;
        assert_eq!(
            (r["type"].as_str(), r["code"].as_str()),
            (Some("error"), Some(code)),
            "{uid:?}: {r}"
        );
    }
    let (_, members) = rest(&base, "get", "/v1/rooms/r1/members", None).await;
    assert_eq!(
        members["members"].as_array().map(Vec::len),
        Some(2),
        "{members}"
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_has_a_bound_and_fits_a_javascript_number() {
    let server = server(config()).await;
    let base = server.url();
    let max = u64::MAX;
    let (s, b) = rest(
        &base,
        "post",
        "/v1/tokens",
        Some(json!({ "room": "b1", "uid": "u", "ttl_secs": max })),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("out_of_range")), "{b}");
    let (s, b) = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({ "id": "b0", "owner": "o",
            "boss_seat": { "window": max, "hold": 1000, "min_value": 1 } })),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("out_of_range")), "{b}");
    let (s, b) = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({ "id": "b0", "owner": "o", "title": "t".repeat(257) })),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    // The reported 100,000-character title: over the body limit before it is even parsed.
    let (s, b) = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({ "id": "b0", "owner": "o", "title": "t".repeat(100_000) })),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (413, Some("too_large")), "{b}");
    create_room_from(
        &base,
        json!({ "id": "b1", "owner": "owner", "title": "t".repeat(256) }),
    )
    .await;
    let (mut owner, joined) = Client::join(&base, "b1", "owner").await;
    assert!(joined.to_string().len() < onmic_room::protocol::MAX_MESSAGE_BYTES);
    let (_guest, _) = Client::join(&base, "b1", "guest").await;
    for body in [
        json!({ "type": "mute_chat", "uid": "guest", "duration_ms": max }),
        json!({ "type": "mute_chat", "uid": "guest", "duration_ms": 366u64 * 86_400_000 + 1 }),
        json!({ "type": "kick", "uid": "guest", "ban_ms": max }),
    ] {
        let r = owner.request(body.clone()).await;
        assert_eq!(r["code"], "out_of_range", "{body} -> {r}");
    }
    let r = owner
        .request(json!({ "type": "mute_chat", "uid": "guest", "duration_ms": 60_000 }))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    let until = owner.events.last().expect("chat_muted")["until"].as_u64();
    assert!(
        until.is_some_and(|u| u <= onmic_room::config::MAX_SAFE_INTEGER),
        "{:?}",
        owner.events.last()
    );
    // A token signed elsewhere that never expires: `publish_until` is still a safe integer.
    let mut forever = Client::connect(&base).await;
    let tok = forged_token_until("b1", "forever", server.hub().now(), Timestamp(u64::MAX));
    let r = forever
        .request(json!({ "type": "join", "room": "b1", "token": tok }))
        .await;
    assert_eq!(r["type"], "joined", "{r}");
    let member = &r["snapshot"]["members"]["forever"];
    assert!(
        member["publish_until"]
            .as_u64()
            .is_some_and(|t| t <= onmic_room::config::MAX_SAFE_INTEGER),
        "{member}"
    );
    // A request id past 2^53 - 1 could not be echoed to a JavaScript client exactly.
    owner
        .send_raw(r#"{"id":9007199254740993,"type":"heartbeat"}"#.into())
        .await;
    let r = loop {
        let m = owner.next().await.expect("reply");
        if m["type"] != "event" {
            break m;
        }
    };
    assert_eq!(r["code"], "malformed", "{r}");
    let (s, b) = rest(
        &base,
        "post",
        "/v1/rooms/b1/chat_mute",
        Some(json!({ "uid": "guest", "duration_secs": max })),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("out_of_range")), "{b}");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_invisible_text_never_passes() {
    let server = server(config()).await;
    let base = server.url();
    let (s, b) = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({ "id": "t0", "owner": "o", "title": "\u{1b}[31mred" })),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    create_room(&base, "t1", "owner").await;
    let (mut owner, _) = Client::join(&base, "t1", "owner").await;
    for text in ["\u{200b}\u{200b}\u{200b}", "\u{feff}\u{200d}", " \u{2060} "] {
        for ty in ["chat", "notice"] {
            let r = owner.request(json!({ "type": ty, "text": text })).await;
            assert_eq!(r["code"], "empty_message", "{ty} {text:?}: {r}");
        }
    }
    for text in [
        "a\0b",
        "ding\u{7}",
        "\u{1b}[2J\u{1b}[31mred",
        "\u{202e}txt.exe",
    ] {
        for ty in ["chat", "notice"] {
            let r = owner.request(json!({ "type": ty, "text": text })).await;
            assert_eq!(r["code"], "invalid_text", "{ty} {text:?}: {r}");
        }
    }
    owner
        .ok(json!({ "type": "chat", "text": "two\nlines 你好" }))
        .await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_are_malformed_over_both_transports() {
    let server = server(config()).await;
    let base = server.url();
    create_room(&base, "d1", "owner").await;
    let (mut owner, _) = Client::join(&base, "d1", "owner").await;
    owner
        .send_raw(r#"{"id":7,"type":"notice","type":"chat","text":"x"}"#.into())
        .await;
    let r = owner.next().await.expect("reply");
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("malformed")),
        "{r}"
    );
    assert!(owner.events.is_empty(), "nothing ran: {:?}", owner.events);
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/v1/tokens"))
        .header("authorization", auth())
        .body(r#"{"room":"d1","uid":"a","uid":"owner"}"#)
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 400);
    let b: Value = resp.json().await.expect("JSON");
    assert_eq!(b["code"], "invalid_request", "{b}");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_errors_are_json_with_stable_codes() {
    let server = server(config()).await;
    let base = server.url();
    let client = reqwest::Client::new();
    let check = |resp: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(resp.status().as_u16(), status);
        let ct = resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(ct.starts_with("application/json"), "{ct}");
        let b: Value = resp.json().await.expect("a JSON body");
        assert_eq!(b["code"], code, "{b}");
        let message = b["message"].as_str().expect("message").to_owned();
        for internal in ["u16", "u64", "floating point", "e+19", "line 1 column"] {
            assert!(!message.contains(internal), "{message}");
        }
        message
    };
    let r = client
        .get(format!("{base}/nope"))
        .send()
        .await
        .expect("answers");
    check(r, 404, "not_found").await;
    let r = client
        .delete(format!("{base}/v1/rooms"))
        .send()
        .await
        .expect("answers");
    check(r, 405, "method_not_allowed").await;
    for body in [
        r#"{"room":"r","uid":"u","ttl_secs":1.8446744073709552e19}"#,
        r#"{"room":"r","uid":"u","ttl_secs":-1}"#,
        r#"{"room":"r","uid":"u","privileges":["root"]}"#,
        r#"{"room":"r"}"#,
        "not json",
        "[1,2]",
    ] {
        let r = client
            .post(format!("{base}/v1/tokens"))
            .header("authorization", auth())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("answers");
        let m = check(r, 400, "invalid_request").await;
        if body.contains("ttl_secs") {
            assert!(m.contains("ttl_secs"), "names the field: {m}");
        }
    }
    create_room(&base, "e1", "owner").await;
    let r = client
        .get(format!("{base}/v1/rooms/e1/members?hosts_only=maybe"))
        .header("authorization", auth())
        .send()
        .await
        .expect("answers");
    check(r, 400, "invalid_request").await;
    let r = client
        .post(format!("{base}/v1/rooms/e1/kick"))
        .header("authorization", auth())
        .body(r#"{"uid":"x","ban_secs":65536.5}"#)
        .send()
        .await
        .expect("answers");
    check(r, 400, "invalid_request").await;
    // The scheme is case-insensitive (RFC 7235).
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let (s, b) = rest_with(
            &base,
            "get",
            "/v1/rooms",
            None,
            Some(&format!("{scheme} {KEY}:{SECRET}")),
        )
        .await;
        assert_eq!(s, 200, "{scheme}: {b}");
    }
    let (s, b) = rest_with(&base, "get", "/v1/rooms", None, Some("Basic x")).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthorized")));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_every_transport_and_every_token() {
    let server = server(config()).await;
    let base = server.url();
    create_room(&base, "a1", "owner").await;
    let (mut owner, _) = Client::join(&base, "a1", "owner").await;
    let (_guest, _) = Client::join(&base, "a1", "guest").await;
    owner
        .ok(json!({ "type": "mute_chat", "uid": "guest", "duration_ms": 1000 }))
        .await;
    owner.ok(json!({ "type": "notice", "text": "hi" })).await;
    owner
        .ok(json!({ "type": "chat", "text": "not audited" }))
        .await;
    owner
        .ok(json!({ "type": "kick", "uid": "guest", "ban_ms": 0 }))
        .await;
    let (s, log) = rest(&base, "get", "/v1/audit?room=a1&limit=1000", None).await;
    assert_eq!(s, 200, "{log}");
    let entries = log["entries"].as_array().expect("entries");
    let find = |actor: &str, action: &str| {
        entries
            .iter()
            .find(|e| e["actor"] == actor && e["action"] == action)
            .unwrap_or_else(|| panic!("{actor} {action} in {log}"))
            .clone()
    };
    let created = find(&format!("rest:{KEY}"), "create_room");
    assert!(
        created["origin"]
            .as_str()
            .is_some_and(|o| o.starts_with("127.0.0.1:")),
        "{created}"
    );
    for who in ["owner", "guest"] {
        let t = entries
            .iter()
            .find(|e| e["action"] == "issue_token" && e["detail"]["request"]["uid"] == who)
            .unwrap_or_else(|| panic!("token for {who} in {log}"));
        assert!(t["at"].as_u64().is_some_and(|at| at > 0));
        assert!(t["detail"]["request"].get("token").is_none());
    }
    for action in ["mute_chat", "notice", "kick"] {
        let e = find("member:owner", action);
        assert!(
            e["origin"]
                .as_str()
                .is_some_and(|o| o.starts_with("127.0.0.1:")),
            "{e}"
        );
        assert_eq!(e["room"], "a1");
    }
    assert!(
        !entries.iter().any(|e| e["action"] == "chat"),
        "chat is not an admin action"
    );
    // Filters.
    let (_, other) = rest(&base, "get", "/v1/audit?room=nope", None).await;
    assert_eq!(other["entries"].as_array().map(Vec::len), Some(0));
    let (s, b) = rest(&base, "get", "/v1/audit?since=x", None).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_request")));
    let (s, _) = rest_with(&base, "get", "/v1/audit", None, None).await;
    assert_eq!(s, 401);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_join_limits_and_every_close_has_its_code() {
    let server = server(config()).await;
    let base = server.url();
    create_room(&base, "p1", "owner").await;

    // Before join: a frame over the pre-join limit closes with `too_large` (1009).
    let mut c = Client::connect(&base).await;
    c.send_raw(format!(
        r#"{{"type":"join","room":"p1","token":"{}"}}"#,
        "a".repeat(onmic_room::protocol::MAX_PREJOIN_BYTES)
    ))
    .await;
    let (closing, code) = close_of(&mut c).await;
    assert_eq!(closing.expect("closing")["reason"], "too_large");
    assert_eq!(code, Some(1009));

    // Over the read limit (was: 1006 without `closing`).
    let mut c = Client::connect(&base).await;
    c.send_raw("x".repeat(1 << 20)).await;
    let (closing, code) = close_of(&mut c).await;
    assert_eq!(closing.expect("closing")["reason"], "too_large");
    assert_eq!(code, Some(1009));

    // Invalid UTF-8 in a text frame (was: no close frame): 1007.
    for joined in [false, true] {
        let mut c = if joined {
            Client::join(&base, "p1", "owner").await.0
        } else {
            Client::connect(&base).await
        };
        let frame = Frame::message(vec![0x7b, 0xff, 0xfe, 0x7d], OpCode::Data(Data::Text), true);
        c.ws.send(Message::Frame(frame)).await.expect("send");
        let (closing, code) = close_of(&mut c).await;
        assert_eq!(
            closing.expect("closing")["reason"],
            "bad_frame",
            "joined {joined}"
        );
        assert_eq!(code, Some(1007), "joined {joined}");
    }

    // After join, the protocol limit: 16 KiB.
    let (mut owner, _) = Client::join(&base, "p1", "owner").await;
    owner
        .send_raw(format!(
            r#"{{"type":"chat","text":"{}"}}"#,
            "a".repeat(20_000)
        ))
        .await;
    let (closing, code) = close_of(&mut owner).await;
    assert_eq!(closing.expect("closing")["reason"], "too_large");
    assert_eq!(code, Some(1009));

    server.shutdown().await.expect("clean shutdown");

    // At most 3 connections of one address wait to join; a fourth is refused before the upgrade.
    let server = common::server(onmic_server::Config {
        max_prejoin_per_addr: 3,
        ..config()
    })
    .await;
    let base = server.url();
    create_room(&base, "p1", "owner").await;
    let url = format!("{}/ws", base.replace("http://", "ws://"));
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(Client::connect(&base).await);
    }
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                .expect("a JSON body");
            assert_eq!(body["code"], "too_many_connections");
        }
        other => panic!("expected HTTP 429, got {:?}", other.map(|_| "a connection")),
    }
    // One joins: its slot frees.
    let tok = token(&base, "p1", "guest").await;
    let r = waiting[0]
        .request(json!({ "type": "join", "room": "p1", "token": tok }))
        .await;
    assert_eq!(r["type"], "joined", "{r}");
    let _again = Client::connect(&base).await;
    server.shutdown().await.expect("clean shutdown");
}

#[test]
fn config_masks_secrets_unless_asked() {
    let run = |args: &[&str]| -> Value {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env("ONMIC_TOKEN_SECRET", "tok-SECRET-1")
            .env("ONMIC_CUSTOMER_SECRET", "cust-SECRET-2")
            .env("ONMIC_WEBHOOK_SECRET", "hook-SECRET-3")
            .output()
            .expect("runs");
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).expect("utf-8");
        serde_json::from_str(&text).expect("JSON")
    };
    let masked = run(&["config"]);
    let text = masked.to_string();
    assert!(!text.contains("SECRET"), "{text}");
    for key in onmic_server::Config::SECRET_KEYS {
        assert_eq!(masked[key], "***", "{key}");
    }
    assert_eq!(
        masked["customer_key"], "onmic-key",
        "non-secrets stay readable"
    );
    let clear = run(&["config", "--show-secrets"]);
    assert_eq!(clear["token_secret"], "tok-SECRET-1");
    assert_eq!(clear["webhook_secret"], "hook-SECRET-3");
}
