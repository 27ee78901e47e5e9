//! Issue 13, sound pads and the DJ deck's playlist, through the engine's real per-block path
//! (`EngineCore`: the chain, the music bus, the Opus encoder; the published stream decoded
//! again): a fired pad lands in the published stream and/or the local output as its route says,
//! on the next block; several pads sound at once; the playlist's auto-advance crossfades leave no
//! gap (acceptance 8, first half: no 10 ms block more than 6 dB under the tracks' level).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use onmic_audio::chain::{ChainConfig, Mode};
use onmic_audio::engine::{Control, EngineConfig, EngineCore};
use onmic_audio::music::pads::{PadBank, PadEvent, PadRoute};
use onmic_audio::music::playlist::{Playlist, PlaylistEvent, PlaylistOptions, Track};
use onmic_audio::music::{MusicPlayer, MusicSource};
use onmic_audio::opus::{MAX_DECODE_FRAMES, OpusDecoder};
use onmic_audio::test_signals::{goertzel_power, rms, sine_block};
use onmic_audio::{BLOCK_FRAMES, Block};

fn sox(args: &[&str], out: &Path, synth: &[&str]) {
    let st = Command::new("sox")
        .args(["-n"])
        .args(args)
        .arg(out)
        .args(synth)
        .status()
        .expect("sox runs (xtask installs it)");
    assert!(st.success(), "sox made {}", out.display());
}

fn ffmpeg(src: &Path, dst: &Path, args: &[&str]) {
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(src)
        .args(args)
        .arg(dst)
        .status()
        .expect("ffmpeg runs");
    assert!(st.success(), "ffmpeg made {}", dst.display());
}

/// Level of the `f` component as dB of its amplitude (a sine of amplitude 0.3 reads −10.5 dB).
fn power_db(x: &[f32], f: f32) -> f64 {
    let n = x.len() as f64;
    10.0 * (goertzel_power(x, f) * 4.0 / (n * n) + 1e-20).log10()
}

struct Run {
    core: EngineCore,
    dec: OpusDecoder,
    published: Vec<f32>,
    local: Vec<f32>,
    block: u64,
}

impl Run {
    fn new() -> Run {
        let cfg = EngineConfig {
            chain: ChainConfig::for_mode(Mode::Soundcard),
            ..EngineConfig::default()
        };
        Run {
            core: EngineCore::new(&cfg).expect("core"),
            dec: OpusDecoder::new().expect("dec"),
            published: Vec::new(),
            local: Vec::new(),
            block: 0,
        }
    }

    /// One block with a quiet 300 Hz microphone.
    fn step(&mut self) {
        let mut out = Block::silent(2);
        let mut pcm = vec![0.0f32; MAX_DECODE_FRAMES * 2];
        let mut mic = sine_block(300.0, 0.05, self.block, 2);
        let (o, g) = self.core.process(&mut mic, None, &mut out);
        drop(g);
        if let Some(p) = o.packet {
            let n = self.dec.decode(p.payload(), &mut pcm).expect("decode");
            self.published.extend(pcm[..n * 2].iter().step_by(2));
        }
        self.local.extend_from_slice(out.channel(0));
        self.block += 1;
    }
}

#[test]
fn pads_fire_into_the_published_stream_and_or_the_local_output_on_the_next_block() {
    let dir = tempfile::tempdir().expect("tmp");
    // Two clips as a host would load them: 44.1 kHz files of 0.6 s (resampled when loaded).
    let (a, b) = (dir.path().join("a.wav"), dir.path().join("b.flac"));
    sox(
        &["-r", "44100", "-c", "2"],
        &a,
        &["synth", "0.6", "sine", "700", "vol", "0.4"],
    );
    let b_wav = dir.path().join("b.wav");
    sox(
        &["-r", "44100", "-c", "1"],
        &b_wav,
        &["synth", "0.6", "sine", "1300", "vol", "0.4"],
    );
    ffmpeg(&b_wav, &b, &["-c:a", "flac"]);
    let (mut bank, voice) = PadBank::new();
    let pa = bank.load(&MusicSource::File(a)).expect("load a");
    let pb = bank.load(&MusicSource::File(b)).expect("load b");
    let info = bank.pads();
    assert_eq!(info.len(), 2);
    assert!((info[0].duration_ms as i64 - 600).abs() <= 1, "{info:?}");
    assert_eq!(
        info[0].bytes,
        28_800 * 2 * 4,
        "decoded to 48 kHz stereo f32"
    );
    let mut r = Run::new();
    assert!(r.core.apply(Control::AddMusic(voice)).is_none());
    for _ in 0..20 {
        r.step();
    }

    // Each route, then both pads at once on both paths.
    let cases: [(&str, &[(onmic_audio::music::pads::PadId, PadRoute)]); 3] = [
        (
            "a published only",
            &[(
                pa,
                PadRoute {
                    publish: true,
                    local: false,
                },
            )],
        ),
        (
            "b local only",
            &[(
                pb,
                PadRoute {
                    publish: false,
                    local: true,
                },
            )],
        ),
        (
            "a and b on both",
            &[(pa, PadRoute::default()), (pb, PadRoute::default())],
        ),
    ];
    for (name, fires) in cases {
        for (pad, route) in fires {
            bank.fire(*pad, *route).expect("fire");
        }
        let (p0, l0) = (r.published.len(), r.local.len());
        r.step();
        // The clip starts at the first sample of the next block in the local output.
        let first = &r.local[l0..];
        let any_local = fires.iter().any(|(_, rt)| rt.local);
        if any_local {
            assert!(
                rms(first) > 0.1,
                "{name}: the first block after the fire sounds"
            );
        } else {
            assert!(rms(first) < 0.01, "{name}: nothing local");
        }
        for _ in 0..50 {
            r.step();
        }
        // 0.1–0.5 s after the fire (the published stream runs a few ms behind: Opus).
        let pub_w = &r.published[p0 + 4_800..p0 + 24_000];
        let loc_w = &r.local[l0 + 4_800..l0 + 24_000];
        for (pad, f) in [(pa, 700.0), (pb, 1300.0)] {
            let route = fires.iter().find(|(p, _)| *p == pad).map(|(_, rt)| *rt);
            let (want_p, want_l) = route.map_or((false, false), |rt| (rt.publish, rt.local));
            let (dp, dl) = (power_db(pub_w, f), power_db(loc_w, f));
            println!("{name}: {f} Hz published {dp:.1} dB, local {dl:.1} dB");
            // A 0.4 sine reads −8 dB; absent means more than 50 dB below that.
            assert_eq!(dp > -12.0, want_p, "{name}: {f} Hz published {dp:.1} dB");
            assert_eq!(dl > -12.0, want_l, "{name}: {f} Hz local {dl:.1} dB");
            if !want_p {
                assert!(dp < -60.0, "{name}: {f} Hz leaks into published {dp:.1} dB");
            }
            if !want_l {
                assert!(dl < -60.0, "{name}: {f} Hz leaks locally {dl:.1} dB");
            }
        }
        // The microphone is still there.
        assert!(power_db(pub_w, 300.0) > -40.0, "{name}: mic kept");
        for _ in 0..20 {
            r.step();
        }
        let ev = bank.events();
        let ended = ev
            .iter()
            .filter(|e| matches!(e, PadEvent::Ended { cut: false, .. }))
            .count();
        assert_eq!(ended, fires.len(), "{name}: {ev:?}");
        assert_eq!(bank.sounding(), 0);
    }

    // Stop: a long fire cut after 100 ms fades out within 5 ms and reports `cut`.
    let n = bank.fire(pa, PadRoute::default()).expect("fire");
    for _ in 0..10 {
        r.step();
    }
    bank.stop(pa).expect("stop");
    let l0 = r.local.len();
    for _ in 0..3 {
        r.step();
    }
    assert!(rms(&r.local[l0 + BLOCK_FRAMES..]) < 1e-3, "stopped");
    let ev = bank.events();
    assert!(
        ev.contains(&PadEvent::Ended {
            pad: pa,
            fire: n,
            cut: true
        }),
        "{ev:?}"
    );
    // Bad input: an unknown pad, an over-long clip.
    assert!(
        bank.fire(onmic_audio::music::pads::PadId(40), PadRoute::default())
            .is_err()
    );
    assert!(bank.load_pcm("long", vec![0.0; 48_000 * 2 * 31]).is_err());
    assert!(bank.load_pcm("odd", vec![0.0; 3]).is_err());
    assert!(bank.load_pcm("nan", vec![f32::NAN; 2]).is_err());
}

fn wait_ready(p: &MusicPlayer) {
    let t = Instant::now();
    while p.buffered_chunks() < 2 && !p.decoder_done() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn playlist_auto_advance_crossfades_without_a_gap() {
    let dir = tempfile::tempdir().expect("tmp");
    // Three tracks in three formats and rates, same level, different tones.
    let a = dir.path().join("a.wav");
    sox(
        &["-r", "44100", "-c", "2"],
        &a,
        &["synth", "3", "sine", "440", "vol", "0.4"],
    );
    let b_wav = dir.path().join("b.wav");
    sox(
        &["-r", "48000", "-c", "2"],
        &b_wav,
        &["synth", "3", "sine", "660", "vol", "0.4"],
    );
    let b = dir.path().join("b.flac");
    ffmpeg(&b_wav, &b, &["-c:a", "flac"]);
    let c_wav = dir.path().join("c.wav");
    sox(
        &["-r", "44100", "-c", "2"],
        &c_wav,
        &["synth", "3", "sine", "550", "vol", "0.4"],
    );
    let c = dir.path().join("c.ogg");
    ffmpeg(&c_wav, &c, &["-c:a", "libvorbis", "-q:a", "6"]);
    for fade_ms in [500u32, 1500] {
        let mut pl = Playlist::new(PlaylistOptions {
            crossfade_ms: fade_ms,
            ..PlaylistOptions::default()
        });
        for (i, p) in [&a, &b, &c].into_iter().enumerate() {
            pl.push(Track {
                source: MusicSource::File(p.clone()),
                title: format!("track {i}"),
            });
        }
        pl.play(0).expect("play");
        let mut r = Run::new();
        let mut events = Vec::new();
        let mut starts = Vec::new();
        for _ in 0..1200 {
            let poll = pl.poll();
            for v in poll.voices {
                assert!(r.core.apply(Control::AddMusic(v)).is_none());
            }
            for e in poll.events {
                if let PlaylistEvent::TrackStarted { index, .. } = &e {
                    starts.push((*index, r.local.len()));
                }
                if !matches!(e, PlaylistEvent::Player { .. }) {
                    events.push(e);
                }
            }
            if events.contains(&PlaylistEvent::Ended) {
                break;
            }
            // The test runs faster than real time: let every sounding track's decoder keep up.
            for (_, p) in pl.players() {
                wait_ready(p);
            }
            r.step();
        }
        let order: Vec<usize> = starts.iter().map(|s| s.0).collect();
        assert_eq!(order, vec![0, 1, 2], "{events:?}");
        assert!(events.contains(&PlaylistEvent::Ended), "{events:?}");
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, PlaylistEvent::TrackFailed { .. })),
            "{events:?}"
        );
        // The tracks' level, and the lowest 10 ms block from 0.1 s in until track 2 is alone.
        let level = rms(&r.local[9_600..48_000]);
        let until = starts[2].1 + fade_ms as usize * 48 + 4_800;
        let (lowest_at, lowest) = r.local[4_800..until]
            .chunks(BLOCK_FRAMES)
            .map(rms)
            .enumerate()
            .fold((0, f32::MAX), |m, (i, v)| if v < m.1 { (i, v) } else { m });
        let dip = 20.0 * (lowest / level).log10();
        println!(
            "playlist, {fade_ms} ms crossfades: lowest block {dip:.2} dB against the tracks' \
             level (block {lowest_at}); switches at {:?} s",
            starts
                .iter()
                .map(|s| s.1 as f32 / 48_000.0)
                .collect::<Vec<_>>()
        );
        if dip <= -6.0 {
            let around: Vec<String> = r.local[4_800..until]
                .chunks(BLOCK_FRAMES)
                .map(rms)
                .enumerate()
                .skip(lowest_at.saturating_sub(8))
                .take(16)
                .map(|(i, v)| format!("{i}:{:.1}", 20.0 * (v / level).log10()))
                .collect();
            println!("blocks around the dip: {}", around.join(" "));
        }
        assert!(dip > -6.0, "{fade_ms} ms: a gap of {dip:.2} dB");
        // Each crossfade really overlaps the two tracks (both tones in its middle) and the
        // switch came at the end of the track before (3 s minus the fade, within 0.1 s).
        for w in starts.windows(2) {
            let t = (w[1].1 - w[0].1) as f32 / 48_000.0;
            let want = 3.0 - fade_ms as f32 / 1000.0;
            assert!((t - want).abs() < 0.1, "switch after {t} s, want {want}");
            let mid = w[1].1 + fade_ms as usize * 24;
            let x = &r.local[mid - 2_400..mid + 2_400];
            let f = [440.0, 660.0, 550.0];
            assert!(power_db(x, f[w[0].0]) > -30.0 && power_db(x, f[w[1].0]) > -30.0);
        }
    }
}

#[test]
fn playlist_skips_a_track_that_cannot_open_and_reports_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = dir.path().join("a.wav");
    sox(
        &["-r", "48000", "-c", "2"],
        &a,
        &["synth", "1", "sine", "440", "vol", "0.4"],
    );
    let bad = dir.path().join("bad.mp3");
    std::fs::write(&bad, b"this is not an mp3 file at all, just text").expect("write");
    let mut pl = Playlist::new(PlaylistOptions {
        crossfade_ms: 300,
        ..PlaylistOptions::default()
    });
    for p in [&a, &bad, &a] {
        pl.push(Track {
            source: MusicSource::File(p.clone()),
            title: p.display().to_string(),
        });
    }
    assert!(
        pl.play(1).is_err(),
        "a bad track errors when played directly"
    );
    assert!(pl.play(7).is_err());
    pl.play(0).expect("play");
    let mut r = Run::new();
    let mut events = Vec::new();
    for _ in 0..400 {
        let poll = pl.poll();
        for v in poll.voices {
            assert!(r.core.apply(Control::AddMusic(v)).is_none());
        }
        events.extend(
            poll.events
                .into_iter()
                .filter(|e| !matches!(e, PlaylistEvent::Player { .. })),
        );
        if events.contains(&PlaylistEvent::Ended) {
            break;
        }
        if let Some(p) = pl.current_player() {
            wait_ready(p);
        }
        r.step();
    }
    let started: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            PlaylistEvent::TrackStarted { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec![0, 2], "{events:?}");
    assert!(
        events.iter().any(
            |e| matches!(e, PlaylistEvent::TrackFailed { index: 1, message } if !message.is_empty())
        ),
        "{events:?}"
    );
    assert!(events.contains(&PlaylistEvent::Ended));
    let json = serde_json::to_string(&events[0]).expect("json");
    assert!(json.contains("\"event\":\"track_started\""), "{json}");
}
