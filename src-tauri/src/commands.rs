//! Tauri commands: validate, call a service, map errors to [`AppError`]. Nothing else.

use tauri::State;
use tauri::ipc::Channel;

use crate::Studio;
use crate::error::AppError;
use crate::local_room::LocalRoomView;
use crate::meter_service::MeterFrame;
use crate::server_probe::ServerStatus;
use crate::settings::{Settings, validate_server_url};
use crate::views::{DeviceListView, DeviceView};

/// Lists the audio devices.
#[tauri::command]
#[specta::specta]
pub fn list_devices() -> Result<DeviceListView, AppError> {
    Ok(DeviceListView::from(&onmic_audio::list_devices()?))
}

/// Starts metering `device_id` (the default input when null), streaming frames to `on_level`;
/// remembers the choice.
#[tauri::command]
#[specta::specta]
pub fn start_meter(
    studio: State<'_, Studio>,
    device_id: Option<String>,
    on_level: Channel<MeterFrame>,
) -> Result<DeviceView, AppError> {
    let device = studio.meter.start(device_id.clone(), on_level)?;
    if device_id.is_some() {
        studio.settings.update(|s| s.input_device = device_id)?;
    }
    Ok(device)
}

/// Stops the meter.
#[tauri::command]
#[specta::specta]
pub fn stop_meter(studio: State<'_, Studio>) {
    studio.meter.stop();
}

/// The current settings.
#[tauri::command]
#[specta::specta]
pub fn get_settings(studio: State<'_, Studio>) -> Settings {
    studio.settings.get()
}

/// Changes the room server's address and probes it at once.
#[tauri::command]
#[specta::specta]
pub fn set_server_url(studio: State<'_, Studio>, url: String) -> Result<Settings, AppError> {
    let url = validate_server_url(&url)?;
    let settings = studio.settings.update(|s| s.server_url = url.clone())?;
    studio.probe.set_url(url);
    Ok(settings)
}

/// Whether the room server answers, as last probed.
#[tauri::command]
#[specta::specta]
pub fn server_status(studio: State<'_, Studio>) -> ServerStatus {
    studio.probe.status()
}

/// The embedded local room, when it runs.
#[tauri::command]
#[specta::specta]
pub async fn local_room_status(
    studio: State<'_, Studio>,
) -> Result<Option<LocalRoomView>, AppError> {
    Ok(studio.local_room.view().await)
}

/// Starts or stops the embedded local room, remembers the choice, and points the server probe at
/// the room in use (the local one, or the configured server).
#[tauri::command]
#[specta::specta]
pub async fn set_local_room(
    studio: State<'_, Studio>,
    enabled: bool,
) -> Result<Option<LocalRoomView>, AppError> {
    let room = if enabled {
        let room = studio.local_room.start().await?;
        studio.probe.set_url(room.url.clone());
        Some(room)
    } else {
        studio.local_room.stop().await;
        studio.probe.set_url(studio.settings.get().server_url);
        None
    };
    studio.settings.update(|s| s.local_room = enabled)?;
    Ok(room)
}
