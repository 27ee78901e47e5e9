//! Cue: pre-listen music on a second output device (the DJ's headphones) without publishing
//! it.
//!
//! A [`CueOutput`] opens the device with the engine's own output path
//! ([`crate::streams::open_output`]: fixed 10 ms period where the backend allows it, edge
//! resampling for a device that cannot run at 48 kHz, device-loss status) and runs a small
//! mixing thread that plays music voices ([`MusicVoice`]: a [`super::MusicPlayer`]'s, a
//! [`super::pads::PadBank`]'s, a [`super::PcmInjector`]'s) block by block into it. Nothing on
//! the cue reaches the engine, so nothing on it is published or sent to the host's main output.
//! A voice on the cue plays its *local* path (its playout volume; `loopback` and publish
//! settings do not matter here). [`CueOutput::take`] hands a voice back (with its position) so
//! the caller can put it on air with [`crate::engine::Control::AddMusic`].
//!
//! Why not `rodio` for this: `docs/decisions.md` (its mixer frees finished sources and takes new
//! ones from a channel inside the device callback, and it mixes sample by sample through
//! trait objects; the engine's path keeps the cue allocation-free and uses the same device
//! handling as the main output).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::bus::MusicBus;
use super::player::MusicVoice;
use crate::block::Block;
use crate::devices::DeviceError;
use crate::streams::{DeviceStream, StreamRequest, open_output};
use crate::units::BLOCK_FRAMES;

/// Blocks the cue thread keeps queued ahead of the device (60 ms: a pre-listen favours no
/// dropouts on a busy machine over the last few ms of latency).
const AHEAD_BLOCKS: usize = 6;

enum CueCmd {
    Add(Box<MusicVoice>),
    Take(u64),
}

/// Why a cue output or a capture source could not start, or the cue could not take a voice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MusicDeviceError {
    /// The device could not be opened.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The mixing thread could not start.
    #[error("cannot start the cue thread: {0}")]
    Thread(std::io::Error),
    /// The command queue is full (the cue thread is not running).
    #[error("the cue is not keeping up; try again")]
    Busy,
}

/// Counters of a running cue.
#[derive(Debug, Default)]
pub struct CueStats {
    /// Blocks mixed.
    pub blocks: AtomicU64,
    /// Voices refused because the cue already plays [`super::MAX_VOICES`].
    pub refused: AtomicU64,
}

/// A second output for pre-listening. Dropping it stops the device and the thread.
pub struct CueOutput {
    stream: DeviceStream,
    cmds: rtrb::Producer<CueCmd>,
    back: rtrb::Consumer<Box<MusicVoice>>,
    taken: Vec<Box<MusicVoice>>,
    running: Arc<AtomicBool>,
    stats: Arc<CueStats>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CueOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CueOutput")
            .field("device", &self.stream.opened)
            .finish_non_exhaustive()
    }
}

impl CueOutput {
    /// Opens the output `req.id` (`None` = the default output; a cue should name the headphones'
    /// device) and starts the cue thread.
    pub fn open(req: &StreamRequest) -> Result<CueOutput, MusicDeviceError> {
        // Half a second of ring; the thread keeps only `AHEAD_BLOCKS` in it.
        let (mut out_p, out_c) = rtrb::RingBuffer::<f32>::new(48_000);
        // In order, no backlog trimming: the thread itself keeps the queue short.
        let stream = open_output(req, out_c, None)?;
        let (cmds, mut cmd_c) = rtrb::RingBuffer::<CueCmd>::new(32);
        let (mut back_p, back) = rtrb::RingBuffer::<Box<MusicVoice>>::new(64);
        let running = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(CueStats::default());
        let (run2, stats2) = (running.clone(), stats.clone());
        let capacity = out_p.buffer().capacity();
        let thread = std::thread::Builder::new()
            .name("onmic-cue".into())
            .spawn(move || {
                let mut bus = MusicBus::new();
                let mut publish = Block::silent(2);
                let mut local = Block::silent(2);
                let mut inter = [0.0f32; BLOCK_FRAMES * 2];
                let hand_back = |v: Box<MusicVoice>, p: &mut rtrb::Producer<Box<MusicVoice>>| {
                    if let Err(rtrb::PushError::Full(v)) = p.push(v) {
                        // Never free on this thread: leak rather than block.
                        std::mem::forget(v);
                    }
                };
                while run2.load(Ordering::Acquire) {
                    while let Ok(c) = cmd_c.pop() {
                        match c {
                            CueCmd::Add(v) => {
                                if let Err(v) = bus.add(v) {
                                    stats2.refused.fetch_add(1, Ordering::Relaxed);
                                    hand_back(v, &mut back_p);
                                }
                            }
                            CueCmd::Take(id) => {
                                if let Some(v) = bus.remove(id) {
                                    hand_back(v, &mut back_p);
                                }
                            }
                        }
                    }
                    let queued = capacity - out_p.slots();
                    if queued >= AHEAD_BLOCKS * BLOCK_FRAMES * 2 {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    bus.mix(0.0, &mut publish, &mut local);
                    while let Some(v) = bus.take_done() {
                        hand_back(v, &mut back_p);
                    }
                    local.write_interleaved(&mut inter);
                    if let Ok(mut chunk) = out_p.write_chunk(BLOCK_FRAMES * 2) {
                        let (a, b) = chunk.as_mut_slices();
                        let n = a.len();
                        a.copy_from_slice(&inter[..n]);
                        b.copy_from_slice(&inter[n..n + b.len()]);
                        chunk.commit_all();
                    }
                    stats2.blocks.fetch_add(1, Ordering::Relaxed);
                }
            })
            .map_err(MusicDeviceError::Thread)?;
        Ok(CueOutput {
            stream,
            cmds,
            back,
            taken: Vec::new(),
            running,
            stats,
            thread: Some(thread),
        })
    }

    /// The device as opened (id, rate, channels, period).
    pub fn device(&self) -> &crate::streams::OpenedStream {
        &self.stream.opened
    }

    /// The device's health (lost, failed, latency, xruns).
    pub fn status(&self) -> &crate::streams::StreamStatus {
        &self.stream.status
    }

    /// Counters.
    pub fn stats(&self) -> &CueStats {
        &self.stats
    }

    /// Plays a voice on the cue (from the next block).
    pub fn add(&mut self, voice: Box<MusicVoice>) -> Result<(), MusicDeviceError> {
        self.cmds
            .push(CueCmd::Add(voice))
            .map_err(|_| MusicDeviceError::Busy)
    }

    /// Asks for voice `id` back (to put it on air); it arrives in [`CueOutput::collect`] within
    /// a block or two, where it left off.
    pub fn take(&mut self, id: u64) -> Result<(), MusicDeviceError> {
        self.cmds
            .push(CueCmd::Take(id))
            .map_err(|_| MusicDeviceError::Busy)
    }

    /// Voices handed back: taken, finished, stopped, or refused because the cue was full.
    pub fn collect(&mut self) -> Vec<Box<MusicVoice>> {
        while let Ok(v) = self.back.pop() {
            self.taken.push(v);
        }
        std::mem::take(&mut self.taken)
    }

    /// Waits up to `timeout` for voice `id` to come back after [`CueOutput::take`]; the other
    /// voices handed back meanwhile are dropped.
    pub fn wait_taken(&mut self, id: u64, timeout: Duration) -> Option<Box<MusicVoice>> {
        let t = std::time::Instant::now();
        loop {
            let mut found = None;
            for v in self.collect() {
                if v.id() == id {
                    found = Some(v);
                }
            }
            if found.is_some() || t.elapsed() >= timeout {
                return found;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for CueOutput {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
