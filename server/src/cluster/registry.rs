//! The cluster's data in Redis, as values: the node record every node writes on its heartbeat,
//! the keys, and the placement rule. Pure (no Redis, no clock), so placement and the handling of
//! malformed records are unit-tested here; `super` does the I/O.
//!
//! Keys (all under [`PREFIX`]):
//! - `onmic:node:<id>`: the node's [`NodeRecord`] as JSON, written with a TTL on each heartbeat;
//!   a node that stops heartbeating expires.
//! - `onmic:nodes`: a set of node ids that ever registered (expired ones are pruned on read).
//! - `onmic:placed`: a hash node id → rooms placed on it (incremented atomically with each pin).
//! - `onmic:room:<room>`: the id of the node the room is pinned to (set once, `SET NX`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Every key starts with this.
pub const PREFIX: &str = "onmic:";
/// The set of registered node ids.
pub const NODES_KEY: &str = "onmic:nodes";
/// The hash of rooms placed per node.
pub const PLACED_KEY: &str = "onmic:placed";
/// The version of [`NodeRecord`]'s layout this build writes and reads.
pub const RECORD_VERSION: u32 = 1;
/// Longest node id (it is part of keys and of the `x-onmic-node` header).
pub const MAX_NODE_ID: usize = 64;

/// The key of node `id`'s record.
pub fn node_key(id: &str) -> String {
    format!("{PREFIX}node:{id}")
}

/// The key of room `room`'s pin.
pub fn room_key(room: &str) -> String {
    format!("{PREFIX}room:{room}")
}

/// A node's load, as it reports it on each heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Rooms held (not dismissed).
    pub rooms: u64,
    /// Members of those rooms (connected or within their presence timeout).
    pub members: u64,
    /// WebRTC peer connections on the node's SFU (speakers and listeners).
    pub peers: u64,
    /// The process's CPU use over the last heartbeat, in percent of one core (None: unknown).
    pub cpu_percent: Option<f64>,
}

/// What a node writes about itself in `onmic:node:<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Layout version ([`RECORD_VERSION`]).
    pub v: u32,
    /// The node id (`node_name`).
    pub id: String,
    /// A random id of this run of the node: a second process with the same name is refused.
    pub instance: String,
    /// `host:port` where the other nodes reach its HTTP/WebSocket API.
    pub http: String,
    /// The SFU's first UDP address (what the node's SDP answers carry); none: media is down.
    pub media: Option<String>,
    /// The server's version.
    pub version: String,
    /// When the node started, Unix milliseconds.
    pub started_ms: u64,
    /// When this record was written, Unix milliseconds.
    pub heartbeat_ms: u64,
    /// Its load at `heartbeat_ms`.
    pub load: Load,
    /// Draining: handing its rooms to other nodes before it stops; placement and failover
    /// leave it out. (Absent in records of older builds: not draining.)
    #[serde(default)]
    pub draining: bool,
}

/// Why a value read from Redis cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BadData {
    /// Not JSON of a node record.
    #[error("{key} does not hold a node record: {detail}")]
    NotARecord {
        /// The key read.
        key: String,
        /// What the parser said.
        detail: String,
    },
    /// Written by a build with another layout.
    #[error("{key} holds a node record of layout v{found}; this build reads v{RECORD_VERSION}")]
    Version {
        /// The key read.
        key: String,
        /// The version found.
        found: u32,
    },
    /// The record names another node than its key, or a malformed id or address.
    #[error("{key}: {detail}")]
    Invalid {
        /// The key read.
        key: String,
        /// What is wrong.
        detail: String,
    },
}

/// Checks a node id (the `node_name` of a cluster node): 1–64 characters of `A–Z a–z 0–9 . _ -`.
pub fn check_node_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_NODE_ID {
        return Err(format!(
            "a node name must be 1-{MAX_NODE_ID} characters, got {}",
            id.len()
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "node name {id:?} may only hold letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Checks a `host:port` address (a name or an IP; IPv6 in brackets).
fn check_host_port(addr: &str) -> Result<(), String> {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} is not host:port"));
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("{addr:?} is not host:port"));
    }
    Ok(())
}

impl NodeRecord {
    /// Parses and checks the record read from `onmic:node:<expected_id>`.
    pub fn parse(expected_id: &str, text: &str) -> Result<NodeRecord, BadData> {
        let key = node_key(expected_id);
        // The version first, so a future layout says so instead of "missing field".
        #[derive(Deserialize)]
        struct Versioned {
            v: u32,
        }
        let versioned: Versioned = serde_json::from_str(text).map_err(|e| BadData::NotARecord {
            key: key.clone(),
            detail: e.to_string(),
        })?;
        if versioned.v != RECORD_VERSION {
            return Err(BadData::Version {
                key,
                found: versioned.v,
            });
        }
        let record: NodeRecord = serde_json::from_str(text).map_err(|e| BadData::NotARecord {
            key: key.clone(),
            detail: e.to_string(),
        })?;
        let invalid = |detail: String| BadData::Invalid {
            key: key.clone(),
            detail,
        };
        if record.id != expected_id {
            return Err(invalid(format!(
                "the record names node {:?}, not {expected_id:?}",
                record.id
            )));
        }
        check_node_id(&record.id).map_err(invalid)?;
        check_host_port(&record.http).map_err(|e| invalid(format!("http: {e}")))?;
        if let Some(media) = &record.media {
            media
                .parse::<std::net::SocketAddr>()
                .map_err(|_| invalid(format!("media: {media:?} is not ip:port")))?;
        }
        if record
            .load
            .cpu_percent
            .is_some_and(|c| !c.is_finite() || c < 0.0)
        {
            return Err(invalid(
                "load.cpu_percent is negative or not a number".into(),
            ));
        }
        Ok(record)
    }
}

/// Parses a room pin (`onmic:room:<room>`): a node id.
pub fn parse_pin(room: &str, text: &str) -> Result<String, BadData> {
    check_node_id(text).map_err(|detail| BadData::Invalid {
        key: room_key(room),
        detail,
    })?;
    Ok(text.to_owned())
}

/// Parses a count of the `onmic:placed` hash.
pub fn parse_placed(node: &str, text: &str) -> Result<u64, BadData> {
    text.parse::<i64>()
        .map(|n| n.max(0).unsigned_abs())
        .map_err(|_| BadData::Invalid {
            key: format!("{PLACED_KEY}[{node}]"),
            detail: format!("{text:?} is not a count"),
        })
}

/// The live nodes in the order a new room should try them: the fewest rooms placed first (the
/// `onmic:placed` count, which moves with every placement, not only with heartbeats), then the
/// fewest members, then the fewest peers, then the node id (so equal nodes are ranked the same
/// way by every node). Nodes whose media is down are left out: a room there could not be heard.
pub fn rank<'a>(nodes: &'a [NodeRecord], placed: &HashMap<String, u64>) -> Vec<&'a NodeRecord> {
    let mut ranked: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|n| n.media.is_some() && !n.draining)
        .collect();
    let rooms = |n: &NodeRecord| placed.get(&n.id).copied().unwrap_or(n.load.rooms);
    ranked.sort_by(|a, b| {
        rooms(a)
            .cmp(&rooms(b))
            .then(a.load.members.cmp(&b.load.members))
            .then(a.load.peers.cmp(&b.load.peers))
            .then_with(|| a.id.cmp(&b.id))
    });
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, rooms: u64, members: u64) -> NodeRecord {
        NodeRecord {
            v: RECORD_VERSION,
            id: id.into(),
            instance: "i".into(),
            http: format!("10.0.0.1:{}", 7600),
            media: Some("10.0.0.1:40000".into()),
            draining: false,
            version: "0".into(),
            started_ms: 1,
            heartbeat_ms: 2,
            load: Load {
                rooms,
                members,
                peers: 0,
                cpu_percent: Some(3.5),
            },
        }
    }

    fn ids(r: &[&NodeRecord]) -> Vec<String> {
        r.iter().map(|n| n.id.clone()).collect()
    }

    #[test]
    fn fewest_placed_rooms_first_then_members_then_id() {
        let nodes = vec![node("c", 0, 0), node("a", 5, 0), node("b", 5, 1)];
        let none = HashMap::new();
        assert_eq!(ids(&rank(&nodes, &none)), ["c", "a", "b"]);
        // The placed count wins over the (older) heartbeat count.
        let placed: HashMap<String, u64> = [("c".to_string(), 9)].into();
        assert_eq!(ids(&rank(&nodes, &placed)), ["a", "b", "c"]);
        // Equal loads: by id, the same order on every node.
        let even = vec![node("n2", 1, 1), node("n1", 1, 1), node("n3", 1, 1)];
        assert_eq!(ids(&rank(&even, &none)), ["n1", "n2", "n3"]);
    }

    #[test]
    fn placing_one_room_at_a_time_spreads_them_evenly() {
        let nodes = vec![node("a", 0, 0), node("b", 0, 0), node("c", 0, 0)];
        let mut placed: HashMap<String, u64> = HashMap::new();
        for _ in 0..30 {
            let first = rank(&nodes, &placed)[0].id.clone();
            *placed.entry(first).or_default() += 1;
        }
        assert_eq!(placed.values().copied().collect::<Vec<_>>(), [10, 10, 10]);
    }

    #[test]
    fn nodes_without_media_get_no_rooms() {
        let mut dark = node("a", 0, 0);
        dark.media = None;
        let nodes = vec![dark, node("b", 7, 7)];
        assert_eq!(ids(&rank(&nodes, &HashMap::new())), ["b"]);
        assert!(rank(&nodes[..1], &HashMap::new()).is_empty());
    }

    #[test]
    fn a_record_round_trips() {
        let n = node("a", 1, 2);
        let text = serde_json::to_string(&n).expect("json");
        assert_eq!(NodeRecord::parse("a", &text), Ok(n));
    }

    #[test]
    fn malformed_records_are_clear_errors() {
        let good = serde_json::to_value(node("a", 1, 2)).expect("json");
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            f(&mut v);
            v.to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "does not hold a node record"),
            ("not json".into(), "does not hold a node record"),
            ("[1,2]".into(), "does not hold a node record"),
            ("{\"v\":1}".into(), "missing field"),
            (with(&|v| v["v"] = 2.into()), "layout v2"),
            (with(&|v| v["v"] = "one".into()), "does not hold"),
            (with(&|v| v["id"] = "b".into()), "names node \"b\""),
            (with(&|v| v["http"] = "nowhere".into()), "http:"),
            (with(&|v| v["http"] = "host:0".into()), "http:"),
            (with(&|v| v["http"] = "a b:80".into()), "http:"),
            (with(&|v| v["media"] = "10.0.0.1".into()), "media:"),
            (with(&|v| v["load"]["rooms"] = (-1).into()), "does not hold"),
            (with(&|v| v["load"]["cpu_percent"] = (-5.0).into()), "cpu"),
            (with(&|v| v["load"] = "heavy".into()), "does not hold"),
        ];
        for (text, expected) in cases {
            let err = NodeRecord::parse("a", &text).expect_err(&text);
            let msg = err.to_string();
            assert!(msg.contains(expected), "{text} -> {msg}");
            assert!(msg.contains("onmic:node:a"), "names the key: {msg}");
        }
        // A record with fields from a newer build of the same layout is read.
        let newer = with(&|v| v["zone"] = "eu".into());
        assert!(NodeRecord::parse("a", &newer).is_ok());
    }

    #[test]
    fn pins_and_counts_are_checked() {
        assert_eq!(parse_pin("r", "node-1"), Ok("node-1".into()));
        for bad in ["", "a b", "ü", &"x".repeat(65), "a:b"] {
            let err = parse_pin("r", bad).expect_err(bad).to_string();
            assert!(err.contains("onmic:room:r"), "{err}");
        }
        assert_eq!(parse_placed("a", "12"), Ok(12));
        assert_eq!(parse_placed("a", "-3"), Ok(0), "a count below zero reads 0");
        assert!(parse_placed("a", "twelve").is_err());
    }

    #[test]
    fn node_ids() {
        assert!(check_node_id("onmic-1").is_ok());
        assert!(check_node_id("eu.west_2").is_ok());
        assert!(check_node_id("").is_err());
        assert!(check_node_id("a/b").is_err());
    }
}
