//! Music benchmark (issue 13, acceptance 9): per format, decode + resample to 48 kHz stereo per
//! 10 ms block, the DSP thread's mix per block, and memory per preloaded song. Prints figures.
//!
//! `cargo bench -p onmic-audio --bench music`

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use onmic_audio::music::{MusicBus, MusicSource, PcmInjector, decode_to_48k};
use onmic_audio::{BLOCK_FRAMES, Block};

const SECS: usize = 30;

fn make_source(path: &Path) {
    let rate = 44_100u32;
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    let mut noise = onmic_audio::test_signals::Noise::new(1);
    for i in 0..rate as usize * SECS {
        let t = i as f32 / rate as f32;
        let chord = [220.0f32, 277.2, 329.6]
            .iter()
            .map(|f| {
                (2.0 * std::f32::consts::PI * f * t * (1.0 + (i / 13_230 % 4) as f32 * 0.125)).sin()
            })
            .sum::<f32>();
        let l = chord * 0.2 + noise.next_sample() * 0.05;
        let r = chord * 0.2 - noise.next_sample() * 0.05;
        w.write_sample((l * 32767.0) as i16).expect("s");
        w.write_sample((r * 32767.0) as i16).expect("s");
    }
    w.finalize().expect("wav");
}

fn main() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("song.wav");
    make_source(&src);
    let mut files = vec![("wav 44.1k s16", src.clone())];
    for (name, file, args) in [
        (
            "mp3 192k",
            "a.mp3",
            &["-c:a", "libmp3lame", "-b:a", "192k"][..],
        ),
        ("flac", "a.flac", &["-c:a", "flac"][..]),
        (
            "aac/m4a 192k",
            "a.m4a",
            &["-c:a", "aac", "-b:a", "192k"][..],
        ),
        (
            "ogg vorbis q5",
            "a.ogg",
            &["-c:a", "libvorbis", "-q:a", "5"][..],
        ),
        (
            "opus 128k",
            "a.opus",
            &["-c:a", "libopus", "-b:a", "128k"][..],
        ),
    ] {
        let p = dir.path().join(file);
        let ok = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(&src)
            .args(args)
            .arg(&p)
            .status()
            .expect("ffmpeg")
            .success();
        assert!(ok, "ffmpeg {name}");
        files.push((name, p));
    }
    println!(
        "{SECS} s stereo song at 44.1 kHz (Opus: 48 kHz), decoded + resampled to 48 kHz stereo"
    );
    println!(
        "{:<16} {:>12} {:>14} {:>16} {:>16}",
        "format", "µs / 10 ms", "× real time", "encoded (KiB)", "decoded (MiB)"
    );
    for (name, p) in &files {
        let bytes = std::fs::read(p).expect("read");
        let source = MusicSource::Memory(bytes.clone().into());
        let mut best = f64::MAX;
        let mut frames = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let pre = decode_to_48k(&source).expect("decode");
            best = best.min(t.elapsed().as_secs_f64());
            frames = pre.pcm.len() / 2;
        }
        let blocks = frames as f64 / BLOCK_FRAMES as f64;
        println!(
            "{:<16} {:>12.1} {:>14.0} {:>16.0} {:>16.1}",
            name,
            best / blocks * 1e6,
            (frames as f64 / 48_000.0) / best,
            bytes.len() as f64 / 1024.0,
            (frames * 2 * 4) as f64 / (1024.0 * 1024.0)
        );
    }
    // The DSP thread's share: one voice mixed into the publish and local blocks, with ducking.
    let (mut inj, voice) = PcmInjector::new(true);
    let mut bus = MusicBus::new();
    bus.add(voice).expect("room");
    let block: Vec<f32> = (0..BLOCK_FRAMES * 2)
        .map(|i| (i as f32 * 0.01).sin() * 0.3)
        .collect();
    let (mut p, mut l) = (Block::silent(2), Block::silent(2));
    let mut spent = 0.0;
    let n = 20_000;
    for k in 0..n {
        if k % 10 == 0 {
            for _ in 0..10 {
                inj.push(&block, 48_000, 2).expect("push");
            }
        }
        let t = Instant::now();
        bus.mix(0.1, &mut p, &mut l);
        spent += t.elapsed().as_secs_f64();
    }
    println!(
        "mix (DSP thread, one voice, publish + local): {:.2} µs / 10 ms block",
        spent / n as f64 * 1e6
    );
    println!(
        "memory per preloaded song: the encoded file (MusicSource::Memory, column above) plus \
         {} KiB of ring and decoder buffers while it plays; decoding it whole costs the decoded column",
        (20 * (BLOCK_FRAMES * 2 * 4 + 32)) / 1024
    );
}
