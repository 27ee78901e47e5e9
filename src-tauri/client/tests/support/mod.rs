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

pub const INNER: &str = "ONMIC_NETNS_INNER";
/// The server namespace's name, for the inner process of a two-host test.
pub const SERVER_NS: &str = "ONMIC_TEST_SERVER_NS";
pub const KEY: &str = "client-test-key";
pub const SECRET: &str = "client-test-secret-0123456789abcdef";
pub const WAIT: Duration = Duration::from_secs(20);

/// Server at 10.77.0.1 (namespace "…-s"), client at 10.77.0.2 ("…-c") in two-host tests.
pub const SERVER_IP: &str = "10.77.0.1";
pub const CLIENT_VETH: &str = "onmic-c0";

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running `ip {}`: {e} (install iproute2)", args.join(" ")))
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "`ip {}` failed (these tests need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Netns(Vec<String>);
impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn tag(test: &str) -> String {
    let h = test
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    format!("onmic-cl-{}-{:06x}", std::process::id(), h & 0xff_ffff)
}

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
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
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

fn run_inner(netns: &str, args: &[&str], envs: &[(&str, String)]) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .arg(exe)
        .args(args)
        .env(INNER, "1")
        .env("ONMIC_SERVER_BIN", server_bin());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running inside the namespace");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace:\n{text}");
    eprintln!("{text}");
}

fn test_args(test: &str) -> [&str; 4] {
    ["--exact", test, "--nocapture", "--test-threads=1"]
}

/// Runs `test` again inside a fresh loopback-only namespace. Returns `true` when already inside.
pub fn inside_netns(test: &str) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    let name = tag(test);
    ip_ok(&["netns", "add", &name]);
    let _cleanup = Netns(vec![name.clone()]);
    ip_ok(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
    run_inner(&name, &test_args(test), &[]);
    false
}

/// Runs `test` again inside a "client host" namespace joined by a veth pair to a "server host"
/// namespace (named in `SERVER_NS` for the inner run). Returns `true` when already inside.
pub fn inside_two_hosts(test: &str) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    let base = tag(test);
    let (s, c) = (format!("{base}-s"), format!("{base}-c"));
    ip_ok(&["netns", "add", &s]);
    let _s = Netns(vec![s.clone()]);
    ip_ok(&["netns", "add", &c]);
    let _c = Netns(vec![c.clone()]);
    for ns in [&s, &c] {
        ip_ok(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
    }
    ip_ok(&[
        "link",
        "add",
        "onmic-s0",
        "netns",
        &s,
        "type",
        "veth",
        "peer",
        "name",
        CLIENT_VETH,
        "netns",
        &c,
    ]);
    ip_ok(&["-n", &s, "addr", "add", "10.77.0.1/24", "dev", "onmic-s0"]);
    ip_ok(&["-n", &c, "addr", "add", "10.77.0.2/24", "dev", CLIENT_VETH]);
    ip_ok(&["-n", &s, "link", "set", "onmic-s0", "up"]);
    ip_ok(&["-n", &c, "link", "set", CLIENT_VETH, "up"]);
    run_inner(&c, &test_args(test), &[(SERVER_NS, s.clone())]);
    false
}

/// Moves the calling thread into network namespace `name` (sockets it opens afterwards, and
/// threads it spawns, live there).
pub fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("opening namespace {name}: {e}"));
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Cuts (`false`) or restores (`true`) the client host's link to the server host.
pub fn set_link(up: bool) {
    ip_ok(&["link", "set", CLIENT_VETH, if up { "up" } else { "down" }]);
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
