//! A fixed-capacity jitter buffer for one remote's Opus packets, ordered by RTP sequence number.
//!
//! Drive contract: the network side calls [`JitterBuffer::push`] as packets arrive (in any order,
//! with duplicates); the playout side calls [`JitterBuffer::pop`] once per frame. Playout starts
//! once `target_depth` packets are buffered; a missing packet yields [`Pop::Lost`] with the next
//! packet (if already here) so the decoder can recover it from FEC; after a long run of losses the
//! buffer goes back to buffering. No allocation after `new`.

use crate::opus::{OpusError, OpusPacket};

/// What arrived packet became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored for playout.
    Stored,
    /// Already had it.
    Duplicate,
    /// Its turn had passed; dropped.
    Late,
    /// So far ahead of the playout point that the buffer restarted around it.
    Resynced,
}

/// What the playout side gets for the next frame.
#[derive(Debug)]
pub enum Pop<'a> {
    /// Still filling up: play silence.
    Buffering,
    /// The next packet in order.
    Packet(&'a OpusPacket),
    /// The next packet is missing; `next` is the one after it if it has arrived (for FEC).
    Lost {
        /// The following packet, if buffered.
        next: Option<&'a OpusPacket>,
    },
}

/// Counters for the UI and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets played in order.
    pub played: u64,
    /// Frames concealed.
    pub lost: u64,
    /// Packets dropped as late.
    pub late: u64,
    /// Duplicates ignored.
    pub duplicates: u64,
}

/// The jitter buffer.
#[derive(Debug)]
pub struct JitterBuffer {
    slots: Vec<OpusPacket>,
    filled: Vec<bool>,
    next_seq: Option<u16>,
    count: usize,
    target_depth: usize,
    playing: bool,
    losses_in_row: usize,
    stats: JitterStats,
}

/// Slots in the buffer (packets); at 20 ms this is 1.28 s.
pub const JITTER_CAPACITY: usize = 64;

impl JitterBuffer {
    /// A buffer that starts playing once `target_depth` packets are in (clamped to 1..=32).
    pub fn new(target_depth: usize) -> JitterBuffer {
        JitterBuffer {
            slots: (0..JITTER_CAPACITY).map(|_| OpusPacket::empty()).collect(),
            filled: vec![false; JITTER_CAPACITY],
            next_seq: None,
            count: 0,
            target_depth: target_depth.clamp(1, 32),
            playing: false,
            losses_in_row: 0,
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

    fn slot(seq: u16) -> usize {
        usize::from(seq) % JITTER_CAPACITY
    }

    fn clear(&mut self) {
        self.filled.fill(false);
        self.count = 0;
        self.next_seq = None;
        self.playing = false;
        self.losses_in_row = 0;
    }

    /// Stores a received packet.
    pub fn push(
        &mut self,
        sequence: u16,
        rtp_timestamp: u32,
        payload: &[u8],
    ) -> Result<PushOutcome, OpusError> {
        let mut outcome = PushOutcome::Stored;
        let next = *self.next_seq.get_or_insert(sequence);
        let ahead = sequence.wrapping_sub(next) as i16;
        if ahead < 0 {
            // Before the playout point: late, unless we have not started and it is a reorder.
            if self.playing || self.count > 0 && (-ahead) as usize >= JITTER_CAPACITY / 2 {
                self.stats.late += 1;
                return Ok(PushOutcome::Late);
            }
            self.next_seq = Some(sequence);
        } else if ahead as usize >= JITTER_CAPACITY {
            self.clear();
            self.next_seq = Some(sequence);
            outcome = PushOutcome::Resynced;
        }
        let i = Self::slot(sequence);
        if self.filled[i] && self.slots[i].sequence == sequence {
            self.stats.duplicates += 1;
            return Ok(PushOutcome::Duplicate);
        }
        self.slots[i].set(sequence, rtp_timestamp, payload)?;
        if !self.filled[i] {
            self.count += 1;
        }
        self.filled[i] = true;
        Ok(outcome)
    }

    fn has(&self, seq: u16) -> bool {
        let i = Self::slot(seq);
        self.filled[i] && self.slots[i].sequence == seq
    }

    /// The next frame for playout.
    pub fn pop(&mut self) -> Pop<'_> {
        let Some(seq) = self.next_seq else {
            return Pop::Buffering;
        };
        if !self.playing {
            if self.count < self.target_depth {
                return Pop::Buffering;
            }
            self.playing = true;
        }
        if self.count == 0 {
            self.losses_in_row += 1;
            if self.losses_in_row > 10 {
                self.clear();
                return Pop::Buffering;
            }
            self.stats.lost += 1;
            self.next_seq = Some(seq.wrapping_add(1));
            return Pop::Lost { next: None };
        }
        self.next_seq = Some(seq.wrapping_add(1));
        if self.has(seq) {
            let i = Self::slot(seq);
            self.filled[i] = false;
            self.count -= 1;
            self.losses_in_row = 0;
            self.stats.played += 1;
            Pop::Packet(&self.slots[i])
        } else {
            self.losses_in_row += 1;
            self.stats.lost += 1;
            let n = seq.wrapping_add(1);
            if self.has(n) {
                Pop::Lost {
                    next: Some(&self.slots[Self::slot(n)]),
                }
            } else {
                Pop::Lost { next: None }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(jb: &mut JitterBuffer, pops: usize) -> Vec<Option<u16>> {
        (0..pops)
            .map(|_| match jb.pop() {
                Pop::Packet(p) => Some(p.sequence),
                Pop::Lost { .. } => None,
                Pop::Buffering => Some(u16::MAX),
            })
            .collect()
    }

    #[test]
    fn reorders_and_drops_duplicates() {
        let mut jb = JitterBuffer::new(3);
        for s in [10u16, 12, 11, 11, 13] {
            jb.push(s, u32::from(s) * 960, &[1, 2, 3]).expect("push");
        }
        assert_eq!(jb.stats().duplicates, 1);
        assert_eq!(
            seqs(&mut jb, 4),
            vec![Some(10), Some(11), Some(12), Some(13)]
        );
        assert_eq!(jb.push(9, 0, &[1]).expect("push"), PushOutcome::Late);
    }

    #[test]
    fn loss_offers_next_for_fec_and_wraps_sequence() {
        let mut jb = JitterBuffer::new(2);
        for s in [65534u16, 0, 1] {
            jb.push(s, 0, &[s as u8]).expect("push");
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
    fn waits_for_target_depth_and_rebuffers_after_long_outage() {
        let mut jb = JitterBuffer::new(3);
        jb.push(1, 0, &[1]).expect("push");
        assert!(matches!(jb.pop(), Pop::Buffering));
        jb.push(2, 0, &[1]).expect("push");
        jb.push(3, 0, &[1]).expect("push");
        assert_eq!(seqs(&mut jb, 3), vec![Some(1), Some(2), Some(3)]);
        let tail = seqs(&mut jb, 12);
        assert_eq!(tail.iter().filter(|s| s.is_none()).count(), 10);
        assert_eq!(tail.last(), Some(&Some(u16::MAX)));
        assert!(jb.push(0, 0, &[]).is_err());
    }
}
