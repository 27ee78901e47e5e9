//! The Studio's settings, persisted as JSON in the OS config directory and restored on start.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use specta::Type;

use crate::audio_settings::AudioSettings;
use crate::error::{AppError, AppErrorKind};
use crate::shortcuts::ShortcutSettings;

/// The server a fresh install probes: the local room server's default address.
pub const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:7600";

/// Everything the Studio remembers between runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    /// The input device the host picked last (`None`: the system default).
    pub input_device: Option<String>,
    /// Base URL of the room server.
    pub server_url: String,
    /// Run the embedded local room and talk to it instead of `server_url`.
    pub local_room: bool,
    /// The audio console: mode, processing, gain, mutes, output, ear monitor, speaker volumes.
    pub audio: AudioSettings,
    /// The effects panel: the current effects and the host's named presets.
    pub effects: crate::effects_panel::EffectsPanel,
    /// The music panel: volumes, routing, ducking, playlist, pads, PCM source.
    pub music: crate::music_panel::MusicSettings,

    /// Keyboard shortcuts (mute toggle, push-to-talk).
    pub shortcuts: ShortcutSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            input_device: None,
            server_url: DEFAULT_SERVER_URL.into(),
            local_room: false,
            audio: AudioSettings::default(),
            effects: Default::default(),
            music: Default::default(),

            shortcuts: ShortcutSettings::default(),
        }
    }
}

/// Loads and saves [`Settings`]; the file is rewritten whole, through a temporary file, so a
/// crash mid-write never leaves half a file.
#[derive(Debug)]
pub struct SettingsStore {
    path: PathBuf,
    current: Mutex<Settings>,
}

impl SettingsStore {
    /// Opens the settings at `path`. A missing file gives defaults; an unreadable one is kept
    /// aside as `settings.json.bad` (never silently lost) and defaults are used.
    /// `ONMIC_SERVER_URL`, when set, overrides the stored server URL for this run.
    pub fn open(path: PathBuf) -> Self {
        let mut settings = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), "settings unreadable ({e}); kept aside, using defaults");
                let _ = std::fs::rename(&path, path.with_extension("json.bad"));
                Settings::default()
            }),
            Err(_) => Settings::default(),
        };
        settings.audio = settings.audio.clamped();
        settings.effects = settings.effects.clamped();
        settings.music = settings.music.clamped();

        settings.shortcuts = settings.shortcuts.sanitized();
        if let Ok(url) = std::env::var("ONMIC_SERVER_URL") {
            settings.server_url = url;
        }
        Self {
            path,
            current: Mutex::new(settings),
        }
    }

    /// Where the settings live.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A copy of the current settings.
    pub fn get(&self) -> Settings {
        self.lock().clone()
    }

    /// Applies `change`, saves, and returns the new settings.
    pub fn update(&self, change: impl FnOnce(&mut Settings)) -> Result<Settings, AppError> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        change(&mut next);
        save(&self.path, &next)?;
        *guard = next.clone();
        Ok(next)
    }

    /// Puts every setting back to its default (keeping the server and local-room choice, which
    /// say where the host's room is), saves, and returns them.
    pub fn reset(&self) -> Result<Settings, AppError> {
        self.update(|s| {
            let mut fresh = Settings {
                server_url: s.server_url.clone(),
                local_room: s.local_room,
                ..Settings::default()
            };
            // The host's named effect presets, playlist and pads are their material, not
            // settings: a reset keeps them.
            fresh.effects.presets = std::mem::take(&mut s.effects.presets);
            fresh.music.playlist = std::mem::take(&mut s.music.playlist);
            fresh.music.pads = std::mem::take(&mut s.music.pads);
            *s = fresh
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Settings> {
        // A panic while holding the lock leaves valid settings behind: keep using them.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn save(path: &Path, settings: &Settings) -> Result<(), AppError> {
    let fail = |e: std::io::Error| {
        AppError::new(
            AppErrorKind::Settings,
            format!(
                "Could not save settings to {}: {e}. Check that the folder is writable.",
                path.display()
            ),
        )
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text = serde_json::to_vec_pretty(settings).map_err(|e| fail(std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Checks a server URL typed by the user: absolute `http`/`https` with a host.
pub fn validate_server_url(url: &str) -> Result<String, AppError> {
    let url = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        AppError::new(
            AppErrorKind::InvalidInput,
            format!("“{url}” is not a URL ({e}); write it like http://127.0.0.1:7600"),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(AppError::new(
            AppErrorKind::InvalidInput,
            format!(
                "“{url}” must start with http:// or https:// and name a host, like http://127.0.0.1:7600"
            ),
        ));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_survive_a_corrupt_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/settings.json");
        let store = SettingsStore::open(path.clone());
        assert_eq!(store.get(), Settings::default());
        store
            .update(|s| s.input_device = Some("pulseaudio:mic".into()))
            .expect("saves");
        let reopened = SettingsStore::open(path.clone());
        assert_eq!(
            reopened.get().input_device.as_deref(),
            Some("pulseaudio:mic")
        );

        std::fs::write(&path, b"{ not json").expect("corrupt it");
        let recovered = SettingsStore::open(path.clone());
        assert_eq!(recovered.get(), Settings::default());
        assert_eq!(
            std::fs::read(path.with_extension("json.bad")).expect("kept aside"),
            b"{ not json"
        );
    }

    #[test]
    fn audio_settings_persist_and_reset_to_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.json");
        let store = SettingsStore::open(path.clone());
        store
            .update(|s| {
                s.local_room = true;
                s.audio = AudioSettings {
                    ns: true,
                    input_gain_db: -6.0,
                    output_device: Some("pulse:speakers".into()),
                    ..AudioSettings::for_mode(crate::audio_settings::AudioMode::Voice)
                };
                s.audio.ear.enabled = true;
                s.audio.speaker_volumes.insert("guest".into(), 40.0);
            })
            .expect("saves");
        let back = SettingsStore::open(path.clone()).get();
        assert_eq!(back, store.get(), "everything comes back");
        let reset = store.reset().expect("reset");
        assert_eq!(reset.audio, AudioSettings::default());
        assert!(reset.local_room, "the room choice is kept");
        assert_eq!(SettingsStore::open(path).get(), reset, "reset is saved");
    }

    #[test]
    fn a_file_from_an_older_studio_or_with_wild_numbers_still_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.json");
        std::fs::write(
            &path,
            br#"{"serverUrl":"http://10.0.0.2:7600","audio":{"inputGainDb":99,"ear":{"volume":-5}}}"#,
        )
        .expect("write");
        let s = SettingsStore::open(path).get();
        assert_eq!(s.server_url, "http://10.0.0.2:7600");
        assert_eq!(s.audio.input_gain_db, 12.0);
        assert_eq!(s.audio.ear.volume, 0.0);
        assert!(!s.audio.aec, "missing fields take defaults");
    }

    /// Every leaf of the settings as JSON paths (`audio.ear.volume`); maps are leaves.
    fn leaves(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(v, &path, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    /// The restart test (`tests/e2e/studio_settings.rs`) must change and read back every
    /// setting: a field added to [`Settings`] fails here until that test covers it.
    #[test]
    fn the_restart_test_covers_every_setting() {
        let source = include_str!("../../tests/e2e/studio_settings.rs");
        let start = source
            .find("pub const COVERED: &[&str] = &[")
            .expect("the restart test lists what it covers in COVERED");
        let list = &source[start..];
        let list = &list[list.find('[').expect("[") + 1..];
        let list = &list[list.find('[').expect("[") + 1..list.find("];").expect("];")];
        let mut covered: Vec<String> = list
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        covered.sort();
        let mut fields = Vec::new();
        leaves(
            &serde_json::to_value(Settings::default()).expect("json"),
            "",
            &mut fields,
        );
        fields.sort();
        let missing: Vec<_> = fields.iter().filter(|f| !covered.contains(f)).collect();
        let stale: Vec<_> = covered.iter().filter(|f| !fields.contains(f)).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "tests/e2e/studio_settings.rs does not change and read back {missing:?} \
             (add them to COVERED and to the test), and lists {stale:?} that no longer exist"
        );
    }

    #[test]
    fn server_urls_are_checked() {
        assert_eq!(
            validate_server_url(" http://127.0.0.1:7600/ ").expect("ok"),
            "http://127.0.0.1:7600"
        );
        for bad in ["", "127.0.0.1:7600", "ftp://host", "http://", "not a url"] {
            let e = validate_server_url(bad).expect_err(bad);
            assert_eq!(e.kind, AppErrorKind::InvalidInput, "{bad}");
        }
    }
}
