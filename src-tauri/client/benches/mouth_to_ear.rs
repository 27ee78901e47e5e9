//! Mouth-to-ear latency (issue 5, acceptance 7): from a capture block handed to the publisher's
//! audio engine to the decoded block the listener's engine hands to its output device, through
//! the real path — engine chain + Opus encode → `onmic-client` → the real `onmic-server` (SFU) →
//! `onmic-client` → the engine's jitter buffer, decoder and playout mix. Device buffers are
//! excluded: blocks are pushed into the capture ring at the block rate and taken from the output
//! ring as soon as they appear. Runs inside a loopback-only network namespace it creates (root).
//!
//! The capture signal is silence with a 10 ms tone burst every 100 ms; burst *k* has frequency
//! 1000 + 500·(k mod 8) Hz so each onset found in the output is matched to its own burst. The
//! latency of a burst is (time its onset leaves the output ring, counting its sample offset in the
//! block) − (time its block entered the capture ring).
//!
//! `ONMIC_BENCH_SECONDS` (default 32, the first 2 s are warm-up), `ONMIC_BENCH_JITTER` (the
//! minimum jitter depth in 20 ms packets, `ClientConfig::jitter_depth`, default the client's; the
//! engine's adaptive target follows the measured jitter above it).
#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use onmic_audio::engine::{self, Control, EngineConfig};
use onmic_audio::test_signals::goertzel_power;
use onmic_client::{ClientConfig, RemoteChange, RoomClient};
use support::*;

const RATE: f64 = 48_000.0;
const BLOCK: usize = onmic_audio::BLOCK_FRAMES;
const BURST_EVERY: u64 = 10;

fn burst_freq(k: u64) -> f32 {
    1000.0 + 500.0 * (k % 8) as f32
}

fn main() {
    // In a namespace of its own, with the server binary found (or built) out here.
    if !onmic_netns::bench_inside_netns(&[("ONMIC_SERVER_BIN", server_bin())]) {
        return;
    }
    let seconds: u64 = std::env::var("ONMIC_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let jitter: Option<usize> = std::env::var("ONMIC_BENCH_JITTER")
        .ok()
        .and_then(|s| s.parse().ok());
    runtime().block_on(run(seconds, jitter));
}

async fn run(seconds: u64, jitter: Option<usize>) {
    let server = Server::start("127.0.0.1", None, &[]);
    server.create_room("m2e", "host").await;
    let mut host_cfg = ClientConfig::new(&server.url, "m2e", server.token("m2e", "host").await);
    let mut ear_cfg = ClientConfig::new(&server.url, "m2e", server.token("m2e", "ear").await);
    if let Some(j) = jitter {
        host_cfg.jitter_depth = j;
        ear_cfg.jitter_depth = j;
    }
    let depth = ear_cfg.jitter_depth;
    let mut host = RoomClient::connect(host_cfg).await.expect("host joins");
    host.take_seat(0).await.expect("seat 0");
    let mut ear = RoomClient::connect(ear_cfg).await.expect("listener joins");
    connected(&mut host).await;
    connected(&mut ear).await;

    // Two engines: the publisher's (capture → chain → Opus) and the listener's (playout).
    let config = EngineConfig::default();
    let (mut speaker, speaker_io) = engine::start(config).expect("publisher engine");
    let (mut listener, listener_io) = engine::start(config).expect("listener engine");
    let packets = std::mem::replace(&mut speaker.packets, rtrb::RingBuffer::new(1).1);
    let _publishing = host.publisher().spawn_from_engine(packets);

    let stop = Arc::new(AtomicBool::new(false));
    // Output: take blocks from the listener's output ring as soon as they appear.
    let output = {
        let stop = stop.clone();
        let mut out = listener_io.output;
        std::thread::spawn(move || {
            let mut samples: Vec<f32> = Vec::new(); // left channel
            let mut times: Vec<Instant> = Vec::new(); // per block
            let mut inter = [0.0f32; BLOCK * 2];
            while !stop.load(Ordering::Relaxed) {
                match out.read_chunk(BLOCK * 2) {
                    Ok(chunk) => {
                        let t = Instant::now();
                        let (a, b) = chunk.as_slices();
                        inter[..a.len()].copy_from_slice(a);
                        inter[a.len()..a.len() + b.len()].copy_from_slice(b);
                        chunk.commit_all();
                        times.push(t);
                        samples.extend(inter.iter().step_by(2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_micros(250)),
                }
            }
            (samples, times)
        })
    };
    // Capture: one block every 10 ms, a burst every 100 ms. The listener's engine is clocked the
    // same way (a duplex device delivers a capture block per output block): silence into its
    // capture ring at the same instants.
    let capture = {
        let stop = stop.clone();
        let mut cap = speaker_io.capture;
        let mut ear_cap = listener_io.capture;
        let silence = [0.0f32; BLOCK * 2];
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut pushed: Vec<Instant> = Vec::new(); // per burst
            let mut inter = [0.0f32; BLOCK * 2];
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let due = start + Duration::from_millis(10 * n);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let burst = n.is_multiple_of(BURST_EVERY);
                let k = n / BURST_EVERY;
                for i in 0..BLOCK {
                    let s = if burst {
                        let t = i as f64 / RATE;
                        (0.5 * (2.0 * std::f64::consts::PI * f64::from(burst_freq(k)) * t).sin())
                            as f32
                    } else {
                        0.0
                    };
                    inter[2 * i] = s;
                    inter[2 * i + 1] = s;
                }
                if let Ok(mut chunk) = cap.write_chunk(BLOCK * 2) {
                    let (a, b) = chunk.as_mut_slices();
                    let na = a.len();
                    a.copy_from_slice(&inter[..na]);
                    b.copy_from_slice(&inter[na..na + b.len()]);
                    chunk.commit_all();
                }
                if burst {
                    pushed.push(Instant::now());
                }
                if let Ok(mut chunk) = ear_cap.write_chunk(BLOCK * 2) {
                    let (a, b) = chunk.as_mut_slices();
                    let na = a.len();
                    a.copy_from_slice(&silence[..na]);
                    b.copy_from_slice(&silence[na..na + b.len()]);
                    chunk.commit_all();
                }
                n += 1;
            }
            pushed
        })
    };
    // The listener's remote streams go into its engine's playout.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut added = 0;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), ear.remotes.recv()).await {
            Ok(Some(RemoteChange::Added { stream, .. })) => {
                added += 1;
                listener
                    .send(Control::AddRemote(stream))
                    .expect("add remote");
            }
            Ok(Some(RemoteChange::Removed { key, .. })) => {
                let _ = listener.send(Control::RemoveRemote(key));
            }
            _ => {}
        }
        listener.collect_garbage();
        speaker.collect_garbage();
        while ear.events.try_recv().is_ok() {}
        while host.events.try_recv().is_ok() {}
    }
    stop.store(true, Ordering::Relaxed);
    let pushed = capture.join().expect("capture thread");
    let (samples, times) = output.join().expect("output thread");
    speaker.stop();
    listener.stop();
    assert!(added >= 1, "the listener never received the publisher");

    // Onsets: first sample over 0.05 after at least 40 ms below it.
    let mut latencies: Vec<f64> = Vec::new();
    let mut quiet = 0usize;
    let mut i = 0usize;
    let warmup = pushed
        .first()
        .map(|t| *t + Duration::from_secs(2))
        .expect("bursts were pushed");
    let mut unmatched = 0usize;
    let mut timeline: Vec<(u64, f64)> = Vec::new();
    while i < samples.len() {
        if samples[i].abs() <= 0.05 {
            quiet += 1;
            i += 1;
            continue;
        }
        if quiet >= 1920 && i + 240 <= samples.len() {
            let at = times[i / BLOCK] + Duration::from_secs_f64((i % BLOCK) as f64 / RATE);
            let window = &samples[i..i + 240];
            let id = (0..8u64)
                .max_by(|a, b| {
                    goertzel_power(window, burst_freq(*a))
                        .total_cmp(&goertzel_power(window, burst_freq(*b)))
                })
                .unwrap_or(0);
            // The latest burst with that id pushed before the onset.
            let matched = pushed
                .iter()
                .enumerate()
                .rev()
                .find(|(k, t)| (*k as u64) % 8 == id && **t <= at)
                .map(|(_, t)| *t);
            match matched {
                Some(t) if t >= warmup => {
                    latencies.push((at - t).as_secs_f64() * 1000.0);
                    timeline.push(((t - warmup).as_secs(), (at - t).as_secs_f64() * 1000.0));
                }
                Some(_) => {}
                None => unmatched += 1,
            }
        }
        quiet = 0;
        i += 1;
    }
    let bursts = pushed.iter().filter(|t| **t >= warmup).count();
    assert!(
        latencies.len() * 10 >= bursts * 9,
        "only {} of {bursts} bursts were found in the output",
        latencies.len()
    );
    // Median per 5 s, to see whether the latency drifts during the run.
    let windows: Vec<String> = (0..seconds.saturating_sub(2).div_ceil(5))
        .filter_map(|w| {
            let mut v: Vec<f64> = timeline
                .iter()
                .filter(|(s, _)| s / 5 == w)
                .map(|(_, l)| *l)
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).map(|m| format!("{:.0}", m))
        })
        .collect();
    println!(
        "mouth_to_ear p50 per 5 s window (ms): {}",
        windows.join(" ")
    );
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "mouth_to_ear: {} bursts over {} s (after 2 s warm-up), {} found, {unmatched} unmatched; minimum jitter depth {depth} x 20 ms (adaptive above)",
        bursts,
        seconds - 2,
        latencies.len()
    );
    println!(
        "mouth_to_ear latency: min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (budget p50 <= 40 ms)",
        latencies[0],
        pct(0.5),
        pct(0.9),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
    let s = ear.stats();
    println!(
        "listener: {} packets received; publisher: {} sent, {} dropped",
        s.packets_received.load(Ordering::Relaxed),
        host.stats().packets_sent.load(Ordering::Relaxed),
        host.stats().packets_dropped.load(Ordering::Relaxed)
    );
    host.close().await;
    ear.close().await;
}
