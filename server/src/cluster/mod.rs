//! Several `onmic-server` nodes as one service (issue 16), routed over Redis as LiveKit does:
//! each node registers itself with its load and addresses and heartbeats; a record that is not
//! refreshed expires. A new room is placed on the least-loaded live node and pinned there for
//! its life (`SET NX`); any node serves any request by bridging it to the room's node
//! ([`bridge`]: the WebSocket frame by frame, REST calls and the WebRTC offer/answer over HTTP);
//! media flows straight between the client and the room's node, whose address the SDP answer
//! carries. Tokens verify on every node because every node shares `token_secret`.
//!
//! Contract: without `cluster_redis` nothing here runs and the server behaves as a single node.
//! With it, [`Cluster::start`] registers the node (or fails start-up with a clear error after
//! retrying), a background task heartbeats every `cluster_heartbeat_ms`, and the request paths
//! ask [`Cluster::node_of`] / [`Cluster::place`] only for rooms this node does not hold. A Redis
//! outage is an error answer (`cluster_unavailable`, 503) and a logged warning, never a panic;
//! the connection is re-established by the next request or heartbeat. A room whose audience
//! outgrows its node spreads its listeners over relay nodes ([`relay`]). With a shared store
//! (`database_url`) the nodes take a dead node's rooms over ([`failover`]), and a stopping
//! node hands its rooms over first ([`drain`]).

pub mod bridge;
pub mod drain;
pub mod failover;
pub mod metrics;
pub mod registry;
pub mod relay;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use redis::AsyncCommands;
use sha2::Sha256;

pub use registry::{BadData, Load, NodeRecord};

use crate::Config;
use crate::hub::Census;

/// Header a node puts on a request it bridges: `<node id>:<hex HMAC-SHA256 of the id under
/// token_secret>`. A node that sees a valid one serves the request itself (no second hop) and
/// trusts [`CLIENT_IP_HEADER`].
pub const BRIDGE_HEADER: &str = "x-onmic-bridge";
/// The client's address, as the bridging node saw it.
pub const CLIENT_IP_HEADER: &str = "x-onmic-client-ip";
/// On every answer in a cluster: the node that served the request (the room's node).
pub const NODE_HEADER: &str = "x-onmic-node";

/// Connection attempts at start-up before giving up (one per second).
const START_ATTEMPTS: u32 = 5;
/// Rooms whose node is remembered (cleared when full; an entry is trusted for one heartbeat,
/// see `Cluster::node_of`: pins move on failover and draining).
const PIN_CACHE: usize = 100_000;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Redis cannot be reached or answered with an error.
    #[error("Redis at {url}: {source}")]
    Redis {
        /// The configured URL, without its password.
        url: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// Redis holds something this build cannot read.
    #[error("bad data in Redis: {0}")]
    BadData(#[from] BadData),
    /// The configuration cannot work as a cluster node.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// Another live process registered this node's name.
    #[error(
        "node name {0:?} is registered by another live process (its record did not expire within the node TTL); give each node its own node_name"
    )]
    NameTaken(String),
    /// No live node can take a room.
    #[error("no live cluster node with running media can take a room")]
    NoNodes,
    /// The room is pinned to a node whose record expired.
    #[error("room {room} lives on node {node}, which is not live (no heartbeat within the TTL)")]
    NodeDown {
        /// The room.
        room: String,
        /// Its node.
        node: String,
    },
    /// The room's node did not answer the bridged request.
    #[error("room {room}'s node {node} at {http} did not answer: {detail}")]
    Unreachable {
        /// The room.
        room: String,
        /// Its node.
        node: String,
        /// The node's HTTP address.
        http: String,
        /// What failed.
        detail: String,
    },
}

impl ClusterError {
    /// The stable error code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            ClusterError::NodeDown { .. } | ClusterError::Unreachable { .. } => "node_unavailable",
            _ => "cluster_unavailable",
        }
    }
}

/// `redis://user:password@host/` → `redis://host/` for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// WebSocket connections bridged to another node.
    pub bridged_ws: AtomicU64,
    /// HTTP requests (REST, `/rtc/offer`) bridged to another node.
    pub bridged_http: AtomicU64,
    /// Rooms this node placed (on itself or another node).
    pub placements: AtomicU64,
    /// Redis commands that failed.
    pub redis_errors: AtomicU64,
    /// Heartbeats written.
    pub heartbeats: AtomicU64,
    /// Rooms of dead nodes this node took over.
    pub taken_over: AtomicU64,
    /// Rooms this node handed to another node while draining.
    pub handed_over: AtomicU64,
}

/// This node's rooms as the heartbeat last saw them.
#[derive(Debug, Default)]
struct Seen {
    /// Rooms pinned to this node (checked once per run, or after Redis lost the record).
    pinned: std::collections::HashSet<String>,
    /// Dismissed rooms already taken off the placed count.
    released: std::collections::HashSet<String>,
}

/// A node's handle on the cluster.
pub struct Cluster {
    /// This node's id (`node_name`).
    pub node: String,
    /// Where the other nodes reach this one (`host:port`).
    pub http: String,
    instance: String,
    url: String,
    redis: redis::aio::ConnectionManager,
    ttl: Duration,
    heartbeat: Duration,
    bridge_value: String,
    secret: Vec<u8>,
    /// The live nodes as of the last heartbeat (or lookup that refreshed it).
    nodes: Mutex<HashMap<String, NodeRecord>>,
    /// Room → node, for rooms looked up before (checked again when stale, see `node_of`).
    pins: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// What the heartbeat has done about this node's own rooms.
    seen: Mutex<Seen>,
    /// Unreadable records already logged.
    reported_bad: Mutex<std::collections::HashSet<String>>,
    /// The HTTP client for bridged requests.
    pub(crate) http_client: reqwest::Client,
    /// Counters for `/metrics`.
    pub counters: ClusterCounters,
    started_ms: u64,
    /// Whether the nodes share one store (`database_url`): rooms can move between nodes
    /// (failover, draining). With a store per node they cannot.
    shared_store: bool,
    /// Rooms of dead nodes this node has seen and not taken (another node was preferred), and
    /// since when ([`failover`]).
    orphans_seen: Mutex<HashMap<String, std::time::Instant>>,
    /// Set when the node drains ([`drain`]): its record says so, placement and failover leave
    /// it out, and it takes no rooms over.
    draining: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("http", &self.http)
            .field("redis", &redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The bridge header value node `node` sends.
pub fn bridge_value(secret: &[u8], node: &str) -> String {
    // HMAC accepts a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(b"onmic-bridge:");
    mac.update(node.as_bytes());
    format!("{node}:{}", hex::encode(mac.finalize().into_bytes()))
}

/// Opens a Redis connection manager with bounded timeouts (never waits forever on a dead Redis).
pub async fn connect(url: &str) -> Result<redis::aio::ConnectionManager, ClusterError> {
    let err = |source| ClusterError::Redis {
        url: redact_url(url),
        source,
    };
    let client = redis::Client::open(url).map_err(err)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    client
        .get_connection_manager_with_config(config)
        .await
        .map_err(err)
}

/// The address other nodes reach `listen` at: `advertise` if set, else `listen` itself unless
/// it is a wildcard address (which names no host).
pub fn advertised(
    advertise: Option<&str>,
    listen: std::net::SocketAddr,
) -> Result<String, ClusterError> {
    match advertise {
        Some(a) => Ok(a.to_owned()),
        None if listen.ip().is_unspecified() => Err(ClusterError::Config(format!(
            "listen is {listen}, which other nodes cannot dial; set cluster_advertise to this node's host:port"
        ))),
        None => Ok(listen.to_string()),
    }
}

impl Cluster {
    /// Connects to `config.cluster_redis` (retrying for a few seconds) and registers this node,
    /// reachable at `http`. `None` when no cluster is configured.
    pub async fn start(
        config: &Config,
        http: String,
        load: Load,
        media: Option<std::net::SocketAddr>,
        census: &Census,
    ) -> Result<Option<Cluster>, ClusterError> {
        let Some(url) = config.cluster_redis.clone() else {
            return Ok(None);
        };
        registry::check_node_id(&config.node_name).map_err(ClusterError::Config)?;
        if config.cluster_heartbeat_ms == 0
            || config.cluster_node_ttl_ms < 2 * config.cluster_heartbeat_ms
        {
            return Err(ClusterError::Config(format!(
                "cluster_node_ttl_ms ({}) must be at least twice cluster_heartbeat_ms ({}), and the heartbeat above 0",
                config.cluster_node_ttl_ms, config.cluster_heartbeat_ms
            )));
        }
        let mut attempt = 0;
        let redis = loop {
            attempt += 1;
            match connect(&url).await {
                Ok(r) => break r,
                Err(e) if attempt < START_ATTEMPTS => {
                    tracing::warn!(%e, attempt, "cannot reach Redis yet; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let instance = format!("{:016x}", rand_u64());
        let cluster = Cluster {
            node: config.node_name.clone(),
            http,
            instance,
            url,
            redis,
            ttl: Duration::from_millis(config.cluster_node_ttl_ms),
            heartbeat: Duration::from_millis(config.cluster_heartbeat_ms),
            bridge_value: bridge_value(config.token_secret.as_bytes(), &config.node_name),
            secret: config.token_secret.as_bytes().to_vec(),
            nodes: Mutex::default(),
            pins: Mutex::default(),
            seen: Mutex::default(),
            reported_bad: Mutex::default(),
            http_client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| ClusterError::Config(format!("HTTP client: {e}")))?,
            counters: ClusterCounters::default(),
            started_ms: unix_ms(),
            shared_store: config.database_url.is_some(),
            orphans_seen: Mutex::default(),
            draining: false.into(),
        };
        cluster.register(load, media, census).await?;
        Ok(Some(cluster))
    }

    fn redis_err(&self, source: redis::RedisError) -> ClusterError {
        self.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
        ClusterError::Redis {
            url: redact_url(&self.url),
            source,
        }
    }

    fn record(&self, load: Load, media: Option<std::net::SocketAddr>) -> NodeRecord {
        NodeRecord {
            v: registry::RECORD_VERSION,
            id: self.node.clone(),
            instance: self.instance.clone(),
            http: self.http.clone(),
            media: media.map(|m| m.to_string()),
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms: self.started_ms,
            heartbeat_ms: unix_ms(),
            load,
            draining: self.draining.load(Ordering::Relaxed),
        }
    }

    /// Claims this node's name: waits (up to a TTL and a heartbeat) for a record of another
    /// process to expire, so a restarted node takes its name back and a duplicate is refused.
    async fn register(
        &self,
        load: Load,
        media: Option<std::net::SocketAddr>,
        census: &Census,
    ) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + self.ttl + self.heartbeat;
        let key = registry::node_key(&self.node);
        loop {
            let text = serde_json::to_string(&self.record(load.clone(), media))
                .map_err(|e| ClusterError::Config(e.to_string()))?;
            let mut con = self.redis.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&text)
                .arg("NX")
                .arg("PX")
                .arg(self.ttl.as_millis() as u64)
                .query_async(&mut con)
                .await
                .map_err(|e| self.redis_err(e))?;
            if set.is_some() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::NameTaken(self.node.clone()));
            }
            tracing::warn!(node = %self.node, "a record of this node name is still live; waiting for it to expire");
            tokio::time::sleep(self.heartbeat).await;
        }
        let mut con = self.redis.clone();
        let _: () = redis::cmd("SADD")
            .arg(registry::NODES_KEY)
            .arg(&self.node)
            .query_async(&mut con)
            .await
            .map_err(|e| self.redis_err(e))?;
        self.recount(census).await?;
        tracing::info!(node = %self.node, http = %self.http, "registered in the cluster");
        Ok(())
    }

    /// Sets this node's `onmic:placed` count to the rooms it holds that are not dismissed, and
    /// forgets which rooms it pinned (the next heartbeat pins them all again, without counting).
    async fn recount(&self, census: &Census) -> Result<(), ClusterError> {
        let mut con = self.redis.clone();
        let _: () = con
            .hset(registry::PLACED_KEY, &self.node, census.active as u64)
            .await
            .map_err(|e| self.redis_err(e))?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.pinned.clear();
        seen.released = census.dismissed.iter().map(|r| r.0.clone()).collect();
        Ok(())
    }

    /// Writes this node's record (with a fresh TTL), pins its rooms not pinned yet, takes the
    /// rooms dismissed since the last heartbeat off its placed count, and refreshes the cached
    /// list of live nodes. Called every `cluster_heartbeat_ms`.
    pub async fn heartbeat(
        &self,
        load: Load,
        media: Option<std::net::SocketAddr>,
        census: &Census,
    ) -> Result<Vec<String>, ClusterError> {
        let text = serde_json::to_string(&self.record(load, media))
            .map_err(|e| ClusterError::Config(e.to_string()))?;
        let mut con = self.redis.clone();
        let mut lost = Vec::new();
        let (previous,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(registry::node_key(&self.node))
            .arg(&text)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .arg("GET")
            .sadd(registry::NODES_KEY, &self.node)
            .ignore()
            .query_async(&mut con)
            .await
            .map_err(|e| self.redis_err(e))?;
        self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        if previous.is_none() {
            // The record was gone: it expired during an outage, or Redis lost its data.
            tracing::warn!(node = %self.node, "this node's record was missing from Redis; registering its rooms again");
            self.recount(census).await?;
        }
        // Rooms of this node's store (restored, or created before the pin) are pinned here;
        // they are in the placed count already.
        let (unpinned, newly_dismissed): (Vec<String>, Vec<String>) = {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            (
                census
                    .ids
                    .iter()
                    .filter(|r| !seen.pinned.contains(&r.0))
                    .map(|r| r.0.clone())
                    .collect(),
                census
                    .dismissed
                    .iter()
                    .filter(|r| !seen.released.contains(&r.0))
                    .map(|r| r.0.clone())
                    .collect(),
            )
        };
        for room in unpinned {
            let (owner, _) = self.pin(&room, &self.node, false).await?;
            if owner != self.node && self.shared_store {
                // Taken over by another node while this one was not live (its record expired):
                // the other node owns it in the store too, so this node lets go of it.
                tracing::warn!(room, %owner, "a room this node held was taken over by another node while this node's record was expired; letting go of it");
                lost.push(room);
                continue;
            } else if owner != self.node {
                tracing::warn!(room, %owner, "a room of this node's store is pinned to another node; requests for it go there");
            }
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pinned
                .insert(room);
        }
        for room in newly_dismissed {
            let _: i64 = con
                .hincr(registry::PLACED_KEY, &self.node, -1)
                .await
                .map_err(|e| self.redis_err(e))?;
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .released
                .insert(room);
        }
        self.refresh_nodes().await?;
        Ok(lost)
    }

    /// Reads every live node's record; prunes expired ids from `onmic:nodes`. Malformed records
    /// are logged and left out (returned in the second list for `cluster status`).
    pub async fn read_nodes(
        con: &mut redis::aio::ConnectionManager,
    ) -> Result<(Vec<NodeRecord>, Vec<BadData>), redis::RedisError> {
        let mut ids: Vec<String> = con.smembers(registry::NODES_KEY).await?;
        ids.sort();
        if ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let keys: Vec<String> = ids.iter().map(|i| registry::node_key(i)).collect();
        let texts: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(con).await?;
        let mut live = Vec::new();
        let mut bad = Vec::new();
        for (id, text) in ids.iter().zip(texts) {
            match text {
                None => {
                    // Expired: forget it (a node that comes back adds itself again).
                    let _: Result<(), _> = con.srem(registry::NODES_KEY, id).await;
                }
                Some(text) => match NodeRecord::parse(id, &text) {
                    Ok(r) => live.push(r),
                    Err(e) => bad.push(e),
                },
            }
        }
        Ok((live, bad))
    }

    async fn refresh_nodes(&self) -> Result<Vec<NodeRecord>, ClusterError> {
        let mut con = self.redis.clone();
        let (live, bad) = Cluster::read_nodes(&mut con)
            .await
            .map_err(|e| self.redis_err(e))?;
        let mut reported = self.reported_bad.lock().unwrap_or_else(|p| p.into_inner());
        for e in bad {
            // Once per distinct problem, not once per heartbeat.
            if reported.insert(e.to_string()) {
                tracing::warn!(%e, "ignoring a node record");
            }
        }
        drop(reported);
        *self.nodes.lock().unwrap_or_else(|p| p.into_inner()) =
            live.iter().map(|n| (n.id.clone(), n.clone())).collect();
        Ok(live)
    }

    /// The live nodes as of the last heartbeat.
    pub fn live_nodes(&self) -> Vec<NodeRecord> {
        let mut v: Vec<NodeRecord> = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Pins `room` to `node` unless it is pinned already (atomically, with the node's placed
    /// count when `count`); returns the node it is pinned to and whether this call pinned it.
    async fn pin(
        &self,
        room: &str,
        node: &str,
        count: bool,
    ) -> Result<(String, bool), ClusterError> {
        const PIN: &str = r"
            if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
                if ARGV[2] == '1' then
                    redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
                end
                return {ARGV[1], 1}
            end
            return {redis.call('GET', KEYS[1]), 0}";
        let mut con = self.redis.clone();
        let (owner, new): (String, i64) = redis::Script::new(PIN)
            .key(registry::room_key(room))
            .key(registry::PLACED_KEY)
            .arg(node)
            .arg(if count { "1" } else { "0" })
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.redis_err(e))?;
        let owner = registry::parse_pin(room, &owner)?;
        self.remember(room, &owner);
        Ok((owner, new == 1))
    }

    /// Undoes a pin of `room` to `node` made by [`Cluster::place`] whose creation then failed.
    pub async fn unpin(&self, room: &str, node: &str) -> Result<(), ClusterError> {
        const UNPIN: &str = r"
            if redis.call('GET', KEYS[1]) == ARGV[1] then
                redis.call('DEL', KEYS[1])
                redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
            end
            return 1";
        let mut con = self.redis.clone();
        let _: i64 = redis::Script::new(UNPIN)
            .key(registry::room_key(room))
            .key(registry::PLACED_KEY)
            .arg(node)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.redis_err(e))?;
        self.pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(room);
        Ok(())
    }

    fn remember(&self, room: &str, node: &str) {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        if pins.len() >= PIN_CACHE {
            pins.clear();
        }
        pins.insert(
            room.to_owned(),
            (node.to_owned(), std::time::Instant::now()),
        );
    }

    /// Places a new room: on the node it is pinned to already, else on the least-loaded live
    /// node ([`registry::rank`]), pinned atomically. Returns that node's record, and whether
    /// this call made the pin (only such a pin may be undone when the creation fails).
    pub async fn place(&self, room: &str) -> Result<(NodeRecord, bool), ClusterError> {
        let live = self.refresh_nodes().await?;
        let mut con = self.redis.clone();
        let placed: HashMap<String, String> = con
            .hgetall(registry::PLACED_KEY)
            .await
            .map_err(|e| self.redis_err(e))?;
        let mut counts = HashMap::new();
        for (node, text) in placed {
            counts.insert(node.clone(), registry::parse_placed(&node, &text)?);
        }
        let ranked = registry::rank(&live, &counts);
        let target = ranked.first().ok_or(ClusterError::NoNodes)?;
        let (owner, new) = self.pin(room, &target.id, true).await?;
        self.counters.placements.fetch_add(1, Ordering::Relaxed);
        Ok((self.node_record(room, &owner).await?, new))
    }

    /// The record of live node `node` (cached, else read), or `NodeDown`.
    async fn node_record(&self, room: &str, node: &str) -> Result<NodeRecord, ClusterError> {
        if let Some(r) = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            // A record older than the TTL has expired in Redis: ask again.
            .filter(|r| unix_ms().saturating_sub(r.heartbeat_ms) < self.ttl.as_millis() as u64)
        {
            return Ok(r.clone());
        }
        let mut con = self.redis.clone();
        let text: Option<String> = con
            .get(registry::node_key(node))
            .await
            .map_err(|e| self.redis_err(e))?;
        match text {
            None => Err(ClusterError::NodeDown {
                room: room.to_owned(),
                node: node.to_owned(),
            }),
            Some(text) => Ok(NodeRecord::parse(node, &text)?),
        }
    }

    /// The node room `room` is pinned to: `None` when it is pinned nowhere (no such room) or
    /// to this node.
    ///
    /// Callers ask only for rooms this node does not hold. A cached pin is trusted for one
    /// heartbeat, and read again from Redis sooner when it names this node (the room moved
    /// away), a node that is not live (the room may have failed over) or a draining node: pins
    /// move on failover and draining.
    pub async fn node_of(&self, room: &str) -> Result<Option<NodeRecord>, ClusterError> {
        let cached = self
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(room)
            .cloned();
        if let Some((node, at)) = cached {
            // Trusted for one heartbeat; a draining node is handing its rooms away.
            if node != self.node && at.elapsed() < self.heartbeat {
                match self.node_record(room, &node).await {
                    Err(ClusterError::NodeDown { .. }) => {}
                    Ok(r) if r.draining => {}
                    other => return other.map(Some),
                }
            }
            self.forget(room);
        }
        let mut con = self.redis.clone();
        let text: Option<String> = con
            .get(registry::room_key(room))
            .await
            .map_err(|e| self.redis_err(e))?;
        let Some(text) = text else { return Ok(None) };
        let node = registry::parse_pin(room, &text)?;
        self.remember(room, &node);
        if node == self.node {
            return Ok(None);
        }
        self.node_record(room, &node).await.map(Some)
    }

    /// Forgets the cached node of `room` (its node answered that it has no such room: the pin
    /// was undone after a failed creation, and the room may be placed elsewhere later).
    pub fn forget(&self, room: &str) {
        self.pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(room);
    }

    /// Whether `value` is a valid [`BRIDGE_HEADER`] from a node of this cluster.
    pub fn is_bridge(&self, value: &str) -> bool {
        let Some((node, _)) = value.split_once(':') else {
            return false;
        };
        let expected = bridge_value(&self.secret, node);
        // Compare digests: the time taken does not depend on where the strings differ.
        use sha2::Digest;
        Sha256::digest(expected.as_bytes()) == Sha256::digest(value.as_bytes())
    }

    /// The header value this node sends when it bridges.
    pub fn bridge_header(&self) -> &str {
        &self.bridge_value
    }

    /// The heartbeat period.
    pub fn heartbeat_every(&self) -> Duration {
        self.heartbeat
    }

    /// Removes this node's record (a clean shutdown, after its store is flushed: the others
    /// stop placing rooms here at once instead of after the TTL, and with a shared store take
    /// its rooms over on their next heartbeat, [`failover`]).
    pub async fn leave(&self) {
        let mut con = self.redis.clone();
        let _: Result<(), _> = con.del(registry::node_key(&self.node)).await;
    }
}

/// What `onmic-server cluster status` shows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// The Redis the status was read from (without password).
    pub redis: String,
    /// Live nodes, by id.
    pub nodes: Vec<NodeStatus>,
    /// Records that could not be read (each says which key and why).
    pub bad_records: Vec<String>,
}

/// One live node in [`Status`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    /// Its record.
    #[serde(flatten)]
    pub record: NodeRecord,
    /// Rooms placed on it (`onmic:placed`), dismissed ones included.
    pub placed: u64,
    /// Milliseconds since its last heartbeat, as seen by this reader's clock.
    pub heartbeat_age_ms: u64,
}

/// Reads the cluster's state from Redis at `url` (one connection attempt).
pub async fn status(url: &str) -> Result<Status, ClusterError> {
    let mut con = connect(url).await?;
    let err = |source| ClusterError::Redis {
        url: redact_url(url),
        source,
    };
    let (live, bad) = Cluster::read_nodes(&mut con).await.map_err(err)?;
    let placed: HashMap<String, String> = con.hgetall(registry::PLACED_KEY).await.map_err(err)?;
    let mut bad_records: Vec<String> = bad.iter().map(ToString::to_string).collect();
    let now = unix_ms();
    let nodes = live
        .into_iter()
        .map(|record| {
            let placed = match placed.get(&record.id) {
                None => 0,
                Some(text) => registry::parse_placed(&record.id, text).unwrap_or_else(|e| {
                    bad_records.push(e.to_string());
                    0
                }),
            };
            NodeStatus {
                heartbeat_age_ms: now.saturating_sub(record.heartbeat_ms),
                placed,
                record,
            }
        })
        .collect();
    Ok(Status {
        redis: redact_url(url),
        nodes,
        bad_records,
    })
}

impl Status {
    /// The status as a table for people.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<16} {:<22} {:<22} {:>6} {:>7} {:>8} {:>6} {:>6} {:>9}",
            "NODE", "HTTP", "MEDIA", "ROOMS", "PLACED", "MEMBERS", "PEERS", "CPU%", "HEARTBEAT"
        );
        for n in &self.nodes {
            let r = &n.record;
            let _ = writeln!(
                out,
                "{:<16} {:<22} {:<22} {:>6} {:>7} {:>8} {:>6} {:>6} {:>7}ms",
                r.id,
                r.http,
                r.media.as_deref().unwrap_or("down"),
                r.load.rooms,
                n.placed,
                r.load.members,
                r.load.peers,
                r.load
                    .cpu_percent
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}")),
                n.heartbeat_age_ms,
            );
        }
        let rooms: u64 = self.nodes.iter().map(|n| n.record.load.rooms).sum();
        let _ = writeln!(
            out,
            "{} live node(s), {rooms} room(s), Redis {}",
            self.nodes.len(),
            self.redis
        );
        for b in &self.bad_records {
            let _ = writeln!(out, "unreadable: {b}");
        }
        out
    }
}

/// The process's CPU use between two readings, in percent of one core.
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: Option<(std::time::Instant, f64)>,
}

impl CpuSampler {
    /// The CPU use since the previous call (none on the first call, or off Linux).
    pub fn percent(&mut self) -> Option<f64> {
        let now = std::time::Instant::now();
        let cpu = process_cpu_seconds()?;
        let last = self.last.replace((now, cpu));
        let (then, before) = last?;
        let wall = now.duration_since(then).as_secs_f64();
        (wall > 0.0).then(|| ((cpu - before) / wall * 100.0).max(0.0))
    }
}

/// This node's load now, and its rooms.
pub async fn node_load(
    hub: &crate::Hub,
    media: Option<&crate::sfu::Sfu>,
    cpu: &mut CpuSampler,
) -> (Load, Census) {
    let census = hub.census();
    let peers = match media {
        Some(m) => m.stats().await.map_or(0, |s| s.peers as u64),
        None => 0,
    };
    let load = Load {
        rooms: census.active as u64,
        members: census.members as u64,
        peers,
        cpu_percent: cpu.percent(),
    };
    (load, census)
}

/// Heartbeats until `stopped` turns true (the server removes the node's record once its store
/// is flushed, [`Cluster::leave`]); after each heartbeat takes over rooms of dead nodes
/// ([`failover`]). A failed heartbeat is logged (once per outage) and retried on the next tick.
pub async fn run_heartbeat(
    cluster: std::sync::Arc<Cluster>,
    hub: std::sync::Arc<crate::Hub>,
    media: Option<std::sync::Arc<crate::sfu::Sfu>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(cluster.heartbeat_every());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cpu = CpuSampler::default();
    let media_addr = media.as_ref().map(|m| m.local_addr());
    let mut failing = false;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stopped.changed() => break,
        }
        let (load, census) = node_load(&hub, media.as_deref(), &mut cpu).await;
        let beat = match cluster.heartbeat(load, media_addr, &census).await {
            Ok(lost) => {
                for room in lost {
                    hub.release(&onmic_room::RoomId(room));
                }
                cluster.take_over(&hub).await
            }
            Err(e) => Err(e),
        };
        match beat {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("cluster heartbeat restored");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(%e, "cluster heartbeat failed; retrying every heartbeat (this node expires from the registry if it lasts past the TTL)");
            }
            Err(_) => {}
        }
    }
}

/// A random u64 from the OS (the instance id); falls back to the clock.
fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut b)
    }) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => unix_ms() ^ u64::from(std::process::id()) << 32,
    }
}

/// The process's CPU time (user + system) in seconds, from `/proc/self/stat` (Linux).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_values_verify_only_under_the_shared_secret() {
        let v = bridge_value(b"s3cret", "node-b");
        assert!(v.starts_with("node-b:"));
        assert_ne!(v, bridge_value(b"other", "node-b"));
        assert_ne!(v, bridge_value(b"s3cret", "node-c"));
    }

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact_url("redis://:pw@10.0.0.1:6379/0"),
            "redis://10.0.0.1:6379/0"
        );
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn a_wildcard_listen_needs_an_advertised_address() {
        let any: std::net::SocketAddr = "0.0.0.0:7600".parse().expect("addr");
        assert!(advertised(None, any).is_err());
        assert_eq!(advertised(Some("n1:7600"), any).expect("set"), "n1:7600");
        let one: std::net::SocketAddr = "10.0.0.2:7600".parse().expect("addr");
        assert_eq!(advertised(None, one).expect("listen"), "10.0.0.2:7600");
    }

    #[test]
    fn cpu_time_is_read() {
        if cfg!(target_os = "linux") {
            assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
        }
    }
}
