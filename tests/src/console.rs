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
    let url = studio.local_room_url().await?;
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
    /// For a listener recording: how the page recorded it — `"track"` (the track's own 10 ms
    /// chunks through `MediaStreamTrackProcessor`, no Web Audio graph) or `"webaudio"` (a
    /// `ScriptProcessorNode` tap, whose 16384-frame buffers add seams of their own).
    pub source: String,
    /// For a `"track"` recording: each chunk's frame count, timestamp (µs, when Chromium handed
    /// it over) and when the page read it (`performance.now()`, ms), in order.
    pub chunks: Vec<(usize, f64, f64)>,
}

impl Capture {
    /// Whether the receiver's jitter buffer repaired anything (concealed, stretched, squeezed)
    /// from `margin` frames before `frame` to `2 × margin` frames after it, by the recording's
    /// repair timeline. Twice after: the counters show a repair late — in a suite
    /// run at load 12 a control recording with nothing changing had a step 210–310 ms before
    /// the readings between which the counters moved, and none elsewhere.
    pub fn repaired_near(&self, frame: usize, margin: usize) -> bool {
        let lo = frame.saturating_sub(margin);
        let hi = frame + 2 * margin;
        self.repairs.windows(2).any(|w| {
            let ((f0, r0), (f1, r1)) = (w[0], w[1]);
            r1 != r0 && f1 >= lo && f0 <= hi
        })
    }

    /// For a `"track"` recording: the frames at which a chunk starts later than the previous
    /// chunk's timestamp plus its duration by more than `tolerance_ms` (audio the page never
    /// got), with the size of each gap in ms. Chunk timestamps are the time each chunk was
    /// handed over, so a late hand-over shows too; the caller judges the recording near them.
    pub fn chunk_gaps(&self, tolerance_ms: f64) -> Vec<(usize, f64)> {
        let mut out = Vec::new();
        let mut frame = 0usize;
        for w in self.chunks.windows(2) {
            let ((n0, t0, _), (_, t1, _)) = (w[0], w[1]);
            frame += n0;
            let late = (t1 - t0) / 1_000.0 - n0 as f64 * 1_000.0 / f64::from(self.rate);
            if late > tolerance_ms {
                out.push((frame, late));
            }
        }
        out
    }

    /// Whether one of `stalls` (from [`Capture::chunk_gaps`], computed once by the caller) lies
    /// within `margin` frames of `frame`.
    fn stalled_near(&self, stalls: &[(usize, f64)], frame: usize, margin: usize) -> bool {
        stalls.iter().any(|(f, _)| f.abs_diff(frame) <= margin)
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
    let chunks: Vec<(usize, f64, f64)> = v["chunks"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap_or(0.0) as usize,
                        p[1].as_f64().unwrap_or(0.0),
                        p[2].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // In a track recording, put each reading of the counters at the frame Chromium had handed
    // over when it was read, not the frame the page had read by then: under load the page reads
    // hundreds of ms behind, and a repair stamped with the reader's frame lands before the
    // audio it changed. Chunk timestamps and `performance.now()` run on clocks a constant apart;
    // the smallest read-minus-handover difference is taken as that constant.
    if let Some(offset_us) = chunks
        .iter()
        .map(|(_, ts, read)| read * 1_000.0 - ts)
        .min_by(f64::total_cmp)
        && let Some(timeline) = v["timeline"].as_array()
    {
        for (point, repair) in timeline.iter().zip(repairs.iter_mut()) {
            let Some(at) = point["at"].as_f64() else {
                continue;
            };
            let mut handed = 0;
            for (n, ts, _) in &chunks {
                if *ts > at * 1_000.0 - offset_us {
                    break;
                }
                handed += n;
            }
            repair.0 = repair.0.max(handed);
        }
    }
    repairs.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    Ok(Capture {
        source: v["source"].as_str().unwrap_or("webaudio").to_owned(),
        chunks,
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

/// What a step over the click bound in a listener recording lines up with, checked in this
/// order. The first two are seams in the page's recording itself, which a step in the sound the
/// Studio sends would line up with only by chance; the next two are the receiving path's, by its
/// own evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Only in a `"webaudio"` recording (a browser without `MediaStreamTrackProcessor`):
    /// at a seam of the page's recording tap (a `ScriptProcessorNode` with 16384-frame
    /// buffers): within a frame of a multiple of 16384 frames, or on a 128-frame Web Audio render
    /// quantum within the 1024 frames after one. The sound jumps there as if audio was dropped
    /// or repeated (the tone's phase jumps). In six runs with few repairs every step over the
    /// bound that was not next to exact zeros, in the control recordings and the switching ones
    /// alike, fell 0, 128, 256 or 640 frames after a multiple of 16384, the same frames
    /// recurring from run to run; a step at a random frame lands on these 11 of every 16384
    /// frames by chance 1 time in 1,500.
    TapBoundary,
    /// Next to a run of at least 48 exact zeros (1 ms): the page's stream ran dry (the runs are
    /// whole 10 ms chunks) or had not started — in a `"track"` recording only the latter (at
    /// its start): there a hole later is a dropout. Audio decoded from Opus holds no such run in the
    /// middle of a tone, and none of the settings switched here (nor their crossfades) makes one
    /// of a sine.
    ZeroRun,
    /// Within [`repair_margin`] of a jitter-buffer repair (concealment, time-stretch), by the
    /// recording's repair timeline.
    Repair,
    /// Only in a `"track"` recording: within [`repair_margin`] of a stall of Chromium's audio
    /// thread (a chunk handed over more than [`STALL_MS`] late). Under heavy load (a full
    /// suite with other builds, load average 16) the page's track had stalls of 17–1,176 ms and
    /// steps over the bound within 100–160 ms of them in a control recording with nothing
    /// changing and no repair counted: what the receiver does to its output around a stall is
    /// not all in its counters.
    Stall,
    /// None of these: counted as a click (printed).
    Unexplained,
}

impl StepKind {
    /// Every kind, in the order they are checked.
    pub const ALL: [StepKind; 5] = [
        StepKind::TapBoundary,
        StepKind::ZeroRun,
        StepKind::Repair,
        StepKind::Stall,
        StepKind::Unexplained,
    ];

    /// What the kind means, for a report.
    pub fn describe(self) -> &'static str {
        match self {
            StepKind::TapBoundary => "at seams of the recording tap's 16384-frame buffers",
            StepKind::ZeroRun => "next to runs of exact zeros (the page's stream running dry)",
            StepKind::Repair => "near the jitter buffer's repairs",
            StepKind::Stall => "near stalls of Chromium's audio thread",
            StepKind::Unexplained => "unexplained (clicks)",
        }
    }
}

/// The click bound at each 10 ms block of `x`: twice the largest step a clean sine at
/// `max_hz` (the highest frequency the sound can hold) makes at the largest |x| within 50 ms of
/// the block.
pub fn local_bounds(x: &[f32], max_hz: f32) -> Vec<f32> {
    let peaks: Vec<f32> = x.chunks(480).map(peak).collect();
    (0..peaks.len())
        .map(|b| {
            let lo = b.saturating_sub(5);
            let hi = (b + 6).min(peaks.len());
            2.0 * sine_step(max_hz, peaks[lo..hi].iter().copied().fold(0.0, f32::max))
        })
        .collect()
}

/// Steps over the local bound ([`local_bounds`] at `max_hz`) on either channel of `rec`, as events (steps
/// less than 10 ms apart are one): the frame of each event's first step, what it lines up with,
/// and its largest step relative to the bound there.
pub fn step_events(rec: &Capture, max_hz: f32) -> Vec<(usize, StepKind, f32)> {
    let zeros = |x: &[f32], from: usize, to: usize| {
        from < to && to <= x.len() && x[from..to].iter().all(|v| *v == 0.0)
    };
    let (bl, br) = (
        local_bounds(&rec.left, max_hz),
        local_bounds(&rec.right, max_hz),
    );
    // In a track recording, exact zeros are put down to the stream only before it starts: a
    // hole later is a dropout, which is what this check is for.
    let first_sound = rec
        .left
        .iter()
        .zip(&rec.right)
        .position(|(l, r)| *l != 0.0 || *r != 0.0)
        .unwrap_or(rec.left.len());
    let stalls = rec.chunk_gaps(STALL_MS);
    let mut events: Vec<(usize, StepKind, f32)> = Vec::new();
    for n in 1..rec.left.len().min(rec.right.len()) {
        let (l, r) = (
            (rec.left[n] - rec.left[n - 1]).abs() / bl[n / 480].max(1e-5),
            (rec.right[n] - rec.right[n - 1]).abs() / br[n / 480].max(1e-5),
        );
        if l <= 1.0 && r <= 1.0 {
            continue;
        }
        let over = l.max(r);
        if let Some(last) = events.last_mut()
            && n - last.0 < 480
        {
            last.2 = last.2.max(over);
            continue;
        }
        let phase = n % 16_384;
        let kind = if rec.source == "webaudio"
            && (matches!(phase, 1 | 16_383) || (phase < 1_024 && phase % 128 == 0))
        {
            StepKind::TapBoundary
        } else if (rec.source == "webaudio" || n <= first_sound + 48)
            && [&rec.left, &rec.right]
                .iter()
                .any(|x| zeros(x, n.saturating_sub(48), n) || zeros(x, n, n + 48))
        {
            StepKind::ZeroRun
        } else if rec.repaired_near(n, repair_margin(rec)) {
            StepKind::Repair
        } else if rec.stalled_near(&stalls, n, repair_margin(rec)) {
            StepKind::Stall
        } else {
            StepKind::Unexplained
        };
        events.push((n, kind, over));
    }
    events
}

/// A listener click check's attempts at most ([`judge_clicks`]).
pub const CLICK_ATTEMPTS: usize = 3;
/// An attempt whose recording is at most this share near repairs or stalls
/// ([`disturbed_cover`]) is judged enough.
pub const CLICK_JUDGED_ENOUGH: f32 = 0.5;
/// How long after a change a click is put down to it (the UI, the engine's crossfade, the path
/// and the jitter buffer: changes were heard 0.1–0.5 s after they were sent).
pub const CLICK_AFTER_CHANGE_S: f32 = 1.5;

/// Judges a click check at a listener over up to [`CLICK_ATTEMPTS`] attempts. Each attempt
/// (`attempt(n)`) makes the changes while the page records and returns the recording and the
/// changes (what, s after the recording was asked for). Under load the receiving path splices
/// its output now and then where neither its counters nor a stall show it (seen: pairs of steps
/// 10 ms apart, in recordings with nothing changing too); such a splice lands at a random time,
/// a click the Studio makes follows its change every time. So the check passes on the first
/// attempt that is judged enough (at most [`CLICK_JUDGED_ENOUGH`] near repairs or stalls) and
/// has no click, and fails when a click follows the same change (within
/// [`CLICK_AFTER_CHANGE_S`]) in two attempts, or when no attempt was both judged enough and
/// clean. Returns the failures (empty: passed), everything printed on the way.
pub async fn judge_clicks(
    what: &str,
    max_hz: f32,
    mut attempt: impl AsyncFnMut(usize) -> anyhow::Result<(Capture, Vec<(String, f32)>)>,
) -> anyhow::Result<Vec<String>> {
    let mut per_change: std::collections::BTreeMap<(usize, String), usize> = Default::default();
    let mut seen = Vec::new();
    for n in 1..=CLICK_ATTEMPTS {
        let (rec, changes) = attempt(n).await?;
        let label = format!("{what} (attempt {n})");
        let clicks = report_clicks(&label, &rec, max_hz, &changes);
        let disturbed = disturbed_cover(&rec);
        anyhow::ensure!(
            rec.source == "track",
            "{label}: recorded by {}, not the track (MediaStreamTrackProcessor missing?)",
            rec.source
        );
        anyhow::ensure!(
            !rec.repairs.is_empty(),
            "{label}: no repair counters were read"
        );
        // The changes a click followed in this attempt (each counted once per attempt).
        let mut followed = std::collections::BTreeSet::new();
        for (frame, kind, _) in step_events(&rec, max_hz) {
            if kind != StepKind::Unexplained {
                continue;
            }
            let t = frame as f32 / rec.rate;
            if let Some((i, (change, _))) = changes
                .iter()
                .enumerate()
                .rev()
                .find(|(_, c)| c.1 <= t && t - c.1 <= CLICK_AFTER_CHANGE_S)
            {
                followed.insert((i, change.clone()));
            }
        }
        for key in followed {
            *per_change.entry(key).or_default() += 1;
        }
        if let Some(((_, change), _)) = per_change.iter().find(|(_, k)| **k >= 2) {
            return Ok(vec![format!(
                "{what}: a click followed \"{change}\" in two attempts (clicks: {seen:?}, then attempt {n}: {clicks:?})"
            )]);
        }
        if disturbed <= CLICK_JUDGED_ENOUGH && clicks.is_empty() {
            println!(
                "{label}: no click, {:.0} % of the recording judged",
                100.0 * (1.0 - disturbed)
            );
            return Ok(Vec::new());
        }
        println!(
            "{label}: {} click(s), {:.0} % of the recording near repairs or stalls (not judged); recording again",
            clicks.len(),
            100.0 * disturbed
        );
        seen.push(format!(
            "attempt {n}: {clicks:?}, {:.0} % unjudged",
            100.0 * disturbed
        ));
    }
    Ok(vec![format!(
        "{what}: no attempt of {CLICK_ATTEMPTS} was both judged enough and without a click: {seen:?}"
    )])
}

/// How late (ms) a chunk may be handed over before it counts as a stall of Chromium's audio
/// thread ([`Capture::chunk_gaps`]).
pub const STALL_MS: f64 = 15.0;

/// How near a jitter-buffer repair or a stall a step is put down to it: the recording's
/// granularity (one 10 ms chunk for the track, 16384 frames for the Web Audio tap) plus 200 ms
/// (the counters are read every 100 ms, and `getStats` answers later still).
pub fn repair_margin(rec: &Capture) -> usize {
    if rec.source == "track" {
        480 + 9_600
    } else {
        16_384 + 9_600
    }
}

/// The share of `rec`'s frames within [`repair_margin`] of a repair or a stall
/// (a jitter-buffer repair, [`Capture::repaired_near`], or a stall of Chromium's audio thread:
/// where a click would go uncounted).
pub fn disturbed_cover(rec: &Capture) -> f32 {
    let n = rec.left.len();
    if n == 0 {
        return 0.0;
    }
    let stalls = rec.chunk_gaps(STALL_MS);
    let covered = (0..n)
        .step_by(480)
        .filter(|&f| {
            rec.repaired_near(f, repair_margin(rec))
                || rec.stalled_near(&stalls, f, repair_margin(rec))
        })
        .count();
    covered as f32 / n.div_ceil(480) as f32
}

/// Prints what [`step_events`] finds in a listener recording at `max_hz` — how it was recorded,
/// its largest steps and peaks, the jitter buffer's repairs and how much of the recording they
/// cover, then each step over the bound with its kind and the change in `changes` (what, seconds
/// after the recording was asked for) sent last before it — and returns the clicks (steps of kind
/// [`StepKind::Unexplained`]), each as "time, after which change".
pub fn report_clicks<S: AsRef<str>>(
    what: &str,
    rec: &Capture,
    max_hz: f32,
    changes: &[(S, f32)],
) -> Vec<String> {
    let repairs =
        rec.repairs.last().map_or(0.0, |r| r.1) - rec.repairs.first().map_or(0.0, |r| r.1);
    println!(
        "clicks at the listener, {what}: recorded by {} ({} chunks, stalls over {STALL_MS} ms: {:?}); largest step {:.4} / {:.4}, peak {:.3} / {:.3} (left / right); the jitter buffer repaired {repairs} samples; {:.0} % of the recording within {} frames of a repair or a stall (not judged)",
        rec.source,
        rec.chunks.len(),
        rec.chunk_gaps(STALL_MS)
            .iter()
            .map(|(f, ms)| format!("{:.3} s +{ms:.0} ms", *f as f32 / rec.rate))
            .collect::<Vec<_>>(),
        max_step(&rec.left),
        max_step(&rec.right),
        peak(&rec.left),
        peak(&rec.right),
        100.0 * disturbed_cover(rec),
        repair_margin(rec)
    );
    let events = step_events(rec, max_hz);
    for kind in StepKind::ALL {
        let n = events.iter().filter(|e| e.1 == kind).count();
        println!("  {n} step(s) {}", kind.describe());
    }
    let mut clicks = Vec::new();
    for (frame, kind, over) in &events {
        let t = *frame as f32 / rec.rate;
        let after = changes
            .iter()
            .rev()
            .find(|c| c.1 <= t)
            .map(|(w, c)| format!(", {:.2} s after \"{}\" was sent", t - c, w.as_ref()))
            .unwrap_or_default();
        println!("    at {t:.3} s (frame {frame}): {over:.1} × the bound, {kind:?}{after}");
        if *kind == StepKind::Unexplained {
            clicks.push(format!("{t:.3} s{after}"));
        }
    }
    println!("  clicks in {what}: {clicks:?}");
    clicks
}
