//! Quiet logs (issue 10, acceptance 14): the Studio as `cargo xtask run` starts it (`--local-room`,
//! the default `info` log filter, no `RUST_LOG`) runs for 60 s under Xvfb with PulseAudio while a
//! Chromium listener joins its local room through the listener page and listens; its log then has
//! no ERROR or WARN line (tracing's, or GLib's `-WARNING **` / `-CRITICAL **`). Before the fix it
//! logged PulseAudio's `Reactor error: Client disconnected` every second and ~10 str0m
//! `Ignore remote PT RED change` warnings per browser offer. Runs inside a loopback-only network
//! namespace; needs `ONMIC_STUDIO_BIN`, `DISPLAY` and the tests' PulseAudio (`cargo xtask
//! with-daemons`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onmic_e2e::browser::Browser;
use onmic_e2e::netns::run_in_netns;
use onmic_e2e::studio::studio_bin;
use onmic_e2e::wait_for;
use serde_json::{Value, json};

/// How long the Studio runs.
const RUN: Duration = Duration::from_secs(60);

#[test]
fn sixty_seconds_of_the_studio_with_a_listener_log_no_error_or_warning() {
    run_in_netns(
        "sixty_seconds_of_the_studio_with_a_listener_log_no_error_or_warning",
        scenario,
    );
}

/// Strips ANSI colour sequences (the Studio's log is coloured).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a log line reports a warning or an error: tracing's level field, GLib's
/// `Domain-WARNING **`, `-CRITICAL **`, `-ERROR **`.
fn is_noise(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let timestamped = words
        .next()
        .is_some_and(|t| t.ends_with('Z') && t.contains('T'));
    let tracing_level = timestamped && words.next().is_some_and(|l| l == "WARN" || l == "ERROR");
    let glib = ["-WARNING **", "-CRITICAL **", "-ERROR **"]
        .iter()
        .any(|m| line.contains(m));
    tracing_level || glib
}

#[test]
fn the_noise_detector_sees_warnings_and_errors_and_nothing_else() {
    assert!(is_noise(&plain(
        "2026-12-04T20:49:13.030411Z \u{1b}[33m WARN\u{1b}[0m str0m::format::payload_params: Ignore remote PT RED change"
    )));
    assert!(is_noise(
        "2026-12-04T20:49:13.030411Z ERROR pulseaudio::client::reactor: Reactor error: Client disconnected"
    ));
    assert!(is_noise(
        "(onmic-studio:123): Gtk-WARNING **: 20:49:13.030: cannot open display"
    ));
    assert!(!is_noise(
        "2026-12-04T20:49:13.030411Z  INFO onmic_studio::local_room: local room started url=http://127.0.0.1:1"
    ));
    assert!(!is_noise("a WARN in the middle of a message"));
    assert!(!is_noise("a ERROR in the middle of a message"));
}

async fn scenario() -> anyhow::Result<()> {
    onmic_e2e::required_env("DISPLAY");
    let home = tempfile::tempdir()?;
    let data = home.path().join("data");
    let log_path = onmic_e2e::workspace_root().join("target/quiet-logs-studio.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(studio_bin());
    cmd.arg("--local-room")
        .env_remove("RUST_LOG")
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_DATA_HOME", &data)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let started = Instant::now();
    let mut studio = cmd.spawn()?;
    let result = listen(&log_path, &data, started).await;
    // The Studio and whatever it started (its own process group).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", studio.id())])
        .status();
    let _ = studio.wait();
    result?;

    let text = std::fs::read_to_string(&log_path)?;
    let lines: Vec<String> = text.lines().map(plain).collect();
    println!(
        "the Studio's log ({} lines, {}):",
        lines.len(),
        log_path.display()
    );
    for l in &lines {
        println!("  {l}");
    }
    let noise: Vec<&String> = lines.iter().filter(|l| is_noise(l)).collect();
    assert!(
        noise.is_empty(),
        "{} ERROR/WARN lines in 60 s: {noise:#?}",
        noise.len()
    );
    Ok(())
}

/// Waits for the local room, makes a room and a listener token with its REST API, and keeps a
/// Chromium listener in it until [`RUN`] has passed since `started`.
async fn listen(
    log_path: &std::path::Path,
    data: &std::path::Path,
    started: Instant,
) -> anyhow::Result<()> {
    let url = wait_for(Duration::from_secs(60), "the local room's URL", || async {
        let text = std::fs::read_to_string(log_path).ok()?;
        let line = text.lines().find(|l| l.contains("local room started"))?;
        let url = plain(line)
            .split_whitespace()
            .find_map(|w| w.strip_prefix("url=").map(str::to_owned))?;
        Some(url)
    })
    .await?;
    let secrets: Value = serde_json::from_slice(&std::fs::read(
        data.join("app.onmic.studio/local-room/secrets.json"),
    )?)?;
    let secret = secrets["customer_secret"].as_str().unwrap_or_default();
    let auth = format!(
        "Bearer {}:{secret}",
        onmic_server::Config::default().customer_key
    );
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{url}/v1/rooms"))
        .header("authorization", &auth)
        .json(&json!({ "id": "quiet", "owner": "host", "title": "Quiet logs", "seat_count": 4 }))
        .send()
        .await?;
    anyhow::ensure!(created.status() == 201, "room: {}", created.text().await?);
    let token: Value = http
        .post(format!("{url}/v1/tokens"))
        .header("authorization", &auth)
        .json(&json!({ "room": "quiet", "uid": "fan", "privileges": ["join"], "ttl_secs": 600 }))
        .send()
        .await?
        .json()
        .await?;
    let token = token["token"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(!token.is_empty(), "no token");

    let browser = Browser::launch().await?;
    browser
        .client
        .goto(&format!("{url}/listen/quiet?token={token}"))
        .await?;
    wait_for(
        Duration::from_secs(30),
        "the listener to connect",
        || async {
            let p = browser
                .eval("return window.onmicProbe ? window.onmicProbe() : null;")
                .await
                .ok()?;
            (p["connection"] == "connected").then_some(())
        },
    )
    .await?;
    println!(
        "listener connected {:.1} s after the Studio started",
        started.elapsed().as_secs_f64()
    );
    if let Some(left) = RUN.checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
    browser.quit().await;
    Ok(())
}
