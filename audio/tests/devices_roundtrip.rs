//! Acceptance item 1 on real cpal streams through the PulseAudio null sinks that `cargo xtask
//! test` starts (`onmic_a`, `onmic_b`, 48 kHz stereo): a 1 kHz tone played to `onmic_a` comes
//! back from `onmic_a.monitor` within 1 Hz and 1 dB; a 440 Hz left / 660 Hz right pair keeps its
//! sides through capture → sound-card chain → Opus → decode.

use std::time::{Duration, Instant};

use onmic_audio::chain::{Chain, ChainConfig, Mode};
use onmic_audio::opus::{MAX_DECODE_FRAMES, OpusDecoder, OpusEncoder, OpusProfile};
use onmic_audio::streams::{StreamRequest, open_input, open_output};
use onmic_audio::test_signals::{dominant_frequency, goertzel_power, rms};
use onmic_audio::{BLOCK_FRAMES, Block, list_devices};

/// The two tests share one PulseAudio server; running them one at a time keeps its scheduling
/// (and so the capture) free of dropouts on a busy machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Median of `f` over eight Hann-windowed 0.25 s windows of `x`: a dropout in the capture (a busy
/// machine can make PulseAudio skip) spoils one window, not the estimate.
fn robust(x: &[f32], f: impl Fn(&[f32]) -> f32) -> f32 {
    let n = 12_000;
    let mut v: Vec<f32> = x
        .chunks_exact(n)
        .take(8)
        .map(|w| {
            let win: Vec<f32> = w
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s * (0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n as f32).cos())
                })
                .collect();
            f(&win)
        })
        .collect();
    assert!(v.len() == 8, "not enough audio");
    v.sort_by(|a, b| a.total_cmp(b));
    0.5 * (v[3] + v[4])
}

/// RMS of a Hann-windowed slice, corrected for the window (×√(8/3)).
fn windowed_rms(w: &[f32]) -> f32 {
    rms(w) * (8.0f32 / 3.0).sqrt()
}

fn require_audio() {
    assert!(
        std::env::var_os("ONMIC_TEST_AUDIO").is_some(),
        "this test needs the PulseAudio null sinks that `cargo xtask test` starts \
         (onmic_a, onmic_b; ONMIC_TEST_AUDIO=1, PULSE_SERVER/XDG_RUNTIME_DIR exported)"
    );
}

/// Device ids for a sink and its monitor.
fn ids(sink: &str) -> (String, String) {
    let list = list_devices().expect("device list");
    let out = list
        .outputs
        .iter()
        .find(|d| d.id.ends_with(sink) || d.name.contains(sink))
        .unwrap_or_else(|| panic!("no output {sink} in {:?}", list.outputs))
        .id
        .clone();
    let mon = format!("{sink}.monitor");
    let inp = list
        .inputs
        .iter()
        .find(|d| d.id.ends_with(&mon) || d.name.contains(&mon))
        .unwrap_or_else(|| panic!("no input {mon} in {:?}", list.inputs))
        .id
        .clone();
    (out, inp)
}

/// Plays `signal` (interleaved stereo) to `sink` and records its monitor for the same time plus
/// a margin; returns the recording (interleaved stereo).
fn play_and_record(sink: &str, signal: &[f32]) -> Vec<f32> {
    play_and_record_at(sink, signal, None)
}

/// As [`play_and_record`], with both streams opened at `device_rate` (the engine side stays at
/// 48 kHz; the edge resamplers convert).
fn play_and_record_at(sink: &str, signal: &[f32], device_rate: Option<u32>) -> Vec<f32> {
    let (out_id, in_id) = ids(sink);
    let (cap_p, mut cap_c) = rtrb::RingBuffer::<f32>::new(48_000 * 2 * 8);
    let (mut play_p, play_c) = rtrb::RingBuffer::<f32>::new(signal.len() + 1);
    // Generous 50 ms periods: this test is about level and frequency, not latency, and a busy
    // machine starves small-period clients into dropouts.
    let req_in = StreamRequest {
        id: Some(in_id),
        channels: Some(2),
        buffer_frames: Some(2400),
        sample_rate: device_rate,
    };
    let req_out = StreamRequest {
        id: Some(out_id),
        channels: Some(2),
        buffer_frames: Some(2400),
        sample_rate: device_rate,
    };
    let input = open_input(&req_in, cap_p, None).expect("open input");
    assert_eq!(input.opened.sample_rate, device_rate.unwrap_or(48_000));
    let chunk = play_p.write_chunk_uninit(signal.len()).expect("room");
    chunk.fill_from_iter(signal.iter().copied());
    let output = open_output(&req_out, play_c, None).expect("open output");
    println!("opened {:?} and {:?}", input.opened, output.opened);
    let wanted = signal.len() + 48_000; // plus half a second of margin (stereo samples)
    let mut rec = Vec::with_capacity(wanted);
    let deadline = Instant::now() + Duration::from_secs(20);
    while rec.len() < wanted && Instant::now() < deadline {
        while let Ok(s) = cap_c.pop() {
            rec.push(s);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "input latency {:?}, output latency {:?}, xruns in {} out {}",
        input.status.latency(),
        output.status.latency(),
        input.status.xruns(),
        output.status.xruns()
    );
    assert!(
        !input.status.failed() && !output.status.failed(),
        "stream failed"
    );
    rec
}

/// The part of a channel where the signal is present: from 0.3 s after the first loud sample,
/// 2 s long.
fn steady_part(x: &[f32]) -> &[f32] {
    let start = x
        .iter()
        .position(|s| s.abs() > 0.05)
        .expect("the tone never arrived");
    let from = start + 14_400;
    assert!(x.len() >= from + 96_000, "recording too short");
    &x[from..from + 96_000]
}

fn tone_round_trip(device_rate: Option<u32>) {
    require_audio();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let secs = 3.0;
    let n = (48_000.0 * secs) as usize;
    let amp = 0.5f32;
    let mut sig = Vec::with_capacity(n * 2);
    for i in 0..n {
        let s = amp * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin();
        sig.push(s);
        sig.push(s);
    }
    let rec = play_and_record_at("onmic_a", &sig, device_rate);
    let left: Vec<f32> = rec.iter().step_by(2).copied().collect();
    let part = steady_part(&left);
    let f = robust(part, |w| dominant_frequency(w, 980.0, 1020.0, 1.0));
    let level_db = 20.0 * (robust(part, windowed_rms) / (amp / std::f32::consts::SQRT_2)).log10();
    println!("captured {f:.2} Hz at {level_db:+.2} dB");
    assert!((f - 1000.0).abs() <= 1.0, "frequency {f}");
    assert!(level_db.abs() <= 1.0, "level {level_db} dB");
}

#[test]
fn tone_round_trip_within_1_hz_and_1_db() {
    tone_round_trip(None);
}

/// The devices opened at 44.1 kHz: capture and playback go through the edge resamplers.
#[test]
fn tone_round_trip_through_edge_resamplers_at_44100() {
    tone_round_trip(Some(44_100));
}

#[test]
fn stereo_sides_survive_capture_chain_opus_decode() {
    require_audio();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = 48_000 * 3;
    let mut sig = Vec::with_capacity(n * 2);
    for i in 0..n {
        let t = i as f32 / 48_000.0;
        sig.push(0.4 * (2.0 * std::f32::consts::PI * 440.0 * t).sin());
        sig.push(0.4 * (2.0 * std::f32::consts::PI * 660.0 * t).sin());
    }
    let rec = play_and_record("onmic_b", &sig);
    let mut chain = Chain::new(ChainConfig::for_mode(Mode::Soundcard)).expect("chain");
    let mut enc = OpusEncoder::new(OpusProfile::music(), 0, 0).expect("encoder");
    let mut dec = OpusDecoder::new().expect("decoder");
    let far = Block::silent(2);
    let mut b = Block::silent(2);
    let mut pcm = vec![0.0f32; MAX_DECODE_FRAMES * 2];
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for chunk in rec.chunks_exact(BLOCK_FRAMES * 2) {
        b.read_interleaved(chunk, 2);
        chain.process(&mut b, &far, None);
        if let Some(p) = enc.push_block(&b).expect("encode") {
            let f = dec.decode(p.payload(), &mut pcm).expect("decode");
            for fr in pcm[..f * 2].chunks_exact(2) {
                l.push(fr[0]);
                r.push(fr[1]);
            }
        }
    }
    let (pl, pr) = (steady_part(&l), steady_part(&r));
    let fl = robust(pl, |w| dominant_frequency(w, 420.0, 680.0, 1.0));
    let fr = robust(pr, |w| dominant_frequency(w, 420.0, 680.0, 1.0));
    let sep_l = robust(pl, |w| {
        10.0 * (goertzel_power(w, 440.0) / goertzel_power(w, 660.0)).log10() as f32
    });
    let sep_r = robust(pr, |w| {
        10.0 * (goertzel_power(w, 660.0) / goertzel_power(w, 440.0)).log10() as f32
    });
    println!("left {fl:.1} Hz ({sep_l:.0} dB over 660), right {fr:.1} Hz ({sep_r:.0} dB over 440)");
    assert!((fl - 440.0).abs() < 1.0 && (fr - 660.0).abs() < 1.0);
    assert!(sep_l > 30.0 && sep_r > 30.0);
}
