//! What the DSP thread's real-time priority ([`EngineConfig::realtime`]) buys on a loaded
//! machine. A thread plays a capture device with a 10 ms period in real time, itself at
//! real-time priority as device threads are (CoreAudio's, ALSA's with cpal's `realtime`, the
//! sound server's): each period it hands the engine a period of capture, then watches the
//! output ring (every 100 µs) for the block the engine makes of it. The *turnaround* (capture
//! in → block out) is the engine's whole share of the round trip; an output callback due half a
//! period after capture, as in `tests/ear_monitor_latency.rs`, underruns when it exceeds 5 ms.
//! Busy threads at normal priority (a game, an encoder) load every core; for 0, two and eight
//! per core, the DSP thread at normal and at real-time priority, it prints the turnaround's
//! p50 / p99 / p99.9 / max and how many periods were over 5 ms, over `ONMIC_BENCH_SECS`
//! (default 20) seconds each.
//!
//! `cargo bench -p onmic-audio --bench realtime` (as root or with an `rtprio` limit; otherwise
//! the promotions are refused, which the table says, and both rows measure normal priority).

use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;

use onmic_audio::chain::{ChainConfig, Mode};
use onmic_audio::engine::{EngineConfig, Realtime, start};

const PERIOD: usize = 480;
/// An output callback half a period after capture underruns past this.
const DEADLINE_US: u64 = 5_000;

struct Outcome {
    dsp: Realtime,
    device: String,
    /// Turnaround of each period, µs, sorted.
    turnaround_us: Vec<u64>,
}

fn run(secs: u64, dsp_rt: bool) -> Outcome {
    let config = EngineConfig {
        chain: ChainConfig::for_mode(Mode::Voice),
        capture_channels: 1,
        realtime: dsp_rt,
        ..EngineConfig::default()
    };
    let (mut handle, mut io) = start(config).expect("engine");
    let device = std::thread::spawn(move || {
        let device =
            match audio_thread_priority::promote_current_thread_to_real_time(PERIOD as u32, 48_000)
            {
                Ok(_) => "real-time".to_string(),
                Err(e) => format!("normal (refused: {e})"),
            };
        let mut tone = 0u64;
        let periods = (secs * 100) as usize;
        let mut turnaround_us = Vec::with_capacity(periods);
        let t0 = Instant::now();
        for k in 0..periods {
            let due = t0 + Duration::from_millis(10 * k as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // Whatever is left from before (none, unless a block came after its deadline).
            if let Ok(chunk) = io.output.read_chunk(io.output.slots()) {
                chunk.commit_all();
            }
            let fed = Instant::now();
            if let Ok(chunk) = io.capture.write_chunk_uninit(PERIOD) {
                chunk.fill_from_iter((0..PERIOD).map(|_| {
                    tone += 1;
                    (tone as f32 * 0.057).sin() * 0.1
                }));
            }
            // Until the block is out, or the next period is due.
            let next = due + Duration::from_millis(10);
            while io.output.slots() < PERIOD * 2 && Instant::now() < next {
                std::thread::sleep(Duration::from_micros(100));
            }
            // The first periods fill the pipeline.
            if k >= 10 {
                turnaround_us.push(fed.elapsed().as_micros() as u64);
            }
        }
        (device, turnaround_us)
    });
    let (device, mut turnaround_us) = device.join().expect("device thread");
    let dsp = handle.stats().realtime().cloned().expect("started");
    handle.stop();
    turnaround_us.sort_unstable();
    Outcome {
        dsp,
        device,
        turnaround_us,
    }
}

fn pct(v: &[u64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let secs = std::env::var("ONMIC_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20u64);
    let cores = support::cores();
    println!(
        "voice chain (AEC, NS, AGC), 10 ms periods, {secs} s each; turnaround = capture in → \
         block out, ms"
    );
    println!(
        "{:>5} {:<10} {:<10} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "busy", "device", "DSP", "p50", "p99", "p99.9", "max", "> 5 ms"
    );
    for busy in [0, cores * 2, cores * 8] {
        let load = support::Busy::threads(busy);
        for dsp_rt in [false, true] {
            let o = run(secs, dsp_rt);
            let dsp = match &o.dsp {
                Realtime::Granted => "real-time".to_string(),
                Realtime::NotAsked => "normal".to_string(),
                Realtime::Refused(why) => format!("normal (refused: {why})"),
            };
            let t = &o.turnaround_us;
            println!(
                "{busy:>5} {:<10} {dsp:<10} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9}",
                o.device,
                pct(t, 0.5),
                pct(t, 0.99),
                pct(t, 0.999),
                pct(t, 1.0),
                t.iter().filter(|&&u| u > DEADLINE_US).count(),
            );
        }
        drop(load);
    }
}
