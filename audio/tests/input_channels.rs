//! Issue 10, scope 1: which two channels of a multi-channel card the engine uses, on a real
//! four-channel device (the monitor of the `onmic_quad` null sink, four channels, that
//! `cargo xtask test` starts). Each of the four channels carries its own tone; picking any pair
//! delivers exactly those two tones on their sides (a mono capture: their mean), the other two
//! at least 40 dB under; a pick the device cannot carry is refused with the channel named; and
//! the engine's devices switch the pick live on a running engine.

use std::time::Duration;

use onmic_audio::list_devices;
use onmic_audio::streams::{
    ChannelPick, EngineDevices, StreamRequest, open_input_pick, open_output,
};
use onmic_audio::test_signals::tone_db_median;

const TONES: [f32; 4] = [250.0, 450.0, 650.0, 1050.0];

/// Both tests play their tones into the one `onmic_quad` sink: run side by side, the two tone sets
/// add up with random phases (a pick read −9 dB instead of −12, another −22 dB). One at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn require_audio() {
    assert!(
        std::env::var_os("ONMIC_TEST_AUDIO").is_some(),
        "this test needs the PulseAudio null sinks that `cargo xtask test` starts \
         (onmic_quad; ONMIC_TEST_AUDIO=1, PULSE_SERVER/XDG_RUNTIME_DIR exported)"
    );
}

fn ids() -> (String, String) {
    let list = list_devices().expect("device list");
    let out = list
        .outputs
        .iter()
        .find(|d| d.id.ends_with("onmic_quad"))
        .unwrap_or_else(|| panic!("no output onmic_quad in {:?}", list.outputs));
    let inp = list
        .inputs
        .iter()
        .find(|d| d.id.ends_with("onmic_quad.monitor"))
        .unwrap_or_else(|| panic!("no input onmic_quad.monitor in {:?}", list.inputs));
    assert_eq!(inp.channels, 4, "the device list shows the four channels");
    (out.id.clone(), inp.id.clone())
}

fn req(id: &str, channels: u16) -> StreamRequest {
    StreamRequest {
        id: Some(id.to_owned()),
        sample_rate: Some(48_000),
        channels: Some(channels),
        buffer_frames: Some(480),
    }
}

/// Plays TONES[k] on channel k of the sink for `secs`.
fn play_four(out: &str, secs: f32) -> onmic_audio::streams::DeviceStream {
    let frames = (48_000.0 * secs) as usize;
    let (mut p, c) = rtrb::RingBuffer::<f32>::new(frames * 4 + 16);
    for n in 0..frames {
        for f in TONES {
            let _ = p.push((2.0 * std::f32::consts::PI * f * n as f32 / 48_000.0).sin() * 0.25);
        }
    }
    // A 200 ms period: the tones must not break up on a loaded machine (this test is about the
    // capture; a 10 ms output period underran here under load and smeared every reading).
    let mut r = req(out, 4);
    r.buffer_frames = Some(9_600);
    let s = open_output(&r, c, None).expect("four-channel output");
    assert_eq!(s.opened.channels, 4, "the sink plays four channels");
    s
}

/// Level of `f` in `x` (dB of amplitude; a sine of amplitude 0.25 reads −12 dB).
fn level(x: &[f32], f: f32) -> f64 {
    tone_db_median(x, f)
}

/// Records `secs` of the monitor with `pick`, `channels` delivered; returns each channel.
fn record(mon: &str, pick: ChannelPick, channels: u16, secs: f32) -> Vec<Vec<f32>> {
    let (p, mut c) = rtrb::RingBuffer::<f32>::new(48_000 * 2 * 10);
    let s = open_input_pick(&req(mon, channels), Some(pick), p, None).expect("open with pick");
    assert_eq!(s.opened.channels, channels, "delivers what was asked");
    // Drop what came before the tones settled, then keep `secs`.
    std::thread::sleep(Duration::from_millis(300));
    while c.pop().is_ok() {}
    std::thread::sleep(Duration::from_secs_f32(secs));
    drop(s);
    let mut v = Vec::new();
    while let Ok(x) = c.pop() {
        v.push(x);
    }
    let ch = usize::from(channels);
    (0..ch)
        .map(|k| v.iter().skip(k).step_by(ch).copied().collect())
        .collect()
}

#[test]
fn any_pair_of_a_four_channel_input_is_captured_and_the_rest_left_out() {
    require_audio();
    let _one = serial();
    let (out, mon) = ids();
    let _tones = play_four(&out, 30.0);
    std::thread::sleep(Duration::from_millis(300));
    for (l, r) in [(0u16, 1u16), (2, 3), (3, 0), (1, 2), (2, 2)] {
        let pick = ChannelPick::new(l, r).expect("pick");
        let sides = record(&mon, pick, 2, 1.5);
        for (side, want) in [(0usize, l), (1, r)] {
            let x = &sides[side];
            // At least half a second (a loaded machine delivers the rest late, not lost).
            assert!(x.len() >= 24_000, "{} frames recorded", x.len());
            let got = level(x, TONES[usize::from(want)]);
            let others: Vec<f64> = (0..4u16)
                .filter(|k| *k != want)
                .map(|k| level(x, TONES[usize::from(k)]))
                .collect();
            println!(
                "pick {}+{} side {side}: channel {} tone {got:.1} dB, others {others:.1?} dB",
                l + 1,
                r + 1,
                want + 1
            );
            assert!(
                (got - -12.0).abs() < 1.5,
                "pick {}+{}: side {side} has channel {}'s tone at {got:.1} dB",
                l + 1,
                r + 1,
                want + 1
            );
            assert!(
                others.iter().all(|o| *o < got - 40.0),
                "pick {}+{}: side {side} carries other channels: {others:.1?} vs {got:.1} dB",
                l + 1,
                r + 1
            );
        }
    }
    // Mono (voice mode): the pair's mean, each tone 6 dB under its own level.
    let mono = record(&mon, ChannelPick::new(1, 3).unwrap(), 1, 1.5);
    let (a, b) = (level(&mono[0], TONES[1]), level(&mono[0], TONES[3]));
    let (c, d) = (level(&mono[0], TONES[0]), level(&mono[0], TONES[2]));
    println!("mono pick 2+4: {a:.1} / {b:.1} dB, others {c:.1} / {d:.1} dB");
    assert!(
        (a - -18.0).abs() < 1.5 && (b - -18.0).abs() < 1.5,
        "{a:.1} / {b:.1}"
    );
    assert!(c < a - 40.0 && d < a - 40.0, "others {c:.1} / {d:.1}");

    // A channel the device does not have: refused, naming it.
    let (p, _c) = rtrb::RingBuffer::<f32>::new(1_000);
    let e = open_input_pick(
        &req(&mon, 2),
        Some(ChannelPick::new(4, 5).unwrap()),
        p,
        None,
    )
    .expect_err("channel 6 of 4");
    println!("refused: {e}");
    assert!(
        e.to_string().contains("has 4 channels") && e.to_string().contains("channel 6"),
        "{e}"
    );
}

#[test]
fn the_engine_switches_channels_live() {
    require_audio();
    let _one = serial();
    let (out, mon) = ids();
    let out_b = list_devices()
        .expect("list")
        .outputs
        .into_iter()
        .find(|d| d.id.ends_with("onmic_b"))
        .expect("onmic_b")
        .id;
    println!("engine output {out_b}");
    let _tones = play_four(&out, 30.0);
    let config = onmic_audio::engine::EngineConfig {
        chain: onmic_audio::chain::ChainConfig::for_mode(onmic_audio::chain::Mode::Soundcard),
        ..onmic_audio::engine::EngineConfig::default()
    };
    let (mut handle, io) = onmic_audio::engine::start(config).expect("engine");
    let mut devices = EngineDevices::open_pick(
        io,
        2,
        req(&mon, 2),
        Some(ChannelPick::new(0, 1).unwrap()),
        StreamRequest {
            id: Some(out_b),
            ..StreamRequest::default()
        },
    )
    .expect("devices");
    let published = |handle: &mut onmic_audio::engine::EngineHandle| -> Vec<Vec<f32>> {
        let mut dec = onmic_audio::opus::OpusDecoder::new().expect("decoder");
        let mut pcm = vec![0.0f32; onmic_audio::opus::MAX_DECODE_FRAMES * 2];
        let (mut l, mut r) = (Vec::new(), Vec::new());
        std::thread::sleep(Duration::from_millis(400));
        while handle.packets.pop().is_ok() {}
        let until = std::time::Instant::now() + Duration::from_millis(1_200);
        while std::time::Instant::now() < until {
            while let Ok(p) = handle.packets.pop() {
                let n = dec.decode(p.payload(), &mut pcm).expect("decode");
                for f in pcm[..n * 2].chunks_exact(2) {
                    l.push(f[0]);
                    r.push(f[1]);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        vec![l, r]
    };
    for (l, r) in [(0u16, 1u16), (2, 3), (1, 0)] {
        devices
            .set_input_pick(&mut handle, Some(ChannelPick::new(l, r).unwrap()))
            .expect("switch");
        let sides = published(&mut handle);
        for (side, want) in [(0usize, l), (1, r)] {
            let got = level(&sides[side], TONES[usize::from(want)]);
            let worst = (0..4u16)
                .filter(|k| *k != want)
                .map(|k| level(&sides[side], TONES[usize::from(k)]))
                .fold(f64::MIN, f64::max);
            println!(
                "engine pick {}+{} side {side}: {got:.1} dB, loudest other {worst:.1} dB",
                l + 1,
                r + 1
            );
            assert!(got > -20.0, "published side {side}: {got:.1} dB");
            assert!(
                worst < got - 30.0,
                "other channels published: {worst:.1} dB"
            );
        }
    }
    // A pick the device cannot carry leaves the input as it was.
    let e = devices
        .set_input_pick(&mut handle, Some(ChannelPick::new(0, 9).unwrap()))
        .expect_err("channel 10 of 4");
    println!("refused live: {e}");
    assert_eq!(devices.input_pick(), Some(ChannelPick::new(1, 0).unwrap()));
}
