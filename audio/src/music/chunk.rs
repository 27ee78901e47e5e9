//! What crosses from a decode thread (or a PCM pusher) to the DSP thread: fixed-size chunks of
//! 48 kHz stereo with the position of their first frame, and the atomics both sides share.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::units::BLOCK_FRAMES;

/// Chunks in a voice's ring: 200 ms of read-ahead between decoder and DSP thread.
pub(crate) const RING_CHUNKS: usize = 20;

/// Up to one block of 48 kHz interleaved stereo, stored inline (moving it never allocates).
#[derive(Clone, Copy)]
pub(crate) struct Chunk {
    /// Seek generation: chunks of an older generation are dropped unplayed.
    pub epoch: u32,
    /// Position of the first frame, 48 kHz frames from the start of the cycle.
    pub pos: u64,
    /// Cycle (0-based).
    pub cycle: u32,
    /// Frames used in `data`.
    pub frames: u16,
    /// The last chunk of a cycle.
    pub end_of_cycle: bool,
    /// The last chunk of the whole play.
    pub finished: bool,
    /// Interleaved stereo.
    pub data: [f32; BLOCK_FRAMES * 2],
}

impl Chunk {
    pub(crate) fn empty() -> Chunk {
        Chunk {
            epoch: 0,
            pos: 0,
            cycle: 0,
            frames: 0,
            end_of_cycle: false,
            finished: false,
            data: [0.0; BLOCK_FRAMES * 2],
        }
    }
}

/// f32 in an atomic.
#[derive(Debug)]
pub(crate) struct AtomicF32(AtomicU32);

impl AtomicF32 {
    pub(crate) fn new(v: f32) -> AtomicF32 {
        AtomicF32(AtomicU32::new(v.to_bits()))
    }
    pub(crate) fn get(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }
    pub(crate) fn set(&self, v: f32) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// Settings the caller writes and the DSP thread reads every block, plus what the DSP thread
/// reports back (position, state).
#[derive(Debug)]
pub(crate) struct Shared {
    pub paused: AtomicBool,
    pub stopped: AtomicBool,
    pub publish: AtomicBool,
    pub local: AtomicBool,
    pub replace: AtomicBool,
    pub publish_volume: AtomicF32,
    pub playout_volume: AtomicF32,
    pub duck_enabled: AtomicBool,
    pub duck_amount_db: AtomicF32,
    pub duck_attack_ms: AtomicF32,
    pub duck_release_ms: AtomicF32,
    pub duck_threshold_dbfs: AtomicF32,
    /// The seek generation the DSP thread plays.
    pub epoch: AtomicU32,
    /// Position of the next frame to play, 48 kHz frames in the cycle.
    pub position: AtomicU64,
    pub cycle: AtomicU32,
    pub state: AtomicU8,
    /// Blocks the DSP thread wanted audio but the ring was empty.
    pub underruns: AtomicU64,
    /// The music gain ducking applies now (linear), for meters and tests.
    pub duck_gain: AtomicF32,
    /// Chunks in the ring.
    pub queued: AtomicU32,
    /// Fade target (0 = silent, 1 = full), reached over `fade_ms` (equal-power curve).
    pub fade_target: AtomicF32,
    pub fade_ms: AtomicF32,
    /// Stop once a fade reaches 0.
    pub fade_stop: AtomicBool,
    /// The producer has ended.
    pub decoder_done: AtomicBool,
}

impl Shared {
    pub(crate) fn new(publish: bool, local: bool, replace: bool) -> Shared {
        let d = crate::music::Ducking::default();
        Shared {
            paused: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            publish: AtomicBool::new(publish),
            local: AtomicBool::new(local),
            replace: AtomicBool::new(replace),
            publish_volume: AtomicF32::new(1.0),
            playout_volume: AtomicF32::new(1.0),
            duck_enabled: AtomicBool::new(d.enabled),
            duck_amount_db: AtomicF32::new(d.amount_db),
            duck_attack_ms: AtomicF32::new(d.attack_ms),
            duck_release_ms: AtomicF32::new(d.release_ms),
            duck_threshold_dbfs: AtomicF32::new(d.threshold_dbfs),
            epoch: AtomicU32::new(0),
            position: AtomicU64::new(0),
            cycle: AtomicU32::new(0),
            state: AtomicU8::new(crate::music::PlayerState::Opening.to_u8()),
            underruns: AtomicU64::new(0),
            duck_gain: AtomicF32::new(1.0),
            queued: AtomicU32::new(0),
            fade_target: AtomicF32::new(1.0),
            fade_ms: AtomicF32::new(0.0),
            fade_stop: AtomicBool::new(false),
            decoder_done: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_ducking(&self, d: &crate::music::Ducking) {
        self.duck_amount_db.set(d.amount_db.clamp(0.0, 60.0));
        self.duck_attack_ms.set(d.attack_ms.clamp(0.0, 10_000.0));
        self.duck_release_ms.set(d.release_ms.clamp(0.0, 10_000.0));
        self.duck_threshold_dbfs
            .set(d.threshold_dbfs.clamp(-100.0, 0.0));
        self.duck_enabled.store(d.enabled, Ordering::Relaxed);
    }
}
