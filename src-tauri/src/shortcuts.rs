//! Keyboard shortcuts: a mute toggle (flips *Mute voice*) and push-to-talk (while on, the voice
//! is muted except while the key is held). Global where the OS lets us grab keys
//! (`tauri-plugin-global-shortcut`: X11, Windows, macOS); the window also listens for the same
//! keys itself, so a shortcut still works while the Studio is focused when the global grab failed
//! (Wayland, a key another program holds). The UI says which applies.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use specta::Type;

use crate::audio_settings::AudioSettings;
use crate::error::{AppError, AppErrorKind};

/// The shortcut settings, saved with the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct ShortcutSettings {
    /// The key that toggles *Mute voice* (`None`: no shortcut), e.g. `Ctrl+Shift+M`.
    pub mute_toggle: Option<String>,
    /// Push-to-talk on: the voice is muted except while [`Self::push_to_talk_key`] is held.
    pub push_to_talk: bool,
    /// The push-to-talk key, e.g. `F9`.
    pub push_to_talk_key: Option<String>,
}

impl Default for ShortcutSettings {
    fn default() -> Self {
        Self {
            mute_toggle: Some("Ctrl+Shift+M".into()),
            push_to_talk: false,
            push_to_talk_key: Some("F9".into()),
        }
    }
}

/// The two shortcut actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum ShortcutAction {
    /// Toggle *Mute voice*.
    MuteToggle,
    /// Push-to-talk.
    PushToTalk,
}

/// How a shortcut is registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Registration {
    /// No key set (or push-to-talk off).
    Off,
    /// Works in any application.
    Global,
    /// The OS refused a global grab: works only while the Studio window is focused.
    InWindow {
        /// Why the global grab failed.
        reason: String,
    },
}

/// What the shortcuts do now; sent to the UI after every change and every key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type, tauri_specta::Event)]
#[serde(rename_all = "camelCase")]
pub struct ShortcutStatus {
    /// The mute toggle's registration.
    pub mute_toggle: Registration,
    /// The push-to-talk key's registration.
    pub push_to_talk: Registration,
    /// The push-to-talk key is held now.
    pub ptt_held: bool,
    /// *Mute voice* as saved (the mute toggle flips it).
    pub voice_muted: bool,
}

/// Keys that type something: alone they would be stolen from every other program.
fn types_text(code: &str) -> bool {
    code.starts_with("Key")
        || code.starts_with("Digit")
        || matches!(
            code,
            "Space"
                | "Enter"
                | "Backspace"
                | "Tab"
                | "Minus"
                | "Equal"
                | "Comma"
                | "Period"
                | "Slash"
                | "Semicolon"
                | "Quote"
                | "BracketLeft"
                | "BracketRight"
                | "Backslash"
                | "Backquote"
        )
}

/// Checks a shortcut typed or recorded by the user and writes it the one way the UI shows and
/// matches it: `Ctrl+Alt+Shift+Super+KEY`, with `KeyM` as `M` and `Digit1` as `1`.
pub fn normalize(text: &str) -> Result<String, AppError> {
    use tauri_plugin_global_shortcut::{Modifiers, Shortcut};
    let parsed: Shortcut = text.trim().parse().map_err(|e| {
        AppError::new(
            AppErrorKind::InvalidInput,
            format!("“{text}” is not a shortcut ({e}); write it like Ctrl+Shift+M or F9"),
        )
    })?;
    let code = parsed.key.to_string();
    let no_modifier = (parsed.mods
        & (Modifiers::CONTROL | Modifiers::ALT | Modifiers::SUPER | Modifiers::SHIFT))
        .is_empty();
    if no_modifier && types_text(&code) {
        return Err(AppError::new(
            AppErrorKind::InvalidInput,
            format!(
                "“{text}” alone would stop you typing it in any program: add Ctrl, Alt or \
                 Shift, or use a key such as F9"
            ),
        ));
    }
    let mut out = String::new();
    for (m, name) in [
        (Modifiers::CONTROL, "Ctrl+"),
        (Modifiers::ALT, "Alt+"),
        (Modifiers::SHIFT, "Shift+"),
        (Modifiers::SUPER, "Super+"),
    ] {
        if parsed.mods.contains(m) {
            out.push_str(name);
        }
    }
    let key = code
        .strip_prefix("Key")
        .or_else(|| code.strip_prefix("Digit"))
        .unwrap_or(&code);
    out.push_str(key);
    Ok(out)
}

impl ShortcutSettings {
    /// Normalises both keys (see [`normalize`]); the same key for both is refused.
    pub fn validated(self) -> Result<Self, AppError> {
        let fix = |k: Option<String>| -> Result<Option<String>, AppError> {
            match k.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(k) => normalize(k).map(Some),
            }
        };
        let out = Self {
            mute_toggle: fix(self.mute_toggle)?,
            push_to_talk: self.push_to_talk,
            push_to_talk_key: fix(self.push_to_talk_key)?,
        };
        if out.mute_toggle.is_some() && out.mute_toggle == out.push_to_talk_key {
            return Err(AppError::new(
                AppErrorKind::InvalidInput,
                "The mute toggle and push-to-talk need different keys.",
            ));
        }
        Ok(out)
    }

    /// A file edited by hand may hold anything: keep what is valid, drop the rest.
    pub fn sanitized(self) -> Self {
        let keep = |k: Option<String>| k.and_then(|k| normalize(&k).ok());
        let mut out = Self {
            mute_toggle: keep(self.mute_toggle),
            push_to_talk: self.push_to_talk,
            push_to_talk_key: keep(self.push_to_talk_key),
        };
        if out.mute_toggle.is_some() && out.mute_toggle == out.push_to_talk_key {
            out.push_to_talk_key = None;
        }
        out
    }
}

/// A global press within this long of an in-window press of the same toggle is the same press
/// seen twice (possible where both the grab and the window see the key).
const SAME_PRESS: Duration = Duration::from_millis(150);

/// The shortcuts' runtime state.
#[derive(Debug)]
pub struct ShortcutService {
    ptt_held: AtomicBool,
    last_toggle: Mutex<Option<Instant>>,
    registration: Mutex<(Registration, Registration)>,
    /// Serialises a key's read-modify-apply so a quick press and release arrive in order.
    pub(crate) apply: tokio::sync::Mutex<()>,
    /// The app, for registering keys and telling the UI (set once at start).
    pub app: std::sync::OnceLock<tauri::AppHandle>,
}

impl Default for ShortcutService {
    fn default() -> Self {
        Self {
            ptt_held: AtomicBool::new(false),
            last_toggle: Mutex::new(None),
            registration: Mutex::new((Registration::Off, Registration::Off)),
            apply: tokio::sync::Mutex::new(()),
            app: std::sync::OnceLock::new(),
        }
    }
}

impl ShortcutService {
    /// The audio settings the engine gets: `audio`, with the voice muted while push-to-talk is
    /// on and its key is not held.
    pub fn effective(&self, audio: &AudioSettings, shortcuts: &ShortcutSettings) -> AudioSettings {
        let mut a = audio.clone();
        if shortcuts.push_to_talk
            && shortcuts.push_to_talk_key.is_some()
            && !self.ptt_held.load(Ordering::SeqCst)
        {
            a.voice_muted = true;
        }
        a
    }

    /// Notes a key; returns whether the mute toggle should flip (a press not seen already).
    pub fn note(&self, action: ShortcutAction, pressed: bool) -> bool {
        match action {
            ShortcutAction::PushToTalk => {
                self.ptt_held.store(pressed, Ordering::SeqCst);
                false
            }
            ShortcutAction::MuteToggle => {
                if !pressed {
                    return false;
                }
                let mut last = self
                    .last_toggle
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                if last.is_some_and(|t| now.duration_since(t) < SAME_PRESS) {
                    return false;
                }
                *last = Some(now);
                true
            }
        }
    }

    /// The status for the UI.
    pub fn status(&self, voice_muted: bool) -> ShortcutStatus {
        let r = self
            .registration
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        ShortcutStatus {
            mute_toggle: r.0,
            push_to_talk: r.1,
            ptt_held: self.ptt_held.load(Ordering::SeqCst),
            voice_muted,
        }
    }

    fn set_registration(&self, mute: Registration, ptt: Registration) {
        *self
            .registration
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (mute, ptt);
    }
}

/// Registers `settings`' keys globally (replacing earlier ones) and records how each went.
pub fn register<R: tauri::Runtime>(app: &tauri::AppHandle<R>, settings: &ShortcutSettings) {
    use tauri::Manager;
    use tauri_plugin_global_shortcut::GlobalShortcutExt;
    let studio = app.state::<crate::Studio>();
    let service = &studio.shortcuts;
    if app
        .try_state::<tauri_plugin_global_shortcut::GlobalShortcut<R>>()
        .is_none()
    {
        let reason = "global shortcuts are not available on this system".to_owned();
        let r = |on: bool| {
            if on {
                Registration::InWindow {
                    reason: reason.clone(),
                }
            } else {
                Registration::Off
            }
        };
        service.set_registration(
            r(settings.mute_toggle.is_some()),
            r(settings.push_to_talk && settings.push_to_talk_key.is_some()),
        );
        return;
    }
    let gs = app.global_shortcut();
    if let Err(e) = gs.unregister_all() {
        tracing::warn!("could not release the previous global shortcuts: {e}");
    }
    // Releasing push-to-talk's key must not leave it "held".
    service.note(ShortcutAction::PushToTalk, false);
    let one = |key: Option<&String>, action: ShortcutAction| -> Registration {
        let Some(key) = key else {
            return Registration::Off;
        };
        let result = gs.on_shortcut(key.as_str(), move |app, _, event| {
            let pressed = event.state == tauri_plugin_global_shortcut::ShortcutState::Pressed;
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                let studio = app.state::<crate::Studio>();
                fire(studio.shortcuts.app.get(), &studio, action, pressed).await;
            });
        });
        match result {
            Ok(()) => Registration::Global,
            Err(e) => {
                tracing::info!(%key, "global shortcut refused ({e}); it works in the window");
                Registration::InWindow {
                    reason: format!("the system refused a global {key} ({e})"),
                }
            }
        }
    };
    let mute = one(settings.mute_toggle.as_ref(), ShortcutAction::MuteToggle);
    let ptt = if settings.push_to_talk {
        one(
            settings.push_to_talk_key.as_ref(),
            ShortcutAction::PushToTalk,
        )
    } else {
        Registration::Off
    };
    service.set_registration(mute, ptt);
}

/// A shortcut's key went down or up (from the global grab or from the window): applies it and
/// tells the UI.
pub async fn fire(
    app: Option<&tauri::AppHandle>,
    studio: &crate::Studio,
    action: ShortcutAction,
    pressed: bool,
) -> ShortcutStatus {
    use tauri_specta::Event;
    let _serial = studio.shortcuts.apply.lock().await;
    let flip = studio.shortcuts.note(action, pressed);
    let settings = if flip {
        match studio
            .settings
            .update(|s| s.audio.voice_muted = !s.audio.voice_muted)
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("the mute shortcut could not save: {e}");
                studio.settings.get()
            }
        }
    } else {
        studio.settings.get()
    };
    let audio = studio
        .shortcuts
        .effective(&settings.audio, &settings.shortcuts);
    studio.session.set_audio(&audio).await;
    let status = studio.shortcuts.status(settings.audio.voice_muted);
    if let Some(app) = app
        && let Err(e) = status.clone().emit(app)
    {
        tracing::warn!("cannot tell the UI about the shortcut: {e}");
    }
    status
}

/// Saves the shortcut settings (checked and normalised), registers them and applies
/// push-to-talk's mute at once.
#[tauri::command]
#[specta::specta]
pub async fn set_shortcuts(
    studio: tauri::State<'_, crate::Studio>,
    shortcuts: ShortcutSettings,
) -> Result<crate::settings::Settings, AppError> {
    let shortcuts = shortcuts.validated()?;
    let settings = studio.settings.update(|s| s.shortcuts = shortcuts)?;
    if let Some(app) = studio.shortcuts.app.get() {
        register(app, &settings.shortcuts);
    }
    let _serial = studio.shortcuts.apply.lock().await;
    let audio = studio
        .shortcuts
        .effective(&settings.audio, &settings.shortcuts);
    studio.session.set_audio(&audio).await;
    Ok(settings)
}

/// How the shortcuts are registered and whether push-to-talk is held.
#[tauri::command]
#[specta::specta]
pub fn shortcut_status(studio: tauri::State<'_, crate::Studio>) -> ShortcutStatus {
    studio
        .shortcuts
        .status(studio.settings.get().audio.voice_muted)
}

/// A shortcut's key seen by the window itself (the fallback when the global grab failed).
#[tauri::command]
#[specta::specta]
pub async fn shortcut_key(
    studio: tauri::State<'_, crate::Studio>,
    action: ShortcutAction,
    pressed: bool,
) -> Result<ShortcutStatus, AppError> {
    Ok(fire(studio.shortcuts.app.get(), &studio, action, pressed).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_are_normalised_and_typing_keys_need_a_modifier() {
        for (typed, want) in [
            ("ctrl+shift+m", "Ctrl+Shift+M"),
            ("Shift+Control+KeyM", "Ctrl+Shift+M"),
            ("F9", "F9"),
            ("alt+Digit1", "Alt+1"),
            ("CmdOrCtrl+Space", "Ctrl+Space"),
        ] {
            match normalize(typed) {
                Ok(got) => assert_eq!(got, want, "{typed}"),
                // CmdOrCtrl is Super on macOS.
                Err(e) if typed.starts_with("CmdOrCtrl") && cfg!(target_os = "macos") => {
                    panic!("{e}")
                }
                Err(e) => panic!("{typed}: {e}"),
            }
        }
        for bad in [
            "",
            "M",
            "Space",
            "Ctrl+",
            "Ctrl+Shift",
            "Ctrl+M+K",
            "Hyper+Q",
        ] {
            let e = normalize(bad).expect_err(bad);
            assert_eq!(e.kind, AppErrorKind::InvalidInput, "{bad}");
        }
        // Normalised text parses back to itself.
        assert_eq!(normalize("Ctrl+Shift+M").expect("ok"), "Ctrl+Shift+M");
    }

    #[test]
    fn the_same_key_twice_is_refused_and_a_bad_file_is_cleaned() {
        let same = ShortcutSettings {
            mute_toggle: Some("F9".into()),
            push_to_talk: true,
            push_to_talk_key: Some("f9".into()),
        };
        assert!(same.clone().validated().is_err());
        let cleaned = same.sanitized();
        assert_eq!(cleaned.mute_toggle.as_deref(), Some("F9"));
        assert_eq!(cleaned.push_to_talk_key, None);
        let junk = ShortcutSettings {
            mute_toggle: Some("nonsense+++".into()),
            push_to_talk: true,
            push_to_talk_key: Some(" ".into()),
        }
        .sanitized();
        assert_eq!(junk.mute_toggle, None);
        assert_eq!(junk.push_to_talk_key, None);
    }

    #[test]
    fn push_to_talk_mutes_the_voice_unless_held_and_a_double_press_toggles_once() {
        let s = ShortcutService::default();
        let audio = AudioSettings::default();
        let mut keys = ShortcutSettings::default();
        assert!(!s.effective(&audio, &keys).voice_muted, "push-to-talk off");
        keys.push_to_talk = true;
        assert!(s.effective(&audio, &keys).voice_muted, "not held");
        s.note(ShortcutAction::PushToTalk, true);
        assert!(!s.effective(&audio, &keys).voice_muted, "held");
        s.note(ShortcutAction::PushToTalk, false);
        assert!(s.effective(&audio, &keys).voice_muted, "released");
        // A muted voice stays muted while the key is held.
        let muted = AudioSettings {
            voice_muted: true,
            ..AudioSettings::default()
        };
        s.note(ShortcutAction::PushToTalk, true);
        assert!(s.effective(&muted, &keys).voice_muted);

        assert!(s.note(ShortcutAction::MuteToggle, true));
        assert!(
            !s.note(ShortcutAction::MuteToggle, true),
            "seen twice at once"
        );
        assert!(!s.note(ShortcutAction::MuteToggle, false), "release");
        std::thread::sleep(SAME_PRESS + Duration::from_millis(20));
        assert!(s.note(ShortcutAction::MuteToggle, true), "a new press");
    }
}
