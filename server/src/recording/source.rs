//! One publisher's audio in a recording: a small jitter buffer ordered by RTP timestamp, the Opus
//! decoder, and loss concealment (in-band FEC from the next packet when exactly one frame is
//! missing, PLC otherwise). Sans-IO: time is an argument, so tests and the fuzz target drive it.
//!
//! Contract: [`Source::push`] takes any bytes as a packet (malformed ones are counted and
//! dropped, never a panic); [`Source::mix_into`] adds exactly one output frame of this source's
//! audio (silence when it has none) to a stereo buffer.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use opus::{Channels, Decoder};

/// Output and decode rate.
pub const RATE: u32 = 48_000;
/// Samples per channel of the longest Opus packet (120 ms).
pub const MAX_PACKET_SAMPLES: usize = 5760;
/// A source starts playing once its first packet waited this long (absorbs network jitter).
pub const JITTER_DELAY: Duration = Duration::from_millis(60);
/// Packets buffered per source at most (2 s of 20 ms packets); more are dropped.
pub const MAX_BUFFERED: usize = 100;
/// A gap longer than this (1 s) is not concealed: the stream restarts at the next packet.
const MAX_CONCEAL_GAP: u64 = RATE as u64;
/// Largest Opus payload accepted (a 128 kbps 20 ms frame is ~320 bytes).
const MAX_PAYLOAD: usize = 1500;
/// Concealment granularity: Opus frame sizes are multiples of 2.5 ms.
const CONCEAL_STEP: u64 = 120;

/// Why a packet was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Empty, too long or not a valid Opus packet (TOC / frame count).
    Malformed,
    /// Its time was already played out.
    Late,
    /// The same timestamp is already buffered.
    Duplicate,
    /// The buffer is full.
    Overflow,
}

/// Counters of one source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Packets decoded.
    pub decoded: u64,
    /// Frames concealed with FEC data from the following packet.
    pub fec: u64,
    /// Frames concealed by packet loss concealment.
    pub plc: u64,
    /// Packets refused by [`Source::push`] or the decoder.
    pub rejected: u64,
}

/// One publisher's stream.
pub struct Source {
    decoder: Decoder,
    packets: BTreeMap<u64, Vec<u8>>,
    /// RTP time of the next sample to decode, once playing.
    next: Option<u64>,
    playing: bool,
    first_arrival: Option<Instant>,
    /// Decoded, not yet mixed, interleaved stereo.
    pcm: VecDeque<f32>,
    scratch: Vec<f32>,
    last_packet_samples: u64,
    stats: SourceStats,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("buffered", &self.packets.len())
            .field("playing", &self.playing)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Samples per channel of an Opus packet, if it is a valid one of at most 120 ms.
pub fn packet_samples(packet: &[u8]) -> Option<u64> {
    if packet.is_empty() || packet.len() > MAX_PAYLOAD {
        return None;
    }
    let n = opus::packet::get_nb_samples(packet, RATE).ok()?;
    (n > 0 && n <= MAX_PACKET_SAMPLES).then_some(n as u64)
}

impl Source {
    /// A new stereo 48 kHz source.
    pub fn new() -> Result<Source, opus::Error> {
        Ok(Source {
            decoder: Decoder::new(RATE, Channels::Stereo)?,
            packets: BTreeMap::new(),
            next: None,
            playing: false,
            first_arrival: None,
            pcm: VecDeque::with_capacity(2 * MAX_PACKET_SAMPLES),
            scratch: vec![0.0; 2 * MAX_PACKET_SAMPLES],
            last_packet_samples: 960,
            stats: SourceStats::default(),
        })
    }

    /// The counters.
    pub fn stats(&self) -> SourceStats {
        self.stats
    }

    /// Whether the source has buffered or decoded audio left.
    pub fn is_idle(&self) -> bool {
        self.packets.is_empty() && self.pcm.is_empty()
    }

    /// Buffers a packet with RTP time `ts` (48 kHz, extended) that arrived at `now`.
    pub fn push(&mut self, now: Instant, ts: u64, packet: &[u8]) -> Result<(), Rejected> {
        let result = self.accept(now, ts, packet);
        if result.is_err() {
            self.stats.rejected += 1;
        }
        result
    }

    fn accept(&mut self, now: Instant, ts: u64, packet: &[u8]) -> Result<(), Rejected> {
        packet_samples(packet).ok_or(Rejected::Malformed)?;
        if self.playing && self.next.is_some_and(|n| ts < n) {
            return Err(Rejected::Late);
        }
        if self.packets.contains_key(&ts) {
            return Err(Rejected::Duplicate);
        }
        if self.packets.len() >= MAX_BUFFERED {
            return Err(Rejected::Overflow);
        }
        self.packets.insert(ts, packet.to_vec());
        self.first_arrival.get_or_insert(now);
        Ok(())
    }

    /// Adds this source's next `out.len() / 2` stereo frames to `out` (interleaved L/R); adds
    /// nothing where the source has no audio.
    pub fn mix_into(&mut self, now: Instant, out: &mut [f32]) {
        if !self.playing {
            let waited = self
                .first_arrival
                .is_some_and(|t| now.saturating_duration_since(t) >= JITTER_DELAY);
            if !waited {
                return;
            }
            self.playing = true;
            self.next = self.packets.keys().next().copied();
        }
        while self.pcm.len() < out.len() {
            if !self.decode_next() {
                // Underrun: the speaker paused (or packets are late). Start again with a fresh
                // jitter delay once packets come back.
                self.playing = false;
                self.first_arrival = None;
                break;
            }
        }
        let n = out.len().min(self.pcm.len());
        for (o, s) in out.iter_mut().zip(self.pcm.drain(..n)) {
            *o += s;
        }
    }

    /// Decodes or conceals the next stretch; `false` when nothing is buffered.
    fn decode_next(&mut self) -> bool {
        let Some((&first, _)) = self.packets.first_key_value() else {
            return false;
        };
        let next = *self.next.get_or_insert(first);
        if first < next {
            // Cannot happen after `accept`'s late check, but a stale packet must not loop.
            self.packets.remove(&first);
            return true;
        }
        let gap = first - next;
        if gap == 0 {
            let Some(packet) = self.packets.remove(&first) else {
                return false;
            };
            match self.decoder.decode_float(&packet, &mut self.scratch, false) {
                Ok(n) if n > 0 => {
                    self.stats.decoded += 1;
                    self.last_packet_samples = n as u64;
                    self.take_scratch(n);
                    self.next = Some(next.saturating_add(n as u64));
                }
                _ => {
                    // Undecodable: conceal its length (the TOC said how long it is).
                    self.stats.rejected += 1;
                    let n = packet_samples(&packet).unwrap_or(self.last_packet_samples);
                    self.conceal(n, None);
                    self.next = Some(next.saturating_add(n));
                }
            }
            return true;
        }
        if !(CONCEAL_STEP..=MAX_CONCEAL_GAP).contains(&gap) {
            // A new talk spurt after a long pause, or a timestamp jump: start over there.
            self.next = Some(first);
            return true;
        }
        // Lost packet(s) before `first`: conceal at most one packet's worth per step.
        let step = gap.min(self.last_packet_samples) / CONCEAL_STEP * CONCEAL_STEP;
        let fec_from = (step == gap)
            .then(|| self.packets.get(&first).cloned())
            .flatten();
        self.conceal(step, fec_from.as_deref());
        self.next = Some(next.saturating_add(step));
        true
    }

    /// Produces `samples` per channel of concealment: FEC from the following packet if given,
    /// else PLC.
    fn conceal(&mut self, samples: u64, fec_from: Option<&[u8]>) {
        let samples = (samples as usize).min(MAX_PACKET_SAMPLES);
        let out = &mut self.scratch[..2 * samples];
        let (input, fec) = match fec_from {
            Some(p) => (p, true),
            None => (&[][..], false),
        };
        match self.decoder.decode_float(input, out, fec) {
            Ok(n) if n > 0 => {
                if fec {
                    self.stats.fec += 1;
                } else {
                    self.stats.plc += 1;
                }
                self.take_scratch(n.min(samples));
                // Keep the timeline: pad if the decoder gave less than asked.
                for _ in n.min(samples)..samples {
                    self.pcm.extend([0.0, 0.0]);
                }
            }
            _ => {
                for _ in 0..samples {
                    self.pcm.extend([0.0, 0.0]);
                }
            }
        }
    }

    fn take_scratch(&mut self, samples: usize) {
        let n = (2 * samples).min(self.scratch.len());
        self.pcm.extend(self.scratch[..n].iter().copied());
    }
}

/// Fuzz entry point (`server/fuzz`, and a bounded stable run in `server/tests/recording_fuzz.rs`):
/// `data` is a script of packets and mix steps for one [`Source`]. Each step reads an op byte;
/// op % 4 == 0 mixes a 20 ms frame (time advances), otherwise a packet follows: a 2-byte
/// timestamp step (in 2.5 ms units, backwards when op & 0x80), a length byte and that many
/// payload bytes. Panics only on a bug: every output sample must be finite.
pub fn fuzz_packets(data: &[u8]) {
    let Ok(mut source) = Source::new() else {
        return;
    };
    let start = Instant::now();
    let mut now = start;
    let mut ts: u64 = 1 << 40;
    let mut out = vec![0.0f32; 2 * 960];
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        i += 1;
        if op.is_multiple_of(4) {
            now += Duration::from_millis(20);
            out.fill(0.0);
            source.mix_into(now, &mut out);
            assert!(out.iter().all(|x| x.is_finite()), "non-finite audio");
            continue;
        }
        let Some(head) = data.get(i..i + 3) else {
            break;
        };
        i += 3;
        let step = u64::from(u16::from_le_bytes([head[0], head[1]])) * 120;
        ts = if op & 0x80 != 0 {
            ts.wrapping_sub(step)
        } else {
            ts.wrapping_add(step)
        };
        let len = usize::from(head[2]).min(data.len() - i);
        let _ = source.push(now, ts, &data[i..i + len]);
        i += len;
    }
    for _ in 0..8 {
        now += Duration::from_millis(20);
        source.mix_into(now, &mut out);
    }
    assert!(out.iter().all(|x| x.is_finite()), "non-finite audio");
}

#[cfg(test)]
mod tests {
    use super::*;
    use opus::{Application, Encoder};

    const FRAME: usize = 960;

    fn tone_packets(count: usize) -> Vec<Vec<u8>> {
        let mut enc = Encoder::new(RATE, Channels::Stereo, Application::Audio).expect("encoder");
        enc.set_inband_fec(true).expect("fec");
        enc.set_packet_loss_perc(20).expect("loss");
        let mut out = Vec::new();
        for k in 0..count {
            let pcm: Vec<f32> = (0..FRAME)
                .flat_map(|i| {
                    let t = (k * FRAME + i) as f32 / RATE as f32;
                    let l = 0.5 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
                    let r = 0.5 * (2.0 * std::f32::consts::PI * 660.0 * t).sin();
                    [l, r]
                })
                .collect();
            out.push(enc.encode_vec_float(&pcm, 4000).expect("encode"));
        }
        out
    }

    fn energy(x: &[f32]) -> f32 {
        x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32
    }

    #[test]
    fn out_of_order_packets_are_played_in_order_after_the_jitter_delay() {
        let packets = tone_packets(10);
        let mut s = Source::new().expect("source");
        let t0 = Instant::now();
        for &k in &[1usize, 0, 3, 2, 4, 5, 6, 7, 8, 9] {
            s.push(t0, 1000 + (k * FRAME) as u64, &packets[k])
                .expect("accepted");
        }
        let mut out = vec![0.0; 2 * FRAME];
        s.mix_into(t0, &mut out);
        assert_eq!(energy(&out), 0.0, "nothing before the jitter delay");
        let later = t0 + JITTER_DELAY;
        for _ in 0..10 {
            out.fill(0.0);
            s.mix_into(later, &mut out);
        }
        assert!(energy(&out) > 0.01, "the tone plays");
        assert_eq!(s.stats().decoded, 10);
        assert_eq!(s.stats().plc + s.stats().fec, 0);
        assert_eq!(
            s.push(later, 1000, &packets[0]),
            Err(Rejected::Late),
            "already played"
        );
    }

    #[test]
    fn a_lost_packet_is_recovered_by_fec_and_a_longer_gap_by_plc() {
        let packets = tone_packets(12);
        let mut s = Source::new().expect("source");
        let t0 = Instant::now();
        for k in (0..12).filter(|k| *k != 3 && *k != 7 && *k != 8) {
            s.push(t0, (k * FRAME) as u64, &packets[k])
                .expect("accepted");
        }
        let mut out = vec![0.0; 2 * FRAME];
        for _ in 0..12 {
            out.fill(0.0);
            s.mix_into(t0 + JITTER_DELAY, &mut out);
            assert!(energy(&out) > 0.001, "no hole in the timeline");
        }
        let st = s.stats();
        assert_eq!(st.decoded, 9);
        assert_eq!(
            st.fec, 2,
            "packet 3 and packet 8 from the FEC of their successors"
        );
        assert_eq!(st.plc, 1, "packet 7: its successor is lost too");
    }

    #[test]
    fn garbage_is_refused_and_never_panics() {
        let mut s = Source::new().expect("source");
        let t0 = Instant::now();
        assert_eq!(s.push(t0, 0, &[]), Err(Rejected::Malformed));
        assert_eq!(s.push(t0, 0, &[0u8; 1501]), Err(Rejected::Malformed));
        // TOC code 3 with a frame count of 0 is invalid.
        assert_eq!(s.push(t0, 0, &[0x03, 0x00]), Err(Rejected::Malformed));
        // Valid TOC, nonsense body: accepted, then concealed when undecodable.
        s.push(t0, 0, &[0xfc, 0xff, 0xff, 0xff]).ok();
        s.push(t0, u64::MAX - 10, &[0xfc, 0x01]).ok();
        assert_eq!(s.push(t0, 0, &[0xfc, 0x01]), Err(Rejected::Duplicate));
        let mut out = vec![0.0; 2 * FRAME];
        for i in 0..5 {
            s.mix_into(t0 + JITTER_DELAY * i, &mut out);
        }
        assert!(out.iter().all(|x| x.is_finite()));
    }
}
