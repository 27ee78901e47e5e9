//! Shared by the client's tests and benches: private network namespaces (loopback-only, or two
//! "hosts" joined by a veth pair), the real `onmic-server` binary, REST helpers, a stereo Opus
//! test tone and tone analysis.
#![allow(dead_code, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onmic_audio::test_signals::goertzel_power;
use onmic_client::{ClientEvent, ConnectionState, RoomClient};
use serde_json::{Value, json};

// Not every test binary that includes this module uses every item.
#[allow(unused_imports)]
pub use onmic_netns::{CLIENT_VETH, INNER, SERVER_IP, SERVER_NS, enter_netns, set_link};
pub const KEY: &str = "client-test-key";
pub const SECRET: &str = "client-test-secret-0123456789abcdef";
pub const WAIT: Duration = Duration::from_secs(20);

/// The `onmic-server` binary: `ONMIC_SERVER_BIN`, or built here with cargo (same target
/// directory and profile as this test).
pub fn server_bin() -> String {
    if let Ok(b) = std::env::var("ONMIC_SERVER_BIN") {
        return b;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps/<test>");
    // The checkout `cargo test` runs in (not the one a reused binary was built in).
    let root = format!(
        "{}/../..",
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
    );
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-p", "onmic-server", "--bin", "onmic-server"])
        .current_dir(root);
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("running cargo to build onmic-server");
    assert!(
        status.success(),
        "building onmic-server failed; set ONMIC_SERVER_BIN to a built binary"
    );
    dir.join("onmic-server").to_string_lossy().into_owned()
}

/// Runs `test` again inside a fresh loopback-only namespace (with the server binary found here).
/// Returns `true` when already inside.
pub fn inside_netns(test: &str) -> bool {
    onmic_netns::inside_netns_with(test, &[("ONMIC_SERVER_BIN", server_bin())])
}

/// Runs `test` again in a client-host namespace joined to a server-host one (see
/// `onmic_netns::inside_two_hosts`). Returns `true` when already inside.
pub fn inside_two_hosts(test: &str) -> bool {
    onmic_netns::inside_two_hosts(test, &[("ONMIC_SERVER_BIN", server_bin())])
}

/// A running `onmic-server` process, killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// Starts the binary listening on `ip` (inside namespace `netns` if given) with extra
    /// `ONMIC_*` settings.
    pub fn start(ip: &str, netns: Option<&str>, envs: &[(&str, &str)]) -> Server {
        let bin = server_bin();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, &bin]);
                c
            }
            None => Command::new(&bin),
        };
        cmd.args(["--listen", &format!("{ip}:0")])
            .env("ONMIC_DATABASE", ":memory:")
            .env("ONMIC_CUSTOMER_KEY", KEY)
            .env("ONMIC_CUSTOMER_SECRET", SECRET)
            .env(
                "ONMIC_TOKEN_SECRET",
                "client-test-token-secret-0123456789abcdef",
            )
            .env(
                "ONMIC_WEBHOOK_SECRET",
                "client-test-webhook-secret-0123456789",
            )
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the server binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("onmic-server listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server prints its 'listening on' line");
        Server { child, url }
    }

    pub async fn rest(&self, path: &str, body: Value) -> Value {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {KEY}:{SECRET}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("REST answers");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).expect("JSON body")
    }

    pub async fn create_room(&self, room: &str, owner: &str) {
        self.rest(
            "/v1/rooms",
            json!({ "id": room, "owner": owner, "title": "client test" }),
        )
        .await;
    }

    pub async fn token(&self, room: &str, uid: &str) -> String {
        let v = self
            .rest(
                "/v1/tokens",
                json!({ "room": room, "uid": uid, "privileges": ["join", "publish_audio"] }),
            )
            .await;
        v["token"].as_str().expect("token").to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use onmic_client::test_tone::StereoTone;

/// Power ratio in dB of `want` over `other` in `x`.
pub fn separation_db(x: &[f32], want: f32, other: f32) -> f64 {
    10.0 * (goertzel_power(x, want) / goertzel_power(x, other).max(1e-12)).log10()
}

pub fn rms(x: &[f32]) -> f32 {
    onmic_audio::test_signals::rms(x)
}

/// Waits (draining `client.events`) until `pred` holds for an event; returns the events seen.
pub async fn wait_event(
    client: &mut RoomClient,
    what: &str,
    mut pred: impl FnMut(&ClientEvent) -> bool,
) -> Vec<ClientEvent> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.events.recv()).await {
            Ok(Some(e)) => {
                let hit = pred(&e);
                seen.push(e);
                if hit {
                    return seen;
                }
            }
            Ok(None) => panic!("client stopped while waiting for {what}: {seen:?}"),
            Err(_) => panic!("timed out waiting for {what}: {seen:?}"),
        }
    }
}

/// Waits for the media to be connected.
pub async fn connected(client: &mut RoomClient) -> Vec<ClientEvent> {
    wait_event(client, "media connected", |e| {
        matches!(e, ClientEvent::State(ConnectionState::Connected))
    })
    .await
}

/// Polls `cond` every 20 ms; fails with `what` after [`WAIT`].
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Feeds `tone` into `publisher` every 20 ms until dropped.
pub fn spawn_tone(publisher: onmic_client::Publisher) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tone = StereoTone::new().expect("Opus encoder");
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let (p, ts) = tone.next_packet().expect("encode");
            publisher.send(&p, ts);
        }
    })
}

pub fn local_ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A multi-threaded runtime for a scenario.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
