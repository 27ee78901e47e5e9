//! Shared helpers for the server's integration tests: an embedded server on 127.0.0.1, a
//! WebSocket client speaking the JSON protocol, REST calls and tokens.
#![allow(dead_code, missing_docs)]

pub mod cluster;
pub mod hooks;
pub mod pg;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use onmic_server::{Config, RunningServer};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret";
pub const WAIT: Duration = Duration::from_secs(15);
/// A webhook receiver nobody listens on (the discard port, refused): webhooks stay pending.
pub const UNREACHABLE_RECEIVER: &str = "http://127.0.0.1:9/hooks";

pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database: Some(":memory:".into()),
        customer_key: KEY.into(),
        customer_secret: SECRET.into(),
        token_secret: "tok-secret".into(),
        app_id: "app".into(),
        ..Config::default()
    }
}

pub async fn server(config: Config) -> RunningServer {
    onmic_server::start(config).await.expect("server starts")
}

pub fn auth() -> String {
    format!("Bearer {KEY}:{SECRET}")
}

/// REST call with valid auth; returns (status, JSON body).
pub async fn rest(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    rest_with(base, method, path, body, Some(&auth())).await
}

pub async fn rest_with(
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    auth: Option<&str>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{base}{path}");
    let mut req = match method {
        "get" => client.get(url),
        "post" => client.post(url),
        other => panic!("method {other}"),
    };
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("REST answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub async fn create_room(base: &str, id: &str, owner: &str) -> Value {
    create_room_from(base, json!({ "id": id, "owner": owner, "title": "test" })).await
}

/// Creates a room from a full `POST /v1/rooms` body; fails the test unless it is created.
pub async fn create_room_from(base: &str, body: Value) -> Value {
    let (status, body) = rest(base, "post", "/v1/rooms", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    body
}

pub async fn token(base: &str, room: &str, uid: &str) -> String {
    let body = json!({ "room": room, "uid": uid, "privileges": ["join", "publish_audio"] });
    let (status, body) = rest(base, "post", "/v1/tokens", Some(body)).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Every event received, in order.
    pub events: Vec<Value>,
    pub uid: String,
}

impl Client {
    pub async fn connect(base: &str) -> Client {
        let url = format!("{}/ws", base.replace("http://", "ws://"));
        // Small read buffer: tungstenite zero-fills the whole buffer (128 KiB by default) on
        // every read, which made the capacity bench's 2,000 clients cost ~6 % of a core.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(4 * 1024);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
            .await
            .expect("WebSocket connects");
        Client {
            ws,
            next_id: 1,
            events: Vec::new(),
            uid: String::new(),
        }
    }

    /// Connects and joins; returns the client and the `joined` reply.
    pub async fn join(base: &str, room: &str, uid: &str) -> (Client, Value) {
        let tok = token(base, room, uid).await;
        let mut c = Client::connect(base).await;
        c.uid = uid.to_owned();
        let reply = c
            .request(json!({ "type": "join", "room": room, "token": tok }))
            .await;
        assert_eq!(reply["type"], "joined", "{reply}");
        (c, reply)
    }

    pub async fn send_raw(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// The next server message (any kind); `None` when the connection closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("server message within the wait")?;
            match msg {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                    if v["type"] == "event" {
                        self.events.push(v["event"].clone());
                    }
                    return Some(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Sends a request with a fresh id and returns the reply with that id (events before it are
    /// recorded).
    pub async fn request(&mut self, mut body: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        body["id"] = json!(id);
        self.send_raw(body.to_string()).await;
        loop {
            let m = self.next().await.expect("reply before close");
            if m["type"] != "event" && m["id"] == json!(id) {
                return m;
            }
        }
    }

    /// A request that must succeed.
    pub async fn ok(&mut self, body: Value) -> Value {
        let r = self.request(body.clone()).await;
        assert_eq!(r["type"], "ok", "{} -> {r}", body);
        r
    }

    /// Reads until an event with at least `version` arrived.
    pub async fn until_version(&mut self, version: u64) {
        while self
            .events
            .last()
            .and_then(|e| e["version"].as_u64())
            .unwrap_or(0)
            < version
        {
            self.next().await.expect("connection open");
        }
    }

    /// Reads until the server closes; returns the `closing` message, if one came.
    pub async fn until_closed(&mut self) -> Option<Value> {
        let mut closing = None;
        while let Some(m) = self.next().await {
            if m["type"] == "closing" {
                closing = Some(m);
            }
        }
        closing
    }
}

/// The real `onmic-server` binary, started with settings in environment variables.
pub struct Proc {
    pub child: std::process::Child,
    pub url: String,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_onmic-server");

impl Proc {
    pub fn start(db: &std::path::Path, extra: &[(&str, String)]) -> Proc {
        let mut extra = extra.to_vec();
        extra.push(("ONMIC_DATABASE", db.display().to_string()));
        Self::start_env(&extra)
    }

    /// Starts the binary with no database setting but those in `extra` (e.g.
    /// `ONMIC_DATABASE_URL` for PostgreSQL).
    pub fn start_env(extra: &[(&str, String)]) -> Proc {
        let mut cmd = std::process::Command::new(BIN);
        cmd.env_remove("RUST_LOG")
            .env("ONMIC_LISTEN", "127.0.0.1:0")
            .env("ONMIC_LOG", "warn")
            .env("ONMIC_CUSTOMER_KEY", KEY)
            .env("ONMIC_CUSTOMER_SECRET", SECRET)
            .env("ONMIC_TOKEN_SECRET", "tok-secret")
            .env("ONMIC_APP_ID", "app")
            .stderr(std::process::Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let (child, url) = spawn_server(cmd);
        Proc { child, url }
    }

    /// SIGTERM, then waits for a clean exit (status 0) within 30 s.
    pub fn terminate(mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        kill(pid, Signal::SIGTERM).expect("SIGTERM delivered");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "the server exited with {status}");
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit 30 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL delivered");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits at most `wait` for one datagram on `socket` and turns it into str0m input for a peer
/// bound at `local`: a `Receive`, a `Timeout` when nothing came, `None` for a datagram str0m
/// cannot take (skip it).
pub fn next_input<'a>(
    socket: &std::net::UdpSocket,
    buf: &'a mut [u8],
    local: std::net::SocketAddr,
    wait: std::time::Duration,
) -> Option<str0m::Input<'a>> {
    next_input_seen(socket, buf, local, wait, |_| {})
}

/// [`next_input`], showing each received datagram to `seen` first.
pub fn next_input_seen<'a>(
    socket: &std::net::UdpSocket,
    buf: &'a mut [u8],
    local: std::net::SocketAddr,
    wait: std::time::Duration,
    seen: impl FnOnce(&[u8]),
) -> Option<str0m::Input<'a>> {
    let _ = socket.set_read_timeout(Some(wait));
    match socket.recv_from(buf) {
        Ok((n, source)) => {
            seen(&buf[..n]);
            buf[..n].try_into().ok().map(|contents| {
                str0m::Input::Receive(
                    std::time::Instant::now(),
                    str0m::net::Receive {
                        proto: str0m::net::Protocol::Udp,
                        source,
                        destination: local,
                        contents,
                    },
                )
            })
        }
        Err(_) => Some(str0m::Input::Timeout(std::time::Instant::now())),
    }
}

/// Spawns an `onmic-server` command (its stdout is taken) and waits for the line that reports its
/// address; returns the process and its base URL.
pub fn spawn_server(mut cmd: std::process::Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("server binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.strip_prefix("onmic-server listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(WAIT)
        .expect("the server reports its address");
    (child, url)
}
