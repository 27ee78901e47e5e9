//! Onmic Studio: the desktop app for voice-room hosts (Tauri 2).
//!
//! Layout: [`commands`] are thin Tauri commands; they call services ([`meter_service`],
//! [`server_probe`], [`settings`]) held in the managed [`Studio`] state; errors reach the UI as
//! one typed [`error::AppError`]. TypeScript bindings for every command, type and event are
//! generated from this crate (`cargo xtask bindings` writes `ui/src/bindings.ts`; a test fails
//! when the checked-in file is stale).
#![deny(unsafe_code)] // one module is allowed it: `webkit_features` (WebKitGTK's C API)

pub mod audio_settings;
pub mod commands;
pub mod effects_panel;
pub mod error;
pub mod local_room;
pub mod meter_service;
pub mod mic_test;
pub mod music_panel;
pub mod render_mode;
pub mod room_admin;
pub mod room_session;
pub mod room_view;
pub mod server_probe;
pub mod settings;
pub mod shortcuts;
pub mod stats;
pub mod views;
#[allow(unsafe_code)]
pub mod webkit_features;

use std::process::ExitCode;
use std::sync::Arc;

use specta_typescript::Typescript;
use tauri::Manager;
use tauri_specta::{Event, collect_commands, collect_events};

use local_room::LocalRoomService;
use meter_service::MeterService;
use room_session::RoomSessionService;
use server_probe::{ServerProbe, ServerStatus};
use settings::SettingsStore;

/// Everything the commands share.
pub struct Studio {
    /// The input level meter.
    pub meter: MeterService,
    /// Persisted settings.
    pub settings: SettingsStore,
    /// The room server's reachability.
    pub probe: Arc<ServerProbe>,
    /// The embedded local room.
    pub local_room: LocalRoomService,
    /// The live session in a room, if any.
    pub session: RoomSessionService,
    /// The music panel's decks, playlist, pads, catalog and PCM source.
    pub music: music_panel::MusicService,

    /// "Test my mic".
    pub mic_test: mic_test::MicTestService,
    /// Keyboard shortcuts' state.
    pub shortcuts: shortcuts::ShortcutService,
}

/// The typed command and event surface shared with the UI.
pub fn specta_builder<R: tauri::Runtime>() -> tauri_specta::Builder<R> {
    tauri_specta::Builder::<R>::new()
        .commands(collect_commands![
            commands::list_devices,
            commands::start_meter,
            commands::stop_meter,
            commands::get_settings,
            commands::set_server_url,
            commands::server_status,
            commands::render_mode,
            commands::local_room_status,
            commands::set_local_room,
            commands::join_room,
            commands::leave_room,
            commands::room_status,
            commands::listener_link,
            commands::room_action,
            commands::dismiss_alert,
            commands::set_audio,
            commands::reset_settings,
            effects_panel::effects_catalog,
            effects_panel::set_effects,
            effects_panel::effects_preset,
            effects_panel::eq_curve,
            music_panel::music_watch,
            music_panel::set_music,
            music_panel::music_open,
            music_panel::music_deck,
            music_panel::playlist_play,
            music_panel::song_search,
            music_panel::song_preload,
            music_panel::song_play,
            music_panel::pad_assign,
            music_panel::pad_fire,
            music_panel::music_cue,
            music_panel::music_cue_control,
            mic_test::test_mic,
            mic_test::cancel_mic_test,
            shortcuts::set_shortcuts,
            shortcuts::shortcut_status,
            shortcuts::shortcut_key,
            room_admin::set_server_credentials,
            room_admin::create_room,
            room_admin::share_link,
            room_admin::set_recording,
            room_admin::list_recordings,
            room_admin::open_recording,
        ])
        .events(collect_events![ServerStatus, shortcuts::ShortcutStatus])
}

/// Writes the TypeScript bindings to `path`.
pub fn export_bindings(path: &std::path::Path) -> Result<(), String> {
    specta_builder::<tauri::Wry>()
        .export(
            Typescript::default()
                .header("// Generated from Rust by `cargo xtask bindings`. Do not edit.\n/* eslint-disable */"),
            path,
        )
        .map_err(|e| e.to_string())
}

/// Why the window cannot open here, if that can be known before trying.
pub fn display_problem() -> Option<String> {
    if cfg!(target_os = "linux")
        && std::env::var_os("DISPLAY").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
    {
        return Some(
            "Onmic Studio needs a graphical display, and neither DISPLAY nor WAYLAND_DISPLAY is set.\n\
             On a desktop, start it from your session. On a headless machine, run it under a virtual \
             display:\n    xvfb-run -a cargo xtask run"
                .into(),
        );
    }
    None
}

/// How the window was asked to start.
#[derive(Clone, Copy, Debug, Default)]
pub struct Launch {
    /// Run the embedded local room for this run, whatever the settings say
    /// (`--local-room` or `ONMIC_LOCAL_ROOM=1`).
    pub local_room: bool,
}

/// The executable's entry point: `--export-bindings PATH` writes the TypeScript bindings and
/// exits; `--local-room` starts the embedded local room; otherwise the window opens.
pub fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut launch = Launch {
        local_room: std::env::var("ONMIC_LOCAL_ROOM").is_ok_and(|v| v == "1"),
    };
    args.retain(|a| {
        let flag = a == "--local-room";
        launch.local_room |= flag;
        !flag
    });
    if let Some(unknown) = args.first().filter(|a| a.as_str() != "--export-bindings") {
        eprintln!(
            "onmic-studio: unknown argument `{unknown}`; use --local-room or --export-bindings PATH"
        );
        return ExitCode::from(2);
    }
    if let [flag, path] = args.as_slice()
        && flag == "--export-bindings"
    {
        return match export_bindings(std::path::Path::new(path)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("onmic-studio: cannot write bindings to {path}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(problem) = display_problem() {
        eprintln!("{problem}");
        return ExitCode::from(2);
    }
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The `pulseaudio` crate logs the end of every connection, including the orderly one when its
    // client is dropped (an input stream closed), as `ERROR Reactor error: Client disconnected`.
    // A real loss of the sound server reaches us anyway as an error from each request and a
    // failed stream (`StreamStatus`), which the Studio reports; see docs/platforms.md.
    if let Ok(quiet) = "pulseaudio::client::reactor=off".parse() {
        filter = filter.add_directive(quiet);
    }
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    match run(launch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onmic-studio: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds and runs the app until the last window closes.
pub fn run(launch: Launch) -> tauri::Result<()> {
    let builder = specta_builder::<tauri::Wry>();
    let app = tauri::Builder::default()
        .invoke_handler(builder.invoke_handler())
        .setup(move |app| {
            builder.mount_events(app);
            let config_dir = app.path().app_config_dir()?;
            let settings = SettingsStore::open(config_dir.join("settings.json"));
            tracing::info!(path = %settings.path().display(), "settings");
            let probe = ServerProbe::new(settings.get().server_url);
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(Arc::clone(&probe).run(move |status| {
                if let Err(e) = status.emit(&handle) {
                    tracing::warn!("cannot tell the UI about the server status: {e}");
                }
            }));
            let local_room = LocalRoomService::new(app.path().app_data_dir()?.join("local-room"));
            if launch.local_room || settings.get().local_room {
                match tauri::async_runtime::block_on(local_room.start()) {
                    Ok(room) => probe.set_url(room.url),
                    // The window still opens: the server panel shows the configured server and
                    // the local-room switch offers to try again.
                    Err(e) => tracing::error!("{e}"),
                }
            }
            app.manage(Studio {
                meter: MeterService::default(),
                settings,
                probe,
                local_room,
                session: RoomSessionService::default(),
                music: music_panel::MusicService::default(),

                mic_test: mic_test::MicTestService::default(),
                shortcuts: shortcuts::ShortcutService::default(),
            });
            // Global shortcuts where the OS allows; otherwise the window's own listener.
            if let Err(e) = app
                .handle()
                .plugin(tauri_plugin_global_shortcut::Builder::new().build())
            {
                tracing::warn!("global shortcuts are not available ({e}); they work in the window");
            }
            tracing::info!(
                mode = ?render_mode::detect(),
                cpu_painting = std::env::var_os(render_mode::CPU_PAINTING_VAR).is_some(),
                llvmpipe_threads = std::env::var(render_mode::LLVMPIPE_THREADS_VAR)
                    .unwrap_or_else(|_| "Mesa's default".into()),
                "web view rendering"
            );
            #[cfg(target_os = "linux")]
            for (s, known) in webkit_features::applied().unwrap_or_default() {
                if known {
                    tracing::info!(feature = %s.name, enabled = s.enabled, "web view feature");
                } else {
                    tracing::info!(feature = %s.name, "this WebKitGTK has no such feature; not set");
                }
            }
            let studio = app.state::<Studio>();
            let _ = studio.shortcuts.app.set(app.handle().clone());
            shortcuts::register(app.handle(), &studio.settings.get().shortcuts);
            Ok(())
        })
        .build(tauri::generate_context!())?;
    app.run(|app, event| {
        if let tauri::RunEvent::Exit = event {
            // Let the local room finish its writes before the process ends.
            let studio = app.state::<Studio>();
            tauri::async_runtime::block_on(async {
                studio.music.on_leave();
                studio.session.leave().await;
                studio.local_room.stop().await;
            });
        }
    });
    Ok(())
}
