//! A player: the caller's handle, its decode thread and the voice the DSP thread plays.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::chunk::{Chunk, RING_CHUNKS, Shared};
use super::decode::{DecodedInfo, PcmDecoder};
use super::resample::To48;
use super::{
    Ducking, MusicCommand, MusicError, MusicEvent, MusicSource, PlayerState, RATE, frames_to_ms,
};
use crate::block::Block;
use crate::units::{BLOCK_FRAMES, Dbfs};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// How a file or URL plays.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlayOptions {
    /// Only the host hears it (not published).
    pub loopback: bool,
    /// While it plays, it replaces the microphone in the published stream.
    pub replace: bool,
    /// Times to play: 1, 2, …; −1 = forever.
    pub cycle: i32,
    /// Volume in the published stream, 0..=1.5.
    pub publish_volume: f32,
    /// Volume in the host's output, 0..=1.5.
    pub playout_volume: f32,
    /// Where to start, ms.
    pub start_ms: u64,
    /// Ducking under the host's voice.
    pub ducking: Ducking,
    /// Key shift, semitones (−12..=12; 0 = off), tempo unchanged.
    pub key_shift: i32,
    /// Fade in over this long from the first block it plays, ms (0 = start at full volume).
    pub fade_in_ms: u32,
}

impl Default for PlayOptions {
    fn default() -> Self {
        PlayOptions {
            loopback: false,
            replace: false,
            cycle: 1,
            publish_volume: 1.0,
            playout_volume: 1.0,
            start_ms: 0,
            ducking: Ducking::default(),
            key_shift: 0,
            fade_in_ms: 0,
        }
    }
}

/// Events the DSP thread reports (plain data, no allocation).
#[derive(Debug, Clone, Copy)]
pub(crate) enum DspEvent {
    State(PlayerState),
    Position { frames: u64, cycle: u32 },
    CycleEnded(u32),
    Finished,
}

/// The DSP thread's side of a music source: pulls one block per call from the ring, applies the
/// voice's volumes, ducking and routing. Allocation-free.
pub struct MusicVoice {
    id: u64,
    ring: rtrb::Consumer<Chunk>,
    shared: Arc<Shared>,
    events: rtrb::Producer<DspEvent>,
    cur: Chunk,
    off: usize,
    applied_pub: f32,
    applied_play: f32,
    duck_db: f32,
    /// Fade position 0..=1 (the gain is sin(x·π/2)).
    fade: f32,
    blocks: u32,
    buf: Block,
    /// A PCM injection voice: never finishes, an empty ring is silence.
    live: bool,
    /// A sound-pad bank's voice plays its pads instead of a ring.
    pads: Option<Box<super::pads::PadDsp>>,
}

impl std::fmt::Debug for MusicVoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MusicVoice")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What one voice contributed to a block.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct VoiceMix {
    pub publish: bool,
    pub local: bool,
    pub replace: bool,
    pub done: bool,
}

impl MusicVoice {
    pub(crate) fn new(
        id: u64,
        ring: rtrb::Consumer<Chunk>,
        shared: Arc<Shared>,
        events: rtrb::Producer<DspEvent>,
        live: bool,
    ) -> MusicVoice {
        let (p, l) = (shared.publish_volume.get(), shared.playout_volume.get());
        let fade = if shared.fade_ms.get() > 0.0 { 0.0 } else { 1.0 };
        MusicVoice {
            id,
            ring,
            shared,
            events,
            cur: Chunk::empty(),
            off: 0,
            applied_pub: p,
            applied_play: l,
            duck_db: 0.0,
            fade,
            blocks: 0,
            buf: Block::silent(2),
            live,
            pads: None,
        }
    }

    pub(crate) fn set_pads(&mut self, pads: Box<super::pads::PadDsp>) {
        self.pads = Some(pads);
    }

    /// The voice's id (what [`crate::engine::Control::RemoveMusic`] takes).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Finished, stopped or failed: the engine may take it out.
    pub(crate) fn is_done(&self) -> bool {
        matches!(
            self.state(),
            PlayerState::Finished | PlayerState::Stopped | PlayerState::Failed
        )
    }

    fn state(&self) -> PlayerState {
        PlayerState::from_u8(self.shared.state.load(Ordering::Relaxed))
    }

    fn set_state(&mut self, s: PlayerState) {
        self.shared.state.store(s.to_u8(), Ordering::Relaxed);
        let _ = self.events.push(DspEvent::State(s));
    }

    /// Fills the voice's block from the ring; returns whether it produced audio.
    fn pull(&mut self) -> bool {
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let (l, r) = self.buf.pair_mut();
        let mut filled = 0;
        let mut any = false;
        while filled < BLOCK_FRAMES {
            if self.off >= usize::from(self.cur.frames) || self.cur.epoch != epoch {
                match self.ring.pop() {
                    Ok(c) => {
                        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                        if c.epoch != epoch {
                            self.off = usize::from(self.cur.frames);
                            continue;
                        }
                        self.cur = c;
                        self.off = 0;
                    }
                    Err(_) => break,
                }
            }
            let n = (usize::from(self.cur.frames) - self.off).min(BLOCK_FRAMES - filled);
            for i in 0..n {
                l[filled + i] = self.cur.data[2 * (self.off + i)];
                r[filled + i] = self.cur.data[2 * (self.off + i) + 1];
            }
            if n > 0 {
                any = true;
            }
            filled += n;
            self.off += n;
            self.shared
                .position
                .store(self.cur.pos + self.off as u64, Ordering::Relaxed);
            self.shared.cycle.store(self.cur.cycle, Ordering::Relaxed);
            if self.off >= usize::from(self.cur.frames) {
                if self.cur.end_of_cycle {
                    self.cur.end_of_cycle = false;
                    let _ = self.events.push(DspEvent::CycleEnded(self.cur.cycle));
                }
                if self.cur.finished {
                    self.cur.finished = false;
                    l[filled..].fill(0.0);
                    r[filled..].fill(0.0);
                    self.set_state(PlayerState::Finished);
                    let _ = self.events.push(DspEvent::Finished);
                    return any;
                }
            }
        }
        if filled < BLOCK_FRAMES {
            l[filled..].fill(0.0);
            r[filled..].fill(0.0);
            if !self.live || filled == 0 {
                self.shared.underruns.fetch_add(1, Ordering::Relaxed);
            }
        }
        any
    }

    /// Plays one block: adds this voice to `publish` and/or `local` (both stereo).
    pub(crate) fn mix(
        &mut self,
        voice_rms: f32,
        publish: &mut Block,
        local: &mut Block,
    ) -> VoiceMix {
        let mut state = self.state();
        if self.shared.stopped.load(Ordering::Relaxed) {
            if state != PlayerState::Stopped {
                self.set_state(PlayerState::Stopped);
            }
            return VoiceMix {
                done: true,
                ..VoiceMix::default()
            };
        }
        match state {
            PlayerState::Finished | PlayerState::Stopped | PlayerState::Failed => {
                return VoiceMix {
                    done: true,
                    ..VoiceMix::default()
                };
            }
            _ => {}
        }
        if let Some(p) = self.pads.as_mut() {
            return p.mix(&self.shared, publish, local);
        }
        let paused = self.shared.paused.load(Ordering::Relaxed);
        if paused && state != PlayerState::Paused {
            self.set_state(PlayerState::Paused);
            state = PlayerState::Paused;
        } else if !paused && state != PlayerState::Playing {
            self.set_state(PlayerState::Playing);
            state = PlayerState::Playing;
        }
        let replace = self.shared.replace.load(Ordering::Relaxed);
        if state == PlayerState::Paused {
            return VoiceMix {
                replace,
                ..VoiceMix::default()
            };
        }
        let have = self.pull();
        // Ducking: move the attenuation toward its target at amount/attack (or release) per ms.
        let sh = &self.shared;
        let amount = sh.duck_amount_db.get();
        let speaking = Dbfs::from_amplitude(voice_rms).0 > sh.duck_threshold_dbfs.get();
        let target = if sh.duck_enabled.load(Ordering::Relaxed) && speaking {
            amount
        } else {
            0.0
        };
        let block_ms = 1000.0 * BLOCK_FRAMES as f32 / RATE as f32;
        let duck0 = db_to_gain(-self.duck_db);
        if target > self.duck_db {
            let step = amount * block_ms / sh.duck_attack_ms.get().max(block_ms);
            self.duck_db = (self.duck_db + step).min(target);
        } else if target < self.duck_db {
            let step = amount.max(self.duck_db) * block_ms / sh.duck_release_ms.get().max(block_ms);
            self.duck_db = (self.duck_db - step).max(target);
        }
        let mut duck1 = db_to_gain(-self.duck_db);
        sh.duck_gain.set(duck1);
        // Fades (equal power: two uncorrelated tracks crossfading keep their summed power).
        let f0 = fade_gain(self.fade);
        let target = sh.fade_target.get();
        if self.fade != target {
            let step = block_ms / sh.fade_ms.get().max(block_ms);
            self.fade = if target > self.fade {
                (self.fade + step).min(target)
            } else {
                (self.fade - step).max(target)
            };
        }
        let f1 = fade_gain(self.fade);
        let duck0 = duck0 * f0;
        duck1 *= f1;
        if self.fade == 0.0 && sh.fade_stop.load(Ordering::Relaxed) {
            sh.stopped.store(true, Ordering::Relaxed);
        }
        let pub_on = sh.publish.load(Ordering::Relaxed);
        let loc_on = sh.local.load(Ordering::Relaxed);
        let (p0, p1) = (self.applied_pub * duck0, sh.publish_volume.get() * duck1);
        let (l0, l1) = (self.applied_play * duck0, sh.playout_volume.get() * duck1);
        self.applied_pub = sh.publish_volume.get();
        self.applied_play = sh.playout_volume.get();
        self.blocks = self.blocks.wrapping_add(1);
        if self.blocks.is_multiple_of(20) && !self.live {
            let _ = self.events.push(DspEvent::Position {
                frames: sh.position.load(Ordering::Relaxed),
                cycle: sh.cycle.load(Ordering::Relaxed),
            });
        }
        if !have {
            return VoiceMix {
                replace,
                ..VoiceMix::default()
            };
        }
        if pub_on {
            add_ramped(publish, &self.buf, p0, p1);
        }
        if loc_on {
            add_ramped(local, &self.buf, l0, l1);
        }
        VoiceMix {
            publish: pub_on,
            local: loc_on,
            replace,
            done: false,
        }
    }
}

fn fade_gain(x: f32) -> f32 {
    (x * std::f32::consts::FRAC_PI_2).sin()
}

fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

fn add_ramped(dst: &mut Block, src: &Block, g0: f32, g1: f32) {
    let step = (g1 - g0) / BLOCK_FRAMES as f32;
    for ch in 0..2 {
        let s = src.channel(ch);
        let d = dst.channel_mut(ch);
        for i in 0..BLOCK_FRAMES {
            d[i] += s[i] * (g0 + step * (i + 1) as f32);
        }
    }
}

/// Messages to a decode thread.
enum DecoderCmd {
    Seek { frame: u64, epoch: u32 },
    KeyShift(i32),
}

/// A file or URL player: the caller's handle. Put its voice into the engine with
/// [`crate::engine::Control::AddMusic`]; drop or [`stop`](MusicPlayer::stop) it to end.
pub struct MusicPlayer {
    id: u64,
    shared: Arc<Shared>,
    dsp_events: rtrb::Consumer<DspEvent>,
    dec_events: mpsc::Receiver<MusicEvent>,
    cmd: mpsc::Sender<DecoderCmd>,
    thread: Option<JoinHandle<()>>,
    info: DecodedInfo,
    duration_frames: Option<u64>,
}

impl std::fmt::Debug for MusicPlayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MusicPlayer")
            .field("id", &self.id)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl MusicPlayer {
    /// Opens `source` (probing it and decoding its first packet here, so a bad file fails now)
    /// and starts its decode thread. Returns the handle and the voice for the engine.
    pub fn open(
        source: &MusicSource,
        options: PlayOptions,
    ) -> Result<(MusicPlayer, Box<MusicVoice>), MusicError> {
        if !(-12..=12).contains(&options.key_shift) {
            return Err(MusicError::Invalid(format!(
                "key shift must be −12..=12 semitones (got {})",
                options.key_shift
            )));
        }
        if options.cycle == 0 || options.cycle < -1 {
            return Err(MusicError::Invalid(format!(
                "cycle must be 1 or more, or -1 for forever (got {})",
                options.cycle
            )));
        }
        let (mut dec, first) = super::decode::open(source)?;
        let info = dec.info().clone();
        let channels = info.channels.max(1);
        let rs = To48::new(info.sample_rate, channels)?;
        let duration_frames = info.duration_ms.map(|ms| ms * u64::from(RATE) / 1000);
        let shared = Arc::new(Shared::new(!options.loopback, true, options.replace));
        shared
            .publish_volume
            .set(options.publish_volume.clamp(0.0, 1.5));
        shared
            .playout_volume
            .set(options.playout_volume.clamp(0.0, 1.5));
        shared.set_ducking(&options.ducking);
        if options.fade_in_ms > 0 {
            shared.fade_ms.set(options.fade_in_ms as f32);
            shared.fade_target.set(1.0);
        }
        let (ring_p, ring_c) = rtrb::RingBuffer::<Chunk>::new(RING_CHUNKS);
        let (ev_p, ev_c) = rtrb::RingBuffer::<DspEvent>::new(256);
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (dev_tx, dev_rx) = mpsc::channel();
        let mut first = Some(first);
        let start = options.start_ms * u64::from(RATE) / 1000;
        if start > 0 {
            dec.seek(start * u64::from(info.sample_rate) / u64::from(RATE))?;
            first = None;
            shared.position.store(start, Ordering::Relaxed);
        }
        let thread_shared = shared.clone();
        let cycles = options.cycle;
        let key_shift = options.key_shift;
        let thread = std::thread::Builder::new()
            .name("onmic-music-decode".into())
            .spawn(move || {
                let mut t = DecodeThread {
                    dec,
                    rs,
                    ring: ring_p,
                    shared: thread_shared,
                    cmd: cmd_rx,
                    events: dev_tx,
                    cycles,
                    native: first.unwrap_or_default(),
                    out: Vec::new(),
                    out_off: 0,
                    epoch: 0,
                    cycle: 0,
                    pos: start,
                    eof: false,
                    shift: (key_shift != 0).then(|| super::shift::KeyShift::new(key_shift)),
                    stage: Vec::new(),
                };
                t.run();
            })
            .map_err(MusicError::Thread)?;
        let id = next_id();
        let voice = Box::new(MusicVoice::new(id, ring_c, shared.clone(), ev_p, false));
        Ok((
            MusicPlayer {
                id,
                shared,
                dsp_events: ev_c,
                dec_events: dev_rx,
                cmd: cmd_tx,
                thread: Some(thread),
                info,
                duration_frames,
            },
            voice,
        ))
    }

    /// The id of its voice in the engine.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What the source holds.
    pub fn info(&self) -> &DecodedInfo {
        &self.info
    }

    /// Length of one cycle, ms, if known.
    pub fn duration_ms(&self) -> Option<u64> {
        self.duration_frames.map(frames_to_ms)
    }

    /// Position in the current cycle, ms (as far as the DSP thread has played).
    pub fn position_ms(&self) -> u64 {
        frames_to_ms(self.position_frames())
    }

    /// Position in the current cycle, 48 kHz frames.
    pub fn position_frames(&self) -> u64 {
        self.shared.position.load(Ordering::Relaxed)
    }

    /// The state as the DSP thread last set it.
    pub fn state(&self) -> PlayerState {
        PlayerState::from_u8(self.shared.state.load(Ordering::Relaxed))
    }

    /// Blocks in which the DSP thread found no decoded audio waiting.
    pub fn underruns(&self) -> u64 {
        self.shared.underruns.load(Ordering::Relaxed)
    }

    /// Decoded audio waiting for the DSP thread, in chunks of up to one block.
    pub fn buffered_chunks(&self) -> u32 {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// The decode thread has ended (all cycles decoded, stopped, or failed).
    pub fn decoder_done(&self) -> bool {
        self.shared.decoder_done.load(Ordering::Acquire)
    }

    /// The gain ducking applies now (1 = none).
    pub fn duck_gain(&self) -> f32 {
        self.shared.duck_gain.get()
    }

    /// Sets the fade-in length before the voice has played (a playlist opens the next track
    /// ahead and fixes its crossfade when it starts it).
    pub(crate) fn set_fade_in_ms(&self, ms: u32) {
        self.shared.fade_ms.set(ms as f32);
    }

    /// Applies a command.
    pub fn command(&mut self, c: MusicCommand) {
        let sh = &self.shared;
        match c {
            MusicCommand::Pause => sh.paused.store(true, Ordering::Relaxed),
            MusicCommand::Resume => sh.paused.store(false, Ordering::Relaxed),
            MusicCommand::Stop => sh.stopped.store(true, Ordering::Relaxed),
            MusicCommand::Seek { position_ms } => {
                let mut frame = position_ms * u64::from(RATE) / 1000;
                if let Some(d) = self.duration_frames {
                    frame = frame.min(d);
                }
                let epoch = sh.epoch.load(Ordering::Relaxed).wrapping_add(1);
                sh.position.store(frame, Ordering::Relaxed);
                sh.epoch.store(epoch, Ordering::Release);
                let _ = self.cmd.send(DecoderCmd::Seek { frame, epoch });
            }
            MusicCommand::SetPublishVolume { volume } => {
                sh.publish_volume.set(volume.clamp(0.0, 1.5))
            }
            MusicCommand::SetPlayoutVolume { volume } => {
                sh.playout_volume.set(volume.clamp(0.0, 1.5))
            }
            MusicCommand::SetLoopback { loopback } => {
                sh.publish.store(!loopback, Ordering::Relaxed)
            }
            MusicCommand::SetReplace { replace } => sh.replace.store(replace, Ordering::Relaxed),
            MusicCommand::SetDucking { ducking } => sh.set_ducking(&ducking),
            MusicCommand::FadeOut { ms } => {
                sh.fade_ms.set(ms as f32);
                sh.fade_stop.store(true, Ordering::Relaxed);
                sh.fade_target.set(0.0);
            }
            MusicCommand::SetKeyShift { semitones } => {
                let _ = self
                    .cmd
                    .send(DecoderCmd::KeyShift(semitones.clamp(-12, 12)));
            }
        }
    }

    /// Pause.
    pub fn pause(&mut self) {
        self.command(MusicCommand::Pause);
    }

    /// Resume.
    pub fn resume(&mut self) {
        self.command(MusicCommand::Resume);
    }

    /// Seek to `ms`.
    pub fn seek(&mut self, ms: u64) {
        self.command(MusicCommand::Seek { position_ms: ms });
    }

    /// Stop for good.
    pub fn stop(&mut self) {
        self.command(MusicCommand::Stop);
    }

    /// Events since the last call, oldest first.
    pub fn events(&mut self) -> Vec<MusicEvent> {
        let mut v = Vec::new();
        while let Ok(e) = self.dec_events.try_recv() {
            v.push(e);
        }
        while let Ok(e) = self.dsp_events.pop() {
            v.push(match e {
                DspEvent::State(state) => MusicEvent::State { state },
                DspEvent::Position { frames, cycle } => MusicEvent::Position {
                    position_ms: frames_to_ms(frames),
                    cycle,
                },
                DspEvent::CycleEnded(cycle) => MusicEvent::CycleEnded { cycle },
                DspEvent::Finished => MusicEvent::Finished,
            });
        }
        v
    }
}

impl Drop for MusicPlayer {
    fn drop(&mut self) {
        // The decode thread sees the flag and ends on its own; it is not joined, so a download
        // stalled mid-song cannot hang the caller.
        self.shared.stopped.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.is_finished()
        {
            let _ = t.join();
        }
    }
}

struct DecodeThread {
    dec: Box<dyn PcmDecoder>,
    rs: To48,
    ring: rtrb::Producer<Chunk>,
    shared: Arc<Shared>,
    cmd: mpsc::Receiver<DecoderCmd>,
    events: mpsc::Sender<MusicEvent>,
    cycles: i32,
    /// Decoded, not yet resampled.
    native: Vec<f32>,
    /// 48 kHz stereo not yet sent, from `out_off`.
    out: Vec<f32>,
    out_off: usize,
    epoch: u32,
    cycle: u32,
    pos: u64,
    eof: bool,
    shift: Option<super::shift::KeyShift>,
    /// Resampled, before the key shift.
    stage: Vec<f32>,
}

impl DecodeThread {
    fn run(&mut self) {
        let r = self.work();
        self.shared.decoder_done.store(true, Ordering::Release);
        if let Err(e) = r {
            self.shared
                .state
                .store(PlayerState::Failed.to_u8(), Ordering::Relaxed);
            let _ = self.events.send(MusicEvent::Error {
                message: e.to_string(),
            });
            let _ = self.events.send(MusicEvent::State {
                state: PlayerState::Failed,
            });
        }
    }

    fn work(&mut self) -> Result<(), MusicError> {
        loop {
            if self.shared.stopped.load(Ordering::Relaxed) {
                return Ok(());
            }
            while let Ok(cmd) = self.cmd.try_recv() {
                match cmd {
                    DecoderCmd::Seek { frame, epoch } => {
                        let native = frame * u64::from(self.rs.rate()) / u64::from(RATE);
                        self.dec.seek(native)?;
                        self.restart();
                        self.native.clear();
                        self.epoch = epoch;
                        self.pos = frame;
                    }
                    DecoderCmd::KeyShift(k) => match self.shift.as_mut() {
                        Some(s) => s.set_semitones(k),
                        None if k != 0 => {
                            self.shift = Some(super::shift::KeyShift::new(k));
                        }
                        None => {}
                    },
                }
            }
            let avail = (self.out.len() - self.out_off) / 2;
            if avail >= BLOCK_FRAMES || self.eof {
                if self.ring.is_full() {
                    self.wait();
                    continue;
                }
                let frames = avail.min(BLOCK_FRAMES);
                let mut c = Chunk::empty();
                c.epoch = self.epoch;
                c.pos = self.pos;
                c.cycle = self.cycle;
                c.frames = frames as u16;
                c.data[..frames * 2]
                    .copy_from_slice(&self.out[self.out_off..self.out_off + frames * 2]);
                self.out_off += frames * 2;
                self.pos += frames as u64;
                let last = self.eof && self.out_off == self.out.len();
                let finished = last && self.cycles != -1 && self.cycle + 1 >= self.cycles as u32;
                c.end_of_cycle = last;
                c.finished = finished;
                if self.ring.push(c).is_ok() {
                    self.shared.queued.fetch_add(1, Ordering::Relaxed);
                }
                if self.out_off > 64 * 1024 {
                    self.out.drain(..self.out_off);
                    self.out_off = 0;
                }
                if finished {
                    return Ok(());
                }
                if last {
                    self.cycle += 1;
                    self.dec.seek(0)?;
                    self.restart();
                    self.pos = 0;
                }
                continue;
            }
            if self.native.is_empty() && !self.dec.next(&mut self.native)? {
                match self.shift.as_mut() {
                    Some(s) => {
                        self.stage.clear();
                        self.rs.flush(&mut self.stage)?;
                        s.process(&self.stage, &mut self.out);
                        s.flush(&mut self.out);
                    }
                    None => self.rs.flush(&mut self.out)?,
                }
                self.eof = true;
                continue;
            }
            match self.shift.as_mut() {
                Some(s) => {
                    self.stage.clear();
                    self.rs.push(&self.native, &mut self.stage)?;
                    s.process(&self.stage, &mut self.out);
                }
                None => self.rs.push(&self.native, &mut self.out)?,
            }
            self.native.clear();
        }
    }

    /// Forgets buffered audio (a seek or a new cycle).
    fn restart(&mut self) {
        self.rs.reset();
        if let Some(s) = self.shift.as_mut() {
            s.reset();
        }
        self.out.clear();
        self.out_off = 0;
        self.eof = false;
    }

    /// Waits for room in the ring or a command.
    fn wait(&mut self) {
        std::thread::sleep(Duration::from_millis(3));
    }
}
