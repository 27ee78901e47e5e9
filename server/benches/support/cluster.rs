//! What the cluster benches share (`cluster_routing`, `relay_tree`): the test credentials, a
//! child process killed on drop, a private `redis-server` on loopback and an `onmic-server` node
//! on it. Included with `#[path]`; each bench uses part of it.
#![allow(dead_code)]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onmic_room::token::Privilege;
use onmic_server::rest::{TokenRequest, make_token};
use onmic_server::{Clock, Config, SystemClock};

pub const KEY: &str = "bench-key";
pub const SECRET: &str = "bench-secret";
pub const TOKEN_SECRET: &str = "bench-token";
pub const APP: &str = "bench";

/// A child process killed (and reaped) when dropped.
pub struct Kid(pub Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `redis-server` without persistence on 127.0.0.1:`port`, once it listens.
pub fn start_redis(port: u16) -> Kid {
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts (apt-get install redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Kid(child)
}

/// A cluster node named `name` on `redis` with its own SQLite file in `dir`, plus `extra`
/// environment; returns it with its base URL once it listens.
pub fn start_node(
    name: &str,
    redis: &str,
    dir: &std::path::Path,
    extra: &[(&str, String)],
) -> (Kid, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onmic-server"));
    cmd.env_remove("RUST_LOG")
        .env("ONMIC_NODE_NAME", name)
        .env("ONMIC_LISTEN", "127.0.0.1:0")
        .env("ONMIC_LOG", "warn")
        .env("ONMIC_DATABASE", dir.join(format!("{name}.sqlite3")))
        .env("ONMIC_CUSTOMER_KEY", KEY)
        .env("ONMIC_CUSTOMER_SECRET", SECRET)
        .env("ONMIC_TOKEN_SECRET", TOKEN_SECRET)
        .env("ONMIC_APP_ID", APP)
        .env("ONMIC_MEDIA_THREADS", "1")
        .env("ONMIC_MAX_PREJOIN_PER_ADDR", "100000")
        .env("ONMIC_CLUSTER_REDIS", redis)
        .env("ONMIC_WEBHOOK_SECRET", "bench-hook")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("onmic-server starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    let url = loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("node {name} exited before listening");
        }
        if let Some(u) = line.trim().strip_prefix("onmic-server listening on ") {
            break u.to_owned();
        }
    };
    std::thread::spawn(move || for _ in reader.lines() {});
    (Kid(child), url)
}

/// A process's user + system CPU seconds (`/proc/<pid>/stat`), 0 if unreadable.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command: state is field 0, utime 11, stime 12; 100 ticks a second.
    (ticks(11) + ticks(12)) / 100.0
}

/// A join token for `uid` in `room` (join and publish, an hour), signed with the nodes' secret.
pub fn token(room: &str, uid: &str) -> String {
    let config = Config {
        token_secret: TOKEN_SECRET.into(),
        app_id: APP.into(),
        ..Config::default()
    };
    let req = TokenRequest {
        room: room.into(),
        uid: uid.into(),
        privileges: vec![Privilege::Join, Privilege::PublishAudio],
        ttl_secs: 3600,
    };
    make_token(&config, &req, SystemClock.now()).0
}

/// A client WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
