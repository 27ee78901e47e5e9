//! Helpers for the SFU's WebRTC tests: re-running a test inside its own loopback-only network
//! namespace, and str0m peers that publish tagged frames and count what they receive per sender.
#![allow(dead_code, missing_docs)]

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::{Candidate, Event, Output, Rtc};

use crate::common::*;

pub use onmic_netns::inside_netns;

/// Slots (receive m-lines) each test peer offers: owner's seat + 2 regular seats.
pub const SLOTS: usize = 3;

/// A WebRTC member: publishes tagged fake Opus frames every 20 ms while `sending`, counts what it
/// receives per sender tag.
pub struct Peer {
    /// The SFU's media address (from the answer's host candidate).
    pub sfu: std::net::SocketAddr,
    /// The peer's own socket, to inject garbage from a connected address.
    pub socket: UdpSocket,
    pub received: Arc<Mutex<HashMap<u8, u64>>>,
    pub sending: Arc<AtomicBool>,
    /// The RFC 6464 level written on each packet, in -dBov (0 loudest, 127 silence); 10 at first.
    pub level: Arc<AtomicU8>,
    /// RTCP sender reports received from the SFU (compound packets starting with an SR).
    pub sender_reports: Arc<AtomicU64>,
    /// The frame number of the last tagged frame received, per sender tag.
    pub last_frame: Arc<Mutex<HashMap<u8, u64>>>,
    /// Frames this peer published.
    pub sent: Arc<AtomicU64>,
    /// When the last frame of each sender tag arrived.
    pub last_at: Arc<Mutex<HashMap<u8, Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Makes the payload of the `seq`-th 20 ms frame a peer publishes.
pub type PayloadFn = Box<dyn FnMut(u64) -> Vec<u8> + Send>;

/// Real Opus (48 kHz stereo, 128 kbps, 20 ms frames) of a sine of `left_hz` on the left channel
/// and `right_hz` on the right, at half amplitude.
pub fn stereo_tone(left_hz: f32, right_hz: f32) -> PayloadFn {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio)
        .expect("an Opus encoder");
    enc.set_bitrate(opus::Bitrate::Bits(128_000))
        .expect("bitrate");
    Box::new(move |seq| {
        let pcm: Vec<f32> = (0..960u64)
            .flat_map(|i| {
                let t = (seq * 960 + i) as f32 / 48_000.0;
                let w = 2.0 * std::f32::consts::PI * t;
                [0.5 * (w * left_hz).sin(), 0.5 * (w * right_hz).sin()]
            })
            .collect();
        enc.encode_vec_float(&pcm, 4000).expect("Opus encode")
    })
}

impl Peer {
    pub async fn connect(base: &str, room: &str, token: &str, tag: u8) -> Peer {
        Peer::connect_with(base, room, token, tag, None).await
    }

    /// Like [`Peer::connect`]; `payload` (if given) makes what it publishes instead of tagged
    /// frames.
    pub async fn connect_with(
        base: &str,
        room: &str,
        token: &str,
        tag: u8,
        payload: Option<PayloadFn>,
    ) -> Peer {
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        Peer::connect_bound(loopback, base, room, token, tag, payload).await
    }

    /// Like [`Peer::connect_with`], with the peer's UDP socket on `ip` (a test host's address).
    pub async fn connect_bound(
        ip: std::net::IpAddr,
        base: &str,
        room: &str,
        token: &str,
        tag: u8,
        payload: Option<PayloadFn>,
    ) -> Peer {
        let socket = UdpSocket::bind((ip, 0)).expect("bind");
        let addr = socket.local_addr().expect("addr");
        let mut rtc = onmic_server::sfu::opus_rtc_config().build(Instant::now());
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
        let level = Arc::new(AtomicU8::new(10));
        let sender_reports = Arc::new(AtomicU64::new(0));
        let last_frame = Arc::new(Mutex::new(HashMap::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let last_at = Arc::new(Mutex::new(HashMap::new()));
        let socket_for_test = socket.try_clone().expect("socket clone");
        let thread = {
            let (received, sending, stop) = (received.clone(), sending.clone(), stop.clone());
            let (level, reports) = (level.clone(), sender_reports.clone());
            let (last, sent, at) = (last_frame.clone(), sent.clone(), last_at.clone());
            std::thread::spawn(move || {
                run(
                    rtc, socket, send_mid, tag, payload, received, sending, level, reports, last,
                    sent, at, stop,
                )
            })
        };
        Peer {
            sfu,
            socket: socket_for_test,
            received,
            sending,
            level,
            sender_reports,
            last_frame,
            sent,
            last_at,
            stop,
            thread: Some(thread),
        }
    }

    pub fn from(&self, tag: u8) -> u64 {
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

#[allow(clippy::too_many_arguments)] // a test thread's shared handles
fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    send_mid: Mid,
    tag: u8,
    mut make: Option<PayloadFn>,
    received: Arc<Mutex<HashMap<u8, u64>>>,
    sending: Arc<AtomicBool>,
    level: Arc<AtomicU8>,
    sender_reports: Arc<AtomicU64>,
    last_frame: Arc<Mutex<HashMap<u8, u64>>>,
    sent: Arc<AtomicU64>,
    last_at: Arc<Mutex<HashMap<u8, Instant>>>,
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
                        last_at.lock().expect("times").insert(from, Instant::now());
                        if let Some(n) = d.data.get(1..9) {
                            let n = u64::from_be_bytes(n.try_into().expect("8 bytes"));
                            last_frame.lock().expect("frames").insert(from, n);
                        }
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
                    let payload = match make.as_mut() {
                        Some(make) => make(seq),
                        None => {
                            let mut p = vec![tag; 40];
                            p[1..9].copy_from_slice(&seq.to_be_bytes());
                            p
                        }
                    };
                    let ts = MediaTime::new(seq * 960, Frequency::FORTY_EIGHT_KHZ);
                    let dbov = level.load(Ordering::Relaxed).min(127);
                    let _ = w
                        .audio_level(-(dbov as i8), dbov < 127)
                        .write(pt, now, ts, payload);
                    seq += 1;
                    sent.store(seq, Ordering::Relaxed);
                }
            }
        }
        let wait = timeout
            .min(next_send)
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        // SRTCP leaves the first 8 bytes in the clear: version, then packet type 200 = SR.
        let seen = |d: &[u8]| {
            if d.len() > 8 && (128..192).contains(&d[0]) && d[1] == 200 {
                sender_reports.fetch_add(1, Ordering::Relaxed);
            }
        };
        let Some(input) = next_input_seen(&socket, &mut buf, local, wait, seen) else {
            continue;
        };
        if rtc.handle_input(input).is_err() {
            return;
        }
    }
}

/// A valid offer (one send m-line), for signalling tests.
pub fn offer_only() -> serde_json::Value {
    let mut rtc = Rtc::builder().build(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _) = api.apply().expect("an offer");
    serde_json::to_value(offer).expect("offer JSON")
}

/// Waits until `cond` holds, polling; fails with `what` after 15 s.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A receiver's count from `tag` does not move for a second (after 300 ms for packets in flight).
pub async fn stays_still(peers: &[&Peer], tag: u8, what: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: Vec<u64> = peers.iter().map(|p| p.from(tag)).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: Vec<u64> = peers.iter().map(|p| p.from(tag)).collect();
    assert_eq!(before, after, "{what}: packets from {tag} still arrive");
}

/// Runs `scenario` on a fresh 2-thread runtime inside this test's own network namespace.
pub fn in_netns<F: std::future::Future<Output = ()>>(test: &str, scenario: impl FnOnce() -> F) {
    if !inside_netns(test) {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(scenario());
}

/// A room `room` (2 seats) whose owner holds seat 0 and publishes, and one listener, each with a
/// WebSocket and a peer connection (tags 1 and 3). The owner's peer is sending.
pub struct OwnerAndListener {
    pub owner_ws: Client,
    pub listener_ws: Client,
    pub owner: Peer,
    pub listener: Peer,
}

/// Sets up [`OwnerAndListener`] and waits until the listener hears the owner.
pub async fn owner_and_listener(base: &str, room: &str) -> OwnerAndListener {
    create_room_from(
        base,
        json!({ "id": room, "owner": "owner", "title": "t", "seat_count": 2 }),
    )
    .await;
    let (mut owner_ws, _) = Client::join(base, room, "owner").await;
    owner_ws.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (listener_ws, _) = Client::join(base, room, "listener").await;
    let owner = Peer::connect(base, room, &token(base, room, "owner").await, 1).await;
    let listener = Peer::connect(base, room, &token(base, room, "listener").await, 3).await;
    owner.sending.store(true, Ordering::Relaxed);
    until("the listener hears the owner", || listener.from(1) >= 25).await;
    OwnerAndListener {
        owner_ws,
        listener_ws,
        owner,
        listener,
    }
}

/// Reads the room events waiting in `events` and notes whether `uid` was reported for sending
/// audio without a seat (`bombing_detected`) and whether it left kicked.
pub fn note_bomber(
    events: &mut tokio::sync::broadcast::Receiver<onmic_server::hub::Frame>,
    uid: &str,
    reported: &mut bool,
    kicked: &mut bool,
) {
    use onmic_room::{EventKind, LeaveReason};
    while let Ok(f) = events.try_recv() {
        match &f.event.kind {
            EventKind::BombingDetected { uid: u, .. } => *reported |= u.as_str() == uid,
            EventKind::MemberLeft { uid: u, reason } => {
                *kicked |= u.as_str() == uid && *reason == LeaveReason::Kicked;
            }
            _ => {}
        }
    }
}
