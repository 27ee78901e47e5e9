//! Issue 10, acceptance 9 and 7: "Test my mic" and the keyboard shortcuts, end to end in the
//! real Studio window (tauri-driver + WebKitWebDriver under Xvfb) on PulseAudio null sinks.
//!
//! - Test my mic: a 440 Hz tone plays into the virtual input; *Test my mic* records 5 s through
//!   the chain and plays it back on the chosen output; the tone is stopped the moment playback
//!   starts, and the output sink's monitor (recorded with `parec`) must still carry it: the
//!   recording came back, at the right frequency and level. Near silence on the input gives the
//!   "too quiet" advice.
//! - Shortcuts: real key events (xdotool, XTest) on the display; an `onmic-client` listener in the
//!   room measures the host's audio: the global mute toggle stops and restarts it, and with
//!   push-to-talk on the host is heard only while the key is held. WebRTC runs inside a
//!   loopback-only network namespace the test creates.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use onmic_e2e::audio::{NullSink, Playback, sine_rms_dbfs, write_stereo_tone, write_tone};
use onmic_e2e::client_host::ClientHost;
use onmic_e2e::keys;
use onmic_e2e::netns::run_in_netns;
use onmic_e2e::studio::Studio;
use onmic_e2e::wait_for;
use serde_json::{Value, json};

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

/// Clicks the option of `select` whose text contains `text`.
async fn pick_option(studio: &Studio, select: &str, text: &str) -> anyhow::Result<()> {
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
    .await
}

async fn wait_attr(
    studio: &Studio,
    css: &str,
    attr: &str,
    want: &str,
    within: Duration,
) -> anyhow::Result<()> {
    wait_for(within, &format!("{css} {attr}={want}"), || async {
        studio.attr(css, attr).await.filter(|v| v == want).map(drop)
    })
    .await
}

/// Records a sink's monitor (interleaved stereo f32 at 48 kHz) until stopped.
struct MonitorRecorder {
    child: std::process::Child,
    reader: std::thread::JoinHandle<Vec<u8>>,
}

impl MonitorRecorder {
    fn start(sink: &NullSink) -> anyhow::Result<Self> {
        let mut child = Command::new("parec")
            .args([
                &format!("--device={}.monitor", sink.name),
                "--raw",
                "--format=float32le",
                "--rate=48000",
                "--channels=2",
                "--latency-msec=20",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        // Read as it comes: a full pipe would stall parec.
        let mut out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("parec's output"))?;
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = out.read_to_end(&mut bytes);
            bytes
        });
        Ok(Self { child, reader })
    }

    /// Stops and returns the left channel.
    fn stop(mut self) -> anyhow::Result<Vec<f32>> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let bytes = self
            .reader
            .join()
            .map_err(|_| anyhow::anyhow!("the parec reader panicked"))?;
        Ok(bytes
            .chunks_exact(8)
            .map(|f| f32::from_le_bytes([f[0], f[1], f[2], f[3]]))
            .collect())
    }
}

fn rms_dbfs(x: &[f32]) -> f32 {
    if x.is_empty() {
        return -200.0;
    }
    let ms = x.iter().map(|s| f64::from(*s) * f64::from(*s)).sum::<f64>() / x.len() as f64;
    (10.0 * ms.max(1e-20).log10()) as f32
}

/// The frequency of a steady tone from its upward zero crossings (interpolated).
fn tone_frequency(x: &[f32]) -> f32 {
    let mut first = None;
    let mut last = 0.0f64;
    let mut crossings = 0u32;
    for i in 1..x.len() {
        if x[i - 1] < 0.0 && x[i] >= 0.0 {
            let t = (i - 1) as f64 + f64::from(-x[i - 1] / (x[i] - x[i - 1]));
            if first.is_none() {
                first = Some(t);
            } else {
                crossings += 1;
            }
            last = t;
        }
    }
    match first {
        Some(f) if crossings > 0 => (f64::from(crossings) * 48_000.0 / (last - f)) as f32,
        _ => 0.0,
    }
}

/// The longest run of 10 ms blocks above `floor_dbfs`: the played-back recording.
fn loud_run(x: &[f32], floor_dbfs: f32) -> &[f32] {
    let blocks: Vec<bool> = x.chunks(480).map(|b| rms_dbfs(b) > floor_dbfs).collect();
    let (mut best, mut start) = ((0, 0), None);
    for (i, loud) in blocks.iter().chain(std::iter::once(&false)).enumerate() {
        match (loud, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s > best.1 - best.0 {
                    best = (s, i);
                }
                start = None;
            }
            _ => {}
        }
    }
    &x[(best.0 * 480).min(x.len())..(best.1 * 480).min(x.len())]
}

#[tokio::test(flavor = "multi_thread")]
async fn test_my_mic_plays_the_recording_back_and_advises() -> anyhow::Result<()> {
    let mic = NullSink::create("onmic_e2e_mictest_in", "Onmic_E2E_MicTest_In");
    let out = NullSink::create("onmic_e2e_mictest_out", "Onmic_E2E_MicTest_Out");
    let dir = tempfile::tempdir()?;
    let tone = dir.path().join("tone.wav");
    let amplitude = 0.25;
    write_tone(&tone, 440.0, amplitude, 60.0);
    let quiet = dir.path().join("quiet.wav");
    write_tone(&quiet, 440.0, 0.0003, 60.0);

    let studio = Studio::launch(&[]).await?;
    studio.client.set_window_size(1440, 900).await?;
    pick_option(
        &studio,
        "#input-device",
        &format!("Monitor of {}", mic.description),
    )
    .await?;
    pick_option(&studio, "#output-devices", &out.description).await?;

    // 1. A steady tone: recorded, played back after the tone stopped, judged good.
    let playing = Playback::start(&mic, &tone);
    // The output's monitor is recorded from before the test: silent while recording (nothing
    // passes through live), then the recording.
    let recorder = MonitorRecorder::start(&out)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    studio.click("#mic-test-start").await?;
    wait_attr(
        &studio,
        "#mic-test-progress",
        "data-phase",
        "recording",
        Duration::from_secs(10),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    studio.screenshot("mic-test-1-recording").await?;
    let bar_during: f64 = studio
        .attr(".mic-test-bar", "aria-valuenow")
        .await
        .unwrap_or_default()
        .parse()?;
    wait_attr(
        &studio,
        "#mic-test-progress",
        "data-phase",
        "playing",
        Duration::from_secs(10),
    )
    .await?;
    drop(playing); // nothing reaches the input from now on
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    studio.screenshot("mic-test-2-playing").await?;
    wait_for(Duration::from_secs(15), "the mic test result", || async {
        studio.attr("#mic-test-result", "data-verdict").await
    })
    .await?;
    // Let the monitor catch the last of it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let left = recorder.stop()?;
    println!(
        "monitor recorded {:.2} s over {:.2} s of playback phase",
        left.len() as f32 / 48_000.0,
        started.elapsed().as_secs_f32()
    );
    let verdict = studio.attr("#mic-test-result", "data-verdict").await;
    let advice = studio.text("#mic-test-advice").await.unwrap_or_default();
    studio.screenshot("mic-test-3-good").await?;
    assert!(
        bar_during > 10.0 && bar_during < 90.0,
        "progress mid-recording: {bar_during} %"
    );
    let profile: String = left
        .chunks(4800)
        .map(|b| format!("{:.0} ", rms_dbfs(b)))
        .collect();
    println!("monitor level per 100 ms: {profile}");
    std::fs::write(
        onmic_e2e::screenshot_dir().join("mic-test-monitor.f32"),
        left.iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    // The span of the tone on the output, and how much of it carries the tone (a stall of the
    // machine can punch a hole; the gaps are counted and printed).
    let loud: Vec<bool> = left.chunks(480).map(|b| rms_dbfs(b) > -40.0).collect();
    let first = loud.iter().position(|l| *l).unwrap_or(0);
    let last = loud.iter().rposition(|l| *l).unwrap_or(0);
    let span_s = (last + 1 - first) as f32 / 100.0;
    let holes = loud[first..=last].iter().filter(|l| !**l).count();
    println!(
        "tone span on the output {span_s:.2} s, {holes} silent 10 ms blocks inside it ({:.1} %)",
        holes as f32 / (last + 1 - first) as f32 * 100.0
    );
    let run = loud_run(&left, -40.0);
    let seconds = run.len() as f32 / 48_000.0;
    // Before the playback: the recording phase, silent on the output.
    let run_start = first * 480;
    let before = &left[run_start.saturating_sub(3 * 48_000)..run_start.saturating_sub(4800)];
    let silent_before = rms_dbfs(before);
    println!(
        "output while recording: {silent_before:.1} dBFS over {:.1} s",
        before.len() as f32 / 48_000.0
    );
    // Skip the edges (the chain's fade-in and the recorder's start).
    let edge = 4800.min(run.len() / 4);
    let core = &run[edge..run.len() - edge];
    let level = rms_dbfs(core);
    let freq = tone_frequency(core);
    let want = sine_rms_dbfs(amplitude);
    println!(
        "played back: {seconds:.2} s of tone at {freq:.1} Hz, {level:.1} dBFS RMS (input {want:.1}); verdict {verdict:?}: {advice}"
    );
    assert!(
        seconds > 3.5,
        "only {seconds:.2} s of the recording came back on the output"
    );
    assert!(
        (freq - 440.0).abs() < 2.0,
        "the played-back tone is at {freq} Hz"
    );
    assert!(
        (level - want).abs() < 3.0,
        "the played-back tone is at {level:.1} dBFS RMS, the input at {want:.1}"
    );
    assert_eq!(verdict.as_deref(), Some("good"), "{advice}");

    // 2. Near silence on the input: "too quiet", with what to do.
    let _quiet = Playback::start(&mic, &quiet);
    studio.click("#mic-test-start").await?;
    let verdict = wait_for(Duration::from_secs(25), "the second result", || async {
        studio.attr("#mic-test-result", "data-verdict").await
    })
    .await?;
    let advice = studio.text("#mic-test-advice").await.unwrap_or_default();
    println!(
        "near silence ({:.1} dBFS RMS): {verdict}: {advice}",
        sine_rms_dbfs(0.0003)
    );
    studio.screenshot("mic-test-4-too-quiet").await?;
    assert_eq!(verdict, "tooQuiet", "{advice}");
    assert!(advice.starts_with("Too quiet"), "{advice}");
    studio.quit().await
}

#[test]
fn shortcuts_mute_and_push_to_talk_at_a_listener() {
    run_in_netns("shortcuts_mute_and_push_to_talk_at_a_listener", shortcuts);
}

/// The host's audio as the listener hears it now: RMS dBFS of the last 200 ms (left channel).
fn heard_dbfs(listener: &ClientHost, host: &str) -> f32 {
    let x = listener.heard(host, 0);
    rms_dbfs(&x[x.len().saturating_sub(9600)..])
}

async fn until_heard(
    listener: &ClientHost,
    host: &str,
    what: &str,
    loud: bool,
    within: Duration,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    wait_for(within, what, || async {
        let db = heard_dbfs(listener, host);
        (if loud { db > -30.0 } else { db < -60.0 }).then_some(())
    })
    .await?;
    Ok(t0.elapsed())
}

async fn shortcuts() -> anyhow::Result<()> {
    let sink = NullSink::create("onmic_e2e_keys", "Onmic_E2E_Keys");
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("stereo.wav");
    write_stereo_tone(&wav, [440.0, 660.0], 0.25, 120.0);
    let _playback = Playback::start(&sink, &wav);

    let (studio, url) = onmic_e2e::console::launch_local_studio(&sink).await?;
    // The default mute shortcut is grabbed globally on X11.
    wait_attr(
        &studio,
        "#shortcut-mute-state",
        "data-state",
        "global",
        Duration::from_secs(10),
    )
    .await?;
    let mute_key = studio
        .attr("#shortcut-mute", "data-value")
        .await
        .unwrap_or_default();
    println!("mute toggle: {mute_key} (global)");

    studio.click("#join-room").await?;
    studio.wait_on_air(Duration::from_secs(20)).await?;
    let host = invoke(&studio, "room_status").await?["uid"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("room_status has the host's uid"))?
        .to_owned();
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
    until_heard(
        &listener,
        &host,
        "the host's tone at the listener",
        true,
        Duration::from_secs(15),
    )
    .await?;

    // The keys go to the display, with the Studio's window unfocused: a global shortcut must
    // not need the focus. (Under Xvfb without a window manager nothing else holds it.)
    let xkey = |acc: &str| {
        acc.replace("Ctrl", "ctrl")
            .replace("Shift", "shift")
            .replace("Alt", "alt")
    };
    keys::tap(&xkey(&mute_key))?;
    let t = until_heard(
        &listener,
        &host,
        "silence after the mute key",
        false,
        Duration::from_secs(5),
    )
    .await?;
    println!("mute key → silence at the listener in {} ms", t.as_millis());
    wait_attr(
        &studio,
        "#mute-voice",
        "aria-pressed",
        "true",
        Duration::from_secs(5),
    )
    .await?;
    studio.screenshot("shortcuts-1-muted").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        heard_dbfs(&listener, &host) < -60.0,
        "the host came back while muted"
    );
    keys::tap(&xkey(&mute_key))?;
    let t = until_heard(
        &listener,
        &host,
        "the tone after unmuting",
        true,
        Duration::from_secs(5),
    )
    .await?;
    println!(
        "mute key again → heard at the listener in {} ms",
        t.as_millis()
    );
    wait_attr(
        &studio,
        "#mute-voice",
        "aria-pressed",
        "false",
        Duration::from_secs(5),
    )
    .await?;

    // Push-to-talk: on, the host is muted until the key is held.
    studio.click("#ptt-enabled").await?;
    wait_attr(
        &studio,
        "#shortcut-ptt-state",
        "data-state",
        "global",
        Duration::from_secs(10),
    )
    .await?;
    let ptt_key = studio
        .attr("#shortcut-ptt", "data-value")
        .await
        .unwrap_or_default();
    until_heard(
        &listener,
        &host,
        "silence with push-to-talk on",
        false,
        Duration::from_secs(5),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        heard_dbfs(&listener, &host) < -60.0,
        "heard with push-to-talk on and the key up"
    );
    keys::down(&ptt_key)?;
    let t = until_heard(
        &listener,
        &host,
        "the tone while the key is held",
        true,
        Duration::from_secs(5),
    )
    .await?;
    println!("{ptt_key} held → heard in {} ms", t.as_millis());
    wait_attr(
        &studio,
        "#ptt-state",
        "data-held",
        "true",
        Duration::from_secs(5),
    )
    .await?;
    studio.screenshot("shortcuts-2-push-to-talk-held").await?;
    // Held for 2 s: heard all along.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(
            heard_dbfs(&listener, &host) > -30.0,
            "lost while the key is held"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    keys::up(&ptt_key)?;
    let t = until_heard(
        &listener,
        &host,
        "silence after the key is released",
        false,
        Duration::from_secs(5),
    )
    .await?;
    println!("{ptt_key} released → silence in {} ms", t.as_millis());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        heard_dbfs(&listener, &host) < -60.0,
        "heard after the key went up"
    );

    // The help overlay lists both, opened with F1 in the window (the WebDriver's keyboard: the
    // web view holds the focus inside the window).
    studio
        .client
        .find(Locator::Css("body"))
        .await?
        .send_keys("\u{E031}")
        .await?;
    wait_for(Duration::from_secs(5), "the help overlay", || async {
        studio
            .client
            .find(Locator::Css("#help-overlay"))
            .await
            .ok()
            .map(drop)
    })
    .await?;
    let help = studio.text("#help-overlay").await.unwrap_or_default();
    assert!(
        help.contains(&mute_key) && help.contains(&ptt_key),
        "{help}"
    );
    studio.screenshot("shortcuts-3-help").await?;
    studio.click("#help-close").await?;

    listener.close().await;
    studio.click("#leave-room").await?;
    studio.quit().await
}
