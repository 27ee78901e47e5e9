//! Benchmark (issue 10, acceptance 11): the Studio's event-to-paint delay in a busy room,
//! measured inside its web view, and the Studio process's CPU.
//!
//! A room server (the release binary `cargo xtask` builds) holds a room of 2,000 members: the
//! Studio as owner on seat 0, 8 speakers (`onmic-client` peers publishing a tone, seats 1–8, so
//! the server sends volume indications for 8 speakers; they decode nothing they receive) and 1,991 listeners on the WebSocket
//! protocol with heartbeats; 50 chat messages a second come from the listeners in turn. The
//! Studio stamps every room status it sends to the UI (`emittedAtMs`); the UI records, for each,
//! the delay to the first animation frame after React committed it (`ui/src/paintProbe.ts`).
//! After a 10 s warm-up the bench reads 30 s of delays and prints p50, p99, the count, and the
//! Studio's CPU (user + system over wall time, percent of one core; the room server's own CPU
//! is not included) and its web view's. Budget: p99 ≤ 50 ms. The server and the bench's own
//! listeners and speakers (the simulated room, elsewhere on a host's machine) run at nice 19
//! (`ONMIC_BENCH_LOAD_POLICY=idle`: under `SCHED_IDLE`) so that they do not take the cores from
//! the Studio they measure; run the bench itself at the
//! normal priority (not under `nice`).
//!
//! Run: `cargo xtask with-daemons -- cargo bench -p onmic-e2e --bench studio_paint`
//! (`ONMIC_BENCH_MEMBERS`, `ONMIC_BENCH_CHAT_PER_SEC`, `ONMIC_BENCH_SECS` override the load;
//! `ONMIC_BENCH_WINDOW=WxH` the window's size, 1440x900 by default).
//! Diagnosis: `ONMIC_PAINT_DIAG=1` adds the DOM changes, the frame intervals and the frame
//! intervals with one part of the window hidden; with it, `ONMIC_PAINT_VARIANTS=FILE` (lines
//! `name|css`) measures each CSS variant's frame intervals, interleaved, `ONMIC_PAINT_ROUNDS`
//! times (default 3), and `ONMIC_PAINT_PERF=DIR` records the web view with `perf` while the first
//! round measures each variant (`DIR/<name>.data`), `ONMIC_PAINT_VARIANT_SHOTS=DIR` saves the X
//! display after it (`DIR/<name>.png`; with `WEBKIT_SHOW_DAMAGE=1`, what that frame redrew). `ONMIC_PAINT_XSHOT=FILE.png` saves the X display
//! after the measurement, `ONMIC_PAINT_DOM=FILE.html` the page with its style sheets inline (for
//! `scripts/studio_paint_trial.py`); `ONMIC_STUDIO_STDERR=FILE` keeps the Studio's log. `ONMIC_PAINT_GAPS=1` adds the
//! web view's main thread's busy stretches, how much of each late status's wait fell in one, and
//! each thread's time on and waiting for a CPU (Studio and web view), the processes that
//! used the most CPU on the machine, and how many of the statuses over 50 ms (and of all) had a
//! change of the live stats card, the room bar's counters or the audience count within their
//! wait. `ONMIC_PAINT_JS=CODE` runs code in the page before the warm-up (a style sheet; `window.__onmicMeterEveryMs`). See docs/studio.md, "Fourth round" to
//! "Thirteenth round".
//! WebRTC runs in a loopback-only network namespace the bench creates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use futures_util::{SinkExt, StreamExt};
use onmic_e2e::client_host::ClientHost;
use onmic_e2e::server::ServerProcess;
use onmic_e2e::studio::Studio;
use onmic_e2e::wait_for;
use onmic_server::Config;
use onmic_server::rest::{TokenRequest, make_token};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "bench";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if !onmic_netns::bench_inside_netns(&[]) {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run())
        .expect("benchmark");
}

fn token(uid: &str, privileges: &[&str]) -> String {
    let config = Config {
        token_secret: "e2e-token-secret".into(),
        ..Config::default()
    };
    let req: TokenRequest = serde_json::from_value(json!({
        "room": ROOM, "uid": uid, "privileges": privileges, "ttl_secs": 3600,
    }))
    .expect("token request");
    make_token(&config, &req, onmic_room::Timestamp(now_ms())).0
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join(ws_url: &str, uid: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    let join = json!({ "id": 1, "type": "join", "room": ROOM, "token": token(uid, &["join"]) });
    ws.send(Message::text(join.to_string())).await?;
    let mut last = String::new();
    while let Some(m) = ws.next().await {
        match m? {
            Message::Text(t) if t.contains("\"joined\"") => return Ok(ws),
            Message::Text(t) => last = t.chars().take(300).collect(),
            Message::Close(c) => last = format!("closed: {c:?}"),
            _ => {}
        }
    }
    anyhow::bail!("{uid} could not join (last from the server: {last})")
}

/// Total CPU time (user + system) of `pid`, seconds (0 if it cannot be read).
fn cpu_seconds(pid: u32) -> f64 {
    name_and_cpu_seconds(pid).map_or(0.0, |(_, t)| t)
}

/// `pid`'s command name and total CPU time (user + system, seconds), from one read of
/// `/proc/PID/stat`.
fn name_and_cpu_seconds(pid: u32) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name sits in parentheses and may hold spaces; the fields after it start after
    // the last ')'.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime is field 14, stime 15 (1-based); here index 11 and 12.
    Some((name, (ticks(11) + ticks(12)) / 100.0))
}

/// Every process's CPU time (seconds) and name: what ran on the machine in the measured
/// seconds (`ONMIC_PAINT_GAPS`).
fn all_cpu_seconds() -> std::collections::HashMap<u32, (String, f64)> {
    numbered_entries("/proc")
        .into_iter()
        .filter_map(|pid| Some((pid, name_and_cpu_seconds(pid)?)))
        .collect()
}

/// Prints the processes that used the most CPU between two [`all_cpu_seconds`] snapshots.
fn print_top(
    before: &std::collections::HashMap<u32, (String, f64)>,
    after: &std::collections::HashMap<u32, (String, f64)>,
    wall: f64,
) {
    let mut rows: Vec<(f64, u32, &str)> = after
        .iter()
        .map(|(pid, (name, t))| {
            let t0 = before.get(pid).map_or(0.0, |b| b.1);
            ((t - t0) / wall * 100.0, *pid, name.as_str())
        })
        .collect();
    let total: f64 = rows.iter().map(|r| r.0).sum();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let top: Vec<String> = rows
        .iter()
        .take(8)
        .filter(|r| r.0 >= 1.0)
        .map(|(c, pid, name)| format!("{name} ({pid}) {c:.0} %"))
        .collect();
    println!(
        "studio_paint: the machine: {total:.0} % of one core in all; most: {}",
        top.join(", ")
    );
}

/// The Studio's process id (the one running the binary under test).
fn studio_pid() -> Option<u32> {
    let want = std::fs::canonicalize(onmic_e2e::studio::studio_bin()).ok()?;
    find_pid(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == want))
}

/// The first process in `/proc` that `matches`.
fn find_pid(matches: impl Fn(u32) -> bool) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        matches(pid).then_some(pid)
    })
}

/// Puts every thread of `pid` under `policy` (Linux keeps both per thread; threads they start
/// later inherit them): `idle` is `SCHED_IDLE` (a thread that runs only on a CPU nothing else
/// wants, and gives it up at once when a normal thread wakes), `nice` is nice 19 (a low weight,
/// but a woken Studio thread can still wait for its slice to end). Returns how many threads were
/// changed.
fn lower_load(pid: &str, policy: &str) -> usize {
    let tids: Vec<String> = task_ids(pid).iter().map(u32::to_string).collect();
    let quiet = |c: &mut std::process::Command| {
        c.stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = if policy == "idle" {
        tids.iter()
            .all(|t| quiet(std::process::Command::new("chrt").args(["--idle", "-p", "0", t])))
    } else {
        quiet(
            std::process::Command::new("renice")
                .args(["-n", "19", "-p"])
                .args(&tids),
        )
    };
    if ok { tids.len() } else { 0 }
}

/// The Studio's web view process (WebKitGTK's `WebKitWebProcess`, a child of the Studio): where
/// the UI's JavaScript, layout and painting run.
fn webview_pid(studio: u32) -> Option<u32> {
    find_pid(|pid| {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        ppid == Some(studio) && head.contains("WebKitWebProces")
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run() -> anyhow::Result<()> {
    let members = env_or("ONMIC_BENCH_MEMBERS", 2000) as usize;
    let chat_per_sec = env_or("ONMIC_BENCH_CHAT_PER_SEC", 50);
    let secs = env_or("ONMIC_BENCH_SECS", 30);
    let speakers = 8usize;
    let listeners = members.saturating_sub(speakers + 1);

    let server = ServerProcess::start(&[
        ("ONMIC_PRESENCE_TIMEOUT_MS", "600000"),
        ("ONMIC_CHAT_BURST", "1000000"),
        ("ONMIC_MAX_FRAMES_PER_SEC", "1000000"),
        // Every listener comes from 127.0.0.1, 64 joining at once (the default lets 16 of one
        // address wait to join and refuses more with HTTP 429).
        ("ONMIC_MAX_PREJOIN_PER_ADDR", "1000"),
    ])
    .await?;
    server.create_room(ROOM, "host", "Paint bench", 8).await;
    let host_token = server
        .token(ROOM, "host", &["join", "publish_audio", "admin"], 3600)
        .await;

    let studio = Studio::launch(&[("ONMIC_SERVER_URL", server.base.as_str())]).await?;
    // `ONMIC_BENCH_WINDOW=WxH` (diagnosis; the budget is read at 1440x900).
    let (w, h) = std::env::var("ONMIC_BENCH_WINDOW")
        .ok()
        .and_then(|v| {
            let (w, h) = v.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .unwrap_or((1440u32, 900u32));
    studio.client.set_window_size(w, h).await?;
    // Go live on the server with the host's token. The room field is React's: set its value the
    // way typing does (WebDriver's clear() does not reach React's state, and the keys were
    // appended to the default room id).
    let set = studio
        .client
        .execute(
            r#"const [css, value] = arguments;
               const el = document.querySelector(css);
               if (!el) return false;
               Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set.call(el, value);
               el.dispatchEvent(new Event("input", { bubbles: true }));
               return true;"#,
            vec![json!("#room-id"), json!(ROOM)],
        )
        .await?;
    anyhow::ensure!(set == json!(true), "no #room-id field");
    studio
        .client
        .find(Locator::Css("#room-token"))
        .await?
        .send_keys(&host_token)
        .await?;
    studio.click("#join-room").await?;
    if let Err(e) = wait_for(Duration::from_secs(30), "the Studio on air", || async {
        let state = studio.attr("#room-state", "data-state").await?;
        (state == "connected").then_some(())
    })
    .await
    {
        // Say why: the page's text and a screenshot.
        let text = studio
            .client
            .execute("return document.body.innerText.slice(0, 2000);", vec![])
            .await
            .unwrap_or_default();
        let shot = studio.screenshot("studio-paint-not-live").await.ok();
        anyhow::bail!("{e}; the Studio shows: {text} (screenshot {shot:?})");
    }

    // 8 speakers on seats 1–8, publishing a tone (volume indications for 8 speakers).
    let mut hosts = Vec::new();
    for i in 1..=speakers {
        let uid = format!("speaker-{i}");
        let t = token(&uid, &["join", "publish_audio", "admin"]);
        let mut h = ClientHost::connect_publisher(&server.base, ROOM, &t).await?;
        h.ok(json!({ "type": "take_seat", "seat": i })).await?;
        h.start_tone(220.0 * i as f64, 330.0 * i as f64);
        hosts.push(h);
    }

    // The listeners: join 64 at a time, heartbeat, read everything the server sends.
    let ws_url = format!("{}/ws", server.base.replace("http://", "ws://"));
    let t_join = Instant::now();
    let frames = Arc::new(AtomicU64::new(0));
    // The first 200 listeners take turns to chat.
    let chatters = listeners.min(200);
    let mut chat_txs = Vec::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks: Vec<tokio::task::JoinHandle<Option<()>>> = Vec::new();
    let joined = Arc::new(AtomicU64::new(0));
    let join_error = Arc::new(std::sync::Mutex::new(None::<String>));
    for i in 0..listeners {
        let (ws_url, sem, frames, joined, join_error) = (
            ws_url.clone(),
            sem.clone(),
            frames.clone(),
            joined.clone(),
            join_error.clone(),
        );
        let mut chats = if i < chatters {
            let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
            chat_txs.push(tx);
            Some(rx)
        } else {
            None
        };
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.ok()?;
            let ws = match join(&ws_url, &format!("listener-{i:04}")).await {
                Ok(ws) => ws,
                Err(e) => {
                    let mut first = join_error.lock().ok()?;
                    first.get_or_insert_with(|| format!("listener-{i:04}: {e:#}"));
                    return None;
                }
            };
            drop(permit);
            joined.fetch_add(1, Ordering::Relaxed);
            let (mut tx, mut rx) = ws.split();
            let mut beat = tokio::time::interval(Duration::from_secs(5));
            let mut id = 2u64;
            loop {
                tokio::select! {
                    m = rx.next() => match m {
                        Some(Ok(_)) => { frames.fetch_add(1, Ordering::Relaxed); }
                        _ => return None,
                    },
                    _ = beat.tick() => {
                        id += 1;
                        let hb = json!({"id": id, "type": "heartbeat"}).to_string();
                        if tx.send(Message::text(hb)).await.is_err() { return None; }
                    }
                    c = async { match chats.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                        if let Some(text) = c {
                            id += 1;
                            let m = json!({"id": id, "type": "chat", "text": text}).to_string();
                            if tx.send(Message::text(m)).await.is_err() { return None; }
                        }
                    }
                }
            }
        }));
    }
    if let Err(e) = wait_for(Duration::from_secs(300), "the listeners joined", || async {
        let failed = join_error.lock().ok()?.is_some();
        (failed || joined.load(Ordering::Relaxed) as usize >= listeners).then_some(())
    })
    .await
    {
        anyhow::bail!(
            "{e}: {} of {listeners} joined",
            joined.load(Ordering::Relaxed)
        );
    }
    if let Some(e) = join_error.lock().ok().and_then(|e| e.clone()) {
        anyhow::bail!(
            "a listener could not join ({} had): {e}",
            joined.load(Ordering::Relaxed)
        );
    }
    println!(
        "studio_paint: {listeners} listeners joined in {:.1} s",
        t_join.elapsed().as_secs_f64()
    );
    // The room server and this process's listeners and speakers are the load: on a host's
    // machine they run elsewhere, here they share the two cores with the Studio. Once the room
    // is full they run at nice 19 (`ONMIC_BENCH_LOAD_POLICY=idle`: under `SCHED_IDLE`, which
    // read no different in four runs), so that the figure is the Studio's own delay, not the
    // wait for a core the simulated room holds. (The Studio, started earlier,
    // keeps the normal priority.) The chat sent and the listeners' frames are printed: a load
    // that fell behind shows there.
    let policy = std::env::var("ONMIC_BENCH_LOAD_POLICY").unwrap_or_else(|_| "nice".into());
    let server_threads = lower_load(&server.pid().to_string(), &policy);
    let bench_threads = lower_load("self", &policy);
    println!(
        "studio_paint: load lowered ({policy}): {server_threads} server threads, {bench_threads} bench threads"
    );

    // 50 chat messages a second, from the listeners in turn.
    let chat_sent = Arc::new(AtomicU64::new(0));
    let sent = chat_sent.clone();
    let chatter = tokio::spawn(async move {
        let mut tick =
            tokio::time::interval(Duration::from_micros(1_000_000 / chat_per_sec.max(1)));
        let mut n = 0usize;
        loop {
            tick.tick().await;
            if let Some(tx) = chat_txs.get(n % chatters.max(1))
                && tx
                    .try_send(format!("message {n} from the audience 🎉"))
                    .is_ok()
            {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
        }
    });

    // `ONMIC_PAINT_JS=CODE`: run in the page before the warm-up (diagnosis: a style sheet, a
    // knob such as `window.__onmicMeterEveryMs`).
    if let Ok(code) = std::env::var("ONMIC_PAINT_JS") {
        let r = studio.client.execute(&code, vec![]).await;
        println!("studio_paint: ONMIC_PAINT_JS ran: {r:?}");
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    studio
        .client
        .execute(
            "window.__onmicPaint = []; window.__onmicPaintAt = []; window.__onmicReceive = []; window.__onmicReceiveAt = []; window.__onmicCommit = []; window.__onmicFrames = []; return 0",
            vec![],
        )
        .await?;
    let gaps = std::env::var_os("ONMIC_PAINT_GAPS").is_some();
    if gaps {
        // `ONMIC_PAINT_GAPS=1`: a `setTimeout(0)` loop on the web view's main thread records
        // every wait over 20 ms between its turns (Unix ms of the start, length): the times the
        // main thread was busy elsewhere.
        studio
            .client
            .execute(
                "window.__onmicGaps = []; let last = performance.now(); \
                 const tick = () => { const n = performance.now(); \
                 if (n - last > 20) window.__onmicGaps.push([performance.timeOrigin + last, n - last]); \
                 last = n; if (window.__onmicGaps) setTimeout(tick, 0); }; setTimeout(tick, 0); \
                 window.__onmicTicks = {}; \
                 for (const [k, sel] of [['stats', '#stats-panel'], ['counters', '#room-counters'], ['audience', '#audience-count, .side .tabs']]) { \
                   const el = document.querySelector(sel); window.__onmicTicks[k] = []; \
                   if (el) new MutationObserver(() => window.__onmicTicks[k].push(performance.timeOrigin + performance.now())) \
                     .observe(el, {subtree: true, childList: true, characterData: true, attributes: true}); } \
                 return 0",
                vec![],
            )
            .await?;
    }
    let pid = studio_pid();
    let web = pid.and_then(webview_pid);
    let cpu0 = pid.map(cpu_seconds);
    let web0 = web.map(cpu_seconds);
    let server_pid = server.pid();
    let (server0, bench0) = (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
    let sched0 = (pid.map(thread_times), web.map(thread_times));
    let machine0 = gaps.then(all_cpu_seconds);
    let t0 = Instant::now();
    let frames0 = frames.load(Ordering::Relaxed);
    let chat0 = chat_sent.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = pid
        .zip(cpu0)
        .map(|(p, c)| (cpu_seconds(p) - c) / wall * 100.0);
    let web_cpu = web
        .zip(web0)
        .map(|(p, c)| (cpu_seconds(p) - c) / wall * 100.0);
    let server_cpu = (cpu_seconds(server_pid) - server0) / wall * 100.0;
    let bench_cpu = (cpu_seconds(std::process::id()) - bench0) / wall * 100.0;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let read = |script: &'static str| {
        let client = studio.client.clone();
        async move {
            let mut d = floats(&client.execute(script, vec![]).await?);
            d.sort_by(f64::total_cmp);
            anyhow::Ok(d)
        }
    };
    let d = read("return window.__onmicPaint || []").await?;
    let received = read("return window.__onmicReceive || []").await?;
    let committed = read("return window.__onmicCommit || []").await?;
    let commits = read("return window.__onmicFrames || []").await?;
    let members_shown = studio.text("#room-counters").await.unwrap_or_default();
    let render = studio
        .client
        .execute(
            "const d = document.documentElement.dataset; return `${d.render} (WebGL renderer: ${d.renderer})`",
            vec![],
        )
        .await?;
    studio.screenshot("studio-paint-bench").await?;
    println!(
        "studio_paint: {members} members ({listeners} listeners, {speakers} speakers + host), \
         {chat_per_sec} chat/s, {secs} s measured"
    );
    println!("studio_paint: room bar: {members_shown}; web view renders with: {render}");
    println!(
        "studio_paint: statuses painted {} ({:.1}/s) in {} frames ({:.1}/s; statuses a frame p50 {:.0}, max {:.0}); \
         event-to-paint p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        d.len(),
        d.len() as f64 / wall,
        commits.len(),
        commits.len() as f64 / wall,
        percentile(&commits, 0.5),
        commits.last().copied().unwrap_or(f64::NAN),
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        d.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "studio_paint: of which emission to the UI's handler (transport and a busy main thread) p50 {:.1} ms, p99 {:.1} ms; emission to React's commit p50 {:.1} ms, p99 {:.1} ms",
        percentile(&received, 0.5),
        percentile(&received, 0.99),
        percentile(&committed, 0.5),
        percentile(&committed, 0.99),
    );
    println!(
        "studio_paint: Studio CPU {} % of one core (process {pid:?}), its web view {} % (process {web:?}); the simulated room {:.0} % (server {server_cpu:.0} %, bench {bench_cpu:.0} %); chat sent {:.1}/s, listeners' frames {:.0}/s; load average {}",
        cpu.map_or("?".into(), |c| format!("{c:.0}")),
        web_cpu.map_or("?".into(), |c| format!("{c:.0}")),
        server_cpu + bench_cpu,
        (chat_sent.load(Ordering::Relaxed) - chat0) as f64 / wall,
        (frames.load(Ordering::Relaxed) - frames0) as f64 / wall,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let machine1 = machine0.as_ref().map(|_| all_cpu_seconds());
    if gaps {
        print_gaps(&studio, wall).await?;
        if let (Some(before), Some(after)) = (&machine0, &machine1) {
            print_top(before, after, wall);
        }
        for (name, p, before) in [("Studio", pid, sched0.0), ("web view", web, sched0.1)] {
            if let (Some(p), Some(before)) = (p, before) {
                print_thread_times(name, p, &before, &thread_times(p), wall);
            }
        }
    }
    let p99 = percentile(&d, 0.99);
    println!(
        "studio_paint: budget p99 <= 50 ms: {}",
        if p99 <= 50.0 { "HOLDS" } else { "FAILS" }
    );
    if std::env::var_os("ONMIC_PAINT_DIAG").is_some() {
        diagnose(&studio, web).await;
    }
    // `ONMIC_PAINT_XSHOT=FILE.png`: the X display as it is, the room still busy (with
    // `WEBKIT_SHOW_COMPOSITING_DEBUG_VISUALS=1` it shows the web view's layers; a WebDriver
    // screenshot renders the page anew and would not).
    if let Some(file) = std::env::var_os("ONMIC_PAINT_XSHOT") {
        let shot = x_screenshot(std::path::Path::new(&file));
        println!("studio_paint: X screenshot {file:?}: {shot:?}");
    }
    // `ONMIC_PAINT_DOM=FILE.html`: the page as it is now, with its style sheets inline, for
    // trying the web view's settings on the same page outside the Studio (docs/studio.md, "Fifth
    // round").
    if let Some(file) = std::env::var_os("ONMIC_PAINT_DOM") {
        let html = studio
            .client
            .execute(
                "const css = [...document.styleSheets].map((s) => { try { return [...s.cssRules].map((r) => r.cssText).join('\\n'); } catch (e) { return ''; } }).join('\\n'); \
                 const root = document.documentElement.cloneNode(true); \
                 root.querySelectorAll('script, link[rel=stylesheet], style').forEach((e) => e.remove()); \
                 const st = document.createElement('style'); st.textContent = css; root.querySelector('head').appendChild(st); \
                 return '<!doctype html>' + root.outerHTML;",
                vec![],
            )
            .await;
        match html {
            Ok(v) => {
                let written = std::fs::write(&file, v.as_str().unwrap_or_default());
                println!("studio_paint: page saved to {file:?}: {written:?}");
            }
            Err(e) => println!("studio_paint: page not saved: {e}"),
        }
    }
    chatter.abort();
    for t in tasks {
        t.abort();
    }
    for h in hosts {
        h.close().await;
    }
    studio.quit().await?;
    Ok(())
}

/// The X display as it is now, into `file` (ImageMagick's `import`; what the screen shows, where
/// a WebDriver screenshot renders the page anew).
fn x_screenshot(file: &std::path::Path) -> std::io::Result<std::process::ExitStatus> {
    std::process::Command::new("import")
        .args(["-window", "root"])
        .arg(file)
        .status()
}

/// The thread ids of process `pid` (`"self"`: this one), from `/proc/PID/task`.
fn task_ids(pid: &str) -> Vec<u32> {
    numbered_entries(&format!("/proc/{pid}/task"))
}

/// The entries of `dir` whose names are numbers (processes in `/proc`, threads in a task
/// directory); none if it cannot be read.
fn numbered_entries(dir: &str) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The numbers of a JSON array (anything else in it, or not an array: left out).
fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default()
}

/// Per thread of `pid`: (thread id, name, ns on a CPU, ns waiting for one), from
/// `/proc/PID/task/TID/schedstat`.
fn thread_times(pid: u32) -> Vec<(u32, String, u64, u64)> {
    task_ids(&pid.to_string())
        .into_iter()
        .filter_map(|tid| {
            let base = format!("/proc/{pid}/task/{tid}");
            let comm = std::fs::read_to_string(format!("{base}/comm")).ok()?;
            let stat = std::fs::read_to_string(format!("{base}/schedstat")).ok()?;
            let mut f = stat
                .split_whitespace()
                .map(|x| x.parse::<u64>().unwrap_or(0));
            Some((tid, comm.trim().to_string(), f.next()?, f.next()?))
        })
        .collect()
}

/// Prints, per thread name (threads of one name summed, the main thread — whose id is the
/// process's, `pid` — apart), the share of the measured time each ran and waited for a CPU.
fn print_thread_times(
    process: &str,
    pid: u32,
    before: &[(u32, String, u64, u64)],
    after: &[(u32, String, u64, u64)],
    wall: f64,
) {
    let mut by_name: std::collections::BTreeMap<String, (f64, f64, usize)> = Default::default();
    for (tid, comm, run, wait) in after {
        let (run0, wait0) = before
            .iter()
            .find(|b| b.0 == *tid)
            .map_or((0, 0), |b| (b.2, b.3));
        let name = if *tid == pid {
            format!("{comm} (main)")
        } else {
            comm.clone()
        };
        let e = by_name.entry(name).or_default();
        e.0 += run.saturating_sub(run0) as f64 / 1e9 / wall * 100.0;
        e.1 += wait.saturating_sub(wait0) as f64 / 1e9 / wall * 100.0;
        e.2 += 1;
    }
    let (run_all, wait_all) = by_name
        .values()
        .fold((0.0, 0.0), |(r, w), t| (r + t.0, w + t.1));
    println!(
        "studio_paint:   {process}: its threads on a CPU {run_all:.0} % of one core in all (the scheduler's own count), waiting for one {wait_all:.0} %"
    );
    let mut rows: Vec<_> = by_name
        .into_iter()
        .filter(|r| r.1.0 + r.1.1 >= 1.0)
        .collect();
    rows.sort_by(|a, b| (b.1.0 + b.1.1).total_cmp(&(a.1.0 + a.1.1)));
    for (name, (run, wait, n)) in rows {
        println!(
            "studio_paint:   {process} thread {name} ×{n}: on a CPU {run:.0} %, waiting for one {wait:.0} % of the time"
        );
    }
}

/// `ONMIC_PAINT_GAPS=1`: how long the web view's main thread was busy, and how much of each late
/// status's wait for its handler fell in such a busy stretch (the rest: the way from the Studio's
/// emission into the web view).
async fn print_gaps(studio: &Studio, wall: f64) -> anyhow::Result<()> {
    let v = studio
        .client
        .execute(
            "const g = window.__onmicGaps || []; window.__onmicGaps = null; \
             return [g, window.__onmicReceiveAt || [], window.__onmicReceive || [], \
                     window.__onmicPaintAt || [], window.__onmicPaint || [], window.__onmicTicks || {}]",
            vec![],
        )
        .await?;
    let gaps: Vec<(f64, f64)> = v[0]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| Some((g[0].as_f64()?, g[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let (emitted, delays) = (floats(&v[1]), floats(&v[2]));
    let mut lengths: Vec<f64> = gaps.iter().map(|g| g.1).collect();
    lengths.sort_by(f64::total_cmp);
    println!(
        "studio_paint: web view main thread busy > 20 ms: {} times ({:.1}/s), {:.0} % of the time; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lengths.len(),
        lengths.len() as f64 / wall,
        lengths.iter().sum::<f64>() / (wall * 10.0),
        percentile(&lengths, 0.5),
        percentile(&lengths, 0.99),
        lengths.last().copied().unwrap_or(f64::NAN)
    );
    let mut late: Vec<(f64, f64)> = emitted
        .iter()
        .zip(&delays)
        .filter(|(_, d)| **d > 30.0)
        .map(|(e, d)| {
            let covered: f64 = gaps
                .iter()
                .map(|(s, l)| ((s + l).min(e + d) - s.max(*e)).max(0.0))
                .sum();
            (*d, covered)
        })
        .collect();
    late.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (d, covered) in late.iter().take(10) {
        println!(
            "studio_paint:   a status {d:.1} ms to its handler, {covered:.1} ms of it with the web view's main thread busy"
        );
    }
    // Which of the changes meant to come at most once a second (the live stats, the room bar's
    // counters, the audience count) fell within the wait of the late statuses, against all.
    let measured: Vec<(f64, f64)> = floats(&v[3]).into_iter().zip(floats(&v[4])).collect();
    let late: Vec<_> = measured.iter().filter(|(_, d)| *d > 50.0).collect();
    for kind in ["stats", "counters", "audience"] {
        let t = floats(&v[5][kind]);
        let hit = |(e, d): &(f64, f64)| t.iter().any(|x| *x >= *e && *x <= e + d);
        println!(
            "studio_paint:   {kind} changed {} times; within the wait of {} of {} statuses over 50 ms, of {} of all {}",
            t.len(),
            late.iter().filter(|x| hit(x)).count(),
            late.len(),
            measured.iter().filter(|x| hit(x)).count(),
            measured.len()
        );
    }
    Ok(())
}

/// `ONMIC_PAINT_DIAG=1`, after the measurement (the room still busy): what changes the DOM and
/// how often (a `MutationObserver` for 5 s, the 30 busiest places by kind and element path), and
/// how fast the web view draws (the intervals of 100 consecutive animation frames). A frame
/// interval far above 16.7 ms means the compositor, not the page's script, is what the
/// event-to-paint delay waits for (docs/studio.md, "Event-to-paint benchmark").
async fn diagnose(studio: &Studio, web: Option<u32>) {
    const MUTATIONS: &str = r#"const done = arguments[0];
        const counts = {};
        const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
            + (e.classList.length ? '.' + [...e.classList].slice(0, 2).join('.') : '');
        const path = (n) => {
            const out = [];
            for (let e = n.nodeType === 1 ? n : n.parentElement, i = 0; e && i < 4; i++, e = e.parentElement) out.push(name(e));
            return out.join(' < ');
        };
        const mo = new MutationObserver((ms) => {
            for (const m of ms) {
                const k = `${m.type} ${m.attributeName || ''} ${path(m.target)}`;
                counts[k] = (counts[k] || 0) + 1;
            }
        });
        mo.observe(document.body, { subtree: true, attributes: true, childList: true, characterData: true });
        setTimeout(() => {
            mo.disconnect();
            done(Object.entries(counts).sort((a, b) => b[1] - a[1]).slice(0, 30)
                .map(([k, n]) => `${(n / 5).toFixed(1)}/s ${k}`));
        }, 5000);"#;
    const FRAMES: &str = r#"const done = arguments[0];
        const iv = [];
        let last = performance.now();
        const frame = (t) => {
            iv.push(t - last);
            last = t;
            if (iv.length < 100) { requestAnimationFrame(frame); return; }
            iv.sort((a, b) => a - b);
            const at = (p) => iv[Math.min(iv.length - 1, Math.floor(iv.length * p))].toFixed(1);
            done(`p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${at(1)} ms`);
        };
        requestAnimationFrame(frame);"#;
    match studio.client.execute_async(MUTATIONS, vec![]).await {
        Ok(v) => {
            println!("studio_paint diag: DOM changes per second, busiest first:");
            for line in v.as_array().into_iter().flatten() {
                println!("  {}", line.as_str().unwrap_or_default());
            }
        }
        Err(e) => println!("studio_paint diag: mutation count failed: {e}"),
    }
    match studio.client.execute_async(FRAMES, vec![]).await {
        Ok(v) => println!(
            "studio_paint diag: animation frame intervals over 100 frames: {}",
            v.as_str().unwrap_or_default()
        ),
        Err(e) => println!("studio_paint diag: frame intervals failed: {e}"),
    }
    // Which part of the window the frames cost: hide one part at a time (the room stays busy)
    // and measure the frame intervals again; the last line hides the whole page.
    for hide in [
        ".col-audio",
        ".col-stage",
        ".col-side",
        ".topbar, .subbar",
        "#root",
    ] {
        let css = format!("{hide} {{ visibility: hidden !important; }}");
        let apply = format!(
            "let s = document.getElementById('diag-hide'); if (!s) {{ s = document.createElement('style'); s.id = 'diag-hide'; document.head.appendChild(s); }} s.textContent = {};",
            serde_json::to_string(&css).unwrap_or_default()
        );
        let _ = studio.client.execute(&apply, vec![]).await;
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        match studio.client.execute_async(FRAMES, vec![]).await {
            Ok(v) => println!(
                "studio_paint diag: frame intervals with {hide} hidden: {}",
                v.as_str().unwrap_or_default()
            ),
            Err(e) => println!("studio_paint diag: frame intervals failed: {e}"),
        }
    }
    let _ = studio
        .client
        .execute("document.getElementById('diag-hide')?.remove();", vec![])
        .await;
    // `ONMIC_PAINT_VARIANTS=FILE`: lines `name|css` (an empty css is the page as it is), each
    // applied in turn and its frame intervals measured, the whole list repeated
    // `ONMIC_PAINT_ROUNDS` times (default 3) so that a variant is compared with the others
    // under the same load, interleaved.
    let Some(file) = std::env::var_os("ONMIC_PAINT_VARIANTS") else {
        return;
    };
    let variants: Vec<(String, String)> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('|'))
        .map(|(n, c)| (n.trim().to_string(), c.to_string()))
        .collect();
    let rounds = env_or("ONMIC_PAINT_ROUNDS", 3);
    let mut results: Vec<Vec<String>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, (_, css)) in variants.iter().enumerate() {
            let apply = format!(
                "let s = document.getElementById('diag-variant'); if (!s) {{ s = document.createElement('style'); s.id = 'diag-variant'; document.head.appendChild(s); }} s.textContent = {};",
                serde_json::to_string(css).unwrap_or_default()
            );
            let _ = studio.client.execute(&apply, vec![]).await;
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            // `ONMIC_PAINT_PERF=DIR`: a `perf record` of the web view's process while the
            // first round measures each variant (DIR/<name>.data).
            let perf = match (std::env::var_os("ONMIC_PAINT_PERF"), web, round) {
                (Some(dir), Some(pid), 0) => std::process::Command::new("perf")
                    .args([
                        "record",
                        "-q",
                        "-F",
                        "499",
                        "-g",
                        "-p",
                        &pid.to_string(),
                        "-o",
                    ])
                    .arg(std::path::Path::new(&dir).join(format!("{}.data", variants[i].0)))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .ok(),
                _ => None,
            };
            let r = match studio.client.execute_async(FRAMES, vec![]).await {
                Ok(v) => v.as_str().unwrap_or_default().to_string(),
                Err(e) => format!("failed: {e}"),
            };
            // Which columns scroll (a scrolling container is a layer of its own).
            let scroll = studio
                .client
                .execute(
                    "return ['.col-audio', '.col-stage', '.col-side'].map((c) => { const e = document.querySelector(c); return e ? `${c} ${e.clientHeight}/${e.scrollHeight}` : ''; }).join(', ');",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if let Some(mut p) = perf {
                // SIGINT makes perf write its file and exit.
                let _ = std::process::Command::new("kill")
                    .args(["-INT", &p.id().to_string()])
                    .status();
                let _ = p.wait();
            }
            // `ONMIC_PAINT_VARIANT_SHOTS=DIR`: the X display after each variant's first
            // measurement (DIR/<name>.png); with `WEBKIT_SHOW_DAMAGE=1` it shows what that
            // frame redrew.
            if let (Some(dir), 0) = (std::env::var_os("ONMIC_PAINT_VARIANT_SHOTS"), round) {
                let _ = x_screenshot(
                    &std::path::Path::new(&dir).join(format!("{}.png", variants[i].0)),
                );
            }
            results[i].push(format!("{r} ({scroll})"));
        }
    }
    for ((name, _), r) in variants.iter().zip(results) {
        println!("studio_paint variant {name}:");
        for line in r {
            println!("    {line}");
        }
    }
}
