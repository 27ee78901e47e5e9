//! The real `onmic-server` binary as a child process, with REST and WebSocket helpers to drive
//! it the way an app backend and a host would.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The REST customer key the test server is started with.
pub const KEY: &str = "e2e-key";
/// The REST customer secret the test server is started with.
pub const SECRET: &str = "e2e-secret";

/// Path of the server binary: `ONMIC_SERVER_BIN` (exported by `cargo xtask test`), else the
/// build directory next to this test binary.
pub fn server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ONMIC_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/onmic-server
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("onmic-server"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} not found: build it (`cargo build -p onmic-server`) or set ONMIC_SERVER_BIN",
        bin.display()
    );
    bin
}

/// A running server process on 127.0.0.1; killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the binary with a fresh database and `extra` environment, waits for `/health`.
    pub async fn start(extra: &[(&str, &str)]) -> anyhow::Result<ServerProcess> {
        let dir = tempfile::tempdir()?;
        let port = crate::free_port();
        let mut cmd = Command::new(server_bin());
        cmd.env("ONMIC_LISTEN", format!("127.0.0.1:{port}"))
            .env("ONMIC_DATA_DIR", dir.path())
            .env("ONMIC_CUSTOMER_KEY", KEY)
            .env("ONMIC_CUSTOMER_SECRET", SECRET)
            .env("ONMIC_TOKEN_SECRET", "e2e-token-secret")
            .env("ONMIC_WEBHOOK_SECRET", "e2e-webhook-secret")
            .env("ONMIC_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        let server = ServerProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let health = format!("{}/health", server.base);
        crate::wait_for(Duration::from_secs(20), "the server's /health", || {
            let health = health.clone();
            async move {
                let r = reqwest::get(&health).await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await?;
        Ok(server)
    }

    /// A REST call with the customer credentials; returns (status, JSON body).
    pub async fn rest(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "get" => client.get(url),
            "post" => client.post(url),
            other => panic!("method {other}"),
        };
        req = req.header("authorization", format!("Bearer {KEY}:{SECRET}"));
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

    /// Creates a room with `seats` regular seats.
    pub async fn create_room(&self, id: &str, owner: &str, title: &str, seats: u16) {
        let body = json!({ "id": id, "owner": owner, "title": title, "seat_count": seats });
        let (status, body) = self.rest("post", "/v1/rooms", Some(body)).await;
        assert_eq!(status, 201, "room created: {body}");
    }

    /// A server with room `id` (owner `host`, `seats` regular seats) and the host's token to
    /// join and publish.
    pub async fn with_room(id: &str, title: &str, seats: u16) -> anyhow::Result<(Self, String)> {
        let server = Self::start(&[]).await?;
        server.create_room(id, "host", title, seats).await;
        let host = server.speaker_token(id, "host").await;
        Ok((server, host))
    }

    /// A one-hour token for `uid` to join `room` and publish (once seated).
    pub async fn speaker_token(&self, room: &str, uid: &str) -> String {
        self.token(room, uid, &["join", "publish_audio"], 3600)
            .await
    }

    /// A room token with `privileges`, valid for `ttl_secs`.
    pub async fn token(&self, room: &str, uid: &str, privileges: &[&str], ttl_secs: u64) -> String {
        let body =
            json!({ "room": room, "uid": uid, "privileges": privileges, "ttl_secs": ttl_secs });
        let (status, body) = self.rest("post", "/v1/tokens", Some(body)).await;
        assert_eq!(status, 200, "token issued: {body}");
        body["token"].as_str().expect("token").to_owned()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A member on the WebSocket protocol (the host's side in these tests).
pub struct WsMember {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Every room event received, in order.
    pub events: Vec<Value>,
}

impl WsMember {
    /// Connects and joins `room` with `token`.
    pub async fn join(base: &str, room: &str, token: &str) -> WsMember {
        let url = format!("{}/ws", base.replace("http://", "ws://"));
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket connects");
        let mut m = WsMember {
            ws,
            next_id: 1,
            events: Vec::new(),
        };
        let reply = m
            .request(json!({ "type": "join", "room": room, "token": token }))
            .await;
        assert_eq!(reply["type"], "joined", "{reply}");
        m
    }

    /// The next server message; `None` when closed or nothing came within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(within, self.ws.next()).await.ok()??;
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

    /// Sends a request and returns its reply (events before it are recorded).
    pub async fn request(&mut self, mut body: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        body["id"] = json!(id);
        self.ws
            .send(Message::Text(body.to_string().into()))
            .await
            .expect("send");
        loop {
            let m = self
                .next(Duration::from_secs(15))
                .await
                .expect("reply before close");
            if m["type"] != "event" && m["id"] == json!(id) {
                return m;
            }
        }
    }

    /// A request that must succeed.
    pub async fn ok(&mut self, body: Value) {
        let r = self.request(body.clone()).await;
        assert_eq!(r["type"], "ok", "{body} -> {r}");
    }

    /// Reads messages for `within`, recording events (keeps the connection drained).
    pub async fn pump(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
            if self.next(left).await.is_none() {
                break;
            }
        }
    }

    /// Reads until an event matching `pred` was recorded (or fails after 20 s).
    pub async fn until_event(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(e) = self.events.iter().find(|e| pred(e)) {
                return e.clone();
            }
            let left = deadline
                .checked_duration_since(tokio::time::Instant::now())
                .unwrap_or_else(|| panic!("timed out waiting for {what}"));
            self.next(left).await;
        }
    }
}
