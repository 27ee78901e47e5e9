//! Volume indication (DESIGN §3): the SFU reads the RFC 6464 level of each seated publisher's
//! packets and pushes `volume_indication` to every member over the WebSocket every 500 ms while
//! someone speaks. Real str0m peers inside a loopback-only network namespace this test creates.
//!
//! Needs root (for `ip netns`); without it the test fails and says so.

mod common;
mod sfu_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sfu_support::*;

#[test]
fn a_seated_speakers_level_is_pushed_and_a_silent_or_seatless_one_is_not() {
    in_netns(
        "a_seated_speakers_level_is_pushed_and_a_silent_or_seatless_one_is_not",
        scenario,
    );
}

/// The next `volume_indication` the client gets (events on the way are recorded), or `None` if
/// none comes within `within`.
async fn next_volumes(c: &mut Client, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, c.next()).await.ok()??;
        if m["type"] == "volume_indication" {
            return Some(m);
        }
    }
}

fn speaker<'a>(m: &'a Value, uid: &str) -> Option<&'a Value> {
    m["speakers"]
        .as_array()?
        .iter()
        .find(|s| s["uid"] == json!(uid))
}

async fn scenario() {
    let server = server(config()).await;
    let base = server.url();
    create_room_from(
        &base,
        json!({ "id": "vol", "owner": "owner", "title": "t", "seat_count": 2 }),
    )
    .await;
    let (mut owner, _) = Client::join(&base, "vol", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (mut guest, _) = Client::join(&base, "vol", "guest").await;
    guest.ok(json!({ "type": "apply", "seat": 1 })).await;
    owner.ok(json!({ "type": "approve", "uid": "guest" })).await;
    let (mut listener, _) = Client::join(&base, "vol", "listener").await;
    let (_intruder_ws, _) = Client::join(&base, "vol", "intruder").await;
    // A member whose client shows no levels asks for none (issue 15: `volumes: false`).
    let mut quiet = Client::connect(&base).await;
    let tok = token(&base, "vol", "quiet").await;
    let joined = quiet
        .request(json!({ "type": "join", "room": "vol", "token": tok, "volumes": false }))
        .await;
    assert_eq!(joined["type"], "joined", "{joined}");

    let owner_rtc = Peer::connect(&base, "vol", &token(&base, "vol", "owner").await, 1).await;
    let guest_rtc = Peer::connect(&base, "vol", &token(&base, "vol", "guest").await, 2).await;
    let listener_rtc = Peer::connect(&base, "vol", &token(&base, "vol", "listener").await, 3).await;
    let intruder = Peer::connect(&base, "vol", &token(&base, "vol", "intruder").await, 4).await;
    // The owner speaks at -6 dBov; the guest sends silence (-127 dBov); the intruder is loud but
    // holds no seat.
    owner_rtc.level.store(6, Ordering::Relaxed);
    guest_rtc.level.store(127, Ordering::Relaxed);
    intruder.level.store(0, Ordering::Relaxed);
    for p in [&owner_rtc, &guest_rtc, &intruder] {
        p.sending.store(true, Ordering::Relaxed);
    }
    until("the listener hears the owner", || {
        listener_rtc.from(1) >= 10
    })
    .await;

    // Several intervals in a row: the owner ripples at about half scale, the guest does not,
    // the intruder never appears.
    let mut seen_owner = 0;
    let first = Instant::now();
    let mut stamps = Vec::new();
    while seen_owner < 4 {
        let m = next_volumes(&mut listener, Duration::from_secs(3))
            .await
            .expect("volume indications while the owner speaks");
        stamps.push(Instant::now());
        assert!(speaker(&m, "intruder").is_none(), "a seatless sender: {m}");
        if let Some(g) = speaker(&m, "guest") {
            assert_eq!(g["speaking"], json!(false), "silence does not ripple: {m}");
            assert_eq!(g["volume"], json!(0), "-127 dBov is volume 0: {m}");
        }
        let Some(o) = speaker(&m, "owner") else {
            continue;
        };
        assert_eq!(o["speaking"], json!(true), "{m}");
        let v = o["volume"].as_u64().expect("volume");
        assert!((120..=136).contains(&v), "-6 dBov is about 128 of 255: {m}");
        seen_owner += 1;
    }
    assert!(first.elapsed() < Duration::from_secs(10), "pushed steadily");
    // Every member gets them, not only listeners.
    loop {
        let m = next_volumes(&mut guest, Duration::from_secs(3))
            .await
            .expect("the guest gets volume indications too");
        if speaker(&m, "owner").is_some_and(|o| o["speaking"] == json!(true)) {
            break;
        }
    }
    // ... except the member that asked for none: of what it got meanwhile, no volume report.
    let mut quiet_got = 0;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(
        Duration::from_millis(300),
        futures_util::StreamExt::next(&mut quiet.ws),
    )
    .await
    {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            quiet_got += 1;
            assert!(!t.contains("volume_indication"), "volumes: false, yet: {t}");
        }
    }
    eprintln!("the member without volumes got {quiet_got} other messages meanwhile");
    // About every 500 ms, not once per packet.
    let gaps: Vec<Duration> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g > Duration::from_millis(250)),
        "reports come per interval, not per packet: {gaps:?}"
    );

    // A host-muted seat does not ripple even while its member keeps sending: its audio is not
    // forwarded, so its level is not reported. Unmuted, it ripples again.
    owner.ok(json!({ "type": "mute_seat", "seat": 0 })).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = next_volumes(&mut listener, Duration::from_secs(3))
            .await
            .expect("the change of speakers is pushed");
        if speaker(&m, "owner").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a muted seat still reported: {m}"
        );
    }
    owner.ok(json!({ "type": "unmute_seat", "seat": 0 })).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = next_volumes(&mut listener, Duration::from_secs(3))
            .await
            .expect("volume indications after the unmute");
        if speaker(&m, "owner").is_some_and(|o| o["speaking"] == json!(true)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unmuted owner does not ripple: {m}"
        );
    }

    // The owner falls silent: one last report without a speaker, then nothing while the room
    // stays silent.
    owner_rtc.level.store(127, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = next_volumes(&mut listener, Duration::from_secs(3))
            .await
            .expect("the end of speech is pushed");
        let speaking = m["speakers"]
            .as_array()
            .expect("speakers")
            .iter()
            .any(|s| s["speaking"] == json!(true));
        if !speaking {
            break;
        }
        assert!(Instant::now() < deadline, "the owner still ripples: {m}");
    }
    assert_eq!(
        next_volumes(&mut listener, Duration::from_millis(1500)).await,
        None,
        "a silent room pushes no volume indications"
    );
}
