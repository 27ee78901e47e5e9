//! Acceptance item 7: the ear monitor's added latency inside the engine (the devices' own buffers
//! excluded) is at most one device period. A thread plays the part of a duplex device with a
//! 10 ms period in real time: each period it hands the engine one period of capture (with a click
//! now and then) and, half a period later, takes one period of output. The click's delay from
//! capture to the output callback that plays it is measured in frames.

use std::time::{Duration, Instant};

use onmic_audio::chain::{ChainConfig, Mode};
use onmic_audio::ear_monitor::{EarMonitorConfig, EarSource};
use onmic_audio::engine::{EngineConfig, start};

const PERIOD: usize = 480;

#[test]
fn raw_ear_monitor_adds_at_most_one_period() {
    let config = EngineConfig {
        chain: ChainConfig::for_mode(Mode::Soundcard),
        ear: EarMonitorConfig {
            enabled: true,
            source: EarSource::Raw,
            volume: 1.0,
        },
        capture_channels: 2,
        ..EngineConfig::default()
    };
    let (mut handle, mut io) = start(config).expect("engine");
    let phase = Duration::from_millis(5); // the output callback runs half a period after capture
    let periods = 300;
    let click_every = 37; // periods; not a multiple of anything in the engine
    let mut clicks_in = Vec::new();
    let mut out: Vec<f32> = Vec::with_capacity(periods * PERIOD);
    let mut capture = vec![0.0f32; PERIOD * 2];
    let t0 = Instant::now();
    for k in 0..periods {
        let due = t0 + Duration::from_millis(10 * k as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        capture.fill(0.0);
        if k % click_every == 5 {
            let at = 123 + k % 7 * 40; // the click moves within the period
            capture[at * 2] = 0.8;
            capture[at * 2 + 1] = 0.8;
            clicks_in.push(k * PERIOD + at);
        }
        let chunk = io
            .capture
            .write_chunk_uninit(PERIOD * 2)
            .expect("capture ring");
        chunk.fill_from_iter(capture.iter().copied());
        std::thread::sleep(phase);
        // The output callback: one period, silence for whatever is not there yet.
        let avail = io.output.slots().min(PERIOD * 2);
        let mut got = vec![0.0f32; PERIOD * 2];
        if let Ok(chunk) = io.output.read_chunk(avail) {
            let (a, b) = chunk.as_slices();
            got[..a.len()].copy_from_slice(a);
            got[a.len()..a.len() + b.len()].copy_from_slice(b);
            chunk.commit_all();
        }
        out.extend(got.iter().step_by(2));
    }
    handle.stop();
    let phase_frames = phase.as_secs_f64() * 48_000.0;
    let mut worst = 0.0f64;
    for &c in &clicks_in {
        let found = out[c..]
            .iter()
            .position(|s| *s > 0.4)
            .map(|d| c + d)
            .expect("click never came out");
        // Frames between capture and the output callback that played it: the position shift in
        // the output stream plus the callback's phase after capture.
        let added = (found - c) as f64 + phase_frames;
        worst = worst.max(added);
        println!(
            "click at {c}: out at {found}, engine-added {added:.0} frames ({:.2} ms)",
            added / 48.0
        );
    }
    assert!(clicks_in.len() >= 8);
    println!("worst engine-added ear-monitor latency {worst:.0} frames, device period {PERIOD}");
    assert!(
        worst <= PERIOD as f64,
        "ear monitor added {worst:.0} frames > one period ({PERIOD})"
    );
}
