//! Issue 12, acceptance item 7: the cost of every voice-effect preset per 10 ms stereo block
//! (budget 0.1 ms each) and of the whole voice chain with a reverb and a voice changer on
//! (budget 0.5 ms), as the median of 2,000 blocks after 200 warm-up blocks. Also the candidates
//! measured against ours (`docs/decisions.md`): the `freeverb` crate's reverb.
//!
//! Run: `cargo bench -p onmic-audio --bench effects`

use std::hint::black_box;
use std::time::Instant;

use onmic_audio::chain::{Chain, ChainConfig, Mode};
use onmic_audio::effects::{EFFECT_NAMES, EffectRack, EffectSettings};
use onmic_audio::test_signals::{Noise, sine_block};
use onmic_audio::{BLOCK_FRAMES, Block, Processor};

fn input(n: u64, channels: usize) -> Block {
    let mut b = sine_block(180.0 + (n % 7) as f32 * 20.0, 0.3, n, channels);
    let mut noise = Noise::new(n + 1);
    for ch in b.active_mut() {
        for s in ch.iter_mut() {
            *s += noise.next_sample() * 0.05;
        }
    }
    b
}

/// Median and 99th percentile µs per block of `f`.
fn measure(mut f: impl FnMut(u64)) -> (f64, f64) {
    for n in 0..200 {
        f(n);
    }
    let mut t: Vec<f64> = (0..2000u64)
        .map(|n| {
            let s = Instant::now();
            f(n);
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[t.len() * 99 / 100])
}

fn row(name: &str, (med, p99): (f64, f64), budget_us: f64) {
    println!(
        "{name:<34} {med:>8.1} µs  p99 {p99:>8.1} µs  {:>5.2} % of 10 ms  budget {budget_us:.0} µs {}",
        med / 100.0,
        if med <= budget_us { "OK" } else { "OVER" }
    );
}

fn main() {
    let inputs: Vec<Block> = (0..50).map(|n| input(n, 2)).collect();
    println!("voice effects, per 10 ms stereo block (median of 2,000 blocks)");
    for name in EFFECT_NAMES.iter().filter(|n| **n != "none") {
        let settings = EffectSettings::parse(&[name]).expect("parse");
        let mut rack = EffectRack::new(&settings).expect("rack");
        let mut b = Block::silent(2);
        let m = measure(|n| {
            b.copy_from(&inputs[n as usize % 50]);
            rack.process(black_box(&mut b));
        });
        row(name, m, 100.0);
    }

    // The voice changers on what they see in voice mode: the mono voice (the chain is mono up to
    // the first stereo effect).
    let mono: Vec<Block> = (0..50).map(|n| input(n, 1)).collect();
    println!("voice changers on a mono voice block (voice mode)");
    for name in [
        "uncle",
        "old_man",
        "boy",
        "sister",
        "girl",
        "pig_king",
        "hulk",
        "pitch:semitones=5",
    ] {
        let mut rack =
            EffectRack::new(&EffectSettings::parse(&[name]).expect("parse")).expect("rack");
        let mut b = Block::silent(1);
        let m = measure(|n| {
            b.copy_from(&mono[n as usize % 50]);
            rack.process(black_box(&mut b));
        });
        row(&format!("{name} (mono)"), m, 100.0);
    }

    // Candidates: the freeverb crate (f64, per-sample tick) on the same stereo blocks.
    let mut fv = freeverb::Freeverb::new(48_000);
    fv.set_room_size(0.7);
    fv.set_wet(0.3);
    let mut b = Block::silent(2);
    let m = measure(|n| {
        b.copy_from(&inputs[n as usize % 50]);
        let (l, r) = b.pair_mut();
        for i in 0..BLOCK_FRAMES {
            let (a, c) = fv.tick((f64::from(l[i]), f64::from(r[i])));
            l[i] = a as f32;
            r[i] = c as f32;
        }
        black_box(&mut b);
    });
    row("candidate: freeverb crate", m, 100.0);

    // The whole voice chain (AEC, AI-NS, NS, AGC, effects, limiter) with a reverb and a voice
    // changer on, stereo capture mapped to a mono voice that the reverb makes stereo again.
    for effects in [
        &["ktv", "uncle"][..],
        &["vocal_concert", "girl", "eq:1k=3", "compressor"],
    ] {
        let mut chain = Chain::new(ChainConfig::for_mode(Mode::Voice)).expect("chain");
        chain.set_effects_now(Box::new(
            EffectRack::new(&EffectSettings::parse(effects).expect("parse")).expect("rack"),
        ));
        let far: Vec<Block> = (0..50).map(|n| input(n + 100, 2)).collect();
        let mut b = Block::silent(2);
        let m = measure(|n| {
            b.copy_from(&inputs[n as usize % 50]);
            chain.process(black_box(&mut b), &far[n as usize % 50], None);
        });
        row(&format!("voice chain + {}", effects.join(" + ")), m, 500.0);
    }
    let mut chain = Chain::new(ChainConfig::for_mode(Mode::Voice)).expect("chain");
    let far: Vec<Block> = (0..50).map(|n| input(n + 100, 2)).collect();
    let mut b = Block::silent(2);
    let m = measure(|n| {
        b.copy_from(&inputs[n as usize % 50]);
        chain.process(black_box(&mut b), &far[n as usize % 50], None);
    });
    row("voice chain, no effects (reference)", m, 500.0);
}
