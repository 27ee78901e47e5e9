//! PCM injection: another music SDK pushes interleaved PCM of any rate and channel count; it is
//! converted to 48 kHz stereo on the pushing thread and played by a voice in the engine. An empty
//! ring (an underrun) is silence; the microphone path never waits for it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::chunk::{Chunk, Shared};
use super::player::{DspEvent, MusicVoice, next_id};
use super::resample::To48;
use super::{MusicError, PlayerState};
use crate::units::BLOCK_FRAMES;

/// Chunks of read-ahead for pushed PCM: 500 ms.
const INJECT_CHUNKS: usize = 50;

/// The pushing side of a PCM voice.
pub struct PcmInjector {
    id: u64,
    shared: Arc<Shared>,
    ring: rtrb::Producer<Chunk>,
    _events: rtrb::Consumer<DspEvent>,
    rs: Option<To48>,
    out: Vec<f32>,
    pos: u64,
    dropped: u64,
}

impl std::fmt::Debug for PcmInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmInjector")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PcmInjector {
    /// A new injector: its PCM is published, and heard locally if `local_playback`. Returns the
    /// voice for [`crate::engine::Control::AddMusic`].
    pub fn new(local_playback: bool) -> (PcmInjector, Box<MusicVoice>) {
        let shared = Arc::new(Shared::new(true, local_playback, false));
        shared
            .state
            .store(PlayerState::Playing.to_u8(), Ordering::Relaxed);
        let (p, c) = rtrb::RingBuffer::<Chunk>::new(INJECT_CHUNKS);
        let (ep, ec) = rtrb::RingBuffer::<DspEvent>::new(16);
        let id = next_id();
        let voice = Box::new(MusicVoice::new(id, c, shared.clone(), ep, true));
        (
            PcmInjector {
                id,
                shared,
                ring: p,
                _events: ec,
                rs: None,
                out: Vec::new(),
                pos: 0,
                dropped: 0,
            },
            voice,
        )
    }

    /// The id of its voice in the engine.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Pushes interleaved PCM (`channels` channels at `rate` Hz; a change of either restarts
    /// the converter). Whole blocks go to the engine; the rest waits for the next push. Returns
    /// the 48 kHz frames that did not fit (the engine is not keeping up) and were dropped.
    pub fn push(&mut self, pcm: &[f32], rate: u32, channels: usize) -> Result<u64, MusicError> {
        if channels == 0 || !(8_000..=384_000).contains(&rate) {
            return Err(MusicError::Invalid(format!(
                "PCM of {channels} channels at {rate} Hz (need 1 or more channels, 8–384 kHz)"
            )));
        }
        if !pcm.len().is_multiple_of(channels) {
            return Err(MusicError::Invalid(format!(
                "{} samples is not a whole number of {channels}-channel frames",
                pcm.len()
            )));
        }
        let rs = match self.rs.as_mut() {
            Some(r) if r.rate() == rate && r.channels() == channels => r,
            _ => self.rs.insert(To48::new(rate, channels)?),
        };
        rs.push(pcm, &mut self.out)?;
        let mut dropped = 0u64;
        let mut off = 0;
        while self.out.len() - off >= BLOCK_FRAMES * 2 {
            let mut c = Chunk::empty();
            c.frames = BLOCK_FRAMES as u16;
            c.pos = self.pos;
            c.data
                .copy_from_slice(&self.out[off..off + BLOCK_FRAMES * 2]);
            off += BLOCK_FRAMES * 2;
            self.pos += BLOCK_FRAMES as u64;
            if self.ring.push(c).is_err() {
                dropped += BLOCK_FRAMES as u64;
            } else {
                self.shared.queued.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.out.drain(..off);
        self.dropped += dropped;
        Ok(dropped)
    }

    /// Pushes interleaved signed 16-bit PCM.
    pub fn push_i16(&mut self, pcm: &[i16], rate: u32, channels: usize) -> Result<u64, MusicError> {
        let f: Vec<f32> = pcm.iter().map(|s| f32::from(*s) / 32768.0).collect();
        self.push(&f, rate, channels)
    }

    /// Whether the host hears it.
    pub fn set_local_playback(&mut self, on: bool) {
        self.shared.local.store(on, Ordering::Relaxed);
    }

    /// Whether it is published.
    pub fn set_publish(&mut self, on: bool) {
        self.shared.publish.store(on, Ordering::Relaxed);
    }

    /// Whether it replaces the microphone in the published stream.
    pub fn set_replace(&mut self, on: bool) {
        self.shared.replace.store(on, Ordering::Relaxed);
    }

    /// Volume in the published stream, 0..=1.5.
    pub fn set_publish_volume(&mut self, v: f32) {
        self.shared.publish_volume.set(v.clamp(0.0, 1.5));
    }

    /// Volume in the host's output, 0..=1.5.
    pub fn set_playout_volume(&mut self, v: f32) {
        self.shared.playout_volume.set(v.clamp(0.0, 1.5));
    }

    /// 48 kHz frames dropped so far because the ring was full.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped
    }

    /// 48 kHz frames queued for the engine.
    pub fn queued_frames(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed) as usize * BLOCK_FRAMES
    }

    /// Blocks the engine found nothing queued.
    pub fn underruns(&self) -> u64 {
        self.shared.underruns.load(Ordering::Relaxed)
    }
}

impl Drop for PcmInjector {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
    }
}
