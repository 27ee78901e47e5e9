//! The webhook outbox stays bounded (issue 14, acceptance 4): nothing is queued without a
//! receiver; with the receiver down, 10,000 events queue and undelivered rows expire after
//! `webhook_retention_secs`; once it is up, everything left is delivered and delivered rows are
//! pruned after the same retention. The row counts are printed along the way.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use common::*;
use onmic_room::{Action, Command, RoomId, Timestamp};
use onmic_server::Clock;

/// A clock the test moves by hand.
#[derive(Default)]
struct HandClock(AtomicU64);

impl Clock for HandClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

const EVENTS: u64 = 10_000;
/// Clock time between two events (10,000 events over 20 minutes).
const EVENT_EVERY_MS: u64 = 120;
const RETENTION_SECS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_queued_without_a_receiver() {
    let server = server(config()).await;
    let base = server.url();
    create_room(&base, "n1", "owner").await;
    let (mut owner, _) = Client::join(&base, "n1", "owner").await;
    owner
        .ok(serde_json::json!({ "type": "notice", "text": "x" }))
        .await;
    owner.ok(serde_json::json!({ "type": "dismiss" })).await;
    assert_eq!(server.hub().store().outbox_size().expect("size"), (0, 0));
    let (_, health) = rest(&base, "get", "/health", None).await;
    assert_eq!(health["webhook_outbox"], 0, "{health}");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_stays_bounded_with_the_receiver_down_then_up() {
    // Reserve a port for the receiver, but do not listen yet: the receiver is down.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let clock = Arc::new(HandClock(AtomicU64::new(1_800_000_000_000)));
    let config = onmic_server::Config {
        webhook_url: Some(format!("http://127.0.0.1:{port}/hooks")),
        webhook_retry_ms: 1000,
        webhook_retention_secs: RETENTION_SECS,
        ..config()
    };
    let server = onmic_server::start_with_clock(config, clock.clone())
        .await
        .expect("server starts");
    let base = server.url();
    create_room(&base, "o1", "owner").await;
    let hub = server.hub().clone();
    let room = RoomId::from("o1");
    let size = || hub.store().outbox_size().expect("size");
    // Each notice is one event; a `member_joined`/`left` pair makes one webhook each.
    let mut most = 0;
    for i in 0..EVENTS {
        clock.0.fetch_add(EVENT_EVERY_MS, Ordering::SeqCst);
        let uid = format!("u{}", i % 50);
        let enter = Action::Enter {
            uid: uid.as_str().into(),
            admin: false,
            publish_until: None,
        };
        hub.execute(&room, Command::system(enter)).expect("enter");
        hub.execute(&room, Command::member(uid.as_str(), Action::Leave))
            .expect("leave");
        // The server prunes every minute.
        if (i + 1) * EVENT_EVERY_MS % 60_000 < EVENT_EVERY_MS {
            hub.prune(hub.now());
            let (pending, delivered) = size();
            most = most.max(pending + delivered);
            println!(
                "receiver down, {:>5} events: {pending} pending, {delivered} delivered rows",
                i + 1
            );
        }
    }
    hub.prune(hub.now());
    let (pending, delivered) = size();
    println!("receiver down, all {EVENTS} events: {pending} pending, {delivered} delivered rows");
    // Two webhooks per event pair, and only the last RETENTION_SECS (+ one pruning minute) kept.
    let bound = 2 * (RETENTION_SECS + 60) * 1000 / EVENT_EVERY_MS;
    assert!(
        most <= bound && pending <= bound,
        "outbox grew to {most} rows, bound {bound}"
    );
    assert_eq!(delivered, 0);

    // The receiver comes up; the clock passes the longest backoff so everything is due.
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let app = Router::new().route(
        "/hooks",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the receiver binds its port");
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await });
    clock.0.fetch_add(61_000, Ordering::SeqCst);
    hub.webhooks_queued.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let (pending, delivered) = size();
        if pending == 0 {
            println!("receiver up: {pending} pending, {delivered} delivered rows");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {pending} pending after 240 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(received.load(Ordering::SeqCst) >= pending);
    // After the retention, delivered rows are pruned too.
    clock
        .0
        .fetch_add(RETENTION_SECS * 1000 + 1, Ordering::SeqCst);
    hub.prune(hub.now());
    let (pending, delivered) = size();
    println!("after the retention: {pending} pending, {delivered} delivered rows");
    assert_eq!((pending, delivered), (0, 0));
    let (_, health) = rest(&base, "get", "/health", None).await;
    assert_eq!(health["webhook_outbox"], 0, "{health}");
    receiver.abort();
    server.shutdown().await.expect("clean shutdown");
}
