//! Capture loses no audio on a busy machine. A continuous 440 Hz sine is played into the null sink
//! `onmic_b` (by `paplay`, so PulseAudio itself buffers the playback) and captured from
//! `onmic_b.monitor` through [`open_input`] while busy threads keep every core loaded, as the
//! Studio, its web view, the room server and a listener did in `tests/e2e/studio_live.rs`. The
//! capture must be one unbroken sine: every sample must follow from the two before it
//! (x[n+1] = 2·cos ω·x[n] − x[n−1]); a stretch of audio PulseAudio dropped breaks that at once.
//!
//! Through cpal 0.18 the record stream's server-side queue was one period (10 ms): whenever the
//! server's main loop was late by more than that, captured audio was silently dropped (55–65 %
//! of it in the end-to-end test). Needs the PulseAudio server that `cargo xtask test` starts.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use onmic_audio::list_devices;
use onmic_audio::streams::{StreamRequest, open_input};

const RATE: u32 = 48_000;
const FREQ: f32 = 440.0;
const AMPLITUDE: f32 = 0.5;
/// How long the machine is kept busy while capturing.
const BUSY: Duration = Duration::from_secs(4);

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
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dir.path().join("tone.wav");
    tone_wav(&wav, 20);
    let input = list_devices()
        .expect("devices")
        .inputs
        .into_iter()
        .find(|d| d.id.ends_with("onmic_b.monitor"))
        .expect("the onmic_b monitor")
        .id;

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

    // Busy threads on every core, at the same priority as PulseAudio.
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs: Vec<_> = (0..4 * cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                }
            })
        })
        .collect();
    std::thread::sleep(BUSY);
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().expect("busy thread");
    }
    // What the server queued while the machine was busy arrives now.
    std::thread::sleep(Duration::from_millis(300));
    let _ = player.kill();
    let _ = player.wait();
    drop(stream);

    let mut samples = Vec::new();
    while let Ok(s) = captured.pop() {
        samples.push(s);
    }
    let left: Vec<f32> = samples.chunks_exact(2).map(|f| f[0]).collect();
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
