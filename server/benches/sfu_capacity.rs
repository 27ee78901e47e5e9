//! SFU capacity (issue 5, acceptance 7): one room, 3 speakers sending 128 kbps stereo Opus-sized
//! frames every 20 ms, and N listeners ramped up until loss passes 1 % or the SFU thread
//! saturates its core. Prints forwarded packets/s, the SFU thread's CPU, packets/s per core,
//! listeners reached, and the server process's memory per listener.
//!
//! The server runs in this process; speakers and listeners (str0m peers, each with its own UDP
//! socket, joined over the WebSocket; listeners count forwarded RTP without decrypting it) run in
//! a child process so the server's CPU and memory are its own. Everything runs inside a loopback-only network namespace this bench creates (root).
//!
//! `cargo bench -p onmic-server --bench sfu_capacity` (`ONMIC_SFU_STEPS=100,500,1000` to choose
//! the ramp).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output};

const INNER: &str = "ONMIC_NETNS_INNER";
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
    if std::env::var_os(INNER).is_none() {
        in_netns();
        return;
    }
    server_side();
}

fn steps() -> String {
    std::env::var("ONMIC_SFU_STEPS").unwrap_or_else(|_| "50,200,500,1000,1500,2000".into())
}

fn in_netns() {
    let name = format!("onmic-sfubench-{}", std::process::id());
    let ok = |args: &[&str]| {
        let s = Command::new("ip").args(args).status();
        assert!(
            s.is_ok_and(|s| s.success()),
            "`ip {}` failed: this bench needs root and iproute2",
            args.join(" ")
        );
    };
    ok(&["netns", "add", &name]);
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _c = Cleanup(name.clone());
    ok(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
    let exe = std::env::current_exe().expect("bench binary");
    let status = Command::new("ip")
        .args(["netns", "exec", &name])
        .arg(exe)
        .env(INNER, "1")
        .status()
        .expect("run inside the namespace");
    assert!(status.success(), "the bench failed inside the namespace");
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
        "{:>9} {:>12} {:>10} {:>8} {:>14} {:>14} {:>13}",
        "listeners", "fwd pkt/s", "loss %", "sfu cpu", "pkt/s per core", "rss MiB", "KiB/listener"
    );
    let mut start: Option<(Instant, u64)> = None;
    for line in out.lines() {
        let line = line.expect("child output");
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["start", _n] => start = Some((Instant::now(), thread_ticks("onmic-sfu").unwrap_or(0))),
            ["end", n, received, expected] => {
                let (t0, c0) = start.take().expect("start before end");
                let secs = t0.elapsed().as_secs_f64();
                let cpu = (thread_ticks("onmic-sfu").unwrap_or(0) - c0) as f64 / tick / secs;
                let n: f64 = n.parse().expect("n");
                let received: f64 = received.parse().expect("received");
                let expected: f64 = expected.parse().expect("expected");
                let pps = received / secs;
                let loss = 100.0 * (1.0 - received / expected).max(0.0);
                let rss = rss_kib();
                println!(
                    "{:>9} {:>12.0} {:>10.2} {:>7.0}% {:>14.0} {:>14.1} {:>13.1}",
                    n,
                    pps,
                    loss,
                    cpu * 100.0,
                    if cpu > 0.0 { pps / cpu } else { 0.0 },
                    rss as f64 / 1024.0,
                    (rss.saturating_sub(rss0)) as f64 / (n + SPEAKERS as f64)
                );
            }
            ["stop", why @ ..] => println!("ramp stopped: {}", why.join(" ")),
            _ => println!("client: {line}"),
        }
    }
    let status = child.wait().expect("client process");
    assert!(status.success(), "the client process failed: {status}");
    rt.block_on(async { server.shutdown().await.expect("shutdown") });
}

/// The child process: speakers and listeners.
fn clients(base: &str, steps: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let received = Arc::new(AtomicU64::new(0));
        let mut keep: Vec<Client> = Vec::new();
        for s in 0..SPEAKERS {
            let uid = format!("s{s}");
            let (mut ws, _) = Client::join(base, "cap", &uid).await;
            if s == 0 {
                ws.ok(json!({ "type": "take_seat", "seat": 0 })).await;
            } else {
                ws.ok(json!({ "type": "apply", "seat": s })).await;
                keep[0].ok(json!({ "type": "approve", "uid": uid })).await;
            }
            keep.push(ws);
            let tok = token(base, "cap", &uid).await;
            spawn_peer(base, &tok, true, Arc::new(AtomicU64::new(0))).await;
        }
        let mut n = 0usize;
        for step in steps
            .split(',')
            .filter_map(|s| s.trim().parse::<usize>().ok())
        {
            while n < step {
                let uid = format!("l{n}");
                let (ws, _) = Client::join(base, "cap", &uid).await;
                keep.push(ws);
                let tok = token(base, "cap", &uid).await;
                spawn_peer(base, &tok, false, received.clone()).await;
                n += 1;
            }
            // Let the new peers connect and settle.
            tokio::time::sleep(Duration::from_secs(3)).await;
            println!("start {n}");
            let r0 = received.load(Ordering::Relaxed);
            tokio::time::sleep(WINDOW).await;
            let r = received.load(Ordering::Relaxed) - r0;
            let expected = (n * SPEAKERS) as f64 * 50.0 * WINDOW.as_secs_f64();
            println!("end {n} {r} {expected}");
            if (r as f64) < expected * 0.99 {
                println!("stop loss above 1 % at {n} listeners");
                break;
            }
        }
        drop(keep);
    });
}

async fn spawn_peer(base: &str, token: &str, speaker: bool, received: Arc<AtomicU64>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
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
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2000];
        let mut next_send = Instant::now();
        let mut seq: u64 = 0;
        loop {
            let timeout = loop {
                match rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        let _ = socket.send_to(&t.contents, t.destination).await;
                    }
                    Ok(Output::Event(Event::MediaData(_))) => {}
                    Ok(Output::Event(_)) => {}
                    Err(_) => return,
                }
            };
            let now = Instant::now();
            if speaker && now >= next_send {
                next_send += Duration::from_millis(20);
                if rtc.is_connected()
                    && let Some(w) = rtc.writer(send_mid)
                {
                    let Some(pt) = w.payload_params().next().map(|p| p.pt()) else {
                        continue;
                    };
                    let ts = MediaTime::new(seq * 960, Frequency::FORTY_EIGHT_KHZ);
                    let _ = w
                        .audio_level(-20, true)
                        .write(pt, now, ts, vec![0x5a; PAYLOAD]);
                    seq += 1;
                }
                continue;
            }
            let until = if speaker {
                timeout.min(next_send)
            } else {
                timeout
            };
            let until = tokio::time::Instant::from_std(until);
            let input = tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    // A listener counts forwarded Opus RTP (payload type 111) without decrypting
                    // it: the harness must stay lighter than the SFU it measures.
                    Ok((n, _)) if !speaker && n > 12 && (128..192).contains(&buf[0]) && buf[1] & 0x7f == 111 => {
                        received.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Ok((n, source)) => match buf[..n].try_into() {
                        Ok(contents) => Input::Receive(Instant::now(), Receive {
                            proto: Protocol::Udp, source, destination: addr, contents,
                        }),
                        Err(_) => continue,
                    },
                    Err(_) => return,
                },
                _ = tokio::time::sleep_until(until) => Input::Timeout(Instant::now()),
            };
            if rtc.handle_input(input).is_err() {
                return;
            }
        }
    });
}
