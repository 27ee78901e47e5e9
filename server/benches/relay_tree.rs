//! Relay tree benchmark (issue 16, acceptance 6, relays), inside its own loopback-only network
//! namespace: a real `redis-server` and two real `onmic-server` nodes, `a` (the room's origin,
//! `relay_listeners = 2`: the speaker and one listener) and `b` (a relay without a limit). One
//! seated speaker publishes a 20 ms frame that carries its send time; one listener hears it
//! straight from the origin, the others through the relay.
//!
//! Prints, labelled *measured* or *derived*:
//! - mouth-to-ear latency (speaker's send → listener's receive, both in this process, so the
//!   network is loopback and the figure is the nodes' own work plus the kernel's): origin-direct
//!   vs via the relay, p50/p90/p99, and the difference (what a relay adds);
//! - the relay process's CPU per relayed listener (its CPU time over a window with `N1` and with
//!   `N2` listeners: the slope), and the origin's CPU over the same windows (the link costs it
//!   one subscriber, whatever the relay serves);
//! - derived: listeners one added relay node holds, from the measured per-listener cost (80 %
//!   of the node's cores) and from the SFU's known capacity (docs/sfu.md: 2,000 listeners of 3
//!   speakers on 2 cores), and the tree's total for 1-4 relays.
//!
//! Run: `cargo bench -p onmic-server --bench relay_tree` (env `ONMIC_BENCH_N1`, default 8;
//! `ONMIC_BENCH_N2`, default 40; `ONMIC_BENCH_SECS`, default 15). Needs root, iproute2 and
//! `redis-server`. The clients run in this process, on the same cores as the nodes.

use std::net::UdpSocket;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::{Candidate, Event, Input, Output};
use tokio_tungstenite::tungstenite::Message;

#[path = "support/cluster.rs"]
mod support;
use support::{KEY, Kid, SECRET, Ws, cpu_seconds, free_port, start_redis};

const ROOM: &str = "big";

/// A node with a 200 ms heartbeat and, on a relay, its own `relay_listeners` limit.
fn start_node(
    name: &str,
    redis: &str,
    dir: &std::path::Path,
    relay_listeners: Option<usize>,
) -> (Kid, String) {
    let mut extra = vec![("ONMIC_CLUSTER_HEARTBEAT_MS", "200".to_string())];
    if let Some(n) = relay_listeners {
        extra.push(("ONMIC_RELAY_LISTENERS", n.to_string()));
    }
    support::start_node(name, redis, dir, &extra)
}

fn token(uid: &str) -> String {
    support::token(ROOM, uid)
}

/// Joins over the WebSocket and sends `then` (if any), waiting for each reply.
async fn join(base: &str, uid: &str, then: Option<Value>) -> Ws {
    use futures_util::{SinkExt, StreamExt};
    let url = format!("{}/ws", base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let mut frames = vec![json!({ "id": 1, "type": "join", "room": ROOM, "token": token(uid) })];
    if let Some(mut t) = then {
        t["id"] = json!(2);
        frames.push(t);
    }
    for (i, frame) in frames.into_iter().enumerate() {
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
        loop {
            let Some(Ok(m)) = ws.next().await else {
                panic!("{uid}: the WebSocket closed")
            };
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["id"] == json!(i + 1) {
                    assert!(v["type"] != "error", "{uid}: {v}");
                    break;
                }
            }
        }
    }
    ws
}

/// A str0m client: the speaker (sends a frame with its send time every 20 ms) or a listener
/// (records each frame's mouth-to-ear latency while `recording`).
struct Client {
    /// The node whose media address the answer carried.
    media: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Latencies in ms, recorded while the flag is set.
type Samples = Arc<Mutex<Vec<f64>>>;

async fn connect(
    base: &str,
    uid: &str,
    epoch: Instant,
    speaker: bool,
    recording: Arc<AtomicBool>,
    samples: Samples,
) -> Client {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = socket.local_addr().expect("addr");
    let mut rtc = onmic_server::sfu::opus_rtc_config().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    let send_mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    for _ in 0..3 {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    }
    let (offer, pending) = api.apply().expect("an offer");
    let body = json!({ "room": ROOM, "token": token(uid), "offer": offer });
    let resp = reqwest::Client::new()
        .post(format!("{base}/rtc/offer"))
        .json(&body)
        .send()
        .await
        .expect("offer");
    assert_eq!(resp.status().as_u16(), 200, "{uid}'s offer");
    let answer: Value = resp.json().await.expect("answer JSON");
    let media = answer["sdp"]
        .as_str()
        .and_then(|sdp| sdp.lines().find(|l| l.starts_with("a=candidate:")))
        .and_then(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok()
        })
        .expect("a host candidate");
    let answer: SdpAnswer = serde_json::from_value(answer).expect("an SDP answer");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("answer accepted");
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 2000];
            let mut next_send = Instant::now();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) && rtc.is_alive() {
                let timeout = loop {
                    match rtc.poll_output() {
                        Ok(Output::Timeout(t)) => break t,
                        Ok(Output::Transmit(t)) => {
                            let _ = socket.send_to(&t.contents, t.destination);
                        }
                        Ok(Output::Event(Event::MediaData(d))) => {
                            if recording.load(Ordering::Relaxed)
                                && let Some(sent) = d.data.get(9..17)
                            {
                                let sent = u64::from_be_bytes(sent.try_into().expect("8 bytes"));
                                let now = epoch.elapsed().as_nanos() as u64;
                                let ms = now.saturating_sub(sent) as f64 / 1e6;
                                samples.lock().expect("samples").push(ms);
                            }
                        }
                        Ok(Output::Event(_)) => {}
                        Err(_) => return,
                    }
                };
                let now = Instant::now();
                if speaker && now >= next_send {
                    next_send += Duration::from_millis(20);
                    let w = if rtc.is_connected() {
                        rtc.writer(send_mid)
                    } else {
                        None
                    };
                    if let Some(w) = w {
                        let pt = w.payload_params().next().map(|p| p.pt());
                        if let Some(pt) = pt {
                            let mut p = vec![1u8; 60];
                            p[1..9].copy_from_slice(&seq.to_be_bytes());
                            let sent = epoch.elapsed().as_nanos() as u64;
                            p[9..17].copy_from_slice(&sent.to_be_bytes());
                            let ts = MediaTime::new(seq * 960, Frequency::FORTY_EIGHT_KHZ);
                            let _ = w.audio_level(-20, true).write(pt, now, ts, p);
                            seq += 1;
                            // Out at once (the next poll), not after the next wait.
                            continue;
                        }
                    }
                }
                let until = if speaker {
                    timeout.min(next_send)
                } else {
                    timeout
                };
                let wait = until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                let _ = socket.set_read_timeout(Some(wait));
                let input = match socket.recv_from(&mut buf) {
                    Ok((n, source)) => match buf[..n].try_into() {
                        Ok(contents) => Input::Receive(
                            Instant::now(),
                            str0m::net::Receive {
                                proto: str0m::net::Protocol::Udp,
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
        })
    };
    Client {
        media,
        stop,
        thread: Some(thread),
    }
}

fn percentiles(v: &mut [f64]) -> (usize, f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    assert!(n > 0, "no samples");
    let at = |p: f64| v[((n as f64 - 1.0) * p).round() as usize];
    (n, at(0.5), at(0.9), at(0.99))
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if !onmic_netns::bench_inside_netns(&[]) {
        return;
    }
    let n1 = env_or("ONMIC_BENCH_N1", 8) as usize;
    let n2 = env_or("ONMIC_BENCH_N2", 40) as usize;
    let secs = env_or("ONMIC_BENCH_SECS", 15);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _redis = start_redis(port);
    let redis = format!("redis://127.0.0.1:{port}/");
    // Node a: the origin (serves the speaker and one listener of a room); node b: the relay.
    let (a_kid, a) = start_node("a", &redis, dir.path(), Some(2));
    let (b_kid, _b) = start_node("b", &redis, dir.path(), None);
    let (a_pid, b_pid) = (a_kid.0.id(), b_kid.0.id());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        while onmic_server::cluster::status(&redis)
            .await
            .map_or(0, |s| s.nodes.len())
            < 2
        {
            assert!(Instant::now() < deadline, "two live nodes");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Both nodes must know each other before placement (heartbeat 200 ms).
        tokio::time::sleep(Duration::from_millis(600)).await;
        let resp = reqwest::Client::new()
            .post(format!("{a}/v1/rooms"))
            .header("authorization", format!("Bearer {KEY}:{SECRET}"))
            .json(&json!({ "id": ROOM, "owner": "speaker", "title": "t", "seat_count": 2 }))
            .send()
            .await
            .expect("create");
        assert_eq!(resp.status().as_u16(), 201);
        let node = resp.headers()["x-onmic-node"].to_str().expect("node").to_owned();
        assert_eq!(node, "a", "the room is placed on a (fewest rooms, then the id)");
        let epoch = Instant::now();
        let recording = Arc::new(AtomicBool::new(false));
        let direct: Samples = Arc::default();
        let relayed: Samples = Arc::default();
        let mut sockets = vec![
            join(&a, "speaker", Some(json!({ "type": "take_seat", "seat": 0 }))).await,
        ];
        let speaker = connect(&a, "speaker", epoch, true, recording.clone(), Arc::default()).await;
        sockets.push(join(&a, "direct", None).await);
        let direct_client =
            connect(&a, "direct", epoch, false, recording.clone(), direct.clone()).await;
        assert_eq!(direct_client.media, speaker.media, "the direct listener is on a");
        let mut listeners = Vec::new();
        let add = |k: usize| {
            let (a, recording, relayed) = (a.clone(), recording.clone(), relayed.clone());
            async move {
                let uid = format!("r{k}");
                let ws = join(&a, &uid, None).await;
                let c = connect(&a, &uid, epoch, false, recording, relayed).await;
                (ws, c)
            }
        };
        for k in 0..n1 {
            let (ws, c) = add(k).await;
            assert_ne!(c.media, speaker.media, "listener {k} is placed on the relay");
            sockets.push(ws);
            listeners.push(c);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!(
            "relay tree: origin a (speaker + 1 direct listener), relay b; 1 speaker, 50 packets/s; {cores} cores shared with the clients"
        );
        // Latency and CPU with n1 relayed listeners.
        recording.store(true, Ordering::Relaxed);
        let (a0, b0, t0) = (cpu_seconds(a_pid), cpu_seconds(b_pid), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (a1, b1, t1) = (cpu_seconds(a_pid), cpu_seconds(b_pid), Instant::now());
        recording.store(false, Ordering::Relaxed);
        let w1 = (t1 - t0).as_secs_f64();
        let (relay_cpu1, origin_cpu1) = ((b1 - b0) / w1, (a1 - a0) / w1);
        let mut d = direct.lock().expect("samples").clone();
        let mut r = relayed.lock().expect("samples").clone();
        let (dn, d50, d90, d99) = percentiles(&mut d);
        let (rn, r50, r90, r99) = percentiles(&mut r);
        println!("measured mouth-to-ear (send -> receive, loopback), {n1} relayed listeners:");
        println!(
            "  origin-direct     n={dn:<6} p50 {d50:>6.2} ms  p90 {d90:>6.2}  p99 {d99:>6.2}"
        );
        println!(
            "  via relay b       n={rn:<6} p50 {r50:>6.2} ms  p90 {r90:>6.2}  p99 {r99:>6.2}"
        );
        println!(
            "  added by the relay:    p50 {:>+6.2} ms  p99 {:>+6.2} ms",
            r50 - d50,
            r99 - d99
        );
        // More relayed listeners: the relay's CPU slope is its cost per listener.
        for k in n1..n2 {
            let (ws, c) = add(k).await;
            assert_ne!(c.media, speaker.media, "listener {k} is placed on the relay");
            sockets.push(ws);
            listeners.push(c);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (a0, b0, t0) = (cpu_seconds(a_pid), cpu_seconds(b_pid), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (a1, b1, t1) = (cpu_seconds(a_pid), cpu_seconds(b_pid), Instant::now());
        let w2 = (t1 - t0).as_secs_f64();
        let (relay_cpu2, origin_cpu2) = ((b1 - b0) / w2, (a1 - a0) / w2);
        let per_listener = (relay_cpu2 - relay_cpu1) / (n2 - n1) as f64;
        println!("measured CPU (share of one core, over {secs} s windows):");
        println!(
            "  relay b:  {:>6.2} % with {n1:>4} listeners, {:>6.2} % with {n2:>4}",
            relay_cpu1 * 100.0,
            relay_cpu2 * 100.0
        );
        println!(
            "  origin a: {:>6.2} % with {n1:>4} relayed listeners, {:>6.2} % with {n2:>4} (one link either way)",
            origin_cpu1 * 100.0,
            origin_cpu2 * 100.0
        );
        println!(
            "  relay cost per listener (slope): {:.1} us CPU per second ({:.2} us per forwarded copy at 50 packets/s)",
            per_listener * 1e6,
            per_listener * 1e6 / 50.0
        );
        let budget = 0.8 * cores as f64;
        let derived = if per_listener > 0.0 {
            (budget / per_listener) as u64
        } else {
            0
        };
        println!(
            "derived: listeners per added relay node at 1 speaker (80 % of {cores} cores / measured slope): {derived}; at 3 speakers (3 copies per listener per 20 ms): {}",
            derived / 3
        );
        println!(
            "derived: listeners per added node from the SFU's known capacity (docs/sfu.md: 2,000 listeners of 3 speakers on 2 cores; a relay's link is one subscriber at its origin): 2,000"
        );
        for relays in 1..=4u64 {
            println!(
                "derived: origin + {relays} relay(s), 3 speakers: {} listeners (SFU capacity), {} (measured slope)",
                2_000 * (relays + 1),
                derived / 3 * (relays + 1)
            );
        }
        drop(listeners);
        drop(direct_client);
        drop(speaker);
        drop(sockets);
    });
}
