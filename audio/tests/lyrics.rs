//! LRC lyrics (issue 13, acceptance 6, engine half): the parser on well-formed and malformed
//! input (clear errors, never a panic), and the line shown at several positions and after seeks
//! of a real player.

use std::time::{Duration, Instant};

use onmic_audio::Block;
use onmic_audio::music::lyrics::{LrcError, Lyrics};
use onmic_audio::music::{MusicBus, MusicPlayer, MusicSource, PlayOptions};

const SONG: &str = "\u{feff}[ti:Test Song]\n[ar:Onmic]\n\n[00:00.50]first line\n[00:01.20][00:03.00]chorus\n[00:02.1]second\n[00:04.500]last\n";

#[test]
fn parses_tags_repeated_times_and_fraction_widths() {
    let l = Lyrics::parse(SONG).expect("parse");
    assert_eq!(l.tags[0], ("ti".to_owned(), "Test Song".to_owned()));
    let times: Vec<(u64, &str)> = l.lines.iter().map(|x| (x.at_ms, x.text.as_str())).collect();
    assert_eq!(
        times,
        [
            (500, "first line"),
            (1200, "chorus"),
            (2100, "second"),
            (3000, "chorus"),
            (4500, "last")
        ]
    );
    let text = |ms| l.line_at(ms).map(|x| x.text.as_str());
    assert_eq!(text(0), None);
    assert_eq!(text(499), None);
    assert_eq!(text(500), Some("first line"));
    assert_eq!(text(1199), Some("first line"));
    assert_eq!(text(2500), Some("second"));
    assert_eq!(text(3000), Some("chorus"));
    assert_eq!(text(99_000), Some("last"));
    // An offset shifts every line earlier.
    let shifted = Lyrics::parse("[offset:+200]\n[00:01.00]a\n[00:00.10]b").expect("parse");
    assert_eq!(shifted.lines[0].at_ms, 0);
    assert_eq!(shifted.lines[1].at_ms, 800);
}

#[test]
fn malformed_lyrics_give_clear_errors() {
    let cases: &[(&str, &str)] = &[
        ("", "no timed line"),
        ("[ti:only tags]", "no timed line"),
        ("just text", "line 1: text without a time tag"),
        (
            "[00:01.00]ok\n[00:61.00]bad seconds",
            "line 2: [00:61.00] is not a time",
        ),
        ("[00:01.00", "line 1: a '[' without its ']'"),
        ("[0a:01]x", "is not a time"),
        ("[00:01.0000]x", "is not a time"),
        ("[:01]x", "neither a time nor a key:value"),
        ("[hello]x", "neither a time nor a key:value"),
        ("[offset:soon]\n[00:01]x", "not a whole number of ms"),
        ("[ti:x] trailing", "text after the [ti:x] tag"),
        ("[00:01]x\n[01:02.3][ar:y]z", "after a time tag"),
        ("[99999999999:00]x", "is not a time"),
    ];
    for (text, want) in cases {
        let e = Lyrics::parse(text).expect_err(text).to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
    assert!(matches!(
        Lyrics::parse(&"[00:01]x\n".repeat(200_000)),
        Err(LrcError::TooLarge(_))
    ));
    // Arbitrary bytes never panic.
    let mut seed = 7u64;
    for _ in 0..2000 {
        let len = (seed % 40) as usize;
        let s: String = (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"[]:.0123456789ab \n+-\xe4"[(seed >> 33) as usize % 21] as char
            })
            .collect();
        let _ = Lyrics::parse(&s);
    }
}

fn wav(secs: f32) -> Vec<u8> {
    let mut cur = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut cur, spec).expect("wav");
    for i in 0..(48_000.0 * secs) as usize {
        w.write_sample(((i as f32 * 0.05).sin() * 8000.0) as i16)
            .expect("s");
    }
    w.finalize().expect("finalize");
    cur.into_inner()
}

#[test]
fn the_line_follows_playback_and_seeks_of_a_real_player() {
    let lyrics = Lyrics::parse(SONG).expect("parse");
    let source = MusicSource::Memory(wav(5.0).into());
    let (mut player, voice) = MusicPlayer::open(&source, PlayOptions::default()).expect("open");
    let mut bus = MusicBus::new();
    bus.add(voice).expect("add");
    let (mut p, mut l) = (Block::silent(2), Block::silent(2));
    let mut play_ms = |player: &MusicPlayer, bus: &mut MusicBus, ms: u64| {
        for _ in 0..ms / 10 {
            let t = Instant::now();
            while player.buffered_chunks() == 0
                && !player.decoder_done()
                && t.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_micros(200));
            }
            bus.mix(0.0, &mut p, &mut l);
        }
    };
    let shown = |player: &MusicPlayer| lyrics.line_at(player.position_ms()).map(|x| x.text.clone());
    play_ms(&player, &mut bus, 300);
    assert_eq!(shown(&player), None, "at {} ms", player.position_ms());
    play_ms(&player, &mut bus, 400);
    assert_eq!(
        shown(&player).as_deref(),
        Some("first line"),
        "at {} ms",
        player.position_ms()
    );
    play_ms(&player, &mut bus, 1000);
    assert_eq!(
        shown(&player).as_deref(),
        Some("chorus"),
        "at {} ms",
        player.position_ms()
    );
    player.seek(4_600);
    play_ms(&player, &mut bus, 20);
    assert_eq!(
        shown(&player).as_deref(),
        Some("last"),
        "after seek, at {} ms",
        player.position_ms()
    );
    player.seek(2_200);
    play_ms(&player, &mut bus, 20);
    assert_eq!(
        shown(&player).as_deref(),
        Some("second"),
        "after seek back, at {} ms",
        player.position_ms()
    );
    player.seek(100);
    assert_eq!(
        shown(&player),
        None,
        "after seek to the start, at {} ms",
        player.position_ms()
    );
}
