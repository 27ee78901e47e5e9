//! Server-side recording of the room mix (issue 5, acceptance 6): started and stopped over REST,
//! an Ogg Opus file that ffprobe reads with the wall-clock duration, the tones of a real stereo
//! publisher on their own channels, listings that survive a restart, and clear errors for bad
//! requests. Needs `ffprobe`/`ffmpeg`; the WebRTC test needs root (its own network namespace).

mod common;
mod sfu_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use onmic_server::Config;
use serde_json::{Value, json};
use sfu_support::*;

fn config_in(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        database: Some(dir.join("onmic.sqlite3")),
        // The receiver refuses: the recording webhooks stay pending in the outbox.
        webhook_url: Some(common::UNREACHABLE_RECEIVER.into()),
        ..config()
    }
}

/// `(format_name, codec_name, channels, sample_rate, duration_s)` as ffprobe reads the file.
fn ffprobe(file: &str) -> (String, String, u64, String, f64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=format_name,duration:stream=codec_name,channels,sample_rate",
            "-of",
            "json",
            file,
        ])
        .output()
        .expect("ffprobe runs (install ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe refused {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let s = &v["streams"][0];
    (
        v["format"]["format_name"].as_str().unwrap_or("").to_owned(),
        s["codec_name"].as_str().unwrap_or("").to_owned(),
        s["channels"].as_u64().unwrap_or(0),
        s["sample_rate"].as_str().unwrap_or("").to_owned(),
        v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(-1.0),
    )
}

/// The file decoded by ffmpeg to interleaved stereo f32 at 48 kHz.
fn decode(file: &str) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args([
            "-v", "error", "-i", file, "-f", "f32le", "-ac", "2", "-ar", "48000", "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg could not decode {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Power of `hz` in `x` (Goertzel), normalised by length.
fn power(x: &[f32], hz: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * hz / 48_000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s = v + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f32).powi(2)
}

#[test]
fn a_recording_holds_the_stereo_tone_for_the_wall_clock_duration() {
    in_netns(
        "a_recording_holds_the_stereo_tone_for_the_wall_clock_duration",
        record_a_tone,
    );
}

async fn record_a_tone() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = server(config_in(dir.path())).await;
    let base = server.url();
    create_room(&base, "rec", "owner").await;
    let (mut owner, _) = Client::join(&base, "rec", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (mut guest, _) = Client::join(&base, "rec", "guest").await;
    guest.ok(json!({ "type": "apply", "seat": 1 })).await;
    owner.ok(json!({ "type": "approve", "uid": "guest" })).await;
    let listener = Peer::connect(&base, "rec", &token(&base, "rec", "owner").await, 1).await;
    let tone = stereo_tone(440.0, 660.0);
    let speaker = Peer::connect_with(
        &base,
        "rec",
        &token(&base, "rec", "guest").await,
        2,
        Some(tone),
    )
    .await;
    speaker
        .sending
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let heard = || {
        listener
            .received
            .lock()
            .expect("counts")
            .values()
            .sum::<u64>()
    };
    until("the owner hears the guest", || heard() > 25).await;

    let asked = Instant::now();
    let (status, started) = rest(&base, "post", "/v1/rooms/rec/recording/start", None).await;
    let answered = Instant::now();
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["status"], "recording");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stop_asked = Instant::now();
    let (status, stopped) = rest(&base, "post", "/v1/rooms/rec/recording/stop", None).await;
    let stop_answered = Instant::now();
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["status"], "done", "{stopped}");
    assert_eq!(stopped["reason"], "request");
    assert_eq!(stopped["id"], started["id"]);
    // Wall time between start and stop, bounded by the request round trips.
    let longest = stop_answered.duration_since(asked).as_secs_f64();
    let shortest = stop_asked.duration_since(answered).as_secs_f64();
    let file = stopped["file"].as_str().expect("file").to_owned();
    assert!(
        file.starts_with(&dir.path().join("recordings").to_string_lossy().into_owned()),
        "{file}"
    );

    let (format, codec, channels, rate, duration) = ffprobe(&file);
    eprintln!("ffprobe: {duration:.3} s; wall time between {shortest:.3} and {longest:.3} s");
    assert_eq!(format, "ogg");
    assert_eq!(codec, "opus");
    assert_eq!(channels, 2);
    assert_eq!(rate, "48000");
    assert!(
        duration > shortest - 0.5 && duration < longest + 0.5,
        "duration {duration:.3} s, wall time between {shortest:.3} and {longest:.3} s"
    );
    let listed_ms = stopped["duration_ms"].as_u64().expect("duration_ms") as f64 / 1000.0;
    assert!(
        (listed_ms - duration).abs() < 0.05,
        "listing {listed_ms} s vs file {duration} s"
    );

    let pcm = decode(&file);
    let frames = pcm.len() / 2;
    assert!(frames > 48_000 * 3, "{frames} frames decoded");
    // Skip the first second (jitter delay, encoder start), look at the next two.
    let window = &pcm[2 * 48_000..2 * 3 * 48_000];
    let left: Vec<f32> = window.iter().step_by(2).copied().collect();
    let right: Vec<f32> = window.iter().skip(1).step_by(2).copied().collect();
    let (l440, l660) = (power(&left, 440.0), power(&left, 660.0));
    let (r440, r660) = (power(&right, 440.0), power(&right, 660.0));
    eprintln!("left 440 {l440:.2e} 660 {l660:.2e}; right 440 {r440:.2e} 660 {r660:.2e}");
    assert!(l440 > 0.01, "the 440 Hz tone is loud on the left: {l440}");
    assert!(r660 > 0.01, "the 660 Hz tone is loud on the right: {r660}");
    assert!(l440 > 100.0 * l660, "left holds 440 Hz, not 660 Hz");
    assert!(r660 > 100.0 * r440, "right holds 660 Hz, not 440 Hz");

    let (status, list) = rest(&base, "get", "/v1/rooms/rec/recordings", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["recordings"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["recordings"][0], stopped);

    // The file can be downloaded over REST, whole or by byte range (players seek that way).
    let id = stopped["id"].as_str().expect("id");
    let url = format!("{base}/v1/rooms/rec/recordings/{id}/file");
    let whole = reqwest::Client::new()
        .get(&url)
        .header("authorization", auth())
        .send()
        .await
        .expect("download");
    assert_eq!(whole.status(), 200);
    assert_eq!(
        whole.headers()["content-type"].to_str().ok(),
        Some("audio/ogg")
    );
    assert!(
        whole.headers()["content-disposition"]
            .to_str()
            .is_ok_and(|d| d.contains("attachment") && d.ends_with(".opus\"")),
        "{:?}",
        whole.headers()
    );
    let body = whole.bytes().await.expect("body");
    assert_eq!(
        body.as_ref(),
        std::fs::read(&file).expect("file").as_slice()
    );
    let part = reqwest::Client::new()
        .get(&url)
        .header("authorization", auth())
        .header("range", "bytes=0-3")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.expect("part").as_ref(), b"OggS");
    let anonymous = reqwest::get(&url).await.expect("request");
    assert_eq!(anonymous.status(), 401, "recordings need credentials");
    drop((listener, speaker));
    server.shutdown().await.expect("clean shutdown");
}

/// A raw REST call with any body bytes.
async fn raw(base: &str, path: &str, body: &'static str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("authorization", auth())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_recording_requests_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = server(config_in(dir.path())).await;
    let base = server.url();
    create_room(&base, "r1", "owner").await;
    let stop = "/v1/rooms/r1/recording/stop";
    let start = "/v1/rooms/r1/recording/start";

    let (status, body) = rest(&base, "post", stop, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_recording"))
    );
    for path in [
        "/v1/rooms/nope/recording/start",
        "/v1/rooms/nope/recording/stop",
    ] {
        let (status, body) = rest(&base, "post", path, None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("no_such_room")),
            "{path}"
        );
    }
    let (status, _) = rest(&base, "get", "/v1/rooms/nope/recordings", None).await;
    assert_eq!(status, 404);
    for garbage in ["{", "[1,2]", "{\"bitrate\": 1}", "\u{0}\u{1}", "null"] {
        let (status, body) = raw(&base, start, garbage).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{garbage:?}: {body}"
        );
    }
    let (status, _) = rest_with(&base, "post", start, None, None).await;
    assert_eq!(status, 401, "no credentials");
    let (status, _) = rest_with(&base, "post", start, None, Some("Bearer x:y")).await;
    assert_eq!(status, 401, "wrong credentials");
    let (_, list) = rest(&base, "get", "/v1/rooms/r1/recordings", None).await;
    assert_eq!(list["recordings"], json!([]), "nothing was started");

    // `{}` is a valid body; a second start is refused while the first runs.
    let (status, first) = raw(&base, start, "{}").await;
    assert_eq!(status, 201, "{first}");
    let (status, body) = rest(&base, "post", start, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("already_recording"))
    );
    let (_, list) = rest(&base, "get", "/v1/rooms/r1/recordings", None).await;
    assert_eq!(list["recordings"].as_array().map(Vec::len), Some(1));
    let running = list["recordings"][0]["id"].as_str().expect("id").to_owned();
    let (status, body) = rest(
        &base,
        "get",
        &format!("/v1/rooms/r1/recordings/{running}/file"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("still_recording")),
        "a running recording is not served half-written"
    );
    let (status, body) = rest(&base, "get", "/v1/rooms/r1/recordings/nope/file", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    // Dismissing the room ends its recording; the file is complete.
    let (status, _) = rest(&base, "post", "/v1/rooms/r1/dismiss", None).await;
    assert_eq!(status, 200);
    let mut listed = Value::Null;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let (_, list) = rest(&base, "get", "/v1/rooms/r1/recordings", None).await;
        listed = list["recordings"][0].clone();
        if listed["status"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed["status"], "done", "{listed}");
    assert_eq!(listed["reason"], "dismissed");
    let (format, codec, ..) = ffprobe(listed["file"].as_str().expect("file"));
    assert_eq!((format.as_str(), codec.as_str()), ("ogg", "opus"));
    let (status, body) = rest(&base, "post", start, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("room_dismissed"))
    );
    // Both webhooks were queued (the receiver refuses: they wait in the outbox).
    let queued = server
        .hub()
        .store()
        .due_webhooks(onmic_room::Timestamp(u64::MAX), 1000)
        .expect("outbox");
    let id = first["id"].as_str().expect("id");
    for (ty, event_id) in [
        ("recording_started", format!("{id}:started")),
        ("recording_stopped", format!("{id}:stopped")),
    ] {
        let hook = queued
            .iter()
            .find(|h| h.event_id == event_id)
            .unwrap_or_else(|| panic!("{ty} queued"));
        let body: Value = serde_json::from_str(&hook.body).expect("JSON body");
        assert_eq!(body["type"], ty);
        assert_eq!(body["room"], "r1");
        assert_eq!(body["data"]["id"], id);
    }

    // Shutting down finishes a running recording; the listing survives a restart.
    create_room(&base, "r2", "owner").await;
    let (status, _) = rest(&base, "post", "/v1/rooms/r2/recording/start", None).await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.shutdown().await.expect("clean shutdown");
    let again = common::server(config_in(dir.path())).await;
    let (status, list) = rest(&again.url(), "get", "/v1/rooms/r2/recordings", None).await;
    assert_eq!(status, 200, "{list}");
    let rec = &list["recordings"][0];
    assert_eq!(rec["status"], "done", "{rec}");
    assert_eq!(rec["reason"], "shutdown");
    let (_, _, channels, _, duration) = ffprobe(rec["file"].as_str().expect("file"));
    assert_eq!(channels, 2);
    assert!(
        (0.5..2.0).contains(&duration),
        "about 0.7 s recorded: {duration}"
    );
    again.shutdown().await.expect("clean shutdown");
}
