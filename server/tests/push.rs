//! CDN push (issue 16, acceptance 5): a real nginx with Debian's RTMP module, started by the test
//! on a loopback port with its own configuration, receives the room's mix from a real WebRTC
//! speaker; `ffprobe` on the pulled stream finds AAC and the push's duration, and the `onVolume`
//! data messages carry the speaker's level at stream times aligned with the audio. Also: bad
//! requests, an unreachable server, a server that dies mid-push (bounded reconnects), stopping
//! twice, and a dismissed room. Needs `nginx`, `libnginx-mod-rtmp`, `rtmpdump` and `ffmpeg`
//! (`xtask/apt/rtmp.txt`); the WebRTC test needs root (its own network namespace).

mod common;
mod sfu_support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use onmic_server::Config;
use onmic_server::push::amf0::Value as Amf;
use onmic_server::push::flv;
use serde_json::{Value, json};
use sfu_support::*;

/// The Debian RTMP module.
const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// nginx with the RTMP module on 127.0.0.1, its files in a temp dir; killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Nginx {
    /// Starts nginx (foreground, workers as root so they can write the temp dir) with an
    /// application `live` that relays and records every stream.
    fn start(dir: &Path) -> Nginx {
        Nginx::start_on(dir, free_port())
    }

    fn start_on(dir: &Path, port: u16) -> Nginx {
        assert!(
            Path::new(RTMP_MODULE).exists(),
            "install nginx and libnginx-mod-rtmp (cargo xtask setup)"
        );
        let d = dir.display();
        let conf = format!(
            "load_module {RTMP_MODULE};\n\
             daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
               application live {{ live on; record all; record_path {d}; record_unique off; }}\n\
             }} }}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs (install nginx)");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    fn url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.port)
    }

    /// What nginx recorded of stream `key`.
    fn recorded(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.flv"))
    }

    /// Stops nginx (SIGTERM to the master, which ends its worker) and waits.
    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `rtmpdump` playing a live stream into an FLV file, as a CDN player would pull it.
struct Pull {
    child: Child,
    file: PathBuf,
}

impl Pull {
    fn start(url: &str, file: PathBuf) -> Pull {
        let child = Command::new("rtmpdump")
            .args(["--live", "--quiet", "-r", url, "-o"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rtmpdump runs (install rtmpdump)");
        Pull { child, file }
    }

    /// Stops the player and returns what it wrote.
    fn finish(mut self) -> PathBuf {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.file.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.file.clone()
    }
}

/// `(codec_name, channels, sample_rate, duration_s)` of the audio as ffprobe reads the file.
fn ffprobe(file: &Path) -> (String, u64, String, f64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "format=duration:stream=codec_name,channels,sample_rate",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs (install ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe refused {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let s = &v["streams"][0];
    (
        s["codec_name"].as_str().unwrap_or("").to_owned(),
        s["channels"].as_u64().unwrap_or(0),
        s["sample_rate"].as_str().unwrap_or("").to_owned(),
        v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(-1.0),
    )
}

/// One `onVolume` message: (tag timestamp, its `t`, [(uid, volume, speaking)]).
type Levels = (u32, f64, Vec<(String, f64, bool)>);

/// The `onVolume` script tags of an FLV file.
fn levels(file: &Path) -> Vec<Levels> {
    let bytes = std::fs::read(file).expect("the pulled file");
    let tags = flv::read_tags(&bytes).expect("an FLV file");
    tags.iter()
        .filter_map(|tag| {
            let values = tag.script()?;
            if values.first()?.as_str()? != flv::ON_VOLUME {
                return None;
            }
            let body = values.get(1)?;
            let t = body.get("t")?.as_number()?;
            let Some(Amf::StrictArray(list)) = body.get("speakers") else {
                return None;
            };
            let speakers = list
                .iter()
                .filter_map(|s| {
                    Some((
                        s.get("uid")?.as_str()?.to_owned(),
                        s.get("volume")?.as_number()?,
                        matches!(s.get("speaking")?, Amf::Boolean(true)),
                    ))
                })
                .collect();
            Some((tag.timestamp, t, speakers))
        })
        .collect()
}

/// The levels carried inside the AAC frames (data stream elements) of an FLV file: (tag
/// timestamp, `t`, [(uid, volume, speaking)]).
fn dse_levels(file: &Path) -> Vec<Levels> {
    let bytes = std::fs::read(file).expect("the pulled file");
    let tags = flv::read_tags(&bytes).expect("an FLV file");
    tags.iter()
        .filter(|tag| tag.kind == 8 && tag.body.get(..2) == Some(&[0xAF, 0x01]))
        .filter_map(|tag| {
            let ((t, speakers), _) = flv::read_levels_dse(&tag.body[2..])?;
            let speakers = speakers
                .into_iter()
                .map(|s| (s.uid, f64::from(s.volume), s.speaking))
                .collect();
            Some((tag.timestamp, f64::from(t), speakers))
        })
        .collect()
}

/// ffmpeg decodes the whole file without a complaint (the levels' elements are skipped).
fn decodes_cleanly(file: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg decoding {}: {errors}",
        file.display()
    );
}

fn config_with(dir: &Path, retries: u32) -> Config {
    Config {
        data_dir: dir.to_owned(),
        push_retries: retries,
        // The receiver refuses: the webhooks stay pending in the outbox.
        webhook_url: Some(common::UNREACHABLE_RECEIVER.into()),
        ..config()
    }
}

#[test]
fn a_push_carries_the_speakers_audio_and_levels_to_an_rtmp_server() {
    in_netns(
        "a_push_carries_the_speakers_audio_and_levels_to_an_rtmp_server",
        push_a_tone,
    );
}

async fn push_a_tone() {
    let dir = tempfile::tempdir().expect("tmp");
    let nginx = Nginx::start(dir.path());
    let server = server(config_with(dir.path(), 5)).await;
    let base = server.url();
    create_room(&base, "cdn", "owner").await;
    let (mut owner, _) = Client::join(&base, "cdn", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (mut guest, _) = Client::join(&base, "cdn", "guest").await;
    guest.ok(json!({ "type": "apply", "seat": 1 })).await;
    owner.ok(json!({ "type": "approve", "uid": "guest" })).await;
    let listener = Peer::connect(&base, "cdn", &token(&base, "cdn", "owner").await, 1).await;
    let speaker = Peer::connect_with(
        &base,
        "cdn",
        &token(&base, "cdn", "guest").await,
        2,
        Some(stereo_tone(440.0, 660.0)),
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

    let key = "room-cdn";
    let pull = Pull::start(
        &format!("{}/{key}", nginx.url()),
        dir.path().join("pulled.flv"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = json!({ "url": nginx.url(), "stream_key": key });
    let asked = Instant::now();
    let (status, started) = rest(&base, "post", "/v1/rooms/cdn/push/start", Some(body)).await;
    let answered = Instant::now();
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["state"], "live", "{started}");
    assert_eq!(started["codec"], "aac");
    assert!(
        !started.to_string().contains(key),
        "the stream key is never shown: {started}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, running) = rest(&base, "get", "/v1/rooms/cdn/push", None).await;
    assert_eq!(
        (status, &running["state"]),
        (200, &json!("live")),
        "{running}"
    );
    assert!(running["bytes_sent"].as_u64() > Some(40_000), "{running}");
    let stop_asked = Instant::now();
    let (status, stopped) = rest(&base, "post", "/v1/rooms/cdn/push/stop", None).await;
    let stop_answered = Instant::now();
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(
        (&stopped["state"], &stopped["reason"]),
        (&json!("stopped"), &json!("request")),
        "{stopped}"
    );
    let (status, again) = rest(&base, "post", "/v1/rooms/cdn/push/stop", None).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("not_pushing")),
        "stopping twice"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pulled = pull.finish();
    let longest = stop_answered.duration_since(asked).as_secs_f64();
    let shortest = stop_asked.duration_since(answered).as_secs_f64();
    eprintln!("push status: {stopped}");

    for file in [pulled.clone(), nginx.recorded(key)] {
        let (codec, channels, rate, duration) = ffprobe(&file);
        eprintln!(
            "{}: {codec} {channels} ch {rate} Hz, {duration:.3} s; push time between {shortest:.3} and {longest:.3} s",
            file.display()
        );
        assert_eq!(
            (codec.as_str(), channels, rate.as_str()),
            ("aac", 2, "48000")
        );
        assert!(
            duration > shortest - 0.5 && duration < longest + 0.5,
            "{}: duration {duration:.3} s, push time between {shortest:.3} and {longest:.3} s",
            file.display()
        );
    }
    let listed = stopped["duration_ms"].as_u64().expect("duration_ms") as f64 / 1000.0;
    assert!(
        listed > shortest - 0.5 && listed < longest + 0.5,
        "status duration {listed}"
    );

    // The levels. nginx-rtmp passes on no script data but `onMetaData`: count what arrived of
    // the `onVolume` messages, for the record. The copy inside the AAC frames arrives: every
    // 200 ms of stream time, in the first frame at or after its time `t`, the guest loud (its
    // tone peaks at half scale: ~128 of 255) once its audio flows.
    let relayed = levels(&pulled);
    eprintln!(
        "onVolume data messages: {} sent, {} reached the player through nginx-rtmp",
        stopped["level_messages"],
        relayed.len()
    );
    for file in [pulled.clone(), nginx.recorded(key)] {
        decodes_cleanly(&file);
        let found = dse_levels(&file);
        eprintln!(
            "{}: {} levels in the AAC frames; first {:?}, last {:?}",
            file.display(),
            found.len(),
            found.first(),
            found.last()
        );
        assert!(
            found.len() >= 15,
            "about 20 level reports in 4 s: {}",
            found.len()
        );
        for w in found.windows(2) {
            assert_eq!(w[1].1 - w[0].1, 200.0, "levels every 200 ms: {w:?}");
        }
        for (ts, t, _) in &found {
            let ts = f64::from(*ts);
            assert!(
                ts >= *t && ts < t + 22.0,
                "the frame carrying the levels of {t} ms plays at {ts} ms"
            );
        }
        let loud: Vec<f64> = found
            .iter()
            .flat_map(|(_, _, s)| s.iter())
            .filter(|(uid, _, speaking)| uid == "guest" && *speaking)
            .map(|(_, v, _)| *v)
            .collect();
        assert!(
            loud.len() >= 10,
            "the guest speaks in most windows: {found:?}"
        );
        // The first window may hold only the mixer's first decoded frames, and an Opus decoder
        // that starts in the middle of a stream ramps its band energies up over its first frames
        // (85-107 seen in that window): there the guest must read as speaking; the steady-state
        // figure holds from the second window on.
        for (i, v) in loud.iter().enumerate() {
            let range = if i == 0 { 40.0..=160.0 } else { 100.0..=160.0 };
            assert!(
                range.contains(v),
                "a half-scale tone reads ~128 (window {i}): {v}"
            );
        }
        assert!(
            found
                .iter()
                .all(|(_, _, s)| s.iter().all(|(uid, ..)| uid == "guest")),
            "only the guest publishes"
        );
    }
    drop((listener, speaker));
    server.shutdown().await.expect("clean shutdown");
    drop(nginx);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_push_requests_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = server(config_with(dir.path(), 2)).await;
    let base = server.url();
    create_room(&base, "r1", "owner").await;
    let start = "/v1/rooms/r1/push/start";

    let (status, body) = rest(&base, "get", "/v1/rooms/r1/push", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_pushing")));
    let (status, body) = rest(&base, "post", "/v1/rooms/r1/push/stop", None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("not_pushing")));
    for garbage in [
        "{",
        "[1,2]",
        "{}",
        "{\"url\": \"rtmp://127.0.0.1/live\"}",
        "{\"url\": 5, \"stream_key\": \"k\"}",
        "{\"url\": \"rtmp://h/a\", \"stream_key\": \"k\", \"extra\": 1}",
        "\u{0}\u{1}",
        "null",
    ] {
        let (status, body) = raw(&base, start, garbage).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{garbage:?}: {body}"
        );
    }
    for (url, key) in [
        ("http://127.0.0.1/live", "k"),
        ("rtmps://127.0.0.1/live", "k"),
        ("rtmp://", "k"),
        ("rtmp://127.0.0.1", "k"),
        ("rtmp://127.0.0.1/", "k"),
        ("rtmp://127.0.0.1:0/live", "k"),
        ("rtmp://127.0.0.1:99999/live", "k"),
        ("rtmp://user:pw@127.0.0.1/live", "k"),
        ("rtmp://127.0.0.1/li ve", "k"),
        ("rtmp://[::1/live", "k"),
        ("rtmp://127.0.0.1/live", ""),
        ("rtmp://127.0.0.1/live", "a\nb"),
    ] {
        let body = json!({ "url": url, "stream_key": key });
        let (status, body) = rest(&base, "post", start, Some(body)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_push_url")),
            "{url:?} {key:?}: {body}"
        );
    }
    let long = format!("rtmp://127.0.0.1/{}", "a".repeat(2000));
    let (status, body) = rest(
        &base,
        "post",
        start,
        Some(json!({ "url": long, "stream_key": "k" })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_push_url"))
    );
    for (field, value) in [
        ("bitrate_kbps", json!(8)),
        ("bitrate_kbps", json!(1000)),
        ("level_interval_ms", json!(50)),
        ("level_interval_ms", json!(150)),
    ] {
        let mut body = json!({ "url": "rtmp://127.0.0.1/live", "stream_key": "k" });
        body[field] = value.clone();
        let (status, body) = rest(&base, "post", start, Some(body)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_push_url")),
            "{field} {value}: {body}"
        );
    }
    let opus = json!({ "url": "rtmp://127.0.0.1/live", "stream_key": "k", "codec": "opus" });
    let (status, body) = rest(&base, "post", start, Some(opus)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("unsupported_codec"))
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Enhanced RTMP")),
        "{body}"
    );
    let ok = json!({ "url": "rtmp://127.0.0.1/live", "stream_key": "k" });
    let (status, body) = rest(&base, "post", "/v1/rooms/nope/push/start", Some(ok)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("no_such_room")));
    let (status, _) = rest_with(&base, "post", start, None, None).await;
    assert_eq!(status, 401, "no credentials");

    // Nothing listens: a clear error at once, no push left behind.
    let dead =
        json!({ "url": format!("rtmp://127.0.0.1:{}/live", free_port()), "stream_key": "k" });
    let (status, body) = rest(&base, "post", start, Some(dead)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (502, Some("rtmp_unreachable")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused")),
        "{body}"
    );
    let (status, last) = rest(&base, "get", "/v1/rooms/r1/push", None).await;
    assert_eq!((status, &last["state"]), (200, &json!("failed")), "{last}");

    // A server that dies mid-push: bounded reconnects (push_retries = 2), then failed.
    let nginx_dir = tempfile::tempdir().expect("tmp");
    let mut nginx = Nginx::start(nginx_dir.path());
    let body = json!({ "url": nginx.url(), "stream_key": "sk-live-7f3a" });
    let (status, started) = rest(&base, "post", start, Some(body.clone())).await;
    assert_eq!(status, 201, "{started}");
    let (status, twice) = rest(&base, "post", start, Some(body.clone())).await;
    assert_eq!(
        (status, twice["code"].as_str()),
        (409, Some("already_pushing"))
    );
    // Another room on the same stream key: nginx refuses the second publisher.
    create_room(&base, "r2", "owner").await;
    let (status, refused) = rest(&base, "post", "/v1/rooms/r2/push/start", Some(body)).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (502, Some("rtmp_refused")),
        "{refused}"
    );
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("NetStream.Publish.BadName")),
        "the server's own reason: {refused}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    nginx.stop();
    let mut states = Vec::new();
    let deadline = Instant::now() + WAIT;
    let last = loop {
        let (_, s) = rest(&base, "get", "/v1/rooms/r1/push", None).await;
        let state = s["state"].as_str().unwrap_or("").to_owned();
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if state == "failed" || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("states {states:?}; final {last}");
    assert_eq!(last["state"], "failed", "{last}");
    assert!(states.contains(&"reconnecting".to_owned()), "{states:?}");
    assert_eq!(last["failed_attempts"], 2, "bounded by push_retries");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("gave up after 2")),
        "{last}"
    );
    let (status, body) = rest(&base, "post", "/v1/rooms/r1/push/stop", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_pushing")),
        "a failed push is not running"
    );

    // A new server on the same port: the room can push again; dismissing the room stops it.
    let mut nginx = Nginx::start_on(nginx_dir.path(), nginx.port);
    let body = json!({ "url": nginx.url(), "stream_key": "k2" });
    let (status, started) = rest(&base, "post", start, Some(body)).await;
    assert_eq!(status, 201, "{started}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = rest(&base, "post", "/v1/rooms/r1/dismiss", None).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + WAIT;
    let last = loop {
        let (_, s) = rest(&base, "get", "/v1/rooms/r1/push", None).await;
        if s["state"] == "stopped" || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (&last["state"], &last["reason"]),
        (&json!("stopped"), &json!("dismissed")),
        "{last}"
    );
    let body = json!({ "url": nginx.url(), "stream_key": "k3" });
    let (status, body) = rest(&base, "post", start, Some(body)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("room_dismissed"))
    );
    nginx.stop();

    // The stream key is a secret: not in the audit log, nor in any status.
    let (status, audit) = rest(&base, "get", "/v1/audit?room=r1", None).await;
    assert_eq!(status, 200);
    assert!(
        audit.to_string().contains("push/start") && !audit.to_string().contains("sk-live-7f3a"),
        "{audit}"
    );

    // The webhooks were queued (the receiver refuses: they wait in the outbox).
    let queued = server
        .hub()
        .store()
        .due_webhooks(onmic_room::Timestamp(u64::MAX), 1000)
        .expect("outbox");
    let types: Vec<String> = queued
        .iter()
        .filter_map(|h| serde_json::from_str::<Value>(&h.body).ok())
        .filter_map(|b| b["type"].as_str().map(str::to_owned))
        .filter(|t| t.starts_with("push_"))
        .collect();
    assert_eq!(
        types,
        [
            "push_started",
            "push_failed",
            "push_started",
            "push_stopped"
        ],
        "one webhook per start and end"
    );
    server.shutdown().await.expect("clean shutdown");
}
