//! Issue 10, acceptance 8: every setting survives a restart. The test changes each one through
//! the Studio's UI (clicks, the keyboard on sliders, real key events to record shortcuts), checks
//! that `settings.json` in the OS config directory holds the new value and that it differs from
//! the default, restarts the Studio on the same config directory, and reads every value back
//! from the UI: the effects panel (preset tiles, switches, sliders, EQ bands, a saved user
//! preset) and the music panel (volumes, routing, key, repeat, ducking, playlist with
//! crossfade and auto-advance, a pad, the PCM source, the cue output and the capture source,
//! with real WAV files and devices) included. Then
//! *Reset all settings to defaults* brings the defaults back (the room choice
//! stays). `COVERED` is compared with the fields of the `Settings` struct by a unit test in
//! `src-tauri/src/settings.rs`, so a setting added later fails until this test covers it.

use std::time::Duration;

use fantoccini::Locator;
use onmic_e2e::audio::NullSink;
use onmic_e2e::client_host::ClientHost;
use onmic_e2e::keys;
use onmic_e2e::netns::run_in_netns;
use onmic_e2e::studio::Studio;
use onmic_e2e::wait_for;
use serde_json::{Value, json};
use std::path::Path;

/// Every settings field this test changes through the UI and reads back after the restart
/// (JSON paths of `settings.json`).
pub const COVERED: &[&str] = &[
    "inputDevice",
    "serverUrl",
    "localRoom",
    "audio.mode",
    "audio.aec",
    "audio.ns",
    "audio.aiNs",
    "audio.aiNsStrength",
    "audio.agc",
    "audio.inputGainDb",
    "audio.inputChannels",
    "audio.outputDevice",
    "audio.voiceMuted",
    "audio.sendMuted",
    "audio.ear.enabled",
    "audio.ear.volume",
    "audio.ear.source",
    "audio.speakerVolumes",
    "shortcuts.muteToggle",
    "shortcuts.pushToTalk",
    "shortcuts.pushToTalkKey",
    "effects.current.enabled",
    "effects.current.room",
    "effects.current.rotatePeriodS",
    "effects.current.changer",
    "effects.current.beautifier",
    "effects.current.pitchSemitones",
    "effects.current.eq.enabled",
    "effects.current.eq.bandsDb",
    "effects.current.eq.preampDb",
    "effects.current.gate.enabled",
    "effects.current.gate.closeThresholdDb",
    "effects.current.gate.openThresholdDb",
    "effects.current.gate.attackMs",
    "effects.current.gate.holdMs",
    "effects.current.gate.releaseMs",
    "effects.current.compressor.enabled",
    "effects.current.compressor.ratio",
    "effects.current.compressor.thresholdDb",
    "effects.current.compressor.attackMs",
    "effects.current.compressor.releaseMs",
    "effects.current.compressor.outputGainDb",
    "effects.current.deEsser.enabled",
    "effects.current.deEsser.frequencyHz",
    "effects.current.deEsser.thresholdDb",
    "effects.current.deEsser.ratio",
    "effects.current.deEsser.maxReductionDb",
    "effects.current.reverb.enabled",
    "effects.current.reverb.roomSize",
    "effects.current.reverb.damping",
    "effects.current.reverb.wet",
    "effects.current.reverb.dry",
    "effects.current.reverb.preDelayMs",
    "effects.current.reverb.width",
    "effects.presets",
    "music.publishVolume",
    "music.playoutVolume",
    "music.loopback",
    "music.replace",
    "music.cycle",
    "music.keyShift",
    "music.ducking.enabled",
    "music.ducking.amountDb",
    "music.ducking.attackMs",
    "music.ducking.releaseMs",
    "music.ducking.thresholdDbfs",
    "music.autoAdvance",
    "music.crossfadeS",
    "music.playlist",
    "music.pads",
    "music.pcm.enabled",
    "music.pcm.port",
    "music.pcm.localPlayback",
    "music.cue.device",
    "music.capture.enabled",
    "music.capture.device",
    "music.capture.localPlayback",
];

#[test]
fn every_setting_survives_a_restart() {
    run_in_netns("every_setting_survives_a_restart", scenario);
}

async fn scenario() -> anyhow::Result<()> {
    // A four-channel card: its channel pair is a setting too.
    let input = NullSink::create_with_channels("onmic_e2e_settings_in", "Onmic_E2E_Settings_In", 4);
    let output = NullSink::create("onmic_e2e_settings_out", "Onmic_E2E_Settings_Out");
    let config = tempfile::tempdir()?;
    let settings_file = config.path().join("app.onmic.studio/settings.json");

    let studio = Studio::launch_with_config(&[], config).await?;
    studio.client.set_window_size(1440, 900).await?;
    let defaults = invoke(&studio, "get_settings").await?;

    // Change everything through the UI.
    let input_id = pick_option(
        &studio,
        "#input-device",
        &format!("Monitor of {}", input.description),
    )
    .await?;
    let url = studio.client.find(Locator::Css("#server-url")).await?;
    keys::focus_studio()?;
    url.click().await?;
    // Select all and type over it, as a person would (Ctrl+A, then the address).
    keys::tap("ctrl+a")?;
    keys::type_text("http://127.0.0.1:7611")?;
    wait_for(Duration::from_secs(10), "the address typed", || async {
        (url.prop("value").await.ok()?? == "http://127.0.0.1:7611").then_some(())
    })
    .await?;
    studio.click(".server button[type=submit]").await?;
    println!(
        "server field: {:?}; settings: {}",
        url.prop("value").await?,
        invoke(&studio, "get_settings").await?
    );
    studio.screenshot("settings-0-server").await?;
    wait_for(Duration::from_secs(10), "the server URL saved", || async {
        let s = invoke(&studio, "get_settings").await.ok()?;
        (s["serverUrl"] == "http://127.0.0.1:7611").then_some(())
    })
    .await?;
    studio.click("#local-room").await?;
    wait_attr(&studio, "#server-status", "data-local", "true").await?;
    // A speaker's playback volume is set from its seat's menu, on air.
    let speaker = set_speaker_volume(&studio).await?;
    studio.click("#mode-voice").await?;
    // Voice mode turns every process on (the defaults are all off).
    slide(&studio, "#ai-ns-strength", 8).await?; // 0 + 8 × 5 = 40 %
    slide(&studio, "#input-gain", 36).await?; // −24 + 36 × 0.5 = −6 dB
    pick_option(&studio, "#input-channel-left", "L 3").await?;
    pick_option(&studio, "#input-channel-right", "R 4").await?;
    let output_id = pick_option(&studio, "#output-devices", &output.description).await?;
    studio.click("#mute-voice").await?;
    studio.click("#mute-all").await?;
    studio.click("#ear-monitor").await?;
    studio
        .client
        .find(Locator::Css("#ear-source"))
        .await?
        .select_by_value("withNs")
        .await?;
    slide(&studio, "#ear-volume", 75).await?; // 75 %
    // The shortcuts are recorded from real key presses.
    keys::focus_studio()?;
    studio.click("#shortcut-mute").await?;
    keys::tap("ctrl+alt+k")?;
    wait_attr(&studio, "#shortcut-mute", "data-value", "Ctrl+Alt+K").await?;
    studio.click("#shortcut-ptt").await?;
    keys::tap("F10")?;
    wait_attr(&studio, "#shortcut-ptt", "data-value", "F10").await?;
    studio.click("#ptt-enabled").await?;
    wait_for(Duration::from_secs(5), "push-to-talk on", || async {
        (studio
            .client
            .find(Locator::Css("#ptt-enabled"))
            .await
            .ok()?
            .prop("checked")
            .await
            .ok()??
            == "true")
            .then_some(())
    })
    .await?;
    let clips = tempfile::tempdir()?;
    let panels = change_panels(&studio, &defaults, clips.path()).await?;
    studio.click("#tab-stage").await?;
    studio.screenshot("settings-1-changed").await?;

    let mut want = json!({
        "inputDevice": input_id,
        "serverUrl": "http://127.0.0.1:7611",
        "localRoom": true,
        "audio.mode": "voice",
        "audio.aec": true,
        "audio.ns": true,
        "audio.aiNs": true,
        "audio.aiNsStrength": 40.0,
        "audio.agc": true,
        "audio.inputGainDb": -6.0,
        "audio.inputChannels": [3, 4],
        "audio.outputDevice": output_id,
        "audio.voiceMuted": true,
        "audio.sendMuted": true,
        "audio.ear.enabled": true,
        "audio.ear.volume": 75.0,
        "audio.ear.source": "withNs",
        "audio.speakerVolumes": { speaker.clone(): 35.0 },
        "shortcuts.muteToggle": "Ctrl+Alt+K",
        "shortcuts.pushToTalk": true,
        "shortcuts.pushToTalkKey": "F10",
    });
    for (path, v) in panels {
        want[path] = v;
    }
    let saved: Value = serde_json::from_slice(&std::fs::read(&settings_file)?)?;
    for path in COVERED {
        let expected = want
            .get(path)
            .ok_or_else(|| anyhow::anyhow!("no expected value for {path}"))?;
        let on_disk = &on_disk_view(&saved, path);
        assert!(
            same(on_disk, expected),
            "{path}: settings.json has {on_disk}, the UI set {expected}"
        );
        assert!(
            !same(at(&defaults, path), expected),
            "{path}: {expected} is the default, so the restart would prove nothing"
        );
    }

    let presets = at(&saved, "effects.presets");
    assert!(
        same(&presets[0]["choice"], at(&saved, "effects.current")),
        "the saved preset holds the panel as it was: {presets}"
    );

    // Restart on the same config directory.
    let config = studio.quit_keeping_settings().await?;
    let studio = Studio::launch_with_config(&[], config).await?;
    studio.client.set_window_size(1440, 900).await?;
    wait_attr(&studio, "#server-status", "data-local", "true").await?;
    studio.screenshot("settings-2-restarted").await?;
    // The server address shows once the local room is off: read it last.
    let mut tab = "stage";
    for path in COVERED.iter().filter(|p| **p != "serverUrl") {
        let need = path_tab(path);
        if need != tab {
            studio.click(&format!("#tab-{need}")).await?;
            tab = need;
            if tab != "stage" {
                studio
                    .screenshot(&format!("settings-2-restarted-{tab}"))
                    .await?;
            }
        }
        let shown = wait_for(Duration::from_secs(10), path, || async {
            ui_value(&studio, path).await.ok()
        })
        .await?;
        let expected = &want[path];
        assert!(
            same(&shown, expected),
            "{path}: after the restart the UI shows {shown}, not {expected}"
        );
        println!("{path}: {shown} (default {})", at(&defaults, path));
    }
    studio.click("#tab-stage").await?;
    studio.click("#local-room").await?;
    wait_attr(&studio, "#server-status", "data-local", "false").await?;
    let shown = ui_value(&studio, "serverUrl").await?;
    assert_eq!(shown, want["serverUrl"], "serverUrl after the restart");
    println!("serverUrl: {shown} (default {})", defaults["serverUrl"]);

    // Reset to defaults: everything but the room choice and the server address.
    studio.click("#reset-settings").await?;
    wait_attr(&studio, "#mode-soundcard", "aria-checked", "true").await?;
    let reset: Value = serde_json::from_slice(&std::fs::read(&settings_file)?)?;
    for path in COVERED {
        // The room choice stays (the local room was switched off above to read the address).
        let expected = match *path {
            "serverUrl" => &want[*path],
            "localRoom" => &Value::Bool(false),
            // The first start saved the input it opened; the default itself is "none chosen".
            "inputDevice" => &Value::Null,
            // Reset keeps what the host built: saved presets, the playlist, the pads.
            "effects.presets" | "music.playlist" | "music.pads" => &want[*path],
            _ => at(&defaults, path),
        };
        let now = on_disk_view(&reset, path);
        let expected = &on_disk_view_of(path, expected);
        assert!(
            same(&now, expected),
            "{path} after reset: {now} (expected {expected})"
        );
    }
    assert_eq!(
        studio.attr("#shortcut-mute", "data-value").await.as_deref(),
        defaults["shortcuts"]["muteToggle"].as_str(),
        "the UI shows the default mute shortcut after reset"
    );
    studio.screenshot("settings-3-reset").await?;
    studio.quit().await
}

/// Calls a Tauri command from inside the web view and returns its JSON result.
async fn invoke(studio: &Studio, command: &str) -> anyhow::Result<Value> {
    Ok(studio
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             window.__TAURI_INTERNALS__.invoke(arguments[0]).then(done, (e) => done({ error: e }));",
            vec![json!(command)],
        )
        .await?)
}

/// Clicks the option of `select` whose text contains `text`; returns its value.
async fn pick_option(studio: &Studio, select: &str, text: &str) -> anyhow::Result<String> {
    let option = wait_for(Duration::from_secs(15), text, || async {
        for o in studio
            .client
            .find_all(Locator::Css(&format!("{select} option")))
            .await
            .ok()?
        {
            if o.text().await.ok()?.contains(text) {
                return Some(o);
            }
        }
        None
    })
    .await?;
    let value = option.attr("value").await?.unwrap_or_default();
    option.click().await?;
    wait_for(Duration::from_secs(5), "the choice to apply", || async {
        let el = studio.client.find(Locator::Css(select)).await.ok()?;
        (el.prop("value").await.ok().flatten()? == value).then_some(())
    })
    .await?;
    Ok(value)
}

/// Sets a slider with the keyboard, as a person would: click it, Home (its minimum), then
/// `steps` steps of the Right arrow.
async fn slide(studio: &Studio, css: &str, steps: usize) -> anyhow::Result<()> {
    let el = studio.client.find(Locator::Css(css)).await?;
    el.click().await?;
    el.send_keys(&format!("\u{E011}{}", "\u{E014}".repeat(steps)))
        .await?;
    Ok(())
}

async fn wait_attr(studio: &Studio, css: &str, attr: &str, want: &str) -> anyhow::Result<()> {
    wait_for(
        Duration::from_secs(15),
        &format!("{css} {attr}={want}"),
        || async { studio.attr(css, attr).await.filter(|v| v == want).map(drop) },
    )
    .await
}

/// Goes live in the local room, seats a listener (it applies, the host approves in the UI), sets
/// its playback volume to 35 % with its seat's slider, leaves; returns the listener's uid.
async fn set_speaker_volume(studio: &Studio) -> anyhow::Result<String> {
    let url = studio.local_room_url().await?;
    studio.click("#join-room").await?;
    wait_attr(studio, "#room-state", "data-state", "connected").await?;
    studio.click("#listener-link").await?;
    let link = wait_for(Duration::from_secs(10), "a share link", || async {
        let el = studio
            .client
            .find(Locator::Css("#listener-link-url"))
            .await
            .ok()?;
        el.prop("value").await.ok().flatten()
    })
    .await?;
    let token = link.split("token=").nth(1).unwrap_or_default().to_owned();
    let listener = ClientHost::connect(&url, "studio", &token).await?;
    let uid = listener.client.uid().as_str().to_owned();
    listener
        .client
        .apply(None)
        .await
        .map_err(|e| anyhow::anyhow!("apply: {e}"))?;
    let approve = format!("#applications li[data-uid='{uid}'] .approve");
    wait_for(Duration::from_secs(10), "the request", || async {
        studio.client.find(Locator::Css(&approve)).await.ok()
    })
    .await?
    .click()
    .await?;
    let seat = wait_for(Duration::from_secs(10), "the listener seated", || async {
        studio
            .attr(&format!("#seats [data-uid='{uid}']"), "data-seat")
            .await
    })
    .await?;
    let seat_css = format!("#seats [data-seat='{seat}']");
    studio.click(&format!("{seat_css} .seat-menu-btn")).await?;
    slide(studio, &format!("{seat_css} .menu-volume input"), 35).await?; // 35 %
    let shown: f64 = studio
        .client
        .find(Locator::Css(&format!("{seat_css} .menu-volume input")))
        .await?
        .prop("value")
        .await?
        .unwrap_or_default()
        .parse()?;
    let saved = wait_for(Duration::from_secs(10), "the volume saved", || async {
        let s = invoke(studio, "get_settings").await.ok()?;
        s["audio"]["speakerVolumes"][&uid].as_f64()
    })
    .await?;
    println!("speaker volume: slider {shown}, saved {saved}");
    anyhow::ensure!(saved == 35.0, "the seat's slider saved {saved} %, not 35 %");
    studio.screenshot("settings-0-speaker-volume").await?;
    studio.click("#leave-room").await?;
    wait_for(Duration::from_secs(10), "off air", || async {
        studio
            .client
            .find(Locator::Css("#join-room"))
            .await
            .ok()
            .map(drop)
    })
    .await?;
    listener.close().await;
    Ok(uid)
}

/// `settings.json`'s value at a dotted path (`null` when absent).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(v, |v, k| v.get(k).unwrap_or(&Value::Null))
}

/// Equal as JSON, numbers compared as numbers (`40` and `40.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // f32 settings come back through JSON as their nearest f64.
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-5 * x.abs().max(1.0),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// What the UI shows for a settings path.
async fn ui_value(studio: &Studio, path: &str) -> anyhow::Result<Value> {
    let prop = |css: &'static str, p: &'static str| async move {
        let el = studio.client.find(Locator::Css(css)).await?;
        anyhow::Ok(el.prop(p).await?.unwrap_or_default())
    };
    let attr = |css: &'static str, a: &'static str| async move {
        studio
            .attr(css, a)
            .await
            .ok_or_else(|| anyhow::anyhow!("{css} has no {a}"))
    };
    let flag = |s: String| Value::Bool(s == "true");
    let num = |s: String| -> anyhow::Result<Value> { Ok(json!(s.parse::<f64>()?)) };
    let opt = |s: String| {
        if s.is_empty() {
            Value::Null
        } else {
            Value::String(s)
        }
    };
    Ok(match path {
        "inputDevice" => opt(prop("#input-device", "value").await?),
        "serverUrl" => json!(prop("#server-url", "value").await?),
        "localRoom" => flag(prop("#local-room", "checked").await?),
        "audio.mode" => {
            let voice = attr("#mode-voice", "aria-checked").await? == "true";
            json!(if voice { "voice" } else { "soundcard" })
        }
        "audio.aec" => flag(attr("#fx-aec", "aria-pressed").await?),
        "audio.ns" => flag(attr("#fx-ns", "aria-pressed").await?),
        "audio.aiNs" => flag(attr("#fx-ai-ns", "aria-pressed").await?),
        "audio.agc" => flag(attr("#fx-agc", "aria-pressed").await?),
        "audio.aiNsStrength" => num(prop("#ai-ns-strength", "value").await?)?,
        "audio.inputGainDb" => num(prop("#input-gain", "value").await?)?,
        "audio.inputChannels" => {
            let l: u16 = prop("#input-channel-left", "value").await?.parse()?;
            let r: u16 = prop("#input-channel-right", "value").await?.parse()?;
            // The UI shows the default (none chosen) as the first two.
            if (l, r) == (1, 2) {
                Value::Null
            } else {
                json!([l, r])
            }
        }
        "audio.outputDevice" => opt(prop("#output-devices", "value").await?),
        "audio.voiceMuted" => flag(attr("#mute-voice", "aria-pressed").await?),
        "audio.sendMuted" => flag(attr("#mute-all", "aria-pressed").await?),
        "audio.ear.enabled" => flag(attr("#ear-monitor", "aria-checked").await?),
        "audio.ear.volume" => num(prop("#ear-volume", "value").await?)?,
        "audio.ear.source" => json!(prop("#ear-source", "value").await?),
        "audio.speakerVolumes" => {
            let mut out = serde_json::Map::new();
            for row in studio
                .client
                .find_all(Locator::Css("#speaker-volumes [data-uid]"))
                .await?
            {
                let uid = row.attr("data-uid").await?.unwrap_or_default();
                let v: f64 = row.attr("data-volume").await?.unwrap_or_default().parse()?;
                out.insert(uid, json!(v));
            }
            Value::Object(out)
        }
        "shortcuts.muteToggle" => opt(attr("#shortcut-mute", "data-value").await?),
        "shortcuts.pushToTalk" => flag(prop("#ptt-enabled", "checked").await?),
        "shortcuts.pushToTalkKey" => opt(attr("#shortcut-ptt", "data-value").await?),
        other if other.starts_with("effects.") || other.starts_with("music.") => {
            panel_value(studio, other).await?
        }
        other => anyhow::bail!("the test cannot read {other} from the UI yet"),
    })
}

/// The panels' switches: each is clicked once, so it holds the opposite of its default.
const SWITCHES: &[(&str, &str)] = &[
    ("effects.current.enabled", "#fx-enabled"),
    ("effects.current.eq.enabled", "#fx-eq-on"),
    ("effects.current.gate.enabled", "#fx-gate-on"),
    ("effects.current.compressor.enabled", "#fx-comp-on"),
    ("effects.current.deEsser.enabled", "#fx-deess-on"),
    ("effects.current.reverb.enabled", "#fx-reverb-on"),
    ("music.loopback", "#music-loopback"),
    ("music.replace", "#music-replace"),
    ("music.ducking.enabled", "#music-ducking"),
    ("music.autoAdvance", "#playlist-auto"),
    ("music.pcm.enabled", "#pcm-enabled"),
    ("music.pcm.localPlayback", "#pcm-local"),
    ("music.capture.enabled", "#capture-enabled"),
    ("music.capture.localPlayback", "#capture-local"),
];

/// The panels' sliders: Home (the minimum), then so many Right arrows, giving this value.
const SLIDERS: &[(&str, &str, usize, f64)] = &[
    (
        "effects.current.rotatePeriodS",
        "#fx-rotate-period",
        19,
        20.0,
    ), // 1 + 19 × 1 s
    ("effects.current.pitchSemitones", "#fx-pitch", 30, 3.0), // −12 + 30 × 0.5
    ("effects.current.eq.preampDb", "#fx-eq-preamp", 20, -2.0), // −12 + 20 × 0.5
    (
        "effects.current.gate.closeThresholdDb",
        "#fx-gate-close",
        46,
        -50.0,
    ),
    (
        "effects.current.gate.openThresholdDb",
        "#fx-gate-open",
        56,
        -40.0,
    ),
    ("effects.current.gate.attackMs", "#fx-gate-attack", 13, 13.0),
    ("effects.current.gate.holdMs", "#fx-gate-hold", 33, 330.0),
    (
        "effects.current.gate.releaseMs",
        "#fx-gate-release",
        21,
        210.0,
    ),
    (
        "effects.current.compressor.ratio",
        "#fx-comp-ratio",
        13,
        7.5,
    ),
    (
        "effects.current.compressor.thresholdDb",
        "#fx-comp-threshold",
        35,
        -25.0,
    ),
    (
        "effects.current.compressor.attackMs",
        "#fx-comp-attack",
        12,
        12.0,
    ),
    (
        "effects.current.compressor.releaseMs",
        "#fx-comp-release",
        17,
        170.0,
    ),
    (
        "effects.current.compressor.outputGainDb",
        "#fx-comp-gain",
        70,
        3.0,
    ),
    (
        "effects.current.deEsser.frequencyHz",
        "#fx-deess-freq",
        45,
        6500.0,
    ),
    (
        "effects.current.deEsser.thresholdDb",
        "#fx-deess-threshold",
        32,
        -28.0,
    ),
    ("effects.current.deEsser.ratio", "#fx-deess-ratio", 9, 5.5),
    (
        "effects.current.deEsser.maxReductionDb",
        "#fx-deess-max",
        17,
        8.5,
    ),
    (
        "effects.current.reverb.roomSize",
        "#fx-reverb-size",
        37,
        0.37,
    ),
    (
        "effects.current.reverb.damping",
        "#fx-reverb-damping",
        63,
        0.63,
    ),
    ("effects.current.reverb.wet", "#fx-reverb-wet", 29, 0.29),
    ("effects.current.reverb.dry", "#fx-reverb-dry", 81, 0.81),
    (
        "effects.current.reverb.preDelayMs",
        "#fx-reverb-predelay",
        45,
        45.0,
    ),
    ("effects.current.reverb.width", "#fx-reverb-width", 55, 0.55),
    ("music.publishVolume", "#music-publish-volume", 40, 40.0),
    ("music.playoutVolume", "#music-playout-volume", 60, 60.0),
    ("music.keyShift", "#music-key", 15, 3.0), // −12 + 15
    ("music.ducking.amountDb", "#duck-amount", 7, 7.0),
    ("music.ducking.attackMs", "#duck-attack", 5, 30.0), // 5 + 5 × 5 ms
    ("music.ducking.releaseMs", "#duck-release", 8, 100.0), // 20 + 8 × 10 ms
    ("music.ducking.thresholdDbfs", "#duck-threshold", 35, -45.0), // −80 + 35
    ("music.crossfadeS", "#playlist-crossfade", 5, 2.5),
];

/// Which centre tab shows a setting.
fn path_tab(path: &str) -> &'static str {
    if path.starts_with("effects.") {
        "effects"
    } else if path.starts_with("music.") {
        "music"
    } else {
        "stage"
    }
}

/// A settings value as the UI can show it: user presets by name (their contents are checked
/// against the panel separately).
fn on_disk_view(settings: &Value, path: &str) -> Value {
    on_disk_view_of(path, at(settings, path))
}

fn on_disk_view_of(path: &str, v: &Value) -> Value {
    match (path, v) {
        ("effects.presets", Value::Array(list)) => Value::Array(
            list.iter()
                .map(|p| p.get("name").cloned().unwrap_or_else(|| p.clone()))
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// A short 48 kHz sine as a WAV file.
fn write_wav(path: &Path, hz: f32) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for i in 0..9_600 {
        let t = i as f32 / 48_000.0;
        w.write_sample((0.3 * (std::f32::consts::TAU * hz * t).sin() * 32_767.0) as i16)?;
    }
    w.finalize()?;
    Ok(())
}

/// Types into a field as a person would (click, then the keys).
async fn type_into(studio: &Studio, css: &str, text: &str) -> anyhow::Result<()> {
    let el = studio.client.find(Locator::Css(css)).await?;
    el.click().await?;
    el.send_keys(text).await?;
    wait_for(Duration::from_secs(5), text, || async {
        (el.prop("value").await.ok()?? == text).then_some(())
    })
    .await
}

/// Changes every setting of the effects and music panels through them; returns each settings
/// path with the value the UI set.
async fn change_panels(
    studio: &Studio,
    defaults: &Value,
    clips: &Path,
) -> anyhow::Result<Vec<(&'static str, Value)>> {
    let mut want: Vec<(&'static str, Value)> = Vec::new();
    studio.click("#tab-effects").await?;
    // The preset tiles: 3D voice (it shows the turn slider), and a voice changer and a beautifier.
    let room = wait_for(Duration::from_secs(10), "the room tiles", || async {
        studio
            .client
            .find(Locator::Css("#fx-room [data-preset='3d_voice']"))
            .await
            .ok()
    })
    .await?;
    room.click().await?;
    want.push(("effects.current.room", json!("3d_voice")));
    for (group, path) in [
        ("changer", "effects.current.changer"),
        ("beautifier", "effects.current.beautifier"),
    ] {
        let tile = studio
            .client
            .find(Locator::Css(&format!("#fx-{group} .preset-tile:not(.off)")))
            .await?;
        let name = tile.attr("data-preset").await?.unwrap_or_default();
        tile.click().await?;
        want.push((path, json!(name)));
    }
    wait_attr(
        studio,
        "#fx-room [data-preset='3d_voice']",
        "aria-checked",
        "true",
    )
    .await?;
    // The user preset is saved last, with everything else in place.
    let mut music_started = false;
    for (path, css) in SWITCHES {
        if path.starts_with("music.") && !music_started {
            music_started = true;
            change_effect_sliders(studio, &mut want).await?;
            studio.click("#tab-music").await?;
        }
        studio.click(css).await?;
        let was = at(defaults, path)
            .as_bool()
            .ok_or_else(|| anyhow::anyhow!("{path} is a switch"))?;
        wait_attr(
            studio,
            css,
            "aria-checked",
            if was { "false" } else { "true" },
        )
        .await?;
        want.push((path, json!(!was)));
    }
    for (path, css, steps, value) in SLIDERS.iter().filter(|s| s.0.starts_with("music.")) {
        slide(studio, css, *steps).await?;
        want.push((path, json!(value)));
    }
    studio
        .client
        .find(Locator::Css("#music-cycle"))
        .await?
        .select_by_value("3")
        .await?;
    want.push(("music.cycle", json!(3)));
    // The PCM port with the keyboard: four steps up.
    let port = studio.client.find(Locator::Css("#pcm-port")).await?;
    port.click().await?;
    port.send_keys(&"\u{E013}".repeat(4)).await?;
    let default_port = at(defaults, "music.pcm.port").as_f64().unwrap_or_default();
    want.push(("music.pcm.port", json!(default_port + 4.0)));
    // The cue output and the capture source's device, from the pickers.
    let cue = pick_option(studio, "#cue-device", "Onmic_E2E_Settings_Out").await?;
    want.push(("music.cue.device", json!(cue)));
    let capture = pick_option(
        studio,
        "#capture-device",
        "Monitor of Onmic_E2E_Settings_In",
    )
    .await?;
    want.push(("music.capture.device", json!(capture)));
    // A playlist entry and a pad, from real files.
    let song = clips.join("late-show-theme.wav");
    write_wav(&song, 440.0)?;
    let song = song.to_string_lossy().into_owned();
    type_into(studio, "#music-location", &song).await?;
    studio.click("#playlist-add").await?;
    want.push(("music.playlist", json!([song])));
    let clip = clips.join("applause.wav");
    write_wav(&clip, 880.0)?;
    let clip = clip.to_string_lossy().into_owned();
    studio.click("#pads .pad[data-pad='2'] .pad-edit").await?;
    type_into(studio, "#pad-path", &clip).await?;
    studio.click("#pad-save").await?;
    let mut pads = at(defaults, "music.pads").clone();
    pads[2] = json!({ "name": "applause", "path": clip, "publish": true });
    want.push(("music.pads", pads));
    // Everything reached the store before the effects preset is saved from the effects tab.
    wait_saved(studio, &want).await?;
    studio.screenshot("settings-1-music").await?;
    studio.click("#tab-effects").await?;
    type_into(studio, "#fx-preset-name", "Late show").await?;
    studio.click("#fx-preset-save").await?;
    want.push(("effects.presets", json!(["Late show"])));
    wait_saved(studio, &want).await?;
    studio.screenshot("settings-1-effects").await?;
    Ok(want)
}

/// The effects sliders and two EQ bands (the effects tab is open).
async fn change_effect_sliders(
    studio: &Studio,
    want: &mut Vec<(&'static str, Value)>,
) -> anyhow::Result<()> {
    for (path, css, steps, value) in SLIDERS.iter().filter(|s| s.0.starts_with("effects.")) {
        slide(studio, css, *steps).await?;
        want.push((path, json!(value)));
    }
    let bands = studio
        .client
        .find_all(Locator::Css(".eq-bands input"))
        .await?
        .len();
    anyhow::ensure!(bands >= 2, "the EQ shows {bands} bands");
    let mut db = vec![0.0; bands];
    slide(studio, "#fx-eq-0", 36).await?; // −15 + 36 × 0.5 = +3 dB
    db[0] = 3.0;
    slide(studio, &format!("#fx-eq-{}", bands - 1), 20).await?; // −5 dB
    db[bands - 1] = -5.0;
    want.push(("effects.current.eq.bandsDb", json!(db)));
    Ok(())
}

/// Waits until the Studio's settings hold every value in `want`.
async fn wait_saved(studio: &Studio, want: &[(&'static str, Value)]) -> anyhow::Result<()> {
    let r = wait_for(Duration::from_secs(10), "the panels saved", || async {
        let s = invoke(studio, "get_settings").await.ok()?;
        want.iter()
            .all(|(path, v)| same(&on_disk_view(&s, path), v))
            .then_some(())
    })
    .await;
    if r.is_err() {
        let s = invoke(studio, "get_settings").await?;
        for (path, v) in want {
            let has = on_disk_view(&s, path);
            if !same(&has, v) {
                println!("{path}: settings hold {has}, the UI set {v}");
            }
        }
    }
    r
}

/// What the effects or music panel shows for a settings path (its tab is open).
async fn panel_value(studio: &Studio, path: &str) -> anyhow::Result<Value> {
    let find =
        |css: String| async move { anyhow::Ok(studio.client.find(Locator::Css(&css)).await?) };
    if let Some((_, css)) = SWITCHES.iter().find(|s| s.0 == path) {
        let on = studio.attr(css, "aria-checked").await;
        return Ok(Value::Bool(on.as_deref() == Some("true")));
    }
    if let Some((_, css, _, _)) = SLIDERS.iter().find(|s| s.0 == path) {
        let v = find(css.to_string()).await?.prop("value").await?;
        return Ok(json!(v.unwrap_or_default().parse::<f64>()?));
    }
    let texts = |css: &'static str, attr: &'static str| async move {
        let mut out = Vec::new();
        for el in studio.client.find_all(Locator::Css(css)).await? {
            out.push(el.attr(attr).await?.unwrap_or_default());
        }
        anyhow::Ok(out)
    };
    Ok(match path {
        "music.cue.device" | "music.capture.device" => {
            let css = if path == "music.cue.device" {
                "#cue-device"
            } else {
                "#capture-device"
            };
            match find(css.to_string()).await?.prop("value").await? {
                Some(v) if !v.is_empty() => json!(v),
                _ => Value::Null,
            }
        }
        "effects.current.room" | "effects.current.changer" | "effects.current.beautifier" => {
            let group = path.rsplit('.').next().unwrap_or_default();
            let css = format!("#fx-{group} [aria-checked='true']");
            match studio.attr(&css, "data-preset").await.as_deref() {
                None => anyhow::bail!("no {group} tile is chosen"),
                Some("off") => Value::Null,
                Some(name) => json!(name),
            }
        }
        "effects.current.eq.bandsDb" => {
            let mut db = Vec::new();
            for el in studio
                .client
                .find_all(Locator::Css(".eq-bands input"))
                .await?
            {
                db.push(el.prop("value").await?.unwrap_or_default().parse::<f64>()?);
            }
            json!(db)
        }
        "effects.presets" => json!(
            texts("#fx-user-preset option", "value")
                .await?
                .into_iter()
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
        ),
        "music.cycle" => json!(
            find("#music-cycle".into())
                .await?
                .prop("value")
                .await?
                .unwrap_or_default()
                .parse::<f64>()?
        ),
        "music.pcm.port" => json!(
            find("#pcm-port".into())
                .await?
                .prop("value")
                .await?
                .unwrap_or_default()
                .parse::<f64>()?
        ),
        "music.playlist" => json!(texts("#playlist li[data-index] .pl-name", "title").await?),
        "music.pads" => {
            let mut pads = Vec::new();
            for pad in studio
                .client
                .find_all(Locator::Css("#pads .pad[data-pad]"))
                .await?
            {
                let fire = pad.find(Locator::Css(".pad-fire")).await?;
                let title = fire.attr("title").await?.unwrap_or_default();
                let name = pad
                    .find(Locator::Css(".pad-name"))
                    .await?
                    .prop("textContent")
                    .await?
                    .unwrap_or_default();
                let route = pad
                    .find(Locator::Css(".pad-route"))
                    .await?
                    .prop("textContent")
                    .await?
                    .unwrap_or_default();
                pads.push(json!({
                    "name": if name == "—" { String::new() } else { name },
                    "path": if title == "No clip" { Value::Null } else { json!(title) },
                    "publish": route == "on air",
                }));
            }
            Value::Array(pads)
        }
        other => anyhow::bail!("the test cannot read {other} from the UI yet"),
    })
}
