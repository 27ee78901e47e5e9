//! Pre-join memory bound (issue 14, acceptance 3): the real `onmic-server` binary, 500 WebSocket
//! connections that never join, each sending a maximal pre-join frame — first a complete frame
//! of `MAX_PREJOIN_BYTES`, then a frame announced at the read limit (`MAX_MESSAGE_BYTES`) and
//! left half-sent (what held 133 MB with 1 MiB frames before). Prints the server's RSS growth
//! per phase and per connection and fails if it passes the documented bound (`server/README.md`,
//! "Limits": 64 MiB for 500 connections). The per-address limit is raised for the run so that all
//! 500 connections from loopback are served; the run then checks that the default refuses them.
//!
//! Run: `cargo bench -p onmic-server --bench prejoin_memory`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use onmic_room::protocol::{MAX_MESSAGE_BYTES, MAX_PREJOIN_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 500;
/// The documented bound on the server's RSS growth for 500 such connections.
const BOUND_MIB: f64 = 64.0;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Opens a WebSocket to `/ws` by hand (so a frame can be left half-sent); `None` if refused.
async fn handshake(addr: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 101").then_some(s)
}

/// A masked client text frame header announcing `len` bytes (mask key zero: payload as is).
fn header(len: usize) -> Vec<u8> {
    let mut h = vec![0x81];
    if len < 126 {
        h.push(0x80 | len as u8);
    } else if len <= 0xffff {
        h.push(0x80 | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(0x80 | 127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

async fn phase(addr: &str, pid: u32, name: &str, send: impl Fn() -> Vec<u8>) -> (usize, f64) {
    let before = rss_kib(pid);
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        if let Some(mut s) = handshake(addr).await
            && s.write_all(&send()).await.is_ok()
        {
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    let growth_mib = after.saturating_sub(before) as f64 / 1024.0;
    println!(
        "{name:<44} {:>3} connections held, RSS {:>7.1} -> {:>7.1} MiB, growth {:>6.1} MiB ({:>5.1} KiB per connection)",
        held.len(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        growth_mib,
        growth_mib * 1024.0 / held.len().max(1) as f64,
    );
    drop(held);
    (CONNECTIONS, growth_mib)
}

fn start(limit: Option<&str>) -> (std::process::Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onmic-server"));
    cmd.env("ONMIC_LISTEN", "127.0.0.1:0")
        .env("ONMIC_DATABASE", ":memory:")
        .env("ONMIC_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(limit) = limit {
        cmd.env("ONMIC_MAX_PREJOIN_PER_ADDR", limit);
    }
    let mut child = cmd.spawn().expect("the server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("address")
        .to_owned();
    (child, addr)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    type Frame = Box<dyn Fn() -> Vec<u8>>;
    let full: Frame = Box::new(|| {
        let mut f = header(MAX_PREJOIN_BYTES);
        f.extend(std::iter::repeat_n(b'a', MAX_PREJOIN_BYTES));
        f
    });
    let half: Frame = Box::new(|| {
        let mut f = header(MAX_MESSAGE_BYTES);
        f.extend(std::iter::repeat_n(b'a', MAX_MESSAGE_BYTES / 2));
        f
    });
    let huge: Frame = Box::new(|| {
        let mut f = header(1 << 20);
        f.extend(std::iter::repeat_n(b'a', 64 * 1024));
        f
    });
    println!("prejoin_memory: {CONNECTIONS} connections that never join, a fresh server per phase");
    let mut worst: f64 = 0.0;
    for (name, frame) in [
        (
            format!("complete {MAX_PREJOIN_BYTES}-byte frame each"),
            full,
        ),
        (
            format!("half-sent {MAX_MESSAGE_BYTES}-byte frame each"),
            half,
        ),
        ("1 MiB frame announced, 64 KiB sent".to_owned(), huge),
    ] {
        let (mut child, addr) = start(Some("100000"));
        let pid = child.id();
        let (_, growth) = rt.block_on(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            phase(&addr, pid, &name, frame).await
        });
        worst = worst.max(growth);
        let _ = child.kill();
        let _ = child.wait();
    }
    println!("worst growth {worst:.1} MiB, documented bound {BOUND_MIB} MiB");
    assert!(
        worst < BOUND_MIB,
        "RSS grew {worst:.1} MiB, over {BOUND_MIB} MiB"
    );

    // With the default per-address limit, one address gets 16 waiting connections, no more.
    let (mut child, addr) = start(None);
    rt.block_on(async {
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..CONNECTIONS {
            match handshake(&addr).await {
                Some(s) => held.push(s),
                None => refused += 1,
            }
        }
        println!(
            "default max_prejoin_per_addr: {} of {CONNECTIONS} connections from one address accepted, {refused} refused (HTTP 429)",
            held.len()
        );
        assert_eq!(held.len(), 16);
    });
    let _ = child.kill();
    let _ = child.wait();
}
