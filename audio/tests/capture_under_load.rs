//! Capture and playback lose no audio on a busy machine. A continuous 440 Hz sine is played into the null sink
//! `onmic_b` (by `paplay`, so PulseAudio itself buffers the playback) and captured from
//! `onmic_b.monitor` through [`open_input`] while busy threads keep every core loaded, as the
//! Studio, its web view, the room server and a listener did in `tests/e2e/studio_live.rs`. The
//! capture must be one unbroken sine: every sample must follow from the two before it
//! (x[n+1] = 2·cos ω·x[n] − x[n−1]); a stretch of audio PulseAudio dropped breaks that at once.
//!
//! Through cpal 0.18 the record stream's server-side queue was one period (10 ms): whenever the
//! server's main loop was late by more than that, captured audio was silently dropped (55–65 %
//! of it in the end-to-end test).
//!
//! Playback the other way round: a sine filled ahead into [`open_output`]'s ring, played to
//! `onmic_a` at 10, 20 and 40 ms periods under the same load and captured from its monitor, must
//! come back without a silent 10 ms window and with at most [`MAX_BREAKS`] breaks in the sine.
//! With the PulseAudio protocol client unoptimised (it runs the device callbacks on its reactor
//! thread and zeroed a 1 MiB buffer on every read) the sink ran dry: 143 / 93 / 15 of ~300
//! windows silent at 10 / 20 / 40 ms periods, and the Studio's outputs broke up in the
//! end-to-end tests (docs/decisions.md, "PulseAudio in debug builds").
//!
//! Needs the PulseAudio server that `cargo xtask test` starts.

use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

use onmic_audio::list_devices;
use onmic_audio::streams::{StreamRequest, open_input, open_output};
use support::Busy;

const RATE: u32 = 48_000;
const FREQ: f32 = 440.0;
const AMPLITUDE: f32 = 0.5;
/// How long the machine is kept busy while capturing.
const BUSY: Duration = Duration::from_secs(4);

/// Sine breaks a played tone may show in 3 s under load: glitches shorter than 10 ms, two breaks
/// each (0-12 seen with the optimised client; 27-215 with the unoptimised one, which also left
/// 15-143 windows silent).
const MAX_BREAKS: usize = 30;

/// The left channel of everything captured into `ring` (interleaved stereo).
fn drain_left(ring: &mut rtrb::Consumer<f32>) -> Vec<f32> {
    let mut samples = Vec::new();
    while let Ok(s) = ring.pop() {
        samples.push(s);
    }
    samples.chunks_exact(2).map(|f| f[0]).collect()
}

/// The two tests load the machine in turn, not together.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The id of the monitor of null sink `sink`.
fn monitor(sink: &str) -> String {
    let want = format!("{sink}.monitor");
    list_devices()
        .expect("devices")
        .inputs
        .into_iter()
        .find(|d| d.id.ends_with(&want))
        .unwrap_or_else(|| panic!("the {want} input"))
        .id
}

fn tone_wav(path: &std::path::Path, seconds: u32) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("tone file");
    for n in 0..RATE * seconds {
        let x = AMPLITUDE * (2.0 * std::f32::consts::PI * FREQ * n as f32 / RATE as f32).sin();
        let s = (x * f32::from(i16::MAX)).round() as i16;
        w.write_sample(s).expect("sample");
        w.write_sample(s).expect("sample");
    }
    w.finalize().expect("tone file finalised");
}

/// Indices (from the tone's onset) where the captured sine stops following its recurrence.
fn breaks(left: &[f32]) -> Vec<usize> {
    let onset = left
        .iter()
        .position(|x| x.abs() > AMPLITUDE / 2.0)
        .expect("the tone was captured");
    let end = left
        .iter()
        .rposition(|x| x.abs() > AMPLITUDE / 2.0)
        .expect("the tone was captured");
    // Leave out 50 ms at either end (the playback starting and being stopped).
    let x = &left[onset + 2_400..end.saturating_sub(2_400).max(onset + 2_400)];
    let c = 2.0 * (2.0 * std::f32::consts::PI * FREQ / RATE as f32).cos();
    (1..x.len().saturating_sub(1))
        .filter(|&n| (x[n + 1] - c * x[n] + x[n - 1]).abs() > 0.05)
        .collect()
}

#[test]
fn capture_from_a_pulseaudio_monitor_loses_nothing_while_the_machine_is_busy() {
    assert!(
        std::env::var_os("ONMIC_TEST_AUDIO").is_some(),
        "this test needs the PulseAudio null sinks that `cargo xtask test` starts (ONMIC_TEST_AUDIO=1)"
    );
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dir.path().join("tone.wav");
    tone_wav(&wav, 20);
    let input = monitor("onmic_b");

    // Five seconds of room: the callback never has to drop for want of a reader.
    let (ring, mut captured) = rtrb::RingBuffer::<f32>::new(RATE as usize * 2 * 5);
    let stream = open_input(
        &StreamRequest {
            id: Some(input),
            channels: Some(2),
            ..StreamRequest::default()
        },
        ring,
        None,
    )
    .expect("the monitor opens");
    let mut player = Command::new("paplay")
        .args(["--device=onmic_b", &wav.to_string_lossy()])
        .stdout(Stdio::null())
        .spawn()
        .expect("paplay starts");

    let cores = support::cores();
    let busy = Busy::threads(4 * cores);
    std::thread::sleep(BUSY);
    drop(busy);
    // What the server queued while the machine was busy arrives now.
    std::thread::sleep(Duration::from_millis(300));
    let _ = player.kill();
    let _ = player.wait();
    drop(stream);

    let left = drain_left(&mut captured);
    let b = breaks(&left);
    let tone_seconds = left.iter().filter(|x| x.abs() > 0.0).count() as f32 / RATE as f32;
    println!(
        "captured {:.2} s ({tone_seconds:.2} s of tone) under load on {cores} cores; {} breaks, first at {:?}",
        left.len() as f32 / RATE as f32,
        b.len(),
        b.iter().take(5).collect::<Vec<_>>()
    );
    assert!(tone_seconds > 2.0, "too little of the tone was captured");
    assert!(
        b.is_empty(),
        "the captured tone breaks {} times: audio was dropped",
        b.len()
    );
}

#[test]
fn playback_to_a_pulseaudio_sink_has_no_gap_while_the_machine_is_busy() {
    assert!(
        std::env::var_os("ONMIC_TEST_AUDIO").is_some(),
        "this test needs the PulseAudio null sinks that `cargo xtask test` starts (ONMIC_TEST_AUDIO=1)"
    );
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let output = list_devices()
        .expect("devices")
        .outputs
        .into_iter()
        .find(|d| d.id.ends_with("onmic_a"))
        .expect("the onmic_a output")
        .id;
    let seconds = 3;
    let tone: Vec<f32> = (0..RATE * seconds)
        .flat_map(|n| {
            let x = AMPLITUDE * (2.0 * std::f32::consts::PI * FREQ * n as f32 / RATE as f32).sin();
            [x, x]
        })
        .collect();
    let mut failures = Vec::new();
    // 10 ms is what the Studio opens; 20 and 40 ms are the larger periods a host may pick. A
    // 5 ms period (not offered) is measured and printed, not asserted: cpal's buffer is two
    // periods, and 10 ms of buffer breaks up on this machine with eight busy threads.
    for period in [480u32, 960, 1920, 240] {
        // A period that breaks up is measured once more, and fails only if it breaks up again:
        // the regression this guards against (the unoptimised client) broke up every time, at
        // every period (15-143 silent windows), while two full suites of 2026-12-05 each had
        // one run with a rare hole (one 46 ms hole at 10 ms; 2 silent windows at 20 ms) under
        // the eight busy threads, at a different period each time.
        for attempt in 1..=2 {
            let (sounding, holes, breaks) = play_under_load(&output, &tone, period);
            println!(
                "period {period} frames under load (attempt {attempt}): {sounding} windows of 10 ms, \
                 {holes} silent, {breaks} breaks"
            );
            assert!(
                sounding > 250,
                "too little of the tone came back ({sounding} windows)"
            );
            // A dropout the listener hears is a silent 10 ms window: none allowed. Under eight
            // busy threads a few glitches shorter than that remain (seen in full suites: 2-4
            // breaks at 10 ms, 2-12 at 20 ms; each glitch is two breaks), not the 27-215 of the
            // unoptimised client.
            let broke = (holes > 0 || breaks > MAX_BREAKS) && period != 240;
            if !broke {
                break;
            }
            if attempt == 2 {
                failures.push(format!(
                    "{period} frames: {breaks} breaks, {holes} silent windows (twice in a row)"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the played tone broke up: {}",
        failures.join("; ")
    );
}

/// Plays `tone` (interleaved stereo) to `output` with a `period`-frame buffer while busy threads
/// load every core, records the sink's monitor, and returns the 10 ms windows of the tone that
/// came back, how many of them are silent (a dropout a listener hears) and the sine's breaks.
fn play_under_load(output: &str, tone: &[f32], period: u32) -> (usize, usize, usize) {
    let (ring, mut captured) = rtrb::RingBuffer::<f32>::new(RATE as usize * 2 * 6);
    let recorder = open_input(
        &StreamRequest {
            id: Some(monitor("onmic_a")),
            channels: Some(2),
            ..StreamRequest::default()
        },
        ring,
        None,
    )
    .expect("the monitor opens");
    let (mut fill, play) = rtrb::RingBuffer::<f32>::new(tone.len());
    fill.write_chunk_uninit(tone.len())
        .expect("room for the tone")
        .fill_from_iter(tone.iter().copied());
    let busy = Busy::threads(4 * support::cores());
    let out = open_output(
        &StreamRequest {
            id: Some(output.to_owned()),
            channels: Some(2),
            buffer_frames: Some(period),
            ..StreamRequest::default()
        },
        play,
        None,
    )
    .expect("the output opens");
    let seconds = tone.len() / 2 / RATE as usize;
    std::thread::sleep(Duration::from_secs(seconds as u64) + Duration::from_millis(300));
    drop(busy);
    drop(out);
    std::thread::sleep(Duration::from_millis(300));
    drop(recorder);
    let left = drain_left(&mut captured);
    let b = breaks(&left);
    // 10 ms windows inside the tone that are silent: what a listener hears as a dropout.
    let silent = left
        .chunks_exact(480)
        .skip_while(|w| w.iter().all(|x| x.abs() < AMPLITUDE / 2.0))
        .collect::<Vec<_>>();
    let sounding = silent
        .iter()
        .rposition(|w| w.iter().any(|x| x.abs() > AMPLITUDE / 2.0))
        .map_or(0, |i| i + 1);
    let holes = silent[..sounding]
        .iter()
        .filter(|w| w.iter().all(|x| x.abs() < 0.01))
        .count();
    if !b.is_empty() {
        println!(
            "  first breaks at frames {:?}",
            b.iter().take(5).collect::<Vec<_>>()
        );
    }
    (sounding, holes, b.len())
}
