//! The recorder's fuzz target (`server/fuzz`, cargo-fuzz) driven on stable for a bounded number
//! of inputs: random scripts, and scripts of real Opus packets (stereo tone, FEC on) that are
//! reordered, duplicated, dropped, bit-flipped and truncated. Passing means nothing panicked and
//! every mixed sample was finite (the target asserts it).

use onmic_server::recording::source::fuzz_packets;
use proptest::prelude::*;

/// Real Opus packets: 20 ms of a 440/660 Hz stereo tone each, in-band FEC on.
fn opus_packets() -> Vec<Vec<u8>> {
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio).expect("enc");
    enc.set_inband_fec(true).expect("fec");
    enc.set_packet_loss_perc(20).expect("loss");
    // 64 kbps: packets of ~160 bytes fit the script's one-byte length.
    enc.set_bitrate(opus::Bitrate::Bits(64_000))
        .expect("bitrate");
    (0..16u64)
        .map(|k| {
            let pcm: Vec<f32> = (0..960u64)
                .flat_map(|i| {
                    let w = 2.0 * std::f32::consts::PI * (k * 960 + i) as f32 / 48_000.0;
                    [0.5 * (440.0 * w).sin(), 0.5 * (660.0 * w).sin()]
                })
                .collect();
            enc.encode_vec_float(&pcm, 1000).expect("encode")
        })
        .collect()
}

/// A script (see `fuzz_packets`) pushing `packet` at a timestamp step of `step` × 2.5 ms.
fn push(script: &mut Vec<u8>, back: bool, step: u16, packet: &[u8]) {
    script.push(if back { 0x81 } else { 0x01 });
    script.extend_from_slice(&step.to_le_bytes());
    let len = packet.len().min(255);
    script.push(len as u8);
    script.extend_from_slice(&packet[..len]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_scripts_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        fuzz_packets(&data);
    }

    #[test]
    fn damaged_real_streams_never_panic(
        plan in proptest::collection::vec(
            (0..16usize, any::<bool>(), 0..16u16, proptest::option::of((any::<usize>(), any::<u8>())), any::<bool>(), any::<bool>()),
            1..40,
        ),
    ) {
        let packets = opus_packets();
        let mut script = Vec::new();
        for (k, back, step, flip, truncate, mix) in plan {
            let mut p = packets[k].clone();
            if let Some((pos, bit)) = flip {
                let pos = pos % p.len();
                p[pos] ^= 1 << (bit % 8);
            }
            if truncate {
                p.truncate(p.len() / 2);
            }
            // Mostly forward in 20 ms steps (8 × 2.5 ms), sometimes jumps and reorders.
            push(&mut script, back, if step < 12 { 8 } else { step * 97 }, &p);
            if mix {
                script.push(0);
            }
        }
        fuzz_packets(&script);
    }
}

#[test]
fn an_intact_stream_plays() {
    let mut script = Vec::new();
    for p in opus_packets() {
        push(&mut script, false, 8, &p);
        script.push(0);
    }
    fuzz_packets(&script);
}
