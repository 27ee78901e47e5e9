//! SFU capacity (issue 5, acceptance 7): one room, 3 speakers sending 128 kbps stereo Opus-sized
//! frames every 20 ms, and N listeners ramped up until loss passes 1 %, the decrypting sample
//! fails (a frame out of order, foreign or missing, or a mean delay above 200 ms) or an SFU thread
//! saturates its core. Prints per step: forwarded packets/s received by all listeners, loss, the
//! SFU threads' CPU, packets/s per core of SFU CPU, the server's RSS and RSS growth per listener
//! (overall; and split into room membership + WebSocket vs. the WebRTC peer connection), the CPU
//! of the listener harness and the whole machine's CPU split.
//!
//! The server runs in this process; speakers and listeners run in a child process so the
//! server's CPU and memory are its own. Speakers are full str0m peers, each on its own blocking
//! thread. Listeners are str0m peers that all share one UDP socket read by one thread
//! (`recvmmsg` batches without blocking, `IP_PKTINFO` tells the listener): STUN, DTLS and RTCP go
//! to the listener's str0m instance (handshake, ICE consent); forwarded Opus RTP is only counted,
//! except by one listener in 50, which decrypts and checks every frame, and except a stream's
//! first packet and one in 50 after it, which every listener's str0m gets so that it sends
//! receiver reports as a browser does (`REPORT_EVERY`). All of it inside a
//! loopback-only network namespace this bench creates (root).
//!
//! `cargo bench -p onmic-server --bench sfu_capacity` (`ONMIC_SFU_STEPS=500,1000,2000` to choose
//! the ramp).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmsg,
    setsockopt, sockopt,
};
use onmic_server::sfu::SfuStats;
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SLOTS: usize = 4;
/// The most speakers a run has (the room's three seats).
const SPEAKERS: usize = 3;

/// How many speakers this run has: 3 (the default shape: 3 speakers, N listeners) or
/// `ONMIC_SFU_SPEAKERS=1` (the second shape: 1 speaker, N listeners, as Janus was measured).
fn speakers() -> usize {
    std::env::var("ONMIC_SFU_SPEAKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SPEAKERS)
        .clamp(1, SPEAKERS)
}
/// 128 kbps at 50 packets/s.
const PAYLOAD: usize = 320;
const WINDOW: Duration = Duration::from_secs(5);

/// The measuring window: 5 s, or `ONMIC_SFU_WINDOW_SECS` (longer under callgrind, so that the
/// instruction counter's start and stop, which callgrind takes up a little late, cost little).
fn window() -> Duration {
    std::env::var("ONMIC_SFU_WINDOW_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(WINDOW, Duration::from_secs)
}

/// Instruction counts, load-independent (issue 15, acceptance 2): when the server side runs
/// under `valgrind --tool=callgrind --callgrind-out-file=FILE` and `ONMIC_SFU_CALLGRIND=FILE`,
/// the bench zeroes callgrind's counters at each window's start (`callgrind_control -z`) and
/// dumps them at its end (`callgrind_control -d`); [`Callgrind::stop`] reads the dump's total
/// instructions (`Ir`, user space of every server thread: WebSocket, timers, RTCP, forwarding).
/// The kernel's UDP path is not counted.
struct Callgrind {
    out: String,
}

impl Callgrind {
    fn from_env() -> Option<Self> {
        let out = std::env::var("ONMIC_SFU_CALLGRIND").ok()?;
        Some(Self { out })
    }

    fn control(arg: &str) {
        let status = Command::new("callgrind_control")
            .args([arg, &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            println!("          callgrind_control {arg} failed: {status:?}");
        }
    }

    fn start(&self) {
        Self::control("-z");
    }

    /// Dumps the counters and returns the instructions since [`Callgrind::start`].
    fn stop(&self) -> Option<u64> {
        let before = self.dumps();
        Self::control("-d");
        // The dump is written by the process itself; wait for a new file with its totals.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            for path in self.dumps() {
                if before.contains(&path) {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if let Some(total) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("totals:").or(l.strip_prefix("summary:")))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                {
                    return Some(total);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    fn dumps(&self) -> Vec<std::path::PathBuf> {
        let path = std::path::Path::new(&self.out);
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(name) && n != name)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

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
    std::env::var("ONMIC_SFU_STEPS").unwrap_or_else(|_| "500,1000,1500,2000,2250,2500,2750".into())
}

/// This process's threads whose name starts with `prefix`: name and `/proc` directory.
fn own_threads(prefix: &str) -> Vec<(String, std::path::PathBuf)> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let comm = comm.trim();
            comm.starts_with(prefix)
                .then(|| (comm.to_string(), t.path()))
        })
        .collect()
}

/// utime+stime in clock ticks from a thread's `/proc/…/task/<tid>` directory.
fn stat_ticks(task: &std::path::Path) -> u64 {
    let (user, system) = stat_user_system(task);
    user + system
}

/// utime and stime in clock ticks from a thread's `/proc/…/task/<tid>` directory.
fn stat_user_system(task: &std::path::Path) -> (u64, u64) {
    let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (field(11), field(12))
}

/// stime in clock ticks of this process's threads whose name starts with `prefix`, summed: for
/// the shards, the kernel's UDP send (and, on loopback, the delivery to the receiving socket,
/// which runs in the sender's context).
fn threads_system_ticks(prefix: &str) -> u64 {
    own_threads(prefix)
        .iter()
        .map(|(_, path)| stat_user_system(path).1)
        .sum()
}

/// utime+stime in clock ticks of each of this process's threads whose name starts with
/// `prefix`, by name.
fn threads_ticks(prefix: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (comm, path) in own_threads(prefix) {
        out.push((comm, stat_ticks(&path)));
    }
    out.sort();
    out
}

/// Scheduler time (ns) of each thread whose name starts with `prefix`, by name: on a CPU, and
/// runnable but waiting for one (`/proc/self/task/*/schedstat`).
fn threads_sched(prefix: &str) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for (comm, path) in own_threads(prefix) {
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let f: Vec<u64> = stat
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let g = |i: usize| f.get(i).copied().unwrap_or(0);
        out.push((comm, g(0), g(1)));
    }
    out.sort();
    out
}

/// utime+stime in clock ticks of every thread of process `pid`, by "process/thread" name.
fn all_threads_ticks(pid: u32, label: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let ticks = stat_ticks(&t.path());
        let name = format!(
            "{label}/{}[{}]",
            comm.trim(),
            t.file_name().to_string_lossy()
        );
        out.push((name, ticks));
    }
    out
}

/// utime+stime in clock ticks of this whole process (every thread: WebSocket, HTTP, timers,
/// SFU shards, recorder), from `/proc/self/stat`.
fn process_ticks() -> u64 {
    stat_ticks(std::path::Path::new("/proc/self"))
}

/// utime+stime in clock ticks of this process's thread named `name`.
fn thread_ticks(name: &str) -> Option<u64> {
    threads_ticks(name)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
}

/// The kernel's UDP counters in this network namespace: InDatagrams, NoPorts, InErrors,
/// OutDatagrams, RcvbufErrors, SndbufErrors.
fn udp_counters() -> [u64; 6] {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut out = [0u64; 6];
    if let Some(values) = snmp.lines().filter(|l| l.starts_with("Udp: ")).nth(1) {
        for (o, v) in out.iter_mut().zip(values.split_whitespace().skip(1)) {
            *o = v.parse().unwrap_or(0);
        }
    }
    out
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

fn shard_stats(
    rt: &tokio::runtime::Runtime,
    server: &onmic_server::RunningServer,
) -> Vec<SfuStats> {
    let sfu = server.media().expect("the SFU runs");
    rt.block_on(sfu.shard_stats()).expect("SFU stats")
}

/// The machine's CPU time so far (all cores, clock ticks): user+nice, system, softirq+irq, idle
/// (+iowait), steal.
fn machine_cpu() -> [u64; 5] {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let g = |i: usize| f.get(i).copied().unwrap_or(0);
    [g(0) + g(1), g(2), g(5) + g(6), g(3) + g(4), g(7)]
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
    // ONMIC_SFU_SHARDS=1 measures a single driver thread; default: one per core.
    cfg.media_threads = std::env::var("ONMIC_SFU_SHARDS")
        .ok()
        .and_then(|v| v.parse().ok());
    let server = rt.block_on(server(cfg));
    let shards = server.media().expect("the SFU runs").shard_count();
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
        "SFU capacity ({} driver, {shards} shard thread(s), 1 room, {} speaker(s) x 50 pkt/s x {PAYLOAD} B)",
        onmic_server::sfu::stack(),
        speakers()
    );
    println!(
        "{:>9} {:>12} {:>10} {:>10} {:>14} {:>14} {:>13} {:>9} {:>7} {:>7}",
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
    let mut start: Option<(Instant, Vec<(String, u64)>)> = None;
    // Memory at the previous step's end and after this step's WebSocket joins.
    let (mut rss_prev, mut n_prev, mut rss_joined, mut ws_per_listener) = (rss0, 0.0, rss0, 0.0);
    let mut saturated = false;
    let mut udp0 = [0u64; 6];
    let mut cpu0 = [0u64; 5];
    let mut sched0: Vec<(String, u64, u64)> = Vec::new();
    let mut every0: Vec<(String, u64)> = Vec::new();
    let child_pid = child.id();
    let mut shards0: Vec<SfuStats> = Vec::new();
    let mut process0 = 0u64;
    let mut sfu_system0 = 0u64;
    // When the counters were last asked for (a shard's answer time shows a busy shard).
    let mut asked0 = Instant::now();
    let callgrind = Callgrind::from_env();
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
                // The server's window runs from one counter reply to the other, so the SFU's
                // counters and CPU cover the same span.
                // ONMIC_SFU_STALL=<shard>:<ms> stops that shard for a while at the window's
                // start, as a machine busy elsewhere would (how a shard recovers).
                if let Some((shard, ms)) = std::env::var("ONMIC_SFU_STALL").ok().and_then(|v| {
                    let (a, b) = v.split_once(':')?;
                    Some((a.parse::<usize>().ok()?, b.parse::<u64>().ok()?))
                }) {
                    let sfu = server.media().expect("the SFU runs");
                    sfu.stall_shard(shard, Duration::from_millis(ms))
                        .expect("stall");
                    println!("          stalling shard {shard} for {ms} ms");
                }
                asked0 = Instant::now();
                shards0 = shard_stats(&rt, &server);
                process0 = process_ticks();
                udp0 = udp_counters();
                cpu0 = machine_cpu();
                sched0 = threads_sched("onmic-sfu");
                every0 = all_threads_ticks(std::process::id(), "server");
                every0.extend(all_threads_ticks(child_pid, "clients"));
                start = Some((Instant::now(), threads_ticks("onmic-sfu")));
                sfu_system0 = threads_system_ticks("onmic-sfu");
                if let Some(c) = &callgrind {
                    c.start();
                    shards0 = shard_stats(&rt, &server);
                }
            }
            ["end", n, received, expected, harness, spoken, window] => {
                let instructions = callgrind.as_ref().and_then(|c| c.stop());
                let asked1 = Instant::now();
                let shards1 = shard_stats(&rt, &server);
                let sfu1 = sfu_stats(&rt, &server);
                let process1 = process_ticks();
                let sfu_system1 = threads_system_ticks("onmic-sfu");
                let udp1 = udp_counters();
                let cpu1 = machine_cpu();
                let sched1 = threads_sched("onmic-sfu");
                let mut every1 = all_threads_ticks(std::process::id(), "server");
                every1.extend(all_threads_ticks(child_pid, "clients"));
                // The client's own window, for what the client counted.
                let window: f64 = window.parse().expect("window");
                let spoken: f64 = spoken.parse().expect("spoken");
                let (t0, c0) = start.take().expect("start before end");
                let secs = t0.elapsed().as_secs_f64();
                // CPU of each shard thread, and their sum.
                let per_thread: Vec<f64> = threads_ticks("onmic-sfu")
                    .iter()
                    .map(|(name, t1)| {
                        let t0 = c0.iter().find(|(n, _)| n == name).map_or(0, |(_, t)| *t);
                        (t1 - t0) as f64 / tick / secs
                    })
                    .collect();
                let cpu: f64 = per_thread.iter().sum();
                let busiest = per_thread.iter().copied().fold(0.0, f64::max);
                let n: f64 = n.parse().expect("n");
                let received: f64 = received.parse().expect("received");
                let expected: f64 = expected.parse().expect("expected");
                let pps = received / window;
                let loss = 100.0 * (1.0 - received / expected).max(0.0);
                let harness: f64 = harness.parse().expect("harness ticks");
                let harness = harness / tick / window;
                // The SFU's rates: each shard's counters over its own span between its two
                // readings, summed (a shard that answered late must not inflate another's: once
                // this printed 20 million copies/s).
                let rate = |f: fn(&SfuStats) -> u64| -> f64 {
                    shards0
                        .iter()
                        .zip(&shards1)
                        .map(|(a, b)| {
                            let span = match (a.read_at, b.read_at) {
                                (Some(x), Some(y)) => y.saturating_duration_since(x).as_secs_f64(),
                                _ => secs,
                            };
                            f(b).saturating_sub(f(a)) as f64 / span.max(1e-3)
                        })
                        .sum()
                };
                let copies = rate(|s| s.forwarded_out);
                let rss = rss_kib();
                let rtc_per_listener =
                    (rss.saturating_sub(rss_joined)) as f64 / (n - n_prev).max(1.0);
                rss_prev = rss;
                n_prev = n;
                let threads = per_thread
                    .iter()
                    .map(|c| format!("{:.0}", c * 100.0))
                    .collect::<Vec<_>>()
                    .join("+");
                println!(
                    "{:>9} {:>12.0} {:>10.2} {:>9}% {:>14.0} {:>14.1} {:>13.1} {:>8.0}% {:>7.0} {:>7.0}",
                    n,
                    pps,
                    loss,
                    threads,
                    if cpu > 0.0 { copies / cpu } else { 0.0 },
                    rss as f64 / 1024.0,
                    (rss.saturating_sub(rss0)) as f64 / (n + speakers() as f64),
                    harness * 100.0,
                    ws_per_listener,
                    rtc_per_listener
                );
                println!(
                    "          speakers wrote {:.0} packets/s; SFU: {:.0} Opus RTP datagrams/s received, {:.0} packets/s forwarded from speakers, {:.0} datagrams/s received, {:.0} copies/s written, {:.0} datagrams/s sent, {:.0} timer fires/s, {:.0} dropped/s, {:.0} shed/s (late), {} of {} peers connected",
                    spoken / window,
                    rate(|s| s.opus_rtp_in),
                    rate(|s| s.forwarded_in),
                    rate(|s| s.datagrams_in),
                    rate(|s| s.forwarded_out),
                    rate(|s| s.datagrams_out),
                    rate(|s| s.timer_fires),
                    rate(|s| s.dropped),
                    rate(|s| s.shed),
                    sfu1.connected,
                    sfu1.peers,
                );
                // Whole-process CPU of the server (everything it does, not only the SFU
                // threads) per packet the listeners received: the figure compared with Janus.
                let process_cpu = (process1 - process0) as f64 / tick / secs;
                let delivered = pps * secs;
                println!(
                    "          server process CPU {:.0} % (SFU threads {:.0} %, the rest {:.0} %); per delivered packet: {:.2} us of server CPU, {:.2} us of SFU threads; delivered {:.2} % of what the speakers wrote",
                    process_cpu * 100.0,
                    cpu * 100.0,
                    (process_cpu - cpu).max(0.0) * 100.0,
                    process_cpu * secs * 1e6 / delivered.max(1.0),
                    cpu * secs * 1e6 / delivered.max(1.0),
                    100.0 * received / expected.max(1.0),
                );
                let sfu_system = (sfu_system1 - sfu_system0) as f64 / tick / secs;
                println!(
                    "          SFU threads in the kernel (system time: UDP send and loopback delivery) {:.0} % of their CPU, {:.2} us per delivered packet",
                    100.0 * sfu_system / cpu.max(1e-9),
                    sfu_system * secs * 1e6 / delivered.max(1.0),
                );
                if callgrind.is_some() {
                    let copies: u64 = shards0
                        .iter()
                        .zip(&shards1)
                        .map(|(a, b)| b.forwarded_out.saturating_sub(a.forwarded_out))
                        .sum();
                    match instructions {
                        Some(ir) => println!(
                            "          callgrind: {ir} instructions of the server process (user space) for {copies} copies written: {:.0} instructions per delivered packet (delivered {:.2} % of what the speakers wrote)",
                            ir as f64 / copies.max(1) as f64,
                            100.0 * received / expected.max(1.0),
                        ),
                        None => println!("          callgrind: no dump was read"),
                    }
                }
                println!(
                    "          kernel UDP in the namespace: {} receive-buffer drops, {} receive errors, {} send-buffer errors",
                    udp1[4].saturating_sub(udp0[4]),
                    udp1[2].saturating_sub(udp0[2]),
                    udp1[5].saturating_sub(udp0[5]),
                );
                let d: Vec<f64> = (0..5).map(|i| (cpu1[i] - cpu0[i]) as f64).collect();
                let all: f64 = d.iter().sum::<f64>().max(1.0);
                println!(
                    "          whole machine (2 cores = 200 %): user {:.0} %, system {:.0} %, softirq {:.0} %, idle {:.0} %, steal {:.0} %",
                    200.0 * d[0] / all,
                    200.0 * d[1] / all,
                    200.0 * d[2] / all,
                    200.0 * d[3] / all,
                    200.0 * d[4] / all
                );
                let sched = sched1
                    .iter()
                    .map(|(name, run, wait)| {
                        let (r0, w0) = sched0
                            .iter()
                            .find(|(n, _, _)| n == name)
                            .map_or((0, 0), |(_, r, w)| (*r, *w));
                        format!(
                            "{name} on a CPU {:.0} %, runnable but waiting {:.0} %",
                            (run - r0) as f64 / 1e7 / secs,
                            (wait - w0) as f64 / 1e7 / secs
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                println!("          scheduler: {sched}");
                // Where the bench's own CPU went (both processes), busiest threads first.
                let mut busy: Vec<(String, f64)> = every1
                    .iter()
                    .map(|(name, t1)| {
                        let t0 = every0
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or(0, |(_, t)| *t);
                        (name.clone(), (t1 - t0) as f64 / tick / secs)
                    })
                    .collect();
                busy.sort_by(|a, b| b.1.total_cmp(&a.1));
                let total: f64 = busy.iter().map(|(_, c)| c).sum();
                println!(
                    "          bench processes {:.0} % in all; busiest threads: {}",
                    total * 100.0,
                    busy.iter()
                        .take(6)
                        .map(|(n, c)| format!("{n} {:.0} %", c * 100.0))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                for (i, (a, b)) in shards0.iter().zip(&shards1).enumerate() {
                    // Each shard's rates over its own span between its two readings: a shard
                    // that answered late must not inflate another's (it once showed a shard at
                    // 20 million copies/s).
                    let span = match (a.read_at, b.read_at) {
                        (Some(x), Some(y)) => y.saturating_duration_since(x).as_secs_f64(),
                        _ => secs,
                    }
                    .max(1e-3);
                    let late = |asked: Instant, s: &SfuStats| {
                        s.read_at
                            .map_or(0.0, |t| t.saturating_duration_since(asked).as_secs_f64())
                    };
                    println!(
                        "          shard {i}: {} peers, {:.0} speaker packets/s judged, {:.0} relayed in/s, {:.0} copies/s, {:.0} shed/s over {:.2} s (answered {:.0} ms / {:.0} ms after asked)",
                        b.connected,
                        (b.forwarded_in - a.forwarded_in) as f64 / span,
                        (b.relayed_in - a.relayed_in) as f64 / span,
                        (b.forwarded_out - a.forwarded_out) as f64 / span,
                        (b.shed - a.shed) as f64 / span,
                        span,
                        late(asked0, a) * 1e3,
                        late(asked1, b) * 1e3,
                    );
                }
                println!(
                    "          load average {}",
                    std::fs::read_to_string("/proc/loadavg")
                        .unwrap_or_default()
                        .split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                let arrived = rate(|s| s.forwarded_in) * window;
                if arrived < 0.99 * spoken {
                    println!(
                        "          {:.1} % of the speakers' packets were lost between their sockets and the SFU's forwarding (kernel UDP drops or the SFU's receive queue)",
                        100.0 * (1.0 - arrived / spoken.max(1.0))
                    );
                }
                if busiest >= 0.95 {
                    println!("ramp stopped: an SFU thread saturated its core at {n} listeners");
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
    // One socket for every listener: each listener is its own loopback address (127.1.x.y) on
    // this socket's port; IP_PKTINFO tells which one a datagram was for and sets the source of
    // what a listener sends.
    let socket = UdpSocket::bind("0.0.0.0:0").expect("bind the listeners' socket");
    let port = socket.local_addr().expect("addr").port();
    let (to_listeners, orders) = std::sync::mpsc::channel::<ToListeners>();
    let (counter, up) = (received.clone(), connected.clone());
    std::thread::Builder::new()
        .name("listeners".into())
        .spawn(move || listeners(socket, orders, counter, up))
        .expect("listener thread");
    rt.block_on(async move {
        let mut owner: Option<Client> = None;
        for s in 0..speakers() {
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
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let addr = socket.local_addr().expect("addr");
            let (rtc, send_mid) = offer(base, &tok, addr).await;
            // A blocking thread per speaker (as the netns tests' peers): nothing else in this
            // process delays its sends.
            std::thread::Builder::new()
                .name(format!("speaker-{s}"))
                .spawn(move || speak(s as u8, socket, rtc, send_mid))
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
                drain(join_listener(base, &format!("l{n}")).await);
                n += 1;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!("joined {n}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            for i in first..n {
                let tok = token(base, "cap", &format!("l{i}")).await;
                let addr = listener_addr(i, port);
                let (rtc, _) = offer(base, &tok, SocketAddr::V4(addr)).await;
                let sample = i % SAMPLE_EVERY == 0;
                to_listeners
                    .send(ToListeners::Adopt {
                        rtc: Box::new(rtc),
                        addr,
                        sample,
                    })
                    .expect("listener thread");
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
            // Joins fan out over the WebSocket (the speakers, with the full view, hear of every
            // join; listeners get counts): after a big step that traffic may still drain and
            // would load the window. Wait (30 s at most)
            // until this process's WebSocket side is quiet: at most 5 clock ticks (USER_HZ 100:
            // 5 % of a core) in a second.
            let settle = Instant::now() + Duration::from_secs(30);
            loop {
                let ws = |v: Vec<(String, u64)>| v.iter().map(|(_, t)| t).sum::<u64>();
                let a = ws(threads_ticks("tokio-rt-worker"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                let busy = ws(threads_ticks("tokio-rt-worker")) - a;
                if busy <= 5 || Instant::now() >= settle {
                    break;
                }
            }
            println!("start {n}");
            let samples0 = samples(&to_listeners);
            let r0 = received.load(Ordering::Relaxed);
            let h0 = thread_ticks("listeners").unwrap_or(0);
            let s0 = SPOKEN.load(Ordering::Relaxed);
            let t0 = SENT.load(Ordering::Relaxed);
            let e0 = SEND_ERRORS.load(Ordering::Relaxed);
            let w0 = Instant::now();
            tokio::time::sleep(window()).await;
            let r = received.load(Ordering::Relaxed) - r0;
            let window = w0.elapsed().as_secs_f64();
            let harness = thread_ticks("listeners").unwrap_or(0) - h0;
            let spoken = SPOKEN.load(Ordering::Relaxed) - s0;
            // Every listener should get every frame the speakers wrote in the window.
            let expected = (n as u64 * spoken) as f64;
            let check = check_samples(&samples0, &samples(&to_listeners), spoken);
            println!(
                "speakers: {} RTP datagrams sent, {} send errors in the window",
                SENT.load(Ordering::Relaxed) - t0,
                SEND_ERRORS.load(Ordering::Relaxed) - e0
            );
            println!("{}", check.summary);
            println!("end {n} {r} {expected} {harness} {spoken} {window}");
            if !check.passed {
                println!("stop the decrypting sample failed at {n} listeners");
                break;
            }
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

/// A listener's WebSocket member as the listener page joins: the membership as counts and pages
/// (`membership: counts`, issue 15), volume indications on (the page shows them).
async fn join_listener(base: &str, uid: &str) -> Client {
    let tok = token(base, "cap", uid).await;
    let mut c = Client::connect(base).await;
    c.uid = uid.to_owned();
    let reply = c
        .request(json!({ "type": "join", "room": "cap", "token": tok, "membership": "counts" }))
        .await;
    assert_eq!(reply["type"], "joined", "{reply}");
    c
}

/// Reads (and discards) a member's WebSocket so the server never buffers for it.
fn drain(mut client: Client) {
    tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = client.ws.next().await {}
    });
}

/// A str0m peer at `addr` with one send m-line and the slots, its offer answered by the SFU.
async fn offer(base: &str, token: &str, addr: SocketAddr) -> (Rtc, str0m::media::Mid) {
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
    (rtc, send_mid)
}

/// Bytes 0..17 of every frame a speaker writes: its index, its frame number and the time it was
/// written (µs since [`EPOCH`]), both big endian, so a decrypting listener can tell who it hears,
/// in which order, what went missing and how late it is.
const TAG: usize = 17;

/// The clock the speakers and the decrypting listeners share (same process).
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn micros_since_epoch() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// A speaker: a full str0m peer sending a 320-byte tagged frame every 20 ms, on its own thread.
fn speak(index: u8, socket: UdpSocket, mut rtc: Rtc, send_mid: str0m::media::Mid) {
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
                let mut frame = vec![0x5a; PAYLOAD];
                frame[0] = index;
                frame[1..9].copy_from_slice(&seq.to_be_bytes());
                frame[9..TAG].copy_from_slice(&micros_since_epoch().to_be_bytes());
                if w.audio_level(-20, true).write(pt, now, ts, frame).is_ok() {
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

/// One listener in this many decrypts everything through str0m and checks what it hears.
const SAMPLE_EVERY: usize = 50;
/// Datagrams read per `recvmmsg`.
const BATCH: usize = 256;

/// Listener `i`'s address: 127.1.x.y on the listeners' socket's port (all of 127/8 is local).
fn listener_addr(i: usize, port: u16) -> SocketAddrV4 {
    let (x, y) = (i / 250, i % 250 + 1);
    SocketAddrV4::new(Ipv4Addr::new(127, 1, x as u8, y as u8), port)
}

/// The listener an address belongs to.
fn listener_index(ip: Ipv4Addr) -> Option<usize> {
    match ip.octets() {
        [127, 1, x, y @ 1..=250] => Some(usize::from(x) * 250 + usize::from(y) - 1),
        _ => None,
    }
}

/// What the listener thread is told.
enum ToListeners {
    /// A new listener whose offer the SFU answered.
    Adopt {
        rtc: Box<Rtc>,
        addr: SocketAddrV4,
        sample: bool,
    },
    /// Send back the counters of every decrypting listener.
    Samples(std::sync::mpsc::Sender<Vec<SampleCount>>),
}

/// What one decrypting listener heard so far.
#[derive(Debug, Clone, Copy, Default)]
struct SampleCount {
    /// Frames per speaker.
    frames: [u64; SPEAKERS],
    /// Frames whose number was not above the previous one of the same speaker.
    out_of_order: u64,
    /// Frames whose tag names no speaker.
    foreign: u64,
    /// Frames skipped (gaps in a speaker's frame numbers): lost, not late.
    gaps: u64,
    /// Sum of the frames' delays from the speaker's write to this listener's str0m, µs.
    delay_sum_us: u64,
    /// Largest delay since the last report, µs.
    delay_max_us: u64,
}

fn samples(to_listeners: &std::sync::mpsc::Sender<ToListeners>) -> Vec<SampleCount> {
    let (tx, rx) = std::sync::mpsc::channel();
    to_listeners
        .send(ToListeners::Samples(tx))
        .expect("listener thread");
    rx.recv().expect("sample counters")
}

struct SampleCheck {
    passed: bool,
    summary: String,
}

/// The decrypting sample's mean delay above which a step fails: the SFU is not keeping up, and
/// audio this late misses any jitter buffer. (Counting packets per window alone would let a
/// growing backlog pass: frames sent before the window still arrive in it.)
const MAX_MEAN_DELAY_MS: f64 = 200.0;

/// Each decrypting listener must have heard every speaker in the window, in order, and nothing
/// else, with a mean delay of at most [`MAX_MEAN_DELAY_MS`]; together at least 99 % of the
/// frames written in the window.
fn check_samples(before: &[SampleCount], after: &[SampleCount], spoken: u64) -> SampleCheck {
    let (mut frames, mut out_of_order, mut foreign, mut deaf) = (0u64, 0u64, 0u64, 0usize);
    let (mut gaps, mut delay_sum, mut delay_max) = (0u64, 0u64, 0u64);
    for (i, a) in after.iter().enumerate() {
        let b = before.get(i).copied().unwrap_or_default();
        let got: Vec<u64> = (0..speakers()).map(|s| a.frames[s] - b.frames[s]).collect();
        frames += got.iter().sum::<u64>();
        out_of_order += a.out_of_order - b.out_of_order;
        foreign += a.foreign - b.foreign;
        gaps += a.gaps - b.gaps;
        delay_sum += a.delay_sum_us - b.delay_sum_us;
        delay_max = delay_max.max(a.delay_max_us);
        if got.contains(&0) {
            deaf += 1;
        }
    }
    let expected = (after.len() as u64 * spoken) as f64;
    let mean_delay_ms = delay_sum as f64 / frames.max(1) as f64 / 1000.0;
    let gaps_pct = 100.0 * gaps as f64 / (frames + gaps).max(1) as f64;
    // Lost frames (gaps in the sequence) count even when the window's packet count does not show
    // them: a shard catching up on a backlog delivers more than the window's share. And the
    // frames delivered must be 99 % of those written: the SFU writes its own RTP sequence
    // numbers, so a packet it never forwarded leaves no gap there.
    let passed = !after.is_empty()
        && frames as f64 >= 0.99 * expected
        && out_of_order == 0
        && foreign == 0
        && deaf == 0
        && gaps_pct <= 1.0
        && mean_delay_ms <= MAX_MEAN_DELAY_MS;
    SampleCheck {
        passed,
        summary: format!(
            "sample: {} decrypting listeners got {frames} frames ({:.2} % fewer than written in the window, {:.2} % lost in gaps), delay speaker-to-listener mean {:.1} ms max {:.1} ms, {out_of_order} out of order, {foreign} foreign, {deaf} missing a speaker: {}",
            after.len(),
            100.0 * (1.0 - frames as f64 / expected.max(1.0)).max(0.0),
            gaps_pct,
            mean_delay_ms,
            delay_max as f64 / 1000.0,
            if passed { "ok" } else { "FAILED" }
        ),
    }
}

/// A counting listener hands a stream's first packet and then one in this many to its str0m
/// (one a second at 50 packets/s): str0m then knows the stream and sends receiver reports for it
/// every 5 s, as Chromium does for what it receives. Without them the SFU never learns that a
/// listener bound the stream's SSRC and writes the BUNDLE `mid` header extension on every copy,
/// which no real listener makes it do. The reports say most packets were lost (str0m saw one in
/// 50); the SFU does nothing with loss (no congestion control for audio), so that costs it only
/// the parsing, as real reports do.
const REPORT_EVERY: u32 = 50;

/// What a counting listener received per stream, to pick the packets its str0m sees.
#[derive(Default)]
struct Reported {
    streams: [(u32, u32); SLOTS],
}

impl Reported {
    /// Counts a packet of stream `ssrc`; whether it goes to the listener's str0m.
    fn heard(&mut self, ssrc: u32) -> bool {
        let slot = match self.streams.iter().position(|(s, n)| *s == ssrc && *n > 0) {
            Some(i) => i,
            None => match self.streams.iter().position(|(_, n)| *n == 0) {
                Some(i) => {
                    self.streams[i].0 = ssrc;
                    i
                }
                None => return false,
            },
        };
        let n = &mut self.streams[slot].1;
        let feed = n.is_multiple_of(REPORT_EVERY);
        *n += 1;
        feed
    }
}

/// A listener after adoption by the listener thread.
struct Listener {
    addr: SocketAddrV4,
    rtc: Rtc,
    /// Decrypting listeners: what they heard, and each speaker's last frame number.
    sample: Option<(SampleCount, [Option<u64>; SPEAKERS])>,
}

/// What the listener thread reads of a listener per datagram and per sweep, kept apart from its
/// `Listener` (which holds a whole str0m `Rtc`, ~10 KiB): counting a packet or checking whether
/// a listener is due then touches one small record in a dense array instead of a cache line of
/// each listener's `Rtc` (the sweep every 5 ms read every listener's; the harness shares the
/// machine's two cores with the server it measures).
struct Hot {
    /// When its str0m wants to be woken.
    timeout: Instant,
    /// Whether it decrypts everything (one in [`SAMPLE_EVERY`]).
    sample: bool,
    /// Which of its RTP it hands to its str0m (counting listeners).
    reported: Reported,
}

/// Once connected, a listener's str0m instance is woken at most this often (ICE consent and
/// RTCP need no more).
const LISTENER_TICK: Duration = Duration::from_millis(250);

/// All listeners on one thread and one socket: `recvmmsg` in batches, IP_PKTINFO to tell the
/// listener. Forwarded Opus RTP (payload type 111) is counted without decrypting it, except by
/// one listener in [`SAMPLE_EVERY`], which decrypts everything and checks the frames; everything
/// else (STUN, DTLS, RTCP) goes to the listener's str0m instance, which also keeps ICE consent
/// alive. This keeps the harness far lighter than the SFU it measures.
fn listeners(
    socket: UdpSocket,
    orders: std::sync::mpsc::Receiver<ToListeners>,
    received: Arc<AtomicU64>,
    connected: Arc<AtomicU64>,
) {
    setsockopt(&socket, sockopt::Ipv4PacketInfo, &true).expect("IP_PKTINFO");
    // A deep queue (past net.core.rmem_max; root may force it): when this thread is
    // descheduled by the other work on the machine, the datagrams wait instead of being dropped,
    // so what the bench counts as lost was lost by the SFU, not by the harness.
    if setsockopt(&socket, sockopt::RcvBufForce, &(64 << 20)).is_err() {
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(64 << 20);
    }
    let fd = socket.as_raw_fd();
    let mut peers: Vec<Listener> = Vec::new();
    let mut hot: Vec<Hot> = Vec::new();
    let mut next_census = Instant::now();
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut headers =
        MultiHeaders::<SockaddrIn>::preallocate(BATCH, Some(nix::cmsg_space!(libc::in_pktinfo)));
    let mut meta: Vec<(usize, SocketAddrV4, Ipv4Addr)> = Vec::with_capacity(BATCH);
    let mut next_sweep = Instant::now();
    let mut idle = false;
    loop {
        if std::mem::take(&mut idle) {
            std::thread::sleep(Duration::from_millis(1));
        }
        loop {
            match orders.try_recv() {
                Ok(ToListeners::Adopt { rtc, addr, sample }) => {
                    let mut l = Listener {
                        addr,
                        rtc: *rtc,
                        sample: sample.then(Default::default),
                    };
                    let mut h = Hot {
                        timeout: Instant::now(),
                        sample,
                        reported: Reported::default(),
                    };
                    service(&mut l, &mut h.timeout, Instant::now(), fd);
                    peers.push(l);
                    hot.push(h);
                }
                Ok(ToListeners::Samples(reply)) => {
                    let _ =
                        reply.send(peers.iter().filter_map(|l| l.sample).map(|s| s.0).collect());
                    // The largest delay is reported per window.
                    for (count, _) in peers.iter_mut().filter_map(|l| l.sample.as_mut()) {
                        count.delay_max_us = 0;
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        }
        meta.clear();
        {
            let mut iovs: Vec<[IoSliceMut; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            // Never blocks in the kernel: a receiver waiting on the socket would be woken by the
            // SFU's send of every burst's first datagrams, and that wake-up is charged to the
            // SFU's thread. Sleeping 1 ms when the queue ran dry instead reads the next burst in
            // full batches (the measured delay grows by at most that millisecond).
            let got = recvmmsg(
                fd,
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            );
            let mut read = 0;
            if let Ok(msgs) = got {
                for m in msgs {
                    read += 1;
                    let dst = m.cmsgs().ok().and_then(|mut c| {
                        c.find_map(|c| match c {
                            ControlMessageOwned::Ipv4PacketInfo(i) => {
                                Some(Ipv4Addr::from(u32::from_be(i.ipi_addr.s_addr)))
                            }
                            _ => None,
                        })
                    });
                    if let (Some(src), Some(dst)) = (m.address, dst) {
                        meta.push((m.bytes, SocketAddrV4::from(src), dst));
                    }
                }
            }
            idle = read < BATCH;
        }
        let mut counted = 0u64;
        let now = Instant::now();
        for (k, &(len, source, dst)) in meta.iter().enumerate() {
            let Some(i) = listener_index(dst).filter(|&i| i < peers.len()) else {
                continue;
            };
            let h = &mut hot[i];
            let data = &bufs[k][..len];
            let rtp = len > 12 && (128..192).contains(&data[0]) && data[1] & 0x7f == 111;
            if rtp && !h.sample {
                counted += 1;
                // A stream's first packet and one in [`REPORT_EVERY`] go to the listener's
                // str0m, so that it sends receiver reports for the stream as a browser does.
                let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
                if !h.reported.heard(ssrc) {
                    continue;
                }
            }
            let l = &mut peers[i];
            if let Ok(contents) = data.try_into() {
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: SocketAddr::V4(source),
                        destination: SocketAddr::V4(l.addr),
                        contents,
                    },
                );
                if l.rtc.handle_input(input).is_ok() {
                    counted += service(l, &mut h.timeout, now, fd);
                }
            }
        }
        received.fetch_add(counted, Ordering::Relaxed);
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + Duration::from_millis(5);
            let mut heard = 0;
            for (l, h) in peers.iter_mut().zip(&mut hot) {
                if h.timeout <= now && l.rtc.is_alive() {
                    let _ = l.rtc.handle_input(Input::Timeout(now));
                    heard += service(l, &mut h.timeout, now, fd);
                }
            }
            received.fetch_add(heard, Ordering::Relaxed);
            // Who is connected only matters while a step waits for its peers to connect.
            if now >= next_census {
                next_census = now + Duration::from_millis(100);
                let up = peers.iter().filter(|l| l.rtc.is_connected()).count();
                connected.store(up as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Sends what the listener's str0m wants to send (from the listener's own address), notes its
/// next timeout, and checks the frames a decrypting listener got. Returns the frames heard.
fn service(l: &mut Listener, timeout: &mut Instant, now: Instant, fd: RawFd) -> u64 {
    let mut heard = 0;
    loop {
        match l.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                *timeout = if l.rtc.is_connected() {
                    t.max(now + LISTENER_TICK)
                } else {
                    t
                };
                return heard;
            }
            Ok(Output::Transmit(t)) => {
                let SocketAddr::V4(to) = t.destination else {
                    continue;
                };
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(*l.addr.ip()).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let _ = sendmsg(
                    fd,
                    &[IoSlice::new(&t.contents)],
                    &[ControlMessage::Ipv4PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&SockaddrIn::from(to)),
                );
            }
            Ok(Output::Event(Event::MediaData(d))) => {
                if let Some((count, last)) = l.sample.as_mut() {
                    heard += 1;
                    let speaker = usize::from(d.data.first().copied().unwrap_or(u8::MAX));
                    match (d.data.get(1..TAG), last.get_mut(speaker)) {
                        (Some(tag), Some(last)) if d.data.len() == PAYLOAD => {
                            let mut word = [0u8; 8];
                            word.copy_from_slice(&tag[..8]);
                            let seq = u64::from_be_bytes(word);
                            word.copy_from_slice(&tag[8..]);
                            let delay =
                                micros_since_epoch().saturating_sub(u64::from_be_bytes(word));
                            count.delay_sum_us += delay;
                            count.delay_max_us = count.delay_max_us.max(delay);
                            match *last {
                                Some(p) if seq <= p => count.out_of_order += 1,
                                Some(p) => count.gaps += seq - p - 1,
                                None => {}
                            }
                            *last = Some(seq);
                            count.frames[speaker] += 1;
                        }
                        _ => count.foreign += 1,
                    }
                }
            }
            Ok(Output::Event(_)) => {}
            Err(_) => {
                *timeout = now + Duration::from_secs(3600);
                return heard;
            }
        }
    }
}
