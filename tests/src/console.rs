//! The host's console with a real Chromium listener: the Studio's local room started from its UI,
//! its share link, what a listener page decodes (recorded inside the page) and what a PulseAudio
//! sink plays (recorded from its monitor).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use fantoccini::Locator;

use crate::audio::NullSink;
use crate::browser::Browser;
use crate::studio::Studio;
use crate::wait_for;

/// Starts the Studio with its local room (no remote server), picks `input`'s monitor as the
/// input device in the UI, and returns it with the local room's URL once the room is reachable.
pub async fn launch_local_studio(input: &NullSink) -> anyhow::Result<(Studio, String)> {
    let studio = Studio::launch(&[
        ("ONMIC_LOCAL_ROOM", "1"),
        ("ONMIC_SERVER_URL", "http://127.0.0.1:9"),
    ])
    .await?;
    studio.client.set_window_size(1440, 900).await?;
    select_option(
        &studio,
        "#input-device",
        &format!("Monitor of {}", input.description),
    )
    .await?;
    let title = wait_for(Duration::from_secs(15), "the local room", || async {
        studio
            .attr("#server-status", "title")
            .await
            .filter(|t| t.starts_with("Local room reachable"))
    })
    .await?;
    let url = title
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .ok_or_else(|| anyhow::anyhow!("the status title names no local room URL: {title}"))?
        .to_owned();
    Ok((studio, url))
}

/// Clicks the first option of the `select` whose text contains `text` (waits up to 15 s for it).
pub async fn select_option(studio: &Studio, select: &str, text: &str) -> anyhow::Result<()> {
    let css = format!("{select} option");
    let option = wait_for(Duration::from_secs(15), text, || async {
        for o in studio.client.find_all(Locator::Css(&css)).await.ok()? {
            if o.text().await.ok()?.contains(text) {
                return Some(o);
            }
        }
        None
    })
    .await?;
    option.click().await?;
    Ok(())
}

/// The listener page's probe (`onmicProbe`), `null` when the page has none (yet).
pub async fn probe(browser: &Browser) -> serde_json::Value {
    browser
        .eval("return window.onmicProbe ? window.onmicProbe() : null;")
        .await
        .unwrap_or(serde_json::Value::Null)
}

/// Opens `link` (the Studio's share link) with the page's test hooks (`&test`) and waits until
/// the page has joined and its peer connection is up; returns the listener's uid.
pub async fn open_listener(browser: &Browser, link: &str) -> anyhow::Result<String> {
    browser.client.goto(&format!("{link}&test")).await?;
    wait_for(
        Duration::from_secs(20),
        "the listener page joined and connected",
        || async {
            let p = probe(browser).await;
            let uid = p["uid"].as_str()?.to_owned();
            (p["connection"] == "connected").then_some(uid)
        },
    )
    .await
}

/// Sets a range input of the Studio's UI to `value` as a drag would (React sees the input event).
pub async fn set_range(studio: &Studio, css: &str, value: f64) -> anyhow::Result<()> {
    studio
        .client
        .execute(
            "const e = document.querySelector(arguments[0]); \
             const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set; \
             set.call(e, String(arguments[1])); \
             e.dispatchEvent(new Event('input', { bubbles: true })); return e.value;",
            vec![serde_json::json!(css), serde_json::json!(value)],
        )
        .await?;
    Ok(())
}

/// Goes live from the room bar and waits until the Studio publishes.
pub async fn go_live(studio: &Studio) -> anyhow::Result<()> {
    studio.click("#join-room").await?;
    wait_for(Duration::from_secs(20), "the Studio on air", || async {
        let state = studio.attr("#room-state", "data-state").await?;
        let publishing = studio.attr("#room-state", "data-publishing").await?;
        (state == "connected" && publishing == "true").then_some(())
    })
    .await
}

/// A fresh listener link from the room bar's "Share link" (each link has its own uid).
pub async fn share_link(studio: &Studio) -> anyhow::Result<String> {
    let before = link_value(studio).await;
    studio.click("#listener-link").await?;
    wait_for(Duration::from_secs(10), "a new share link", || async {
        link_value(studio)
            .await
            .filter(|l| l.contains("token=") && Some(l) != before.as_ref())
    })
    .await
}

async fn link_value(studio: &Studio) -> Option<String> {
    let el = studio
        .client
        .find(Locator::Css("#listener-link-url"))
        .await
        .ok()?;
    el.prop("value").await.ok().flatten()
}

/// The Studio's count of packets received, from the room bar.
pub async fn packets_received(studio: &Studio) -> Option<u64> {
    let text = studio.text("#room-counters").await?;
    let (_, rest) = text.split_once("received ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `GET path` on the Studio's local room's REST API, authenticated with the local room's own
/// credentials (read from its `secrets.json` in the app's data directory).
pub async fn local_rest(
    studio: &Studio,
    url: &str,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let home = studio
        .config_home()
        .ok_or_else(|| anyhow::anyhow!("no settings directory"))?;
    let secrets = home.join("data/app.onmic.studio/local-room/secrets.json");
    let secrets: serde_json::Value = serde_json::from_slice(&std::fs::read(&secrets)?)?;
    let secret = secrets["customer_secret"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no customer_secret in the local room's secrets"))?;
    let resp = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(format!("onmic-key:{secret}"))
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "GET {path}: {}", resp.status());
    Ok(resp.json().await?)
}

/// Two channels of 48 kHz float audio.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Frames per second.
    pub rate: f32,
    /// The left channel.
    pub left: Vec<f32>,
    /// The right channel.
    pub right: Vec<f32>,
    /// For a listener recording: every ~100 ms, the frame the recording had reached and the
    /// sum of the receiver's repair counters (concealment events, samples inserted for
    /// deceleration and removed for acceleration) then.
    pub repairs: Vec<(usize, f64)>,
}

impl Capture {
    /// Whether the receiver's jitter buffer repaired anything (concealed, stretched, squeezed)
    /// within `margin` frames of `frame`, by the recording's repair timeline.
    pub fn repaired_near(&self, frame: usize, margin: usize) -> bool {
        let lo = frame.saturating_sub(margin);
        let hi = frame + margin;
        self.repairs.windows(2).any(|w| {
            let ((f0, r0), (f1, r1)) = (w[0], w[1]);
            r1 != r0 && f1 >= lo && f0 <= hi
        })
    }

    /// The channel `ch` (0 left, 1 right).
    pub fn channel(&self, ch: usize) -> &[f32] {
        if ch == 0 { &self.left } else { &self.right }
    }

    /// Writes both channels as a 32-bit float stereo WAV (for a look in an editor, and for the
    /// Python yardstick).
    pub fn write_wav(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: self.rate as u32,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(path, spec)?;
        for (l, r) in self.left.iter().zip(&self.right) {
            w.write_sample(*l)?;
            w.write_sample(*r)?;
        }
        w.finalize()?;
        Ok(())
    }
}

fn floats(b64: &serde_json::Value) -> anyhow::Result<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(
        b64.as_str()
            .ok_or_else(|| anyhow::anyhow!("no samples in {b64}"))?,
    )?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// What the listener page (opened with `?test`) hears from `seat` during the next `seconds`:
/// the page's `onmicTestRecord` hook, tapped from the stream its audio element plays.
pub async fn record_listener(
    browser: &Browser,
    seat: usize,
    seconds: f32,
) -> anyhow::Result<Capture> {
    let v = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             window.onmicTestRecord(arguments[0], arguments[1]).then(done, (e) => done({ error: String(e) }));",
            vec![serde_json::json!(seat), serde_json::json!(seconds)],
        )
        .await?;
    anyhow::ensure!(
        v["error"].is_null(),
        "recording in the page: {}",
        v["error"]
    );
    let mut repairs: Vec<(usize, f64)> = v["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|p| {
                    let n = |k: &str| p[k].as_f64().unwrap_or(0.0);
                    (
                        n("frame") as usize,
                        n("concealmentEvents") + n("inserted") + n("removed"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    repairs.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    Ok(Capture {
        rate: v["rate"].as_f64().unwrap_or(48_000.0) as f32,
        left: floats(&v["left"])?,
        right: floats(&v["right"])?,
        repairs,
    })
}

/// The page's receive statistics for `seat` (`onmicTestStats`): `{at, inbound, codec}`.
pub async fn listener_stats(browser: &Browser, seat: usize) -> anyhow::Result<serde_json::Value> {
    Ok(browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             window.onmicTestStats(arguments[0]).then(done, (e) => done({ error: String(e) }));",
            vec![serde_json::json!(seat)],
        )
        .await?)
}

/// Records `seconds` of what `sink` plays, from its monitor (`parec`, 48 kHz stereo float).
pub fn record_sink(sink: &NullSink, seconds: f32) -> anyhow::Result<Capture> {
    let mut child = Command::new("parec")
        .arg(format!("--device={}.monitor", sink.name))
        .args([
            "--rate=48000",
            "--channels=2",
            "--format=float32le",
            "--latency-msec=20",
            "--raw",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("parec's output"))?;
    let want = (48_000.0 * seconds) as usize * 8;
    let mut bytes = vec![0u8; want];
    let read = out.read_exact(&mut bytes);
    let _ = child.kill();
    let _ = child.wait();
    read?;
    let mut c = Capture {
        rate: 48_000.0,
        ..Capture::default()
    };
    for f in bytes.chunks_exact(8) {
        c.left.push(f32::from_le_bytes([f[0], f[1], f[2], f[3]]));
        c.right.push(f32::from_le_bytes([f[4], f[5], f[6], f[7]]));
    }
    Ok(c)
}

/// RMS level in dBFS (−200 for digital silence).
pub fn rms_dbfs(x: &[f32]) -> f32 {
    if x.is_empty() {
        return -200.0;
    }
    let p = x.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / x.len() as f64;
    if p <= 0.0 {
        -200.0
    } else {
        (10.0 * p.log10()) as f32
    }
}

/// The largest sample-to-sample step |x[n] − x[n−1]|.
pub fn max_step(x: &[f32]) -> f32 {
    x.windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max)
}

/// The largest sample-to-sample step a clean sine of `freq` Hz at peak `amplitude` makes at
/// 48 kHz.
pub fn sine_step(freq: f32, amplitude: f32) -> f32 {
    2.0 * std::f32::consts::PI * freq / 48_000.0 * amplitude
}

/// The largest |x[n]|.
pub fn peak(x: &[f32]) -> f32 {
    x.iter().map(|s| s.abs()).fold(0.0, f32::max)
}
