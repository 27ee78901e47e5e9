//! Cost of the adaptive playout per 10 ms block on this machine: a remote's `pull` (jitter
//! buffer, Opus decode of a 128 kbps stereo stream, delay control) in steady state, and the
//! worst case of the time-scaling search (`time_scale::accelerate` on noise, longest lag range,
//! forced), which runs on every block while surplus persists on non-periodic audio. Prints the
//! median and p99 in µs and as a share of the 10 ms block.
//!
//! Run: `cargo bench -p onmic-audio --bench playout`

use std::hint::black_box;
use std::time::Instant;

use onmic_audio::BLOCK_FRAMES;
use onmic_audio::block::Block;
use onmic_audio::opus::{OpusEncoder, OpusProfile};
use onmic_audio::playout::RemoteStream;
use onmic_audio::test_signals::{Noise, sine_block};
use onmic_audio::time_scale::accelerate;

fn report(name: &str, mut us: Vec<f64>) {
    us.sort_by(f64::total_cmp);
    let p = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<44} median {:>7.1} µs  p99 {:>7.1} µs  ({:.2} % / {:.2} % of a 10 ms block)",
        p(0.5),
        p(0.99),
        p(0.5) / 100.0,
        p(0.99) / 100.0
    );
}

fn main() {
    // Steady pull: a packet every second block, delivered on time.
    let mut enc = OpusEncoder::new(OpusProfile::music(), 0, 0).expect("encoder");
    let (mut stream, mut input) = RemoteStream::new(1, 1).expect("remote");
    let mut out = Block::silent(2);
    let mut us = Vec::new();
    for n in 0..6000u64 {
        let b = sine_block(220.0 + (n % 50) as f32, 0.3, n, 2);
        if let Some(p) = enc.push_block(&b).expect("encode") {
            input
                .push(p.sequence, p.rtp_timestamp, p.payload())
                .expect("push");
        }
        let t = Instant::now();
        stream.pull(&mut out);
        us.push(t.elapsed().as_secs_f64() * 1e6);
        black_box(&out);
    }
    report(
        "RemoteStream::pull, steady (decode incl.)",
        us[1000..].to_vec(),
    );

    // The time-scaling search at its worst: noise, lags 2.5–10 ms, forced.
    let mut noise = Noise::new(5);
    let src: Vec<f32> = (0..2 * 4 * BLOCK_FRAMES)
        .map(|_| noise.next_sample() * 0.3)
        .collect();
    let mut buf = src.clone();
    let mut us = Vec::new();
    for _ in 0..5000 {
        buf.copy_from_slice(&src);
        let t = Instant::now();
        let removed = accelerate(&mut buf, 3 * BLOCK_FRAMES, 120, 480, -1.0);
        us.push(t.elapsed().as_secs_f64() * 1e6);
        black_box(removed);
    }
    report("time_scale::accelerate, noise, forced", us);
}
