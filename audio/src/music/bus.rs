//! The DSP thread's music bus: every voice (players, PCM injection) mixed into a publish block
//! and a local block, with whether any voice replaces the microphone. Allocation-free.

use super::player::MusicVoice;
use crate::block::Block;

/// Most voices at once (decks, pads, PCM injection).
pub const MAX_VOICES: usize = 8;

/// The voices the engine plays.
#[derive(Debug)]
pub struct MusicBus {
    voices: Vec<Option<Box<MusicVoice>>>,
}

/// What the bus produced for one block.
#[derive(Debug, Clone, Copy, Default)]
pub struct BusOutput {
    /// `publish` carries music.
    pub publish: bool,
    /// `local` carries music.
    pub local: bool,
    /// A playing (or paused) voice replaces the microphone.
    pub replace: bool,
}

impl Default for MusicBus {
    fn default() -> Self {
        MusicBus::new()
    }
}

impl MusicBus {
    /// An empty bus with room for [`MAX_VOICES`].
    pub fn new() -> MusicBus {
        MusicBus {
            voices: (0..MAX_VOICES).map(|_| None).collect(),
        }
    }

    /// Adds a voice; hands it back if the bus is full or the id is taken.
    pub fn add(&mut self, v: Box<MusicVoice>) -> Result<(), Box<MusicVoice>> {
        if self.voices.iter().flatten().any(|x| x.id() == v.id()) {
            return Err(v);
        }
        match self.voices.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(v);
                Ok(())
            }
            None => Err(v),
        }
    }

    /// Removes a voice and hands it back (to be dropped off the DSP thread).
    pub fn remove(&mut self, id: u64) -> Option<Box<MusicVoice>> {
        self.voices
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|v| v.id() == id))
            .and_then(Option::take)
    }

    /// Takes out one voice that has ended (finished, stopped or failed), if any.
    pub fn take_done(&mut self) -> Option<Box<MusicVoice>> {
        self.voices
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|v| v.is_done()))
            .and_then(Option::take)
    }

    /// Voices in the bus.
    pub fn len(&self) -> usize {
        self.voices.iter().flatten().count()
    }

    /// No voices.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mixes one block of every voice into `publish` and `local` (cleared first, stereo).
    /// `voice_rms` is the host's processed voice level (for ducking).
    pub fn mix(&mut self, voice_rms: f32, publish: &mut Block, local: &mut Block) -> BusOutput {
        publish.set_channels(2);
        publish.clear();
        local.set_channels(2);
        local.clear();
        let mut out = BusOutput::default();
        for v in self.voices.iter_mut().flatten() {
            let m = v.mix(voice_rms, publish, local);
            out.publish |= m.publish;
            out.local |= m.local;
            out.replace |= m.replace && !m.done;
        }
        out
    }
}
