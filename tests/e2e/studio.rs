//! The Studio in a real window (Xvfb), driven over WebDriver, with real PulseAudio devices.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::Locator;
use onmic_e2e::audio::{NullSink, Playback, sine_rms_dbfs, write_tone};
use onmic_e2e::studio::Studio;
use onmic_e2e::{required_env, wait_for};

const TONE_AMPLITUDE: f32 = 0.25; // −12 dBFS peak, −15.05 dBFS RMS

#[tokio::test]
async fn meter_shows_the_tone_on_the_selected_virtual_input_and_falls_to_silence()
-> anyhow::Result<()> {
    let sink = NullSink::create("onmic_e2e_meter", "Onmic_E2E_Meter");
    let monitor_name = format!("Monitor of {}", sink.description);
    let studio = Studio::launch(&[]).await?;

    // The device list in the UI is the machine's: our sink is an output, its monitor an input.
    let option = wait_for(
        Duration::from_secs(15),
        "the virtual input in the device list",
        || async {
            let options = studio
                .client
                .find_all(Locator::Css("#input-device option"))
                .await
                .ok()?;
            for o in options {
                if o.text().await.ok()?.contains(&monitor_name) {
                    return Some(o);
                }
            }
            None
        },
    )
    .await?;
    let outputs = studio.text("#output-devices").await.unwrap_or_default();
    assert!(
        outputs.contains(&sink.description),
        "outputs list the sink: {outputs}"
    );

    option.click().await?;
    wait_for(
        Duration::from_secs(10),
        "the meter to open the selected input",
        || async {
            studio
                .text("#meter-device")
                .await
                .filter(|t| t.contains(&monitor_name))
        },
    )
    .await?;

    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("tone.wav");
    write_tone(&wav, 1000.0, TONE_AMPLITUDE, 30.0);
    let expected = sine_rms_dbfs(TONE_AMPLITUDE);
    let playback = Playback::start(&sink, &wav);

    wait_for(
        Duration::from_secs(10),
        "the tone to reach the meter",
        || async {
            let rms = studio.meter_rms().await.ok()?;
            (rms.len() == 2 && rms.iter().all(|&db| db > expected - 10.0)).then_some(())
        },
    )
    .await?;
    // Average a second of readings, as a person watching the meter would.
    let mut sums = [0f32; 2];
    let readings = 10;
    for _ in 0..readings {
        let rms = studio.meter_rms().await?;
        for (sum, db) in sums.iter_mut().zip(&rms) {
            *sum += db;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (ch, sum) in sums.iter().enumerate() {
        let shown = sum / readings as f32;
        assert!(
            (shown - expected).abs() <= 3.0,
            "channel {ch} shows {shown:.1} dBFS, played {expected:.1} dBFS"
        );
    }
    let readout = studio
        .text("[data-testid=meter-readout]")
        .await
        .unwrap_or_default();
    assert!(
        readout.ends_with("dB") && readout.starts_with('−'),
        "readout {readout:?}"
    );
    studio.screenshot("studio-meter-tone").await?;

    drop(playback);
    wait_for(
        Duration::from_secs(10),
        "the meter to fall to silence",
        || async {
            let rms = studio.meter_rms().await.ok()?;
            (!rms.is_empty() && rms.iter().all(|&db| db < -80.0)).then_some(())
        },
    )
    .await?;
    studio.screenshot("studio-meter-silence").await?;
    let selected = studio
        .attr("#input-device", "value")
        .await
        .unwrap_or_default();

    // The choice survives a restart.
    let settings = studio.quit_keeping_settings().await?;
    let studio = Studio::launch_with_config(&[], settings).await?;
    wait_for(
        Duration::from_secs(10),
        "the remembered input to open",
        || async {
            studio
                .text("#meter-device")
                .await
                .filter(|t| t.contains(&monitor_name))
        },
    )
    .await?;
    assert_eq!(
        studio.attr("#input-device", "value").await.as_deref(),
        Some(selected.as_str())
    );

    // Unplugging the device (removing the sink) tells the user, typed, instead of freezing.
    drop(sink);
    let kind = wait_for(Duration::from_secs(15), "the device-gone banner", || {
        studio.attr("#app-error", "data-kind")
    })
    .await?;
    assert_eq!(kind, "device_not_found");
    studio.screenshot("studio-device-gone").await?;
    studio.quit().await
}

#[tokio::test]
async fn no_audio_devices_at_all_shows_the_typed_error_not_a_crash() -> anyhow::Result<()> {
    // No PulseAudio server to reach, and an ALSA configuration that defines no device.
    let dir = tempfile::tempdir()?;
    let alsa_conf = dir.path().join("asound.conf");
    std::fs::write(&alsa_conf, "# no devices\n")?;
    let alsa_conf = alsa_conf.to_string_lossy().into_owned();
    let studio = Studio::launch(&[
        ("PULSE_SERVER", "unix:/nonexistent/onmic/pulse/native"),
        ("ALSA_CONFIG_PATH", &alsa_conf),
    ])
    .await?;

    let kind = wait_for(Duration::from_secs(15), "the error banner", || {
        studio.attr("#app-error", "data-kind")
    })
    .await?;
    assert_eq!(kind, "no_input_device");
    let message = studio
        .text("#app-error .error-message")
        .await
        .unwrap_or_default();
    assert!(
        message.contains("Connect a microphone"),
        "the banner says what to do: {message}"
    );
    let select = studio.client.find(Locator::Css("#input-device")).await?;
    assert!(select.attr("disabled").await?.is_some(), "nothing to pick");
    studio.screenshot("studio-no-devices").await?;

    // Still alive and responsive: Refresh asks again and gets the same typed answer.
    studio
        .client
        .find(Locator::Css("#app-error button"))
        .await?
        .click()
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        studio.attr("#app-error", "data-kind").await.as_deref(),
        Some("no_input_device")
    );
    studio.quit().await
}

#[tokio::test]
async fn the_studio_shows_whether_the_configured_server_is_reachable() -> anyhow::Result<()> {
    let server_bin = required_env("ONMIC_SERVER_BIN");
    let data = tempfile::tempdir()?;
    let server = Command::new(server_bin)
        .args(["--listen", "127.0.0.1:0"])
        .env("ONMIC_NODE_NAME", "e2e-node")
        .env("ONMIC_DATA_DIR", data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut server = KillOnDrop(server);
    let stdout = server.0.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("onmic-server listening on ")
        .expect("listening line")
        .to_owned();

    let studio = Studio::launch(&[("ONMIC_SERVER_URL", &url)]).await?;
    wait_for_server_state(&studio, "reachable").await?;
    let text = studio
        .attr("#server-status", "title")
        .await
        .unwrap_or_default();
    assert!(
        text.starts_with("Server reachable") && text.contains("e2e-node"),
        "{text}"
    );
    studio.screenshot("studio-server-reachable").await?;

    server.0.kill()?;
    server.0.wait()?;
    wait_for_server_state(&studio, "unreachable").await?;
    let title = studio
        .attr("#server-status", "title")
        .await
        .unwrap_or_default();
    assert!(
        title.contains("onmic-server"),
        "says how to fix it: {title}"
    );
    studio.quit().await
}

#[tokio::test]
async fn the_local_room_runs_inside_the_studio_and_can_be_switched_off() -> anyhow::Result<()> {
    // The configured server is a port where nothing listens.
    let studio = Studio::launch(&[
        ("ONMIC_LOCAL_ROOM", "1"),
        ("ONMIC_SERVER_URL", "http://127.0.0.1:9"),
    ])
    .await?;
    wait_for_server_state(&studio, "reachable").await?;
    let title = studio
        .attr("#server-status", "title")
        .await
        .unwrap_or_default();
    assert!(
        title.starts_with("Local room reachable")
            && title.contains("studio-local")
            && title.contains("http://127.0.0.1:"),
        "{title}"
    );
    assert_eq!(
        studio.attr("#server-status", "data-local").await.as_deref(),
        Some("true")
    );
    studio.screenshot("studio-local-room").await?;

    // Off: the Studio goes back to the configured server (nothing listens there in this test).
    studio.click("#local-room").await?;
    wait_for_server_state(&studio, "unreachable").await?;
    assert_eq!(
        studio.attr("#server-status", "data-local").await.as_deref(),
        Some("false")
    );
    // On again: a fresh local room on the same data.
    studio.click("#local-room").await?;
    wait_for_server_state(&studio, "reachable").await?;
    studio.quit().await
}

/// Waits until the server status in the top bar is `state`.
async fn wait_for_server_state(studio: &Studio, state: &str) -> anyhow::Result<String> {
    let what = format!("the server to show as {state}");
    wait_for(Duration::from_secs(15), &what, || async {
        studio
            .attr("#server-status", "data-state")
            .await
            .filter(|s| s == state)
    })
    .await
}

/// A child process killed when the test ends, whether it passes or panics.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
