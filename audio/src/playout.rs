//! The playout path: each remote seat's Opus packets go through an adaptive jitter buffer and a
//! decoder (with loss concealment and FEC) into 10 ms blocks, which are mixed with per-remote
//! volume (0 = hear nothing — the level still feeds the speaking ripple), an all-remotes mute, and
//! the local music, into what the output device plays. That mix is also the AEC's far-end
//! reference.
//!
//! Delay control (per remote, every block): the *slack* is the audio still held after this block
//! is played (decoded FIFO + buffered packets). Its lowest value over the last
//! [`SLACK_WINDOW`] blocks is compared with the jitter buffer's target
//! ([`JitterBuffer::target_slack`], the 95th percentile of the recent arrival delays, or the
//! last second's largest if higher):
//! - too little: nothing is done ahead of time; when a packet is not there in time the jitter
//!   buffer asks for concealment and keeps waiting for it, so the delay grows by a frame at once;
//! - surplus of at least 2.5 ms: the decoded audio is shortened by one pitch period
//!   ([`crate::time_scale::accelerate`], ≤ 10 ms per block) where it is periodic (correlation
//!   ≥ 0.9) or quiet; if the surplus persists 0.5 s (noise-like music) the threshold drops to
//!   0.7, after 1 s the best period is cross-faded out anyway, so delay is always given back.
//!
//! Time-scaling was chosen over dropping whole frames: a dropped 20 ms frame clicks unless it is
//! silent, and continuous music has no silent frames; one cross-faded pitch period is inaudible
//! on voice and held notes.
//!
//! Drive contract: the network side pushes packets into each remote's [`RemoteInput`] (an SPSC
//! ring, never blocks); the DSP thread calls [`Playout::mix`] once per block, which stamps the
//! packets that came in with the playout clock. Allocation happens only in
//! [`RemoteStream::new`], off the DSP thread.

use crate::block::Block;
use crate::jitter::{JitterBuffer, Pop};
use crate::opus::{MAX_DECODE_FRAMES, OpusDecoder, OpusError, OpusPacket};
use crate::time_scale;
use crate::units::{BLOCK_FRAMES, Dbfs};
use crate::volume_indication::{SourceId, VolumeIndicator};

/// Packets a remote's input ring holds (2.5 s at 20 ms).
pub const REMOTE_RING_PACKETS: usize = 128;

/// Blocks over which the lowest slack is taken before giving back delay (200 ms).
pub const SLACK_WINDOW: usize = 20;

/// Shortest and longest period removed in one block (2.5 ms, 10 ms).
const MIN_LAG: usize = BLOCK_FRAMES / 4;
const MAX_LAG: usize = BLOCK_FRAMES;

/// Decoded-audio FIFO capacity in frames: one largest decode on top of what accelerate needs.
const FIFO_FRAMES: usize = MAX_DECODE_FRAMES + 4 * BLOCK_FRAMES;

/// The network side of one remote: push received packets here.
#[derive(Debug)]
pub struct RemoteInput {
    producer: rtrb::Producer<OpusPacket>,
}

impl RemoteInput {
    /// Queues a received packet; returns false if the ring is full (the packet is dropped).
    pub fn push(
        &mut self,
        sequence: u16,
        rtp_timestamp: u32,
        payload: &[u8],
    ) -> Result<bool, OpusError> {
        let p = OpusPacket::from_bytes(sequence, rtp_timestamp, payload)?;
        Ok(self.producer.push(p).is_ok())
    }
}

/// One remote member's decoded stream.
#[derive(Debug)]
pub struct RemoteStream {
    uid: u64,
    packets: rtrb::Consumer<OpusPacket>,
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    pcm: Vec<f32>,
    fifo: Vec<f32>,
    fifo_len: usize,
    volume: f32,
    applied_volume: f32,
    muted: bool,
    clock: u64,
    slack: [i64; SLACK_WINDOW],
    slack_pos: usize,
    slack_fill: usize,
    surplus_blocks: usize,
    accelerated: u64,
    corrupt: u64,
}

impl RemoteStream {
    /// Creates a remote's stream and its network-side input (allocates; call off the DSP thread).
    /// `jitter_depth` is the minimum buffering in packets: playout starts once that many are in,
    /// and the adaptive target never goes below `jitter_depth − 1` packets of slack (1 = follow
    /// the measured jitter down to the latency floor).
    pub fn new(uid: u64, jitter_depth: usize) -> Result<(RemoteStream, RemoteInput), OpusError> {
        let (producer, packets) = rtrb::RingBuffer::new(REMOTE_RING_PACKETS);
        Ok((
            RemoteStream {
                uid,
                packets,
                jitter: JitterBuffer::new(jitter_depth),
                decoder: OpusDecoder::new()?,
                pcm: vec![0.0; MAX_DECODE_FRAMES * 2],
                fifo: vec![0.0; FIFO_FRAMES * 2],
                fifo_len: 0,
                volume: 1.0,
                applied_volume: 1.0,
                muted: false,
                clock: 0,
                slack: [0; SLACK_WINDOW],
                slack_pos: 0,
                slack_fill: 0,
                surplus_blocks: 0,
                accelerated: 0,
                corrupt: 0,
            },
            RemoteInput { producer },
        ))
    }

    /// The member's uid.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// Jitter-buffer counters.
    pub fn jitter_stats(&self) -> crate::jitter::JitterStats {
        self.jitter.stats()
    }

    /// Audio held for this remote right now, in frames (decoded FIFO + buffered packets): the
    /// delay the playout adds on top of the block being played.
    pub fn buffered_frames(&self) -> usize {
        self.fifo_len / 2 + self.jitter.buffered_frames()
    }

    /// The jitter buffer's current target slack in frames (see [`JitterBuffer::target_slack`]).
    pub fn target_slack(&self) -> usize {
        self.jitter.target_slack()
    }

    /// Packets the decoder refused (not Opus); each was concealed like a lost one.
    pub fn corrupt_packets(&self) -> u64 {
        self.corrupt
    }

    /// Frames removed by time-scaling so far (delay given back).
    pub fn accelerated_frames(&self) -> u64 {
        self.accelerated
    }

    fn decode_next(&mut self) -> bool {
        if self.fifo.len() - self.fifo_len < MAX_DECODE_FRAMES * 2 {
            return false;
        }
        let frames = match self.jitter.pop() {
            Pop::Buffering => return false,
            Pop::Packet(p) => self.decoder.decode(p.payload(), &mut self.pcm),
            Pop::Lost { next } => {
                let next = next.map(|p| p.payload());
                self.decoder.conceal(next, &mut self.pcm)
            }
            Pop::Expand => self.decoder.conceal(None, &mut self.pcm),
        };
        // A corrupt packet is concealed like a lost one.
        let frames = match frames {
            Ok(f) => f,
            Err(_) => {
                self.corrupt += 1;
                self.decoder.conceal(None, &mut self.pcm).unwrap_or(0)
            }
        };
        let n = (frames * 2).min(self.fifo.len() - self.fifo_len);
        self.fifo[self.fifo_len..self.fifo_len + n].copy_from_slice(&self.pcm[..n]);
        self.fifo_len += n;
        n > 0
    }

    /// Gives back delay when the slack has stayed above the target for a whole window.
    fn adapt(&mut self) {
        let frames = self.fifo_len / 2;
        let slack = (frames - BLOCK_FRAMES + self.jitter.buffered_frames()) as i64;
        self.slack[self.slack_pos] = slack;
        self.slack_pos = (self.slack_pos + 1) % SLACK_WINDOW;
        if self.slack_fill < SLACK_WINDOW {
            self.slack_fill += 1;
            return;
        }
        let low = self.slack.iter().copied().min().unwrap_or(0);
        let surplus = low - self.jitter.target_slack() as i64;
        if surplus < MIN_LAG as i64 {
            self.surplus_blocks = 0;
            return;
        }
        self.surplus_blocks += 1;
        let max_lag = (surplus as usize).min(MAX_LAG);
        // The audio to shorten must be decoded: take it from the packets already here.
        while self.fifo_len / 2 < BLOCK_FRAMES + 2 * max_lag && !self.jitter.is_empty() {
            if !self.decode_next() {
                break;
            }
        }
        // What is left after the splice must still fill this block.
        let max_lag = max_lag.min((self.fifo_len / 2).saturating_sub(BLOCK_FRAMES));
        let threshold = match self.surplus_blocks {
            0..50 => 0.9,
            50..100 => 0.7,
            _ => -1.0,
        };
        let removed = time_scale::accelerate(
            &mut self.fifo,
            self.fifo_len / 2,
            MIN_LAG,
            max_lag,
            threshold,
        );
        if removed > 0 {
            self.fifo_len -= 2 * removed;
            for s in self.slack.iter_mut() {
                *s -= removed as i64;
            }
            self.accelerated += removed as u64;
            self.surplus_blocks = 0;
        }
    }

    /// Produces the next 10 ms of this remote (stereo), before volume. Silence while buffering.
    pub fn pull(&mut self, out: &mut Block) {
        let now = self.clock;
        self.clock += BLOCK_FRAMES as u64;
        while let Ok(p) = self.packets.pop() {
            let _ = self
                .jitter
                .push(p.sequence, p.rtp_timestamp, p.payload(), now);
        }
        while self.fifo_len < BLOCK_FRAMES * 2 {
            if !self.decode_next() {
                break;
            }
        }
        out.set_channels(2);
        if self.fifo_len < BLOCK_FRAMES * 2 {
            out.clear();
            self.slack_fill = 0;
            self.surplus_blocks = 0;
            return;
        }
        self.adapt();
        let (l, r) = out.pair_mut();
        for i in 0..BLOCK_FRAMES {
            l[i] = self.fifo[2 * i];
            r[i] = self.fifo[2 * i + 1];
        }
        self.fifo.copy_within(BLOCK_FRAMES * 2..self.fifo_len, 0);
        self.fifo_len -= BLOCK_FRAMES * 2;
    }
}

/// Mixes all remotes and the local music into the output.
#[derive(Debug)]
pub struct Playout {
    remotes: Vec<Option<Box<RemoteStream>>>,
    scratch: Block,
    mute_all: bool,
    applied_all: f32,
    music_volume: f32,
    applied_music: f32,
}

impl Playout {
    /// Audio held for the most-buffered remote, in frames (0 without remotes).
    pub fn max_buffered_frames(&self) -> usize {
        self.remotes
            .iter()
            .flatten()
            .map(|r| r.buffered_frames())
            .max()
            .unwrap_or(0)
    }

    /// Room for `max_remotes` remotes.
    pub fn new(max_remotes: usize) -> Playout {
        Playout {
            remotes: (0..max_remotes.max(1)).map(|_| None).collect(),
            scratch: Block::silent(2),
            mute_all: false,
            applied_all: 1.0,
            music_volume: 1.0,
            applied_music: 1.0,
        }
    }

    /// Adds a remote; returns it back if there is no free slot or the uid is already present.
    pub fn add(&mut self, remote: Box<RemoteStream>) -> Result<(), Box<RemoteStream>> {
        if self.remotes.iter().flatten().any(|r| r.uid == remote.uid) {
            return Err(remote);
        }
        match self.remotes.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(remote);
                Ok(())
            }
            None => Err(remote),
        }
    }

    /// Removes a remote and hands it back (to be dropped off the DSP thread).
    pub fn remove(&mut self, uid: u64) -> Option<Box<RemoteStream>> {
        self.remotes
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|r| r.uid == uid))
            .and_then(Option::take)
    }

    /// Volume of one remote, 0..=1.5 (0 = hear nothing; the ripple still shows).
    pub fn set_volume(&mut self, uid: u64, volume: f32) {
        if let Some(r) = self.remotes.iter_mut().flatten().find(|r| r.uid == uid) {
            r.volume = volume.clamp(0.0, 1.5);
        }
    }

    /// Mute what you hear from one remote.
    pub fn set_muted(&mut self, uid: u64, muted: bool) {
        if let Some(r) = self.remotes.iter_mut().flatten().find(|r| r.uid == uid) {
            r.muted = muted;
        }
    }

    /// Mute what you hear from all remotes.
    pub fn set_all_muted(&mut self, muted: bool) {
        self.mute_all = muted;
    }

    /// Local music volume in the output, 0..=1.5.
    pub fn set_music_volume(&mut self, v: f32) {
        self.music_volume = v.clamp(0.0, 1.5);
    }

    /// Mixes one block of all remotes plus `music` into `out` (stereo), feeding each remote's
    /// pre-volume level to `indicator`.
    pub fn mix(&mut self, out: &mut Block, music: Option<&Block>, indicator: &mut VolumeIndicator) {
        out.set_channels(2);
        out.clear();
        let all_target = if self.mute_all { 0.0 } else { 1.0 };
        let all_start = self.applied_all;
        self.applied_all = all_target;
        for r in self.remotes.iter_mut().flatten() {
            r.pull(&mut self.scratch);
            indicator.feed(
                SourceId::Remote(r.uid),
                Dbfs::from_amplitude(self.scratch.rms()),
            );
            let target = if r.muted { 0.0 } else { r.volume } * all_target;
            let start = r.applied_volume * all_start;
            r.applied_volume = if r.muted { 0.0 } else { r.volume };
            if start == 0.0 && target == 0.0 {
                continue;
            }
            let step = (target - start) / BLOCK_FRAMES as f32;
            for ch in 0..2 {
                let src = self.scratch.channel(ch);
                let dst = out.channel_mut(ch);
                for i in 0..BLOCK_FRAMES {
                    dst[i] += src[i] * (start + step * (i + 1) as f32);
                }
            }
        }
        if let Some(m) = music {
            let start = self.applied_music;
            let step = (self.music_volume - start) / BLOCK_FRAMES as f32;
            self.applied_music = self.music_volume;
            for ch in 0..2 {
                let src = m.channel(if m.channels() == 2 { ch } else { 0 });
                let dst = out.channel_mut(ch);
                for i in 0..BLOCK_FRAMES {
                    dst[i] += src[i] * (start + step * (i + 1) as f32);
                }
            }
        }
    }
}
