//! Fan-out benchmark (loopback only): the real `onmic-server` binary, 1,000 WebSocket clients in
//! one room. Prints the seat-change delivery latency (p50/p99/max, budget p99 <= 50 ms), the chat
//! fan-out throughput, and the server's resident memory per connected client.
//!
//! Run: `cargo bench -p onmic-server --bench fanout` (env `ONMIC_BENCH_CLIENTS` changes the
//! client count). It raises its own open-file limit and stops by itself.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use onmic_room::token::Privilege;
use onmic_server::rest::{TokenRequest, make_token};
use onmic_server::{Clock, Config, SystemClock};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "bench-key";
const SECRET: &str = "bench-secret";
const BUDGET_P99_MS: f64 = 50.0;
const SEAT_CHANGES: usize = 30;
const CHATS: usize = 200;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn raise_fd_limit(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let target = want.min(hard).max(soft);
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            eprintln!("could not raise the open-file limit: {e}");
        }
        println!("open-file limit: {} (hard {hard})", target);
    }
}

fn start_server(dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_onmic-server"))
        .env_remove("RUST_LOG")
        .env("ONMIC_LISTEN", "127.0.0.1:0")
        .env("ONMIC_LOG", "warn")
        .env("ONMIC_DATABASE", dir.join("bench.sqlite3"))
        .env("ONMIC_CUSTOMER_KEY", KEY)
        .env("ONMIC_CUSTOMER_SECRET", SECRET)
        .env("ONMIC_TOKEN_SECRET", "bench-token")
        .env("ONMIC_APP_ID", "bench")
        .env("ONMIC_PRESENCE_TIMEOUT_MS", "600000")
        .env("ONMIC_CHAT_BURST", "1000000")
        .env("ONMIC_MAX_FRAMES_PER_SEC", "1000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stdout);
    let url = loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("server exited before listening");
        }
        if let Some(u) = line.trim().strip_prefix("onmic-server listening on ") {
            break u.to_owned();
        }
    };
    std::thread::spawn(move || for _ in reader.lines() {});
    Server { child, url }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn token(uid: &str) -> String {
    let config = Config {
        token_secret: "bench-token".into(),
        app_id: "bench".into(),
        ..Config::default()
    };
    let req = TokenRequest {
        room: "bench".into(),
        uid: uid.into(),
        privileges: vec![Privilege::Join, Privilege::PublishAudio],
        ttl_secs: 3600,
    };
    make_token(&config, &req, SystemClock.now()).0
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join(ws_url: &str, uid: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("connect");
    let join = json!({ "id": 1, "type": "join", "room": "bench", "token": token(uid) });
    ws.send(Message::Text(join.to_string().into()))
        .await
        .expect("send join");
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Text(t) = m
            && t.contains("\"joined\"")
        {
            return ws;
        }
    }
    panic!("{uid} could not join");
}

/// (client, event type, version, arrival)
type Arrival = (usize, &'static str, u64, Instant);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let clients: usize = std::env::var("ONMIC_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    raise_fd_limit((clients as u64) * 2 + 512);
    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(dir.path());
    let base = server.url.clone();
    let ws_url = format!("{}/ws", base.replace("http://", "ws://"));
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/v1/rooms"))
        .header("authorization", format!("Bearer {KEY}:{SECRET}"))
        .header("content-type", "application/json")
        .body(json!({ "id": "bench", "owner": "owner", "title": "bench" }).to_string())
        .send()
        .await
        .expect("create room");
    assert!(created.status().is_success());
    let pid = server.child.id();
    let rss_before = rss_kib(pid);

    let (tx, mut rx) = mpsc::unbounded_channel::<Arrival>();
    let t_join = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut joins = Vec::new();
    for i in 0..clients {
        let (ws_url, tx, sem) = (ws_url.clone(), tx.clone(), sem.clone());
        joins.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.expect("semaphore");
            let mut ws = join(&ws_url, &format!("listener-{i}")).await;
            drop(permit);
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let now = Instant::now();
                let kind = if t.contains("\"type\":\"seat_changed\"") {
                    "seat"
                } else if t.contains("\"type\":\"chat\"") {
                    "chat"
                } else {
                    continue;
                };
                // A cheap scan for the version keeps the clients' share of the 2 cores small.
                let version = t
                    .find("\"version\":")
                    .map(|i| &t[i + 10..])
                    .map(|r| {
                        r.chars()
                            .take_while(char::is_ascii_digit)
                            .collect::<String>()
                    })
                    .and_then(|d| d.parse::<u64>().ok())
                    .unwrap_or(0);
                if tx.send((i, kind, version, now)).is_err() {
                    return;
                }
            }
        }));
    }
    // Wait until every client has joined (the member count says so).
    loop {
        let room: Value = http
            .get(format!("{base}/v1/rooms/bench"))
            .header("authorization", format!("Bearer {KEY}:{SECRET}"))
            .send()
            .await
            .expect("get room")
            .json()
            .await
            .expect("json");
        if room["members"].as_object().map(|m| m.len()).unwrap_or(0) >= clients {
            break;
        }
        assert!(
            t_join.elapsed() < Duration::from_secs(120),
            "clients did not all join"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let join_s = t_join.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid);

    let mut owner = join(&ws_url, "owner").await;
    let mut id = 10u64;
    let mut request = async |owner: &mut Ws, body: Value| -> u64 {
        id += 1;
        let mut body = body;
        body["id"] = json!(id);
        owner
            .send(Message::Text(body.to_string().into()))
            .await
            .expect("send");
        while let Some(Ok(m)) = owner.next().await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                if v["id"] == json!(id) {
                    return v["version"].as_u64().unwrap_or(0);
                }
            }
        }
        panic!("owner connection closed");
    };
    request(&mut owner, json!({ "type": "take_seat", "seat": 0 })).await;
    // Drain arrivals so far.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while rx.try_recv().is_ok() {}

    // Seat changes: mute/unmute the owner's seat, one at a time; latency = arrival - send.
    let mut latencies_ms = Vec::with_capacity(SEAT_CHANGES * clients);
    let mut incomplete = 0;
    for n in 0..SEAT_CHANGES {
        let ty = if n % 2 == 0 {
            "mute_seat"
        } else {
            "unmute_seat"
        };
        let sent = Instant::now();
        let version = request(&mut owner, json!({ "type": ty, "seat": 0 })).await;
        let mut got = 0;
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while got < clients {
            tokio::select! {
                a = rx.recv() => {
                    let Some((_, kind, v, at)) = a else { break };
                    if kind == "seat" && v == version {
                        got += 1;
                        latencies_ms.push(at.duration_since(sent).as_secs_f64() * 1000.0);
                    }
                }
                _ = &mut deadline => break,
            }
        }
        incomplete += clients - got;
    }
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let p50 = percentile(&latencies_ms, 0.50);
    let p99 = percentile(&latencies_ms, 0.99);
    let max = latencies_ms.last().copied().unwrap_or(f64::NAN);

    // Chat fan-out: the owner pipelines CHATS messages (no waiting for replies); count
    // deliveries at the listeners.
    let (mut owner_tx, mut owner_rx) = owner.split();
    let replies = tokio::spawn(async move {
        let mut last = 0u64;
        let mut oks = 0;
        while oks < CHATS {
            let Some(Ok(Message::Text(t))) = owner_rx.next().await else {
                break;
            };
            let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
            if v["type"] == "ok" {
                oks += 1;
                last = last.max(v["version"].as_u64().unwrap_or(0));
            }
        }
        last
    });
    let sent = Instant::now();
    for n in 0..CHATS {
        let chat = json!({ "id": 1000 + n, "type": "chat", "text": format!("chat {n}") });
        owner_tx
            .send(Message::Text(chat.to_string().into()))
            .await
            .expect("send chat");
    }
    let last_version = replies.await.expect("owner replies");
    let mut per_version: HashMap<u64, usize> = HashMap::new();
    let mut delivered = 0usize;
    let want = CHATS * clients;
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    let mut last_at = Instant::now();
    while delivered < want {
        tokio::select! {
            a = rx.recv() => {
                let Some((_, kind, v, at)) = a else { break };
                if kind == "chat" && v <= last_version {
                    delivered += 1;
                    *per_version.entry(v).or_default() += 1;
                    last_at = at;
                }
            }
            _ = &mut deadline => break,
        }
    }
    let chat_s = last_at.duration_since(sent).as_secs_f64();

    println!("== onmic-server fan-out benchmark (loopback, release) ==");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average {} (server, clients and anything else share them)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("clients connected: {clients} (joined in {join_s:.2} s)");
    println!(
        "seat change -> all clients: {} samples, p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; budget p99 <= {BUDGET_P99_MS} ms: {}",
        latencies_ms.len(),
        if p99 <= BUDGET_P99_MS {
            "MET"
        } else {
            "MISSED"
        }
    );
    if incomplete > 0 {
        println!("seat change deliveries missing after 10 s: {incomplete}");
    }
    println!(
        "chat fan-out: {CHATS} messages x {clients} clients = {delivered}/{want} deliveries in {chat_s:.2} s = {:.0} deliveries/s ({:.0} messages/s)",
        delivered as f64 / chat_s,
        CHATS as f64 / chat_s
    );
    println!(
        "server RSS: {rss_before} KiB idle, {rss_after} KiB with {clients} clients = {:.1} KiB per connected client",
        (rss_after.saturating_sub(rss_before)) as f64 / clients as f64
    );
    for j in joins {
        j.abort();
    }
    drop(server);
}
