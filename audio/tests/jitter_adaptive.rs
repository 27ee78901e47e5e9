//! The adaptive jitter buffer end to end on the playout side: real Opus packets (music profile,
//! 20 ms) from a real encoder arrive at simulated times into a `RemoteStream`, which is pulled
//! once per 10 ms block like the engine does. Each scenario prints its figures (concealment,
//! delay before/during/after) and asserts what must hold.
//!
//! "Delay" is the audio the stream holds before a block is played (decoded FIFO + buffered
//! packets, including that block), averaged over a window: the latency the playout adds.

use onmic_audio::BLOCK_FRAMES;
use onmic_audio::block::Block;
use onmic_audio::opus::{OpusEncoder, OpusProfile};
use onmic_audio::playout::RemoteStream;
use onmic_audio::test_signals::goertzel_power;

const PACKET_MS: u64 = 20;

/// One packet on the wire.
#[derive(Clone)]
struct Wire {
    arrival_ms: u64,
    sequence: u16,
    rtp_timestamp: u32,
    payload: Vec<u8>,
}

/// `seconds` of a 220 Hz stereo tone (with a harmonic) as packets sent every 20 ms.
fn encode(seconds: u64, first_seq: u16, first_ts: u32) -> Vec<Wire> {
    let mut enc = OpusEncoder::new(OpusProfile::music(), first_ts, first_seq).expect("encoder");
    let mut out = Vec::new();
    for n in 0..seconds * 100 {
        let mut b = Block::silent(2);
        for ch in 0..2 {
            for (i, s) in b.channel_mut(ch).iter_mut().enumerate() {
                let t = (n as usize * BLOCK_FRAMES + i) as f32 / 48_000.0;
                let w = 2.0 * std::f32::consts::PI * 220.0 * t;
                *s = 0.3 * w.sin() + 0.1 * (2.0 * w).sin();
            }
        }
        if let Some(p) = enc.push_block(&b).expect("encode") {
            out.push(Wire {
                arrival_ms: 0,
                sequence: p.sequence,
                rtp_timestamp: p.rtp_timestamp,
                payload: p.payload().to_vec(),
            });
        }
    }
    out
}

/// What a run produced.
struct Run {
    /// Delay (ms) before each block.
    delay: Vec<f64>,
    /// Left channel of the output.
    left: Vec<f32>,
    played: u64,
    concealed: u64,
    late: u64,
    duplicates: u64,
    resyncs: u64,
    corrupt: u64,
    accelerated_ms: f64,
}

impl Run {
    fn mean_delay(&self, from_s: f64, to_s: f64) -> f64 {
        let w = &self.delay[(from_s * 100.0) as usize..(to_s * 100.0) as usize];
        w.iter().sum::<f64>() / w.len() as f64
    }

    fn max_delay(&self, from_s: f64, to_s: f64) -> f64 {
        self.delay[(from_s * 100.0) as usize..(to_s * 100.0) as usize]
            .iter()
            .copied()
            .fold(0.0, f64::max)
    }

    fn concealed_percent(&self) -> f64 {
        100.0 * self.concealed as f64 / (self.played + self.concealed).max(1) as f64
    }

    /// Blocks of silence in the output after the first sound.
    fn silent_blocks(&self) -> usize {
        let first = self.left.iter().position(|s| s.abs() > 0.01).unwrap_or(0);
        self.left[first..]
            .chunks(BLOCK_FRAMES)
            .filter(|b| b.iter().all(|s| s.abs() < 1e-4))
            .count()
    }
}

/// Feeds `wire` (any order; delivered by arrival time) and pulls `seconds` of blocks.
fn play(wire: &[Wire], seconds: u64, depth: usize) -> Run {
    let mut wire = wire.to_vec();
    wire.sort_by_key(|w| w.arrival_ms); // stable: equal arrivals keep their order
    let (mut stream, mut input) = RemoteStream::new(1, depth).expect("remote");
    let mut out = Block::silent(2);
    let mut delay = Vec::new();
    let mut left = Vec::new();
    let mut next = 0;
    for tick in 0..seconds * 100 {
        let now = tick * 10;
        while next < wire.len() && wire[next].arrival_ms <= now {
            let w = &wire[next];
            assert!(
                input
                    .push(w.sequence, w.rtp_timestamp, &w.payload)
                    .expect("push")
            );
            next += 1;
        }
        stream.pull(&mut out);
        delay.push((stream.buffered_frames() + BLOCK_FRAMES) as f64 / 48.0);
        left.extend_from_slice(out.channel(0));
    }
    let s = stream.jitter_stats();
    Run {
        delay,
        left,
        played: s.played,
        concealed: s.lost + s.expanded,
        late: s.late,
        duplicates: s.duplicates,
        resyncs: s.resyncs,
        corrupt: stream.corrupt_packets(),
        accelerated_ms: stream.accelerated_frames() as f64 / 48.0,
    }
}

/// Packet k sent at 20·k ms, arriving 3 ms later plus `extra(k)`.
fn schedule(wire: &mut [Wire], extra: impl Fn(u64) -> u64) {
    for (k, w) in wire.iter_mut().enumerate() {
        let k = k as u64;
        w.arrival_ms = k * PACKET_MS + 3 + extra(k);
    }
}

#[test]
fn steady_arrivals_settle_at_one_frame() {
    let mut wire = encode(10, 100, 5000);
    schedule(&mut wire, |_| 0);
    let run = play(&wire, 10, 1);
    let settled = run.mean_delay(2.0, 10.0);
    println!(
        "steady: delay {settled:.1} ms (max {:.1}), concealed {:.2} %, accelerated {:.1} ms",
        run.max_delay(2.0, 10.0),
        run.concealed_percent(),
        run.accelerated_ms
    );
    assert_eq!(run.concealed, 0);
    assert!(
        settled <= 20.0,
        "steady delay {settled:.1} ms is over one frame"
    );
    assert_eq!(run.silent_blocks(), 0);
}

/// Two seconds of 60 ms network stalls (every 400 ms the path holds packets for 60 ms and then
/// delivers them at once), calm before and after.
#[test]
fn a_jitter_burst_grows_the_delay_then_gives_it_back() {
    let mut wire = encode(16, 0, 0);
    schedule(&mut wire, |k| {
        let t = k * PACKET_MS;
        if (4000..6000).contains(&t) {
            let phase = t % 400;
            60_u64.saturating_sub(phase)
        } else {
            0
        }
    });
    let run = play(&wire, 16, 1);
    let before = run.mean_delay(2.0, 4.0);
    let during = run.mean_delay(4.5, 6.0);
    let during_max = run.max_delay(4.0, 6.0);
    let after_1s = run.mean_delay(7.0, 8.0);
    let after = run.mean_delay(10.0, 16.0);
    // When the delay is back within 5 ms of the calm level (mean over half a second).
    let back_after = (0..100)
        .map(|k| 6.0 + k as f64 * 0.05)
        .find(|t| run.mean_delay(*t, t + 0.5) <= before + 5.0)
        .map(|t| t - 6.0);
    let burst_packets = (2000 / PACKET_MS) as f64;
    println!(
        "jitter burst: delay before {before:.1} ms, during {during:.1} ms (max {during_max:.1}), \
         1 s after {after_1s:.1} ms, 4–10 s after {after:.1} ms, back within 5 ms of calm \
         {:.2} s after the burst; concealed {} frames \
         ({:.1} % of the burst's packets, {:.2} % overall), late {}, accelerated {:.1} ms",
        back_after.unwrap_or(f64::NAN),
        run.concealed,
        100.0 * run.concealed as f64 / burst_packets,
        run.concealed_percent(),
        run.late,
        run.accelerated_ms
    );
    assert!(before <= 20.0, "calm delay {before:.1} ms");
    assert!(
        during_max >= 60.0,
        "the delay did not grow to ride out the stalls ({during_max:.1} ms)"
    );
    assert!(
        run.concealed <= 6,
        "{} frames concealed for 5 stalls: the target did not learn the jitter",
        run.concealed
    );
    assert!(
        after <= before + 5.0,
        "the delay did not come back down after the burst: {after:.1} ms vs {before:.1} ms"
    );
    assert!(
        back_after.is_some_and(|t| t <= 4.0),
        "the delay took {back_after:?} s to come back"
    );
    assert!(run.accelerated_ms >= 50.0);
}

/// Random jitter of 0–40 ms on every packet: the target follows it, few frames are concealed.
#[test]
fn random_jitter_is_absorbed() {
    let mut wire = encode(12, 7, 7);
    let mut seed = 12345u32;
    let jitter: Vec<u64> = (0..wire.len())
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            u64::from(seed >> 8) % 41
        })
        .collect();
    schedule(&mut wire, |k| jitter[k as usize]);
    let run = play(&wire, 12, 1);
    let settled = run.mean_delay(4.0, 12.0);
    println!(
        "random 0–40 ms jitter: delay {settled:.1} ms, concealed {:.2} %, late {}",
        run.concealed_percent(),
        run.late
    );
    assert!(run.concealed_percent() < 5.0);
    assert!(
        (30.0..=80.0).contains(&settled),
        "delay {settled:.1} ms does not match 40 ms of jitter"
    );
}

/// Reordered pairs, every packet twice, a sequence and timestamp wrap, then a sender restart
/// with a new sequence and timestamp base: the tone keeps playing.
#[test]
fn reordering_duplicates_wrap_and_restart() {
    let mut a = encode(4, 65_500, u32::MAX - 20 * 960);
    schedule(&mut a, |k| if k % 7 == 3 { 25 } else { 0 });
    let mut b = encode(4, 31_000, 77_777);
    for (k, w) in b.iter_mut().enumerate() {
        w.arrival_ms = 4000 + k as u64 * PACKET_MS + 3;
    }
    let mut wire: Vec<Wire> = a.iter().chain(&b).cloned().collect();
    let dups: Vec<Wire> = wire
        .iter()
        .map(|w| Wire {
            arrival_ms: w.arrival_ms + 1,
            ..w.clone()
        })
        .collect();
    wire.extend(dups);
    let run = play(&wire, 8, 1);
    println!(
        "reorder/dup/wrap/restart: concealed {} ({:.2} %), duplicates {}, late {}, resyncs {}, \
         silent blocks {}, delay {:.1} ms",
        run.concealed,
        run.concealed_percent(),
        run.duplicates,
        run.late,
        run.resyncs,
        run.silent_blocks(),
        run.mean_delay(1.0, 8.0)
    );
    assert!(run.duplicates >= 350, "duplicates {}", run.duplicates);
    assert_eq!(run.resyncs, 1, "the restart is one resync");
    assert!(run.concealed_percent() < 3.0);
    assert!(
        run.silent_blocks() <= 2,
        "silent blocks {}",
        run.silent_blocks()
    );
    // The tone is there after the wrap and after the restart.
    for at in [2.0, 6.0] {
        let s = (at * 48_000.0) as usize;
        let w = &run.left[s..s + 4800];
        let tone = goertzel_power(w, 220.0);
        let off = goertzel_power(w, 330.0);
        assert!(tone > 100.0 * off, "no clean 220 Hz at {at} s");
    }
}

/// Malformed input from the network: empty and oversized payloads are refused at the input with
/// an error; payloads that are not Opus are concealed like losses, and the stream plays on.
#[test]
fn malformed_packets_are_refused_or_concealed() {
    let (_, mut input) = RemoteStream::new(1, 1).expect("remote");
    assert!(input.push(1, 960, &[]).is_err());
    assert!(input.push(1, 960, &[0u8; 4000]).is_err());
    let mut wire = encode(4, 9, 9);
    schedule(&mut wire, |_| 0);
    for (k, w) in wire.iter_mut().enumerate() {
        if k % 10 == 5 {
            // A TOC byte announcing a frame count the rest cannot hold, then junk.
            w.payload = vec![0xff, 0xff, 0x01, 0x02, 0x03];
        }
    }
    let run = play(&wire, 4, 1);
    println!(
        "malformed: played {}, corrupt (concealed) {}, silent blocks {}",
        run.played,
        run.corrupt,
        run.silent_blocks()
    );
    assert!(run.played >= 190, "played {}", run.played);
    assert_eq!(run.corrupt, 20);
    assert_eq!(run.silent_blocks(), 0);
    let w = &run.left[2 * 48_000..2 * 48_000 + 4800];
    assert!(goertzel_power(w, 220.0) > 100.0 * goertzel_power(w, 330.0));
}
