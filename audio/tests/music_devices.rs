//! Issue 13 on real cpal streams through the PulseAudio null sinks that `cargo xtask test`
//! starts (`onmic_a`, `onmic_b`): the cue output plays a track on a second device only (that
//! sink's monitor has it, the published stream does not; acceptance 8, second half), and a
//! second capture device (a null sink's monitor: another app's output) plays as a music source
//! with local playback on or off.

use std::time::{Duration, Instant};

use onmic_audio::chain::{ChainConfig, Mode};
use onmic_audio::engine::{Control, EngineConfig, EngineCore};
use onmic_audio::music::capture::CaptureSource;
use onmic_audio::music::cue::CueOutput;
use onmic_audio::music::{MusicPlayer, MusicSource, PlayOptions};
use onmic_audio::opus::{MAX_DECODE_FRAMES, OpusDecoder};
use onmic_audio::streams::{StreamRequest, open_input, open_output};
use onmic_audio::test_signals::{sine_block, tone_db_median};
use onmic_audio::{BLOCK_FRAMES, Block, list_devices};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn require_audio() {
    assert!(
        std::env::var_os("ONMIC_TEST_AUDIO").is_some(),
        "this test needs the PulseAudio null sinks that `cargo xtask test` starts \
         (onmic_a, onmic_b; ONMIC_TEST_AUDIO=1, PULSE_SERVER/XDG_RUNTIME_DIR exported)"
    );
}

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

fn req(id: &str) -> StreamRequest {
    StreamRequest {
        id: Some(id.to_owned()),
        sample_rate: Some(48_000),
        channels: Some(2),
        buffer_frames: Some(480),
    }
}

fn wav_sine(path: &std::path::Path, secs: f32, freq: f32, amp: f32) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for i in 0..(44_100.0 * secs) as usize {
        let s = (2.0 * std::f32::consts::PI * freq * i as f32 / 44_100.0).sin() * amp;
        w.write_sample((s * 32767.0) as i16).expect("s");
        w.write_sample((s * 32767.0) as i16).expect("s");
    }
    w.finalize().expect("finalize");
}

/// The engine's per-block path paced in real time (10 ms per block), the published stream
/// decoded again, the local output kept.
struct Live {
    core: EngineCore,
    dec: OpusDecoder,
    published: Vec<f32>,
    local: Vec<f32>,
    block: u64,
}

impl Live {
    fn new() -> Live {
        Live {
            core: EngineCore::new(&EngineConfig {
                chain: ChainConfig::for_mode(Mode::Soundcard),
                ..EngineConfig::default()
            })
            .expect("core"),
            dec: OpusDecoder::new().expect("dec"),
            published: Vec::new(),
            local: Vec::new(),
            block: 0,
        }
    }

    fn run(&mut self, secs: f32) {
        let start = Instant::now();
        let mut out = Block::silent(2);
        let mut pcm = vec![0.0f32; MAX_DECODE_FRAMES * 2];
        let n = (secs * 100.0) as u64;
        for k in 0..n {
            let due = start + Duration::from_millis(10 * k);
            if let Some(w) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            let mut mic = sine_block(300.0, 0.05, self.block, 2);
            let (o, _g) = self.core.process(&mut mic, None, &mut out);
            if let Some(p) = o.packet {
                let n = self.dec.decode(p.payload(), &mut pcm).expect("decode");
                self.published.extend(pcm[..n * 2].iter().step_by(2));
            }
            self.local.extend_from_slice(out.channel(0));
            self.block += 1;
        }
    }
}

/// Records a capture device into a growing buffer (left channel) while `f` runs.
fn record<T>(id: &str, f: impl FnOnce() -> T) -> (Vec<f32>, T) {
    let (p, mut c) = rtrb::RingBuffer::<f32>::new(48_000 * 2 * 10);
    let stream = open_input(&req(id), p, None).expect("open monitor");
    let ch = usize::from(stream.opened.channels);
    let r = f();
    std::thread::sleep(Duration::from_millis(100));
    drop(stream);
    let mut v = Vec::new();
    while let Ok(s) = c.pop() {
        v.push(s);
    }
    (v.into_iter().step_by(ch).collect(), r)
}

#[test]
fn cue_plays_on_the_second_output_only_and_a_cued_track_can_go_on_air() {
    require_audio();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (b_out, b_mon) = ids("onmic_b");
    let dir = tempfile::tempdir().expect("tmp");
    let (deck, cued) = (dir.path().join("deck.wav"), dir.path().join("cued.wav"));
    wav_sine(&deck, 8.0, 440.0, 0.3);
    wav_sine(&cued, 8.0, 1000.0, 0.3);
    // On air: deck A (440 Hz) in the engine. On the cue: the next track (1 kHz).
    let (_pa, va) = MusicPlayer::open(&MusicSource::File(deck), PlayOptions::default()).expect("a");
    let (mut pc, vc) =
        MusicPlayer::open(&MusicSource::File(cued), PlayOptions::default()).expect("c");
    let mut live = Live::new();
    assert!(live.core.apply(Control::AddMusic(va)).is_none());
    let mut cue = CueOutput::open(&req(&b_out)).expect("cue on onmic_b");
    println!("cue device {:?}", cue.device());
    let cue_id = vc.id();
    cue.add(vc).expect("add");
    let (mon, ()) = record(&b_mon, || live.run(2.0));
    let m = &mon[mon.len().saturating_sub(48_000)..];
    let p = &live.published[live.published.len() - 48_000..];
    let (m1k, m440) = (tone_db_median(m, 1000.0), tone_db_median(m, 440.0));
    let (p1k, p440) = (tone_db_median(p, 1000.0), tone_db_median(p, 440.0));
    let l1k = tone_db_median(&live.local[live.local.len() - 48_000..], 1000.0);
    println!(
        "cue monitor: 1 kHz {m1k:.1} dB, 440 Hz {m440:.1} dB; published: 1 kHz {p1k:.1} dB, \
         440 Hz {p440:.1} dB; engine local output: 1 kHz {l1k:.1} dB; cue device latency {:?}",
        cue.status().latency()
    );
    let quiet = m
        .chunks(BLOCK_FRAMES)
        .filter(|b| onmic_audio::test_signals::rms(b) < 0.05)
        .count();
    println!(
        "cue: {quiet} quiet blocks of 100 in the last second, xruns {}",
        cue.status().xruns()
    );
    assert!(
        m1k > -25.0,
        "the cue sink's monitor has the cued track: {m1k:.1} dB"
    );
    // Were the deck on the cue it would read −10.5 dB; clicks of a dropout on a busy machine
    // spread a little energy over every frequency, hence an absolute bar 30 dB under that.
    assert!(
        m440 < -40.0,
        "the on-air deck is not on the cue: {m440:.1} dB"
    );
    assert!(p440 > -25.0, "the deck is published: {p440:.1} dB");
    assert!(
        p1k < p440 - 50.0,
        "the cued track is not published: {p1k:.1} dB"
    );
    assert!(l1k < -80.0, "nor in the host's main output: {l1k:.1} dB");
    assert!(
        pc.position_ms() > 1_500,
        "it played on the cue: {} ms",
        pc.position_ms()
    );

    // Take it back where it left off and put it on air.
    cue.take(cue_id).expect("take");
    let v = cue
        .wait_taken(cue_id, Duration::from_secs(2))
        .expect("the cue hands the voice back");
    let at = pc.position_ms();
    assert!(live.core.apply(Control::AddMusic(v)).is_none());
    live.run(1.0);
    let p = &live.published[live.published.len() - 24_000..];
    let on_air = tone_db_median(p, 1000.0);
    assert!(
        on_air > -25.0,
        "now on air: {on_air:.1} dB (state {:?}, underruns {}, position {} ms from {at})",
        pc.state(),
        pc.underruns(),
        pc.position_ms()
    );
    assert!(
        pc.position_ms() >= at + 800,
        "continued from {at} ms: {} ms",
        pc.position_ms()
    );
    pc.stop();
}

#[test]
fn a_null_sink_monitor_plays_as_music_with_local_playback_on_or_off() {
    require_audio();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (b_out, b_mon) = ids("onmic_b");
    // "Another app": a 700 Hz tone played to onmic_b for 6 s.
    let (mut tp, tc) = rtrb::RingBuffer::<f32>::new(48_000 * 2 * 7);
    for n in 0..600u64 {
        let b = sine_block(700.0, 0.3, n, 2);
        let mut inter = [0.0f32; BLOCK_FRAMES * 2];
        b.write_interleaved(&mut inter);
        for s in inter {
            let _ = tp.push(s);
        }
    }
    let _app = open_output(&req(&b_out), tc, None).expect("app output");
    let (src, voice) = CaptureSource::open(&req(&b_mon), false).expect("capture source");
    println!("capture source {:?}", src.device());
    let mut live = Live::new();
    assert!(live.core.apply(Control::AddMusic(voice)).is_none());
    live.run(1.5);
    let p = &live.published[live.published.len() - 48_000..];
    let l = &live.local[live.local.len() - 48_000..];
    let (p7, l7) = (tone_db_median(p, 700.0), tone_db_median(l, 700.0));
    println!("local playback off: published {p7:.1} dB, local {l7:.1} dB");
    assert!(p7 > -25.0, "published: {p7:.1} dB");
    assert!(l7 < -80.0, "not heard locally: {l7:.1} dB");
    assert!(
        tone_db_median(p, 300.0) > -45.0,
        "the microphone is still published"
    );
    src.set_local_playback(true);
    live.run(1.0);
    let p = &live.published[live.published.len() - 24_000..];
    let l = &live.local[live.local.len() - 24_000..];
    let (p7, l7) = (tone_db_median(p, 700.0), tone_db_median(l, 700.0));
    println!(
        "local playback on: published {p7:.1} dB, local {l7:.1} dB; underruns {}, dropped {} \
         frames",
        src.underruns(),
        src.stats()
            .dropped_frames
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(p7 > -25.0 && l7 > -25.0, "both: {p7:.1} / {l7:.1} dB");
}

/// Stopping a capture (a capture source, a device switch) returns at once even while another
/// stream of this process plays to the same sink: PulseAudio once left the capture watchdog's
/// latency query unanswered for over two minutes there, and dropping the capture waited for it
/// (the cue test's recording then ran on for seconds and the track ended).
#[test]
fn stopping_a_capture_does_not_wait_for_the_sound_server() {
    require_audio();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (b_out, b_mon) = ids("onmic_b");
    let mut worst = Duration::ZERO;
    for playing in [false, true, true, false] {
        let (mut tp, tc) = rtrb::RingBuffer::<f32>::new(48_000 * 2 * 4);
        for n in 0..300u64 {
            let b = sine_block(500.0, 0.3, n, 2);
            let mut inter = [0.0f32; BLOCK_FRAMES * 2];
            b.write_interleaved(&mut inter);
            for s in inter {
                let _ = tp.push(s);
            }
        }
        let app = playing.then(|| open_output(&req(&b_out), tc, None).expect("app output"));
        let (p, mut c) = rtrb::RingBuffer::<f32>::new(48_000 * 2 * 10);
        let stream = open_input(&req(&b_mon), p, None).expect("open monitor");
        std::thread::sleep(Duration::from_millis(1_500));
        let t = Instant::now();
        drop(stream);
        let took = t.elapsed();
        worst = worst.max(took);
        let mut frames = 0usize;
        while c.pop().is_ok() {
            frames += 1;
        }
        let frames = frames / 2;
        println!("another stream playing: {playing}; captured {frames} frames; stop took {took:?}");
        assert!(
            took < Duration::from_millis(500),
            "stopping the capture took {took:?} (another stream playing: {playing})"
        );
        // The capture ran in real time: about 1.5 s, never a burst beyond it.
        assert!(
            (48_000..=48_000 * 2).contains(&frames),
            "captured {frames} frames in 1.5 s"
        );
        drop(app);
    }
    println!("slowest stop: {worst:?}");
}

/// Two outputs of one process on two devices at once — the main output and the cue on the DJ's
/// headphones — both play. (cpal opens PulseAudio playback streams with sync id 0, which put
/// every stream of one connection into one sync group: the server refused a second stream on
/// another sink with "Invalid argument" until each output got its own connection.)
#[test]
fn two_outputs_on_two_devices_play_at_once() {
    require_audio();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (a_out, a_mon) = ids("onmic_a");
    let (b_out, b_mon) = ids("onmic_b");
    let tone = |f: f32| {
        let (mut p, c) = rtrb::RingBuffer::<f32>::new(48_000 * 2 * 8);
        for n in 0..700u64 {
            let mut inter = [0.0f32; BLOCK_FRAMES * 2];
            sine_block(f, 0.3, n, 2).write_interleaved(&mut inter);
            for s in inter {
                let _ = p.push(s);
            }
        }
        c
    };
    let mut big = req(&a_out);
    big.buffer_frames = Some(4_800);
    let _a = open_output(&big, tone(440.0), None).expect("the first output");
    let _b =
        open_output(&req(&b_out), tone(1000.0), None).expect("a second output, another device");
    let (on_b, ()) = record(&b_mon, || std::thread::sleep(Duration::from_millis(1_500)));
    let (on_a, ()) = record(&a_mon, || std::thread::sleep(Duration::from_millis(1_500)));
    let (b1k, b440) = (tone_db_median(&on_b, 1000.0), tone_db_median(&on_b, 440.0));
    let (a440, a1k) = (tone_db_median(&on_a, 440.0), tone_db_median(&on_a, 1000.0));
    println!(
        "onmic_b: 1 kHz {b1k:.1} dB, 440 Hz {b440:.1} dB; onmic_a: 440 Hz {a440:.1} dB, 1 kHz {a1k:.1} dB"
    );
    // Bars as the cue test's: a dropout on a busy machine spreads clicks over every frequency.
    assert!(
        b1k > -25.0 && b440 < -40.0,
        "the second device plays its own: {b1k:.1} / {b440:.1}"
    );
    assert!(
        a440 > -25.0 && a1k < -40.0,
        "the first device plays its own: {a440:.1} / {a1k:.1}"
    );
}
