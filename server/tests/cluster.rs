//! The cluster (issue 16) with a real `redis-server` and real `onmic-server` processes:
//! three nodes on three hosts (network namespaces joined by a bridge) place rooms evenly, and a
//! speaker connected through one node is heard by a listener connected through another, in a
//! room on the third; the registry's expiry, duplicate names, malformed data in Redis and an
//! unreachable Redis give clear errors. Needs root, iproute2 and `redis-server`
//! (`xtask/apt/redis.txt`).

mod common;
mod sfu_support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::cluster::{Kid, command, free_port, redis, runtime};
use common::*;
use onmic_netns::{host_ip, host_namespaces, inside_hosts};
use serde_json::{Value, json};
use sfu_support::{Peer, until};

/// The settings every test node shares (secrets shared by the cluster; short heartbeat).
/// `db` is `("ONMIC_DATABASE", <SQLite file>)` or `("ONMIC_DATABASE_URL", <PostgreSQL>)`.
fn node_env(name: &str, listen: &str, redis: &str, db: (&str, String)) -> Vec<(String, String)> {
    [
        ("ONMIC_NODE_NAME", name.to_owned()),
        ("ONMIC_LISTEN", listen.to_owned()),
        ("ONMIC_LOG", "warn".to_owned()),
        (db.0, db.1),
        ("ONMIC_CUSTOMER_KEY", KEY.to_owned()),
        ("ONMIC_CUSTOMER_SECRET", SECRET.to_owned()),
        ("ONMIC_TOKEN_SECRET", "tok-secret".to_owned()),
        ("ONMIC_WEBHOOK_SECRET", "hook-secret".to_owned()),
        ("ONMIC_APP_ID", "app".to_owned()),
        ("ONMIC_MEDIA_THREADS", "1".to_owned()),
        ("ONMIC_CLUSTER_REDIS", redis.to_owned()),
        ("ONMIC_CLUSTER_HEARTBEAT_MS", "200".to_owned()),
        ("ONMIC_CLUSTER_NODE_TTL_MS", "3000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The `onmic-server` binary (inside `ns`) with `env`; returns it and its base URL.
fn node(ns: Option<&str>, env: &[(String, String)]) -> (Kid, String) {
    let mut cmd = command(ns, BIN);
    cmd.env_remove("RUST_LOG").stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (child, url) = spawn_server(cmd);
    (Kid(child), url)
}

/// `onmic-server cluster status --json` against `redis`.
fn cluster_status(redis: &str) -> Value {
    let out = Command::new(BIN)
        .args(["cluster", "status", "--json"])
        .env("ONMIC_CLUSTER_REDIS", redis)
        .output()
        .expect("cluster status runs");
    assert!(
        out.status.success(),
        "cluster status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cluster status prints JSON")
}

/// Node id → its status entry.
fn live_nodes(status: &Value) -> HashMap<String, Value> {
    status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| (n["id"].as_str().expect("id").to_owned(), n.clone()))
        .collect()
}

/// GET `path` with REST auth; (status, `x-onmic-node`, body).
async fn get(base: &str, path: &str) -> (u16, String, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("authorization", auth())
        .send()
        .await
        .expect("REST answers");
    let status = resp.status().as_u16();
    let node = resp
        .headers()
        .get("x-onmic-node")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.expect("body");
    (
        status,
        node,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A counter of `/metrics`.
async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// Acceptance 1 (issue 16): Redis, PostgreSQL and three nodes on their own hosts, the nodes
/// sharing the one database; 30 rooms created through node A spread over the three, each
/// owned (in the database) by its node only; a client connected to node B takes a seat in a
/// room on node C and is heard by a listener connected to node A; every webhook reaches the
/// receiver exactly once although three nodes deliver from one outbox.
#[test]
fn three_nodes_spread_rooms_and_bridge_a_speaker_to_a_listener() {
    const TEST: &str = "three_nodes_spread_rooms_and_bridge_a_speaker_to_a_listener";
    // Hosts: 0 = node a, 1 = node b, 2 = node c, 3 = Redis and PostgreSQL, 4 = the clients
    // and the webhook receiver (this process).
    if !inside_hosts(TEST, 5, &[]) {
        return;
    }
    let hosts = host_namespaces();
    assert_eq!(hosts.len(), 5, "{hosts:?}");
    let redis_port = 6390;
    let _redis = redis(Some(&hosts[3]), host_ip(3), redis_port);
    let redis_url = format!("redis://{}:{redis_port}/", host_ip(3));
    let pg = common::pg::PgCluster::start_in(&hosts[3], host_ip(3));
    pg.database("onmic");
    let db_url = pg.tcp_url("onmic");
    let client_ip = host_ip(4);
    let rt = runtime();
    let hooks = rt.block_on(common::hooks::HookReceiver::start(client_ip));
    let mut nodes = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let listen = format!("{}:7600", host_ip(i));
        let mut env = node_env(
            name,
            &listen,
            &redis_url,
            ("ONMIC_DATABASE_URL", db_url.clone()),
        );
        env.push(("ONMIC_WEBHOOK_URL".into(), hooks.url.clone()));
        nodes.push(node(Some(&hosts[i]), &env));
    }
    let base: Vec<String> = nodes.iter().map(|(_, url)| url.clone()).collect();
    let (a, b) = (&base[0], &base[1]);
    // Every node is registered and live.
    let deadline = Instant::now() + WAIT;
    while live_nodes(&cluster_status(&redis_url)).len() < 3 {
        assert!(Instant::now() < deadline, "three live nodes");
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(async {
        // 30 rooms, all created through node A.
        for i in 0..30 {
            let body = json!({ "id": format!("room-{i:02}"), "owner": "owner",
                               "title": "t", "seat_count": 2 });
            create_room_from(a, body).await;
        }
        // Where each room lives, asked through node A (bridged to the room's node).
        let mut per_node: HashMap<String, Vec<String>> = HashMap::new();
        for i in 0..30 {
            let room = format!("room-{i:02}");
            let (status, node, body) = get(a, &format!("/v1/rooms/{room}")).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["id"], room.as_str());
            per_node.entry(node).or_default().push(room);
        }
        let counts: HashMap<&str, usize> = per_node
            .iter()
            .map(|(n, r)| (n.as_str(), r.len()))
            .collect();
        eprintln!("rooms per node: {counts:?}");
        assert_eq!(
            counts,
            HashMap::from([("a", 10), ("b", 10), ("c", 10)]),
            "30 rooms created one after another go to the least-loaded node each time"
        );
        // Any node lists every room of the cluster, each with its node.
        let (status, _, list) = get(b, "/v1/rooms").await;
        assert_eq!(status, 200, "{list}");
        let listed = list["rooms"].as_array().expect("rooms");
        assert_eq!(listed.len(), 30, "{list}");
        for room in listed {
            let id = room["id"].as_str().expect("id");
            let node = room["node"].as_str().expect("node");
            assert!(per_node[node].iter().any(|r| r == id), "{room}");
        }
        assert_eq!(list["unreachable_nodes"], json!([]));
        // The database is shared: each room is owned by the node that holds it, and nothing
        // else.
        let owners = pg.sql("onmic", "SELECT id || '=' || node FROM rooms ORDER BY id");
        let stored: HashMap<String, String> = owners
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(r, n)| (r.to_owned(), n.to_owned()))
            .collect();
        assert_eq!(stored.len(), 30, "{owners}");
        for (node, rooms) in &per_node {
            for r in rooms {
                assert_eq!(stored.get(r), Some(node), "{owners}");
            }
        }
        // Each creation is in the (shared) audit log once, written by the node that holds the
        // room, with the client's address and the bridge's.
        for node in &base {
            let (status, _, audit) = get(node, "/v1/audit?limit=1000").await;
            assert_eq!(status, 200, "{audit}");
            let creations: Vec<&Value> = audit["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .filter(|e| e["action"] == "create_room")
                .collect();
            assert_eq!(creations.len(), 30, "{audit}");
            for e in creations {
                let origin = e["origin"].as_str().expect("origin");
                let room = e["room"].as_str().expect("room");
                let holder = &stored[room];
                assert!(origin.starts_with(&format!("{client_ip}")), "{e}");
                if holder != "a" {
                    assert!(origin.contains(&format!("(via {}:", host_ip(0))), "{e}");
                }
            }
        }
        // The registry agrees once each node has heartbeated.
        let deadline = Instant::now() + WAIT;
        loop {
            let status = cluster_status(&redis_url);
            let live = live_nodes(&status);
            if ["a", "b", "c"]
                .iter()
                .all(|n| live.get(*n).is_some_and(|s| s["load"]["rooms"] == 10))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "heartbeats report 10 rooms each: {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A room on node C; the speaker connects through node B, the listener through node A.
        let room = per_node["c"][0].clone();
        let (mut owner_ws, joined) = Client::join(b, &room, "owner").await;
        assert_eq!(joined["snapshot"]["id"], room.as_str(), "{joined}");
        owner_ws.ok(json!({ "type": "take_seat", "seat": 0 })).await;
        let (mut listener_ws, _) = Client::join(a, &room, "listener").await;
        let owner_token = token(b, &room, "owner").await;
        let owner = Peer::connect_bound(client_ip, b, &room, &owner_token, 1, None).await;
        let listener_token = token(a, &room, "listener").await;
        let listener = Peer::connect_bound(client_ip, a, &room, &listener_token, 3, None).await;
        // Media goes straight to node C, whose address the (bridged) answers carry.
        assert_eq!(
            owner.sfu.ip(),
            host_ip(2),
            "the speaker's media goes to node C"
        );
        assert_eq!(
            listener.sfu.ip(),
            host_ip(2),
            "the listener's media comes from node C"
        );
        owner.sending.store(true, Ordering::Relaxed);
        until("the listener on node A hears the speaker on node B", || {
            listener.from(1) >= 50
        })
        .await;
        eprintln!(
            "speaker sent {} frames, listener received {}",
            owner.sent.load(Ordering::Relaxed),
            listener.from(1)
        );
        // Both members are in the room on node C, asked through node A.
        let (status, node, members) = get(a, &format!("/v1/rooms/{room}/members")).await;
        assert_eq!((status, node.as_str()), (200, "c"), "{members}");
        let uids: Vec<&str> = members["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|m| m["uid"].as_str())
            .collect();
        assert!(
            uids.contains(&"owner") && uids.contains(&"listener"),
            "{members}"
        );
        // What bridged shows in each node's metrics; node C forwarded the audio.
        assert!(metric(b, "onmic_cluster_bridged_ws_total").await >= 1.0);
        assert!(metric(b, "onmic_cluster_bridged_http_total").await >= 1.0);
        assert!(metric(a, "onmic_cluster_bridged_ws_total").await >= 1.0);
        assert!(metric(&base[2], "onmic_sfu_packets_out_total").await >= 50.0);
        assert_eq!(metric(a, "onmic_cluster_placements_total").await, 30.0);
        assert_eq!(metric(a, "onmic_cluster_live_nodes").await, 3.0);
        // Kicked through node B: node C's closing message reaches the listener, and its
        // connection closes, over node A's bridge.
        let (code, body) = rest(
            b,
            "post",
            &format!("/v1/rooms/{room}/kick"),
            Some(json!({ "uid": "listener" })),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let closing = listener_ws.until_closed().await.expect("a closing message");
        assert_eq!(closing["reason"], "kicked", "{closing}");
        // Every webhook of the outbox (30 creations, the joins, the seat, the kick) reaches
        // the receiver once: three nodes deliver from the one outbox, each row claimed by one.
        let expected: std::collections::BTreeSet<String> = pg
            .sql("onmic", "SELECT event_id FROM outbox")
            .lines()
            .map(str::to_owned)
            .collect();
        assert!(expected.len() >= 34, "{expected:?}");
        let deadline = Instant::now() + WAIT;
        loop {
            let pending = pg.sql(
                "onmic",
                "SELECT count(*) FROM outbox WHERE delivered_at IS NULL",
            );
            if pending == "0" {
                break;
            }
            assert!(Instant::now() < deadline, "{pending} webhooks undelivered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = hooks.deliveries();
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for d in &got {
            assert!(d.signed, "{d:?}");
            *seen.entry(d.event_id.clone()).or_default() += 1;
        }
        let dup: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dup.is_empty(), "delivered more than once: {dup:?}");
        let ids: std::collections::BTreeSet<String> = seen.into_keys().collect();
        assert_eq!(ids, expected);
        eprintln!("{} webhooks delivered, once each", got.len());
    });
    let table = Command::new(BIN)
        .args(["cluster", "status"])
        .env("ONMIC_CLUSTER_REDIS", &redis_url)
        .output()
        .expect("cluster status");
    eprintln!("{}", String::from_utf8_lossy(&table.stdout));
}

/// A node that stops (cleanly or killed) leaves the registry; a second process with a live
/// node's name is refused; malformed data in Redis is a clear error, never a panic. Loopback only.
#[test]
fn the_registry_expires_refuses_duplicates_and_reports_bad_data() {
    let lo = IpAddr::from([127, 0, 0, 1]);
    let port = free_port(lo);
    let _redis = redis(None, lo, port);
    let url = format!("redis://127.0.0.1:{port}/");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = |name: &str| {
        node_env(
            name,
            "127.0.0.1:0",
            &url,
            (
                "ONMIC_DATABASE",
                dir.path().join(name).display().to_string(),
            ),
        )
    };
    let (mut a, base_a) = node(None, &env("a"));
    let (b, _) = node(None, &env("b"));
    let wait_for = |n: usize| {
        let deadline = Instant::now() + WAIT;
        loop {
            let live = live_nodes(&cluster_status(&url));
            if live.len() == n {
                return live;
            }
            assert!(Instant::now() < deadline, "{n} live nodes, have {live:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let live = wait_for(2);
    assert!(live["a"]["media"].is_string(), "{:?}", live["a"]);
    // A second "a" waits for the first one's record to expire, then gives up, clearly.
    let mut cmd = Command::new(BIN);
    for (k, v) in env("a") {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("a duplicate node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a duplicate name is refused");
    assert!(
        stderr.contains("node name \"a\" is registered by another live process"),
        "{stderr}"
    );
    // Killed without a goodbye: its record expires after the TTL (3 s).
    drop(b);
    let live = wait_for(1);
    assert!(live.contains_key("a"));

    // Malformed data in Redis: a clear error naming the key, no panic.
    let rt = runtime();
    rt.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis");
        let set = |k: &str, v: &str| redis::cmd("SET").arg(k).arg(v).clone();
        for c in [
            set("onmic:node:zz", "{\"v\":1,\"id\":\"zz\"}"),
            set("onmic:room:junk", "not a node!"),
            set("onmic:room:ghost", "ghost-node"),
            redis::cmd("SADD").arg("onmic:nodes").arg("zz").clone(),
        ] {
            let () = c.query_async(&mut con).await.expect("write");
        }
        let (status, _, body) = get(&base_a, "/v1/rooms/junk").await;
        assert_eq!(status, 500, "{body}");
        assert_eq!(body["code"], "cluster_unavailable", "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or("")
                .contains("onmic:room:junk"),
            "{body}"
        );
        let (status, _, body) = get(&base_a, "/v1/rooms/ghost/members").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("node_unavailable")),
            "{body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap_or("")
                .contains("ghost-node"),
            "{body}"
        );
        // The WebSocket says the same to a join.
        let mut ws = Client::connect(&base_a).await;
        let tok = token(&base_a, "ghost", "u1").await;
        let reply = ws
            .request(json!({ "type": "join", "room": "ghost", "token": tok }))
            .await;
        assert_eq!(reply["code"], "node_unavailable", "{reply}");
        // The unreadable record is listed, and placement still works around it.
        let status = cluster_status(&url);
        let bad = status["bad_records"].to_string();
        assert!(bad.contains("onmic:node:zz"), "{status}");
        let (code, _) = rest(
            &base_a,
            "post",
            "/v1/rooms",
            Some(json!({ "id": "fresh", "owner": "o", "title": "t" })),
        )
        .await;
        assert_eq!(code, 201);
        let placed = |status: &Value| live_nodes(status)["a"]["placed"].as_u64().expect("placed");
        let before = placed(&cluster_status(&url));
        // A dismissed room comes off its node's placed count at the next heartbeat.
        let (code, body) = rest(&base_a, "post", "/v1/rooms/fresh/dismiss", Some(json!({}))).await;
        assert_eq!(code, 200, "{body}");
        let deadline = Instant::now() + WAIT;
        while placed(&cluster_status(&url)) != before - 1 {
            assert!(Instant::now() < deadline, "placed count after a dismissal");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Redis loses its data: the next heartbeat registers the node and pins its rooms again.
        let () = redis::cmd("FLUSHALL")
            .query_async(&mut con)
            .await
            .expect("flush");
        let deadline = Instant::now() + WAIT;
        loop {
            let pin: Option<String> = redis::cmd("GET")
                .arg("onmic:room:fresh")
                .query_async(&mut con)
                .await
                .expect("get");
            if pin.as_deref() == Some("a") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "rooms pinned again after FLUSHALL"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = cluster_status(&url);
        assert_eq!(placed(&status), 0, "only a dismissed room: {status}");
        // Redis gone: a clear 503, and the node keeps serving its own rooms.
        drop(_redis);
        let (status, _, body) = get(&base_a, "/v1/rooms/elsewhere").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("cluster_unavailable")),
            "{body}"
        );
        let (status, node, _) = get(&base_a, "/v1/rooms/fresh").await;
        assert_eq!((status, node.as_str()), (200, "a"));
    });
    assert!(
        a.0.try_wait().expect("status").is_none(),
        "node a survives Redis going away"
    );
}

/// Start-up with a Redis nobody listens on fails after its retries with an error that names
/// the address (no panic, no hang).
#[test]
fn an_unreachable_redis_fails_start_up_clearly() {
    let port = free_port(IpAddr::from([127, 0, 0, 1]));
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("redis://127.0.0.1:{port}/");
    let mut cmd = Command::new(BIN);
    let db = ("ONMIC_DATABASE", dir.path().join("a").display().to_string());
    for (k, v) in node_env("a", "127.0.0.1:0", &url, db) {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().expect("the node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("Redis at redis://127.0.0.1:{port}/")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("gave up after {:?}: {stderr}", started.elapsed());
    // `cluster status` says the same.
    let out = Command::new(BIN)
        .args(["cluster", "status"])
        .env("ONMIC_CLUSTER_REDIS", &url)
        .output()
        .expect("cluster status runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Redis at"));
    // Without a cluster configured it says what to set.
    let out = Command::new(BIN)
        .args(["cluster", "status"])
        .env_remove("ONMIC_CLUSTER_REDIS")
        .output()
        .expect("cluster status runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster_redis"));
}

/// Acceptance 7: without cluster settings a node has no cluster series in `/metrics` and
/// answers as before.
#[test]
fn without_a_cluster_metrics_have_no_cluster_series() {
    runtime().block_on(async {
        let server = server(config()).await;
        let base = server.url();
        create_room(&base, "r1", "o").await;
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(text.contains("onmic_rooms{node=\"onmic-1\"} 1"), "{text}");
        assert!(!text.contains("onmic_cluster_"), "{text}");
        let (status, node, _) = get(&base, "/v1/rooms/r1").await;
        assert_eq!((status, node.as_str()), (200, ""), "no x-onmic-node header");
        let (status, body) = rest(&base, "post", "/v1/node/drain", None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
    });
}

/// The nodes of a failover or draining test: Redis and PostgreSQL on host 3, nodes a, b and c
/// on hosts 0-2 sharing the database, a webhook receiver on host 4 (this process).
struct SharedCluster {
    // Dropped in this order: the nodes first, then what they use.
    nodes: Vec<(Kid, String)>,
    hosts: Vec<String>,
    _redis: Kid,
    redis_url: String,
    pg: common::pg::PgCluster,
    hooks: common::hooks::HookReceiver,
}

impl SharedCluster {
    /// Starts everything (inside `rt`, which runs the webhook receiver); `extra` settings for
    /// every node.
    fn start(rt: &tokio::runtime::Runtime, extra: &[(&str, &str)]) -> SharedCluster {
        let hosts = host_namespaces();
        assert_eq!(hosts.len(), 5, "{hosts:?}");
        let redis_port = 6390;
        let redis = redis(Some(&hosts[3]), host_ip(3), redis_port);
        let redis_url = format!("redis://{}:{redis_port}/", host_ip(3));
        let pg = common::pg::PgCluster::start_in(&hosts[3], host_ip(3));
        pg.database("onmic");
        let hooks = rt.block_on(common::hooks::HookReceiver::start(host_ip(4)));
        let mut c = SharedCluster {
            hosts,
            _redis: redis,
            redis_url,
            pg,
            hooks,
            nodes: Vec::new(),
        };
        for i in 0..3 {
            let node = c.start_node(i, extra);
            c.nodes.push(node);
        }
        let deadline = Instant::now() + WAIT;
        while live_nodes(&cluster_status(&c.redis_url)).len() < 3 {
            assert!(Instant::now() < deadline, "three live nodes");
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn start_node(&self, i: usize, extra: &[(&str, &str)]) -> (Kid, String) {
        let name = ["a", "b", "c"][i];
        let listen = format!("{}:7600", host_ip(i));
        let mut env = node_env(
            name,
            &listen,
            &self.redis_url,
            ("ONMIC_DATABASE_URL", self.pg.tcp_url("onmic")),
        );
        env.push(("ONMIC_WEBHOOK_URL".into(), self.hooks.url.clone()));
        env.push(("ONMIC_WEBHOOK_RETRY_MS".into(), "200".into()));
        for (k, v) in extra {
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        node(Some(&self.hosts[i]), &env)
    }

    fn url(&self, i: usize) -> String {
        self.nodes[i].1.clone()
    }

    /// Waits until the outbox has nothing undelivered, then checks that every row reached the
    /// receiver, signed; returns (rows, deliveries, event ids delivered more than once).
    async fn all_webhooks_delivered(&self) -> (usize, usize, Vec<String>) {
        // Rows may still be written (a timer's event): wait until every row in the outbox is
        // delivered and the receiver has each.
        let deadline = Instant::now() + 2 * WAIT;
        loop {
            let expected: std::collections::BTreeSet<String> = self
                .pg
                .sql("onmic", "SELECT event_id FROM outbox")
                .lines()
                .map(str::to_owned)
                .collect();
            let got = self.hooks.deliveries();
            let mut seen = std::collections::BTreeMap::<String, usize>::new();
            for d in &got {
                assert!(d.signed, "{d:?}");
                *seen.entry(d.event_id.clone()).or_default() += 1;
            }
            let pending = self.pg.sql(
                "onmic",
                "SELECT count(*) FROM outbox WHERE delivered_at IS NULL",
            );
            let missing: Vec<&String> = expected
                .iter()
                .filter(|id| !seen.contains_key(*id))
                .collect();
            if pending == "0" && missing.is_empty() {
                let dups = seen
                    .iter()
                    .filter(|(_, n)| **n > 1)
                    .map(|(id, _)| id.clone())
                    .collect();
                return (expected.len(), got.len(), dups);
            }
            assert!(
                Instant::now() < deadline,
                "{pending} webhooks undelivered; never received: {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The node a room is served by, asked through `via`: (HTTP status, `x-onmic-node`).
async fn served_by(via: &str, room: &str) -> (u16, String) {
    let (status, node, _) = get(via, &format!("/v1/rooms/{room}")).await;
    (status, node)
}

/// Joins `room` through `base` as `uid`, retrying while the cluster answers that the room's
/// node is unavailable (a failover in progress); returns the client and the `joined` reply, or
/// the final error reply.
async fn join_retrying(base: &str, room: &str, uid: &str) -> (Client, Value) {
    let (c, reply, _) = join_counting(base, room, uid).await;
    (c, reply)
}

/// [`join_retrying`], also returning how many joins it took.
async fn join_counting(base: &str, room: &str, uid: &str) -> (Client, Value, u32) {
    let deadline = Instant::now() + WAIT;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let tok = token(base, room, uid).await;
        let mut c = Client::connect(base).await;
        c.uid = uid.to_owned();
        let reply = c
            .request(json!({ "type": "join", "room": room, "token": tok }))
            .await;
        let retry = matches!(
            reply["code"].as_str(),
            Some("node_unavailable" | "no_such_room")
        );
        if !retry || Instant::now() >= deadline {
            return (c, reply, attempts);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Acceptance 3 (issue 16): `kill -9` on a node with live rooms. Its rooms come back on the
/// surviving nodes within the documented bound (node TTL + heartbeat + 1 s, docs/cluster.md),
/// with their seats, mutes, admins, bans and chat mutes; the seated member who returns keeps
/// its seat; the one who does not is released after the presence timeout and told `lost_seat`
/// on return; every webhook of the shared outbox is delivered.
#[test]
fn a_killed_nodes_rooms_come_back_on_the_others() {
    const TEST: &str = "a_killed_nodes_rooms_come_back_on_the_others";
    if !inside_hosts(TEST, 5, &[]) {
        return;
    }
    const TTL_MS: u64 = 3000;
    const HEARTBEAT_MS: u64 = 200;
    const PRESENCE_MS: u64 = 6000;
    let rt = runtime();
    let mut cluster = SharedCluster::start(&rt, &[("ONMIC_PRESENCE_TIMEOUT_MS", "6000")]);
    let a = cluster.url(0);
    let b = cluster.url(1);
    rt.block_on(async {
        for i in 0..9 {
            let body = json!({ "id": format!("fo-{i}"), "owner": "owner", "title": "t",
                               "seat_count": 4 });
            create_room_from(&a, body).await;
        }
        let mut on_c = Vec::new();
        for i in 0..9 {
            let room = format!("fo-{i}");
            if served_by(&a, &room).await.1 == "c" {
                on_c.push(room);
            }
        }
        assert_eq!(on_c.len(), 3, "{on_c:?}");
        let room = on_c[0].clone();
        // The owner on seat 0 (through node a), "goner" an admin on seat 1 (through node b),
        // host-muted and chat-muted; "badguy" banned ahead of time.
        let (mut owner, _) = Client::join(&a, &room, "owner").await;
        owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
        let (mut goner, _) = Client::join(&b, &room, "goner").await;
        owner
            .ok(json!({ "type": "set_admin", "uid": "goner", "admin": true }))
            .await;
        goner.ok(json!({ "type": "take_seat", "seat": 1 })).await;
        owner.ok(json!({ "type": "mute_seat", "seat": 1 })).await;
        owner
            .ok(json!({ "type": "kick", "uid": "badguy", "ban_ms": 600_000 }))
            .await;
        owner
            .ok(json!({ "type": "mute_chat", "uid": "goner", "duration_ms": 600_000 }))
            .await;
        let before = owner.request(json!({ "type": "snapshot" })).await["snapshot"].clone();
        // Node c dies without a word.
        let killed = Instant::now();
        let victim = &mut cluster.nodes[2].0;
        victim.0.kill().expect("SIGKILL");
        victim.0.wait().expect("reaped");
        // Its rooms come back on a and b.
        let mut back = HashMap::new();
        let deadline = Instant::now() + 2 * WAIT;
        while back.len() < on_c.len() {
            for r in &on_c {
                if back.contains_key(r) {
                    continue;
                }
                let (status, node) = served_by(&a, r).await;
                if status == 200 && (node == "a" || node == "b") {
                    back.insert(r.clone(), (node, killed.elapsed()));
                }
            }
            assert!(Instant::now() < deadline, "rooms back: {back:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let worst = back.values().map(|(_, t)| *t).max().expect("rooms");
        eprintln!("rooms of the killed node back after: {back:?}; worst {worst:?}");
        let bound = Duration::from_millis(TTL_MS + HEARTBEAT_MS + 1000);
        assert!(
            worst <= bound,
            "documented bound TTL + heartbeat + 1 s = {bound:?}, took {worst:?}"
        );
        let new_node = back[&room].0.clone();
        // The owner's bridged connection ended with its node (node a closes it); it
        // reconnects through node a and keeps its seat.
        owner.until_closed().await;
        let (mut owner, joined) = join_retrying(&a, &room, "owner").await;
        assert_eq!(joined["type"], "joined", "{joined}");
        assert_eq!(joined["lost_seat"], Value::Null, "{joined}");
        let snap = &joined["snapshot"];
        assert_eq!(snap["seats"][0]["uid"], "owner", "{snap}");
        // What the room held before the kill: the admin on its muted seat, the ban, the chat
        // mute.
        assert_eq!(snap["seats"][1], before["seats"][1], "{snap}");
        assert_eq!(snap["seats"][1]["uid"], "goner", "{snap}");
        assert_eq!(snap["bans"], before["bans"], "{snap}");
        assert_eq!(snap["chat_mutes"], before["chat_mutes"], "{snap}");
        // The same members with the same roles (the owner's rejoin renews its publish_until).
        let roles = |s: &Value| -> Vec<(String, bool)> {
            s["members"]
                .as_object()
                .expect("members")
                .iter()
                .map(|(uid, m)| (uid.clone(), m["admin"].as_bool().unwrap_or(false)))
                .collect()
        };
        assert_eq!(roles(snap), roles(&before), "{snap}");
        assert!(
            snap["version"].as_u64() >= before["version"].as_u64(),
            "every change the owner was told `ok` about was written: {snap}"
        );
        let banned = join_retrying(&b, &room, "badguy").await.1;
        assert_eq!(banned["code"], "banned", "{banned}");
        // "goner" does not come back: after the presence timeout (counted from the takeover)
        // its seat is released; the owner, heartbeating, stays.
        let adopted = Instant::now();
        let deadline = adopted + Duration::from_millis(PRESENCE_MS) + WAIT;
        let released_at = loop {
            // Events read while waiting for a reply are kept in `owner.events`.
            if owner
                .events
                .iter()
                .any(|e| e["type"] == "member_left" && e["uid"] == "goner")
            {
                break adopted.elapsed();
            }
            let reply = tokio::time::timeout(Duration::from_millis(1000), owner.next()).await;
            match reply {
                Ok(m) => assert!(m.is_some(), "the owner stays connected"),
                Err(_) => {
                    owner.request(json!({ "type": "heartbeat" })).await;
                }
            }
            assert!(Instant::now() < deadline, "goner released");
        };
        eprintln!("goner released {released_at:?} after the owner's rejoin");
        let snap = owner.request(json!({ "type": "snapshot" })).await["snapshot"].clone();
        assert_eq!(snap["seats"][0]["uid"], "owner", "{snap}");
        assert_eq!(snap["seats"][1]["uid"], Value::Null, "{snap}");
        // On return, goner is told.
        let (_goner, joined) = join_retrying(&b, &room, "goner").await;
        assert_eq!(joined["type"], "joined", "{joined}");
        assert_eq!(joined["lost_seat"]["seat"], 1, "{joined}");
        assert_eq!(joined["lost_seat"]["reason"], "offline", "{joined}");
        // Served by the node that took the room, whichever node a client asks.
        assert_eq!(served_by(&b, &room).await, (200, new_node.clone()));
        drop(goner);
        // goner's member_left webhook (written by the new node's writer after the event went
        // out) reaches the receiver; then every webhook in the outbox, those written by c
        // before it died included.
        let member_left = format!("{room}:");
        until("goner's member_left webhook", || {
            cluster.hooks.deliveries().iter().any(|d| {
                d.event_id.starts_with(&member_left)
                    && d.body["type"] == "member_left"
                    && d.body["data"]["uid"] == "goner"
            })
        })
        .await;
        let (rows, deliveries, dups) = cluster.all_webhooks_delivered().await;
        eprintln!("{rows} webhooks in the outbox, {deliveries} deliveries, again: {dups:?}");
        let taken: f64 = metric(&a, "onmic_cluster_rooms_taken_over_total").await
            + metric(&b, "onmic_cluster_rooms_taken_over_total").await;
        assert_eq!(taken, 3.0);
    });
}

/// Acceptance 2 (issue 16): SIGTERM on a node with live rooms drains it. Every member is told
/// to reconnect (`closing` `server_shutdown`), rejoins through another node and keeps its seat;
/// the rooms are served by the other nodes at once (no TTL wait); a real WebRTC speaker is
/// heard again by a real listener within the documented bound (docs/cluster.md); no webhook is
/// lost, and any sent twice is the same event (`event_id`); the process exits 0.
#[test]
fn a_drained_node_hands_its_rooms_over() {
    const TEST: &str = "a_drained_node_hands_its_rooms_over";
    if !inside_hosts(TEST, 5, &[]) {
        return;
    }
    /// docs/cluster.md, Draining: from SIGTERM to the listener's first frame on its new peer
    /// connection, the clients rejoining and offering again as soon as they are told (as the
    /// client does on `server_shutdown`).
    const AUDIO_BOUND: Duration = Duration::from_millis(3000);
    let rt = runtime();
    let mut cluster = SharedCluster::start(&rt, &[]);
    let a = cluster.url(0);
    let b = cluster.url(1);
    let client_ip = host_ip(4);
    rt.block_on(async {
        for i in 0..9 {
            let body = json!({ "id": format!("dr-{i}"), "owner": "owner", "title": "t",
                               "seat_count": 4 });
            create_room_from(&a, body).await;
        }
        let mut on_c = Vec::new();
        for i in 0..9 {
            let room = format!("dr-{i}");
            if served_by(&a, &room).await.1 == "c" {
                on_c.push(room);
            }
        }
        assert_eq!(on_c.len(), 3, "{on_c:?}");
        let room = on_c[0].clone();
        // The owner speaks from seat 0 (through node b), an admin holds seat 1 (through node
        // a), a listener listens through node a.
        let (mut owner_ws, _) = Client::join(&b, &room, "owner").await;
        owner_ws.ok(json!({ "type": "take_seat", "seat": 0 })).await;
        let (mut admin_ws, _) = Client::join(&a, &room, "admin").await;
        owner_ws
            .ok(json!({ "type": "set_admin", "uid": "admin", "admin": true }))
            .await;
        admin_ws.ok(json!({ "type": "take_seat", "seat": 1 })).await;
        let (mut listener_ws, _) = Client::join(&a, &room, "listener").await;
        let owner_token = token(&b, &room, "owner").await;
        let listener_token = token(&a, &room, "listener").await;
        let speaker = Peer::connect_bound(client_ip, &b, &room, &owner_token, 1, None).await;
        let listener = Peer::connect_bound(client_ip, &a, &room, &listener_token, 3, None).await;
        assert_eq!(speaker.sfu.ip(), host_ip(2));
        speaker.sending.store(true, Ordering::Relaxed);
        until("the listener hears the speaker on node c", || {
            listener.from(1) >= 25
        })
        .await;
        // When the listener last got a frame, watched every 2 ms.
        let heard = listener.received.clone();
        let last_heard = std::sync::Arc::new(std::sync::Mutex::new(Instant::now()));
        let watch = {
            let last_heard = last_heard.clone();
            tokio::spawn(async move {
                let mut count = 0;
                loop {
                    let now = heard.lock().expect("counts").get(&1).copied().unwrap_or(0);
                    if now != count {
                        count = now;
                        *last_heard.lock().expect("time") = Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        // SIGTERM on node c.
        let stopped = Instant::now();
        let pid = cluster.nodes[2].0 .0.id();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        // Everyone is told to reconnect, and does, through a or b, as the client does.
        for ws in [&mut owner_ws, &mut listener_ws, &mut admin_ws] {
            let closing = ws.until_closed().await.expect("a closing message");
            assert_eq!(closing["reason"], "server_shutdown", "{closing}");
        }
        let told = stopped.elapsed();
        // The first join works: the room moved before anyone was told (the real client
        // retries a failed join only after a second).
        let (mut owner_ws, joined, attempts) = join_counting(&b, &room, "owner").await;
        assert_eq!(joined["type"], "joined", "{joined}");
        assert_eq!(attempts, 1, "{joined}");
        assert_eq!(joined["lost_seat"], Value::Null, "{joined}");
        assert_eq!(joined["snapshot"]["seats"][0]["uid"], "owner", "{joined}");
        let owner_back = stopped.elapsed();
        let speaker2 = Peer::connect_bound(client_ip, &b, &room, &owner_token, 1, None).await;
        speaker2.sending.store(true, Ordering::Relaxed);
        let speaker_back = stopped.elapsed();
        let (_listener_ws, joined, attempts) = join_counting(&a, &room, "listener").await;
        assert_eq!(joined["type"], "joined", "{joined}");
        assert_eq!(attempts, 1, "{joined}");
        let listener2 = Peer::connect_bound(client_ip, &a, &room, &listener_token, 3, None).await;
        let listener_back = stopped.elapsed();
        let new_node = served_by(&a, &room).await;
        assert!(new_node == (200, "a".into()) || new_node == (200, "b".into()), "{new_node:?}");
        assert_ne!(speaker2.sfu.ip(), host_ip(2), "media now goes to the new node");
        until("the listener hears the speaker again", || listener2.from(1) >= 1).await;
        let back = Instant::now();
        watch.abort();
        let gap = back.duration_since(*last_heard.lock().expect("time"));
        eprintln!(
            "after SIGTERM: told to reconnect {told:?}, owner joined {owner_back:?}, speaker offered {speaker_back:?}, listener offered {listener_back:?}; audio gap at the listener {gap:?} (SIGTERM to audio back {:?}); room now on {new_node:?}",
            stopped.elapsed()
        );
        let back_after = back.duration_since(stopped);
        assert!(
            back_after <= AUDIO_BOUND,
            "audio back {back_after:?} after SIGTERM, over the documented {AUDIO_BOUND:?}"
        );
        // The admin comes back to its seat.
        let (_admin_ws, joined) = join_retrying(&a, &room, "admin").await;
        assert_eq!(joined["lost_seat"], Value::Null, "{joined}");
        assert_eq!(joined["snapshot"]["seats"][1]["uid"], "admin", "{joined}");
        // Node c exits 0 once drained; its rooms are served elsewhere, moved by the drain (none
        // by failover).
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = cluster.nodes[2].0 .0.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit 30 s after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "node c exited with {status}");
        eprintln!("node c exited after {:?}", stopped.elapsed());
        for r in &on_c {
            let (code, node) = served_by(&a, r).await;
            assert!(code == 200 && (node == "a" || node == "b"), "{r}: {code} {node}");
        }
        let handed = metric(&a, "onmic_cluster_rooms_taken_over_total").await
            + metric(&b, "onmic_cluster_rooms_taken_over_total").await;
        assert_eq!(handed, 0.0, "moved by the drain, not by failover");
        assert_eq!(
            owner_ws.request(json!({ "type": "heartbeat" })).await["type"],
            "pong"
        );
        drop(speaker);
        drop(listener);
        // Draining by REST: node b hands its rooms to a (the only other node), stays up, and
        // takes no new room.
        let b_rooms: Vec<String> = {
            let mut v = Vec::new();
            for i in 0..9 {
                let r = format!("dr-{i}");
                if served_by(&a, &r).await.1 == "b" {
                    v.push(r);
                }
            }
            v
        };
        assert!(!b_rooms.is_empty());
        let (code, report) = rest(&b, "post", "/v1/node/drain", None).await;
        assert_eq!(code, 200, "{report}");
        eprintln!("REST drain of b: {report}");
        assert_eq!(report["node"], "b");
        assert_eq!(report["failed"], json!([]), "{report}");
        let mut moved: Vec<String> = report["moved"]
            .as_array()
            .expect("moved")
            .iter()
            .map(|m| {
                assert_eq!(m["node"], "a", "{report}");
                m["room"].as_str().expect("room").to_owned()
            })
            .collect();
        moved.sort();
        let mut expected = b_rooms.clone();
        expected.sort();
        assert_eq!(moved, expected);
        for r in &b_rooms {
            assert_eq!(served_by(&b, r).await, (200, "a".to_owned()), "{r}");
        }
        let status = cluster_status(&cluster.redis_url);
        assert_eq!(live_nodes(&status)["b"]["draining"], true, "{status}");
        create_room(&b, "after-drain", "o").await;
        assert_eq!(served_by(&b, "after-drain").await, (200, "a".to_owned()));
        // No webhook lost; one sent twice is the same event.
        let (rows, deliveries, dups) = cluster.all_webhooks_delivered().await;
        eprintln!("{rows} webhooks in the outbox, {deliveries} deliveries, again: {dups:?}");
        let got = cluster.hooks.deliveries();
        for id in &dups {
            let bodies: Vec<&Value> = got
                .iter()
                .filter(|d| &d.event_id == id)
                .map(|d| &d.body)
                .collect();
            assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{id}: {bodies:?}");
        }
    });
}
