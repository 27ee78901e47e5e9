//! Reconnecting (issue 5, acceptance 4). Two "hosts": the server (and a listener) in one network
//! namespace, the publishing owner in another, joined by a veth pair the test takes down.
//! - a 5 s drop: the audio comes back without leaving the room (no `member_left`, no rejoin:
//!   the same WebSocket, the media recovered by ICE or a media restart);
//! - a 40 s drop with the server's presence timeout at 30 s (set explicitly): the seat is
//!   released; the client rejoins, learns `lost_seat`, and publishes nothing until it takes a
//!   seat again (then it is heard again).
//!
//! `ONMIC_TEST_LONG_DROP_S` shortens the long drop for a quick local run (it must stay above the
//! 30 s presence timeout to mean anything). Root needed.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onmic_audio::Block;
use onmic_client::{ClientConfig, ClientEvent, ConnectionState, RemoteChange, RoomClient};
use onmic_room::{EventKind, SeatReason, Uid};
use support::*;

const PRESENCE_TIMEOUT_MS: &str = "30000";

#[test]
fn short_drop_resumes_and_long_drop_loses_the_seat_before_publishing_again() {
    if !inside_two_hosts("short_drop_resumes_and_long_drop_loses_the_seat_before_publishing_again")
    {
        return;
    }
    runtime().block_on(scenario());
}

/// What the listener (in the server's namespace) observed.
#[derive(Default)]
struct Heard {
    /// When a played-out 10 ms block of the host carried the tone.
    audio: Vec<Instant>,
    /// Room events, in order.
    events: Vec<EventKind>,
}

impl Heard {
    fn audio_since(&self, t: Instant) -> usize {
        self.audio.iter().filter(|a| **a >= t).count()
    }
}

/// The listener: joins from the server's namespace and plays out whatever it hears.
fn spawn_listener(
    server_ns: String,
    url: String,
    token: String,
    heard: Arc<Mutex<Heard>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        enter_netns(&server_ns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut listener = RoomClient::connect(ClientConfig::new(url, "re", token))
                .await
                .expect("listener joins");
            let mut stream = None;
            let mut block = Block::silent(2);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                while let Ok(c) = listener.remotes.try_recv() {
                    match c {
                        RemoteChange::Added { stream: s, .. } => stream = Some(s),
                        RemoteChange::Removed { .. } => stream = None,
                    }
                }
                while let Ok(e) = listener.events.try_recv() {
                    if let ClientEvent::Room(ev) = e {
                        heard.lock().expect("heard").events.push(ev.kind);
                    }
                }
                if let Some(s) = stream.as_mut() {
                    s.pull(&mut block);
                    if block.rms() > 0.05 {
                        heard.lock().expect("heard").audio.push(Instant::now());
                    }
                }
            }
            listener.close().await;
        });
    })
}

async fn scenario() {
    let server_ns = std::env::var(SERVER_NS).expect("run through inside_two_hosts");
    let long_drop = Duration::from_secs(
        std::env::var("ONMIC_TEST_LONG_DROP_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(40),
    );
    let server = Server::start(
        SERVER_IP,
        Some(&server_ns),
        &[("ONMIC_PRESENCE_TIMEOUT_MS", PRESENCE_TIMEOUT_MS)],
    );
    server.create_room("re", "host").await;
    let heard = Arc::new(Mutex::new(Heard::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let listener = spawn_listener(
        server_ns.clone(),
        server.url.clone(),
        server.token("re", "listener").await,
        heard.clone(),
        stop.clone(),
    );
    let mut host = RoomClient::connect(ClientConfig::new(
        &server.url,
        "re",
        server.token("re", "host").await,
    ))
    .await
    .expect("host joins");
    host.take_seat(0).await.expect("seat 0");
    connected(&mut host).await;
    let _tone = spawn_tone(host.publisher());
    let t0 = Instant::now();
    until("the listener hears the host", || {
        heard.lock().expect("heard").audio_since(t0) > 20
    })
    .await;
    println!("heard after {:?}", t0.elapsed());

    // --- 5 s drop ---
    set_link(false);
    let cut = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    set_link(true);
    let restored = Instant::now();
    let mut states = Vec::new();
    until("the audio resumes after the 5 s drop", || {
        while let Ok(e) = host.events.try_recv() {
            if let ClientEvent::State(s) = e {
                states.push(s);
            }
        }
        heard.lock().expect("heard").audio_since(restored) > 20
    })
    .await;
    let resumed = heard
        .lock()
        .expect("heard")
        .audio
        .iter()
        .find(|a| **a >= restored)
        .copied()
        .expect("audio after the drop");
    println!(
        "5 s drop: audio resumed {:?} after the link came back ({:?} after the cut); states {states:?}; media restarts {}, rejoins {}",
        resumed - restored,
        resumed - cut,
        host.stats().media_restarts.load(Ordering::Relaxed),
        host.stats().rejoins.load(Ordering::Relaxed),
    );
    assert_eq!(
        host.stats().rejoins.load(Ordering::Relaxed),
        0,
        "a 5 s drop must not need a rejoin"
    );
    assert!(!states.contains(&ConnectionState::Rejoining), "{states:?}");
    {
        let h = heard.lock().expect("heard");
        assert!(
            !h.events
                .iter()
                .any(|e| matches!(e, EventKind::MemberLeft { .. })),
            "nobody left the room: {:?}",
            h.events
        );
    }
    assert_eq!(
        host.room().seat_of(&Uid::from("host")).map(|s| s.index.0),
        Some(0)
    );

    // --- long drop: past the presence timeout ---
    set_link(false);
    let cut = Instant::now();
    tokio::time::sleep(long_drop).await;
    set_link(true);
    println!("link back after {:?}", cut.elapsed());
    let seen = wait_event(&mut host, "lost_seat after the long drop", |e| {
        matches!(e, ClientEvent::LostSeat(_))
    })
    .await;
    let learned = Instant::now();
    let sent_when_learned = host.stats().packets_sent.load(Ordering::Relaxed);
    println!(
        "long drop: lost_seat learned {:?} after the link came back; events {:?}",
        learned - cut - long_drop,
        seen.iter()
            .filter(|e| matches!(e, ClientEvent::State(_) | ClientEvent::Joined { .. }))
            .collect::<Vec<_>>()
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, ClientEvent::Joined { rejoin: true, .. })),
        "the client rejoined: {seen:?}"
    );
    assert!(!host.may_publish(), "no seat, no publishing");
    // It keeps feeding packets; none go out and nobody hears it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        host.stats().packets_sent.load(Ordering::Relaxed),
        sent_when_learned,
        "nothing published without the seat"
    );
    assert!(host.stats().packets_withheld.load(Ordering::Relaxed) > 50);
    {
        let h = heard.lock().expect("heard");
        assert_eq!(
            h.audio_since(cut + long_drop),
            0,
            "nothing heard from the host after it lost its seat"
        );
        assert!(
            h.events.iter().any(|e| matches!(
                e,
                EventKind::SeatChanged { seat, reason: SeatReason::Offline } if seat.index.0 == 0
            )),
            "the listener saw seat 0 released as offline: {:?}",
            h.events
        );
        assert!(
            !h.events
                .iter()
                .any(|e| matches!(e, EventKind::BombingDetected { .. })),
            "the client never sent without its seat: {:?}",
            h.events
        );
    }

    // Taking the seat again: heard again.
    host.take_seat(0).await.expect("seat 0 again");
    let again = Instant::now();
    let mut states = Vec::new();
    until("the host is heard again on its seat", || {
        while let Ok(e) = host.events.try_recv() {
            if let ClientEvent::State(s) = e {
                states.push((s, again.elapsed()));
            }
        }
        heard.lock().expect("heard").audio_since(again) > 20
    })
    .await;
    println!(
        "heard again {:?} after take_seat; states since {states:?}; media restarts {}",
        again.elapsed(),
        host.stats().media_restarts.load(Ordering::Relaxed)
    );

    stop.store(true, Ordering::Relaxed);
    let _ = listener.join();
    host.close().await;
}
