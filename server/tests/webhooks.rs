//! Acceptance 5: a real HTTP receiver refuses the first 3 deliveries, then accepts; every event
//! arrives, signatures verify, duplicates are detectable by id, and the server is SIGKILLed and
//! restarted between attempts without losing anything.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use serde_json::{Value, json};

#[derive(Default)]
struct Received {
    /// (event id header, signature ok, body, status answered)
    attempts: Vec<(String, bool, Value, u16)>,
}

const HOOK_SECRET: &str = "hook-secret";

async fn hook(
    State(rx): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let sig = headers
        .get("x-onmic-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let id = headers
        .get("x-onmic-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let ok = sig == onmic_server::webhook::sign(HOOK_SECRET.as_bytes(), &body);
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut r = rx.lock().expect("lock");
    let status = if r.attempts.len() < 3 { 500 } else { 200 };
    r.attempts.push((id, ok, value, status));
    StatusCode::from_u16(status).expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_survive_sigkill() {
    let received = Arc::new(Mutex::new(Received::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(received.clone());
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("onmic.sqlite3");
    let env = [
        ("ONMIC_WEBHOOK_URL", hook_url.clone()),
        ("ONMIC_WEBHOOK_SECRET", HOOK_SECRET.to_owned()),
        ("ONMIC_WEBHOOK_RETRY_MS", "400".to_owned()),
    ];
    let p = Proc::start(&db, &env);
    create_room(&p.url, "w1", "owner").await;
    let (mut owner, _) = Client::join(&p.url, "w1", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    owner
        .ok(json!({ "type": "send_gift", "gift": "rose", "count": 3 }))
        .await;
    let last = owner.ok(json!({ "type": "leave" })).await["version"]
        .as_u64()
        .expect("version");
    let mut expected: BTreeSet<String> = (1..=last).map(|v| format!("w1:{v}")).collect();
    expected.insert("w1:created".into());

    // Kill the server as soon as the receiver has refused a delivery.
    let started = Instant::now();
    while received.lock().expect("lock").attempts.is_empty() {
        assert!(started.elapsed() < WAIT, "no delivery attempt");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.kill9();
    let refused_before_kill = received.lock().expect("lock").attempts.len();
    let p = Proc::start(&db, &env);

    let accepted = || -> BTreeSet<String> {
        received
            .lock()
            .expect("lock")
            .attempts
            .iter()
            .filter(|a| a.3 == 200)
            .map(|a| a.0.clone())
            .collect()
    };
    let started = Instant::now();
    while !expected.is_subset(&accepted()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "missing {:?}",
            expected.difference(&accepted()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(p);
    receiver.abort();

    assert_eq!(accepted(), expected, "exactly the room's events, none lost");
    let r = received.lock().expect("lock");
    assert!(refused_before_kill >= 1);
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, sig_ok, body, _) in &r.attempts {
        assert!(sig_ok, "signature verifies for {id}");
        assert_eq!(
            body["event_id"],
            id.as_str(),
            "body and header carry the same id"
        );
        *per_id.entry(id).or_default() += 1;
    }
    let retried = per_id.values().filter(|n| **n > 1).count();
    assert!(
        retried >= 1,
        "refused deliveries came again under the same id"
    );
    let types: BTreeSet<&str> = r
        .attempts
        .iter()
        .filter_map(|a| a.2["type"].as_str())
        .collect();
    for t in [
        "room_created",
        "member_joined",
        "seat_changed",
        "gift_sent",
        "member_left",
    ] {
        assert!(types.contains(t), "{t} in {types:?}");
    }
    let left = r
        .attempts
        .iter()
        .find(|a| a.2["type"] == "member_left")
        .expect("member_left");
    assert_eq!(left.2["data"]["reason"], "quit");
}
