//! The capture chain and the publish bus, in Mumble's order:
//! channel map → AEC (far-end aligned) → AI-NS → NS → AGC → voice effects → mix with music →
//! limiter,
//! with meters before and after and taps for the ear monitor.
//!
//! Modes fix the layout: `Soundcard` runs stereo with every toggle off (the path is then
//! bit-transparent up to the encoder as long as the limiter does not engage, i.e. below −1 dBFS);
//! `Voice` runs mono with AEC/NS/AGC/AI-NS on. Toggles and mutes switch live without clicks.
//! Changing the mode changes the layout, so the engine builds a new chain off the DSP thread and
//! crossfades to it ([`crossfade`]).

use crate::aec::Aec;
use crate::agc::Agc;
use crate::ai_ns::AiNoiseSuppressor;
use crate::block::Block;
use crate::effects::{EffectMeters, EffectRack, EffectsSlot};
use crate::level::{LevelMeter, LevelReading};
use crate::limiter::Limiter;
use crate::ns::{NoiseSuppressor, NsLevel};
use crate::opus::OpusProfile;
use crate::processor::{PrepareError, Processor, StreamSpec};
use crate::switch::Switched;
use crate::units::{BLOCK_FRAMES, Frames};

/// The two product modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Stereo sound-card input, processing off, Opus music profile.
    #[default]
    Soundcard,
    /// Mono voice with AEC/NS/AGC on, Opus voice profile.
    Voice,
}

impl Mode {
    /// The toggles a mode starts with.
    pub fn default_toggles(self) -> Toggles {
        match self {
            Mode::Soundcard => Toggles::default(),
            Mode::Voice => Toggles {
                aec: true,
                ns: true,
                ai_ns: true,
                agc: true,
            },
        }
    }

    /// The Opus profile that goes with the mode.
    pub fn opus_profile(self) -> OpusProfile {
        match self {
            Mode::Soundcard => OpusProfile::music(),
            Mode::Voice => OpusProfile::voice(),
        }
    }

    /// The default channel map of the mode.
    pub fn default_channel_map(self) -> ChannelMap {
        match self {
            Mode::Soundcard => ChannelMap::StereoPair,
            Mode::Voice => ChannelMap::Mono { input: 0 },
        }
    }
}

/// Which processing stages are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Toggles {
    /// Echo cancellation.
    pub aec: bool,
    /// Classic noise suppression.
    pub ns: bool,
    /// AI noise suppression.
    pub ai_ns: bool,
    /// Automatic gain control.
    pub agc: bool,
}

/// How input channels become the chain's signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMap {
    /// Both inputs as a stereo pair (processed in stereo).
    StereoPair,
    /// One input (0 or 1) as a mono voice.
    Mono {
        /// Input channel index.
        input: usize,
    },
    /// Voice on one input (processed), an instrument on the other (never processed), both
    /// mixed to the centre of a stereo bus.
    VoiceAndInstrument {
        /// Voice input index.
        voice: usize,
    },
    /// Both inputs averaged to mono.
    Downmix,
}

impl ChannelMap {
    /// Channels the processing stages see.
    pub fn processing_channels(self) -> usize {
        match self {
            ChannelMap::StereoPair => 2,
            _ => 1,
        }
    }
}

/// Everything a chain is built from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainConfig {
    /// The mode.
    pub mode: Mode,
    /// Initial toggles.
    pub toggles: Toggles,
    /// Input channel mapping.
    pub channel_map: ChannelMap,
    /// Classic NS level.
    pub ns_level: NsLevel,
    /// AI-NS strength 0..=1.
    pub ai_ns_strength: f32,
}

impl ChainConfig {
    /// The defaults of `mode`.
    pub fn for_mode(mode: Mode) -> ChainConfig {
        ChainConfig {
            mode,
            toggles: mode.default_toggles(),
            channel_map: mode.default_channel_map(),
            ns_level: NsLevel::default(),
            ai_ns_strength: 1.0,
        }
    }
}

/// A ramped gain (10 ms ramps) for mutes and volumes.
#[derive(Debug, Clone, Copy)]
struct Ramp {
    current: f32,
    target: f32,
}

impl Ramp {
    fn new(v: f32) -> Ramp {
        Ramp {
            current: v,
            target: v,
        }
    }

    fn apply(&mut self, block: &mut Block) {
        if self.current == 1.0 && self.target == 1.0 {
            return;
        }
        let step = (self.target - self.current) / BLOCK_FRAMES as f32;
        for ch in block.active_mut() {
            for (i, s) in ch.iter_mut().enumerate() {
                *s *= self.current + step * (i + 1) as f32;
            }
        }
        self.current = self.target;
    }
}

/// Meter readings of one block.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ChainMeters {
    /// The mapped input before processing.
    pub input: LevelReading,
    /// The publish bus after the limiter.
    pub output: LevelReading,
}

/// The capture chain plus the publish-bus mix and limiter.
#[derive(Debug)]
pub struct Chain {
    config: ChainConfig,
    aec: Switched<Aec>,
    ns: Switched<NoiseSuppressor>,
    ai_ns: Switched<AiNoiseSuppressor>,
    agc: Switched<Agc>,
    effects: EffectsSlot,
    limiter: Limiter,
    meter_in: LevelMeter,
    meter_out: LevelMeter,
    voice_gain: Ramp,
    music_gain: Ramp,
    send_gain: Ramp,
    instrument: [f32; BLOCK_FRAMES],
    tap_raw: Block,
    tap_ns: Block,
    tap_voice: Block,
    /// For studies ([`Chain::enable_components`]).
    split: Option<Box<ChainSplit>>,
}

/// [`Chain::enable_components`]'s state past the AEC (which keeps its own): the near end's part
/// of the AEC's output one block back (what the classic NS works on), of the voice as it goes
/// through the stages, and the output it is the near end's part of.
#[derive(Debug)]
struct ChainSplit {
    aec_prev: [f32; BLOCK_FRAMES],
    voice: [f32; BLOCK_FRAMES],
    out: [f32; BLOCK_FRAMES],
    /// Whether the voice's part is followed past the AEC (see [`Chain::enable_components`]).
    through: bool,
}

/// One block of [`Chain::components`]: the AEC stage's output and the near end's part of it,
/// and, when the split follows the chain past the AEC, the chain's output and the near end's
/// part of it.
#[derive(Debug, Clone, Copy)]
pub struct ChainComponents<'a> {
    /// The AEC stage's output (channel 0).
    pub aec: &'a [f32],
    /// The near end's part of it.
    pub aec_near: &'a [f32],
    /// The chain's output (channel 0) and the near end's part of it.
    pub output: Option<(&'a [f32], &'a [f32])>,
}

impl Chain {
    /// Builds and prepares a chain (allocates; call off the DSP thread).
    pub fn new(config: ChainConfig) -> Result<Chain, PrepareError> {
        let t = config.toggles;
        let voice = config.mode == Mode::Voice;
        let mut chain = Chain {
            config,
            aec: Switched::new(Aec::new(), t.aec, false),
            ns: Switched::new(NoiseSuppressor::new(config.ns_level), t.ns, voice),
            ai_ns: Switched::new(
                AiNoiseSuppressor::new(config.ai_ns_strength),
                t.ai_ns,
                voice,
            ),
            agc: Switched::new(Agc::new(), t.agc, false),
            effects: EffectsSlot::default(),
            limiter: Limiter::default(),
            meter_in: LevelMeter::new(),
            meter_out: LevelMeter::new(),
            voice_gain: Ramp::new(1.0),
            music_gain: Ramp::new(1.0),
            send_gain: Ramp::new(1.0),
            instrument: [0.0; BLOCK_FRAMES],
            tap_raw: Block::silent(2),
            tap_ns: Block::silent(2),
            tap_voice: Block::silent(2),
            split: None,
        };
        let spec = StreamSpec {
            channels: config.channel_map.processing_channels(),
            ..StreamSpec::default()
        };
        chain.aec.prepare(spec)?;
        chain.ns.prepare(spec)?;
        chain.ai_ns.prepare(spec)?;
        chain.agc.prepare(spec)?;
        chain.limiter.prepare(StreamSpec::default())?;
        Ok(chain)
    }

    /// The configuration it was built with (toggles as built, not as switched since).
    pub fn config(&self) -> ChainConfig {
        self.config
    }

    /// Switches stages live (crossfaded, allocation-free).
    pub fn set_toggles(&mut self, t: Toggles) {
        self.aec.set_on(t.aec);
        self.ns.set_on(t.ns);
        self.ai_ns.set_on(t.ai_ns);
        self.agc.set_on(t.agc);
    }

    /// The toggles now in force.
    pub fn toggles(&self) -> Toggles {
        Toggles {
            aec: self.aec.is_on(),
            ns: self.ns.is_on(),
            ai_ns: self.ai_ns.is_on(),
            agc: self.agc.is_on(),
        }
    }

    /// AI-NS strength 0..=1.
    pub fn set_ai_ns_strength(&mut self, s: f32) {
        self.ai_ns.inner_mut().set_strength(s);
    }

    /// Mute the voice but keep the music (`true` mutes).
    pub fn set_voice_muted(&mut self, muted: bool) {
        self.voice_gain.target = if muted { 0.0 } else { 1.0 };
    }

    /// Mute everything sent (voice and music).
    pub fn set_send_muted(&mut self, muted: bool) {
        self.send_gain.target = if muted { 0.0 } else { 1.0 };
    }

    /// Music volume on the publish bus (0..=1.5).
    pub fn set_music_volume(&mut self, v: f32) {
        self.music_gain.target = v.clamp(0.0, 1.5);
    }

    /// Takes over `running`'s voice, music and send gains where they stand (targets and levels,
    /// mid-ramp included): for a chain about to replace it, so that a mode change keeps what the
    /// host set from the first sample, with no ramp from this chain's defaults.
    pub fn take_levels_from(&mut self, running: &Chain) {
        self.voice_gain = running.voice_gain;
        self.music_gain = running.music_gain;
        self.send_gain = running.send_gain;
    }

    /// Tells the AEC the render→capture delay of the devices, in ms.
    pub fn set_echo_delay_ms(&mut self, ms: i32) {
        self.aec.inner_mut().set_stream_delay_ms(ms);
    }

    /// Frames of delay the chain adds now.
    pub fn latency(&self) -> Frames {
        self.aec.latency() + self.ns.latency() + self.ai_ns.latency() + self.effects.latency()
    }

    /// Starts crossfading to a new effect rack (built off the DSP thread); returns a rack that
    /// was still waiting and is now replaced, to be dropped elsewhere. Allocation-free.
    pub fn set_effects(&mut self, rack: Box<EffectRack>) -> Option<Box<EffectRack>> {
        self.effects.set(rack)
    }

    /// Puts `rack` in force at once, without a crossfade (before the first block, or offline);
    /// returns the rack it replaces.
    pub fn set_effects_now(&mut self, rack: Box<EffectRack>) -> Box<EffectRack> {
        self.effects.replace_now(rack)
    }

    /// A rack that has been crossfaded out, to be dropped off the DSP thread.
    pub fn take_retired_effects(&mut self) -> Option<Box<EffectRack>> {
        self.effects.take_retired()
    }

    /// The effect rack in force.
    pub fn effects(&self) -> &EffectRack {
        self.effects.current()
    }

    /// The dynamics' gain reduction in the last block (for the Studio's meters).
    pub fn effect_meters(&self) -> EffectMeters {
        self.effects.current().meters()
    }

    /// Hands this chain's effect racks to `other` and takes `other`'s (a chain replacing this
    /// one keeps the host's effects, their state included).
    pub fn swap_effects(&mut self, other: &mut Chain) {
        self.effects.swap(&mut other.effects);
    }

    /// Meter readings of the last block.
    pub fn meters(&self) -> ChainMeters {
        ChainMeters {
            input: self.meter_in.reading(),
            output: self.meter_out.reading(),
        }
    }

    /// Makes the chain carry the microphone's near-end part (given before each block with
    /// [`Chain::set_near_component`]) through its processing, for studies of what it leaves of
    /// the echo (the offline CLI's `--near-component`; docs/voice-chain.md, "The split"): the
    /// AEC's suppressor gains ([`Aec::enable_components`]); then, with the AI-NS and the classic
    /// NS both on, one channel processed (no instrument channel), no effects and the voice and
    /// send gains at unity, the one-block alignment of the AI-NS's input, the classic NS's gains
    /// on the same frames (it applies them to the AI-NS's input,
    /// [`NoiseSuppressor::set_reference`]), the AGC's gain ramp and the limiter's gain per
    /// sample. Every step is linear in its input once its gains are fixed, so the near end's
    /// part of the output comes out beside the output and the rest is what is left of the echo
    /// (from the third block on: the classic NS's first two blocks work on the AI-NS's output,
    /// before its input lines up). Returns whether the split follows the chain past the AEC.
    /// Needs the AEC on. Allocates: not for the live path.
    pub fn enable_components(&mut self) -> bool {
        self.aec.inner_mut().enable_components();
        let through = self.ai_ns.is_on()
            && self.ns.is_on()
            && self.config.channel_map.processing_channels() == 1
            && !matches!(
                self.config.channel_map,
                ChannelMap::VoiceAndInstrument { .. }
            )
            && self.effects.current().is_empty()
            && [&self.voice_gain, &self.send_gain]
                .iter()
                .all(|r| r.current == 1.0 && r.target == 1.0);
        if through {
            self.ns.inner_mut().enable_split();
        }
        self.split = Some(Box::new(ChainSplit {
            aec_prev: [0.0; BLOCK_FRAMES],
            voice: [0.0; BLOCK_FRAMES],
            out: [0.0; BLOCK_FRAMES],
            through,
        }));
        through
    }

    /// The near end's part of the next input block (channel 0; shorter is padded with
    /// silence), after [`Chain::enable_components`].
    pub fn set_near_component(&mut self, near: &[f32]) {
        self.aec.inner_mut().set_near_component(near);
    }

    /// The last block's split ([`Chain::enable_components`]).
    pub fn components(&self) -> Option<ChainComponents<'_>> {
        let sp = self.split.as_ref()?;
        let (aec, aec_near) = self.aec.inner().components()?;
        Some(ChainComponents {
            aec,
            aec_near,
            output: sp.through.then(|| (&sp.out[..], &sp.voice[..])),
        })
    }

    /// The echo canceller, for studies ([`Aec::enable_components`]).
    pub fn aec(&self) -> &Aec {
        self.aec.inner()
    }

    /// The echo canceller, for studies ([`Aec::enable_components`]).
    pub fn aec_mut(&mut self) -> &mut Aec {
        self.aec.inner_mut()
    }

    /// The mapped input before processing (ear monitor "raw").
    pub fn tap_raw(&self) -> &Block {
        &self.tap_raw
    }

    /// The voice after AEC and noise suppression (ear monitor "with NS").
    pub fn tap_ns(&self) -> &Block {
        &self.tap_ns
    }

    /// The fully processed voice before the music mix (ear monitor "with effects").
    pub fn tap_voice(&self) -> &Block {
        &self.tap_voice
    }

    fn map_channels(&mut self, block: &mut Block) {
        let stereo_in = block.channels() == 2;
        match self.config.channel_map {
            ChannelMap::StereoPair => block.set_channels(2),
            ChannelMap::Mono { input } => {
                if input == 1 && stereo_in {
                    let (l, r) = block.pair_mut();
                    l.copy_from_slice(r);
                }
                block.set_channels(1);
            }
            ChannelMap::Downmix => {
                if stereo_in {
                    let (l, r) = block.pair_mut();
                    for (a, b) in l.iter_mut().zip(r.iter()) {
                        *a = 0.5 * (*a + *b);
                    }
                }
                block.set_channels(1);
            }
            ChannelMap::VoiceAndInstrument { voice } => {
                let (l, r) = block.pair_mut();
                if !stereo_in {
                    self.instrument.fill(0.0);
                } else if voice == 1 {
                    self.instrument.copy_from_slice(l);
                    l.copy_from_slice(r);
                } else {
                    self.instrument.copy_from_slice(r);
                }
                block.set_channels(1);
            }
        }
    }

    /// Processes one capture block in place into the publish bus. `far_end` is the block just
    /// sent to the output device (the AEC reference); `music` is the local music for the
    /// publish bus, if any.
    pub fn process(&mut self, block: &mut Block, far_end: &Block, music: Option<&Block>) {
        self.map_channels(block);
        self.meter_in.process(block);
        self.tap_raw.copy_from(block);
        if self.aec.is_active() {
            self.aec.inner_mut().analyze_render(far_end);
        }
        self.aec.process(block);
        // RNNoise before the classic suppressor: it was trained on unprocessed noisy speech, and
        // this order measured 2 dB better (tests/dsp_quality.rs).
        self.ai_ns.process(block);
        // The classic NS works beside the AI-NS, not after it: it learns the noise from the
        // AI-NS's input and applies the smaller of the two gains to it (docs/voice-chain.md).
        if self.ai_ns.is_active() && self.ai_ns.inner().reference_ready() {
            let ai = self.ai_ns.inner();
            let inputs = [ai.aligned_input(0), ai.aligned_input(1)];
            self.ns
                .inner_mut()
                .set_reference(Some(&inputs[..block.channels()]), ai.speech_probability());
        } else {
            let speech = if self.ai_ns.is_active() { 1.0 } else { 0.0 };
            self.ns.inner_mut().set_reference(None, speech);
        }
        self.ns.process(block);
        if let Some(sp) = self.split.as_mut()
            && sp.through
        {
            // The classic NS applied its gains to the AI-NS's input one block back.
            if let Some((_, near)) = self.aec.inner().components() {
                sp.voice = sp.aec_prev;
                sp.aec_prev.copy_from_slice(near);
            }
            self.ns.inner_mut().split_block(&mut sp.voice);
        }
        self.tap_ns.copy_from(block);
        // The AGC adapts on near-end speech only, never on what is left of the echo.
        let near = !self.aec.is_active() || self.aec.inner().near_end_active();
        self.agc.inner_mut().set_adaptation(near);
        self.agc.process(block);
        if let Some(sp) = self.split.as_mut()
            && sp.through
            && self.agc.is_active()
        {
            self.agc.inner().apply_last_gain(&mut sp.voice);
        }
        // Voice effects (DESIGN.md §3): after the voice is cleaned and levelled, before the
        // instrument, the music and the limiter; may turn a mono voice into stereo.
        self.effects.process(block);
        if let ChannelMap::VoiceAndInstrument { .. } = self.config.channel_map {
            block.set_channels(2);
            let (l, r) = block.pair_mut();
            for i in 0..BLOCK_FRAMES {
                l[i] += self.instrument[i];
                r[i] += self.instrument[i];
            }
        }
        self.tap_voice.copy_from(block);
        self.voice_gain.apply(block);
        if let Some(music) = music {
            if block.channels() == 1 && music.channels() == 2 {
                block.set_channels(2);
            }
            let g0 = self.music_gain.current;
            let step = (self.music_gain.target - g0) / BLOCK_FRAMES as f32;
            let mono_music = music.channels() == 1;
            let stereo_bus = block.channels() == 2;
            for ch in 0..block.channels() {
                let src = if mono_music {
                    music.channel(0)
                } else {
                    music.channel(ch)
                };
                let out = block.channel_mut(ch);
                for i in 0..BLOCK_FRAMES {
                    let m = if !stereo_bus && !mono_music {
                        0.5 * (music.channel(0)[i] + music.channel(1)[i])
                    } else {
                        src[i]
                    };
                    out[i] += m * (g0 + step * (i + 1) as f32);
                }
            }
            self.music_gain.current = self.music_gain.target;
        }
        self.send_gain.apply(block);
        self.limiter.process(block);
        self.meter_out.process(block);
        if let Some(sp) = self.split.as_mut()
            && sp.through
        {
            // No music offline; the voice and send gains were at unity when the split began and
            // nothing offline changes them.
            self.limiter.apply_last_gains(&mut sp.voice);
            sp.out.copy_from_slice(block.channel(0));
        }
    }
}

/// Crossfades from `old`'s output to `new`'s over one block (a mode change): both chains process
/// `input` with the block's `music` (each at its own music volume); the result goes to `out`.
/// Allocation-free.
pub fn crossfade(
    old: &mut Chain,
    new: &mut Chain,
    input: &Block,
    far_end: &Block,
    music: Option<&Block>,
    scratch: &mut Block,
    out: &mut Block,
) {
    scratch.copy_from(input);
    old.process(scratch, far_end, music);
    out.copy_from(input);
    new.process(out, far_end, music);
    if out.channels() != scratch.channels() {
        out.set_channels(2);
        scratch.set_channels(2);
    }
    for ch in 0..out.channels() {
        let a = scratch.channel(ch);
        let b = out.channel_mut(ch);
        for i in 0..BLOCK_FRAMES {
            let g = (i + 1) as f32 / BLOCK_FRAMES as f32;
            b[i] = a[i] * (1.0 - g) + b[i] * g;
        }
    }
}
