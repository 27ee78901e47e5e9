//! What the music panel streams to the UI, and the actions it takes from it.

use serde::{Deserialize, Serialize};
use specta::Type;

/// The deck as the UI shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct DeckView {
    /// What plays: the file's name, or the song's title and artist.
    pub title: String,
    /// `file`, `url` or `song`.
    pub kind: String,
    /// `opening`, `playing`, `paused`, `stopped`, `finished` or `failed`.
    pub state: String,
    /// Position in the current pass, ms.
    pub position_ms: u32,
    /// Length, ms, when known.
    pub duration_ms: Option<u32>,
    /// Which pass (0-based) when it cycles.
    pub cycle: u32,
    /// Peak level per slice of the track (0–1), [`super::WAVEFORM_POINTS`] of them once decoded.
    pub waveform: Vec<f32>,
    /// Whether the track has timed lyrics.
    pub has_lyrics: bool,
    /// The lyrics line at the position (empty text: an instrumental gap).
    pub lyric: Option<String>,
    /// Its index among the lines.
    pub lyric_index: Option<u32>,
    /// The next line.
    pub next_lyric: Option<String>,
    /// The playlist entry it came from.
    pub playlist_index: Option<u32>,
}

/// A catalog download in progress or done.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PreloadView {
    /// The song code.
    pub code: String,
    /// Bytes received.
    pub received: u32,
    /// Bytes in all (0 while unknown).
    pub total: u32,
    /// Decrypted in memory and ready to play.
    pub done: bool,
    /// Why it failed.
    pub error: Option<String>,
}

/// The PCM socket source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PcmView {
    /// Where it listens (`127.0.0.1:PORT`), when it does.
    pub listening: Option<String>,
    /// Connections accepted so far.
    pub connections: u32,
    /// Frames received so far.
    pub frames: u32,
    /// PCM arrived during the last half second.
    pub receiving: bool,
    /// Connections refused for a bad header.
    pub bad_headers: u32,
    /// Why it could not listen.
    pub error: Option<String>,
}

/// One pad.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PadView {
    /// Its label.
    pub name: String,
    /// A clip is assigned and loaded.
    pub loaded: bool,
    /// It is sounding now.
    pub playing: bool,
    /// Published, or only heard by the host.
    pub publish: bool,
}

/// A catalog song.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct SongView {
    /// The song code.
    pub code: String,
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: String,
    /// Length, ms.
    pub duration_ms: u32,
    /// Whether it has lyrics.
    pub has_lyrics: bool,
    /// Already preloaded (decrypted in memory).
    pub preloaded: bool,
}

/// The music panel's live state, streamed ~10 times a second.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct MusicView {
    /// On air (music needs the live engine).
    pub live: bool,
    /// The deck.
    pub deck: Option<DeckView>,
    /// A track is fading out under the deck's (crossfade).
    pub crossfading: bool,
    /// The latest catalog download.
    pub preload: Option<PreloadView>,
    /// The PCM source.
    pub pcm: PcmView,
    /// The capture-device source.
    pub capture: CaptureView,
    /// The cue output.
    pub cue: CueView,
    /// The pads.
    pub pads: Vec<PadView>,
    /// Voices playing in the engine (of [`onmic_audio::music::MAX_VOICES`]; the pads are one).
    pub voices: u32,
    /// The last problem (a file that would not open, a refused licence, …).
    pub error: Option<String>,
}

/// Deck transport.
#[derive(Clone, Debug, Deserialize, Type)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum DeckAction {
    /// Play (resume when paused; start again when stopped or finished).
    Play,
    /// Pause.
    Pause,
    /// Stop (fades out over 40 ms).
    Stop,
    /// Jump to `positionMs`.
    Seek {
        /// Target, ms.
        #[serde(rename = "positionMs")]
        position_ms: u32,
    },
}

/// The cue output and the track on it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct CueView {
    /// The device the cue plays on, once opened.
    pub device: Option<String>,
    /// The cued track's title.
    pub title: Option<String>,
    /// Its state (`opening`, `playing`, `paused`, `stopped`, `finished`, `failed`).
    pub state: Option<String>,
    /// Its position, ms.
    pub position_ms: u32,
    /// Its length, ms, when known.
    pub duration_ms: Option<u32>,
    /// The playlist entry it came from.
    pub playlist_index: Option<u32>,
    /// Why the cue could not open or play.
    pub error: Option<String>,
}

/// The capture-device source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct CaptureView {
    /// The device it plays from, when it runs.
    pub device: Option<String>,
    /// Seconds of audio taken from it.
    pub seconds: f32,
    /// Audio arrived during the last half second.
    pub receiving: bool,
    /// 10 ms blocks the engine found nothing in (the device was late).
    pub underruns: u32,
    /// Why it could not start.
    pub error: Option<String>,
}

/// What to pre-listen on the cue.
#[derive(Clone, Debug, Deserialize, Type)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CueTarget {
    /// Playlist entry `index`.
    Entry {
        /// The entry.
        index: u32,
    },
    /// A file path or http(s) URL.
    Location {
        /// The path or URL.
        location: String,
    },
    /// A preloaded catalog song.
    Song {
        /// Its code.
        code: String,
    },
}

/// Cue transport.
#[derive(Clone, Debug, Deserialize, Type)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum CueAction {
    /// Pause the cued track.
    Pause,
    /// Resume it.
    Resume,
    /// Stop it (the cue goes quiet).
    Stop,
    /// Jump to `positionMs`.
    Seek {
        /// Target, ms.
        #[serde(rename = "positionMs")]
        position_ms: u32,
    },
    /// Take it to air where it is: it becomes the deck's track (the deck's track fades out over
    /// the crossfade).
    Take,
}
