//! The Studio's music panel: a deck (file, URL or catalog song) with position, seek and a
//! waveform strip; a playlist with auto-advance and crossfade; the publish and playout volumes,
//! loopback / replace / cycle, key shift and ducking; the PCM socket source with its
//! local-playback switch; the DRM song catalog (search, preload with progress, lyrics in sync
//! with the position); sound pads.
//!
//! Music plays through the live session's engine: each source is an
//! [`onmic_audio::music::MusicPlayer`] whose voice goes to the engine as
//! [`Control::AddMusic`] (at most [`onmic_audio::music::MAX_VOICES`] at once: the deck, a
//! track fading out, the PCM source and up to [`MAX_PAD_VOICES`] pads). A ticker thread polls the
//! players every [`TICK`], runs the playlist (auto-advance, crossfade), retires finished voices
//! and streams a [`MusicView`] to the UI.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use onmic_audio::engine::Control;
use onmic_audio::music::catalog::{CatalogClient, SongInfo};
use onmic_audio::music::lyrics::{Lyrics, MAX_LRC_BYTES};
use onmic_audio::music::socket::SocketInput;
use onmic_audio::music::{
    Ducking, MusicCommand, MusicEvent, MusicPlayer, MusicSource, PcmInjector, PlayOptions,
    PlayerState,
};
use serde::{Deserialize, Serialize};
use specta::Type;
use tauri::ipc::Channel;

use crate::error::{AppError, AppErrorKind};
use crate::room_session::ControlSender;

/// How often the players are polled and the view is sent.
pub const TICK: Duration = Duration::from_millis(100);
/// Number of pads.
pub const PADS: usize = 8;
/// Pads playing at once (a ninth fire stops the oldest).
pub const MAX_PAD_VOICES: usize = 4;
/// Largest pad clip, bytes (clips are kept in memory).
pub const MAX_PAD_BYTES: u64 = 16 << 20;
/// Points in the deck's waveform strip.
pub const WAVEFORM_POINTS: usize = 240;
/// Fade used by Stop and by replacing the deck's track by hand, ms (no click).
const STOP_FADE_MS: u32 = 40;

/// Ducking under the host's voice.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct DuckingPanel {
    /// On or off.
    pub enabled: bool,
    /// How far the music goes down, dB (0–60).
    pub amount_db: f32,
    /// Time to duck once the voice starts, ms (1–2000).
    pub attack_ms: f32,
    /// Time to come back once the voice stops, ms (1–5000).
    pub release_ms: f32,
    /// Voice level above which the host counts as speaking, dBFS (−80–0).
    pub threshold_dbfs: f32,
}

impl Default for DuckingPanel {
    fn default() -> Self {
        let d = Ducking::default();
        Self {
            enabled: d.enabled,
            amount_db: d.amount_db,
            attack_ms: d.attack_ms,
            release_ms: d.release_ms,
            threshold_dbfs: d.threshold_dbfs,
        }
    }
}

/// One sound pad.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct PadSlot {
    /// Label shown on the pad (the file's name unless the host renames it).
    pub name: String,
    /// The clip's file.
    pub path: Option<String>,
    /// Published (heard by the room) or only in the host's output.
    pub publish: bool,
}

/// The PCM socket source.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct PcmSettings {
    /// Listen for PCM while live.
    pub enabled: bool,
    /// TCP port on 127.0.0.1 (1024–65535).
    pub port: u16,
    /// The host hears the injected PCM too.
    pub local_playback: bool,
}

impl Default for PcmSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            port: 7611,
            local_playback: true,
        }
    }
}

/// Everything the music panel remembers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct MusicSettings {
    /// Music volume in the published stream, percent (0–150).
    pub publish_volume: f32,
    /// Music volume in the host's output, percent (0–150).
    pub playout_volume: f32,
    /// Only the host hears the music (not published).
    pub loopback: bool,
    /// While music plays, it replaces the microphone in the published stream.
    pub replace: bool,
    /// Times each track plays: 1, 2, …; −1 = forever (applies to the next track opened).
    pub cycle: i32,
    /// Key shift, semitones (−12…+12), tempo kept.
    pub key_shift: i32,
    /// Ducking under the host's voice.
    pub ducking: DuckingPanel,
    /// Go on to the next playlist entry when a track ends.
    pub auto_advance: bool,
    /// Crossfade between playlist entries, seconds (0 = none, up to 12).
    pub crossfade_s: f32,
    /// The playlist: file paths or http(s) URLs.
    pub playlist: Vec<String>,
    /// The pads (always [`PADS`]).
    pub pads: Vec<PadSlot>,
    /// The PCM socket source.
    pub pcm: PcmSettings,
}

impl Default for MusicSettings {
    fn default() -> Self {
        Self {
            publish_volume: 100.0,
            playout_volume: 100.0,
            loopback: false,
            replace: false,
            cycle: 1,
            key_shift: 0,
            ducking: DuckingPanel::default(),
            auto_advance: true,
            crossfade_s: 3.0,
            playlist: Vec::new(),
            pads: vec![PadSlot::default(); PADS],
            pcm: PcmSettings::default(),
        }
    }
}

fn clampf(v: f32, lo: f32, hi: f32, default: f32) -> f32 {
    if v.is_finite() {
        v.clamp(lo, hi)
    } else {
        default
    }
}

impl MusicSettings {
    /// Numbers within their ranges, [`PADS`] pads, a playlist of at most 500 entries.
    pub fn clamped(mut self) -> Self {
        let d = MusicSettings::default();
        self.publish_volume = clampf(self.publish_volume, 0.0, 150.0, d.publish_volume);
        self.playout_volume = clampf(self.playout_volume, 0.0, 150.0, d.playout_volume);
        if self.cycle == 0 || self.cycle < -1 {
            self.cycle = 1;
        }
        self.cycle = self.cycle.min(999);
        self.key_shift = self.key_shift.clamp(-12, 12);
        let k = &mut self.ducking;
        k.amount_db = clampf(k.amount_db, 0.0, 60.0, d.ducking.amount_db);
        k.attack_ms = clampf(k.attack_ms, 1.0, 2000.0, d.ducking.attack_ms);
        k.release_ms = clampf(k.release_ms, 1.0, 5000.0, d.ducking.release_ms);
        k.threshold_dbfs = clampf(k.threshold_dbfs, -80.0, 0.0, d.ducking.threshold_dbfs);
        self.crossfade_s = clampf(self.crossfade_s, 0.0, 12.0, d.crossfade_s);
        self.playlist.retain(|p| !p.trim().is_empty());
        self.playlist.truncate(500);
        self.pads.resize(PADS, PadSlot::default());
        if self.pcm.port < 1024 {
            self.pcm.port = d.pcm.port;
        }
        self
    }

    fn ducking(&self) -> Ducking {
        Ducking {
            enabled: self.ducking.enabled,
            amount_db: self.ducking.amount_db,
            attack_ms: self.ducking.attack_ms,
            release_ms: self.ducking.release_ms,
            threshold_dbfs: self.ducking.threshold_dbfs,
        }
    }

    fn play_options(&self, fade_in_ms: u32) -> PlayOptions {
        PlayOptions {
            loopback: self.loopback,
            replace: self.replace,
            cycle: self.cycle,
            publish_volume: self.publish_volume / 100.0,
            playout_volume: self.playout_volume / 100.0,
            start_ms: 0,
            ducking: self.ducking(),
            key_shift: self.key_shift,
            fade_in_ms,
        }
    }

    /// The commands that bring a playing track from `old` to these settings.
    fn commands_since(&self, old: &MusicSettings) -> Vec<MusicCommand> {
        let mut c = Vec::new();
        if self.publish_volume != old.publish_volume {
            c.push(MusicCommand::SetPublishVolume {
                volume: self.publish_volume / 100.0,
            });
        }
        if self.playout_volume != old.playout_volume {
            c.push(MusicCommand::SetPlayoutVolume {
                volume: self.playout_volume / 100.0,
            });
        }
        if self.loopback != old.loopback {
            c.push(MusicCommand::SetLoopback {
                loopback: self.loopback,
            });
        }
        if self.replace != old.replace {
            c.push(MusicCommand::SetReplace {
                replace: self.replace,
            });
        }
        if self.ducking != old.ducking {
            c.push(MusicCommand::SetDucking {
                ducking: self.ducking(),
            });
        }
        if self.key_shift != old.key_shift {
            c.push(MusicCommand::SetKeyShift {
                semitones: self.key_shift,
            });
        }
        c
    }
}

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
    /// Peak level per slice of the track (0–1), [`WAVEFORM_POINTS`] of them once decoded.
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
    /// The pads.
    pub pads: Vec<PadView>,
    /// Voices playing in the engine (of [`onmic_audio::music::MAX_VOICES`]).
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

struct Deck {
    player: MusicPlayer,
    source: MusicSource,
    title: String,
    kind: &'static str,
    state: PlayerState,
    position_ms: u64,
    cycle: u32,
    duration_ms: Option<u64>,
    waveform: Arc<Mutex<Vec<f32>>>,
    lyrics: Option<Lyrics>,
    playlist_index: Option<usize>,
    /// Its voice was taken out of the engine.
    removed: bool,
    /// The playlist moved on from it (or tried to).
    advanced: bool,
}

struct Preloaded {
    info: SongInfo,
    source: MusicSource,
    lyrics: Option<Lyrics>,
}

struct Pcm {
    input: SocketInput,
    last_frames: u64,
    receiving_until: std::time::Instant,
}

#[derive(Default)]
struct Inner {
    engine: Option<ControlSender>,
    catalog: Option<CatalogClient>,
    settings: MusicSettings,
    deck: Option<Deck>,
    fading: Vec<MusicPlayer>,
    pads: Vec<Option<Arc<[u8]>>>,
    pad_players: Vec<(usize, MusicPlayer)>,
    pcm: Option<Pcm>,
    pcm_error: Option<String>,
    pcm_voice: Option<u64>,
    preload: Option<PreloadView>,
    songs: HashMap<String, Preloaded>,
    error: Option<String>,
    watcher: Option<Channel<MusicView>>,
}

/// The music panel's engine side (see the module doc).
pub struct MusicService {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for MusicService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MusicService").finish_non_exhaustive()
    }
}

impl Default for MusicService {
    fn default() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let weak = Arc::downgrade(&inner);
        let _ = std::thread::Builder::new()
            .name("onmic-music-panel".into())
            .spawn(move || ticker(weak));
        Self { inner }
    }
}

fn err(kind: AppErrorKind, message: impl Into<String>) -> AppError {
    AppError::new(kind, message)
}

fn not_live() -> AppError {
    err(
        AppErrorKind::InvalidInput,
        "Go live first: music plays through the room's audio engine.",
    )
}

fn ms32(ms: u64) -> u32 {
    u32::try_from(ms).unwrap_or(u32::MAX)
}

fn state_name(s: PlayerState) -> &'static str {
    match s {
        PlayerState::Opening => "opening",
        PlayerState::Playing => "playing",
        PlayerState::Paused => "paused",
        PlayerState::Stopped => "stopped",
        PlayerState::Finished => "finished",
        PlayerState::Failed => "failed",
    }
}

/// The source a playlist entry or typed location names.
pub fn source_of(location: &str) -> Result<(MusicSource, &'static str, String), AppError> {
    let location = location.trim();
    if location.is_empty() {
        return Err(err(
            AppErrorKind::InvalidInput,
            "Give a music file's path or an http(s) URL.",
        ));
    }
    if location.starts_with("http://") || location.starts_with("https://") {
        let name = location
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or(location)
            .to_owned();
        return Ok((MusicSource::Url(location.to_owned()), "url", name));
    }
    let path = PathBuf::from(location);
    if !path.is_file() {
        return Err(err(
            AppErrorKind::InvalidInput,
            format!("{location} is not a file. Check the path (or give an http(s) URL)."),
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| location.to_owned());
    Ok((MusicSource::File(path), "file", name))
}

/// Lyrics next to a music file (`song.mp3` → `song.lrc`), if there are readable ones.
fn sibling_lyrics(path: &Path) -> Option<Lyrics> {
    let lrc = path.with_extension("lrc");
    let meta = std::fs::metadata(&lrc).ok()?;
    if meta.len() > MAX_LRC_BYTES as u64 {
        return None;
    }
    Lyrics::parse(&std::fs::read_to_string(lrc).ok()?).ok()
}

/// Peaks of a decoded track, `points` slices.
fn waveform_of(source: &MusicSource, points: usize) -> Option<Vec<f32>> {
    let pre = onmic_audio::music::decode_to_48k(source).ok()?;
    let frames = pre.pcm.len() / 2;
    if frames == 0 {
        return None;
    }
    let per = frames.div_ceil(points).max(1);
    Some(
        pre.pcm
            .chunks(per * 2)
            .map(|c| c.iter().fold(0.0f32, |m, s| m.max(s.abs())).min(1.0))
            .collect(),
    )
}

impl Inner {
    fn engine(&self) -> Result<&ControlSender, AppError> {
        self.engine.as_ref().ok_or_else(not_live)
    }

    fn voices(&self) -> usize {
        usize::from(self.deck.as_ref().is_some_and(|d| !d.removed))
            + self.fading.len()
            + self.pad_players.len()
            + usize::from(self.pcm_voice.is_some())
    }

    /// Starts `source` on the deck; the track playing now fades out over `fade_ms` (a
    /// crossfade when the new one fades in as long).
    fn play_on_deck(
        &mut self,
        source: MusicSource,
        kind: &'static str,
        title: String,
        lyrics: Option<Lyrics>,
        playlist_index: Option<usize>,
        fade_ms: u32,
    ) -> Result<(), AppError> {
        let engine = self.engine()?.clone();
        let fade_in = if self
            .deck
            .as_ref()
            .is_some_and(|d| d.state == PlayerState::Playing)
        {
            fade_ms
        } else {
            0
        };
        let (player, voice) = MusicPlayer::open(&source, self.settings.play_options(fade_in))
            .map_err(|e| err(AppErrorKind::InvalidInput, format!("{title}: {e}")))?;
        self.retire_deck(fade_ms.max(STOP_FADE_MS));
        if self.voices() >= onmic_audio::music::MAX_VOICES {
            self.stop_oldest_pad(&engine);
        }
        engine.send(vec![Control::AddMusic(voice)]);
        let duration_ms = player.duration_ms();
        let waveform = Arc::new(Mutex::new(Vec::new()));
        if duration_ms.is_some_and(|d| d <= 20 * 60 * 1000) && kind != "url" {
            let (w, s) = (Arc::clone(&waveform), source.clone());
            let _ = std::thread::Builder::new()
                .name("onmic-waveform".into())
                .spawn(move || {
                    if let Some(points) = waveform_of(&s, WAVEFORM_POINTS) {
                        *w.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = points;
                    }
                });
        }
        self.deck = Some(Deck {
            player,
            source,
            title,
            kind,
            state: PlayerState::Opening,
            position_ms: 0,
            cycle: 0,
            duration_ms,
            waveform,
            lyrics,
            playlist_index,
            removed: false,
            advanced: false,
        });
        self.error = None;
        Ok(())
    }

    /// The deck's track fades out over `fade_ms` and is retired when silent.
    fn retire_deck(&mut self, fade_ms: u32) {
        if let Some(mut old) = self.deck.take() {
            if old.removed {
                return;
            }
            if matches!(old.state, PlayerState::Playing | PlayerState::Opening) {
                old.player.command(MusicCommand::FadeOut { ms: fade_ms });
                self.fading.push(old.player);
            } else if let Some(engine) = &self.engine {
                old.player.stop();
                engine.send(vec![Control::RemoveMusic(old.player.id())]);
            }
        }
    }

    fn stop_oldest_pad(&mut self, engine: &ControlSender) {
        if !self.pad_players.is_empty() {
            let (_, mut p) = self.pad_players.remove(0);
            p.stop();
            engine.send(vec![Control::RemoveMusic(p.id())]);
        }
    }

    fn play_entry(&mut self, index: usize, fade_ms: u32) -> Result<(), AppError> {
        let location = self.settings.playlist.get(index).cloned().ok_or_else(|| {
            err(
                AppErrorKind::InvalidInput,
                "That playlist entry is gone; pick another.",
            )
        })?;
        let (source, kind, title) = source_of(&location)?;
        let lyrics = match &source {
            MusicSource::File(p) => sibling_lyrics(p),
            _ => None,
        };
        self.play_on_deck(source, kind, title, lyrics, Some(index), fade_ms)
    }

    fn start_pcm(&mut self) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let pcm = self.settings.pcm;
        let (mut injector, voice) = PcmInjector::new(pcm.local_playback);
        injector.set_publish_volume(self.settings.publish_volume / 100.0);
        injector.set_playout_volume(self.settings.playout_volume / 100.0);
        injector.set_publish(!self.settings.loopback);
        let id = injector.id();
        match SocketInput::bind_tcp(([127, 0, 0, 1], pcm.port).into(), injector) {
            Ok(input) => {
                engine.send(vec![Control::AddMusic(voice)]);
                self.pcm_voice = Some(id);
                self.pcm_error = None;
                self.pcm = Some(Pcm {
                    input,
                    last_frames: 0,
                    receiving_until: std::time::Instant::now(),
                });
            }
            Err(e) => {
                self.pcm_error = Some(format!(
                    "Cannot listen on 127.0.0.1:{}: {e}. Pick another port.",
                    pcm.port
                ));
            }
        }
    }

    fn stop_pcm(&mut self) {
        if let Some(pcm) = self.pcm.take() {
            drop(pcm.input.stop());
        }
        if let (Some(id), Some(engine)) = (self.pcm_voice.take(), &self.engine) {
            engine.send(vec![Control::RemoveMusic(id)]);
        }
    }

    fn pad_clip(&mut self, index: usize) -> Result<Arc<[u8]>, AppError> {
        if let Some(Some(clip)) = self.pads.get(index) {
            return Ok(Arc::clone(clip));
        }
        let slot = self.settings.pads.get(index).cloned().unwrap_or_default();
        let path = slot.path.ok_or_else(|| {
            err(
                AppErrorKind::InvalidInput,
                format!("Pad {} has no clip; assign one first.", index + 1),
            )
        })?;
        let clip = load_clip(Path::new(&path))?;
        self.pads.resize(PADS, None);
        self.pads[index] = Some(Arc::clone(&clip));
        Ok(clip)
    }

    fn view(&mut self) -> MusicView {
        let deck = self.deck.as_ref().map(|d| {
            let pos = d.position_ms;
            let idx = d.lyrics.as_ref().and_then(|l| l.index_at(pos));
            let line = |i: usize| d.lyrics.as_ref()?.lines.get(i).map(|l| l.text.clone());
            DeckView {
                title: d.title.clone(),
                kind: d.kind.into(),
                state: state_name(d.state).into(),
                position_ms: ms32(pos),
                duration_ms: d.duration_ms.map(ms32),
                cycle: d.cycle,
                waveform: d
                    .waveform
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone(),
                has_lyrics: d.lyrics.as_ref().is_some_and(|l| !l.lines.is_empty()),
                lyric: idx.and_then(line),
                lyric_index: idx.map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
                next_lyric: match idx {
                    Some(i) => line(i + 1),
                    None => line(0),
                },
                playlist_index: d
                    .playlist_index
                    .map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
            }
        });
        let pcm = match &self.pcm {
            Some(p) => PcmView {
                listening: p.input.local_addr.map(|a| a.to_string()),
                connections: count(&p.input.stats.connections),
                frames: count(&p.input.stats.frames),
                receiving: std::time::Instant::now() < p.receiving_until,
                bad_headers: count(&p.input.stats.bad_headers),
                error: None,
            },
            None => PcmView {
                error: self.pcm_error.clone(),
                ..PcmView::default()
            },
        };
        let pads = self
            .settings
            .pads
            .iter()
            .enumerate()
            .map(|(i, s)| PadView {
                name: s.name.clone(),
                loaded: s.path.is_some(),
                playing: self.pad_players.iter().any(|(p, _)| *p == i),
                publish: s.publish,
            })
            .collect();
        MusicView {
            live: self.engine.is_some(),
            deck,
            crossfading: !self.fading.is_empty(),
            preload: self.preload.clone(),
            pcm,
            pads,
            voices: u32::try_from(self.voices()).unwrap_or(u32::MAX),
            error: self.error.clone(),
        }
    }

    /// One tick: player events, the playlist, retiring silent voices.
    fn tick(&mut self) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let mut finished = false;
        if let Some(d) = &mut self.deck {
            for e in d.player.events() {
                match e {
                    MusicEvent::Finished => finished = true,
                    MusicEvent::Error { message } => {
                        self.error = Some(format!("{}: {message}", d.title));
                    }
                    MusicEvent::Position { cycle, .. } => d.cycle = cycle,
                    _ => {}
                }
            }
            d.state = d.player.state();
            d.position_ms = d.player.position_ms();
            if matches!(
                d.state,
                PlayerState::Stopped | PlayerState::Finished | PlayerState::Failed
            ) && !d.removed
            {
                d.removed = true;
                engine.send(vec![Control::RemoveMusic(d.player.id())]);
            }
        }
        // The playlist: crossfade into the next entry before the end, or advance at the end.
        let s = &self.settings;
        if s.auto_advance
            && !s.playlist.is_empty()
            && let Some(d) = &self.deck
            && let Some(i) = d.playlist_index
        {
            let fade_ms = (s.crossfade_s * 1000.0) as u64;
            let last_cycle = s.cycle > 0 && d.cycle + 1 >= s.cycle as u32;
            let near_end = d.state == PlayerState::Playing
                && fade_ms > 0
                && last_cycle
                && d.duration_ms.is_some_and(|len| {
                    len > 2 * fade_ms && d.position_ms + fade_ms >= len && d.position_ms > 0
                });
            if (near_end || finished) && !d.advanced {
                // The playlist stops after its last entry.
                let fade = if near_end { fade_ms as u32 } else { 0 };
                if i + 1 < s.playlist.len()
                    && let Err(e) = self.play_entry(i + 1, fade)
                {
                    self.error = Some(e.message);
                }
                if let Some(d) = &mut self.deck
                    && d.playlist_index == Some(i)
                {
                    d.advanced = true;
                }
            }
        }
        self.fading.retain_mut(|p| {
            let _ = p.events();
            let done = matches!(
                p.state(),
                PlayerState::Stopped | PlayerState::Finished | PlayerState::Failed
            );
            if done {
                engine.send(vec![Control::RemoveMusic(p.id())]);
            }
            !done
        });
        self.pad_players.retain_mut(|(_, p)| {
            let _ = p.events();
            let done = matches!(
                p.state(),
                PlayerState::Stopped | PlayerState::Finished | PlayerState::Failed
            );
            if done {
                engine.send(vec![Control::RemoveMusic(p.id())]);
            }
            !done
        });
        if let Some(p) = &mut self.pcm {
            let frames = p
                .input
                .stats
                .frames
                .load(std::sync::atomic::Ordering::Relaxed);
            if frames != p.last_frames {
                p.last_frames = frames;
                p.receiving_until = std::time::Instant::now() + Duration::from_millis(500);
            }
        }
    }
}

fn count(n: &std::sync::atomic::AtomicU64) -> u32 {
    u32::try_from(n.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(u32::MAX)
}

/// Reads a pad clip into memory, checking that it decodes.
fn load_clip(path: &Path) -> Result<Arc<[u8]>, AppError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        err(
            AppErrorKind::InvalidInput,
            format!("Cannot read {}: {e}.", path.display()),
        )
    })?;
    if meta.len() > MAX_PAD_BYTES {
        return Err(err(
            AppErrorKind::InvalidInput,
            format!(
                "{} is {} MB; a pad clip may be at most {} MB (pads are short clips).",
                path.display(),
                meta.len() >> 20,
                MAX_PAD_BYTES >> 20
            ),
        ));
    }
    let bytes: Arc<[u8]> = std::fs::read(path)
        .map_err(|e| {
            err(
                AppErrorKind::InvalidInput,
                format!("Cannot read {}: {e}.", path.display()),
            )
        })?
        .into();
    onmic_audio::music::probe_info(&MusicSource::Memory(Arc::clone(&bytes))).map_err(|e| {
        err(
            AppErrorKind::InvalidInput,
            format!("{}: {e}", path.display()),
        )
    })?;
    Ok(bytes)
}

fn ticker(inner: Weak<Mutex<Inner>>) {
    loop {
        std::thread::sleep(TICK);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut g = inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.tick();
        if g.watcher.is_some() {
            let view = g.view();
            if let Some(w) = &g.watcher
                && w.send(view).is_err()
            {
                g.watcher = None;
            }
        }
    }
}

impl MusicService {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The session went live: music can play; the catalog answers with the member's token;
    /// the PCM source listens if it is on.
    pub fn on_join(
        &self,
        engine: ControlSender,
        server_url: String,
        token: String,
        settings: &MusicSettings,
    ) {
        let mut g = self.lock();
        g.engine = Some(engine);
        g.catalog = Some(CatalogClient::new(&server_url, &token));
        g.settings = settings.clone();
        if settings.pcm.enabled {
            g.start_pcm();
        }
    }

    /// The session ended: every player and the PCM source stop (their voices went with the
    /// engine); preloaded songs are forgotten (their licence was for that room).
    pub fn on_leave(&self) {
        let mut g = self.lock();
        g.stop_pcm();
        g.engine = None;
        g.catalog = None;
        g.deck = None;
        g.fading.clear();
        g.pad_players.clear();
        g.songs.clear();
        g.preload = None;
    }

    /// The current view.
    pub fn view(&self) -> MusicView {
        self.lock().view()
    }

    /// New settings from the panel: applied to what plays.
    pub fn apply(&self, settings: &MusicSettings) {
        let mut g = self.lock();
        let commands = settings.commands_since(&g.settings);
        let pcm_changed = settings.pcm != g.settings.pcm;
        let changed: Vec<usize> = (0..PADS)
            .filter(|i| {
                settings.pads.get(*i).map(|p| &p.path) != g.settings.pads.get(*i).map(|p| &p.path)
            })
            .collect();
        for i in changed {
            if let Some(p) = g.pads.get_mut(i) {
                *p = None;
            }
        }
        g.settings = settings.clone();
        if let Some(d) = &mut g.deck {
            for c in &commands {
                d.player.command(c.clone());
            }
        }
        for p in &mut g.fading {
            for c in &commands {
                p.command(c.clone());
            }
        }
        if pcm_changed && g.engine.is_some() {
            g.stop_pcm();
            if settings.pcm.enabled {
                g.start_pcm();
            }
        }
    }
}

/// Streams the music panel's state to `on_music` ~10 times a second (replacing an earlier
/// watcher) and returns it now.
#[tauri::command]
#[specta::specta]
pub fn music_watch(
    studio: tauri::State<'_, crate::Studio>,
    on_music: Channel<MusicView>,
) -> MusicView {
    let mut g = studio.music.lock();
    g.watcher = Some(on_music);
    g.view()
}

/// Changes the music settings (volumes, routing, ducking, key shift, playlist, pads, PCM
/// source): saved, and applied to what plays now.
#[tauri::command]
#[specta::specta]
pub fn set_music(
    studio: tauri::State<'_, crate::Studio>,
    music: MusicSettings,
) -> Result<crate::settings::Settings, AppError> {
    let settings = studio.settings.update(|s| s.music = music.clamped())?;
    studio.music.apply(&settings.music);
    Ok(settings)
}

/// Opens a file path or http(s) URL on the deck and plays it (the track playing now fades out).
#[tauri::command]
#[specta::specta]
pub async fn music_open(
    studio: tauri::State<'_, crate::Studio>,
    location: String,
) -> Result<MusicView, AppError> {
    let inner = Arc::clone(&studio.music.inner);
    // Opening probes the file (or connects to the URL): off the async runtime.
    tauri::async_runtime::spawn_blocking(move || {
        let (source, kind, title) = source_of(&location)?;
        let lyrics = match &source {
            MusicSource::File(p) => sibling_lyrics(p),
            _ => None,
        };
        let mut g = inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.play_on_deck(source, kind, title, lyrics, None, STOP_FADE_MS)?;
        Ok(g.view())
    })
    .await
    .map_err(|e| err(AppErrorKind::Internal, e.to_string()))?
}

/// Deck transport: play, pause, stop, seek.
#[tauri::command]
#[specta::specta]
pub fn music_deck(
    studio: tauri::State<'_, crate::Studio>,
    action: DeckAction,
) -> Result<MusicView, AppError> {
    let mut g = studio.music.lock();
    g.engine()?;
    let Some(d) = g.deck.as_mut() else {
        return Err(err(
            AppErrorKind::InvalidInput,
            "Nothing on the deck: open a file, a playlist entry or a song first.",
        ));
    };
    match action {
        DeckAction::Play => match d.state {
            PlayerState::Paused => d.player.resume(),
            PlayerState::Playing | PlayerState::Opening => {}
            _ => {
                let (source, kind, title, lyrics, index) = (
                    d.source.clone(),
                    d.kind,
                    d.title.clone(),
                    d.lyrics.clone(),
                    d.playlist_index,
                );
                g.play_on_deck(source, kind, title, lyrics, index, 0)?;
            }
        },
        DeckAction::Pause => d.player.pause(),
        DeckAction::Stop => {
            if matches!(d.state, PlayerState::Playing | PlayerState::Opening) {
                d.player.command(MusicCommand::FadeOut { ms: STOP_FADE_MS });
            } else {
                d.player.stop();
            }
            d.position_ms = 0;
        }
        DeckAction::Seek { position_ms } => {
            let to = u64::from(position_ms).min(d.duration_ms.unwrap_or(u64::MAX));
            d.player.seek(to);
            d.position_ms = to;
        }
    }
    Ok(g.view())
}

/// Plays playlist entry `index` on the deck (the track playing now crossfades out).
#[tauri::command]
#[specta::specta]
pub async fn playlist_play(
    studio: tauri::State<'_, crate::Studio>,
    index: u32,
) -> Result<MusicView, AppError> {
    let inner = Arc::clone(&studio.music.inner);
    tauri::async_runtime::spawn_blocking(move || {
        let mut g = inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fade = (g.settings.crossfade_s * 1000.0) as u32;
        g.play_entry(index as usize, fade)?;
        Ok(g.view())
    })
    .await
    .map_err(|e| err(AppErrorKind::Internal, e.to_string()))?
}

fn catalog_of(inner: &Mutex<Inner>) -> Result<CatalogClient, AppError> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .catalog
        .clone()
        .ok_or_else(|| {
            err(
                AppErrorKind::InvalidInput,
                "Go live first: the song catalog answers members of a room.",
            )
        })
}

/// Searches the room server's song catalog (title, artist or code; empty lists all).
#[tauri::command]
#[specta::specta]
pub async fn song_search(
    studio: tauri::State<'_, crate::Studio>,
    query: String,
) -> Result<Vec<SongView>, AppError> {
    let inner = Arc::clone(&studio.music.inner);
    let client = catalog_of(&inner)?;
    let songs = tauri::async_runtime::spawn_blocking(move || client.search(query.trim()))
        .await
        .map_err(|e| err(AppErrorKind::Internal, e.to_string()))?
        .map_err(|e| err(AppErrorKind::Room, e.to_string()))?;
    let g = inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(songs
        .into_iter()
        .take(200)
        .map(|s| SongView {
            preloaded: g.songs.contains_key(&s.code),
            code: s.code,
            title: s.title,
            artist: s.artist,
            duration_ms: ms32(s.duration_ms),
            has_lyrics: s.has_lyrics,
        })
        .collect())
}

/// Gets a licence for `code` and downloads and decrypts the song in memory; progress shows in
/// [`MusicView::preload`]. Returns at once.
#[tauri::command]
#[specta::specta]
pub async fn song_preload(
    studio: tauri::State<'_, crate::Studio>,
    code: String,
) -> Result<(), AppError> {
    let inner = Arc::clone(&studio.music.inner);
    let client = catalog_of(&inner)?;
    let info = {
        let c = client.clone();
        let q = code.clone();
        tauri::async_runtime::spawn_blocking(move || c.search(&q))
            .await
            .map_err(|e| err(AppErrorKind::Internal, e.to_string()))?
            .map_err(|e| err(AppErrorKind::Room, e.to_string()))?
            .into_iter()
            .find(|s| s.code == code)
            .ok_or_else(|| {
                err(
                    AppErrorKind::InvalidInput,
                    format!("The catalog has no song {code:?}."),
                )
            })?
    };
    {
        let mut g = inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.preload = Some(PreloadView {
            code: code.clone(),
            received: 0,
            total: u32::try_from(info.package_bytes).unwrap_or(u32::MAX),
            done: false,
            error: None,
        });
    }
    std::thread::Builder::new()
        .name("onmic-song-preload".into())
        .spawn(move || {
            let progress_inner = Arc::clone(&inner);
            let set = |f: &dyn Fn(&mut PreloadView)| {
                let mut g = progress_inner
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(p) = g.preload.as_mut().filter(|p| p.code == code) {
                    f(p);
                }
            };
            let result = client.license(&code, 3600).and_then(|licence| {
                client.preload(&licence, |received, total| {
                    set(&|p| {
                        p.received = u32::try_from(received).unwrap_or(u32::MAX);
                        if total > 0 {
                            p.total = u32::try_from(total).unwrap_or(u32::MAX);
                        }
                    })
                })
            });
            match result {
                Ok(song) => {
                    let mut g = inner
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    g.songs.insert(
                        code.clone(),
                        Preloaded {
                            info,
                            source: song.source,
                            lyrics: song.lyrics,
                        },
                    );
                    if let Some(p) = g.preload.as_mut().filter(|p| p.code == code) {
                        p.done = true;
                        p.received = p.total.max(p.received);
                    }
                }
                Err(e) => set(&|p| p.error = Some(e.to_string())),
            }
        })
        .map_err(|e| err(AppErrorKind::Internal, e.to_string()))?;
    Ok(())
}

/// Plays a preloaded catalog song on the deck, with its lyrics.
#[tauri::command]
#[specta::specta]
pub async fn song_play(
    studio: tauri::State<'_, crate::Studio>,
    code: String,
) -> Result<MusicView, AppError> {
    let inner = Arc::clone(&studio.music.inner);
    tauri::async_runtime::spawn_blocking(move || {
        let mut g = inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let song = g.songs.get(&code).ok_or_else(|| {
            err(
                AppErrorKind::InvalidInput,
                "Preload the song first (its licence and key come with the download).",
            )
        })?;
        let (source, lyrics) = (song.source.clone(), song.lyrics.clone());
        let title = format!("{} — {}", song.info.title, song.info.artist);
        g.play_on_deck(source, "song", title, lyrics, None, STOP_FADE_MS)?;
        Ok(g.view())
    })
    .await
    .map_err(|e| err(AppErrorKind::Internal, e.to_string()))?
}

/// Assigns a clip file to pad `index` (0–7; `path` null clears it): loaded into memory and
/// checked now, remembered with the settings.
#[tauri::command]
#[specta::specta]
pub fn pad_assign(
    studio: tauri::State<'_, crate::Studio>,
    index: u32,
    path: Option<String>,
    publish: bool,
) -> Result<crate::settings::Settings, AppError> {
    let index = index as usize;
    if index >= PADS {
        return Err(err(
            AppErrorKind::InvalidInput,
            format!("There are {PADS} pads (0 to {}).", PADS - 1),
        ));
    }
    let path = path.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
    let clip = path
        .as_deref()
        .map(|p| load_clip(Path::new(p)))
        .transpose()?;
    let name = path
        .as_deref()
        .and_then(|p| Path::new(p).file_stem())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let settings = studio.settings.update(|s| {
        s.music.pads.resize(PADS, PadSlot::default());
        s.music.pads[index] = PadSlot {
            name,
            path: path.clone(),
            publish,
        };
    })?;
    studio.music.apply(&settings.music);
    let mut g = studio.music.lock();
    g.pads.resize(PADS, None);
    g.pads[index] = clip;
    Ok(settings)
}

/// Fires pad `index` (again from the start if it is sounding).
#[tauri::command]
#[specta::specta]
pub fn pad_fire(
    studio: tauri::State<'_, crate::Studio>,
    index: u32,
) -> Result<MusicView, AppError> {
    let index = index as usize;
    let mut g = studio.music.lock();
    let engine = g.engine()?.clone();
    let clip = g.pad_clip(index)?;
    let publish = g.settings.pads.get(index).is_some_and(|p| p.publish);
    let options = PlayOptions {
        loopback: !publish,
        publish_volume: g.settings.publish_volume / 100.0,
        playout_volume: g.settings.playout_volume / 100.0,
        ..PlayOptions::default()
    };
    let (player, voice) = MusicPlayer::open(&MusicSource::Memory(clip), options)
        .map_err(|e| err(AppErrorKind::InvalidInput, e.to_string()))?;
    // The same pad again restarts it; too many pads at once stop the oldest.
    if let Some(pos) = g.pad_players.iter().position(|(i, _)| *i == index) {
        let (_, mut old) = g.pad_players.remove(pos);
        old.stop();
        engine.send(vec![Control::RemoveMusic(old.id())]);
    }
    while g.pad_players.len() >= MAX_PAD_VOICES || g.voices() >= onmic_audio::music::MAX_VOICES {
        if g.pad_players.is_empty() {
            return Err(err(
                AppErrorKind::InvalidInput,
                "Every music voice is busy; stop a track first.",
            ));
        }
        g.stop_oldest_pad(&engine);
    }
    engine.send(vec![Control::AddMusic(voice)]);
    g.pad_players.push((index, player));
    Ok(g.view())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_clamped_and_keep_eight_pads() {
        let s = MusicSettings {
            publish_volume: 900.0,
            playout_volume: f32::NAN,
            cycle: -7,
            key_shift: 40,
            crossfade_s: -1.0,
            playlist: vec!["  ".into(), "a.mp3".into()],
            pads: vec![],
            ..MusicSettings::default()
        }
        .clamped();
        assert_eq!(s.publish_volume, 150.0);
        assert_eq!(s.playout_volume, 100.0);
        assert_eq!(s.cycle, 1);
        assert_eq!(s.key_shift, 12);
        assert_eq!(s.crossfade_s, 0.0);
        assert_eq!(s.playlist, ["a.mp3"]);
        assert_eq!(s.pads.len(), PADS);
        assert_eq!(
            MusicSettings {
                cycle: -1,
                ..MusicSettings::default()
            }
            .clamped()
            .cycle,
            -1
        );
    }

    #[test]
    fn only_what_changed_reaches_the_player() {
        let a = MusicSettings::default();
        let mut b = a.clone();
        assert!(b.commands_since(&a).is_empty());
        b.publish_volume = 50.0;
        b.key_shift = 3;
        b.playlist.push("x.mp3".into());
        assert_eq!(
            b.commands_since(&a),
            [
                MusicCommand::SetPublishVolume { volume: 0.5 },
                MusicCommand::SetKeyShift { semitones: 3 }
            ]
        );
    }

    #[test]
    fn sources_are_checked_with_clear_errors() {
        assert!(source_of(" ").unwrap_err().message.contains("path"));
        let e = source_of("/no/such/file.mp3").unwrap_err();
        assert!(e.message.contains("not a file"), "{}", e.message);
        let (s, kind, name) = source_of("https://example.test/music/song.ogg").unwrap();
        assert_eq!((kind, name.as_str()), ("url", "song.ogg"));
        assert!(matches!(s, MusicSource::Url(_)));
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("clip.wav");
        std::fs::write(&bad, b"not audio at all").unwrap();
        assert!(load_clip(&bad).is_err());
    }

    #[test]
    fn lyrics_next_to_a_file_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let song = dir.path().join("song.mp3");
        std::fs::write(
            dir.path().join("song.lrc"),
            "[00:01.00]one\n[00:03.00]two\n",
        )
        .unwrap();
        let l = sibling_lyrics(&song).unwrap();
        assert_eq!(l.line_at(3500).unwrap().text, "two");
        assert!(sibling_lyrics(&dir.path().join("other.mp3")).is_none());
    }
}
