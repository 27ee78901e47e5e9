//! Acceptance item 10 (per stage and per chain): cost of each stage and each full chain per 10 ms
//! block, in µs and as a share of the 10 ms budget, against the budgets on this machine
//! (sound-card chain < 0.15 ms, voice chain < 0.35 ms). A quick median-of-runs table first, then
//! criterion's own measurements of the same closures.
//!
//! Run: `cargo bench -p onmic-audio --bench chain`

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use onmic_audio::aec::Aec;
use onmic_audio::aec3::Aec3;
use onmic_audio::agc::Agc;
use onmic_audio::ai_ns::AiNoiseSuppressor;
use onmic_audio::chain::{Chain, ChainConfig, Mode};
use onmic_audio::limiter::Limiter;
use onmic_audio::ns::NoiseSuppressor;
use onmic_audio::ns_webrtc::WebRtcNs;
use onmic_audio::opus::{MAX_DECODE_FRAMES, OpusDecoder, OpusEncoder, OpusProfile};
use onmic_audio::test_signals::{Noise, sine_block};
use onmic_audio::{Block, Processor, StreamSpec};

/// A named per-block job.
type Job = (&'static str, Box<dyn FnMut()>, Option<f64>);

fn noisy(n: u64, channels: usize) -> Block {
    let mut b = sine_block(220.0 + n as f32, 0.3, n, channels);
    let mut noise = Noise::new(n + 1);
    for ch in b.active_mut() {
        for s in ch.iter_mut() {
            *s += noise.next_sample() * 0.02;
        }
    }
    b
}

fn stage<P: Processor + 'static>(mut p: P, channels: usize) -> Box<dyn FnMut()> {
    p.prepare(StreamSpec {
        channels,
        ..StreamSpec::default()
    })
    .expect("prepare");
    let inputs: Vec<Block> = (0..50).map(|n| noisy(n, channels)).collect();
    let mut i = 0;
    let mut b = Block::silent(channels);
    Box::new(move || {
        b.copy_from(&inputs[i % 50]);
        i += 1;
        p.process(black_box(&mut b));
    })
}

fn jobs() -> Vec<Job> {
    let mut v: Vec<Job> = vec![
        ("limiter (stereo)", stage(Limiter::default(), 2), None),
        ("AGC (mono)", stage(Agc::new(), 1), None),
        (
            "NS Wiener, ours (mono)",
            stage(NoiseSuppressor::default(), 1),
            None,
        ),
        (
            "NS WebRTC sonora, reference (mono)",
            stage(WebRtcNs::default(), 1),
            None,
        ),
        (
            "AI-NS nnnoiseless (mono)",
            stage(AiNoiseSuppressor::new(1.0), 1),
            None,
        ),
    ];
    {
        let mut aec = Aec::new();
        aec.prepare(StreamSpec {
            channels: 1,
            ..StreamSpec::default()
        })
        .expect("prepare");
        let far: Vec<Block> = (0..50).map(|n| noisy(n + 100, 2)).collect();
        let near: Vec<Block> = (0..50).map(|n| noisy(n, 1)).collect();
        let mut b = Block::silent(1);
        let mut i = 0;
        v.push((
            "AEC Kalman 400 ms + delay est. (mono, render)",
            Box::new(move || {
                aec.analyze_render(&far[i % 50]);
                b.copy_from(&near[i % 50]);
                i += 1;
                aec.process(black_box(&mut b));
            }),
            None,
        ));
    }
    {
        let mut aec = Aec3::new();
        aec.prepare(StreamSpec {
            channels: 1,
            ..StreamSpec::default()
        })
        .expect("prepare");
        let far: Vec<Block> = (0..50).map(|n| noisy(n + 100, 2)).collect();
        let near: Vec<Block> = (0..50).map(|n| noisy(n, 1)).collect();
        let mut b = Block::silent(1);
        let mut i = 0;
        v.push((
            "AEC3 sonora, reference (mono, with render)",
            Box::new(move || {
                aec.analyze_render(&far[i % 50]);
                b.copy_from(&near[i % 50]);
                i += 1;
                aec.process(black_box(&mut b));
            }),
            None,
        ));
    }
    for (name, profile) in [
        ("Opus encode 128k stereo (per 10 ms)", OpusProfile::music()),
        ("Opus encode voice mono (per 10 ms)", OpusProfile::voice()),
    ] {
        let mut enc = OpusEncoder::new(profile, 0, 0).expect("encoder");
        let inputs: Vec<Block> = (0..50).map(|n| noisy(n, 2)).collect();
        let mut i = 0;
        v.push((
            name,
            Box::new(move || {
                let _ = black_box(enc.push_block(&inputs[i % 50]).expect("encode").is_some());
                i += 1;
            }),
            None,
        ));
    }
    {
        let mut enc = OpusEncoder::new(OpusProfile::music(), 0, 0).expect("encoder");
        let packets: Vec<Vec<u8>> = (0..100)
            .filter_map(|n| {
                enc.push_block(&noisy(n, 2))
                    .expect("encode")
                    .map(|p| p.payload().to_vec())
            })
            .collect();
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut pcm = vec![0.0f32; MAX_DECODE_FRAMES * 2];
        let mut i = 0;
        v.push((
            "Opus decode 128k stereo (per 10 ms)",
            Box::new(move || {
                // One 20 ms packet every other block.
                if i % 2 == 0 {
                    let _ = black_box(dec.decode(&packets[(i / 2) % packets.len()], &mut pcm));
                }
                i += 1;
            }),
            None,
        ));
    }
    for (name, mode, budget) in [
        (
            "CHAIN sound card: limiter + Opus 128k stereo",
            Mode::Soundcard,
            150.0,
        ),
        (
            "CHAIN voice: AEC+AI-NS+NS+AGC+limiter+Opus",
            Mode::Voice,
            350.0,
        ),
    ] {
        let mut chain = Chain::new(ChainConfig::for_mode(mode)).expect("chain");
        let mut enc = OpusEncoder::new(mode.opus_profile(), 0, 0).expect("encoder");
        let inputs: Vec<Block> = (0..50).map(|n| noisy(n, 2)).collect();
        let far: Vec<Block> = (0..50).map(|n| noisy(n + 100, 2)).collect();
        let mut b = Block::silent(2);
        let mut i = 0;
        v.push((
            name,
            Box::new(move || {
                b.copy_from(&inputs[i % 50]);
                chain.process(&mut b, &far[i % 50], None);
                let _ = black_box(enc.push_block(&b).expect("encode").is_some());
                i += 1;
            }),
            Some(budget),
        ));
    }
    v
}

fn median_us(f: &mut dyn FnMut()) -> f64 {
    for _ in 0..200 {
        f();
    }
    let mut runs: Vec<f64> = (0..7)
        .map(|_| {
            let n = 500;
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    runs.sort_by(|a, b| a.total_cmp(b));
    runs[runs.len() / 2]
}

fn main() {
    // Other builds on a shared machine slow every figure down; say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nload average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("Per 10 ms block (480 frames at 48 kHz), median of 7 runs × 500 blocks:");
    println!(
        "{:<46} {:>9} {:>10} {:>12}",
        "stage / chain", "µs", "% of 10ms", "budget"
    );
    for (name, mut f, budget) in jobs() {
        let us = median_us(&mut f);
        let verdict = match budget {
            Some(b) if us <= b => format!("{b:.0} µs OK"),
            Some(b) => format!("{b:.0} µs OVER"),
            None => String::new(),
        };
        println!("{name:<46} {us:>9.1} {:>9.2}% {verdict:>12}", us / 100.0);
    }
    println!();
    let mut c = Criterion::default().configure_from_args().sample_size(30);
    for (name, mut f, _) in jobs() {
        c.bench_function(name, |b| b.iter(&mut f));
    }
    c.final_summary();
}
