//! Relay nodes (issue 16, acceptance 4) with a real `redis-server` and three real `onmic-server`
//! processes on three hosts (network namespaces joined by a bridge): a room on one node (its
//! origin) with `relay_listeners = 2` spreads its listeners over the two other nodes (relays);
//! listeners on all three hear the seated speaker, an unseated sender on a relay reaches nobody,
//! a mute on the origin stops every relay within 300 ms at the receivers, the relay link refuses
//! bad auth and malformed frames with a clear error, and relays whose origin dies drop their
//! listeners without a panic. Needs root, iproute2 and `redis-server` (`xtask/apt/redis.txt`).

mod common;
mod sfu_support;

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::cluster::{Kid, command, redis, runtime};
use common::*;
use futures_util::{SinkExt, StreamExt};
use onmic_netns::{host_ip, host_namespaces, inside_hosts};
use onmic_server::cluster::relay::{LINK_VERSION, LinkFrame};
use serde_json::json;
use sfu_support::{Peer, until};
use tokio_tungstenite::tungstenite;

const TOKEN_SECRET: &str = "tok-secret";

/// A node of the cluster inside `ns`; returns it and its base URL.
fn node(ns: &str, name: &str, listen: &str, redis: &str, db: &std::path::Path) -> (Kid, String) {
    let mut cmd = command(Some(ns), BIN);
    cmd.env_remove("RUST_LOG").stderr(Stdio::inherit());
    for (k, v) in [
        ("ONMIC_NODE_NAME", name.to_owned()),
        ("ONMIC_LISTEN", listen.to_owned()),
        ("ONMIC_LOG", "warn".to_owned()),
        ("ONMIC_DATABASE", db.display().to_string()),
        ("ONMIC_CUSTOMER_KEY", KEY.to_owned()),
        ("ONMIC_CUSTOMER_SECRET", SECRET.to_owned()),
        ("ONMIC_TOKEN_SECRET", TOKEN_SECRET.to_owned()),
        ("ONMIC_WEBHOOK_SECRET", "hook-secret".to_owned()),
        ("ONMIC_APP_ID", "app".to_owned()),
        ("ONMIC_MEDIA_THREADS", "1".to_owned()),
        ("ONMIC_CLUSTER_REDIS", redis.to_owned()),
        ("ONMIC_CLUSTER_HEARTBEAT_MS", "200".to_owned()),
        ("ONMIC_CLUSTER_NODE_TTL_MS", "3000".to_owned()),
        ("ONMIC_RELAY_LISTENERS", "2".to_owned()),
    ] {
        cmd.env(k, v);
    }
    let (child, url) = spawn_server(cmd);
    (Kid(child), url)
}

/// A series of `/metrics` (None: the node did not answer).
async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the relay link of `room` on `base` as a relay would, with `bridge` as the bridge
/// header (none: without); the HTTP status when the upgrade is refused.
async fn open_link(base: &str, room: &str, bridge: Option<&str>) -> Result<Ws, u16> {
    use tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/cluster/relay/link/{room}",
        base.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().expect("a request");
    if let Some(b) = bridge {
        request
            .headers_mut()
            .insert("x-onmic-bridge", b.parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("link upgrade: {e}"),
    }
}

/// Reads until the origin closes the link; returns its close code and reason.
async fn closed_with(ws: &mut Ws) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(tungstenite::Message::Close(Some(c))))) => {
                return (u16::from(c.code), c.reason.to_string());
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

fn hello(node: &str) -> tungstenite::Message {
    let frame = LinkFrame::Hello {
        version: LINK_VERSION,
        node: node.into(),
    };
    tungstenite::Message::Binary(frame.encode().into())
}

/// Acceptance 4 (issue 16).
#[test]
fn a_room_spreads_over_two_relays_and_the_origin_keeps_authority() {
    const TEST: &str = "a_room_spreads_over_two_relays_and_the_origin_keeps_authority";
    // Hosts: 0-2 = nodes a, b, c; 3 = Redis; 4 = the clients (this process).
    if !inside_hosts(TEST, 5, &[]) {
        return;
    }
    let hosts = host_namespaces();
    let _redis = redis(Some(&hosts[3]), host_ip(3), 6390);
    let redis_url = format!("redis://{}:6390/", host_ip(3));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes: Vec<Option<Kid>> = Vec::new();
    let mut base = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let db = dir.path().join(format!("{name}.sqlite3"));
        let listen = format!("{}:7600", host_ip(i));
        let (kid, url) = node(&hosts[i], name, &listen, &redis_url, &db);
        nodes.push(Some(kid));
        base.push(url);
    }
    let client_ip = host_ip(4);
    let room = "big-room";
    runtime().block_on(async {
        // Every node is live (each sees three in its registry).
        let deadline = Instant::now() + WAIT;
        for b in &base {
            while metric(b, "onmic_cluster_live_nodes").await != Some(3.0) {
                assert!(Instant::now() < deadline, "three live nodes seen by {b}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        create_room_from(
            &base[0],
            json!({ "id": room, "owner": "owner", "title": "t", "seat_count": 2 }),
        )
        .await;
        let (status, origin_id) = {
            let resp = reqwest::Client::new()
                .get(format!("{}/v1/rooms/{room}", base[0]))
                .header("authorization", auth())
                .send()
                .await
                .expect("REST answers");
            let node = resp.headers()["x-onmic-node"]
                .to_str()
                .expect("node")
                .to_owned();
            (resp.status().as_u16(), node)
        };
        assert_eq!(status, 200);
        let o = ["a", "b", "c"]
            .iter()
            .position(|n| *n == origin_id)
            .expect("a node");
        let origin = base[o].clone();
        eprintln!("room {room} lives on node {origin_id}");

        // The seated speaker (tag 1) and, through every node in turn, listeners and one
        // unseated sender (tag 9). The origin serves two peer connections of the room; each
        // relay two more.
        let (mut owner_ws, _) = Client::join(&base[(o + 1) % 3], room, "owner").await;
        owner_ws.ok(json!({ "type": "take_seat", "seat": 0 })).await;
        let owner_token = token(&origin, room, "owner").await;
        let owner = Peer::connect_bound(client_ip, &origin, room, &owner_token, 1, None).await;
        let mut members = Vec::new();
        let mut listeners = Vec::new();
        for (k, uid) in ["l0", "l1", "l2", "l3"].into_iter().enumerate() {
            let via = &base[k % 3];
            let (ws, _) = Client::join(via, room, uid).await;
            members.push(ws);
            let tok = token(via, room, uid).await;
            listeners.push(Peer::connect_bound(client_ip, via, room, &tok, 10 + k as u8, None).await);
        }
        let (bomber_ws, _) = Client::join(&base[1], room, "bomber").await;
        members.push(bomber_ws);
        let tok = token(&base[1], room, "bomber").await;
        let bomber = Peer::connect_bound(client_ip, &base[1], room, &tok, 9, None).await;
        let ip_of = |p: &Peer| p.sfu.ip();
        let served_by = |p: &Peer| (0..3).find(|i| host_ip(*i) == ip_of(p)).expect("a node");
        let placement: Vec<usize> = listeners.iter().map(served_by).collect();
        eprintln!(
            "origin {o}; listeners served by nodes {placement:?}; the unseated sender by {}",
            served_by(&bomber)
        );
        assert_eq!(served_by(&owner), o, "the seated speaker's media goes to the origin");
        assert_eq!(placement[0], o, "the origin serves its first two peers");
        let relays: Vec<usize> = (0..3).filter(|i| *i != o).collect();
        for r in &relays {
            assert!(
                placement.contains(r) || served_by(&bomber) == *r,
                "node {r} relays some of the room's peers: {placement:?}"
            );
            assert!(
                placement.iter().filter(|p| **p == *r).count()
                    + usize::from(served_by(&bomber) == *r)
                    <= 2,
                "at most relay_listeners peers per relay: {placement:?}"
            );
        }
        assert_ne!(served_by(&bomber), o, "the unseated sender is on a relay");
        // Every node serves at least one listener.
        for n in 0..3 {
            assert!(placement.contains(&n), "node {n} serves a listener: {placement:?}");
        }

        // Everyone hears the speaker; nobody hears the unseated sender.
        owner.sending.store(true, Ordering::Relaxed);
        bomber.sending.store(true, Ordering::Relaxed);
        until("listeners on all three nodes hear the speaker", || {
            listeners.iter().all(|l| l.from(1) >= 100)
        })
        .await;
        for (l, n) in listeners.iter().zip(&placement) {
            eprintln!("listener on node {n}: {} frames of the speaker", l.from(1));
        }
        assert!(bomber.sent.load(Ordering::Relaxed) >= 100);
        for l in listeners.iter().chain([&owner]) {
            assert_eq!(l.from(9), 0, "the unseated sender on a relay reaches nobody");
        }
        let relay_dropped: f64 = {
            let mut sum = 0.0;
            for r in &relays {
                sum += metric(&base[*r], "onmic_sfu_dropped_total")
                    .await
                    .unwrap_or(0.0);
            }
            sum
        };
        eprintln!(
            "unseated sender: {} frames sent, relays dropped {relay_dropped}",
            bomber.sent.load(Ordering::Relaxed)
        );
        assert!(relay_dropped >= 50.0, "the relay dropped the unseated sender's packets");

        // One link per relay, whatever it serves; the origin counts its placements.
        assert_eq!(metric(&origin, "onmic_relay_placed_total").await, Some(4.0));
        assert_eq!(metric(&origin, "onmic_relay_subscribers").await, Some(2.0));
        for r in &relays {
            assert_eq!(metric(&base[*r], "onmic_relay_links").await, Some(1.0), "node {r}");
            assert!(metric(&base[*r], "onmic_relay_frames_in_total").await >= Some(100.0));
        }

        // The relay link: bad auth and malformed frames are refused with a clear error.
        assert_eq!(open_link(&origin, room, None).await.err(), Some(401));
        assert_eq!(
            open_link(&origin, room, Some("x:0123456789abcdef")).await.err(),
            Some(401)
        );
        let good = onmic_server::cluster::bridge_value(TOKEN_SECRET.as_bytes(), "probe");
        assert_eq!(
            open_link(&origin, "no-such-room", Some(&good)).await.err(),
            Some(404)
        );
        for (what, first, second, expect) in [
            ("garbage", vec![0xde, 0xad, 0xbe, 0xef], None, "unknown frame kind"),
            ("a truncated hello", vec![3, LINK_VERSION, 9, b'x'], None, "truncated"),
            ("another version", vec![3, 99, 1, b'x'], None, "version 99"),
            ("a truncated frame", hello("probe").into_data().to_vec(), Some(vec![1, 0, 0]), "truncated"),
        ] {
            let mut ws = open_link(&origin, room, Some(&good)).await.expect("link upgrade");
            ws.send(tungstenite::Message::Binary(first.into()))
                .await
                .expect("send");
            if let Some(second) = second {
                ws.send(tungstenite::Message::Binary(second.into()))
                    .await
                    .expect("send");
            }
            let (code, reason) = closed_with(&mut ws).await;
            eprintln!("{what}: closed {code} {reason:?}");
            assert_eq!(code, 1002, "{what}: {reason}");
            assert!(reason.contains(expect), "{what}: {reason}");
        }
        // A well-behaved link gets the origin's hello, then the speaker's packets as the origin
        // forwards them: uid, slot 0, the payload unchanged.
        let mut ws = open_link(&origin, room, Some(&good)).await.expect("link");
        ws.send(hello("probe")).await.expect("hello");
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while frames.len() < 20 {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(tungstenite::Message::Binary(b)))) => {
                    frames.push(LinkFrame::decode(&b).expect("a frame the origin wrote"));
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("link frames: {other:?}"),
            }
        }
        assert_eq!(
            frames[0],
            LinkFrame::Hello {
                version: LINK_VERSION,
                node: origin_id.clone()
            }
        );
        for f in &frames[1..] {
            match f {
                LinkFrame::Audio(a) => {
                    assert_eq!((a.uid.0.as_str(), a.slot), ("owner", 0), "{f:?}");
                    assert_eq!(a.payload[0], 1, "the speaker's tag");
                    assert_eq!(a.payload.len(), 40);
                }
                other => panic!("only the speaker's audio: {other:?}"),
            }
        }
        drop(ws);
        // Still serving after all that.
        let before: Vec<u64> = listeners.iter().map(|l| l.from(1)).collect();
        until("listeners still hear the speaker", || {
            listeners.iter().zip(&before).all(|(l, b)| l.from(1) >= b + 25)
        })
        .await;

        // A kick on the origin reaches the relay: the kicked listener's relay peer closes (it
        // hears nothing more within 300 ms) while the others go on hearing.
        let kicked = 1;
        assert_ne!(placement[kicked], o, "listener 1 is on a relay");
        let kicked_at = Instant::now();
        let (code, body) = rest(
            &origin,
            "post",
            &format!("/v1/rooms/{room}/kick"),
            Some(json!({ "uid": "l1" })),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(600)).await;
        let last = listeners[kicked].last_at.lock().expect("times")[&1];
        let after = last.saturating_duration_since(kicked_at);
        eprintln!(
            "kicked listener on relay node {}: last speaker frame {} ms after the kick",
            placement[kicked],
            after.as_millis()
        );
        assert!(after <= Duration::from_millis(300), "heard {after:?} after the kick");
        let listeners: Vec<Peer> = {
            let mut all = listeners;
            drop(all.remove(kicked));
            all
        };
        let placement: Vec<usize> = {
            let mut p = placement;
            p.remove(kicked);
            p
        };
        let before: Vec<u64> = listeners.iter().map(|l| l.from(1)).collect();
        until("the others still hear the speaker", || {
            listeners.iter().zip(&before).all(|(l, b)| l.from(1) >= b + 10)
        })
        .await;

        // A mute on the origin stops the speaker at every listener within 300 ms. Right before
        // it, every listener hears the speaker (a frame within the last 100 ms).
        until("every listener heard the speaker within 100 ms", || {
            listeners.iter().all(|l| {
                l.last_at.lock().expect("times")[&1].elapsed() < Duration::from_millis(100)
            })
        })
        .await;
        let muted_at = Instant::now();
        let (code, body) = rest(
            &base[2],
            "post",
            &format!("/v1/rooms/{room}/seat_mute"),
            Some(json!({ "uid": "owner" })),
        )
        .await;
        let acked = muted_at.elapsed();
        assert_eq!(code, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        for (l, n) in listeners.iter().zip(&placement) {
            let last = l.last_at.lock().expect("times")[&1];
            let after = last.saturating_duration_since(muted_at);
            let signed = if last >= muted_at {
                after.as_secs_f64() * 1e3
            } else {
                -(muted_at - last).as_secs_f64() * 1e3
            };
            eprintln!(
                "listener on node {n}: last speaker frame {signed:+.1} ms from the mute's sending (acknowledged after {:.1} ms)",
                acked.as_secs_f64() * 1e3
            );
            assert!(signed > -200.0, "node {n}: it heard the speaker until the mute");
            assert!(
                after <= Duration::from_millis(300),
                "node {n}: the speaker was heard {after:?} after the mute"
            );
        }
        let counts: Vec<u64> = listeners.iter().map(|l| l.from(1)).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            counts,
            listeners.iter().map(|l| l.from(1)).collect::<Vec<_>>(),
            "nothing after the mute"
        );
        assert!(owner.sent.load(Ordering::Relaxed) > 0);

        // The origin dies: the relays drop its listeners and keep running.
        drop(nodes[o].take());
        let deadline = Instant::now() + WAIT;
        for r in &relays {
            loop {
                let peers = metric(&base[*r], "onmic_sfu_peers").await;
                if peers == Some(0.0) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {r} still has {peers:?} peers after its origin died"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            if let Some(kid) = n {
                assert!(
                    kid.0.try_wait().expect("wait").is_none(),
                    "node {i} still runs"
                );
            }
        }
        eprintln!("relays dropped their listeners after the origin died");
        // A member whose WebSocket a surviving node bridged to the origin is told: it closes.
        let k = (0..4)
            .find(|k| k % 3 != o && *k != 1)
            .expect("a member joined through a relay node");
        tokio::time::timeout(Duration::from_secs(10), members[k].until_closed())
            .await
            .expect("the bridged WebSocket closes when the origin dies");
        drop(members);
        drop(owner_ws);
    });
}
