//! The SFU forwards audio only from members on unmuted seats (issue 5, acceptance 2 and 3),
//! proven with real WebRTC peers (str0m) inside a loopback-only network namespace that this test
//! creates: every packet is counted at the receivers by the sender's tag in its payload.
//!
//! Needs root (for `ip netns`); without it the test fails and says so.

mod common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use onmic_room::{EventKind, RoomId};
use onmic_server::Config;
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const INNER: &str = "ONMIC_NETNS_INNER";

/// Runs `test` (this binary's test of that name) again inside a fresh loopback-only network
/// namespace, and fails with its output if it fails. Returns `true` when already inside.
fn inside_netns(test: &str) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    // Unique per process and test: tests of one binary run in parallel.
    let tag: u32 = test
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    let name = format!("onmic-sfu-{}-{:08x}", std::process::id(), tag);
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running `ip {}`: {e} (install iproute2)", args.join(" ")))
    };
    let made = ip(&["netns", "add", &name]);
    assert!(
        made.status.success(),
        "this test needs root to create a network namespace (`ip netns add {name}`): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let _cleanup = Cleanup(name.clone());
    let up = ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
    assert!(up.status.success(), "lo up: {up:?}");
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &name])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .expect("running the test inside the namespace");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the inner test did not run:\n{text}"
    );
    eprintln!("{text}");
    false
}

/// Slots (receive m-lines) each test peer offers: owner's seat + 2 regular seats.
const SLOTS: usize = 3;

/// A WebRTC member: publishes tagged fake Opus frames every 20 ms while `sending`, counts what it
/// receives per sender tag.
struct Peer {
    /// The SFU's media address (from the answer's host candidate).
    sfu: std::net::SocketAddr,
    /// The peer's own socket, to inject garbage from a connected address.
    socket: UdpSocket,
    received: Arc<Mutex<HashMap<u8, u64>>>,
    sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    async fn connect(base: &str, room: &str, token: &str, tag: u8) -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        let mut builder = Rtc::builder().clear_codecs();
        builder.codec_config().add_config(
            Pt::from(111),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                stereo: Some(true),
                sprop_stereo: Some(true),
                ..FormatParams::default()
            },
        );
        let mut rtc = builder.build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        let send_mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        for _ in 0..SLOTS {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api.apply().expect("an offer");
        let body = json!({ "room": room, "token": token, "offer": offer });
        let (status, answer) = rest_with(base, "post", "/rtc/offer", Some(body), None).await;
        assert_eq!(status, 200, "{answer}");
        let sfu = answer["sdp"]
            .as_str()
            .and_then(|sdp| sdp.lines().find(|l| l.starts_with("a=candidate:")))
            .and_then(|c| {
                let f: Vec<&str> = c.split_whitespace().collect();
                format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok()
            })
            .expect("a host candidate in the answer");
        let answer: SdpAnswer = serde_json::from_value(answer).expect("an SDP answer");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        let received = Arc::new(Mutex::new(HashMap::new()));
        let sending = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let socket_for_test = socket.try_clone().expect("socket clone");
        let thread = {
            let (received, sending, stop) = (received.clone(), sending.clone(), stop.clone());
            std::thread::spawn(move || run(rtc, socket, send_mid, tag, received, sending, stop))
        };
        Peer {
            sfu,
            socket: socket_for_test,
            received,
            sending,
            stop,
            thread: Some(thread),
        }
    }

    fn from(&self, tag: u8) -> u64 {
        self.received
            .lock()
            .expect("counts")
            .get(&tag)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    send_mid: Mid,
    tag: u8,
    received: Arc<Mutex<HashMap<u8, u64>>>,
    sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let local = socket.local_addr().expect("addr");
    let mut buf = vec![0u8; 2000];
    let start = Instant::now();
    let mut next_send = start;
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) && rtc.is_alive() {
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::MediaData(d))) => {
                    if let Some(&from) = d.data.first() {
                        *received.lock().expect("counts").entry(from).or_default() += 1;
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return,
            }
        };
        let now = Instant::now();
        if now >= next_send {
            next_send += Duration::from_millis(20);
            if sending.load(Ordering::Relaxed)
                && rtc.is_connected()
                && let Some(w) = rtc.writer(send_mid)
            {
                let pt = w.payload_params().next().map(|p| p.pt());
                if let Some(pt) = pt {
                    let mut payload = vec![tag; 40];
                    payload[1..9].copy_from_slice(&seq.to_be_bytes());
                    let ts = MediaTime::new(seq * 960, Frequency::FORTY_EIGHT_KHZ);
                    let _ = w.audio_level(-10, true).write(pt, now, ts, payload);
                    seq += 1;
                }
            }
        }
        let wait = timeout
            .min(next_send)
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let _ = socket.set_read_timeout(Some(wait));
        let input = match socket.recv_from(&mut buf) {
            Ok((n, source)) => match buf[..n].try_into() {
                Ok(contents) => Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local,
                        contents,
                    },
                ),
                Err(_) => continue,
            },
            Err(_) => Input::Timeout(Instant::now()),
        };
        if rtc.handle_input(input).is_err() {
            return;
        }
    }
}

/// A valid offer (one send m-line), for signalling tests.
fn offer_only() -> serde_json::Value {
    let mut rtc = Rtc::builder().build(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _) = api.apply().expect("an offer");
    serde_json::to_value(offer).expect("offer JSON")
}

/// Waits until `cond` holds, polling; fails with `what` after 15 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A receiver's count from `tag` does not move for a second (after 300 ms for packets in flight).
async fn stays_still(peers: &[&Peer], tag: u8, what: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: Vec<u64> = peers.iter().map(|p| p.from(tag)).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: Vec<u64> = peers.iter().map(|p| p.from(tag)).collect();
    assert_eq!(before, after, "{what}: packets from {tag} still arrive");
}

#[test]
fn only_unmuted_seats_are_forwarded_and_kick_or_mute_stops_it() {
    if !inside_netns("only_unmuted_seats_are_forwarded_and_kick_or_mute_stops_it") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(scenario());
}

async fn scenario() {
    let server = server(config()).await;
    let base = server.url();
    let (status, body) = rest(
        &base,
        "post",
        "/v1/rooms",
        Some(json!({ "id": "sfu", "owner": "owner", "title": "t", "seat_count": 2 })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let hub = server.hub().clone();
    let mut room_events = hub.subscribe(&RoomId::from("sfu")).expect("subscribe");

    let (mut owner, _) = Client::join(&base, "sfu", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (mut guest, _) = Client::join(&base, "sfu", "guest").await;
    guest.ok(json!({ "type": "apply", "seat": 1 })).await;
    owner.ok(json!({ "type": "approve", "uid": "guest" })).await;
    let (_listener_ws, _) = Client::join(&base, "sfu", "listener").await;
    let (_intruder_ws, _) = Client::join(&base, "sfu", "intruder").await;

    let (o, g, l, i) = (1u8, 2u8, 3u8, 4u8);
    let owner_rtc = Peer::connect(&base, "sfu", &token(&base, "sfu", "owner").await, o).await;
    let guest_rtc = Peer::connect(&base, "sfu", &token(&base, "sfu", "guest").await, g).await;
    let listener = Peer::connect(&base, "sfu", &token(&base, "sfu", "listener").await, l).await;
    let intruder = Peer::connect(&base, "sfu", &token(&base, "sfu", "intruder").await, i).await;
    for p in [&owner_rtc, &guest_rtc, &intruder] {
        p.sending.store(true, Ordering::Relaxed);
    }

    until("the listener hears owner and guest", || {
        listener.from(o) >= 25 && listener.from(g) >= 25
    })
    .await;
    assert!(
        owner_rtc.from(g) > 0 && guest_rtc.from(o) > 0,
        "publishers hear each other"
    );
    assert_eq!(owner_rtc.from(o), 0, "nobody hears itself");
    // Acceptance 2, first half: no seat, not one packet forwarded; a bombing event is raised.
    for p in [&owner_rtc, &guest_rtc, &listener] {
        assert_eq!(p.from(i), 0, "audio without a seat was forwarded");
    }
    until("the bombing event", || {
        let mut found = false;
        while let Ok(f) = room_events.try_recv() {
            if let EventKind::BombingDetected { uid, .. } = &f.event.kind {
                assert_eq!(uid.as_str(), "intruder", "only the intruder bombs");
                found = true;
            }
        }
        found
    })
    .await;

    // Acceptance 3: a host mute stops the guest at every receiver; unmuting brings it back.
    owner.ok(json!({ "type": "mute_seat", "seat": 1 })).await;
    eprintln!(
        "before mute: listener heard the guest {} times",
        listener.from(g)
    );
    stays_still(&[&owner_rtc, &listener, &intruder], g, "after mute_seat").await;
    eprintln!(
        "after mute: listener heard the guest {} times",
        listener.from(g)
    );
    let owner_flow = listener.from(o);
    owner.ok(json!({ "type": "unmute_seat", "seat": 1 })).await;
    let resumed = listener.from(g) + 10;
    until("the guest is heard again", || listener.from(g) >= resumed).await;
    assert!(listener.from(o) > owner_flow, "the owner kept flowing");

    // A kick: no packet from the guest reaches anyone afterwards.
    owner
        .ok(json!({ "type": "kick", "uid": "guest", "ban_ms": 0 }))
        .await;
    stays_still(&[&owner_rtc, &listener, &intruder], g, "after kick").await;
    let _ = guest.next().await;
    for p in [&owner_rtc, &listener] {
        assert_eq!(p.from(i), 0, "the intruder was never forwarded");
    }
    for (name, p) in [
        ("owner", &owner_rtc),
        ("guest", &guest_rtc),
        ("listener", &listener),
        ("intruder", &intruder),
    ] {
        eprintln!(
            "{name} received per sender tag: {:?}",
            p.received.lock().expect("counts")
        );
    }
    drop((owner_rtc, guest_rtc, listener, intruder));
    server.shutdown().await.expect("clean shutdown");
}

#[test]
fn bad_input_is_refused_or_dropped_and_the_sfu_keeps_forwarding() {
    if !inside_netns("bad_input_is_refused_or_dropped_and_the_sfu_keeps_forwarding") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bad_input());
}

async fn bad_input() {
    let server = server(config()).await;
    let base = server.url();
    create_room(&base, "bad", "owner").await;
    let (mut owner, _) = Client::join(&base, "bad", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (_listener_ws, _) = Client::join(&base, "bad", "listener").await;
    let owner_token = token(&base, "bad", "owner").await;

    // Signalling: malformed bodies, SDP, tokens and non-members get clear errors.
    let cases = [
        (json!("not an object"), 400, "malformed"),
        (
            json!({ "room": "bad", "token": owner_token, "offer": { "type": "offer", "sdp": "v=0 garbage" } }),
            400,
            "bad_sdp",
        ),
        (
            json!({ "room": "bad", "token": owner_token, "offer": { "type": "answer", "sdp": "" } }),
            400,
            "bad_sdp",
        ),
        (
            json!({ "room": "bad", "token": "v1.forged.sig", "offer": { "type": "offer", "sdp": "" } }),
            401,
            "token_bad_signature",
        ),
        (
            json!({ "room": "bad", "token": token(&base, "bad", "stranger").await, "offer": offer_only() }),
            403,
            "not_member",
        ),
    ];
    for (body, status, code) in cases {
        let (got, reply) = rest_with(&base, "post", "/rtc/offer", Some(body.clone()), None).await;
        assert_eq!(
            (got, reply["code"].as_str()),
            (status, Some(code)),
            "{body} -> {reply}"
        );
    }
    // An SDP offer with bogus ICE candidates is accepted or refused, never a crash.
    let bogus = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\na=candidate:1 1 udp 1 999.1.1.1 99999 typ host\r\na=candidate:garbage\r\n";
    let body =
        json!({ "room": "bad", "token": owner_token, "offer": { "type": "offer", "sdp": bogus } });
    let (got, reply) = rest_with(&base, "post", "/rtc/offer", Some(body), None).await;
    assert!(got == 200 || got == 400, "{got} {reply}");

    // Media port: garbage from strangers and from a connected peer's own address.
    let talker = Peer::connect(&base, "bad", &owner_token, 1).await;
    let listener = Peer::connect(&base, "bad", &token(&base, "bad", "listener").await, 3).await;
    talker.sending.store(true, Ordering::Relaxed);
    until("audio flows", || listener.from(1) >= 10).await;
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 1500],
        vec![0x16; 13],
        vec![0x00, 0x01, 0x00, 0x00],
    ];
    // RTP with padding longer than the packet, an extension running past the end, unknown SSRC.
    junk.push(vec![
        0xa0, 111, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 0xff,
    ]);
    junk.push(vec![
        0x90, 111, 0, 2, 0, 0, 0, 2, 0xde, 0xad, 0xbe, 0xef, 0xbe, 0xde, 0xff, 0xff,
    ]);
    junk.push(vec![0x80, 200, 0, 7, 1, 2, 3, 4]);
    let mut x: u32 = 0x1234_5678;
    for len in [3usize, 12, 40, 200, 1200] {
        let mut p = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            p.push(x as u8);
        }
        p[0] = 0x80 | (p[0] & 0x3f);
        junk.push(p);
    }
    for _ in 0..20 {
        for j in &junk {
            let _ = stranger.send_to(j, talker.sfu);
            let _ = listener.socket.send_to(j, listener.sfu);
        }
    }
    let before = listener.from(1);
    until(
        "audio still flows to the listener that sent garbage",
        || listener.from(1) >= before + 25,
    )
    .await;
    drop((talker, listener));
    server.shutdown().await.expect("clean shutdown");
}

#[test]
fn a_new_offer_replaces_the_peer_and_a_seat_lost_while_away_is_not_forwarded() {
    if !inside_netns("a_new_offer_replaces_the_peer_and_a_seat_lost_while_away_is_not_forwarded") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(reconnects());
}

async fn reconnects() {
    let server = server(Config {
        presence_timeout_ms: 2000,
        ..config()
    })
    .await;
    let base = server.url();
    create_room(&base, "re", "owner").await;
    let (mut owner, _) = Client::join(&base, "re", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (mut guest, _) = Client::join(&base, "re", "guest").await;
    guest.ok(json!({ "type": "apply", "seat": 1 })).await;
    owner.ok(json!({ "type": "approve", "uid": "guest" })).await;
    let owner_token = token(&base, "re", "owner").await;
    let guest_token = token(&base, "re", "guest").await;

    // The owner listens; the guest publishes from a first peer connection, then reconnects.
    let listener = Peer::connect(&base, "re", &owner_token, 1).await;
    let first = Peer::connect(&base, "re", &guest_token, 2).await;
    first.sending.store(true, Ordering::Relaxed);
    until("the first connection is heard", || listener.from(2) >= 10).await;
    let second = Peer::connect(&base, "re", &guest_token, 5).await;
    second.sending.store(true, Ordering::Relaxed);
    until("the new connection is heard", || listener.from(5) >= 10).await;
    stays_still(&[&listener], 2, "the replaced connection").await;
    drop(first);

    // The guest's WebSocket goes silent past the presence timeout: seat released, member gone,
    // its peer connection closed. The owner keeps heartbeating.
    let deadline = Instant::now() + WAIT;
    loop {
        owner.request(json!({ "type": "heartbeat" })).await;
        let gone = server
            .hub()
            .snapshot(&RoomId::from("re"))
            .expect("room")
            .seat_of(&onmic_room::Uid::from("guest"))
            .is_none();
        if gone {
            break;
        }
        assert!(Instant::now() < deadline, "the guest never timed out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(guest);
    stays_still(&[&listener], 5, "after the seat was lost").await;

    // Back after the long drop: the join says the seat was lost; audio sent anyway (a client that
    // ignored it) reaches nobody.
    let (_guest_again, joined) = Client::join(&base, "re", "guest").await;
    assert_eq!(joined["lost_seat"]["seat"], 1, "{joined}");
    owner.request(json!({ "type": "heartbeat" })).await;
    let third = Peer::connect(&base, "re", &guest_token, 6).await;
    third.sending.store(true, Ordering::Relaxed);
    stays_still(&[&listener], 6, "publishing without the seat").await;
    assert_eq!(listener.from(6), 0);
    drop((listener, second, third));
    server.shutdown().await.expect("clean shutdown");
}

#[test]
fn with_the_ban_setting_a_bomber_is_kicked_and_banned() {
    if !inside_netns("with_the_ban_setting_a_bomber_is_kicked_and_banned") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(kick_and_ban());
}

async fn kick_and_ban() {
    let server = server(Config {
        bombing_ban_ms: Some(600_000),
        ..config()
    })
    .await;
    let base = server.url();
    create_room(&base, "kb", "owner").await;
    let mut events = server
        .hub()
        .subscribe(&RoomId::from("kb"))
        .expect("subscribe");
    let (mut owner, _) = Client::join(&base, "kb", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (mut bomber_ws, _) = Client::join(&base, "kb", "bomber").await;
    let listener = Peer::connect(&base, "kb", &token(&base, "kb", "owner").await, 1).await;
    let bomber = Peer::connect(&base, "kb", &token(&base, "kb", "bomber").await, 4).await;
    bomber.sending.store(true, Ordering::Relaxed);
    let (mut reported, mut kicked, mut banned) = (false, false, false);
    until("bombing reported, bomber kicked and banned", || {
        while let Ok(f) = events.try_recv() {
            match &f.event.kind {
                EventKind::BombingDetected { uid, .. } => reported |= uid.as_str() == "bomber",
                EventKind::MemberLeft { uid, reason } => {
                    kicked |=
                        uid.as_str() == "bomber" && *reason == onmic_room::LeaveReason::Kicked;
                }
                EventKind::Banned { uid, .. } => banned |= uid.as_str() == "bomber",
                _ => {}
            }
        }
        reported && kicked && banned
    })
    .await;
    // The bomber's WebSocket is closed with `kicked`, and it cannot come back.
    let mut closing = None;
    while let Some(m) = bomber_ws.next().await {
        if m["type"] == "closing" {
            closing = Some(m);
        }
    }
    assert_eq!(closing.expect("closing")["reason"], "kicked");
    let tok = token(&base, "kb", "bomber").await;
    let mut again = Client::connect(&base).await;
    let reply = again
        .request(json!({ "type": "join", "room": "kb", "token": tok }))
        .await;
    assert_eq!(reply["code"], "banned", "{reply}");
    assert_eq!(listener.from(4), 0, "the bomber was never forwarded");
    drop((listener, bomber));
    server.shutdown().await.expect("clean shutdown");
}
