//! The Studio's music panel: a deck (file, URL or catalog song) with position, seek and a
//! waveform strip; a playlist with auto-advance and crossfade; the publish and playout volumes,
//! loopback / replace / cycle, key shift and ducking; the PCM socket source and a capture
//! device as music, each with its local-playback switch; a cue output (pre-listen a track on a
//! second device, then take it to air where it left off); the DRM song catalog (search, preload
//! with progress, lyrics in sync with the position); sound pads.
//!
//! The panel is a thin layer over the engine's music types: the deck and the playlist are one
//! [`Playlist`] (auto-advance, crossfades, skipping what will not open with a report), the pads
//! one [`PadBank`] (one engine voice however many pads sound), the cue a [`CueOutput`], the
//! capture source a [`CaptureSource`]. Their voices go to the live session's engine as
//! [`Control::AddMusic`]. A ticker thread polls them every [`TICK`], sends the playlist's new
//! voices to the engine and streams a [`MusicView`] to the UI.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use onmic_audio::engine::Control;
use onmic_audio::music::capture::CaptureSource;
use onmic_audio::music::catalog::{CatalogClient, SongInfo};
use onmic_audio::music::cue::CueOutput;
use onmic_audio::music::lyrics::{Lyrics, MAX_LRC_BYTES};
use onmic_audio::music::pads::{PadBank, PadEvent, PadId};
use onmic_audio::music::playlist::{Playlist, PlaylistEvent, PlaylistOptions, Repeat, Track};
use onmic_audio::music::socket::SocketInput;
use onmic_audio::music::{MusicCommand, MusicPlayer, MusicSource, PlayerState};
use tauri::ipc::Channel;

use crate::error::{AppError, AppErrorKind};
use crate::room_session::ControlSender;

/// How often the players are polled and the view is sent.
pub const TICK: Duration = Duration::from_millis(100);
/// Number of pads.
pub const PADS: usize = 8;
/// Largest pad clip file, bytes (a pad holds its clip decoded, at most
/// [`onmic_audio::music::pads::MAX_PAD_SECONDS`]).
pub const MAX_PAD_BYTES: u64 = 16 << 20;
/// Points in the deck's waveform strip.
pub const WAVEFORM_POINTS: usize = 240;
/// Fade used by Stop and by opening a file or song by hand, ms (no click).
const STOP_FADE_MS: u32 = 40;

mod settings;
mod sources;
mod view;

pub use settings::*;
pub use view::*;

use sources::decode_clip;

/// What the deck shows about its track beyond what the playlist knows.
struct DeckMeta {
    /// The player it describes (`None`: the track is no longer playing; Play restarts it).
    player_id: Option<u64>,
    source: MusicSource,
    title: String,
    kind: &'static str,
    index: Option<usize>,
    waveform: Arc<Mutex<Vec<f32>>>,
    lyrics: Option<Lyrics>,
    /// The state it ended in.
    ended: PlayerState,
}

/// What is about to be played by hand (opened file, song, cued track): its deck details.
struct Pick {
    source: MusicSource,
    title: String,
    kind: &'static str,
    lyrics: Option<Lyrics>,
}

impl Pick {
    fn of_location(location: &str) -> Result<Pick, AppError> {
        let (source, kind, title) = source_of(location)?;
        let lyrics = match &source {
            MusicSource::File(p) => sibling_lyrics(p),
            _ => None,
        };
        Ok(Pick {
            source,
            title,
            kind,
            lyrics,
        })
    }
}

struct Preloaded {
    info: SongInfo,
    source: MusicSource,
    lyrics: Option<Lyrics>,
}

struct Pcm {
    input: SocketInput,
    last_frames: u64,
    receiving_until: Instant,
}

struct Capture {
    source: CaptureSource,
    last_frames: u64,
    receiving_until: Instant,
}

/// The live pad bank: panel pad `i` is `ids[i]` in it.
struct Pads {
    bank: PadBank,
    ids: [Option<PadId>; PADS],
    sounding: [u32; PADS],
}

struct Cued {
    player: MusicPlayer,
    pick: Pick,
    index: Option<usize>,
}

struct Cue {
    output: CueOutput,
    device: String,
}

struct Inner {
    engine: Option<ControlSender>,
    /// The engine's count of refused music voices last seen (see [`Inner::tick`]).
    music_refused: u64,
    catalog: Option<CatalogClient>,
    settings: MusicSettings,
    playlist: Playlist,
    deck: Option<DeckMeta>,
    /// Decoded pad clips (48 kHz stereo), by panel pad; loaded into the bank when live.
    clips: Vec<Option<Vec<f32>>>,
    pads: Option<Pads>,
    pcm: Option<Pcm>,
    pcm_error: Option<String>,
    capture: Option<Capture>,
    capture_error: Option<String>,
    cue: Option<Cue>,
    cued: Option<Cued>,
    cue_error: Option<String>,
    preload: Option<PreloadView>,
    songs: std::collections::HashMap<String, Preloaded>,
    error: Option<String>,
    watcher: Option<Channel<MusicView>>,
}

impl Default for Inner {
    fn default() -> Self {
        let settings = MusicSettings::default();
        Inner {
            engine: None,
            music_refused: 0,
            catalog: None,
            playlist: Playlist::new(playlist_options(&settings)),
            settings,
            deck: None,
            clips: vec![None; PADS],
            pads: None,
            pcm: None,
            pcm_error: None,
            capture: None,
            capture_error: None,
            cue: None,
            cued: None,
            cue_error: None,
            preload: None,
            songs: Default::default(),
            error: None,
            watcher: None,
        }
    }
}

fn playlist_options(s: &MusicSettings) -> PlaylistOptions {
    PlaylistOptions {
        crossfade_ms: crossfade_ms(s),
        auto_advance: s.auto_advance,
        repeat: Repeat::Off,
        play: s.play_options(0),
    }
}

fn crossfade_ms(s: &MusicSettings) -> u32 {
    (s.crossfade_s * 1000.0).round() as u32
}

/// The playlist's tracks for the settings' entries (checked when played: an entry that will not
/// open is reported and skipped).
fn tracks_of(s: &MusicSettings) -> Vec<Track> {
    s.playlist
        .iter()
        .map(|l| {
            let l = l.trim();
            let (source, title) = if l.starts_with("http://") || l.starts_with("https://") {
                let name = l.rsplit('/').find(|s| !s.is_empty()).unwrap_or(l);
                (MusicSource::Url(l.to_owned()), name.to_owned())
            } else {
                let p = PathBuf::from(l);
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| l.to_owned());
                (MusicSource::File(p), name)
            };
            Track { source, title }
        })
        .collect()
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

fn locked(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        self.playlist.sounding()
            + usize::from(self.pads.is_some())
            + usize::from(self.pcm.is_some())
            + usize::from(self.capture.is_some())
    }

    /// Sends the playlist's new voices to the engine and takes in its events.
    fn poll_playlist(&mut self) {
        let poll = self.playlist.poll();
        if let Some(engine) = &self.engine
            && !poll.voices.is_empty()
        {
            engine.send(poll.voices.into_iter().map(Control::AddMusic).collect());
        }
        for e in poll.events {
            match e {
                PlaylistEvent::TrackFailed { index, message } => {
                    let name = self
                        .playlist
                        .tracks()
                        .get(index)
                        .map_or_else(|| "The track".to_owned(), |t| t.title.clone());
                    self.error = Some(format!("{name}: {message}"));
                }
                PlaylistEvent::TrackStarted { .. } => self.follow_deck(None),
                _ => {}
            }
        }
        self.follow_deck(None);
    }

    /// Points the deck's details at the playlist's current track (`pick`: what was just played
    /// by hand; otherwise the playlist entry's own details).
    fn follow_deck(&mut self, pick: Option<Pick>) {
        let Some(player) = self.playlist.current_player() else {
            // It ended (or was stopped): the deck keeps showing it, and Play starts it again.
            if let Some(d) = &mut self.deck {
                d.player_id = None;
            }
            return;
        };
        let id = player.id();
        let duration = player.duration_ms();
        if pick.is_none() && self.deck.as_ref().and_then(|d| d.player_id) == Some(id) {
            return;
        }
        let index = self.playlist.current_index();
        let pick = match (pick, index) {
            (Some(p), _) => p,
            (None, Some(i)) => {
                let Some(t) = self.playlist.tracks().get(i) else {
                    return;
                };
                let lyrics = match &t.source {
                    MusicSource::File(p) => sibling_lyrics(p),
                    _ => None,
                };
                Pick {
                    kind: if matches!(t.source, MusicSource::Url(_)) {
                        "url"
                    } else {
                        "file"
                    },
                    source: t.source.clone(),
                    title: t.title.clone(),
                    lyrics,
                }
            }
            (None, None) => return,
        };
        let waveform = Arc::new(Mutex::new(Vec::new()));
        if duration.is_some_and(|d| d <= 20 * 60 * 1000) && pick.kind != "url" {
            let (w, s) = (Arc::clone(&waveform), pick.source.clone());
            let _ = std::thread::Builder::new()
                .name("onmic-waveform".into())
                .spawn(move || {
                    if let Some(points) = waveform_of(&s, WAVEFORM_POINTS) {
                        *w.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = points;
                    }
                });
        }
        self.deck = Some(DeckMeta {
            player_id: Some(id),
            source: pick.source,
            title: pick.title,
            kind: pick.kind,
            index,
            waveform,
            lyrics: pick.lyrics,
            ended: PlayerState::Stopped,
        });
    }

    /// Runs `f` with the playlist's crossfade set to `ms` (opening by hand fades over 40 ms).
    fn with_fade<T>(&mut self, ms: u32, f: impl FnOnce(&mut Playlist) -> T) -> T {
        let keep = self.playlist.options().crossfade_ms;
        self.playlist.set_crossfade_ms(ms);
        let r = f(&mut self.playlist);
        self.playlist.set_crossfade_ms(keep);
        r
    }

    /// Plays a file, URL or song by hand on the deck (the current track fades out over 40 ms).
    fn play_pick(&mut self, pick: Pick) -> Result<(), AppError> {
        self.engine()?;
        let track = Track {
            source: pick.source.clone(),
            title: pick.title.clone(),
        };
        self.with_fade(STOP_FADE_MS, |pl| pl.play_track(track))
            .map_err(|e| err(AppErrorKind::InvalidInput, format!("{}: {e}", pick.title)))?;
        self.error = None;
        self.follow_deck(Some(pick));
        self.poll_playlist();
        Ok(())
    }

    /// Plays playlist entry `index`, crossfading from the deck's track.
    fn play_entry(&mut self, index: usize) -> Result<(), AppError> {
        self.engine()?;
        if index >= self.playlist.tracks().len() {
            return Err(err(
                AppErrorKind::InvalidInput,
                "That playlist entry is gone; pick another.",
            ));
        }
        let title = self.playlist.tracks()[index].title.clone();
        self.playlist
            .play(index)
            .map_err(|e| err(AppErrorKind::InvalidInput, format!("{title}: {e}")))?;
        self.error = None;
        self.poll_playlist();
        Ok(())
    }

    fn view(&mut self) -> MusicView {
        let current = self.playlist.current_player();
        let deck = self.deck.as_ref().map(|d| {
            let live = current.filter(|p| Some(p.id()) == d.player_id);
            let pos = live.map_or(0, MusicPlayer::position_ms);
            let idx = d.lyrics.as_ref().and_then(|l| l.index_at(pos));
            let line = |i: usize| d.lyrics.as_ref()?.lines.get(i).map(|l| l.text.clone());
            DeckView {
                title: d.title.clone(),
                kind: d.kind.into(),
                state: state_name(live.map_or(d.ended, MusicPlayer::state)).into(),
                position_ms: ms32(pos),
                duration_ms: live.and_then(MusicPlayer::duration_ms).map(ms32),
                cycle: live
                    .map(|_| self.playlist.current_cycle().unwrap_or(0))
                    .unwrap_or(0),
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
                playlist_index: live
                    .and(self.playlist.current_index())
                    .or(d.index.filter(|_| live.is_none()))
                    .map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
            }
        });
        let pcm = match &self.pcm {
            Some(p) => PcmView {
                listening: p.input.local_addr.map(|a| a.to_string()),
                connections: count(&p.input.stats.connections),
                frames: count(&p.input.stats.frames),
                receiving: Instant::now() < p.receiving_until,
                bad_headers: count(&p.input.stats.bad_headers),
                error: None,
            },
            None => PcmView {
                error: self.pcm_error.clone(),
                ..PcmView::default()
            },
        };
        let capture = match &self.capture {
            Some(c) => CaptureView {
                device: Some(c.source.device().id.clone()),
                seconds: c.last_frames as f32 / 48_000.0,
                receiving: Instant::now() < c.receiving_until,
                underruns: u32::try_from(c.source.underruns()).unwrap_or(u32::MAX),
                error: None,
            },
            None => CaptureView {
                error: self.capture_error.clone(),
                ..CaptureView::default()
            },
        };
        let cue = CueView {
            device: self.cue.as_ref().map(|c| c.output.device().id.clone()),
            title: self.cued.as_ref().map(|c| c.pick.title.clone()),
            state: self
                .cued
                .as_ref()
                .map(|c| state_name(c.player.state()).into()),
            position_ms: self
                .cued
                .as_ref()
                .map_or(0, |c| ms32(c.player.position_ms())),
            duration_ms: self
                .cued
                .as_ref()
                .and_then(|c| c.player.duration_ms())
                .map(ms32),
            playlist_index: self
                .cued
                .as_ref()
                .and_then(|c| c.index)
                .map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
            error: self.cue_error.clone(),
        };
        let pads = self
            .settings
            .pads
            .iter()
            .enumerate()
            .map(|(i, s)| PadView {
                name: s.name.clone(),
                loaded: s.path.is_some(),
                playing: self.pads.as_ref().is_some_and(|p| p.sounding[i] > 0),
                publish: s.publish,
            })
            .collect();
        MusicView {
            live: self.engine.is_some(),
            deck,
            crossfading: self.playlist.sounding() > 1,
            preload: self.preload.clone(),
            pcm,
            capture,
            cue,
            pads,
            voices: u32::try_from(self.voices()).unwrap_or(u32::MAX),
            error: self.error.clone(),
        }
    }

    /// One tick: the playlist, pad events, the cue's returned voices, the sources' activity.
    fn tick(&mut self) {
        if self.engine.is_some() {
            self.poll_playlist();
        }
        // A voice the engine's full bus refused plays nothing: say so, not "receiving".
        if let Some(refused) = self.engine.as_ref().map(ControlSender::music_refused)
            && refused > self.music_refused
        {
            self.music_refused = refused;
            self.error = Some(format!(
                "The engine plays at most {} music sources at once ({} playing) and could not \
                 start another. Stop a track, the pads, the PCM or the capture source, then start \
                 it again.",
                onmic_audio::music::MAX_VOICES,
                self.voices()
            ));
            tracing::warn!(
                refused,
                "a music voice was refused: the engine's bus is full"
            );
        }
        if let Some(p) = &mut self.pads {
            for e in p.bank.events() {
                let (pad, up) = match e {
                    PadEvent::Started { pad, .. } => (pad, true),
                    PadEvent::Ended { pad, .. } => (pad, false),
                };
                if let Some(i) = p.ids.iter().position(|id| *id == Some(pad)) {
                    p.sounding[i] = if up {
                        p.sounding[i] + 1
                    } else {
                        p.sounding[i].saturating_sub(1)
                    };
                }
            }
        }
        if let Some(c) = &mut self.cue {
            // Finished or stopped cue voices come back here and are freed off the cue thread.
            drop(c.output.collect());
            if c.output.status().device_lost() {
                self.cue_error = Some(format!(
                    "The cue output {} was lost; pick it again or another.",
                    c.device
                ));
            }
        }
        if let Some(c) = &mut self.cued {
            let _ = c.player.events();
        }
        if let Some(p) = &mut self.pcm {
            let frames = p
                .input
                .stats
                .frames
                .load(std::sync::atomic::Ordering::Relaxed);
            if frames != p.last_frames {
                p.last_frames = frames;
                p.receiving_until = Instant::now() + Duration::from_millis(500);
            }
        }
        if let Some(c) = &mut self.capture {
            let frames = c
                .source
                .stats()
                .frames
                .load(std::sync::atomic::Ordering::Relaxed);
            if frames != c.last_frames {
                c.last_frames = frames;
                c.receiving_until = Instant::now() + Duration::from_millis(500);
            }
        }
    }
}

fn count(n: &std::sync::atomic::AtomicU64) -> u32 {
    u32::try_from(n.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(u32::MAX)
}

fn ticker(inner: Weak<Mutex<Inner>>) {
    loop {
        std::thread::sleep(TICK);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut g = locked(&inner);
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
        locked(&self.inner)
    }

    /// The session went live: music can play; the catalog answers with the member's token;
    /// the pads, the PCM source and the capture source start.
    pub fn on_join(
        &self,
        engine: ControlSender,
        server_url: String,
        token: String,
        settings: &MusicSettings,
    ) {
        let weak = Arc::downgrade(&self.inner);
        let mut g = self.lock();
        g.music_refused = engine.music_refused();
        g.engine = Some(engine);
        g.catalog = Some(CatalogClient::new(&server_url, &token));
        g.settings = settings.clone();
        g.playlist = Playlist::new(playlist_options(settings));
        g.playlist.set_tracks(tracks_of(settings));
        g.start_pads(weak);
        if settings.pcm.enabled {
            g.start_pcm();
        }
        g.start_capture();
    }

    /// The session ended: every player and source stops (their voices went with the engine);
    /// preloaded songs are forgotten (their licence was for that room). The cue stays open.
    pub fn on_leave(&self) {
        let mut g = self.lock();
        g.stop_pcm();
        g.stop_capture();
        g.playlist.stop();
        let _ = g.playlist.poll();
        g.engine = None;
        g.catalog = None;
        g.deck = None;
        g.pads = None;
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
        let old = std::mem::replace(&mut g.settings, settings.clone());
        for c in commands {
            g.playlist.command(c);
        }
        g.playlist.set_tracks(tracks_of(settings));
        g.playlist.set_crossfade_ms(crossfade_ms(settings));
        g.playlist.set_auto_advance(settings.auto_advance);
        g.playlist.set_cycle(settings.cycle);
        // Pads whose file changed: decoded again when assigned (pad_assign) or on the next join.
        for i in 0..PADS {
            if settings.pads.get(i).map(|p| &p.path) != old.pads.get(i).map(|p| &p.path) {
                g.clips[i] = None;
                if let Some(p) = g.pads.as_mut()
                    && let Some(id) = p.ids[i].take()
                {
                    p.bank.remove(id);
                }
            }
        }
        let (pv, lv) = (
            settings.publish_volume / 100.0,
            settings.playout_volume / 100.0,
        );
        if let Some(p) = g.pads.as_mut() {
            p.bank.set_publish_volume(pv);
            p.bank.set_playout_volume(lv);
        }
        if let Some(c) = &g.capture {
            c.source.set_publish_volume(pv);
            c.source.set_playout_volume(lv);
            c.source.set_publish(!settings.loopback);
            c.source.set_replace(settings.replace);
        }
        if settings.pcm != old.pcm && g.engine.is_some() {
            g.stop_pcm();
            if settings.pcm.enabled {
                g.start_pcm();
            }
        }
        let cap = (&settings.capture, &old.capture);
        if cap.0.enabled != cap.1.enabled || cap.0.device != cap.1.device {
            g.stop_capture();
            g.capture_error = None;
            g.start_capture();
        } else if cap.0.local_playback != cap.1.local_playback
            && let Some(c) = &g.capture
        {
            c.source.set_local_playback(cap.0.local_playback);
        }
        if settings.cue.device != old.cue.device {
            g.close_cue();
            g.cue_error = None;
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
/// source, capture source, cue device): saved, and applied to what plays now.
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

/// Runs `f` on the panel off the async runtime (opening probes files, connects to URLs and
/// opens devices).
async fn blocking<T: Send + 'static>(
    studio: &crate::Studio,
    f: impl FnOnce(&mut Inner) -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    let inner = Arc::clone(&studio.music.inner);
    tauri::async_runtime::spawn_blocking(move || f(&mut locked(&inner)))
        .await
        .map_err(|e| err(AppErrorKind::Internal, e.to_string()))?
}

/// Opens a file path or http(s) URL on the deck and plays it (the track playing now fades out
/// over 40 ms).
#[tauri::command]
#[specta::specta]
pub async fn music_open(
    studio: tauri::State<'_, crate::Studio>,
    location: String,
) -> Result<MusicView, AppError> {
    blocking(&studio, move |g| {
        g.play_pick(Pick::of_location(&location)?)?;
        Ok(g.view())
    })
    .await
}

/// Deck transport: play, pause, stop, seek.
#[tauri::command]
#[specta::specta]
pub async fn music_deck(
    studio: tauri::State<'_, crate::Studio>,
    action: DeckAction,
) -> Result<MusicView, AppError> {
    blocking(&studio, move |g| {
        g.engine()?;
        let Some(d) = g.deck.as_ref() else {
            return Err(err(
                AppErrorKind::InvalidInput,
                "Nothing on the deck: open a file, a playlist entry or a song first.",
            ));
        };
        let state = g.playlist.current_player().map(MusicPlayer::state);
        match action {
            DeckAction::Play => match state {
                Some(PlayerState::Paused) => g.playlist.command(MusicCommand::Resume),
                Some(PlayerState::Playing | PlayerState::Opening) => {}
                _ => match d.index {
                    Some(i) if g.playlist.tracks().get(i).map(|t| &t.source) == Some(&d.source) => {
                        g.play_entry(i)?
                    }
                    _ => {
                        let pick = Pick {
                            source: d.source.clone(),
                            title: d.title.clone(),
                            kind: d.kind,
                            lyrics: d.lyrics.clone(),
                        };
                        g.play_pick(pick)?
                    }
                },
            },
            DeckAction::Pause => g.playlist.command(MusicCommand::Pause),
            DeckAction::Stop => {
                if matches!(state, Some(PlayerState::Playing | PlayerState::Opening)) {
                    g.playlist
                        .command(MusicCommand::FadeOut { ms: STOP_FADE_MS });
                } else {
                    g.playlist.stop();
                }
            }
            DeckAction::Seek { position_ms } => {
                let dur = g
                    .playlist
                    .current_player()
                    .and_then(MusicPlayer::duration_ms);
                let to = u64::from(position_ms).min(dur.unwrap_or(u64::MAX));
                g.playlist.command(MusicCommand::Seek { position_ms: to });
            }
        }
        Ok(g.view())
    })
    .await
}

/// Plays playlist entry `index` on the deck (the track playing now crossfades out).
#[tauri::command]
#[specta::specta]
pub async fn playlist_play(
    studio: tauri::State<'_, crate::Studio>,
    index: u32,
) -> Result<MusicView, AppError> {
    blocking(&studio, move |g| {
        g.play_entry(index as usize)?;
        Ok(g.view())
    })
    .await
}

/// Pre-listens a playlist entry, a location or a preloaded song on the cue output (the device
/// in `settings.music.cue`): heard there only, neither published nor in the main output.
#[tauri::command]
#[specta::specta]
pub async fn music_cue(
    studio: tauri::State<'_, crate::Studio>,
    target: CueTarget,
) -> Result<MusicView, AppError> {
    blocking(&studio, move |g| {
        let (pick, index) = match target {
            CueTarget::Entry { index } => {
                let i = index as usize;
                let location = g.settings.playlist.get(i).cloned().ok_or_else(|| {
                    err(
                        AppErrorKind::InvalidInput,
                        "That playlist entry is gone; pick another.",
                    )
                })?;
                (Pick::of_location(&location)?, Some(i))
            }
            CueTarget::Location { location } => (Pick::of_location(&location)?, None),
            CueTarget::Song { code } => {
                let song = g.songs.get(&code).ok_or_else(|| {
                    err(
                        AppErrorKind::InvalidInput,
                        "Preload the song first (its licence and key come with the download).",
                    )
                })?;
                (
                    Pick {
                        source: song.source.clone(),
                        title: format!("{} — {}", song.info.title, song.info.artist),
                        kind: "song",
                        lyrics: song.lyrics.clone(),
                    },
                    None,
                )
            }
        };
        g.cue_pick(pick, index)?;
        Ok(g.view())
    })
    .await
}

/// The cued track: pause, resume, stop, seek, or take it to air where it is.
#[tauri::command]
#[specta::specta]
pub async fn music_cue_control(
    studio: tauri::State<'_, crate::Studio>,
    action: CueAction,
) -> Result<MusicView, AppError> {
    blocking(&studio, move |g| {
        g.cue_action(action)?;
        Ok(g.view())
    })
    .await
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
    blocking(&studio, move |g| {
        let song = g.songs.get(&code).ok_or_else(|| {
            err(
                AppErrorKind::InvalidInput,
                "Preload the song first (its licence and key come with the download).",
            )
        })?;
        let pick = Pick {
            source: song.source.clone(),
            title: format!("{} — {}", song.info.title, song.info.artist),
            kind: "song",
            lyrics: song.lyrics.clone(),
        };
        g.play_pick(pick)?;
        Ok(g.view())
    })
    .await
}

/// Assigns a clip file to pad `index` (0–7; `path` null clears it): decoded and checked now
/// (at most 16 MB and 30 s), loaded into the live pad bank, remembered with the settings.
#[tauri::command]
#[specta::specta]
pub async fn pad_assign(
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
    let clip = {
        let path = path.clone();
        tauri::async_runtime::spawn_blocking(move || {
            path.as_deref()
                .map(|p| decode_clip(Path::new(p)))
                .transpose()
        })
        .await
        .map_err(|e| err(AppErrorKind::Internal, e.to_string()))??
    };
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
    g.clips[index] = clip;
    g.load_pad(index);
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
    if index >= PADS {
        return Err(err(
            AppErrorKind::InvalidInput,
            format!("There are {PADS} pads (0 to {}).", PADS - 1),
        ));
    }
    let mut g = studio.music.lock();
    g.fire_pad(index)?;
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
        assert!(decode_clip(&bad).is_err());
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
