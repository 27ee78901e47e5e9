//! Issue 15, acceptance 4: a room filling with 2,000 listeners sends each listener O(1) messages
//! per join of another member. A connection that joins with `membership: "counts"` (the listener
//! page does) gets no `member_joined`/`member_left` of other audience members, a snapshot that
//! lists only the owner, admins, the seated and itself (its size does not grow with the room),
//! at most one `member_count` a second, and pages through the members with `members`. A
//! connection that joins without it still gets every join (the Studio's view), which is what
//! makes the difference measurable here.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Members joining while the counts connection watches.
const JOINS: usize = 2000;

/// Connects and joins with the counts view; returns the client and the `joined` reply's text
/// length and value.
async fn join_counts(base: &str, room: &str, uid: &str, volumes: bool) -> (Client, usize, Value) {
    let tok = token(base, room, uid).await;
    let mut c = Client::connect(base).await;
    c.uid = uid.to_owned();
    let body = json!({ "type": "join", "room": room, "token": tok, "membership": "counts",
                       "volumes": volumes });
    let reply = c.request(body).await;
    assert_eq!(reply["type"], "joined", "{reply}");
    let size = reply.to_string().len();
    (c, size, reply)
}

/// Every message already sent to `c` (waits until none came for 300 ms).
async fn drain(c: &mut Client) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(300), c.ws.next()).await
    {
        if let Message::Text(t) = m {
            out.push(serde_json::from_str(&t).expect("JSON"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_gets_counts_not_every_join_while_the_room_fills() {
    // Nobody here sends heartbeats: keep every member for the whole test.
    let server = server(onmic_server::Config {
        presence_timeout_ms: 600_000,
        ..config()
    })
    .await;
    let base = server.url();
    create_room_from(
        &base,
        json!({ "id": "big", "owner": "host", "title": "t", "seat_count": 2 }),
    )
    .await;
    let (mut host, _) = Client::join(&base, "big", "host").await;
    host.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    // The Studio's view: every join. And the listener's.
    let (mut full, _) = Client::join(&base, "big", "studio").await;
    let (mut watcher, first_size, joined) = join_counts(&base, "big", "watcher", false).await;
    let members: Vec<&String> = joined["snapshot"]["members"]
        .as_object()
        .expect("members")
        .keys()
        .collect();
    assert_eq!(
        members,
        ["host", "watcher"],
        "the counts view lists the owner (seated) and itself, not the studio member"
    );
    let first = drain(&mut watcher).await;
    assert_eq!(
        first.len(),
        1,
        "after joined only a member_count: {first:?}"
    );
    assert_eq!(first[0]["type"], "member_count");
    assert_eq!(first[0]["members"], 3);

    // The room fills: 2,000 listeners join, each with the counts view.
    let start = Instant::now();
    let mut listeners = Vec::with_capacity(JOINS);
    let mut last_size = 0;
    for i in 0..JOINS {
        let (c, size, _) = join_counts(&base, "big", &format!("l{i:04}"), true).await;
        last_size = size;
        listeners.push(c);
    }
    let filling = start.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = drain(&mut watcher).await;
    let secs = filling.as_secs_f64() + 1.5;
    let events = got.iter().filter(|m| m["type"] == "event").count();
    let counts: Vec<u64> = got
        .iter()
        .filter(|m| m["type"] == "member_count")
        .map(|m| m["members"].as_u64().expect("count"))
        .collect();
    eprintln!(
        "{JOINS} joins in {filling:?}: the counts listener got {} messages ({events} events, {} \
         member_count), the joined reply was {first_size} bytes for the 3rd member and \
         {last_size} bytes for the {}th",
        got.len(),
        counts.len(),
        JOINS + 3
    );
    assert_eq!(events, 0, "member joins reached the counts listener");
    assert_eq!(
        got.len(),
        counts.len(),
        "only member_count messages: {got:?}"
    );
    // At most one a second (the first may come at once), whatever the number of joins.
    assert!(
        (counts.len() as f64) <= secs + 2.0,
        "{} member_count messages in {secs:.1} s",
        counts.len()
    );
    assert!(
        counts.len() * 10 <= JOINS,
        "not O(1) per join: {} messages for {JOINS} joins",
        counts.len()
    );
    assert_eq!(counts.last().copied(), Some(JOINS as u64 + 3), "{counts:?}");
    assert!(
        last_size <= first_size + 512,
        "the joined reply grows with the room: {first_size} then {last_size} bytes"
    );

    // The full view (control) got every one of the joins.
    let full_got = drain(&mut full).await;
    let joins_seen = full_got
        .iter()
        .filter(|m| m["type"] == "event" && m["event"]["type"] == "member_joined")
        .count();
    assert_eq!(joins_seen, JOINS + 1, "the full view hears every join");

    // Pages: every member exactly once, in uid order, with the room's total.
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut ask = json!({ "type": "members", "limit": 500 });
        if let Some(a) = &after {
            ask["after"] = json!(a);
        }
        let page = watcher.request(ask).await;
        assert_eq!(page["type"], "members", "{page}");
        assert_eq!(page["total"], JOINS + 3);
        let uids: Vec<String> = page["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| m["uid"].as_str().expect("uid").to_owned())
            .collect();
        assert!(uids.len() <= 500, "a page over its limit");
        seen.extend(uids);
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "pages in uid order, nobody twice");
    assert_eq!(seen.len(), JOINS + 3, "every member on some page");
    // A bad page request gets a clear error, and an over-large limit is capped.
    let bad = watcher
        .request(json!({ "type": "members", "limit": "all" }))
        .await;
    assert_eq!(bad["code"], "malformed", "{bad}");
    let capped = watcher
        .request(json!({ "type": "members", "limit": 100000 }))
        .await;
    assert_eq!(capped["members"].as_array().map(Vec::len), Some(500));

    // A listener leaving: no member_left to the counts view, only the new count.
    listeners[0].ok(json!({ "type": "leave" })).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_leave = drain(&mut watcher).await;
    assert!(
        after_leave
            .iter()
            .all(|m| m["type"] == "member_count" && m["members"] == JOINS + 2),
        "{after_leave:?}"
    );
    assert_eq!(after_leave.len(), 1, "{after_leave:?}");
    // Seat events still reach it (the seats are what a listener shows).
    host.ok(json!({ "type": "mute_self" })).await;
    let muted = drain(&mut watcher).await;
    assert!(
        muted
            .iter()
            .any(|m| m["type"] == "event" && m["event"]["type"] == "seat_changed"),
        "{muted:?}"
    );
    drop(listeners);
    server.shutdown().await.expect("clean shutdown");
}
