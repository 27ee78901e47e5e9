//! SFU capacity (issue 5, acceptance 7): one room, 3 speakers sending 128 kbps stereo Opus-sized
//! frames every 20 ms, and N listeners ramped up until loss passes 1 % or the SFU thread
//! saturates its core. Prints per step: forwarded packets/s received by all listeners, loss, the
//! SFU thread's CPU, packets/s per core of SFU CPU, the server's RSS and RSS growth per listener
//! (overall; and split into room membership + WebSocket vs. the WebRTC peer connection), and the
//! CPU of the listener harness.
//!
//! The server runs in this process; speakers and listeners run in a child process so the
//! server's CPU and memory are its own. Speakers are full str0m peers, each on its own blocking
//! thread (the bench counts the RTP datagrams their str0m sends). Listeners are
//! str0m peers whose sockets are all served by one thread (epoll, one datagram per readiness):
//! STUN, DTLS and RTCP go to the listener's str0m instance (handshake, ICE consent), forwarded
//! Opus RTP is only counted, not decrypted, so the harness stays far lighter than the SFU. All of
//! it inside a loopback-only network namespace this bench creates (root).
//!
//! `cargo bench -p onmic-server --bench sfu_capacity` (`ONMIC_SFU_STEPS=500,1000,2000` to choose
//! the ramp).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use onmic_server::sfu::SfuStats;
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Output, Rtc};

const SLOTS: usize = 4;
const SPEAKERS: usize = 3;
/// 128 kbps at 50 packets/s.
const PAYLOAD: usize = 320;
const WINDOW: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--clients") {
        let base = args.get(i + 1).expect("base URL").clone();
        let steps = args.get(i + 2).expect("steps").clone();
        clients(&base, &steps);
        return;
    }
    if !onmic_netns::bench_inside_netns(&[]) {
        return;
    }
    server_side();
}

fn steps() -> String {
    std::env::var("ONMIC_SFU_STEPS")
        .unwrap_or_else(|_| "250,500,750,1000,1250,1500,1750,2000".into())
}

/// utime+stime in clock ticks of this process's thread named `name`.
fn thread_ticks(name: &str) -> Option<u64> {
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let after = stat.rsplit(')').next()?;
            let f: Vec<&str> = after.split_whitespace().collect();
            return Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?);
        }
    }
    None
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn sfu_stats(rt: &tokio::runtime::Runtime, server: &onmic_server::RunningServer) -> SfuStats {
    let sfu = server.media().expect("the SFU runs");
    rt.block_on(sfu.stats()).expect("SFU stats")
}

fn server_side() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut cfg = config();
    cfg.presence_timeout_ms = 600_000;
    cfg.max_frames_per_sec = 1000;
    let server = rt.block_on(server(cfg));
    let base = server.url();
    rt.block_on(async {
        let (status, body) = rest(
            &base,
            "post",
            "/v1/rooms",
            Some(json!({ "id": "cap", "owner": "s0", "title": "bench", "seat_count": 3 })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    });
    let tick = 100.0; // USER_HZ on Linux
    let rss0 = rss_kib();
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--clients", &base, &steps()])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("client process");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    println!(
        "SFU capacity (str0m 0.25 driver, 1 room, {SPEAKERS} speakers x 50 pkt/s x {PAYLOAD} B)"
    );
    println!(
        "{:>9} {:>12} {:>10} {:>8} {:>14} {:>14} {:>13} {:>9} {:>7} {:>7}",
        "listeners",
        "fwd pkt/s",
        "loss %",
        "sfu cpu",
        "pkt/s per core",
        "rss MiB",
        "KiB/listener",
        "harness",
        "KiB ws",
        "KiB rtc"
    );
    let mut start: Option<(Instant, u64)> = None;
    // Memory at the previous step's end and after this step's WebSocket joins.
    let (mut rss_prev, mut n_prev, mut rss_joined, mut ws_per_listener) = (rss0, 0.0, rss0, 0.0);
    let mut saturated = false;
    let mut sfu0 = SfuStats::default();
    for line in out.lines() {
        let line = line.expect("child output");
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["joined", n] => {
                let n: f64 = n.parse().expect("n");
                let rss = rss_kib();
                ws_per_listener = (rss.saturating_sub(rss_prev)) as f64 / (n - n_prev).max(1.0);
                rss_joined = rss;
            }
            ["start", _n] => {
                sfu0 = sfu_stats(&rt, &server);
                start = Some((Instant::now(), thread_ticks("onmic-sfu").unwrap_or(0)));
            }
            ["end", n, received, expected, harness, spoken] => {
                let spoken: f64 = spoken.parse().expect("spoken");
                let (t0, c0) = start.take().expect("start before end");
                let secs = t0.elapsed().as_secs_f64();
                let cpu = (thread_ticks("onmic-sfu").unwrap_or(0) - c0) as f64 / tick / secs;
                let n: f64 = n.parse().expect("n");
                let received: f64 = received.parse().expect("received");
                let expected: f64 = expected.parse().expect("expected");
                let pps = received / secs;
                let loss = 100.0 * (1.0 - received / expected).max(0.0);
                let sfu1 = sfu_stats(&rt, &server);
                let harness: f64 = harness.parse().expect("harness ticks");
                let harness = harness / tick / secs;
                let rss = rss_kib();
                let rtc_per_listener =
                    (rss.saturating_sub(rss_joined)) as f64 / (n - n_prev).max(1.0);
                rss_prev = rss;
                n_prev = n;
                println!(
                    "{:>9} {:>12.0} {:>10.2} {:>7.0}% {:>14.0} {:>14.1} {:>13.1} {:>8.0}% {:>7.0} {:>7.0}",
                    n,
                    pps,
                    loss,
                    cpu * 100.0,
                    if cpu > 0.0 { pps / cpu } else { 0.0 },
                    rss as f64 / 1024.0,
                    (rss.saturating_sub(rss0)) as f64 / (n + SPEAKERS as f64),
                    harness * 100.0,
                    ws_per_listener,
                    rtc_per_listener
                );
                println!(
                    "          speakers wrote {:.0} packets/s; SFU: {:.0} Opus RTP datagrams/s received, {:.0} packets/s forwarded from speakers, {:.0} datagrams/s received, {:.0} copies/s written, {:.0} datagrams/s sent, {:.0} timer fires/s, {:.0} dropped/s, {} of {} peers connected",
                    spoken / secs,
                    (sfu1.opus_rtp_in - sfu0.opus_rtp_in) as f64 / secs,
                    (sfu1.forwarded_in - sfu0.forwarded_in) as f64 / secs,
                    (sfu1.datagrams_in - sfu0.datagrams_in) as f64 / secs,
                    (sfu1.forwarded_out - sfu0.forwarded_out) as f64 / secs,
                    (sfu1.datagrams_out - sfu0.datagrams_out) as f64 / secs,
                    (sfu1.timer_fires - sfu0.timer_fires) as f64 / secs,
                    (sfu1.dropped - sfu0.dropped) as f64 / secs,
                    sfu1.connected,
                    sfu1.peers,
                );
                let arrived = (sfu1.forwarded_in - sfu0.forwarded_in) as f64;
                if arrived < 0.99 * spoken {
                    println!(
                        "          {:.1} % of the speakers' packets were lost between their sockets and the SFU's forwarding (kernel UDP drops or the SFU's receive queue)",
                        100.0 * (1.0 - arrived / spoken.max(1.0))
                    );
                }
                if cpu >= 0.95 {
                    println!("ramp stopped: the SFU thread saturated its core at {n} listeners");
                    let _ = child.kill();
                    saturated = true;
                    break;
                }
            }
            ["stop", why @ ..] => println!("ramp stopped: {}", why.join(" ")),
            _ => println!("client: {line}"),
        }
    }
    let status = child.wait().expect("client process");
    assert!(
        saturated || status.success(),
        "the client process failed: {status}"
    );
    rt.block_on(async { server.shutdown().await.expect("shutdown") });
}

/// The child process: speakers and listeners.
fn clients(base: &str, steps: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let received = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let (to_listeners, adopt) = std::sync::mpsc::channel::<(UdpSocket, Rtc)>();
    let (counter, up) = (received.clone(), connected.clone());
    std::thread::Builder::new()
        .name("listeners".into())
        .spawn(move || listeners(adopt, counter, up))
        .expect("listener thread");
    rt.block_on(async move {
        let mut owner: Option<Client> = None;
        for s in 0..SPEAKERS {
            let uid = format!("s{s}");
            let (mut ws, _) = Client::join(base, "cap", &uid).await;
            if s == 0 {
                ws.ok(json!({ "type": "take_seat", "seat": 0 })).await;
            } else {
                ws.ok(json!({ "type": "apply", "seat": s })).await;
                if let Some(o) = owner.as_mut() {
                    o.ok(json!({ "type": "approve", "uid": uid })).await;
                }
            }
            let tok = token(base, "cap", &uid).await;
            let (socket, rtc, send_mid) = offer(base, &tok).await;
            // A blocking thread per speaker (as the netns tests' peers): nothing else in this
            // process delays its sends.
            std::thread::Builder::new()
                .name(format!("speaker-{s}"))
                .spawn(move || speak(socket, rtc, send_mid))
                .expect("speaker thread");
            if s == 0 {
                owner = Some(ws);
            } else {
                drain(ws);
            }
        }
        if let Some(o) = owner.take() {
            drain(o);
        }
        let mut n = 0usize;
        for step in steps
            .split(',')
            .filter_map(|s| s.trim().parse::<usize>().ok())
        {
            // Members join over the WebSocket first, then connect WebRTC, so the server's
            // memory can be told apart: room membership + WebSocket, then the peer connection.
            let first = n;
            while n < step {
                let (ws, _) = Client::join(base, "cap", &format!("l{n}")).await;
                drain(ws);
                n += 1;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!("joined {n}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            for i in first..n {
                let tok = token(base, "cap", &format!("l{i}")).await;
                let (socket, rtc, _) = offer(base, &tok).await;
                to_listeners.send((socket, rtc)).expect("listener thread");
            }
            // Wait for the new peers to connect (DTLS handshakes take CPU), then let them settle.
            let deadline = Instant::now() + Duration::from_secs(90);
            while (connected.load(Ordering::Relaxed) as usize) < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let up = connected.load(Ordering::Relaxed);
            if (up as usize) < n {
                println!("only {up} of {n} listeners connected within 90 s");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!("start {n}");
            let r0 = received.load(Ordering::Relaxed);
            let h0 = thread_ticks("listeners").unwrap_or(0);
            let s0 = SPOKEN.load(Ordering::Relaxed);
            let t0 = SENT.load(Ordering::Relaxed);
            let e0 = SEND_ERRORS.load(Ordering::Relaxed);
            tokio::time::sleep(WINDOW).await;
            let r = received.load(Ordering::Relaxed) - r0;
            let expected = (n * SPEAKERS) as f64 * 50.0 * WINDOW.as_secs_f64();
            let harness = thread_ticks("listeners").unwrap_or(0) - h0;
            let spoken = SPOKEN.load(Ordering::Relaxed) - s0;
            println!(
                "speakers: {} RTP datagrams sent, {} send errors in the window",
                SENT.load(Ordering::Relaxed) - t0,
                SEND_ERRORS.load(Ordering::Relaxed) - e0
            );
            println!("end {n} {r} {expected} {harness} {spoken}");
            if (r as f64) < expected * 0.99 {
                println!("stop loss above 1 % at {n} listeners");
                break;
            }
        }
    });
}

/// Frames the speakers wrote (all three), the Opus RTP datagrams str0m gave them to send, and
/// failed sends.
static SPOKEN: AtomicU64 = AtomicU64::new(0);
static SENT: AtomicU64 = AtomicU64::new(0);
static SEND_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Reads (and discards) a member's WebSocket so the server never buffers for it.
fn drain(mut client: Client) {
    tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = client.ws.next().await {}
    });
}

/// A str0m peer with one send m-line and the slots, its offer answered by the SFU.
async fn offer(base: &str, token: &str) -> (UdpSocket, Rtc, str0m::media::Mid) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    let mut rtc = onmic_server::sfu::opus_rtc_config().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    let send_mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    for _ in 0..SLOTS {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    }
    let (offer, pending) = api.apply().expect("offer");
    let body = json!({ "room": "cap", "token": token, "offer": offer });
    let (status, answer) = rest_with(base, "post", "/rtc/offer", Some(body), None).await;
    assert_eq!(status, 200, "{answer}");
    let answer: SdpAnswer = serde_json::from_value(answer).expect("answer");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("accepted");
    (socket, rtc, send_mid)
}

/// A speaker: a full str0m peer sending a 320-byte frame every 20 ms, on its own thread.
fn speak(socket: UdpSocket, mut rtc: Rtc, send_mid: str0m::media::Mid) {
    let addr = socket.local_addr().expect("addr");
    let mut buf = vec![0u8; 2000];
    let mut next_send = Instant::now();
    let mut seq: u64 = 0;
    while rtc.is_alive() {
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let c: &[u8] = &t.contents;
                    if c.len() > 12 && (128..192).contains(&c[0]) && c[1] & 0x7f == 111 {
                        SENT.fetch_add(1, Ordering::Relaxed);
                    }
                    if socket.send_to(c, t.destination).is_err() {
                        SEND_ERRORS.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return,
            }
        };
        let now = Instant::now();
        if now >= next_send {
            next_send += Duration::from_millis(20);
            let pt = rtc
                .writer(send_mid)
                .and_then(|w| w.payload_params().next().map(|p| p.pt()));
            if rtc.is_connected()
                && let Some(pt) = pt
                && let Some(w) = rtc.writer(send_mid)
            {
                let ts = MediaTime::new(seq * 960, Frequency::FORTY_EIGHT_KHZ);
                if w.audio_level(-20, true)
                    .write(pt, now, ts, vec![0x5a; PAYLOAD])
                    .is_ok()
                {
                    SPOKEN.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
                // str0m sends a written frame once its clock advances (as in the driver).
                if rtc.handle_input(Input::Timeout(now)).is_err() {
                    return;
                }
            }
            continue;
        }
        let wait = timeout
            .min(next_send)
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let Some(input) = next_input(&socket, &mut buf, addr, wait) else {
            continue;
        };
        if rtc.handle_input(input).is_err() {
            return;
        }
    }
}

/// A listener after adoption by the listener thread.
struct Listener {
    socket: UdpSocket,
    addr: SocketAddr,
    rtc: Rtc,
    timeout: Instant,
}

/// Once connected, a listener's str0m instance is woken at most this often (ICE consent and
/// RTCP need no more).
const LISTENER_TICK: Duration = Duration::from_millis(50);

/// All listeners on one thread: epoll over their sockets, one datagram per readiness event.
/// Forwarded Opus RTP (payload type 111) is counted without decrypting it; everything else
/// (STUN, DTLS, RTCP) goes to the listener's str0m instance, which also keeps ICE consent alive.
/// This keeps the harness far lighter than the SFU it measures.
fn listeners(
    adopt: std::sync::mpsc::Receiver<(UdpSocket, Rtc)>,
    received: Arc<AtomicU64>,
    connected: Arc<AtomicU64>,
) {
    let epoll = Epoll::new(EpollCreateFlags::empty()).expect("epoll");
    let mut peers: Vec<Listener> = Vec::new();
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = vec![0u8; 2000];
    let mut next_sweep = Instant::now();
    loop {
        loop {
            match adopt.try_recv() {
                Ok((socket, rtc)) => {
                    socket.set_nonblocking(true).expect("nonblocking");
                    let addr = socket.local_addr().expect("addr");
                    let ev = EpollEvent::new(EpollFlags::EPOLLIN, peers.len() as u64);
                    epoll.add(&socket, ev).expect("epoll add");
                    let mut l = Listener {
                        socket,
                        addr,
                        rtc,
                        timeout: Instant::now(),
                    };
                    service(&mut l, Instant::now());
                    peers.push(l);
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let n = epoll.wait(&mut events, 5u8).unwrap_or(0);
        let mut counted = 0u64;
        for ev in &events[..n] {
            let Some(l) = peers.get_mut(ev.data() as usize) else {
                continue;
            };
            let Ok((len, source)) = l.socket.recv_from(&mut buf) else {
                continue;
            };
            if len > 12 && (128..192).contains(&buf[0]) && buf[1] & 0x7f == 111 {
                counted += 1;
                continue;
            }
            if let Ok(contents) = buf[..len].try_into() {
                let input = Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: l.addr,
                        contents,
                    },
                );
                if l.rtc.handle_input(input).is_ok() {
                    service(l, Instant::now());
                }
            }
        }
        received.fetch_add(counted, Ordering::Relaxed);
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + Duration::from_millis(5);
            let mut up = 0;
            for l in &mut peers {
                if l.timeout <= now && l.rtc.is_alive() {
                    let _ = l.rtc.handle_input(Input::Timeout(now));
                    service(l, now);
                }
                up += u64::from(l.rtc.is_connected());
            }
            connected.store(up, Ordering::Relaxed);
        }
    }
}

/// Sends what the listener's str0m wants to send and notes its next timeout.
fn service(l: &mut Listener, now: Instant) {
    loop {
        match l.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                l.timeout = if l.rtc.is_connected() {
                    t.max(now + LISTENER_TICK)
                } else {
                    t
                };
                return;
            }
            Ok(Output::Transmit(t)) => {
                let _ = l.socket.send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(_)) => {}
            Err(_) => {
                l.timeout = now + Duration::from_secs(3600);
                return;
            }
        }
    }
}
