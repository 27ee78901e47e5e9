//! The command layer through Tauri's IPC on the mock runtime: what the UI sends, what it gets
//! back, errors as typed `AppError` JSON. No display needed.

use onmic_studio::local_room::LocalRoomService;
use onmic_studio::meter_service::MeterService;
use onmic_studio::server_probe::ServerProbe;
use onmic_studio::settings::SettingsStore;
use onmic_studio::{Studio, specta_builder};
use serde_json::{Value, json};
use tauri::Manager;
use tauri::test::{
    INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder, mock_context, noop_assets,
};
use tauri::webview::InvokeRequest;

fn invoke(
    webview: &tauri::WebviewWindow<MockRuntime>,
    cmd: &str,
    args: Value,
) -> Result<Value, Value> {
    get_ipc_response(
        webview,
        InvokeRequest {
            cmd: cmd.into(),
            callback: tauri::ipc::CallbackFn(0),
            error: tauri::ipc::CallbackFn(1),
            url: "tauri://localhost".parse().expect("url"),
            body: tauri::ipc::InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|body| body.deserialize::<Value>().expect("JSON response"))
}

/// The Studio's commands on the mock runtime, with settings and the local room under `dir`.
fn mock_studio(
    dir: &std::path::Path,
) -> (tauri::App<MockRuntime>, tauri::WebviewWindow<MockRuntime>) {
    let builder = specta_builder::<MockRuntime>();
    let app = mock_builder()
        .invoke_handler(builder.invoke_handler())
        .build(mock_context(noop_assets()))
        .expect("mock app builds");
    let settings = SettingsStore::open(dir.join("settings.json"));
    let probe = ServerProbe::new(settings.get().server_url);
    app.manage(Studio {
        meter: MeterService::default(),
        settings,
        probe,
        local_room: LocalRoomService::new(dir.join("local-room")),
        session: Default::default(),
        music: Default::default(),

        mic_test: Default::default(),
        shortcuts: Default::default(),
    });
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("webview");
    (app, webview)
}

#[test]
fn settings_and_server_url_over_ipc() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings_path = dir.path().join("settings.json");
    let (_app, webview) = mock_studio(dir.path());

    let defaults = invoke(&webview, "get_settings", json!({})).expect("get_settings answers");
    assert_eq!(defaults["inputDevice"], Value::Null);
    assert!(
        defaults["serverUrl"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://"))
    );

    let err = invoke(
        &webview,
        "set_server_url",
        json!({ "url": "ftp://example" }),
    )
    .expect_err("refused");
    assert_eq!(err["kind"], "invalid_input", "{err}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("http://")),
        "says what to write: {err}"
    );

    let saved = invoke(
        &webview,
        "set_server_url",
        json!({ "url": " http://127.0.0.1:9/ " }),
    )
    .expect("accepted");
    assert_eq!(saved["serverUrl"], "http://127.0.0.1:9");
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(&settings_path).expect("saved")).expect("json");
    assert_eq!(on_disk["serverUrl"], "http://127.0.0.1:9");

    let status = invoke(&webview, "server_status", json!({})).expect("server_status answers");
    assert_eq!(
        status,
        json!({ "state": "checking", "url": "http://127.0.0.1:9" })
    );

    let err =
        invoke(&webview, "set_server_url", json!({})).expect_err("a missing argument is refused");
    assert!(err.to_string().contains("url"), "{err}");
}

#[test]
fn audio_settings_are_saved_clamped_and_reset_over_ipc() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings_path = dir.path().join("settings.json");
    let (_app, webview) = mock_studio(dir.path());
    let defaults = invoke(&webview, "get_settings", json!({})).expect("settings")["audio"].clone();
    assert_eq!(defaults["mode"], "soundcard");
    assert_eq!(defaults["aec"], false, "sound-card mode: processing off");

    let mut audio = defaults.clone();
    audio["mode"] = json!("voice");
    audio["ns"] = json!(true);
    audio["inputGainDb"] = json!(30.0);
    audio["outputDevice"] = json!("pulse:headphones");
    audio["ear"] = json!({ "enabled": true, "volume": 80.0, "source": "withNs" });
    audio["speakerVolumes"] = json!({ "guest-1": 40.0 });
    let saved = invoke(&webview, "set_audio", json!({ "audio": audio })).expect("saved");
    assert_eq!(saved["audio"]["inputGainDb"], 12.0, "clamped to +12 dB");
    assert_eq!(saved["audio"]["ear"]["source"], "withNs");
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(&settings_path).expect("saved")).expect("json");
    assert_eq!(on_disk["audio"], saved["audio"], "on disk as answered");

    let err = invoke(
        &webview,
        "set_audio",
        json!({ "audio": { "mode": "karaoke" } }),
    )
    .expect_err("an unknown mode is refused");
    assert!(err.to_string().contains("karaoke"), "{err}");

    let reset = invoke(&webview, "reset_settings", json!({})).expect("reset");
    assert_eq!(reset["audio"], defaults);
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(&settings_path).expect("saved")).expect("json");
    assert_eq!(on_disk["audio"], defaults);
}

#[test]
fn the_local_room_starts_and_stops_over_ipc() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings_path = dir.path().join("settings.json");
    let (_app, webview) = mock_studio(dir.path());
    let configured = onmic_studio::settings::DEFAULT_SERVER_URL.to_owned();

    assert_eq!(
        invoke(&webview, "local_room_status", json!({})).expect("answers"),
        Value::Null
    );
    let room = invoke(&webview, "set_local_room", json!({ "enabled": true })).expect("starts");
    let url = room["url"].as_str().expect("a url").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{room}");
    let health: Value = reqwest::blocking::get(format!("{url}/health"))
        .expect("the local room answers")
        .json()
        .expect("json");
    assert_eq!(health["node"], "studio-local");
    let status = invoke(&webview, "server_status", json!({})).expect("status");
    assert_eq!(status["url"], url, "the probe watches the local room");
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(&settings_path).expect("saved")).expect("json");
    assert_eq!(on_disk["localRoom"], true, "the choice is remembered");
    assert_eq!(
        invoke(&webview, "local_room_status", json!({})).expect("answers"),
        room
    );

    // Joining needs a room id; without a token it needs the local room.
    let channel = json!("__CHANNEL__:1");
    let meters = json!("__CHANNEL__:2");
    let err = invoke(
        &webview,
        "join_room",
        json!({ "request": { "room": "  ", "token": null }, "onStatus": channel, "onMeters": meters }),
    )
    .expect_err("an empty room id is refused");
    assert_eq!(err["kind"], "invalid_input", "{err}");

    let off = invoke(&webview, "set_local_room", json!({ "enabled": false })).expect("stops");
    assert_eq!(off, Value::Null);
    assert!(
        reqwest::blocking::get(format!("{url}/health")).is_err(),
        "nothing listens after stopping"
    );
    let status = invoke(&webview, "server_status", json!({})).expect("status");
    assert_eq!(status["url"], configured, "back to the configured server");

    let err = invoke(
        &webview,
        "join_room",
        json!({ "request": { "room": "studio", "token": null }, "onStatus": channel, "onMeters": meters }),
    )
    .expect_err("no token and no local room");
    assert_eq!(err["kind"], "room", "{err}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("Local room") && m.contains("token")),
        "says what to do: {err}"
    );
    assert_eq!(
        invoke(&webview, "room_status", json!({})).expect("answers"),
        Value::Null
    );
    let err = invoke(
        &webview,
        "room_action",
        json!({ "action": { "type": "takeSeat", "seat": 0 } }),
    )
    .expect_err("not in a room");
    assert_eq!(err["kind"], "room", "{err}");
    let err = invoke(
        &webview,
        "room_action",
        json!({ "action": { "type": "chat", "text": "   " } }),
    )
    .expect_err("nothing to say");
    assert_eq!(err["kind"], "invalid_input", "{err}");
    let err = invoke(
        &webview,
        "room_action",
        json!({ "action": { "type": "explode" } }),
    )
    .expect_err("not an action");
    assert!(err.is_string() || err["kind"].is_string(), "{err}");
    let err =
        invoke(&webview, "listener_link", json!({ "room": "studio" })).expect_err("no local room");
    assert_eq!(err["kind"], "room", "{err}");
}
