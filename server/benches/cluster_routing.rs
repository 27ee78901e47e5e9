//! Cluster routing benchmark (issue 16, acceptance 6), inside its own loopback-only network
//! namespace: a real `redis-server` and three real `onmic-server` nodes (`a`, `b`, `c`). It
//! creates rooms through node `a` and prints how many each node got, then, for rooms on node
//! `c`, the latency of a client's WebSocket `join` (connect + upgrade + `joined`), of
//! `POST /rtc/offer` (offer → answer) and of a REST `GET /v1/rooms/{room}` made directly on `c`
//! versus through node `b`, which bridges them to `c`. Direct and bridged samples alternate so
//! both see the same machine. Last, rooms per node: live rooms (owner + two listeners each on
//! WebSocket) in steps, with every node's memory, idle CPU and the join latency at each step.
//!
//! Run: `cargo bench -p onmic-server --bench cluster_routing` (env `ONMIC_BENCH_ROOMS`, default
//! 300, `ONMIC_BENCH_SAMPLES`, default 200, `ONMIC_BENCH_LIVE_ROOMS`, default 600). Needs root,
//! iproute2 and `redis-server`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use str0m::media::{Direction, MediaKind};
use tokio_tungstenite::tungstenite::Message;

#[path = "support/cluster.rs"]
mod support;
use support::{KEY, Kid, SECRET, Ws, cpu_seconds, free_port, start_node, start_redis, token};

/// Connects and joins; returns the socket and the time from connect to `joined`.
async fn join(base: &str, room: &str, uid: &str) -> (Ws, Duration) {
    let url = format!("{}/ws", base.replace("http://", "ws://"));
    let frame = json!({ "id": 1, "type": "join", "room": room, "token": token(room, uid) });
    let start = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send join");
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Text(t) = m {
            assert!(t.contains("\"joined\""), "{uid}: {t}");
            return (ws, start.elapsed());
        }
    }
    panic!("{uid} could not join");
}

/// A str0m offer like a listener's (one send and three receive m-lines).
fn offer() -> Value {
    let mut rtc = onmic_server::sfu::opus_rtc_config().build(Instant::now());
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    for _ in 0..3 {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    }
    let (offer, _) = api.apply().expect("an offer");
    serde_json::to_value(offer).expect("offer JSON")
}

fn auth() -> String {
    format!("Bearer {KEY}:{SECRET}")
}

/// Creates room `id` through the node at `base`; answers the node it was placed on.
async fn create_room(http: &reqwest::Client, base: &str, id: &str) -> String {
    let body = json!({ "id": id, "owner": "owner", "title": "t", "seat_count": 2 });
    let resp = http
        .post(format!("{base}/v1/rooms"))
        .header("authorization", auth())
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status().as_u16(), 201);
    resp.headers()
        .get("x-onmic-node")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned()
}

struct Figures(Vec<f64>);

impl Figures {
    fn line(&mut self, what: &str) -> String {
        self.0.sort_by(f64::total_cmp);
        let n = self.0.len();
        let at = |p: f64| self.0[((n as f64 - 1.0) * p).round() as usize];
        let mean = self.0.iter().sum::<f64>() / n as f64;
        format!(
            "{what:<34} n={n:<4} mean {mean:>6.2} ms  p50 {:>6.2}  p90 {:>6.2}  p99 {:>6.2}  max {:>6.2}",
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0)
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if !onmic_netns::bench_inside_netns(&[]) {
        return;
    }
    let rooms: usize = std::env::var("ONMIC_BENCH_ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let samples: usize = std::env::var("ONMIC_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _redis = start_redis(port);
    let redis = format!("redis://127.0.0.1:{port}/");
    let nodes: Vec<(Kid, String)> = ["a", "b", "c"]
        .iter()
        .map(|n| start_node(n, &redis, dir.path(), &[]))
        .collect();
    let (a, b, c) = (&nodes[0].1, &nodes[1].1, &nodes[2].1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        while onmic_server::cluster::status(&redis)
            .await
            .map_or(0, |s| s.nodes.len())
            < 3
        {
            assert!(Instant::now() < deadline, "three live nodes");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let http = reqwest::Client::new();
        // Rooms created through node a, one after another.
        let mut create = Figures(Vec::new());
        let mut on_node: HashMap<String, Vec<String>> = HashMap::new();
        for i in 0..rooms {
            let id = format!("room-{i:04}");
            let start = Instant::now();
            let node = create_room(&http, a, &id).await;
            create.0.push(ms(start.elapsed()));
            on_node.entry(node).or_default().push(id);
        }
        println!("cluster routing: 3 nodes (a, b, c), Redis on loopback, default heartbeat (1 s) and TTL (5 s)");
        let mut counts: Vec<(&String, usize)> = on_node.iter().map(|(n, r)| (n, r.len())).collect();
        counts.sort();
        println!("rooms created through node a: {rooms}; rooms per node: {counts:?}");
        println!("{}", create.line("create (placed by a)"));
        let on_c = on_node.get("c").expect("rooms on c").clone();
        // Warm-up: one of each, both ways.
        for base in [c, b] {
            let _ = join(base, &on_c[0], "warm").await;
        }
        let (mut join_direct, mut join_bridged) = (Figures(Vec::new()), Figures(Vec::new()));
        let (mut offer_direct, mut offer_bridged) = (Figures(Vec::new()), Figures(Vec::new()));
        let (mut rest_direct, mut rest_bridged) = (Figures(Vec::new()), Figures(Vec::new()));
        for i in 0..samples {
            let room = &on_c[i % on_c.len()];
            for (base, joins, offers, rests) in [
                (c, &mut join_direct, &mut offer_direct, &mut rest_direct),
                (b, &mut join_bridged, &mut offer_bridged, &mut rest_bridged),
            ] {
                let uid = format!("u{i}-{}", if base == c { "direct" } else { "bridged" });
                let (mut ws, took) = join(base, room, &uid).await;
                joins.0.push(ms(took));
                let body = json!({ "room": room, "token": token(room, &uid), "offer": offer() });
                let start = Instant::now();
                let resp = http
                    .post(format!("{base}/rtc/offer"))
                    .json(&body)
                    .send()
                    .await
                    .expect("offer");
                let status = resp.status().as_u16();
                let _ = resp.bytes().await;
                offers.0.push(ms(start.elapsed()));
                assert_eq!(status, 200);
                let start = Instant::now();
                let resp = http
                    .get(format!("{base}/v1/rooms/{room}/members?hosts_only=true"))
                    .header("authorization", auth())
                    .send()
                    .await
                    .expect("rest");
                let status = resp.status().as_u16();
                let _ = resp.bytes().await;
                rests.0.push(ms(start.elapsed()));
                assert_eq!(status, 200);
                let _ = ws.close(None).await;
            }
        }
        println!("rooms on node c, client to c directly vs to b (bridged to c):");
        println!("{}", join_direct.line("WebSocket join, direct"));
        println!("{}", join_bridged.line("WebSocket join, bridged by b"));
        println!("{}", offer_direct.line("/rtc/offer, direct"));
        println!("{}", offer_bridged.line("/rtc/offer, bridged by b"));
        println!("{}", rest_direct.line("REST members, direct"));
        println!("{}", rest_bridged.line("REST members, bridged by b"));
        // Rooms per node: live rooms (created through a, spread by placement), each with its
        // owner and two listeners connected over WebSocket to the room's node; at each step the
        // nodes' resident memory, their CPU over 5 s with the rooms idle (heartbeats only), and
        // the join latency into a room at that occupancy. Media capacity is the SFU's
        // (docs/sfu.md: listeners per core), not measured here.
        let live_max: usize = std::env::var("ONMIC_BENCH_LIVE_ROOMS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600);
        let url_of: HashMap<&str, &String> = [("a", a), ("b", b), ("c", c)].into();
        let pids: Vec<(&str, u32)> = ["a", "b", "c"]
            .iter()
            .zip(&nodes)
            .map(|(n, (kid, _))| (*n, kid.0.id()))
            .collect();
        println!(
            "rooms per node: live rooms created through a, each with its owner and 2 listeners on WebSocket at the room's node:"
        );
        let mut sockets: Vec<Ws> = Vec::new();
        let mut live: Vec<(String, String)> = Vec::new();
        let mut step = (live_max / 4).max(1);
        let mut before: Vec<(usize, f64)> = pids.iter().map(|(_, p)| (0, rss_mib(*p))).collect();
        while live.len() < live_max {
            let target = (live.len() + step).min(live_max);
            while live.len() < target {
                let id = format!("live-{:04}", live.len());
                let node = create_room(&http, a, &id).await;
                let base = url_of.get(node.as_str()).expect("a known node");
                for uid in ["owner", "l1", "l2"] {
                    sockets.push(join(base, &id, uid).await.0);
                }
                live.push((id, node));
            }
            step *= 2;
            for (i, ws) in sockets.iter_mut().enumerate() {
                let hb = json!({ "id": 1_000_000 + i, "type": "heartbeat" });
                let _ = ws.send(Message::Text(hb.to_string().into())).await;
            }
            let cpu0: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
            let t0 = Instant::now();
            tokio::time::sleep(Duration::from_secs(5)).await;
            let wall = t0.elapsed().as_secs_f64();
            let mut joins = Figures(Vec::new());
            for i in 0..20 {
                let (id, node) = &live[i * live.len() / 20];
                let (mut ws, took) = join(url_of[node.as_str()], id, &format!("probe-{i}")).await;
                joins.0.push(ms(took));
                let _ = ws.close(None).await;
            }
            let per_node: Vec<String> = pids
                .iter()
                .zip(&cpu0)
                .zip(before.iter_mut())
                .map(|(((n, p), c0), (rooms0, rss0))| {
                    let rooms = live.iter().filter(|(_, node)| node == n).count();
                    let rss = rss_mib(*p);
                    // What each room added since the last step (the node's base and its other
                    // rooms left out).
                    let added = (rss - *rss0) * 1024.0 / (rooms - *rooms0).max(1) as f64;
                    *rooms0 = rooms;
                    *rss0 = rss;
                    format!(
                        "{n}: {rooms} rooms, RSS {rss:.1} MiB (+{added:.0} KiB per added room), CPU idle {:.1} %",
                        (cpu_seconds(*p) - c0) / wall * 100.0
                    )
                })
                .collect();
            println!("  {} live rooms, {} members: {}", live.len(), sockets.len(), per_node.join("; "));
            println!("  {}", joins.line("WebSocket join at this occupancy"));
        }
        for mut ws in sockets {
            let _ = ws.close(None).await;
        }
        if let Ok(status) = onmic_server::cluster::status(&redis).await {
            print!("{}", status.table());
        }
    });
}

/// A process's resident memory in MiB (`VmRSS`), 0 if unreadable.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
