//! Tauri commands: validate, call a service, map errors to [`AppError`]. Nothing else.

use tauri::State;
use tauri::ipc::Channel;

use crate::Studio;
use crate::audio_settings::AudioSettings;
use crate::error::AppError;
use crate::local_room::LocalRoomView;
use crate::meter_service::MeterFrame;
use crate::room_session::{HostAction, JoinRequest, LiveMeters, RoomStatus, Target};
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
/// remembers the choice. Opening a device can take a while (PulseAudio acks a null sink
/// monitor's start only when the sink's thread wakes, up to 2 s here; a Bluetooth headset
/// switches profile): the command is `async`, so it does not run on the window's main thread as
/// a plain command would, and it tells the runtime its worker blocks meanwhile.
#[tauri::command]
#[specta::specta]
pub async fn start_meter(
    studio: State<'_, Studio>,
    device_id: Option<String>,
    on_level: Channel<MeterFrame>,
) -> Result<DeviceView, AppError> {
    tokio::task::block_in_place(|| {
        let device = studio.meter.start(device_id.clone(), on_level)?;
        if device_id.is_some() {
            studio.settings.update(|s| s.input_device = device_id)?;
            // Channels the new input does not have go back to its first two.
            let now = studio.settings.get();
            if now.audio.input_channels.is_some()
                && check_input_channels(now.input_device.as_deref(), &now.audio).is_err()
            {
                studio.settings.update(|s| s.audio.input_channels = None)?;
            }
        }
        Ok(device)
    })
}

/// Stops the meter and waits for its stream to close (off the main thread, as
/// [`start_meter`]).
#[tauri::command]
#[specta::specta]
pub async fn stop_meter(studio: State<'_, Studio>) -> Result<(), AppError> {
    tokio::task::block_in_place(|| studio.meter.stop());
    Ok(())
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

/// Whether the web view has a GPU to draw with (`render_mode.rs`): without one the UI draws
/// still indicators instead of endless animations.
#[tauri::command]
#[specta::specta]
pub fn render_mode() -> crate::render_mode::RenderMode {
    crate::render_mode::detect()
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

/// Joins a room and goes live: in the local room without a token (the Studio is the owner),
/// elsewhere with the token the room's operator issued. The owner takes seat 0; the engine
/// publishes the chosen input and plays everyone on a seat. Status changes stream to
/// `on_status`.
#[tauri::command]
#[specta::specta]
pub async fn join_room(
    studio: State<'_, Studio>,
    request: JoinRequest,
    on_status: Channel<RoomStatus>,
    on_meters: Channel<LiveMeters>,
) -> Result<RoomStatus, AppError> {
    let room = request.room.trim().to_owned();
    if room.is_empty() {
        return Err(AppError::new(
            crate::error::AppErrorKind::InvalidInput,
            "Name the room to join, e.g. studio.",
        ));
    }
    let (server_url, token) = match request.token.map(|t| t.trim().to_owned()) {
        Some(token) if !token.is_empty() => (studio.probe.url(), token),
        _ => crate::room_admin::owner_token(&studio, &room).await?,
    };
    let mut settings = studio.settings.get();
    studio.music.on_leave();
    // The engine captures the input from now on, and its Input strip shows the level.
    studio.meter.pause();
    let catalog = (server_url.clone(), token.clone());
    // Push-to-talk starts with the voice muted until its key is held.
    settings.audio = studio
        .shortcuts
        .effective(&settings.audio, &settings.shortcuts);
    let status = studio
        .session
        .join(
            Target {
                server_url,
                room,
                token,
            },
            settings.input_device,
            settings.audio,
            move |status| {
                if let Err(e) = on_status.send(status.clone()) {
                    tracing::warn!("cannot tell the UI about the room: {e}");
                }
            },
            move |meters| {
                // The window may be closing; the next frame tries again.
                let _ = on_meters.send(meters);
            },
        )
        .await
        .inspect_err(|_| tokio::task::block_in_place(|| studio.meter.resume()))?;
    // The effects and music panels come on air with the session.
    crate::effects_panel::apply_live(&studio, &settings.effects.current).await?;
    if let Some(engine) = studio.session.control_sender().await {
        studio
            .music
            .on_join(engine, catalog.0, catalog.1, &settings.music);
    }
    Ok(status)
}

/// Leaves the room and stops sending.
#[tauri::command]
#[specta::specta]
pub async fn leave_room(studio: State<'_, Studio>) -> Result<(), AppError> {
    studio.music.on_leave();
    studio.session.leave().await;
    // Opens the input again: may take a while (see `start_meter`).
    tokio::task::block_in_place(|| studio.meter.resume());
    Ok(())
}

/// The live session, if any.
#[tauri::command]
#[specta::specta]
pub async fn room_status(studio: State<'_, Studio>) -> Result<Option<RoomStatus>, AppError> {
    Ok(studio.session.status().await)
}

/// A link to the room's listener page with a fresh audience token (local room only).
#[tauri::command]
#[specta::specta]
pub async fn listener_link(studio: State<'_, Studio>, room: String) -> Result<String, AppError> {
    studio.local_room.listener_link(room.trim()).await
}

/// A host action in the room (seat admin, applications, audience, chat, notice, dismiss).
#[tauri::command]
#[specta::specta]
pub async fn room_action(
    studio: State<'_, Studio>,
    action: HostAction,
) -> Result<RoomStatus, AppError> {
    studio.session.act(action).await
}

/// Forgets a safety alert.
#[tauri::command]
#[specta::specta]
pub async fn dismiss_alert(
    studio: State<'_, Studio>,
    version: u32,
) -> Result<Option<RoomStatus>, AppError> {
    Ok(studio.session.dismiss_alert(version).await)
}

/// Changes the audio console (mode, processing, gain, mutes, output, ear monitor, speaker
/// volumes): saved at once, and applied live when on air.
#[tauri::command]
#[specta::specta]
pub async fn set_audio(
    studio: State<'_, Studio>,
    audio: AudioSettings,
) -> Result<Settings, AppError> {
    let audio = audio.clamped();
    if audio.input_channels != studio.settings.get().audio.input_channels {
        check_input_channels(studio.settings.get().input_device.as_deref(), &audio)?;
    }
    let settings = studio.settings.update(|s| s.audio = audio)?;
    let _serial = studio.shortcuts.apply.lock().await;
    let live = studio
        .shortcuts
        .effective(&settings.audio, &settings.shortcuts);
    studio.session.set_audio(&live).await;
    Ok(settings)
}

/// Refuses input channels the chosen input (`None`: the default) does not have, naming them.
fn check_input_channels(input: Option<&str>, audio: &AudioSettings) -> Result<(), AppError> {
    let (Some(pick), Some([l, r])) = (audio.input_pick(), audio.input_channels) else {
        return Ok(());
    };
    let list = onmic_audio::list_devices()?;
    let Some(device) = list.input(input) else {
        return Ok(());
    };
    pick.check(device.channels).map_err(|_| {
        AppError::new(
            crate::error::AppErrorKind::InvalidInput,
            format!(
                "Channels {l} and {r} need an input with at least {} channels; {} has {}. \
                 Pick channels it has, or another input.",
                pick.device_channels(),
                device.name,
                device.channels
            ),
        )
    })
}

/// Puts every setting back to its default (the room choice stays) and applies it live.
#[tauri::command]
#[specta::specta]
pub async fn reset_settings(studio: State<'_, Studio>) -> Result<Settings, AppError> {
    let settings = studio.settings.reset()?;
    if let Some(app) = studio.shortcuts.app.get() {
        crate::shortcuts::register(app, &settings.shortcuts);
    }
    {
        let _serial = studio.shortcuts.apply.lock().await;
        let live = studio
            .shortcuts
            .effective(&settings.audio, &settings.shortcuts);
        studio.session.set_audio(&live).await;
    }
    crate::effects_panel::apply_live(&studio, &settings.effects.current).await?;
    studio.music.apply(&settings.music);
    Ok(settings)
}
