//! The one error type every command returns: a stable `kind` the UI can branch on and a message
//! that tells the user what to do.

use onmic_audio::DeviceError;
use serde::Serialize;
use specta::Type;

/// What went wrong, in categories the UI treats differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Type)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AppErrorKind {
    /// There is no audio input device at all.
    NoInputDevice,
    /// The chosen device is gone (unplugged) or never existed.
    DeviceNotFound,
    /// Another program holds the device; retrying may help.
    DeviceBusy,
    /// The OS denied microphone access.
    PermissionDenied,
    /// The audio system (PulseAudio, CoreAudio, WASAPI) is not reachable.
    AudioSystemUnavailable,
    /// The device refused the format.
    Unsupported,
    /// The request itself was invalid (a malformed URL, ...).
    InvalidInput,
    /// Joining or acting in a room failed (unreachable, refused, token, seat).
    Room,
    /// Settings could not be read or written.
    Settings,
    /// A bug or an unexpected backend failure.
    Internal,
}

/// An error as the UI receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Type, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// Category, for the UI's logic.
    pub kind: AppErrorKind,
    /// What happened and what to do, for the user.
    pub message: String,
}

impl AppError {
    /// An error of `kind` with `message`.
    pub fn new(kind: AppErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<DeviceError> for AppError {
    fn from(e: DeviceError) -> Self {
        let kind = match &e {
            DeviceError::NoInputDevice => AppErrorKind::NoInputDevice,
            DeviceError::NotFound { .. } => AppErrorKind::DeviceNotFound,
            DeviceError::Busy { .. } => AppErrorKind::DeviceBusy,
            DeviceError::PermissionDenied { .. } => AppErrorKind::PermissionDenied,
            DeviceError::HostUnavailable { .. } => AppErrorKind::AudioSystemUnavailable,
            DeviceError::Unsupported { .. } => AppErrorKind::Unsupported,
            _ => AppErrorKind::Internal,
        };
        Self::new(kind, capitalise(&e.to_string()))
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_errors_keep_their_kind_and_advice() {
        let e = AppError::from(DeviceError::NoInputDevice);
        assert_eq!(e.kind, AppErrorKind::NoInputDevice);
        assert!(
            e.message.starts_with("There is no audio input device"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("PulseAudio"),
            "the message says how to fix it: {}",
            e.message
        );
        let json = serde_json::to_value(&e).expect("serialises");
        assert_eq!(json["kind"], "no_input_device");
        let e = AppError::from(DeviceError::Busy { id: "x".into() });
        assert_eq!(e.kind, AppErrorKind::DeviceBusy);
    }
}
