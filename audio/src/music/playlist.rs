//! A playlist for a DJ deck: tracks in order, auto-advance with an equal-power crossfade of a
//! set length (the players' own `fade_out` / `fade_in_ms`), repeat, and events for track
//! changes.
//!
//! The playlist lives on the caller's side. It opens the next track's player ahead of time
//! (`PREPARE_MS` before the crossfade, so probing, the first packet and the decode ring are
//! ready), and hands new voices out of [`Playlist::poll`]; the caller sends each to the engine
//! with [`crate::engine::Control::AddMusic`] at once. Call `poll` every 10–30 ms.

use super::PlayerState;
use super::player::MusicVoice;
use super::{MusicCommand, MusicError, MusicEvent, MusicPlayer, MusicSource, PlayOptions};

/// The index events carry for a track played off the list ([`Playlist::play_track`],
/// [`Playlist::play_opened`] with no index).
pub const OFF_LIST: usize = usize::MAX;

/// How long before a crossfade the next track is opened, ms.
const PREPARE_MS: u64 = 3_000;
/// The crossfade starts this much before the outgoing track's end beyond the fade itself, ms,
/// so a poll up to this late still fades out before the track runs out.
const LEAD_MS: u64 = 60;

/// What happens after the last track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repeat {
    /// Stop after the last track.
    #[default]
    Off,
    /// Go back to the first track.
    All,
    /// Play the current track again (crossfading into itself).
    One,
}

/// How a playlist plays.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlaylistOptions {
    /// Crossfade between tracks, ms (0 = back to back: the next track starts once the last
    /// finishes, within one poll plus one block). 0..=30000.
    pub crossfade_ms: u32,
    /// Go to the next track by itself when one ends.
    pub auto_advance: bool,
    /// After the last track.
    pub repeat: Repeat,
    /// How each track plays (`cycle`: how many passes each track plays, see
    /// [`Playlist::set_cycle`]; `start_ms` and `fade_in_ms` are the playlist's: each track
    /// starts from its start).
    pub play: PlayOptions,
}

impl Default for PlaylistOptions {
    fn default() -> Self {
        PlaylistOptions {
            crossfade_ms: 3_000,
            auto_advance: true,
            repeat: Repeat::Off,
            play: PlayOptions::default(),
        }
    }
}

/// One entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Track {
    /// What to play.
    pub source: MusicSource,
    /// What to show.
    pub title: String,
}

/// What a playlist reports (serde, tagged by `event`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum PlaylistEvent {
    /// A track became the current one (its voice is in this poll's `voices`).
    TrackStarted {
        /// Its index in the playlist.
        index: usize,
        /// Its title.
        title: String,
        /// The crossfade it starts with, ms (0: no fade).
        crossfade_ms: u32,
    },
    /// A track stopped sounding (faded out, finished or stopped).
    TrackEnded {
        /// Its index when it started (the list may have changed since).
        index: usize,
    },
    /// A track could not be opened or failed while playing; the playlist moved on.
    TrackFailed {
        /// Its index.
        index: usize,
        /// Why.
        message: String,
    },
    /// The last track ended and nothing repeats.
    Ended,
    /// An event of the current track's player (position, state …).
    Player {
        /// The track's index.
        index: usize,
        /// The player's event.
        player: MusicEvent,
    },
}

/// What one [`Playlist::poll`] produced.
#[derive(Debug, Default)]
pub struct PlaylistPoll {
    /// New voices: send each to the engine with [`crate::engine::Control::AddMusic`] now.
    pub voices: Vec<Box<MusicVoice>>,
    /// Events, oldest first.
    pub events: Vec<PlaylistEvent>,
}

struct Deck {
    index: usize,
    player: MusicPlayer,
    /// What the deck shows (the track's title when it started).
    title: String,
    /// Played off the list: nothing follows it, list edits do not move it.
    off_list: bool,
    /// The pass it plays (0-based), from its player's events.
    cycle: u32,
}

/// A playlist with auto-advance and crossfades. See the module docs.
pub struct Playlist {
    tracks: Vec<Track>,
    options: PlaylistOptions,
    current: Option<Deck>,
    /// Opened ahead of its crossfade; its voice waits here.
    prepared: Option<(Deck, Box<MusicVoice>)>,
    outgoing: Vec<Deck>,
    out: PlaylistPoll,
}

impl std::fmt::Debug for Playlist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playlist")
            .field("tracks", &self.tracks.len())
            .field("current", &self.current_index())
            .finish_non_exhaustive()
    }
}

impl Playlist {
    /// An empty playlist.
    pub fn new(options: PlaylistOptions) -> Playlist {
        let mut p = Playlist {
            tracks: Vec::new(),
            options,
            current: None,
            prepared: None,
            outgoing: Vec::new(),
            out: PlaylistPoll::default(),
        };
        p.options.crossfade_ms = p.options.crossfade_ms.min(30_000);
        p
    }

    /// The tracks.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The options.
    pub fn options(&self) -> &PlaylistOptions {
        &self.options
    }

    /// Appends a track; returns its index.
    pub fn push(&mut self, track: Track) -> usize {
        self.tracks.push(track);
        self.forget_prepared();
        self.tracks.len() - 1
    }

    /// Removes a track (the current one keeps playing, the list closes up). Returns it.
    pub fn remove(&mut self, index: usize) -> Option<Track> {
        if index >= self.tracks.len() {
            return None;
        }
        let t = self.tracks.remove(index);
        self.forget_prepared();
        for d in self
            .current
            .iter_mut()
            .chain(self.outgoing.iter_mut())
            .filter(|d| !d.off_list)
        {
            if d.index > index {
                d.index -= 1;
            } else if d.index == index {
                // Played on, but no longer in the list: what follows it is what now sits here.
                d.index = index.wrapping_sub(1);
            }
        }
        Some(t)
    }

    /// Moves a track from `from` to `to` (both < len).
    pub fn move_track(&mut self, from: usize, to: usize) -> bool {
        if from >= self.tracks.len() || to >= self.tracks.len() {
            return false;
        }
        let t = self.tracks.remove(from);
        self.tracks.insert(to, t);
        self.forget_prepared();
        let remap = |i: usize| {
            if i == from {
                to
            } else if from < i && i <= to {
                i - 1
            } else if to <= i && i < from {
                i + 1
            } else {
                i
            }
        };
        for d in self
            .current
            .iter_mut()
            .chain(self.outgoing.iter_mut())
            .filter(|d| !d.off_list)
        {
            d.index = remap(d.index);
        }
        true
    }

    /// Replaces the whole list (an editor that saves the list at once). A sounding track keeps
    /// its place: at its old index if the same track is still there, else at the first equal
    /// track, else it plays on as removed (what follows it is what now sits at its old index).
    pub fn set_tracks(&mut self, tracks: Vec<Track>) {
        if tracks == self.tracks {
            return;
        }
        let old = std::mem::replace(&mut self.tracks, tracks);
        self.forget_prepared();
        let new = &self.tracks;
        for d in self
            .current
            .iter_mut()
            .chain(self.outgoing.iter_mut())
            .filter(|d| !d.off_list)
        {
            let Some(was) = old.get(d.index) else {
                continue;
            };
            d.index = if new.get(d.index) == Some(was) {
                d.index
            } else if let Some(i) = new.iter().position(|t| t == was) {
                i
            } else {
                d.index.wrapping_sub(1)
            };
        }
    }

    /// How many times each track plays from now on (1, 2, …; −1 = forever; 0 counts as 1).
    /// With auto-advance the crossfade starts in a track's last pass; a track that repeats
    /// forever never advances by itself.
    pub fn set_cycle(&mut self, cycle: i32) {
        self.options.play.cycle = if cycle == 0 || cycle < -1 { 1 } else { cycle };
        self.forget_prepared();
    }

    /// Sets the crossfade (0..=30000 ms); applies from the next change.
    pub fn set_crossfade_ms(&mut self, ms: u32) {
        self.options.crossfade_ms = ms.min(30_000);
        self.forget_prepared();
    }

    /// Auto-advance on or off.
    pub fn set_auto_advance(&mut self, on: bool) {
        self.options.auto_advance = on;
    }

    /// What happens after the last track.
    pub fn set_repeat(&mut self, r: Repeat) {
        self.options.repeat = r;
        self.forget_prepared();
    }

    /// The current track's index (`None`: nothing plays, or the track is off the list).
    pub fn current_index(&self) -> Option<usize> {
        self.current
            .as_ref()
            .filter(|d| !d.off_list)
            .map(|d| d.index)
    }

    /// The current track's title (also for a track off the list).
    pub fn current_title(&self) -> Option<&str> {
        self.current.as_ref().map(|d| d.title.as_str())
    }

    /// The pass (0-based) the current track plays, as its player last reported.
    pub fn current_cycle(&self) -> Option<u32> {
        self.current.as_ref().map(|d| d.cycle)
    }

    /// The current track's player (position, duration, state).
    pub fn current_player(&self) -> Option<&MusicPlayer> {
        self.current.as_ref().map(|d| &d.player)
    }

    /// Every sounding track's index and player: the current one first, then those fading out
    /// (a deck view shows both during a crossfade).
    pub fn players(&self) -> impl Iterator<Item = (usize, &MusicPlayer)> {
        self.current
            .iter()
            .chain(self.outgoing.iter())
            .map(|d| (d.index, &d.player))
    }

    /// Players still sounding: the current one and any fading out.
    pub fn sounding(&self) -> usize {
        usize::from(self.current.is_some()) + self.outgoing.len()
    }

    /// Starts track `index`, crossfading from the current one (if any) over the crossfade.
    /// A track that cannot be opened gives its error here (nothing changes).
    pub fn play(&mut self, index: usize) -> Result<(), MusicError> {
        if index >= self.tracks.len() {
            return Err(self.no_track(index));
        }
        self.forget_prepared();
        let fade = self.fade_from_current();
        let (deck, voice) = self.open(index, fade)?;
        self.switch_to(deck, voice, fade);
        Ok(())
    }

    /// Plays a track that is not in the list (a file opened by hand, a catalog song),
    /// crossfading from the current one like [`Playlist::play`]. Nothing follows it: when it
    /// ends the playlist has ended (its events carry the index [`OFF_LIST`]).
    pub fn play_track(&mut self, track: Track) -> Result<(), MusicError> {
        self.forget_prepared();
        let fade = self.fade_from_current();
        let (player, voice) = MusicPlayer::open(&track.source, self.track_options(fade))?;
        let deck = Deck {
            index: OFF_LIST,
            player,
            title: track.title,
            off_list: true,
            cycle: 0,
        };
        self.switch_to(deck, voice, fade);
        Ok(())
    }

    /// Makes a player opened elsewhere the current track, where it is (a track pre-listened on
    /// a [`super::cue::CueOutput`] and taken back from it): the current track fades out over
    /// the crossfade while this one goes on at its level. `index`: the list entry it plays
    /// (`None`: off the list). Its voice comes out of the next [`Playlist::poll`]: send it to
    /// the engine like any other.
    pub fn play_opened(
        &mut self,
        index: Option<usize>,
        title: String,
        player: MusicPlayer,
        voice: Box<MusicVoice>,
    ) -> Result<(), MusicError> {
        if let Some(i) = index
            && i >= self.tracks.len()
        {
            return Err(self.no_track(i));
        }
        self.forget_prepared();
        let fade = self.fade_from_current();
        let deck = Deck {
            index: index.unwrap_or(OFF_LIST),
            player,
            title,
            off_list: index.is_none(),
            cycle: 0,
        };
        self.switch_to(deck, voice, fade);
        Ok(())
    }

    /// Skips to the next track (with the crossfade). `Ok(false)`: there is none.
    pub fn skip_next(&mut self) -> Result<bool, MusicError> {
        match self.following(false) {
            Some(i) => self.play(i).map(|()| true),
            None => Ok(false),
        }
    }

    /// Goes to the previous track (with the crossfade). `Ok(false)`: there is none.
    pub fn skip_previous(&mut self) -> Result<bool, MusicError> {
        let Some(cur) = self.current_index() else {
            return Ok(false);
        };
        let prev = if cur == 0 || cur == usize::MAX {
            (self.options.repeat == Repeat::All && !self.tracks.is_empty())
                .then(|| self.tracks.len() - 1)
        } else {
            Some((cur - 1).min(self.tracks.len().saturating_sub(1)))
        };
        match prev {
            Some(i) => self.play(i).map(|()| true),
            None => Ok(false),
        }
    }

    /// Stops everything now (no fade).
    pub fn stop(&mut self) {
        self.forget_prepared();
        for mut d in self
            .current
            .take()
            .into_iter()
            .chain(self.outgoing.drain(..))
        {
            d.player.stop();
            self.out
                .events
                .push(PlaylistEvent::TrackEnded { index: d.index });
        }
    }

    /// Applies a player command: pause, resume, stop and fades to every sounding track; seek to
    /// the current one; volumes, loopback, replace, ducking and key shift to every sounding
    /// track and to the tracks that follow.
    pub fn command(&mut self, c: MusicCommand) {
        match &c {
            MusicCommand::Stop => return self.stop(),
            MusicCommand::Seek { .. } => {
                self.forget_prepared();
                if let Some(d) = self.current.as_mut() {
                    d.player.command(c);
                }
                return;
            }
            MusicCommand::SetPublishVolume { volume } => {
                self.options.play.publish_volume = volume.clamp(0.0, 1.5)
            }
            MusicCommand::SetPlayoutVolume { volume } => {
                self.options.play.playout_volume = volume.clamp(0.0, 1.5)
            }
            MusicCommand::SetLoopback { loopback } => self.options.play.loopback = *loopback,
            MusicCommand::SetReplace { replace } => self.options.play.replace = *replace,
            MusicCommand::SetDucking { ducking } => self.options.play.ducking = *ducking,
            MusicCommand::SetKeyShift { semitones } => {
                self.options.play.key_shift = (*semitones).clamp(-12, 12)
            }
            MusicCommand::Pause | MusicCommand::Resume | MusicCommand::FadeOut { .. } => {}
        }
        for d in self.current.iter_mut().chain(self.outgoing.iter_mut()) {
            d.player.command(c.clone());
        }
        if let Some((d, _)) = self.prepared.as_mut() {
            d.player.command(c);
        }
    }

    /// Advances the playlist: collects players' events, prepares the next track, starts the
    /// crossfade when the current track reaches it, retires faded tracks. Call every 10–30 ms
    /// and send the returned voices to the engine at once.
    pub fn poll(&mut self) -> PlaylistPoll {
        // Tracks fading out: gone once their voice has stopped.
        let mut i = 0;
        while i < self.outgoing.len() {
            let _ = self.outgoing[i].player.events();
            if matches!(
                self.outgoing[i].player.state(),
                PlayerState::Stopped | PlayerState::Finished | PlayerState::Failed
            ) {
                let d = self.outgoing.swap_remove(i);
                self.out
                    .events
                    .push(PlaylistEvent::TrackEnded { index: d.index });
            } else {
                i += 1;
            }
        }
        if let Some(d) = self.current.as_mut() {
            let index = d.index;
            let mut failed = None;
            for event in d.player.events() {
                match &event {
                    MusicEvent::Error { message } => failed = Some(message.clone()),
                    MusicEvent::Position { cycle, .. } => d.cycle = *cycle,
                    MusicEvent::CycleEnded { cycle } => d.cycle = cycle + 1,
                    _ => {}
                }
                self.out.events.push(PlaylistEvent::Player {
                    index,
                    player: event,
                });
            }
            let state = d.player.state();
            if let Some(message) = failed.or_else(|| {
                (state == PlayerState::Failed).then(|| "the track failed while playing".into())
            }) {
                self.out
                    .events
                    .push(PlaylistEvent::TrackFailed { index, message });
            }
            if matches!(
                state,
                PlayerState::Stopped | PlayerState::Finished | PlayerState::Failed
            ) {
                let d = self.current.take().expect("current");
                self.out
                    .events
                    .push(PlaylistEvent::TrackEnded { index: d.index });
                // A track the caller stopped (or faded out by hand) is not followed.
                if self.options.auto_advance && !d.off_list && state != PlayerState::Stopped {
                    self.advance_after(d.index);
                } else {
                    self.forget_prepared();
                }
                if self.current.is_none() && self.outgoing.is_empty() {
                    self.out.events.push(PlaylistEvent::Ended);
                }
            } else if self.options.auto_advance && state != PlayerState::Opening {
                self.maybe_crossfade();
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Near the end of the current track: prepare the next, then start the crossfade.
    fn maybe_crossfade(&mut self) {
        let Some(d) = self.current.as_ref().filter(|d| !d.off_list) else {
            return;
        };
        // Only in the last pass of a repeating track (never in one that repeats forever).
        let cycle = self.options.play.cycle;
        if cycle < 0 || d.cycle + 1 < cycle.max(1) as u32 {
            return;
        }
        let (Some(dur), pos) = (d.player.duration_ms(), d.player.position_ms()) else {
            return;
        };
        let fade = u64::from(self.options.crossfade_ms);
        if fade == 0 {
            return;
        }
        let remaining = dur.saturating_sub(pos);
        let from = d.index;
        if remaining <= fade + LEAD_MS + PREPARE_MS && self.prepared.is_none() {
            match self.open_following(from, self.options.crossfade_ms) {
                Some(p) => self.prepared = Some(p),
                None => return,
            }
        }
        if remaining <= fade + LEAD_MS
            && let Some((deck, voice)) = self.prepared.take()
        {
            // The fade must end before the outgoing track does.
            let ms = fade.min(remaining.saturating_sub(LEAD_MS / 3)).max(10) as u32;
            deck.player.set_fade_in_ms(ms);
            self.switch_to(deck, voice, ms);
        }
    }

    /// Opens the first track after `from` (as auto-advance sees it) that opens, reporting
    /// those that fail.
    fn open_following(&mut self, from: usize, fade_ms: u32) -> Option<(Deck, Box<MusicVoice>)> {
        let mut at = from;
        for _ in 0..self.tracks.len() {
            let next = self.following_from(at, true)?;
            match self.open(next, fade_ms) {
                Ok(p) => return Some(p),
                Err(e) => {
                    self.out.events.push(PlaylistEvent::TrackFailed {
                        index: next,
                        message: e.to_string(),
                    });
                    if next == at {
                        return None;
                    }
                    at = next;
                }
            }
        }
        None
    }

    /// After `ended` finished by itself (no crossfade): start what follows.
    fn advance_after(&mut self, ended: usize) {
        let next = match self.prepared.take() {
            Some(p) => Some(p),
            None => self.open_following(ended, 0),
        };
        if let Some((deck, voice)) = next {
            deck.player.set_fade_in_ms(0);
            self.switch_to(deck, voice, 0);
        }
    }

    /// The track after the current one (`auto`: as auto-advance sees it, with repeat).
    fn following(&self, auto: bool) -> Option<usize> {
        let cur = self.current_index()?;
        self.following_from(cur, auto)
    }

    fn following_from(&self, cur: usize, auto: bool) -> Option<usize> {
        if self.tracks.is_empty() {
            return None;
        }
        if auto && self.options.repeat == Repeat::One && cur < self.tracks.len() {
            return Some(cur);
        }
        let next = cur.wrapping_add(1);
        if next < self.tracks.len() {
            Some(next)
        } else if self.options.repeat == Repeat::All {
            Some(0)
        } else {
            None
        }
    }

    fn track_options(&self, fade_ms: u32) -> PlayOptions {
        PlayOptions {
            cycle: if self.options.play.cycle == 0 || self.options.play.cycle < -1 {
                1
            } else {
                self.options.play.cycle
            },
            start_ms: 0,
            fade_in_ms: fade_ms,
            ..self.options.play
        }
    }

    fn open(&self, index: usize, fade_ms: u32) -> Result<(Deck, Box<MusicVoice>), MusicError> {
        let t = &self.tracks[index];
        let (player, voice) = MusicPlayer::open(&t.source, self.track_options(fade_ms))?;
        Ok((
            Deck {
                index,
                player,
                title: t.title.clone(),
                off_list: false,
                cycle: 0,
            },
            voice,
        ))
    }

    fn switch_to(&mut self, deck: Deck, voice: Box<MusicVoice>, fade: u32) {
        if let Some(mut old) = self.current.take() {
            if fade > 0 {
                old.player.command(MusicCommand::FadeOut { ms: fade });
            } else {
                old.player.stop();
            }
            self.outgoing.push(old);
        }
        self.out.events.push(PlaylistEvent::TrackStarted {
            index: deck.index,
            title: deck.title.clone(),
            crossfade_ms: fade,
        });
        self.current = Some(deck);
        self.out.voices.push(voice);
    }

    /// The crossfade a hand-started track gets: none when nothing plays.
    fn fade_from_current(&self) -> u32 {
        if self.current.is_some() {
            self.options.crossfade_ms
        } else {
            0
        }
    }

    fn no_track(&self, index: usize) -> MusicError {
        MusicError::Invalid(format!(
            "no track {index} (the playlist has {})",
            self.tracks.len()
        ))
    }

    fn forget_prepared(&mut self) {
        // Its voice never reached the engine; dropping both here ends its decode thread.
        self.prepared = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Block;
    use crate::music::MusicBus;

    fn wav(dir: &std::path::Path, name: &str, seconds: f32) -> Track {
        let path = dir.join(name);
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("wav");
        for n in 0..(seconds * 48_000.0) as u32 {
            let x = (0.2 * (n as f32 * 0.05).sin() * 32_767.0) as i16;
            w.write_sample(x).expect("sample");
            w.write_sample(x).expect("sample");
        }
        w.finalize().expect("wav written");
        Track {
            source: MusicSource::File(path),
            title: name.to_owned(),
        }
    }

    #[test]
    fn set_tracks_keeps_the_sounding_track_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            wav(dir.path(), "a.wav", 0.5),
            wav(dir.path(), "b.wav", 0.5),
            wav(dir.path(), "c.wav", 0.5),
        );
        let mut pl = Playlist::new(PlaylistOptions::default());
        pl.set_tracks(vec![a.clone(), b.clone()]);
        pl.play(1).unwrap();
        assert_eq!(pl.current_index(), Some(1));
        // An entry inserted before it: it moves with its track.
        pl.set_tracks(vec![c.clone(), a.clone(), b.clone()]);
        assert_eq!(pl.current_index(), Some(2));
        // Moved up by a swap.
        pl.set_tracks(vec![c.clone(), b.clone(), a.clone()]);
        assert_eq!(pl.current_index(), Some(1));
        // Removed: it plays on; what follows is what now sits at its old index.
        pl.set_tracks(vec![c.clone(), a.clone()]);
        assert_eq!(pl.current_index(), Some(0));
        assert_eq!(pl.current_title(), Some("b.wav"));
        assert_eq!(pl.tracks().len(), 2);
    }

    #[test]
    fn an_off_list_track_has_no_index_and_nothing_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (wav(dir.path(), "a.wav", 0.5), wav(dir.path(), "b.wav", 0.5));
        let mut pl = Playlist::new(PlaylistOptions::default());
        pl.set_tracks(vec![a.clone()]);
        pl.play_track(b.clone()).unwrap();
        assert_eq!(pl.current_index(), None);
        assert_eq!(pl.current_title(), Some("b.wav"));
        assert!(!pl.skip_next().unwrap());
        assert!(!pl.skip_previous().unwrap());
        let poll = pl.poll();
        assert_eq!(poll.voices.len(), 1);
        assert!(poll.events.contains(&PlaylistEvent::TrackStarted {
            index: OFF_LIST,
            title: "b.wav".into(),
            crossfade_ms: 0
        }));
        // List edits do not touch it.
        pl.set_tracks(vec![b.clone(), a.clone()]);
        assert_eq!(pl.current_index(), None);
        // A list track after it crossfades from it.
        pl.play(0).unwrap();
        assert_eq!(pl.current_index(), Some(0));
        assert_eq!(pl.sounding(), 2);
        // An unopenable one is an error and changes nothing.
        let bad = Track {
            source: MusicSource::File(dir.path().join("missing.wav")),
            title: "missing".into(),
        };
        assert!(pl.play_track(bad).is_err());
        assert_eq!(pl.current_index(), Some(0));
    }

    #[test]
    fn a_player_opened_elsewhere_becomes_the_current_track() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (wav(dir.path(), "a.wav", 0.5), wav(dir.path(), "b.wav", 0.5));
        let mut pl = Playlist::new(PlaylistOptions::default());
        pl.set_tracks(vec![a.clone(), b.clone()]);
        let (player, voice) = MusicPlayer::open(&b.source, PlayOptions::default()).unwrap();
        let id = player.id();
        let (p2, v2) = MusicPlayer::open(&b.source, PlayOptions::default()).unwrap();
        assert!(pl.play_opened(Some(2), "b".into(), p2, v2).is_err());
        pl.play_opened(Some(1), "b.wav".into(), player, voice)
            .unwrap();
        assert_eq!(pl.current_index(), Some(1));
        assert_eq!(pl.current_player().map(MusicPlayer::id), Some(id));
        let poll = pl.poll();
        assert_eq!(poll.voices.iter().map(|v| v.id()).collect::<Vec<_>>(), [id]);
    }

    /// Plays the playlist through a bus until it ends (or `max_blocks`), returning its events.
    fn run(pl: &mut Playlist, max_blocks: usize) -> Vec<PlaylistEvent> {
        let mut bus = MusicBus::new();
        let (mut publish, mut local) = (Block::silent(2), Block::silent(2));
        let mut events = Vec::new();
        for _ in 0..max_blocks {
            let poll = pl.poll();
            for v in poll.voices {
                assert!(bus.add(v).is_ok());
            }
            let ended = poll.events.contains(&PlaylistEvent::Ended);
            events.extend(poll.events);
            if ended {
                break;
            }
            bus.mix(0.0, &mut publish, &mut local);
            while bus.take_done().is_some() {}
            // Let the decode threads keep ahead (an underrun would only stall the positions).
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        events
    }

    #[test]
    fn a_track_plays_its_cycles_before_the_crossfade() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (wav(dir.path(), "a.wav", 0.6), wav(dir.path(), "b.wav", 0.3));
        for (cycle, passes_of_a) in [(1, 1), (2, 2)] {
            let mut pl = Playlist::new(PlaylistOptions {
                crossfade_ms: 150,
                ..PlaylistOptions::default()
            });
            pl.set_cycle(cycle);
            pl.set_tracks(vec![a.clone(), b.clone()]);
            pl.play(0).unwrap();
            let events = run(&mut pl, 2_000);
            let started_b = events
                .iter()
                .position(|e| matches!(e, PlaylistEvent::TrackStarted { index: 1, .. }))
                .expect("track b started");
            let a_passes_before_b = events[..started_b]
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        PlaylistEvent::Player {
                            index: 0,
                            player: MusicEvent::CycleEnded { .. }
                        }
                    )
                })
                .count();
            // The crossfade starts inside a's last pass: its earlier passes ended before it.
            assert_eq!(
                a_passes_before_b,
                passes_of_a - 1,
                "cycle {cycle}: {events:?}"
            );
            assert!(events.contains(&PlaylistEvent::Ended), "cycle {cycle}");
        }
        // Forever: never advances by itself.
        let mut pl = Playlist::new(PlaylistOptions {
            crossfade_ms: 150,
            ..PlaylistOptions::default()
        });
        pl.set_cycle(-1);
        pl.set_tracks(vec![b.clone(), a.clone()]);
        pl.play(0).unwrap();
        let events = run(&mut pl, 120);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, PlaylistEvent::TrackStarted { index: 1, .. })),
            "{events:?}"
        );
        assert_eq!(pl.current_index(), Some(0));
    }
}
