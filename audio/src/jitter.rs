//! An adaptive jitter buffer for one remote's Opus packets, ordered by RTP sequence number, with
//! a target delay that follows the measured arrival jitter (after libwebrtc's NetEQ).
//!
//! Drive contract: the playout side owns the clock. Once per 10 ms block it calls
//! [`JitterBuffer::push`] for every packet that arrived since the last block, stamped with
//! the playout clock (`arrival`, in 48 kHz frames), then [`JitterBuffer::pop`] as many times as it
//! needs audio. Arrival times are therefore measured at the granularity the playout can use a
//! packet (one block), as NetEQ's tick timer does.
//!
//! The target: for every packet the *relative delay* is its transit time (arrival − RTP
//! timestamp) minus the smallest transit time among the last [`DELAY_HISTORY`] packets (~2.5 s at
//! 20 ms), rounded up to whole blocks. [`JitterBuffer::target_slack`] is the 95th percentile of
//! those delays, or the largest of them over the last second if that is higher: the audio the
//! playout should still hold at its lowest point so that 95 % of packets arrive before they are
//! needed. It is never below `(min_depth − 1)` packets, so it sits at zero on a calm path (one
//! packet of buffering, the latency floor), rises with the first late packet of a burst (the
//! one-second peak), and falls again once the burst has left both windows (1 s of calm for a
//! lone spike, ~2.5 s for a burst that weighs in the percentile).
//!
//! Late packets: when the next packet is missing and nothing later has arrived, [`Pop::Expand`]
//! asks for concealment *without* giving up on the packet; when it arrives it plays, so a late
//! burst grows the delay at once instead of being lost (the playout gives the surplus back by
//! time-scaling, see [`crate::playout`]). When later packets are here, the missing one is
//! [`Pop::Lost`] (recovered from the next packet's FEC if it is here). A sender restart (a
//! sequence or timestamp jump) restarts the buffer around the new stream.
//!
//! No allocation after [`JitterBuffer::new`]; everything else is fixed-size arrays.

use crate::opus::{OpusError, OpusPacket};
use crate::units::BLOCK_FRAMES;

/// What arrived packet became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored for playout.
    Stored,
    /// Already had it.
    Duplicate,
    /// Its turn had passed; dropped.
    Late,
    /// So far from the playout point (a sender restart) that the buffer restarted around it.
    Resynced,
}

/// What the playout side gets for the next frame.
#[derive(Debug)]
pub enum Pop<'a> {
    /// Still filling up: play silence.
    Buffering,
    /// The next packet in order.
    Packet(&'a OpusPacket),
    /// The next packet is missing while later ones are here: conceal it and move on; `next` is
    /// the one after it if it has arrived (for FEC).
    Lost {
        /// The following packet, if buffered.
        next: Option<&'a OpusPacket>,
    },
    /// Nothing has arrived yet: conceal one frame and keep waiting for the same packet (the
    /// delay grows by one frame).
    Expand,
}

/// Counters for the UI and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets played in order.
    pub played: u64,
    /// Packets given up as lost (concealed, FEC where possible).
    pub lost: u64,
    /// Frames concealed while waiting for a late packet (each adds a frame of delay).
    pub expanded: u64,
    /// Packets dropped as late.
    pub late: u64,
    /// Duplicates ignored.
    pub duplicates: u64,
    /// Restarts around a new stream (sender restart, long outage).
    pub resyncs: u64,
}

/// Slots in the buffer (packets); at 20 ms this is 1.28 s.
pub const JITTER_CAPACITY: usize = 64;

/// Packets of arrival history the target is computed over (2.56 s at 20 ms).
pub const DELAY_HISTORY: usize = 128;

/// Packets over which the largest relative delay is held as the target (1 s at 20 ms): a late
/// burst raises the target at once, before it weighs in the percentile.
const PEAK_PACKETS: usize = 50;

/// Histogram bins of one block (10 ms) each: the target never exceeds `DELAY_BINS − 1` blocks.
const DELAY_BINS: usize = 50;

/// Fraction of packets that should arrive in time (the target's percentile), in 1/1000.
const PERCENTILE_PERMILLE: usize = 950;

/// Concealed frames in a row after which the stream is taken as stopped and the buffer starts
/// again (200 ms at 20 ms).
const MAX_EXPANDS_IN_ROW: usize = 10;

/// Late packets in a row that mean the sender restarted behind the playout point.
const MAX_LATE_IN_ROW: usize = 8;

/// A timestamp jump larger than this (frames, 10 s) is a new stream, not jitter.
const MAX_TS_JUMP: i64 = 480_000;

/// The relative-delay statistics (fixed-size).
#[derive(Debug, Clone)]
struct DelayStats {
    transit: [i64; DELAY_HISTORY],
    bin: [u8; DELAY_HISTORY],
    len: usize,
    head: usize,
    hist: [u16; DELAY_BINS],
    /// The largest bin among the last [`PEAK_PACKETS`] packets.
    peak: usize,
    /// Last raw RTP timestamp and its unwrapped value.
    last_ts: Option<(u32, i64)>,
}

impl DelayStats {
    fn new() -> DelayStats {
        DelayStats {
            transit: [0; DELAY_HISTORY],
            bin: [0; DELAY_HISTORY],
            len: 0,
            head: 0,
            hist: [0; DELAY_BINS],
            peak: 0,
            last_ts: None,
        }
    }

    fn clear(&mut self) {
        *self = DelayStats {
            transit: self.transit,
            bin: self.bin,
            ..DelayStats::new()
        };
    }

    /// Records a packet's arrival; returns its relative delay in frames.
    fn record(&mut self, rtp_timestamp: u32, arrival: u64) -> i64 {
        let ts = match self.last_ts {
            Some((raw, unwrapped)) => {
                let d = i64::from(rtp_timestamp.wrapping_sub(raw) as i32);
                if d.abs() > MAX_TS_JUMP {
                    // A new stream: the old transit times say nothing about it.
                    self.clear();
                    0
                } else {
                    unwrapped + d
                }
            }
            None => 0,
        };
        self.last_ts = Some((rtp_timestamp, ts));
        let transit = arrival as i64 - ts;
        if self.len == DELAY_HISTORY {
            let old = usize::from(self.bin[self.head]);
            self.hist[old] -= 1;
        } else {
            self.len += 1;
        }
        self.transit[self.head] = transit;
        let min = self.transit[..self.len]
            .iter()
            .copied()
            .min()
            .unwrap_or(transit);
        let rel = transit - min;
        let bin = (rel.max(0) as usize)
            .div_ceil(BLOCK_FRAMES)
            .min(DELAY_BINS - 1);
        self.bin[self.head] = bin as u8;
        self.hist[bin] += 1;
        self.head = (self.head + 1) % DELAY_HISTORY;
        self.peak = (1..=PEAK_PACKETS.min(self.len))
            .map(|back| usize::from(self.bin[(self.head + DELAY_HISTORY - back) % DELAY_HISTORY]))
            .max()
            .unwrap_or(0);
        rel
    }

    /// The target in blocks: the percentile of the relative delays, or the recent peak if higher.
    fn target_blocks(&self) -> usize {
        self.percentile_blocks().max(self.peak)
    }

    /// The percentile of the relative delays, in blocks.
    fn percentile_blocks(&self) -> usize {
        if self.len == 0 {
            return 0;
        }
        let need = (self.len * PERCENTILE_PERMILLE).div_ceil(1000);
        let mut sum = 0usize;
        for (b, &n) in self.hist.iter().enumerate() {
            sum += usize::from(n);
            if sum >= need {
                return b;
            }
        }
        DELAY_BINS - 1
    }
}

/// The jitter buffer.
#[derive(Debug)]
pub struct JitterBuffer {
    slots: Vec<OpusPacket>,
    filled: Vec<bool>,
    next_seq: Option<u16>,
    count: usize,
    min_depth: usize,
    playing: bool,
    expands_in_row: usize,
    late_in_row: usize,
    packet_frames: usize,
    last_pushed: Option<(u16, u32)>,
    delays: DelayStats,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer that starts playing once `min_depth` packets are in (clamped to 1..=32) and never
    /// targets less than `min_depth − 1` packets of slack.
    pub fn new(min_depth: usize) -> JitterBuffer {
        JitterBuffer {
            slots: (0..JITTER_CAPACITY).map(|_| OpusPacket::empty()).collect(),
            filled: vec![false; JITTER_CAPACITY],
            next_seq: None,
            count: 0,
            min_depth: min_depth.clamp(1, 32),
            playing: false,
            expands_in_row: 0,
            late_in_row: 0,
            packet_frames: 2 * BLOCK_FRAMES,
            last_pushed: None,
            delays: DelayStats::new(),
            stats: JitterStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Packets buffered.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Frames per packet, learnt from consecutive packets' RTP timestamps (960 until known).
    pub fn packet_frames(&self) -> usize {
        self.packet_frames
    }

    /// Audio buffered in packets, in frames (48 kHz).
    pub fn buffered_frames(&self) -> usize {
        self.count * self.packet_frames
    }

    /// Whether playout has started (the first `min_depth` packets came in).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// The audio (frames) the playout should still hold at its lowest point: the 95th percentile
    /// of the recent relative arrival delays, never below `min_depth − 1` packets.
    pub fn target_slack(&self) -> usize {
        let measured = self.delays.target_blocks() * BLOCK_FRAMES;
        measured.max((self.min_depth - 1) * self.packet_frames)
    }

    fn slot(seq: u16) -> usize {
        usize::from(seq) % JITTER_CAPACITY
    }

    fn clear(&mut self) {
        self.filled.fill(false);
        self.count = 0;
        self.next_seq = None;
        self.playing = false;
        self.expands_in_row = 0;
        self.late_in_row = 0;
    }

    fn resync(&mut self, sequence: u16) {
        self.clear();
        self.delays.clear();
        self.last_pushed = None;
        self.next_seq = Some(sequence);
        self.stats.resyncs += 1;
    }

    /// Stores a received packet that arrived at `arrival` (playout clock, 48 kHz frames).
    pub fn push(
        &mut self,
        sequence: u16,
        rtp_timestamp: u32,
        payload: &[u8],
        arrival: u64,
    ) -> Result<PushOutcome, OpusError> {
        if payload.is_empty() || payload.len() > crate::opus::MAX_PACKET_BYTES {
            return Err(OpusError::BadPacket(payload.len()));
        }
        let mut outcome = PushOutcome::Stored;
        let next = *self.next_seq.get_or_insert(sequence);
        let ahead = sequence.wrapping_sub(next) as i16;
        let ts_jump = self.last_pushed.is_some_and(|(s, ts)| {
            // Sequence and timestamp must move together; a jump in one alone is a new stream.
            let ds = i64::from(sequence.wrapping_sub(s) as i16);
            let dt = i64::from(rtp_timestamp.wrapping_sub(ts) as i32);
            (dt - ds * self.packet_frames as i64).abs() > MAX_TS_JUMP
        });
        if ahead >= 0 && (ts_jump || ahead as i32 >= JITTER_CAPACITY as i32) {
            // A new stream ahead of us (sender restart), or a gap longer than the buffer.
            self.resync(sequence);
            outcome = PushOutcome::Resynced;
        } else if ahead < 0 {
            if self.is_stored(sequence) {
                self.stats.duplicates += 1;
                return Ok(PushOutcome::Duplicate);
            }
            // Before the playout point: late (or a straggler of the previous stream), unless
            // playout has not started and it is a reorder.
            if self.playing || ts_jump || -(ahead as i32) >= JITTER_CAPACITY as i32 / 2 {
                self.late_in_row += 1;
                if self.late_in_row >= MAX_LATE_IN_ROW {
                    // Many in a row: the sender restarted behind us.
                    self.resync(sequence);
                    outcome = PushOutcome::Resynced;
                } else {
                    self.stats.late += 1;
                    if !ts_jump {
                        // A late packet still tells how late the path is.
                        self.delays.record(rtp_timestamp, arrival);
                    }
                    return Ok(PushOutcome::Late);
                }
            } else {
                self.next_seq = Some(sequence);
            }
        }
        let i = Self::slot(sequence);
        if self.filled[i] && self.slots[i].sequence == sequence {
            self.stats.duplicates += 1;
            return Ok(PushOutcome::Duplicate);
        }
        self.late_in_row = 0;
        if let Some((s, ts)) = self.last_pushed
            && sequence.wrapping_sub(s) == 1
        {
            let d = rtp_timestamp.wrapping_sub(ts) as usize;
            if (120..=crate::opus::MAX_DECODE_FRAMES).contains(&d) {
                self.packet_frames = d;
            }
        }
        self.last_pushed = Some((sequence, rtp_timestamp));
        self.delays.record(rtp_timestamp, arrival);
        self.slots[i].set(sequence, rtp_timestamp, payload)?;
        if !self.filled[i] {
            self.count += 1;
        }
        self.filled[i] = true;
        Ok(outcome)
    }

    fn is_stored(&self, seq: u16) -> bool {
        let i = Self::slot(seq);
        self.filled[i] && self.slots[i].sequence == seq
    }

    /// The next frame for playout.
    pub fn pop(&mut self) -> Pop<'_> {
        let Some(seq) = self.next_seq else {
            return Pop::Buffering;
        };
        if !self.playing {
            if self.count < self.min_depth {
                return Pop::Buffering;
            }
            self.playing = true;
        }
        if self.is_stored(seq) {
            let i = Self::slot(seq);
            self.next_seq = Some(seq.wrapping_add(1));
            self.filled[i] = false;
            self.count -= 1;
            self.expands_in_row = 0;
            self.stats.played += 1;
            return Pop::Packet(&self.slots[i]);
        }
        if self.count == 0 {
            self.expands_in_row += 1;
            if self.expands_in_row > MAX_EXPANDS_IN_ROW {
                // The stream stopped (or a long outage): start again with the next packet.
                self.clear();
                return Pop::Buffering;
            }
            self.stats.expanded += 1;
            return Pop::Expand;
        }
        self.next_seq = Some(seq.wrapping_add(1));
        self.expands_in_row = 0;
        self.stats.lost += 1;
        let n = seq.wrapping_add(1);
        if self.is_stored(n) {
            Pop::Lost {
                next: Some(&self.slots[Self::slot(n)]),
            }
        } else {
            Pop::Lost { next: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = BLOCK_FRAMES as u64;

    fn seqs(jb: &mut JitterBuffer, pops: usize) -> Vec<Option<u16>> {
        (0..pops)
            .map(|_| match jb.pop() {
                Pop::Packet(p) => Some(p.sequence),
                Pop::Lost { .. } | Pop::Expand => None,
                Pop::Buffering => Some(u16::MAX),
            })
            .collect()
    }

    #[test]
    fn reorders_and_drops_duplicates() {
        let mut jb = JitterBuffer::new(3);
        for s in [10u16, 12, 11, 11, 13] {
            jb.push(s, u32::from(s) * 960, &[1, 2, 3], 0).expect("push");
        }
        assert_eq!(jb.stats().duplicates, 1);
        assert_eq!(
            seqs(&mut jb, 4),
            vec![Some(10), Some(11), Some(12), Some(13)]
        );
        assert_eq!(
            jb.push(9, 9 * 960, &[1], 0).expect("push"),
            PushOutcome::Late
        );
        assert_eq!(jb.stats().late, 1);
    }

    #[test]
    fn loss_offers_next_for_fec_and_wraps_sequence() {
        let mut jb = JitterBuffer::new(2);
        for (k, s) in [65534u16, 0, 1].into_iter().enumerate() {
            let ts = 960 * [0u32, 2, 3][k];
            jb.push(s, ts, &[s as u8 + 1], 0).expect("push");
        }
        assert!(matches!(jb.pop(), Pop::Packet(p) if p.sequence == 65534));
        match jb.pop() {
            Pop::Lost { next: Some(p) } => assert_eq!(p.sequence, 0),
            other => panic!("expected loss with FEC source, got {other:?}"),
        }
        assert!(matches!(jb.pop(), Pop::Packet(p) if p.sequence == 0));
        assert!(matches!(jb.pop(), Pop::Packet(p) if p.sequence == 1));
        assert_eq!(jb.stats().lost, 1);
    }

    #[test]
    fn waits_for_a_late_packet_then_restarts_after_a_long_outage() {
        let mut jb = JitterBuffer::new(1);
        jb.push(1, 960, &[1], 0).expect("push");
        assert_eq!(seqs(&mut jb, 1), vec![Some(1)]);
        // Packet 2 is late: expand, do not skip it.
        assert!(matches!(jb.pop(), Pop::Expand));
        jb.push(2, 2 * 960, &[1], 4 * B).expect("push");
        assert_eq!(seqs(&mut jb, 1), vec![Some(2)]);
        assert_eq!(jb.stats().expanded, 1);
        assert_eq!(jb.stats().lost, 0);
        // A long outage: ten expansions, then buffering again.
        let tail = seqs(&mut jb, 11);
        assert_eq!(tail.iter().filter(|s| s.is_none()).count(), 10);
        assert_eq!(tail.last(), Some(&Some(u16::MAX)));
        assert!(jb.push(0, 0, &[], 0).is_err());
    }

    #[test]
    fn a_wrapping_sequence_and_timestamp_keep_playing() {
        let mut jb = JitterBuffer::new(1);
        let mut seq = 65530u16;
        let mut ts = u32::MAX - 5 * 960;
        let mut out = Vec::new();
        for k in 0..12u64 {
            jb.push(seq, ts, &[1], 2 * k * B).expect("push");
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(960);
            out.extend(seqs(&mut jb, 1));
        }
        let want: Vec<Option<u16>> = (0..12u16).map(|k| Some(65530u16.wrapping_add(k))).collect();
        assert_eq!(out, want);
        assert_eq!(jb.target_slack(), 0, "a steady stream needs no slack");
        assert_eq!(jb.stats().resyncs, 0);
    }

    #[test]
    fn a_sender_restart_behind_or_ahead_resyncs() {
        let mut jb = JitterBuffer::new(1);
        for k in 0..5u16 {
            jb.push(1000 + k, 960 * u32::from(k), &[1], 2 * u64::from(k) * B)
                .expect("push");
            assert_eq!(seqs(&mut jb, 1), vec![Some(1000 + k)]);
        }
        // Restart with a random sequence ahead and a new timestamp base.
        assert_eq!(
            jb.push(30_000, 123_456_789, &[1], 10 * B).expect("push"),
            PushOutcome::Resynced
        );
        assert_eq!(seqs(&mut jb, 1), vec![Some(30_000)]);
        // Restart just behind the playout point with the timestamp continuing: late packets in
        // a row make it a restart.
        let mut got = Vec::new();
        for k in 0..12u16 {
            let s = 29_990 + k;
            jb.push(
                s,
                123_456_789u32.wrapping_add(960 * (u32::from(k) + 1)),
                &[1],
                (12 + 2 * u64::from(k)) * B,
            )
            .expect("push");
            got.extend(seqs(&mut jb, 1));
        }
        assert_eq!(jb.stats().resyncs, 2, "{:?}", jb.stats());
        assert!(got.contains(&Some(30_001)), "{got:?}");
    }

    #[test]
    fn target_follows_late_arrivals_and_forgets_them() {
        let mut jb = JitterBuffer::new(1);
        let mut seq = 0u16;
        let mut feed = |jb: &mut JitterBuffer, late_blocks: u64, n: usize| {
            for _ in 0..n {
                let k = u64::from(seq);
                jb.push(seq, (k * 960) as u32, &[1], (2 * k + late_blocks) * B)
                    .expect("push");
                let _ = jb.pop();
                seq = seq.wrapping_add(1);
            }
        };
        feed(&mut jb, 0, 100);
        assert_eq!(jb.target_slack(), 0);
        // 10 % of packets 40 ms late: the 95th percentile is 40 ms.
        for _ in 0..10 {
            feed(&mut jb, 4, 1);
            feed(&mut jb, 0, 9);
        }
        assert_eq!(jb.target_slack(), 4 * BLOCK_FRAMES);
        // A calm history window later, the target is back at zero.
        feed(&mut jb, 0, DELAY_HISTORY);
        assert_eq!(jb.target_slack(), 0);
        // One late packet raises the target at once, for one second of packets.
        feed(&mut jb, 6, 1);
        assert_eq!(jb.target_slack(), 6 * BLOCK_FRAMES);
        feed(&mut jb, 0, PEAK_PACKETS - 1);
        assert_eq!(jb.target_slack(), 6 * BLOCK_FRAMES);
        feed(&mut jb, 0, 1);
        assert_eq!(jb.target_slack(), 0);
        // The configured minimum holds.
        let mut jb2 = JitterBuffer::new(3);
        feed(&mut jb2, 0, 10);
        assert_eq!(jb2.target_slack(), 2 * 960);
    }
}
