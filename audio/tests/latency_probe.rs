//! Measures each stage's delay by cross-correlating noise in and out (the delay `latency()`
//! reports must match).

use onmic_audio::aec::Aec;
use onmic_audio::aec3::Aec3;
use onmic_audio::ai_ns::AiNoiseSuppressor;
use onmic_audio::ns::{NoiseSuppressor, NsLevel};
use onmic_audio::ns_webrtc::WebRtcNs;
use onmic_audio::test_signals::Noise;
use onmic_audio::{BLOCK_FRAMES, Block, Processor, StreamSpec};

fn measured_delay<P: Processor>(stage: &mut P) -> usize {
    stage
        .prepare(StreamSpec {
            channels: 1,
            ..StreamSpec::default()
        })
        .expect("prepare");
    // Speech-like: noise bursts with a 1/f tilt.
    let mut n = Noise::new(5);
    let mut lp = 0.0f32;
    let x: Vec<f32> = (0..48_000 * 4)
        .map(|i| {
            lp = 0.9 * lp + 0.1 * n.next_sample();
            let env = if (i / 4800) % 2 == 0 { 0.5 } else { 0.05 };
            lp * env
        })
        .collect();
    let mut out = Vec::new();
    let mut b = Block::silent(1);
    for c in x.chunks_exact(BLOCK_FRAMES) {
        b.channel_mut(0).copy_from_slice(c);
        stage.process(&mut b);
        out.extend_from_slice(b.channel(0));
    }
    let from = 48_000;
    (0..2000)
        .max_by(|&a, &b| {
            let ca: f64 = (from..x.len() - 2000)
                .map(|i| f64::from(x[i]) * f64::from(out[i + a]))
                .sum();
            let cb: f64 = (from..x.len() - 2000)
                .map(|i| f64::from(x[i]) * f64::from(out[i + b]))
                .sum();
            ca.partial_cmp(&cb).expect("finite")
        })
        .expect("non-empty")
}

#[test]
fn reported_latency_matches_measured_delay() {
    let mut ns = NoiseSuppressor::new(NsLevel::Moderate);
    let d = measured_delay(&mut ns);
    println!("ns delay {d}, reported {}", ns.latency().get());
    let mut ai = AiNoiseSuppressor::new(1.0);
    let d2 = measured_delay(&mut ai);
    println!("ai-ns delay {d2}, reported {}", ai.latency().get());
    let mut aec = Aec::new();
    let d3 = measured_delay(&mut aec);
    println!("aec delay {d3}, reported {}", aec.latency().get());
    let mut wns = WebRtcNs::new(NsLevel::Moderate);
    let d5 = measured_delay(&mut wns);
    println!("webrtc ns delay {d5}, reported {}", wns.latency().get());
    assert_eq!(d5, wns.latency().get());
    let mut aec3 = Aec3::new();
    let d4 = measured_delay(&mut aec3);
    println!("aec3 delay {d4}, reported {}", aec3.latency().get());
    assert_eq!(d4, aec3.latency().get());
    assert_eq!(d, ns.latency().get());
    assert_eq!(d2, ai.latency().get());
    assert_eq!(d3, aec.latency().get());
}
