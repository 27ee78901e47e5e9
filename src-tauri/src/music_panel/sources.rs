//! The music panel's sources beside the deck: the PCM socket, the capture device, the pad
//! bank and the cue output (methods of the panel's state, `super::Inner`).

use std::path::Path;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use onmic_audio::engine::Control;
use onmic_audio::music::capture::CaptureSource;
use onmic_audio::music::cue::CueOutput;
use onmic_audio::music::pads::{PadBank, PadRoute};
use onmic_audio::music::socket::SocketInput;
use onmic_audio::music::{
    MusicCommand, MusicPlayer, MusicSource, PcmInjector, PlayOptions, PlayerState,
};
use onmic_audio::streams::StreamRequest;

use super::{
    Capture, Cue, CueAction, Cued, Inner, MAX_PAD_BYTES, PADS, Pads, Pcm, Pick, err, locked,
    not_live,
};
use crate::error::{AppError, AppErrorKind};

impl Inner {
    pub(super) fn start_pcm(&mut self) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let pcm = self.settings.pcm;
        let (mut injector, voice) = PcmInjector::new(pcm.local_playback);
        injector.set_publish_volume(self.settings.publish_volume / 100.0);
        injector.set_playout_volume(self.settings.playout_volume / 100.0);
        injector.set_publish(!self.settings.loopback);
        match SocketInput::bind_tcp(([127, 0, 0, 1], pcm.port).into(), injector) {
            Ok(input) => {
                engine.send(vec![Control::AddMusic(voice)]);
                self.pcm_error = None;
                self.pcm = Some(Pcm {
                    input,
                    last_frames: 0,
                    receiving_until: Instant::now(),
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

    pub(super) fn stop_pcm(&mut self) {
        // Stopping the input drops its injector, which ends the voice in the engine.
        if let Some(pcm) = self.pcm.take() {
            drop(pcm.input.stop());
        }
    }

    pub(super) fn start_capture(&mut self) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let c = self.settings.capture.clone();
        if !c.enabled {
            return;
        }
        let Some(device) = c.device else {
            self.capture_error = Some("Pick the capture device to play as music.".into());
            return;
        };
        let req = device_request(&device);
        match CaptureSource::open(&req, c.local_playback) {
            Ok((source, voice)) => {
                source.set_publish_volume(self.settings.publish_volume / 100.0);
                source.set_playout_volume(self.settings.playout_volume / 100.0);
                source.set_publish(!self.settings.loopback);
                source.set_replace(self.settings.replace);
                engine.send(vec![Control::AddMusic(voice)]);
                self.capture_error = None;
                self.capture = Some(Capture {
                    source,
                    last_frames: 0,
                    receiving_until: Instant::now(),
                });
            }
            Err(e) => {
                self.capture_error = Some(format!(
                    "Cannot capture from {device}: {e}. Pick another input."
                ));
            }
        }
    }

    pub(super) fn stop_capture(&mut self) {
        // Dropping the source closes the device and ends its voice.
        self.capture = None;
    }

    /// The pad bank for a new session: its voice goes to the engine, the clips decoded so far
    /// are loaded; the others are decoded on a worker thread.
    pub(super) fn start_pads(&mut self, inner: Weak<Mutex<Inner>>) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let (mut bank, voice) = PadBank::new();
        bank.set_publish_volume(self.settings.publish_volume / 100.0);
        bank.set_playout_volume(self.settings.playout_volume / 100.0);
        engine.send(vec![Control::AddMusic(voice)]);
        self.pads = Some(Pads {
            bank,
            ids: [None; PADS],
            sounding: [0; PADS],
        });
        let missing: Vec<(usize, String)> = (0..PADS)
            .filter_map(|i| {
                if self.clips[i].is_some() {
                    self.load_pad(i);
                    return None;
                }
                Some((i, self.settings.pads.get(i)?.path.clone()?))
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        let _ = std::thread::Builder::new()
            .name("onmic-pad-clips".into())
            .spawn(move || {
                for (i, path) in missing {
                    let clip = decode_clip(Path::new(&path));
                    let Some(inner) = inner.upgrade() else {
                        return;
                    };
                    let mut g = locked(&inner);
                    // Only if the pad still holds that file.
                    if g.settings.pads.get(i).and_then(|p| p.path.as_deref()) != Some(&path) {
                        continue;
                    }
                    match clip {
                        Ok(pcm) => {
                            g.clips[i] = Some(pcm);
                            g.load_pad(i);
                        }
                        Err(e) => g.error = Some(e.message),
                    }
                }
            });
    }

    /// Loads panel pad `i`'s decoded clip into the live bank (replacing what it held).
    pub(super) fn load_pad(&mut self, i: usize) {
        let (Some(pads), Some(slot)) = (self.pads.as_mut(), self.settings.pads.get(i)) else {
            return;
        };
        if let Some(old) = pads.ids[i].take() {
            pads.bank.remove(old);
        }
        if let Some(pcm) = self.clips[i].clone() {
            match pads.bank.load_pcm(&slot.name, pcm) {
                Ok(id) => pads.ids[i] = Some(id),
                Err(e) => self.error = Some(format!("Pad {}: {e}", i + 1)),
            }
        }
    }

    pub(super) fn fire_pad(&mut self, i: usize) -> Result<(), AppError> {
        self.engine()?;
        let publish = self.settings.pads.get(i).is_some_and(|p| p.publish);
        let pads = self.pads.as_mut().ok_or_else(not_live)?;
        let id = pads.ids[i].ok_or_else(|| {
            err(
                AppErrorKind::InvalidInput,
                format!("Pad {} has no clip loaded; assign one first.", i + 1),
            )
        })?;
        pads.bank
            .fire(
                id,
                PadRoute {
                    publish,
                    local: true,
                },
            )
            .map_err(|e| err(AppErrorKind::Internal, e.to_string()))?;
        Ok(())
    }

    /// Opens the cue output on the chosen device if it is not open there yet.
    pub(super) fn cue_output(&mut self) -> Result<&mut Cue, AppError> {
        let Some(device) = self.settings.cue.device.clone() else {
            return Err(err(
                AppErrorKind::InvalidInput,
                "Pick a cue output (your headphones) first.",
            ));
        };
        if self.cue.as_ref().is_some_and(|c| c.device != device) {
            self.close_cue();
        }
        if self.cue.is_none() {
            let req = device_request(&device);
            let output = CueOutput::open(&req).map_err(|e| {
                let m = format!("Cannot open the cue output {device}: {e}. Pick another output.");
                self.cue_error = Some(m.clone());
                err(AppErrorKind::DeviceNotFound, m)
            })?;
            self.cue_error = None;
            self.cue = Some(Cue { output, device });
        }
        Ok(self.cue.as_mut().expect("the cue was opened above"))
    }

    pub(super) fn close_cue(&mut self) {
        if let Some(mut c) = self.cued.take() {
            c.player.stop();
        }
        self.cue = None;
    }

    /// Pre-listens `pick` on the cue (replacing what was cued).
    pub(super) fn cue_pick(&mut self, pick: Pick, index: Option<usize>) -> Result<(), AppError> {
        let options = PlayOptions {
            cycle: 1,
            ..self.settings.play_options(0)
        };
        let (player, voice) = MusicPlayer::open(&pick.source, options)
            .map_err(|e| err(AppErrorKind::InvalidInput, format!("{}: {e}", pick.title)))?;
        let cue = self.cue_output()?;
        cue.output
            .add(voice)
            .map_err(|e| err(AppErrorKind::DeviceBusy, e.to_string()))?;
        if let Some(mut old) = self.cued.take() {
            old.player.stop();
        }
        self.cued = Some(Cued {
            player,
            pick,
            index,
        });
        Ok(())
    }

    pub(super) fn cue_action(&mut self, action: CueAction) -> Result<(), AppError> {
        let Some(c) = self.cued.as_mut() else {
            return Err(err(
                AppErrorKind::InvalidInput,
                "Nothing is cued: press Cue on a playlist entry or a location first.",
            ));
        };
        match action {
            CueAction::Pause => c.player.pause(),
            CueAction::Resume => c.player.resume(),
            CueAction::Stop => {
                c.player.stop();
                self.cued = None;
            }
            CueAction::Seek { position_ms } => {
                let to = u64::from(position_ms).min(c.player.duration_ms().unwrap_or(u64::MAX));
                c.player.seek(to);
            }
            CueAction::Take => self.take_cued()?,
        }
        Ok(())
    }

    /// Takes the cued track off the cue and puts it on air where it is.
    pub(super) fn take_cued(&mut self) -> Result<(), AppError> {
        self.engine()?;
        let Some(c) = self.cued.take() else {
            return Ok(());
        };
        if matches!(
            c.player.state(),
            PlayerState::Stopped | PlayerState::Finished | PlayerState::Failed
        ) {
            return Err(err(
                AppErrorKind::InvalidInput,
                "The cued track has ended; cue it again.",
            ));
        }
        let id = c.player.id();
        let cue = self.cue.as_mut().ok_or_else(|| {
            err(
                AppErrorKind::InvalidInput,
                "The cue output is closed; cue the track again.",
            )
        })?;
        cue.output
            .take(id)
            .map_err(|e| err(AppErrorKind::DeviceBusy, e.to_string()))?;
        let Some(voice) = cue.output.wait_taken(id, Duration::from_millis(500)) else {
            return Err(err(
                AppErrorKind::DeviceBusy,
                "The cue output did not hand the track back; try again.",
            ));
        };
        // An entry still in the list plays as that entry (what follows it follows).
        let index = c.index.filter(|i| {
            self.settings
                .playlist
                .get(*i)
                .is_some_and(|l| source_matches(l, &c.pick.source))
        });
        self.playlist
            .play_opened(index, c.pick.title.clone(), c.player, voice)
            .map_err(|e| err(AppErrorKind::InvalidInput, e.to_string()))?;
        // The track was opened with the settings of when it was cued: bring it to today's.
        for cmd in [
            MusicCommand::SetPublishVolume {
                volume: self.settings.publish_volume / 100.0,
            },
            MusicCommand::SetPlayoutVolume {
                volume: self.settings.playout_volume / 100.0,
            },
            MusicCommand::SetLoopback {
                loopback: self.settings.loopback,
            },
            MusicCommand::SetReplace {
                replace: self.settings.replace,
            },
        ] {
            self.playlist.command(cmd);
        }
        self.error = None;
        self.follow_deck(Some(c.pick));
        self.poll_playlist();
        Ok(())
    }
}

/// Whether a playlist entry's text names `source`.
fn source_matches(location: &str, source: &MusicSource) -> bool {
    let l = location.trim();
    match source {
        MusicSource::Url(u) => u == l,
        MusicSource::File(p) => p == Path::new(l),
        MusicSource::Memory(_) => false,
    }
}

/// Reads and decodes a pad clip to 48 kHz stereo, checking size and length.
pub(super) fn decode_clip(path: &Path) -> Result<Vec<f32>, AppError> {
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
    let pre =
        onmic_audio::music::decode_to_48k(&MusicSource::File(path.to_owned())).map_err(|e| {
            err(
                AppErrorKind::InvalidInput,
                format!("{}: {e}", path.display()),
            )
        })?;
    // The bank's own checks (length, samples), on a scratch bank: the same rules as live.
    let (mut scratch, _voice) = PadBank::new();
    scratch.load_pcm("check", pre.pcm.clone()).map_err(|e| {
        err(
            AppErrorKind::InvalidInput,
            format!("{}: {e}", path.display()),
        )
    })?;
    Ok(pre.pcm)
}

/// How the cue output and the capture source open their device: 48 kHz stereo with a 10 ms
/// period (the request the engine's device tests use on PulseAudio; the backend's defaults were
/// refused there with "Invalid argument").
fn device_request(device: &str) -> StreamRequest {
    StreamRequest {
        id: Some(device.to_owned()),
        sample_rate: Some(48_000),
        channels: Some(2),
        buffer_frames: Some(480),
    }
}
