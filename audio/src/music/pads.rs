//! Sound pads: short clips (applause, laughter, a drum roll …) decoded once to 48 kHz stereo in
//! memory and fired by a command, published and/or heard locally, several at once.
//!
//! The caller's [`PadBank`] loads clips (decoding and resampling on the caller's thread, never
//! the audio thread) and sends fire/stop commands over an SPSC ring; the bank's voice
//! ([`MusicVoice`], added to the engine like any music voice) plays them on the DSP thread,
//! reading the shared clip memory directly. A fire lands on the next block the engine processes
//! (the clip's first sample is the first sample of that block). The DSP side never allocates or
//! frees: a finished play hands its clip reference back to the bank over a return ring.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::chunk::Shared;
use super::player::{DspEvent, MusicVoice, VoiceMix, next_id};
use super::{MusicError, MusicSource, PlayerState, frames_to_ms};
use crate::block::Block;
use crate::units::BLOCK_FRAMES;

/// Most plays sounding at once in one bank; a fire beyond that takes the place of the oldest.
pub const MAX_PAD_PLAYS: usize = 16;
/// Longest clip a pad takes, seconds (a pad is a short sound; a song belongs in a player).
pub const MAX_PAD_SECONDS: u32 = 30;
/// Most clips in one bank.
pub const MAX_PADS: usize = 64;
/// Length of the fade a stop (or a retrigger, or a stolen play) applies, frames (5 ms).
const STOP_FADE_FRAMES: usize = 240;

/// A pad's handle in its bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PadId(pub u16);

/// Where a fired pad goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PadRoute {
    /// Into the published stream (times the bank's publish volume).
    pub publish: bool,
    /// Into the host's own output (times the bank's playout volume; this is also the echo
    /// canceller's reference, like all local music).
    pub local: bool,
}

impl Default for PadRoute {
    fn default() -> Self {
        PadRoute {
            publish: true,
            local: true,
        }
    }
}

/// What firing a pad that is already sounding does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retrigger {
    /// The running play fades out over 5 ms and the clip starts again (the default).
    #[default]
    Restart,
    /// A new play starts beside the running one(s).
    Overlap,
}

/// A loaded clip as the bank describes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PadInfo {
    /// The pad.
    pub id: PadId,
    /// Its name (the file name, or what the caller gave).
    pub name: String,
    /// Length, ms.
    pub duration_ms: u64,
    /// Memory the decoded clip holds, bytes.
    pub bytes: usize,
    /// Gain applied to every play of this pad, linear 0..=2.
    pub gain: f32,
    /// What a fire of this pad does while it sounds.
    pub retrigger: Retrigger,
}

/// What a bank reports (serde, tagged by `event`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum PadEvent {
    /// A fire reached the DSP thread and its first block played.
    Started {
        /// The pad.
        pad: PadId,
        /// The number [`PadBank::fire`] returned.
        fire: u64,
    },
    /// A play ended.
    Ended {
        /// The pad.
        pad: PadId,
        /// The number [`PadBank::fire`] returned.
        fire: u64,
        /// `true`: it was stopped (a stop, a restart, or a newer play took its place);
        /// `false`: the clip played to its end.
        cut: bool,
    },
}

/// A decoded clip: 48 kHz interleaved stereo, shared between the bank and the DSP thread.
#[derive(Debug)]
pub(crate) struct PadClip {
    pcm: Box<[f32]>,
}

impl PadClip {
    fn frames(&self) -> usize {
        self.pcm.len() / 2
    }
}

enum PadCmd {
    Fire {
        clip: Arc<PadClip>,
        pad: PadId,
        fire: u64,
        route: PadRoute,
        gain: f32,
        retrigger: Retrigger,
    },
    Stop(PadId),
    StopAll,
}

/// What the DSP side hands back: events, and the clip references of ended plays (so the last
/// reference is never dropped on the DSP thread).
enum PadBack {
    Started {
        pad: PadId,
        fire: u64,
    },
    Ended {
        pad: PadId,
        fire: u64,
        cut: bool,
        clip: Arc<PadClip>,
    },
}

struct Play {
    clip: Arc<PadClip>,
    pad: PadId,
    fire: u64,
    pos: usize,
    route: PadRoute,
    gain: f32,
    started: bool,
    /// Frames left of a stop fade (`None`: not stopping).
    fading: Option<usize>,
}

/// The DSP thread's side of a bank (inside its [`MusicVoice`]).
pub(crate) struct PadDsp {
    cmds: rtrb::Consumer<PadCmd>,
    back: rtrb::Producer<PadBack>,
    plays: [Option<Play>; MAX_PAD_PLAYS],
    applied_pub: f32,
    applied_play: f32,
}

impl PadDsp {
    fn end(&mut self, i: usize, cut: bool) {
        if let Some(p) = self.plays[i].take() {
            let b = PadBack::Ended {
                pad: p.pad,
                fire: p.fire,
                cut,
                clip: p.clip,
            };
            if let Err(rtrb::PushError::Full(b)) = self.back.push(b) {
                // The bank is not reading its events: keep the clip alive rather than free it here.
                std::mem::forget(b);
            }
        }
    }

    fn take_commands(&mut self) {
        while let Ok(cmd) = self.cmds.pop() {
            match cmd {
                PadCmd::Fire {
                    clip,
                    pad,
                    fire,
                    route,
                    gain,
                    retrigger,
                } => {
                    if retrigger == Retrigger::Restart {
                        for p in self.plays.iter_mut().flatten() {
                            if p.pad == pad && p.fading.is_none() {
                                p.fading = Some(STOP_FADE_FRAMES);
                            }
                        }
                    }
                    let slot = match self.plays.iter().position(Option::is_none) {
                        Some(s) => s,
                        None => {
                            // Full: the oldest play (lowest fire number) gives way.
                            let oldest = (0..MAX_PAD_PLAYS)
                                .min_by_key(|&i| self.plays[i].as_ref().map_or(0, |p| p.fire))
                                .unwrap_or(0);
                            self.end(oldest, true);
                            oldest
                        }
                    };
                    self.plays[slot] = Some(Play {
                        clip,
                        pad,
                        fire,
                        pos: 0,
                        route,
                        gain,
                        started: false,
                        fading: None,
                    });
                }
                PadCmd::Stop(pad) => {
                    for p in self.plays.iter_mut().flatten() {
                        if p.pad == pad && p.fading.is_none() {
                            p.fading = Some(STOP_FADE_FRAMES);
                        }
                    }
                }
                PadCmd::StopAll => {
                    for p in self.plays.iter_mut().flatten() {
                        if p.fading.is_none() {
                            p.fading = Some(STOP_FADE_FRAMES);
                        }
                    }
                }
            }
        }
    }

    /// Plays one block of every sounding pad into `publish` / `local`.
    pub(crate) fn mix(
        &mut self,
        shared: &Shared,
        publish: &mut Block,
        local: &mut Block,
    ) -> VoiceMix {
        self.take_commands();
        let (p0, p1) = (self.applied_pub, shared.publish_volume.get());
        let (l0, l1) = (self.applied_play, shared.playout_volume.get());
        self.applied_pub = p1;
        self.applied_play = l1;
        let pub_on = shared.publish.load(Ordering::Relaxed);
        let loc_on = shared.local.load(Ordering::Relaxed);
        let paused = shared.paused.load(Ordering::Relaxed);
        let mut out = VoiceMix::default();
        if paused {
            return out;
        }
        let step_p = (p1 - p0) / BLOCK_FRAMES as f32;
        let step_l = (l1 - l0) / BLOCK_FRAMES as f32;
        for i in 0..MAX_PAD_PLAYS {
            let Some(p) = self.plays[i].as_mut() else {
                continue;
            };
            if !p.started {
                p.started = true;
                let _ = self.back.push(PadBack::Started {
                    pad: p.pad,
                    fire: p.fire,
                });
            }
            let frames = p.clip.frames();
            let n = (frames - p.pos).min(BLOCK_FRAMES);
            let n = p.fading.map_or(n, |f| n.min(f));
            let to_pub = p.route.publish && pub_on;
            let to_loc = p.route.local && loc_on;
            let pcm = &p.clip.pcm[2 * p.pos..2 * (p.pos + n)];
            for (on, dst, g0, step) in [
                (to_pub, &mut *publish, p0, step_p),
                (to_loc, &mut *local, l0, step_l),
            ] {
                if !on {
                    continue;
                }
                let (l, r) = dst.pair_mut();
                for k in 0..n {
                    let mut g = p.gain * (g0 + step * (k + 1) as f32);
                    if let Some(f) = p.fading {
                        g *= (f - k) as f32 / STOP_FADE_FRAMES as f32;
                    }
                    l[k] += pcm[2 * k] * g;
                    r[k] += pcm[2 * k + 1] * g;
                }
            }
            out.publish |= to_pub;
            out.local |= to_loc;
            p.pos += n;
            let faded = p.fading.map(|f| f - n);
            p.fading = faded;
            if faded == Some(0) {
                self.end(i, true);
            } else if p.pos >= frames {
                self.end(i, false);
            }
        }
        out
    }
}

/// A bank of sound pads: load clips, fire them. Put its voice into the engine with
/// [`crate::engine::Control::AddMusic`] (or into a [`super::cue::CueOutput`] to preview them on
/// a second device); dropping the bank ends the voice.
pub struct PadBank {
    id: u64,
    shared: Arc<Shared>,
    cmds: rtrb::Producer<PadCmd>,
    back: rtrb::Consumer<PadBack>,
    pads: Vec<Option<(PadInfo, Arc<PadClip>)>>,
    next_fire: u64,
    sounding: usize,
}

impl std::fmt::Debug for PadBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PadBank")
            .field("id", &self.id)
            .field("pads", &self.pads.iter().flatten().count())
            .finish_non_exhaustive()
    }
}

/// Why a pad could not be fired.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PadError {
    /// No clip is loaded under that id.
    #[error("no sound pad {0:?} is loaded")]
    NoSuchPad(PadId),
    /// The command ring is full (the engine is not running, or more than 64 commands are
    /// waiting for it).
    #[error("the sound pad queue is full: is the engine running?")]
    Busy,
}

impl PadBank {
    /// An empty bank, published and heard locally at volume 1. Returns the voice for the engine.
    pub fn new() -> (PadBank, Box<MusicVoice>) {
        let shared = Arc::new(Shared::new(true, true, false));
        shared
            .state
            .store(PlayerState::Playing.to_u8(), Ordering::Relaxed);
        let (cp, cc) = rtrb::RingBuffer::<PadCmd>::new(64);
        let (bp, bc) = rtrb::RingBuffer::<PadBack>::new(256);
        let (ep, _ec) = rtrb::RingBuffer::<DspEvent>::new(1);
        let dsp = PadDsp {
            cmds: cc,
            back: bp,
            plays: std::array::from_fn(|_| None),
            applied_pub: 1.0,
            applied_play: 1.0,
        };
        let id = next_id();
        let (_, ring) = rtrb::RingBuffer::new(1);
        let mut voice = MusicVoice::new(id, ring, shared.clone(), ep, true);
        voice.set_pads(Box::new(dsp));
        (
            PadBank {
                id,
                shared,
                cmds: cp,
                back: bc,
                pads: Vec::new(),
                next_fire: 1,
                sounding: 0,
            },
            Box::new(voice),
        )
    }

    /// The id of the bank's voice in the engine.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Decodes `source` (any format a [`super::MusicPlayer`] plays, file, URL or memory) to
    /// 48 kHz stereo on this thread and loads it as a new pad. Clips over
    /// [`MAX_PAD_SECONDS`] and banks of [`MAX_PADS`] are refused (`MusicError::Invalid`).
    pub fn load(&mut self, source: &MusicSource) -> Result<PadId, MusicError> {
        let pre = super::decode::decode_to_48k(source)?;
        let name = match source {
            MusicSource::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            MusicSource::Url(u) => u.rsplit('/').next().unwrap_or(u).to_owned(),
            MusicSource::Memory(_) => "clip".to_owned(),
        };
        self.load_pcm(&name, pre.pcm)
    }

    /// Loads 48 kHz interleaved stereo PCM as a new pad.
    pub fn load_pcm(&mut self, name: &str, pcm: Vec<f32>) -> Result<PadId, MusicError> {
        let frames = pcm.len() / 2;
        if frames == 0 || !pcm.len().is_multiple_of(2) {
            return Err(MusicError::Invalid(
                "a pad clip needs at least one whole stereo frame".into(),
            ));
        }
        if frames > MAX_PAD_SECONDS as usize * super::RATE as usize {
            return Err(MusicError::Invalid(format!(
                "a pad clip is at most {MAX_PAD_SECONDS} s (this one is {:.1} s): play longer \
                 audio with a music player",
                frames as f64 / f64::from(super::RATE)
            )));
        }
        if pcm.iter().any(|s| !s.is_finite()) {
            return Err(MusicError::Invalid(
                "the clip holds non-finite samples".into(),
            ));
        }
        let slot = match self.pads.iter().position(Option::is_none) {
            Some(s) => s,
            None if self.pads.len() < MAX_PADS => {
                self.pads.push(None);
                self.pads.len() - 1
            }
            None => {
                return Err(MusicError::Invalid(format!(
                    "a bank holds at most {MAX_PADS} pads; remove one first"
                )));
            }
        };
        let id = PadId(slot as u16);
        let info = PadInfo {
            id,
            name: name.to_owned(),
            duration_ms: frames_to_ms(frames as u64),
            bytes: pcm.len() * std::mem::size_of::<f32>(),
            gain: 1.0,
            retrigger: Retrigger::Restart,
        };
        let clip = Arc::new(PadClip {
            pcm: pcm.into_boxed_slice(),
        });
        self.pads[slot] = Some((info, clip));
        Ok(id)
    }

    /// Unloads a pad (plays already sounding finish; their memory is freed here once they
    /// end). Returns whether it was loaded.
    pub fn remove(&mut self, pad: PadId) -> bool {
        self.pads
            .get_mut(usize::from(pad.0))
            .and_then(Option::take)
            .is_some()
    }

    /// The loaded pads.
    pub fn pads(&self) -> Vec<PadInfo> {
        self.pads.iter().flatten().map(|(i, _)| i.clone()).collect()
    }

    /// Sets a pad's gain (linear, 0..=2) and retrigger behaviour for the next fires.
    pub fn configure(
        &mut self,
        pad: PadId,
        gain: f32,
        retrigger: Retrigger,
    ) -> Result<(), PadError> {
        let (info, _) = self
            .pads
            .get_mut(usize::from(pad.0))
            .and_then(Option::as_mut)
            .ok_or(PadError::NoSuchPad(pad))?;
        info.gain = if gain.is_finite() {
            gain.clamp(0.0, 2.0)
        } else {
            1.0
        };
        info.retrigger = retrigger;
        Ok(())
    }

    /// Fires a pad: it starts on the next block the engine processes. Returns the fire's
    /// number (in [`PadEvent`]s).
    pub fn fire(&mut self, pad: PadId, route: PadRoute) -> Result<u64, PadError> {
        self.collect();
        let (info, clip) = self
            .pads
            .get(usize::from(pad.0))
            .and_then(Option::as_ref)
            .ok_or(PadError::NoSuchPad(pad))?;
        let fire = self.next_fire;
        self.cmds
            .push(PadCmd::Fire {
                clip: clip.clone(),
                pad,
                fire,
                route,
                gain: info.gain,
                retrigger: info.retrigger,
            })
            .map_err(|_| PadError::Busy)?;
        self.next_fire += 1;
        Ok(fire)
    }

    /// Stops every play of a pad (a 5 ms fade).
    pub fn stop(&mut self, pad: PadId) -> Result<(), PadError> {
        self.cmds
            .push(PadCmd::Stop(pad))
            .map_err(|_| PadError::Busy)
    }

    /// Stops every pad (a 5 ms fade).
    pub fn stop_all(&mut self) -> Result<(), PadError> {
        self.cmds.push(PadCmd::StopAll).map_err(|_| PadError::Busy)
    }

    /// Volume of the pads in the published stream, 0..=1.5.
    pub fn set_publish_volume(&mut self, v: f32) {
        self.shared.publish_volume.set(v.clamp(0.0, 1.5));
    }

    /// Volume of the pads in the host's output, 0..=1.5.
    pub fn set_playout_volume(&mut self, v: f32) {
        self.shared.playout_volume.set(v.clamp(0.0, 1.5));
    }

    /// Mutes (or unmutes) the whole bank on air, whatever each fire's route says.
    pub fn set_publish(&mut self, on: bool) {
        self.shared.publish.store(on, Ordering::Relaxed);
    }

    /// Mutes (or unmutes) the whole bank in the host's output.
    pub fn set_local(&mut self, on: bool) {
        self.shared.local.store(on, Ordering::Relaxed);
    }

    /// Plays started and not yet reported ended (as of the last [`PadBank::events`]).
    pub fn sounding(&self) -> usize {
        self.sounding
    }

    fn collect(&mut self) -> Vec<PadEvent> {
        let mut v = Vec::new();
        while let Ok(b) = self.back.pop() {
            v.push(match b {
                PadBack::Started { pad, fire } => {
                    self.sounding += 1;
                    PadEvent::Started { pad, fire }
                }
                PadBack::Ended {
                    pad,
                    fire,
                    cut,
                    clip,
                } => {
                    drop(clip);
                    self.sounding = self.sounding.saturating_sub(1);
                    PadEvent::Ended { pad, fire, cut }
                }
            });
        }
        v
    }

    /// Events since the last call, oldest first (also frees the memory of ended plays of
    /// removed pads).
    pub fn events(&mut self) -> Vec<PadEvent> {
        self.collect()
    }
}

impl Drop for PadBank {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
    }
}
