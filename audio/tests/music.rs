//! Music for hosts (issue 13): every format decoded from files ffmpeg/sox make here and from a
//! URL on a local HTTP server; damaged, truncated and unsupported files give clear errors; the
//! mixing semantics measured on what the engine publishes (Opus decoded again): loopback,
//! replace, the two volumes, cycle, pause and seek, ducking; PCM injection (pitch, local
//! playback, an underrun leaving the microphone path bit-identical) and its socket input.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use onmic_audio::chain::{ChainConfig, Mode};
use onmic_audio::engine::{Control, EngineConfig, EngineCore};
use onmic_audio::music::socket::{FORMAT_S16LE, PcmHeader, SocketInput};
use onmic_audio::music::{
    Ducking, MusicBus, MusicCommand, MusicError, MusicEvent, MusicPlayer, MusicSource, PcmInjector,
    PlayOptions, PlayerState,
};
use onmic_audio::opus::{MAX_DECODE_FRAMES, OpusDecoder};
use onmic_audio::test_signals::{dominant_frequency, goertzel_power, sine_block};
use onmic_audio::{BLOCK_FRAMES, Block};

fn wav_sine(path: &Path, rate: u32, channels: u16, secs: f32, freq: f32, amp: f32) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    let n = (rate as f32 * secs) as usize;
    for i in 0..n {
        let s = (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * amp;
        for _ in 0..channels {
            w.write_sample((s * 32767.0) as i16).expect("sample");
        }
    }
    w.finalize().expect("finalize");
}

/// A 48 kHz float WAV whose left channel is a ramp `i / frames`: a sample tells its position.
fn wav_ramp(path: &Path, frames: usize) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for i in 0..frames {
        w.write_sample(i as f32 / frames as f32).expect("s");
        w.write_sample(0.25f32).expect("s");
    }
    w.finalize().expect("finalize");
}

fn ffmpeg(src: &Path, dst: &Path, args: &[&str]) {
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(src)
        .args(args)
        .arg(dst)
        .status()
        .expect("ffmpeg runs (xtask installs it)");
    assert!(st.success(), "ffmpeg made {}", dst.display());
}

/// The formats, each made from a 44.1 kHz stereo 1 kHz WAV of 2 s.
fn make_formats(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let src = dir.join("src.wav");
    wav_sine(&src, 44_100, 2, 2.0, 1000.0, 0.5);
    let mut v = vec![("wav", src.clone())];
    for (name, file, args) in [
        ("mp3", "a.mp3", vec!["-c:a", "libmp3lame", "-b:a", "192k"]),
        ("flac", "a.flac", vec!["-c:a", "flac"]),
        ("m4a", "a.m4a", vec!["-c:a", "aac", "-b:a", "192k"]),
        ("ogg", "a.ogg", vec!["-c:a", "libvorbis", "-q:a", "5"]),
        ("opus", "a.opus", vec!["-c:a", "libopus", "-b:a", "128k"]),
    ] {
        let p = dir.join(file);
        ffmpeg(&src, &p, &args);
        v.push((name, p));
    }
    // sox makes a second WAV flavour (24-bit, mono, 22.05 kHz).
    let sox = dir.join("sox.wav");
    let st = Command::new("sox")
        .args(["-n", "-r", "22050", "-b", "24", "-c", "1"])
        .arg(&sox)
        .args(["synth", "2", "sine", "1000", "vol", "0.5"])
        .status()
        .expect("sox runs");
    assert!(st.success());
    v.push(("wav-sox", sox));
    v
}

/// Plays a voice on a bare bus until it finishes; returns the local output (left channel).
fn play_to_end(player: &mut MusicPlayer, bus: &mut MusicBus, max_blocks: usize) -> Vec<f32> {
    let mut out = Vec::new();
    let (mut p, mut l) = (Block::silent(2), Block::silent(2));
    for _ in 0..max_blocks {
        wait_ready(player);
        bus.mix(0.0, &mut p, &mut l);
        out.extend_from_slice(l.channel(0));
        if matches!(
            player.state(),
            PlayerState::Finished | PlayerState::Failed | PlayerState::Stopped
        ) {
            return out;
        }
    }
    panic!(
        "did not finish in {max_blocks} blocks: {:?}",
        player.state()
    );
}

/// Waits until the decode thread has a chunk ready (or has ended): the tests run the DSP side
/// faster than real time.
fn wait_ready(p: &MusicPlayer) {
    let t = Instant::now();
    while p.buffered_chunks() == 0 && !p.decoder_done() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn check_tone(name: &str, out: &[f32], expect_secs: f32) {
    let secs = out.len() as f32 / 48_000.0;
    assert!(
        (secs - expect_secs).abs() < 0.08,
        "{name}: played {secs:.3} s, expected {expect_secs}"
    );
    let mid = &out[9_600..out.len() - 9_600];
    let f = dominant_frequency(mid, 900.0, 1100.0, 1.0);
    assert!((f - 1000.0).abs() < 2.0, "{name}: {f} Hz");
    let rms = onmic_audio::test_signals::rms(mid);
    assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.05, "{name}: rms {rms}");
}

#[test]
fn every_format_decodes_from_files_at_48k() {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, path) in make_formats(dir.path()) {
        let (mut player, voice) =
            MusicPlayer::open(&MusicSource::File(path.clone()), PlayOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let d = player.duration_ms().unwrap_or(0);
        assert!((1900..=2100).contains(&d), "{name}: duration {d} ms");
        let mut bus = MusicBus::new();
        bus.add(voice).expect("room");
        let out = play_to_end(&mut player, &mut bus, 400);
        check_tone(name, &out, 2.0);
        let ev = player.events();
        assert!(ev.contains(&MusicEvent::Finished), "{name}: {ev:?}");
    }
}

/// A one-connection-at-a-time HTTP/1.1 server on loopback serving `files` (name → bytes).
fn http_server(files: Vec<(String, Vec<u8>)>) -> (String, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", l.local_addr().expect("addr"));
    let n = files.len() + 1;
    let t = std::thread::spawn(move || {
        for s in l.incoming().take(n) {
            let Ok(mut s) = s else { continue };
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") && s.read(&mut b).map(|k| k == 1).unwrap_or(false) {
                req.push(b[0]);
            }
            let line = String::from_utf8_lossy(&req).to_string();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            match files.iter().find(|(name, _)| path == format!("/{name}")) {
                Some((_, body)) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    // Slowly, in pieces: the player must read ahead, not wait for the end.
                    for c in body.chunks(16 * 1024) {
                        let _ = s.write_all(c);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                None => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    (base, t)
}

#[test]
fn every_format_streams_from_a_local_http_url() {
    let dir = tempfile::tempdir().expect("tmp");
    let formats = make_formats(dir.path());
    let files: Vec<(String, Vec<u8>)> = formats
        .iter()
        .map(|(name, p)| {
            let ext = p.extension().unwrap_or_default().to_string_lossy();
            (format!("{name}.{ext}"), std::fs::read(p).expect("read"))
        })
        .collect();
    let names: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
    let (base, server) = http_server(files);
    for name in &names {
        let url = format!("{base}/{name}");
        let (mut player, voice) = MusicPlayer::open(&MusicSource::Url(url), PlayOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut bus = MusicBus::new();
        bus.add(voice).expect("room");
        let out = play_to_end(&mut player, &mut bus, 400);
        check_tone(name, &out, 2.0);
    }
    let err = MusicPlayer::open(
        &MusicSource::Url(format!("{base}/missing.mp3")),
        PlayOptions::default(),
    )
    .expect_err("404");
    assert!(
        matches!(err, MusicError::Http { .. }) && err.to_string().contains("404"),
        "{err}"
    );
    server.join().expect("server");
    let err = MusicPlayer::open(
        &MusicSource::Url("ftp://example.invalid/a.mp3".into()),
        PlayOptions::default(),
    )
    .expect_err("scheme");
    assert!(err.to_string().contains("http"), "{err}");
}

/// Opens and, if that works, plays to the end on a bare bus; never panics.
fn open_and_play(path: &Path) -> Result<(PlayerState, usize), MusicError> {
    let (mut player, voice) =
        MusicPlayer::open(&MusicSource::File(path.into()), PlayOptions::default())?;
    let mut bus = MusicBus::new();
    bus.add(voice).expect("room");
    let out = play_to_end(&mut player, &mut bus, 2000);
    Ok((player.state(), out.len()))
}

#[test]
fn damaged_truncated_and_unsupported_files_give_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let formats = make_formats(d);
    // Missing.
    let e = open_and_play(&d.join("nope.mp3")).expect_err("missing");
    assert!(matches!(e, MusicError::Open { .. }), "{e}");
    assert!(e.to_string().contains("nope.mp3"), "{e}");
    // Empty.
    std::fs::write(d.join("empty.mp3"), b"").expect("w");
    let e = open_and_play(&d.join("empty.mp3")).expect_err("empty");
    assert!(e.to_string().contains("empty"), "{e}");
    // Not audio at all.
    std::fs::write(
        d.join("notes.txt"),
        b"these are not the droids you are looking for\n".repeat(100),
    )
    .expect("w");
    let e = open_and_play(&d.join("notes.txt")).expect_err("text");
    assert!(matches!(e, MusicError::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("supported: MP3"), "{e}");
    // A real container with a codec the engine does not play (AC-3 in Matroska), and raw AC-3.
    let src = &formats[0].1;
    for (file, args) in [
        ("a.mka", vec!["-c:a", "ac3"]),
        ("a.ac3", vec!["-c:a", "ac3"]),
    ] {
        let p = d.join(file);
        ffmpeg(src, &p, &args);
        let e = open_and_play(&p).expect_err(file);
        assert!(matches!(e, MusicError::Unsupported(_)), "{file}: {e}");
    }
    // Invalid options.
    let e = MusicPlayer::open(
        &MusicSource::File(src.clone()),
        PlayOptions {
            cycle: 0,
            ..PlayOptions::default()
        },
    )
    .expect_err("cycle 0");
    assert!(matches!(e, MusicError::Invalid(_)), "{e}");
    for (name, path) in &formats {
        let bytes = std::fs::read(path).expect("read");
        // Cut inside the header: an error.
        let p = d.join(format!("head-{name}"));
        std::fs::write(&p, &bytes[..bytes.len().min(20)]).expect("w");
        let r = open_and_play(&p);
        assert!(r.is_err(), "{name}: 20 bytes opened: {r:?}");
        // Cut at 60 %: an error, or it plays what is there and finishes.
        let p = d.join(format!("cut-{name}"));
        std::fs::write(&p, &bytes[..bytes.len() * 6 / 10]).expect("w");
        match open_and_play(&p) {
            Ok((state, frames)) => {
                assert!(
                    matches!(state, PlayerState::Finished | PlayerState::Failed),
                    "{name}: {state:?}"
                );
                assert!(frames <= 2 * 48_000 + 4800, "{name}: {frames}");
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        // Garbage over a quarter of the middle: an error, or it plays on and ends.
        let mut bad = bytes.clone();
        let (a, b) = (bad.len() * 3 / 8, bad.len() * 5 / 8);
        let mut x = 0x1234_5678u32;
        for v in &mut bad[a..b] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *v = x as u8;
        }
        let p = d.join(format!("bad-{name}"));
        std::fs::write(&p, &bad).expect("w");
        match open_and_play(&p) {
            Ok((state, _)) => assert!(
                matches!(state, PlayerState::Finished | PlayerState::Failed),
                "{name}: {state:?}"
            ),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

/// The engine (sound-card mode: no voice processing) with a 300 Hz microphone; returns the
/// published audio (Opus decoded) and the local output, both left channel.
struct EngineRun {
    core: EngineCore,
    dec: OpusDecoder,
    published: Vec<f32>,
    local: Vec<f32>,
    block: u64,
}

impl EngineRun {
    fn new() -> EngineRun {
        let cfg = EngineConfig {
            chain: ChainConfig::for_mode(Mode::Soundcard),
            ..EngineConfig::default()
        };
        EngineRun {
            core: EngineCore::new(&cfg).expect("core"),
            dec: OpusDecoder::new().expect("dec"),
            published: Vec::new(),
            local: Vec::new(),
            block: 0,
        }
    }

    fn run(&mut self, blocks: u64, mic_amp: f32, ready: &[&MusicPlayer]) {
        let mut out = Block::silent(2);
        let mut pcm = vec![0.0f32; MAX_DECODE_FRAMES * 2];
        for _ in 0..blocks {
            for p in ready {
                wait_ready(p);
            }
            let mut mic = sine_block(300.0, mic_amp, self.block, 2);
            let (o, g) = self.core.process(&mut mic, None, &mut out);
            assert!(g.is_none());
            if let Some(p) = o.packet {
                let n = self.dec.decode(p.payload(), &mut pcm).expect("decode");
                self.published.extend(pcm[..n * 2].iter().step_by(2));
            }
            self.local.extend_from_slice(out.channel(0));
            self.block += 1;
        }
    }
}

fn power_db(x: &[f32], f: f32) -> f64 {
    10.0 * (goertzel_power(x, f) / x.len() as f64 + 1e-20).log10()
}

fn music_file(dir: &Path, secs: f32) -> PathBuf {
    let p = dir.join("music.wav");
    wav_sine(&p, 48_000, 2, secs, 1000.0, 0.3);
    p
}

/// Levels (dB) of mic (300 Hz) and music (1 kHz) in the published and local audio over the
/// last second of a 2 s run.
fn levels(opts: PlayOptions, after: impl Fn(&mut MusicPlayer)) -> [f64; 4] {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut player, voice) =
        MusicPlayer::open(&MusicSource::File(music_file(dir.path(), 4.0)), opts).expect("open");
    let mut e = EngineRun::new();
    assert!(e.core.apply(Control::AddMusic(voice)).is_none());
    e.run(50, 0.2, &[&player]);
    after(&mut player);
    e.run(150, 0.2, &[&player]);
    let p = &e.published[e.published.len() - 48_000..];
    let l = &e.local[e.local.len() - 48_000..];
    [
        power_db(p, 300.0),
        power_db(p, 1000.0),
        power_db(l, 300.0),
        power_db(l, 1000.0),
    ]
}

#[test]
fn loopback_replace_and_the_two_volumes_measured_on_the_published_stream() {
    let base = levels(PlayOptions::default(), |_| {});
    // Normal: mic and music published, music heard locally (the mic is not: no ear monitor).
    assert!(base[0] > -30.0 && base[1] > -30.0, "{base:?}");
    assert!(base[3] > -30.0 && base[2] < base[3] - 60.0, "{base:?}");
    let lb = levels(
        PlayOptions {
            loopback: true,
            ..PlayOptions::default()
        },
        |_| {},
    );
    assert!(
        lb[1] < base[1] - 50.0,
        "loopback music published: {lb:?} vs {base:?}"
    );
    assert!(
        (lb[0] - base[0]).abs() < 1.0 && (lb[3] - base[3]).abs() < 0.1,
        "{lb:?}"
    );
    let rp = levels(
        PlayOptions {
            replace: true,
            ..PlayOptions::default()
        },
        |_| {},
    );
    assert!(
        rp[0] < base[0] - 50.0,
        "replace left the mic in: {rp:?} vs {base:?}"
    );
    assert!((rp[1] - base[1]).abs() < 1.0, "{rp:?}");
    // Volumes: each moves only its own path (−6 dB = 0.5).
    let pv = levels(PlayOptions::default(), |p| {
        p.command(MusicCommand::SetPublishVolume { volume: 0.5 })
    });
    assert!(
        (pv[1] - base[1] + 6.02).abs() < 0.7,
        "publish volume: {pv:?} vs {base:?}"
    );
    assert!(
        (pv[3] - base[3]).abs() < 0.05,
        "publish volume moved local: {pv:?}"
    );
    let lv = levels(PlayOptions::default(), |p| {
        p.command(MusicCommand::SetPlayoutVolume { volume: 0.5 })
    });
    assert!(
        (lv[3] - base[3] + 6.02).abs() < 0.1,
        "playout volume: {lv:?} vs {base:?}"
    );
    assert!(
        (lv[1] - base[1]).abs() < 0.7,
        "playout volume moved published: {lv:?}"
    );
    // Switched live: loopback on after 0.5 s takes the music out of the published stream.
    let live = levels(PlayOptions::default(), |p| {
        p.command(MusicCommand::SetLoopback { loopback: true })
    });
    assert!(live[1] < base[1] - 50.0, "{live:?}");
}

#[test]
fn cycle_two_plays_twice_then_finishes_and_minus_one_loops() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("short.wav");
    wav_sine(&p, 44_100, 1, 0.5, 1000.0, 0.5);
    let (mut player, voice) = MusicPlayer::open(
        &MusicSource::File(p.clone()),
        PlayOptions {
            cycle: 2,
            ..PlayOptions::default()
        },
    )
    .expect("open");
    let mut bus = MusicBus::new();
    bus.add(voice).expect("room");
    let out = play_to_end(&mut player, &mut bus, 400);
    let loud = out
        .chunks(BLOCK_FRAMES)
        .filter(|b| onmic_audio::test_signals::rms(b) > 0.1)
        .count();
    assert!(
        (99..=101).contains(&loud),
        "{loud} loud blocks, expected 100"
    );
    let ev = player.events();
    let ends: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, MusicEvent::CycleEnded { .. } | MusicEvent::Finished))
        .collect();
    assert_eq!(
        ends,
        [
            &MusicEvent::CycleEnded { cycle: 0 },
            &MusicEvent::CycleEnded { cycle: 1 },
            &MusicEvent::Finished
        ]
    );
    assert!(ev.contains(&MusicEvent::State {
        state: PlayerState::Finished
    }));
    // Forever: still playing after five passes.
    let (mut player, voice) = MusicPlayer::open(
        &MusicSource::File(p),
        PlayOptions {
            cycle: -1,
            ..PlayOptions::default()
        },
    )
    .expect("open");
    let mut bus = MusicBus::new();
    bus.add(voice).expect("room");
    let (mut pb, mut lb) = (Block::silent(2), Block::silent(2));
    for _ in 0..260 {
        wait_ready(&player);
        bus.mix(0.0, &mut pb, &mut lb);
    }
    assert_eq!(player.state(), PlayerState::Playing);
    let cycles = player
        .events()
        .iter()
        .filter(|e| matches!(e, MusicEvent::CycleEnded { .. }))
        .count();
    assert_eq!(cycles, 5);
}

#[test]
fn pause_and_seek_land_within_one_block() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("ramp.wav");
    let total = 96_000;
    wav_ramp(&p, total);
    let (mut player, voice) =
        MusicPlayer::open(&MusicSource::File(p), PlayOptions::default()).expect("open");
    assert_eq!(player.duration_ms(), Some(2000));
    let mut bus = MusicBus::new();
    bus.add(voice).expect("room");
    let (mut pb, mut lb) = (Block::silent(2), Block::silent(2));
    let at = |b: &Block, i: usize| (b.channel(0)[i] * total as f32).round() as i64;
    for k in 0..30 {
        wait_ready(&player);
        bus.mix(0.0, &mut pb, &mut lb);
        assert_eq!(at(&lb, 0), k * 480, "block {k} starts where it should");
    }
    player.pause();
    bus.mix(0.0, &mut pb, &mut lb);
    assert_eq!(lb.peak(), 0.0, "the next block after pause is silent");
    assert_eq!(player.position_frames(), 30 * 480);
    for _ in 0..10 {
        bus.mix(0.0, &mut pb, &mut lb);
    }
    assert_eq!(player.state(), PlayerState::Paused);
    player.resume();
    wait_ready(&player);
    bus.mix(0.0, &mut pb, &mut lb);
    assert_eq!(at(&lb, 0), 30 * 480, "resumes where it paused");
    for target_ms in [1500u64, 250, 0, 1999] {
        player.seek(target_ms);
        assert_eq!(player.position_ms(), target_ms);
        // The decode thread refills after the DSP side drops what it had queued.
        let t = Instant::now();
        loop {
            bus.mix(0.0, &mut pb, &mut lb);
            if lb.peak() > 0.0 || target_ms == 0 && lb.channel(1)[0] > 0.0 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "no audio after seek to {target_ms}: {:?} {:?}",
                player.state(),
                player.events()
            );
            wait_ready(&player);
        }
        let got = at(&lb, 0);
        let want = (target_ms * 48) as i64;
        assert!(
            (got - want).abs() <= 480,
            "seek to {target_ms} ms played from frame {got}, want {want}"
        );
    }
    let states: Vec<_> = player
        .events()
        .into_iter()
        .filter(|e| matches!(e, MusicEvent::State { .. }))
        .collect();
    assert_eq!(
        states,
        [
            MusicEvent::State {
                state: PlayerState::Playing
            },
            MusicEvent::State {
                state: PlayerState::Paused
            },
            MusicEvent::State {
                state: PlayerState::Playing
            },
            // The last seek (to 1999 ms) plays the final millisecond and ends.
            MusicEvent::State {
                state: PlayerState::Finished
            },
        ]
    );
}

#[test]
fn ducking_lowers_the_music_by_its_amount_within_its_attack() {
    let dir = tempfile::tempdir().expect("tmp");
    let ducking = Ducking {
        enabled: true,
        amount_db: 12.0,
        attack_ms: 50.0,
        release_ms: 200.0,
        threshold_dbfs: -40.0,
    };
    let (player, voice) = MusicPlayer::open(
        &MusicSource::File(music_file(dir.path(), 4.0)),
        PlayOptions {
            ducking,
            ..PlayOptions::default()
        },
    )
    .expect("open");
    let mut e = EngineRun::new();
    assert!(e.core.apply(Control::AddMusic(voice)).is_none());
    e.run(50, 0.0, &[&player]);
    let quiet = onmic_audio::test_signals::rms(&e.local[e.local.len() - 4800..]);
    let onset = e.local.len();
    e.run(50, 0.2, &[&player]);
    // Within the attack plus one block (ducking hears the previous block's voice).
    let after = 50 * 48 + 2 * BLOCK_FRAMES;
    let ducked = onmic_audio::test_signals::rms(&e.local[onset + after..onset + after + 4800]);
    let db = 20.0 * (ducked / quiet).log10();
    assert!((db + 12.0).abs() < 0.5, "ducked by {db:.2} dB");
    // Halfway through the attack it is on its way, not there.
    let half = onmic_audio::test_signals::rms(&e.local[onset + 35 * 48..onset + 35 * 48 + 480]);
    let hdb = 20.0 * (half / quiet).log10();
    assert!(hdb < -2.0 && hdb > -10.0, "at 25 ms: {hdb:.2} dB");
    // Release.
    let off = e.local.len();
    e.run(60, 0.0, &[&player]);
    let back = onmic_audio::test_signals::rms(&e.local[off + 250 * 48..off + 250 * 48 + 4800]);
    assert!((20.0 * (back / quiet).log10()).abs() < 0.3);
}

#[test]
fn pcm_injection_44k1_mono_comes_out_48k_stereo_at_pitch() {
    let (mut inj, voice) = PcmInjector::new(true);
    let mut e = EngineRun::new();
    assert!(e.core.apply(Control::AddMusic(voice)).is_none());
    let tone: Vec<f32> = (0..44_100 * 3)
        .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 44_100.0).sin() * 0.4)
        .collect();
    let mut fed = 0;
    let mut out = Block::silent(2);
    let mut right = Vec::new();
    for _ in 0..250 {
        // Push 10 ms of 44.1 kHz at a time, as an SDK callback would.
        if fed < tone.len() {
            inj.push(&tone[fed..fed + 441], 44_100, 1).expect("push");
            fed += 441;
        }
        let mut mic = Block::silent(2);
        e.core.process(&mut mic, None, &mut out);
        e.local.extend_from_slice(out.channel(0));
        right.extend_from_slice(out.channel(1));
    }
    let l = &e.local[24_000..120_000];
    let f = dominant_frequency(l, 430.0, 450.0, 0.25);
    assert!((f - 440.0).abs() < 1.0, "{f} Hz");
    assert_eq!(&right[24_000..120_000], l, "stereo: both sides");
    assert!((onmic_audio::test_signals::rms(l) - 0.4 / 2f32.sqrt()).abs() < 0.02);
    assert_eq!(inj.dropped_frames(), 0);
}

/// Published packets and local output of a 3 s run where the mic is a 300 Hz tone and a PCM
/// injector (if any) is fed `feed_blocks` blocks of a 440 Hz tone, then starves. Voice mode,
/// with or without its echo canceller. The classic NS is off: it takes the steady 300 Hz
/// "microphone" for noise and cuts it to its floor, and the AGC lifts it back at 12 dB/s only
/// while the AEC calls its output near end, so after an injected second the mic's level lagged
/// the run without injection by 9 dB at 2.5–3 s and 2.7 dB at 4.5–5 s: the NS's and AGC's
/// adaptation to a test tone, not the injector's doing, which is what this compares.
fn injection_run(with: Option<(bool, u64)>, aec: bool) -> (Vec<Vec<u8>>, Vec<f32>) {
    let mut chain = ChainConfig::for_mode(Mode::Voice);
    chain.toggles.aec = aec;
    chain.toggles.ns = false;
    let cfg = EngineConfig {
        chain,
        capture_channels: 1,
        ..EngineConfig::default()
    };
    let mut core = EngineCore::new(&cfg).expect("core");
    let mut inj = with.map(|(local, _)| {
        let (inj, voice) = PcmInjector::new(local);
        assert!(core.apply(Control::AddMusic(voice)).is_none());
        inj
    });
    let feed = with.map_or(0, |w| w.1);
    let mut packets = Vec::new();
    let mut local = Vec::new();
    let mut out = Block::silent(2);
    for n in 0..300u64 {
        if let Some(i) = inj.as_mut()
            && n < feed
        {
            let b = sine_block(440.0, 0.3, n, 1);
            i.push(b.channel(0), 48_000, 1).expect("push");
        }
        let mut mic = sine_block(300.0, 0.2, n, 1);
        let (o, _) = core.process(&mut mic, None, &mut out);
        if let Some(p) = o.packet {
            packets.push(p.payload().to_vec());
        }
        local.extend_from_slice(out.channel(0));
    }
    (packets, local)
}

#[test]
fn local_playback_moves_only_the_local_output_and_an_underrun_leaves_the_mic_bit_identical() {
    // Starved from the start: the published stream is byte for byte the one without injection.
    let (none, none_local) = injection_run(None, true);
    let (starved, starved_local) = injection_run(Some((true, 0)), true);
    assert!(
        none == starved,
        "an injector with nothing queued changed the mic path"
    );
    assert!(none_local == starved_local);
    // Fed for 1 s then starved: after it drains, packets again equal the run without it.
    // Fed for 1 s, then starved: the tone was published, then only the microphone is, at the
    // level it has without injection.
    let (fed, fed_local) = injection_run(Some((true, 100)), true);
    let dec = |packets: &[Vec<u8>]| {
        let mut d = OpusDecoder::new().expect("dec");
        let mut pcm = vec![0.0f32; MAX_DECODE_FRAMES * 2];
        let mut v = Vec::new();
        for p in packets {
            let n = d.decode(p, &mut pcm).expect("decode");
            v.extend(pcm[..n * 2].iter().step_by(2));
        }
        v
    };
    let (a, b) = (dec(&fed), dec(&none));
    assert!(
        power_db(&a[9600..48_000], 440.0) > -25.0,
        "the injected tone was published"
    );
    let gap_a = &a[120_000..144_000];
    let gap_b = &b[120_000..144_000];
    assert!(
        power_db(gap_a, 440.0) < power_db(gap_a, 300.0) - 60.0,
        "tone left after underrun: 440 Hz {:.1} dB, 300 Hz {:.1} dB (without injection {:.1} dB)",
        power_db(gap_a, 440.0),
        power_db(gap_a, 300.0),
        power_db(gap_b, 300.0)
    );
    assert!(
        (power_db(gap_a, 300.0) - power_db(gap_b, 300.0)).abs() < 0.5,
        "after the underrun the microphone's 300 Hz is {:.1} dB, without injection {:.1} dB",
        power_db(gap_a, 300.0),
        power_db(gap_b, 300.0)
    );
    // local_playback off: the same tone published, nothing local. Routing alone is compared with
    // the echo canceller off (its reference is the local output, so with it on the two runs
    // differ by design): the published levels must agree within 0.1 dB.
    let (fed_loud, _) = injection_run(Some((true, 100)), false);
    let (fed_quiet, quiet_local) = injection_run(Some((false, 100)), false);
    let (l, q) = (dec(&fed_loud), dec(&fed_quiet));
    for f in [300.0, 440.0] {
        let (x, y) = (power_db(&l[9600..48_000], f), power_db(&q[9600..48_000], f));
        assert!(
            (x - y).abs() < 0.1,
            "local_playback moved the published {f} Hz: {x} vs {y}"
        );
    }
    // With the echo canceller on, a 440 Hz reference that never echoes may cost the near end's
    // 300 Hz at most 1 dB (its residual-echo suppressor; 0.8 dB measured, docs/music.md).
    let (fed_quiet_aec, _) = injection_run(Some((false, 100)), true);
    let qa = dec(&fed_quiet_aec);
    let (x, y) = (
        power_db(&a[9600..48_000], 300.0),
        power_db(&qa[9600..48_000], 300.0),
    );
    assert!(
        (x - y).abs() < 1.0,
        "with the AEC on, the local reference moved the near end by {:.2} dB",
        x - y
    );
    assert!(power_db(&fed_local[4800..48_000], 440.0) > -20.0);
    assert!(power_db(&quiet_local[4800..48_000], 440.0) < -100.0);
}

#[test]
fn socket_input_feeds_the_injector_over_tcp_and_unix_sockets() {
    let dir = tempfile::tempdir().expect("tmp");
    let tone: Vec<u8> = (0..44_100)
        .flat_map(|i| {
            let s = ((2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 44_100.0).sin()
                * 0.4
                * 32767.0) as i16;
            s.to_le_bytes()
        })
        .collect();
    let header = PcmHeader {
        rate: 44_100,
        channels: 1,
        format: FORMAT_S16LE,
    };
    for unix in [false, true] {
        let (inj, voice) = PcmInjector::new(true);
        let path = dir.path().join("pcm.sock");
        let input = if unix {
            SocketInput::bind_unix(&path, inj).expect("unix")
        } else {
            SocketInput::bind_tcp("127.0.0.1:0".parse().expect("addr"), inj).expect("tcp")
        };
        let mut conn: Box<dyn Write> = if unix {
            Box::new(std::os::unix::net::UnixStream::connect(&path).expect("connect"))
        } else {
            Box::new(std::net::TcpStream::connect(input.local_addr.expect("addr")).expect("c"))
        };
        conn.write_all(&header.to_bytes()).expect("header");
        // 0.4 s (fits the injector's 0.5 s ring without the engine draining it).
        conn.write_all(&tone[..2 * 17_640]).expect("pcm");
        drop(conn);
        let t = Instant::now();
        while input
            .stats
            .frames
            .load(std::sync::atomic::Ordering::Relaxed)
            < 17_640
        {
            assert!(t.elapsed() < Duration::from_secs(5), "socket input stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut bus = MusicBus::new();
        bus.add(voice).expect("room");
        let (mut pb, mut lb) = (Block::silent(2), Block::silent(2));
        let mut out = Vec::new();
        for _ in 0..38 {
            bus.mix(0.0, &mut pb, &mut lb);
            out.extend_from_slice(lb.channel(0));
        }
        let f = dominant_frequency(&out[2400..], 950.0, 1050.0, 0.5);
        assert!((f - 1000.0).abs() < 1.0, "unix={unix}: {f} Hz");
        // A bad header is refused and counted.
        let mut bad: Box<dyn Write> = if unix {
            Box::new(std::os::unix::net::UnixStream::connect(&path).expect("connect"))
        } else {
            Box::new(std::net::TcpStream::connect(input.local_addr.expect("addr")).expect("c"))
        };
        bad.write_all(b"RIFF\0\0\0\0WAVE").expect("w");
        drop(bad);
        let t = Instant::now();
        while input
            .stats
            .bad_headers
            .load(std::sync::atomic::Ordering::Relaxed)
            < 1
        {
            assert!(t.elapsed() < Duration::from_secs(5), "bad header not seen");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(input.stop().is_some());
    }
    let (inj, _) = PcmInjector::new(true);
    let e = SocketInput::bind_tcp("0.0.0.0:0".parse().expect("addr"), inj).expect_err("public");
    assert!(e.to_string().contains("loopback"), "{e}");
}

#[test]
fn commands_and_events_are_serialisable() {
    let c = MusicCommand::Seek { position_ms: 1234 };
    let j = serde_json::to_string(&c).expect("json");
    assert_eq!(j, r#"{"cmd":"seek","position_ms":1234}"#);
    assert_eq!(serde_json::from_str::<MusicCommand>(&j).expect("back"), c);
    let e = MusicEvent::State {
        state: PlayerState::Finished,
    };
    assert_eq!(
        serde_json::to_string(&e).expect("json"),
        r#"{"event":"state","state":"finished"}"#
    );
}

#[test]
fn key_shift_moves_the_pitch_and_keeps_the_length() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("a440.wav");
    wav_sine(&p, 44_100, 1, 3.0, 440.0, 0.5);
    for (semis, want) in [(3, 523.25f32), (-12, 220.0), (12, 880.0), (0, 440.0)] {
        let (mut player, voice) = MusicPlayer::open(
            &MusicSource::File(p.clone()),
            PlayOptions {
                key_shift: semis,
                ..PlayOptions::default()
            },
        )
        .expect("open");
        let mut bus = MusicBus::new();
        bus.add(voice).expect("room");
        let out = play_to_end(&mut player, &mut bus, 400);
        assert_eq!(
            player.position_frames(),
            144_000,
            "{semis:+}: the song's length changed"
        );
        let mid = &out[24_000..120_000];
        let f = dominant_frequency(mid, want - 30.0, want + 30.0, 0.5);
        assert!(
            (f - want).abs() < 3.0,
            "{semis:+} semitones: {f} Hz, want {want}"
        );
        // Still loud right up to the end, silent after it: no tempo change.
        let tail = onmic_audio::test_signals::rms(&out[139_200..143_520]);
        assert!(tail > 0.2, "{semis:+}: the end is quiet ({tail})");
    }
    let e = MusicPlayer::open(
        &MusicSource::File(p),
        PlayOptions {
            key_shift: 13,
            ..PlayOptions::default()
        },
    )
    .expect_err("13 semitones");
    assert!(matches!(e, MusicError::Invalid(_)), "{e}");
}

#[test]
fn crossfade_leaves_no_gap() {
    let dir = tempfile::tempdir().expect("tmp");
    let (a, b) = (dir.path().join("a.wav"), dir.path().join("b.flac"));
    wav_sine(&a, 44_100, 2, 4.0, 440.0, 0.4);
    let b_wav = dir.path().join("b.wav");
    wav_sine(&b_wav, 48_000, 2, 4.0, 660.0, 0.4);
    ffmpeg(&b_wav, &b, &["-c:a", "flac"]);
    for fade_ms in [500u32, 2000] {
        let (mut pa, va) =
            MusicPlayer::open(&MusicSource::File(a.clone()), PlayOptions::default()).expect("a");
        let mut e = EngineRun::new();
        assert!(e.core.apply(Control::AddMusic(va)).is_none());
        e.run(50, 0.0, &[&pa]);
        // The crossfade: A fades out while B, added for the same block, fades in.
        pa.command(MusicCommand::FadeOut { ms: fade_ms });
        let (pb, vb) = MusicPlayer::open(
            &MusicSource::File(b.clone()),
            PlayOptions {
                fade_in_ms: fade_ms,
                ..PlayOptions::default()
            },
        )
        .expect("b");
        wait_ready(&pb);
        assert!(e.core.apply(Control::AddMusic(vb)).is_none());
        let from = e.local.len();
        let blocks = u64::from(fade_ms / 10) + 50;
        e.run(blocks, 0.0, &[&pa, &pb]);
        let level = onmic_audio::test_signals::rms(&e.local[from - 4800..from]);
        let lowest = e.local[from..]
            .chunks(BLOCK_FRAMES)
            .map(onmic_audio::test_signals::rms)
            .fold(f32::MAX, f32::min);
        let dip = 20.0 * (lowest / level).log10();
        assert!(dip > -6.0, "{fade_ms} ms crossfade dips {dip:.2} dB");
        let tail = &e.local[e.local.len() - 9_600..];
        assert!(
            power_db(tail, 440.0) < power_db(tail, 660.0) - 60.0,
            "A is gone"
        );
        assert_eq!(pa.state(), PlayerState::Stopped);
        println!("{fade_ms} ms crossfade: lowest block {dip:.2} dB against the tracks' level");
    }
}
