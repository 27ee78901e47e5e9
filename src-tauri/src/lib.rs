//! Onmic Studio: the desktop app for voice-room hosts (Tauri 2).
//!
//! Layout: [`commands`] are thin Tauri commands; they call services ([`meter_service`],
//! [`server_probe`], [`settings`]) held in the managed [`Studio`] state; errors reach the UI as
//! one typed [`error::AppError`]. TypeScript bindings for every command, type and event are
//! generated from this crate (`cargo xtask bindings` writes `ui/src/bindings.ts`; a test fails
//! when the checked-in file is stale).
#![forbid(unsafe_code)]

pub mod commands;
pub mod error;
pub mod meter_service;
pub mod server_probe;
pub mod settings;
pub mod views;

use std::process::ExitCode;
use std::sync::Arc;

use specta_typescript::Typescript;
use tauri::Manager;
use tauri_specta::{Event, collect_commands, collect_events};

use meter_service::MeterService;
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
        ])
        .events(collect_events![ServerStatus])
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

/// The executable's entry point: `--export-bindings PATH` writes the TypeScript bindings and
/// exits; otherwise the window opens.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onmic-studio: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds and runs the app until the last window closes.
pub fn run() -> tauri::Result<()> {
    let builder = specta_builder::<tauri::Wry>();
    tauri::Builder::default()
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
            app.manage(Studio {
                meter: MeterService::default(),
                settings,
                probe,
            });
            Ok(())
        })
        .run(tauri::generate_context!())
}
