//! Music for hosts: files and URLs decoded off the audio thread, raw PCM pushed by another app,
//! mixed into the publish bus and/or the local output (see `docs/music.md`).
//!
//! Shape:
//! - A [`MusicPlayer`] (caller's thread) owns a decode thread that opens a [`MusicSource`]
//!   (file, HTTP(S) URL or bytes in memory), decodes it (`symphonia`; Ogg Opus through the
//!   `ogg` demuxer and libopus), resamples it to 48 kHz stereo (`rubato`) and writes
//!   [`chunk`]s into an SPSC ring.
//! - Its [`MusicVoice`] goes into the engine ([`crate::engine::Control::AddMusic`]); the DSP
//!   thread's [`MusicBus`] pulls one block per voice, applies pause, per-voice publish/playout
//!   volumes and ducking, and routes it: published and heard, heard only (`loopback`), and
//!   optionally replacing the microphone (`replace`).
//! - A [`PcmInjector`] is a voice fed by pushed interleaved PCM of any rate and channel count
//!   (and by [`socket`] input); an underrun is silence.
//! - Commands ([`MusicCommand`]) go in, events ([`MusicEvent`]) come out; both are serde types.

mod bus;
pub mod capture;
pub mod catalog;
mod chunk;
pub mod cue;
mod decode;
mod http;
mod inject;
pub mod lyrics;
pub mod pads;
mod player;
pub mod playlist;
mod resample;
mod shift;
pub mod socket;

pub use bus::{MAX_VOICES, MusicBus};
pub use decode::{DecodedInfo, Preloaded, decode_to_48k, probe_info};
pub use inject::PcmInjector;
pub use player::{MusicPlayer, MusicVoice, PlayOptions};

use serde::{Deserialize, Serialize};

/// Where music comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum MusicSource {
    /// A local file.
    File(std::path::PathBuf),
    /// An `http://` or `https://` URL, streamed with a read-ahead buffer.
    Url(String),
    /// An encoded file already in memory (a decrypted catalog song; never written to disk).
    #[serde(skip)]
    Memory(std::sync::Arc<[u8]>),
}

/// Why music could not be opened or played.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MusicError {
    /// The file could not be read.
    #[error("cannot open music file {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The URL could not be fetched.
    #[error("cannot fetch {url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The container or codec is not one the engine plays.
    #[error(
        "unsupported music format: {0} (supported: MP3, FLAC, AAC/M4A, Ogg Vorbis, Ogg Opus, WAV)"
    )]
    Unsupported(String),
    /// The data is damaged.
    #[error("the music data is damaged: {0}")]
    Corrupt(String),
    /// The file has no audio track.
    #[error("the file has no audio track")]
    NoAudioTrack,
    /// A setting is out of range.
    #[error("invalid music setting: {0}")]
    Invalid(String),
    /// Resampling to the engine rate could not be set up.
    #[error(transparent)]
    Resample(#[from] crate::resample::ResampleError),
    /// The decode thread could not start.
    #[error("cannot start the decode thread: {0}")]
    Thread(std::io::Error),
    /// The socket input failed.
    #[error("music socket: {0}")]
    Socket(std::io::Error),
}

/// Playback state of a player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayerState {
    /// Opened, waiting for the engine to take its voice.
    Opening,
    /// Playing.
    Playing,
    /// Paused (position kept).
    Paused,
    /// Stopped by the caller.
    Stopped,
    /// Played all its cycles.
    Finished,
    /// Decoding failed mid-stream (an [`MusicEvent::Error`] says why).
    Failed,
}

impl PlayerState {
    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> PlayerState {
        match v {
            0 => PlayerState::Opening,
            1 => PlayerState::Playing,
            2 => PlayerState::Paused,
            3 => PlayerState::Stopped,
            4 => PlayerState::Finished,
            _ => PlayerState::Failed,
        }
    }
}

/// Ducking: the music goes down by `amount_db` while the host speaks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ducking {
    /// On or off.
    pub enabled: bool,
    /// How far the music goes down, dB (0..=60).
    pub amount_db: f32,
    /// Time to reach the full amount once the voice starts, ms.
    pub attack_ms: f32,
    /// Time to come back once the voice stops, ms.
    pub release_ms: f32,
    /// Voice level (RMS of the processed voice) above which the host counts as speaking, dBFS.
    pub threshold_dbfs: f32,
}

impl Default for Ducking {
    fn default() -> Self {
        Ducking {
            enabled: false,
            amount_db: 12.0,
            attack_ms: 50.0,
            release_ms: 400.0,
            threshold_dbfs: -40.0,
        }
    }
}

/// A command for a [`MusicPlayer`] (what the Studio sends; serde, tagged by `cmd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "cmd")]
pub enum MusicCommand {
    /// Pause (lands on the next block).
    Pause,
    /// Resume where it paused.
    Resume,
    /// Stop for good (the voice goes silent; remove it from the engine).
    Stop,
    /// Jump to a position, ms.
    Seek {
        /// Target, ms from the start.
        position_ms: u64,
    },
    /// Volume of the music in the published stream, 0..=1.5.
    SetPublishVolume {
        /// Linear gain.
        volume: f32,
    },
    /// Volume of the music in the host's own output, 0..=1.5.
    SetPlayoutVolume {
        /// Linear gain.
        volume: f32,
    },
    /// `true`: only the host hears it (not published).
    SetLoopback {
        /// On or off.
        loopback: bool,
    },
    /// `true`: while it plays, the music replaces the microphone in the published stream.
    SetReplace {
        /// On or off.
        replace: bool,
    },
    /// Ducking under the host's voice.
    SetDucking {
        /// The settings.
        ducking: Ducking,
    },
    /// Fade out over `ms` (equal-power), then stop: with a new player that fades in over the
    /// same time, a crossfade.
    FadeOut {
        /// Fade length, ms.
        ms: u32,
    },
    /// Key shift in semitones (−12..=12), tempo unchanged; applies to audio decoded from now
    /// on (up to 200 ms already queued plays unshifted).
    SetKeyShift {
        /// Semitones up (positive) or down.
        semitones: i32,
    },
}

/// What a player reports (serde, tagged by `event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum MusicEvent {
    /// The state changed.
    State {
        /// The new state.
        state: PlayerState,
    },
    /// The play position, about every 200 ms while playing.
    Position {
        /// ms from the start of the current cycle.
        position_ms: u64,
        /// Which cycle (0-based).
        cycle: u32,
    },
    /// One pass through the file ended (more follow unless it was the last).
    CycleEnded {
        /// The cycle that ended (0-based).
        cycle: u32,
    },
    /// All cycles played.
    Finished,
    /// Decoding failed mid-stream.
    Error {
        /// Why.
        message: String,
    },
}

/// Frames per second inside the engine.
pub(crate) const RATE: u32 = crate::ENGINE_RATE.0;

pub(crate) fn frames_to_ms(frames: u64) -> u64 {
    frames * 1000 / u64::from(RATE)
}
