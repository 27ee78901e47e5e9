//! The engine: one DSP thread running the capture chain, the publish-bus encoder, the playout
//! mix and the ear monitor in fixed 10 ms blocks.
//!
//! Drive contract: device callbacks (or a test, or a file reader) push interleaved 48 kHz capture
//! frames into the capture ring and pull stereo output frames from the output ring; they do
//! nothing else. The DSP thread waits for a full block of capture, runs [`EngineCore::process`]
//! and pushes the output. Control changes arrive as [`Control`] messages over an SPSC ring;
//! anything they replace goes back over a garbage ring and is dropped by [`EngineHandle`] on the
//! caller's thread. Encoded packets (with RTP timestamps) and volume reports leave over rings.
//! Nothing on the DSP thread allocates, locks, logs or makes a syscall while processing
//! (`tests/no_alloc.rs` proves it with a counting allocator); between blocks it sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::block::Block;
use crate::chain::{Chain, ChainConfig, Toggles, crossfade};
use crate::debug_tap::TapFeed;
use crate::ear_monitor::{EarMonitor, EarMonitorConfig};
use crate::effects::{EffectMeters, EffectRack};
use crate::music::{MusicBus, MusicVoice};
use crate::opus::{OpusEncoder, OpusError, OpusPacket};
use crate::playout::{Playout, RemoteStream};
use crate::processor::PrepareError;
use crate::units::{BLOCK_FRAMES, Dbfs, Frames};
use crate::volume_indication::{IndicationConfig, SourceId, VolumeIndicator, VolumeReport};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A stage could not be prepared.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// The encoder could not be built.
    #[error(transparent)]
    Opus(#[from] OpusError),
    /// The DSP thread could not be spawned.
    #[error("cannot start the DSP thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The control ring is full (the DSP thread is not keeping up).
    #[error("control queue full")]
    Busy,
    /// Effect settings were refused.
    #[error(transparent)]
    Effect(#[from] crate::effects::EffectError),
}

/// A change sent to the DSP thread.
#[derive(Debug)]
#[non_exhaustive]
pub enum Control {
    /// Switch processing stages (crossfaded).
    SetToggles(Toggles),
    /// AI-NS strength 0..=1.
    SetAiNsStrength(f32),
    /// Mute the voice, keep the music.
    SetVoiceMuted(bool),
    /// Mute everything sent.
    SetSendMuted(bool),
    /// Music volume on the publish bus.
    SetPublishMusicVolume(f32),
    /// Music volume in the local output.
    SetPlayoutMusicVolume(f32),
    /// The devices' render→capture delay for the AEC, ms.
    SetEchoDelayMs(i32),
    /// A new chain (mode change), crossfaded in over one block.
    ReplaceChain(Box<Chain>),
    /// The packet loss receivers report (RTCP), 0–100 %, for the encoder's FEC.
    SetExpectedLoss(u8),
    /// A new encoder (profile change); RTP timestamps and sequence numbers continue.
    ReplaceEncoder(Box<OpusEncoder>),
    /// A remote joins the playout.
    AddRemote(Box<RemoteStream>),
    /// A remote leaves.
    RemoveRemote(u64),
    /// A remote's volume 0..=1.5.
    SetRemoteVolume(u64, f32),
    /// Mute what you hear from one remote.
    SetRemoteMuted(u64, bool),
    /// Mute what you hear from all remotes.
    SetAllRemotesMuted(bool),
    /// Ear-monitor settings.
    SetEarMonitor(EarMonitorConfig),
    /// Start the debug tap (raw / reference / processed).
    StartDebugTap(Box<TapFeed>),
    /// Stop the debug tap.
    StopDebugTap,
    /// A new capture ring (the input device was re-opened); the old one comes back as garbage.
    ReplaceCaptureRing(rtrb::Consumer<f32>),
    /// A new output ring (the output device was re-opened).
    ReplaceOutputRing(rtrb::Producer<f32>),
    /// A music voice (file/URL player or PCM injection) joins the music bus.
    AddMusic(Box<MusicVoice>),
    /// A music voice leaves (by [`MusicVoice::id`]).
    RemoveMusic(u64),
    /// New voice effects (built off the DSP thread with [`EffectRack::new`]), warmed up and
    /// crossfaded in over 20 ms; the old rack comes back as [`Garbage::Effects`].
    SetEffects(Box<EffectRack>),
    /// Input gain (linear, 0..=4) applied to the capture before the chain, ramped over a block.
    SetInputGain(f32),
}

/// Objects the DSP thread hands back to be dropped elsewhere.
#[derive(Debug)]
#[non_exhaustive]
pub enum Garbage {
    /// A replaced chain.
    Chain(Box<Chain>),
    /// A replaced encoder.
    Encoder(Box<OpusEncoder>),
    /// A removed remote.
    Remote(Box<RemoteStream>),
    /// A stopped debug tap.
    Tap(Box<TapFeed>),
    /// A replaced capture ring.
    CaptureRing(rtrb::Consumer<f32>),
    /// A replaced output ring.
    OutputRing(rtrb::Producer<f32>),
    /// A removed, finished or refused music voice.
    Music(Box<MusicVoice>),
    /// A replaced effect rack.
    Effects(Box<EffectRack>),
}

/// Counters shared with the handle.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Blocks processed.
    pub blocks: AtomicU64,
    /// Packets dropped because the packet ring was full.
    pub packets_dropped: AtomicU64,
    /// Output frames dropped because the output ring was full.
    pub output_overruns: AtomicU64,
    /// Objects leaked because the garbage ring was full (never dropped on the DSP thread).
    pub garbage_leaked: AtomicU64,
    /// Blocks processed on silence because no capture arrived in time (input device lost).
    pub capture_starved_blocks: AtomicU64,
    /// What became of the DSP thread's real-time priority: see [`EngineStats::realtime`].
    realtime: std::sync::OnceLock<Realtime>,
    /// Music voices the bus refused because it already played [`crate::music::MAX_VOICES`] (or
    /// one with the same id): handed back and dropped off the DSP thread, never played. Whoever
    /// sent one watches this to tell the user instead of showing a source that plays nothing.
    pub music_refused: AtomicU64,
    /// Meters for a UI: the chain's input and publish-bus levels, see [`EngineMeters`].
    pub meters: EngineMeters,
}

/// The DSP thread's scheduling, as [`EngineConfig::realtime`] asked and the OS answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Realtime {
    /// Not asked for ([`EngineConfig::realtime`] off): the thread runs at normal priority.
    NotAsked,
    /// The thread runs at real-time priority (Linux: `SCHED_FIFO`; Windows: MMCSS "Audio";
    /// macOS: a time-constraint policy sized for one block).
    Granted,
    /// The OS refused; the thread runs at normal priority. The text is the OS's reason (on Linux
    /// usually "Operation not permitted": the user has no `rtprio` limit, see docs/platforms.md).
    Refused(String),
}

impl EngineStats {
    /// The DSP thread's scheduling; `None` until the thread has started.
    pub fn realtime(&self) -> Option<&Realtime> {
        self.realtime.get()
    }
}

/// Levels a UI reads while the engine runs: the largest peak and the loudest block's RMS since
/// the last [`EngineMeters::take`] (a UI reading at 30 Hz sees every block), and the deepest gain
/// reduction of the effect rack's gate, compressor and de-esser since then. Stored as `f32` bits
/// of non-negative amounts, linear amplitude for levels and dB of reduction for the dynamics
/// (non-negative floats order like their bits, so `fetch_max` holds the largest).
#[derive(Debug, Default)]
pub struct EngineMeters {
    input_peak: std::sync::atomic::AtomicU32,
    input_rms: std::sync::atomic::AtomicU32,
    output_peak: std::sync::atomic::AtomicU32,
    output_rms: std::sync::atomic::AtomicU32,
    jitter_frames: std::sync::atomic::AtomicU32,
    gate_reduction: std::sync::atomic::AtomicU32,
    compressor_reduction: std::sync::atomic::AtomicU32,
    deesser_reduction: std::sync::atomic::AtomicU32,
}

/// One reading of [`EngineMeters`]: levels as linear amplitudes (1.0 = full scale), gain
/// reductions in dB.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EngineLevels {
    /// Largest input (mapped, before processing) sample since the last reading.
    pub input_peak: f32,
    /// The loudest input block's RMS since the last reading.
    pub input_rms: f32,
    /// Largest published (after the chain and limiter) sample since the last reading.
    pub output_peak: f32,
    /// The loudest published block's RMS since the last reading.
    pub output_rms: f32,
    /// Audio the playout holds for the remote with the most buffered, in frames (jitter buffer
    /// plus decoded FIFO; 0 without remotes).
    pub jitter_frames: u32,
    /// The deepest gain reduction of each dynamics stage since the last reading, dB (≤ 0; 0 when
    /// the stage is absent or did not act; a closed gate reads −200).
    pub gain_reduction: EffectMeters,
}

impl EngineMeters {
    /// Records the block `core` just processed (the DSP thread calls this after every block).
    pub fn record(&self, core: &EngineCore) {
        self.store(core.meters(), core.effect_meters(), core.jitter_frames());
    }

    fn store(&self, m: crate::chain::ChainMeters, effects: EffectMeters, jitter_frames: usize) {
        let bits = |d: Dbfs| d.amplitude().max(0.0).to_bits();
        self.input_peak
            .fetch_max(bits(m.input.peak), Ordering::Relaxed);
        self.input_rms
            .fetch_max(bits(m.input.rms), Ordering::Relaxed);
        self.output_peak
            .fetch_max(bits(m.output.peak), Ordering::Relaxed);
        self.output_rms
            .fetch_max(bits(m.output.rms), Ordering::Relaxed);
        self.jitter_frames.store(
            u32::try_from(jitter_frames).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
        // A reduction of `db` (≤ 0) as a non-negative amount; NaN counts as none.
        let reduction = |db: f32| (-db).max(0.0).to_bits();
        self.gate_reduction
            .fetch_max(reduction(effects.gate_db), Ordering::Relaxed);
        self.compressor_reduction
            .fetch_max(reduction(effects.compressor_db), Ordering::Relaxed);
        self.deesser_reduction
            .fetch_max(reduction(effects.deesser_db), Ordering::Relaxed);
    }

    /// Reads the levels and restarts the peak and gain-reduction holds.
    pub fn take(&self) -> EngineLevels {
        let f = |a: &std::sync::atomic::AtomicU32| f32::from_bits(a.swap(0, Ordering::Relaxed));
        // `0.0 - x` rather than `-x`: no reduction reads 0, not −0.
        let db = |a: &std::sync::atomic::AtomicU32| 0.0 - f(a);
        EngineLevels {
            input_peak: f(&self.input_peak),
            input_rms: f(&self.input_rms),
            output_peak: f(&self.output_peak),
            output_rms: f(&self.output_rms),
            jitter_frames: self.jitter_frames.load(Ordering::Relaxed),
            gain_reduction: EffectMeters {
                gate_db: db(&self.gate_reduction),
                compressor_db: db(&self.compressor_reduction),
                deesser_db: db(&self.deesser_reduction),
            },
        }
    }
}

/// The per-block work, independent of threads and devices (tests and offline tools drive it).
pub struct EngineCore {
    chain: Box<Chain>,
    next_chain: Option<Box<Chain>>,
    encoder: Box<OpusEncoder>,
    playout: Playout,
    ear: EarMonitor,
    indicator: VolumeIndicator,
    tap: Option<Box<TapFeed>>,
    far: Block,
    scratch: Block,
    input_copy: Block,
    capture_copy: Block,
    voice_muted: bool,
    send_muted: bool,
    music: MusicBus,
    music_pub: Block,
    music_loc: Block,
    /// A music voice replaces the microphone now.
    music_replace: bool,
    /// The processed voice's RMS in the last block (what ducking listens to).
    voice_rms: f32,
    input_gain: f32,
    applied_input_gain: f32,
}

impl std::fmt::Debug for EngineCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineCore").finish_non_exhaustive()
    }
}

/// Everything an engine starts with.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// The chain.
    pub chain: ChainConfig,
    /// Volume indication.
    pub indication: IndicationConfig,
    /// Ear monitor.
    pub ear: EarMonitorConfig,
    /// Most remotes in the playout.
    pub max_remotes: usize,
    /// Capture channels in the capture ring (1 or 2).
    pub capture_channels: usize,
    /// Called first thing on the DSP thread (tests use it to mark the thread).
    pub dsp_thread_hook: Option<fn()>,
    /// Ask the OS to run the DSP thread at real-time priority, so that other programs' load
    /// (a game, an encoder) does not delay a block past the output device's deadline. Off by
    /// default: an engine fed faster than real time (a file, a test) would hold a core. The
    /// answer is in [`EngineStats::realtime`]; a refusal is not an error.
    pub realtime: bool,
    /// After this long without capture the engine processes silence instead (a lost input
    /// device must not stop remotes and music), in ms.
    pub capture_timeout_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            chain: ChainConfig::for_mode(crate::chain::Mode::Soundcard),
            indication: IndicationConfig::default(),
            ear: EarMonitorConfig::default(),
            max_remotes: 16,
            capture_channels: 2,
            dsp_thread_hook: None,
            realtime: false,
            capture_timeout_ms: 50,
        }
    }
}

/// What one block produced besides the output audio.
#[derive(Debug, Default)]
pub struct BlockOutput<'a> {
    /// An encoded packet, if a frame completed.
    pub packet: Option<&'a OpusPacket>,
    /// Volume reports, if an interval ended.
    pub reports: Option<&'a [VolumeReport]>,
}

impl EngineCore {
    /// Builds the core (allocates).
    pub fn new(config: &EngineConfig) -> Result<EngineCore, EngineError> {
        let chain = Box::new(Chain::new(config.chain)?);
        let encoder = Box::new(OpusEncoder::new(config.chain.mode.opus_profile(), 0, 0)?);
        Ok(EngineCore {
            chain,
            next_chain: None,
            encoder,
            playout: Playout::new(config.max_remotes),
            ear: EarMonitor::new(config.ear),
            indicator: VolumeIndicator::new(config.indication),
            tap: None,
            far: Block::silent(2),
            scratch: Block::silent(2),
            input_copy: Block::silent(2),
            capture_copy: Block::silent(2),
            voice_muted: false,
            send_muted: false,
            music: MusicBus::new(),
            music_pub: Block::silent(2),
            music_loc: Block::silent(2),
            music_replace: false,
            voice_rms: 0.0,
            input_gain: 1.0,
            applied_input_gain: 1.0,
        })
    }

    /// The chain's meter readings of the last block.
    pub fn meters(&self) -> crate::chain::ChainMeters {
        self.chain.meters()
    }

    /// The effect rack's gain reduction in the last block (gate, compressor, de-esser).
    pub fn effect_meters(&self) -> EffectMeters {
        self.chain.effect_meters()
    }

    /// Audio the playout holds for its most-buffered remote, in frames.
    pub fn jitter_frames(&self) -> usize {
        self.playout.max_buffered_frames()
    }

    /// Scales the capture by the input gain, ramping over the block when it changed.
    fn apply_input_gain(&mut self, capture: &mut Block) {
        let (from, to) = (self.applied_input_gain, self.input_gain);
        if from == 1.0 && to == 1.0 {
            return;
        }
        let step = (to - from) / BLOCK_FRAMES as f32;
        for ch in capture.active_mut() {
            for (i, s) in ch.iter_mut().enumerate() {
                *s *= from + step * (i + 1) as f32;
            }
        }
        self.applied_input_gain = to;
    }

    /// Latency the ear monitor adds inside the engine (the tap's processing delay).
    pub fn ear_monitor_latency(&self) -> Frames {
        self.ear.added_latency(self.chain.latency())
    }

    /// Applies `f` to the chain and to a chain that has not taken over yet (a mode change arrived
    /// within the same block), which would otherwise lose the change when it is swapped in.
    fn each_chain(&mut self, f: impl Fn(&mut Chain)) {
        f(&mut self.chain);
        if let Some(next) = self.next_chain.as_mut() {
            f(next);
        }
    }

    /// Applies one control message; returns what it replaced, to be dropped elsewhere.
    pub fn apply(&mut self, c: Control) -> Option<Garbage> {
        match c {
            Control::SetToggles(t) => self.each_chain(|c| c.set_toggles(t)),
            Control::SetAiNsStrength(s) => self.each_chain(|c| c.set_ai_ns_strength(s)),
            // The mutes and the music volume reach a chain waiting to be crossfaded in as well.
            Control::SetVoiceMuted(m) => {
                self.voice_muted = m;
                let muted = m || self.music_replace;
                self.each_chain(|c| c.set_voice_muted(muted));
            }
            Control::SetSendMuted(m) => {
                self.send_muted = m;
                self.each_chain(|c| c.set_send_muted(m));
            }
            Control::SetPublishMusicVolume(v) => self.each_chain(|c| c.set_music_volume(v)),
            Control::SetPlayoutMusicVolume(v) => self.playout.set_music_volume(v),
            Control::SetEchoDelayMs(ms) => self.each_chain(|c| c.set_echo_delay_ms(ms)),
            Control::ReplaceChain(mut c) => {
                // A mode change keeps what the host set: mutes and the published music volume.
                c.take_levels_from(&self.chain);
                return self.next_chain.replace(c).map(Garbage::Chain);
            }
            Control::SetExpectedLoss(p) => {
                let _ = self.encoder.set_expected_loss(p);
            }
            Control::ReplaceEncoder(mut e) => {
                e.continue_from(&self.encoder);
                return Some(Garbage::Encoder(std::mem::replace(&mut self.encoder, e)));
            }
            Control::AddRemote(r) => {
                if let Err(r) = self.playout.add(r) {
                    return Some(Garbage::Remote(r));
                }
            }
            Control::RemoveRemote(uid) => {
                self.indicator.remove(SourceId::Remote(uid));
                return self.playout.remove(uid).map(Garbage::Remote);
            }
            Control::SetRemoteVolume(uid, v) => self.playout.set_volume(uid, v),
            Control::SetRemoteMuted(uid, m) => self.playout.set_muted(uid, m),
            Control::SetAllRemotesMuted(m) => self.playout.set_all_muted(m),
            Control::SetEarMonitor(cfg) => self.ear.set_config(cfg),
            Control::StartDebugTap(t) => return self.tap.replace(t).map(Garbage::Tap),
            Control::StopDebugTap => return self.tap.take().map(Garbage::Tap),
            // Rings belong to the thread loop, which handles these before the core sees them.
            Control::ReplaceCaptureRing(r) => return Some(Garbage::CaptureRing(r)),
            Control::ReplaceOutputRing(r) => return Some(Garbage::OutputRing(r)),
            Control::AddMusic(v) => return self.music.add(v).err().map(Garbage::Music),
            Control::RemoveMusic(id) => return self.music.remove(id).map(Garbage::Music),
            Control::SetEffects(rack) => {
                return self.chain.set_effects(rack).map(Garbage::Effects);
            }
            Control::SetInputGain(g) => {
                self.input_gain = if g.is_finite() {
                    g.clamp(0.0, 4.0)
                } else {
                    1.0
                }
            }
        }
        None
    }

    /// Takes out a music voice that has ended (finished, stopped or failed), to be dropped
    /// elsewhere; the engine thread does this after every block.
    pub fn take_finished_music(&mut self) -> Option<Garbage> {
        self.music.take_done().map(Garbage::Music)
    }

    /// Processes one block: `capture` (mapped and processed in place into the publish bus),
    /// `music` (the raw music ring) for both buses plus the music bus's voices, each where its
    /// routing sends it; `out` receives what the output device plays.
    pub fn process(
        &mut self,
        capture: &mut Block,
        music: Option<&Block>,
        out: &mut Block,
    ) -> (BlockOutput<'_>, Option<Garbage>) {
        // The debug tap records the raw microphone; the input gain applies before the chain.
        if self.tap.is_some() {
            self.capture_copy.copy_from(capture);
        }
        self.apply_input_gain(capture);
        // Music voices: ducked under the last block's voice, split into publish and local.
        let bus = self
            .music
            .mix(self.voice_rms, &mut self.music_pub, &mut self.music_loc);
        if bus.replace != self.music_replace {
            self.music_replace = bus.replace;
            let muted = self.voice_muted || self.music_replace;
            self.each_chain(|c| c.set_voice_muted(muted));
        }
        if let Some(m) = music {
            add_block(&mut self.music_pub, m);
            add_block(&mut self.music_loc, m);
        }
        let has_raw = music.is_some();
        let music_pub = (bus.publish || has_raw).then_some(&self.music_pub);
        let music_loc = (bus.local || has_raw).then_some(&self.music_loc);
        // The far-end reference is exactly what goes to the output: remotes plus music.
        self.playout
            .mix(&mut self.far, music_loc, &mut self.indicator);
        let mut garbage = None;
        if let Some(mut next) = self.next_chain.take() {
            // The new chain takes the host's effects over (state and all).
            self.chain.swap_effects(&mut next);
            self.input_copy.copy_from(capture);
            crossfade(
                &mut self.chain,
                &mut next,
                &self.input_copy,
                &self.far,
                music_pub,
                &mut self.scratch,
                capture,
            );
            garbage = Some(Garbage::Chain(std::mem::replace(&mut self.chain, next)));
        } else {
            self.chain.process(capture, &self.far, music_pub);
        }
        if garbage.is_none() {
            garbage = self.chain.take_retired_effects().map(Garbage::Effects);
        }
        self.voice_rms = if self.voice_muted || self.music_replace {
            0.0
        } else {
            self.chain.tap_voice().rms()
        };
        let voice_level = if self.voice_muted || self.send_muted || self.music_replace {
            Dbfs::FLOOR
        } else {
            Dbfs::from_amplitude(self.chain.tap_voice().rms())
        };
        self.indicator.feed(SourceId::Local, voice_level);
        out.copy_from(&self.far);
        self.ear.mix(
            out,
            self.chain.tap_raw(),
            self.chain.tap_ns(),
            self.chain.tap_voice(),
        );
        if let Some(tap) = self.tap.as_mut() {
            tap.push(&self.capture_copy, &self.far, capture);
        }
        let packet = self.encoder.push_block(capture).ok().flatten();
        let reports = self.indicator.end_block();
        (BlockOutput { packet, reports }, garbage)
    }
}

/// Adds `src` (1 or 2 channels) to the stereo block `dst`.
fn add_block(dst: &mut Block, src: &Block) {
    for ch in 0..2 {
        let s = src.channel(if src.channels() == 2 { ch } else { 0 });
        for (d, v) in dst.channel_mut(ch).iter_mut().zip(s.iter()) {
            *d += *v;
        }
    }
}

/// The caller's side of a running engine.
#[derive(Debug)]
pub struct EngineHandle {
    control: rtrb::Producer<Control>,
    garbage: rtrb::Consumer<Garbage>,
    /// Encoded packets of the publish bus, in order, with RTP timestamps.
    pub packets: rtrb::Consumer<OpusPacket>,
    /// Volume reports; a batch ends with a report whose source is `Local`.
    pub reports: rtrb::Consumer<VolumeReport>,
    stats: Arc<EngineStats>,
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The device side of a running engine: capture in, output out (interleaved 48 kHz).
#[derive(Debug)]
pub struct EngineIo {
    /// Push captured frames here (interleaved, `capture_channels`).
    pub capture: rtrb::Producer<f32>,
    /// Pull stereo output frames from here.
    pub output: rtrb::Consumer<f32>,
    /// Push local music here (interleaved stereo), if any.
    pub music: rtrb::Producer<f32>,
}

/// Ring sizes: one second of audio each way.
const RING_FRAMES: usize = 48_000;

/// Starts an engine thread.
pub fn start(config: EngineConfig) -> Result<(EngineHandle, EngineIo), EngineError> {
    let mut core = EngineCore::new(&config)?;
    let in_ch = config.capture_channels.clamp(1, 2);
    let (cap_p, mut cap_c) = rtrb::RingBuffer::<f32>::new(RING_FRAMES * in_ch);
    let (mut out_p, out_c) = rtrb::RingBuffer::<f32>::new(RING_FRAMES * 2);
    let (mus_p, mut mus_c) = rtrb::RingBuffer::<f32>::new(RING_FRAMES * 2);
    let (ctl_p, mut ctl_c) = rtrb::RingBuffer::<Control>::new(64);
    let (mut gar_p, gar_c) = rtrb::RingBuffer::<Garbage>::new(64);
    let (mut pkt_p, pkt_c) = rtrb::RingBuffer::<OpusPacket>::new(256);
    let (mut rep_p, rep_c) = rtrb::RingBuffer::<VolumeReport>::new(1024);
    let stats = Arc::new(EngineStats::default());
    let running = Arc::new(AtomicBool::new(true));
    let (stats2, running2) = (stats.clone(), running.clone());
    let thread = std::thread::Builder::new()
        .name("onmic-dsp".into())
        .spawn(move || {
            // Thread-local caches some libraries fill on first use are filled now, before the
            // real-time loop starts.
            crate::ai_ns::prime_thread();
            // Once, before the loop: the promotion is a system call (and on Windows and macOS
            // may allocate). The handle is kept for the thread's life; the thread ending ends
            // the priority with it.
            let (_rt_handle, rt) = if config.realtime {
                match audio_thread_priority::promote_current_thread_to_real_time(
                    BLOCK_FRAMES as u32,
                    48_000,
                ) {
                    Ok(h) => (Some(h), Realtime::Granted),
                    Err(e) => (None, Realtime::Refused(e.to_string())),
                }
            } else {
                (None, Realtime::NotAsked)
            };
            let _ = stats2.realtime.set(rt);
            if let Some(hook) = config.dsp_thread_hook {
                hook();
            }
            let mut capture = Block::silent(in_ch);
            let mut music = Block::silent(2);
            let mut out = Block::silent(2);
            let mut inter = [0.0f32; BLOCK_FRAMES * 2];
            let send_garbage = |g: Garbage, gar_p: &mut rtrb::Producer<Garbage>| {
                if let Err(rtrb::PushError::Full(g)) = gar_p.push(g) {
                    // Never drop on the DSP thread: leak and count instead.
                    std::mem::forget(g);
                    stats2.garbage_leaked.fetch_add(1, Ordering::Relaxed);
                }
            };
            let mut last_block = std::time::Instant::now();
            let capture_timeout = Duration::from_millis(config.capture_timeout_ms.max(15));
            // Once starved, silent blocks follow at the block rate (real time).
            let block_period = Duration::from_millis(10);
            let mut starving = false;
            while running2.load(Ordering::Acquire) {
                while let Ok(c) = ctl_c.pop() {
                    let g = match c {
                        Control::ReplaceCaptureRing(r) => {
                            Some(Garbage::CaptureRing(std::mem::replace(&mut cap_c, r)))
                        }
                        Control::ReplaceOutputRing(r) => {
                            Some(Garbage::OutputRing(std::mem::replace(&mut out_p, r)))
                        }
                        other => {
                            let adding = matches!(other, Control::AddMusic(_));
                            let g = core.apply(other);
                            if adding && g.is_some() {
                                stats2.music_refused.fetch_add(1, Ordering::Relaxed);
                            }
                            g
                        }
                    };
                    if let Some(g) = g {
                        send_garbage(g, &mut gar_p);
                    }
                }
                let need = BLOCK_FRAMES * in_ch;
                match cap_c.read_chunk(need) {
                    Ok(chunk) => {
                        let (a, b) = chunk.as_slices();
                        inter[..a.len()].copy_from_slice(a);
                        inter[a.len()..a.len() + b.len()].copy_from_slice(b);
                        chunk.commit_all();
                        capture.read_interleaved(&inter[..need], in_ch);
                        starving = false;
                    }
                    // No capture for a while: the input device is gone or stalled. Keep the
                    // engine running on silence so remotes and music still play.
                    Err(_)
                        if last_block.elapsed() > capture_timeout
                            || (starving && last_block.elapsed() >= block_period) =>
                    {
                        starving = true;
                        capture.set_channels(in_ch);
                        capture.clear();
                        stats2
                            .capture_starved_blocks
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_micros(500));
                        continue;
                    }
                }
                last_block = std::time::Instant::now();
                capture.timestamp = stats2.blocks.load(Ordering::Relaxed) * BLOCK_FRAMES as u64;
                let have_music = match mus_c.read_chunk(BLOCK_FRAMES * 2) {
                    Ok(chunk) => {
                        let (a, b) = chunk.as_slices();
                        inter[..a.len()].copy_from_slice(a);
                        inter[a.len()..a.len() + b.len()].copy_from_slice(b);
                        chunk.commit_all();
                        music.read_interleaved(&inter, 2)
                    }
                    Err(_) => false,
                };
                let (result, garbage) =
                    core.process(&mut capture, have_music.then_some(&music), &mut out);
                if let Some(p) = result.packet
                    && pkt_p.push(p.clone()).is_err()
                {
                    stats2.packets_dropped.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(reports) = result.reports {
                    // Remotes first, the local report last, so a reader knows the batch ended.
                    for r in reports.iter().filter(|r| r.source != SourceId::Local) {
                        let _ = rep_p.push(*r);
                    }
                    for r in reports.iter().filter(|r| r.source == SourceId::Local) {
                        let _ = rep_p.push(*r);
                    }
                }
                if let Some(g) = garbage {
                    send_garbage(g, &mut gar_p);
                }
                if let Some(g) = core.take_finished_music() {
                    send_garbage(g, &mut gar_p);
                }
                stats2.meters.record(&core);
                out.write_interleaved(&mut inter);
                match out_p.write_chunk(BLOCK_FRAMES * 2) {
                    Ok(mut chunk) => {
                        let (a, b) = chunk.as_mut_slices();
                        let n = a.len();
                        a.copy_from_slice(&inter[..n]);
                        b.copy_from_slice(&inter[n..n + b.len()]);
                        chunk.commit_all();
                    }
                    Err(_) => {
                        stats2.output_overruns.fetch_add(1, Ordering::Relaxed);
                    }
                }
                stats2.blocks.fetch_add(1, Ordering::Relaxed);
            }
        })?;
    Ok((
        EngineHandle {
            control: ctl_p,
            garbage: gar_c,
            packets: pkt_c,
            reports: rep_c,
            stats,
            running,
            thread: Some(thread),
        },
        EngineIo {
            capture: cap_p,
            output: out_c,
            music: mus_p,
        },
    ))
}

impl EngineHandle {
    /// Sends a control message (never blocks); drops replaced objects returned so far.
    pub fn send(&mut self, c: Control) -> Result<(), EngineError> {
        self.collect_garbage();
        self.control.push(c).map_err(|_| EngineError::Busy)
    }

    /// Sends a control message (never blocks); when the control ring is full the message comes
    /// back to the caller (to retry or drop off the DSP thread), never lost silently.
    pub fn try_send(&mut self, c: Control) -> Result<(), Control> {
        self.collect_garbage();
        self.control.push(c).map_err(|rtrb::PushError::Full(c)| c)
    }

    /// Switches mode live: builds the new chain and encoder here (allocating, off the DSP thread)
    /// and sends them; the DSP thread crossfades to the chain and continues the RTP stream.
    pub fn set_mode(&mut self, config: ChainConfig) -> Result<(), EngineError> {
        let chain = Box::new(Chain::new(config)?);
        let encoder = Box::new(OpusEncoder::new(config.mode.opus_profile(), 0, 0)?);
        self.send(Control::ReplaceChain(chain))?;
        self.send(Control::ReplaceEncoder(encoder))
    }

    /// Builds the effect rack for `settings` here (allocating, off the DSP thread) and sends it;
    /// the DSP thread warms it up and crossfades to it.
    pub fn set_effects(
        &mut self,
        settings: &crate::effects::EffectSettings,
    ) -> Result<(), EngineError> {
        let rack = EffectRack::new(settings)?;
        self.send(Control::SetEffects(Box::new(rack)))
    }

    /// Drops objects the DSP thread handed back; returns how many.
    pub fn collect_garbage(&mut self) -> usize {
        let mut n = 0;
        while let Ok(g) = self.garbage.pop() {
            drop(g);
            n += 1;
        }
        n
    }

    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The counters, shared: for a thread other than the handle's owner to watch.
    pub fn shared_stats(&self) -> Arc<EngineStats> {
        Arc::clone(&self.stats)
    }

    /// Stops the DSP thread and waits for it.
    pub fn stop(&mut self) {
        self.running.store(false, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.collect_garbage();
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod meter_tests {
    use super::*;
    use crate::chain::ChainMeters;
    use crate::level::LevelReading;

    fn reading(peak: f32, rms: f32) -> LevelReading {
        LevelReading {
            peak: Dbfs::from_amplitude(peak),
            rms: Dbfs::from_amplitude(rms),
        }
    }

    #[test]
    fn meters_hold_the_loudest_block_until_read_then_restart() {
        let m = EngineMeters::default();
        for (peak, rms) in [(0.5, 0.3), (0.9, 0.2), (0.1, 0.05)] {
            m.store(
                ChainMeters {
                    input: reading(peak, rms),
                    output: reading(peak / 2.0, rms / 2.0),
                },
                EffectMeters::default(),
                480,
            );
        }
        let r = m.take();
        assert!((r.input_peak - 0.9).abs() < 1e-3, "{r:?}");
        assert!((r.input_rms - 0.3).abs() < 1e-3, "{r:?}");
        assert!((r.output_peak - 0.45).abs() < 1e-3, "{r:?}");
        assert_eq!(r.jitter_frames, 480);
        let again = m.take();
        assert_eq!((again.input_peak, again.input_rms), (0.0, 0.0), "restarted");
    }

    #[test]
    fn gain_reduction_holds_the_deepest_block_until_read_then_restarts() {
        let m = EngineMeters::default();
        let blocks = [
            (-3.0, -1.5, 0.0),
            (-200.0, -12.25, -4.0),
            (-0.5, -6.0, -1.0),
            (f32::NAN, 0.0, 0.0),
        ];
        for (gate_db, compressor_db, deesser_db) in blocks {
            m.store(
                ChainMeters::default(),
                EffectMeters {
                    gate_db,
                    compressor_db,
                    deesser_db,
                },
                0,
            );
        }
        let r = m.take().gain_reduction;
        assert_eq!(
            r.gate_db, -200.0,
            "a closed gate's block is the deepest: {r:?}"
        );
        assert_eq!(r.compressor_db, -12.25, "{r:?}");
        assert_eq!(r.deesser_db, -4.0, "{r:?}");
        let again = m.take().gain_reduction;
        assert_eq!(again, EffectMeters::default(), "restarted at no reduction");
        assert!(again.compressor_db.is_sign_positive(), "0, not −0");
        m.store(
            ChainMeters::default(),
            EffectMeters {
                gate_db: 0.0,
                compressor_db: -2.0,
                deesser_db: 0.0,
            },
            0,
        );
        assert_eq!(
            m.take().gain_reduction.compressor_db,
            -2.0,
            "a new block after the reading"
        );
    }

    /// A real engine core with a compressor in its rack (sent as `Control::SetEffects`, crossfaded
    /// in as on air), fed a steady 1 kHz tone: the reading is the compressor's static reduction.
    #[test]
    fn an_engine_core_reports_its_compressors_reduction() {
        use crate::effects::dynamics::CompressorSettings;
        use crate::effects::{Effect, EffectSettings};
        use crate::test_signals::sine_block;

        let settings = CompressorSettings {
            ratio: 20.0,
            threshold_db: -30.0,
            attack_ms: 6.0,
            release_ms: 60.0,
            output_gain_db: 0.0,
        };
        let mut core = EngineCore::new(&EngineConfig::default()).expect("core");
        let rack = EffectRack::new(&EffectSettings {
            effects: vec![Effect::Compressor(settings)],
        })
        .expect("rack");
        assert!(core.apply(Control::SetEffects(Box::new(rack))).is_none());
        let meters = EngineMeters::default();
        let mut out = Block::silent(2);
        let mut n = 0u64;
        let mut play = |core: &mut EngineCore, amplitude: f32, blocks: u64| {
            for _ in 0..blocks {
                let mut mic = sine_block(1000.0, amplitude, n, 2);
                let _ = core.process(&mut mic, None, &mut out);
                meters.record(core);
                n += 1;
            }
        };
        // A quiet tone, 10 dB under the threshold: no reduction. The first blocks warm the
        // rack up and crossfade it in.
        let quiet = 10f32.powf(-40.0 / 20.0);
        play(&mut core, quiet, 100);
        meters.take();
        play(&mut core, quiet, 30);
        let r = meters.take().gain_reduction;
        println!("quiet tone (−40 dBFS peak) under a −30 dB threshold: {r:?}");
        assert!(
            !core.chain.effects().is_empty(),
            "the compressor's rack is in force"
        );
        assert!(r.compressor_db.abs() < 0.01, "{r:?}");
        assert_eq!(
            (r.gate_db, r.deesser_db),
            (0.0, 0.0),
            "absent stages: {r:?}"
        );

        // A loud tone: its sample peak is the amplitude (48 samples a period), −6.02 dBFS, so the
        // static curve asks for (−6.02 + 30)·(1 − 1/20) = 22.78 dB of reduction.
        let loud = 0.5f32;
        let over = 20.0 * loud.log10() - settings.threshold_db;
        let expected = -over * (1.0 - 1.0 / settings.ratio);
        play(&mut core, loud, 100);
        meters.take();
        play(&mut core, loud, 30);
        let r = meters.take().gain_reduction;
        println!(
            "loud tone (−6.02 dBFS peak), threshold −30 dB, ratio 20: {:.2} dB (static curve {expected:.2} dB)",
            r.compressor_db
        );
        assert!(
            (r.compressor_db - expected).abs() < 0.5,
            "{r:?}, expected {expected:.2} dB"
        );
        assert_eq!(
            (r.gate_db, r.deesser_db),
            (0.0, 0.0),
            "absent stages: {r:?}"
        );
    }
}
