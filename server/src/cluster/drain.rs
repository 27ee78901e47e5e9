//! Draining: a node that is asked to stop (SIGTERM) hands each of its rooms to another node
//! before it closes, so members move with their seats and audio comes back quickly.
//!
//! Contract (shared store only, `database_url`; otherwise a stop is as without draining): the
//! node marks its record `draining` at once (placement and failover leave it out), then for
//! each room not dismissed, one at a time: picks the least-loaded other live node
//! ([`super::registry::rank`]); takes the room out of its hub ([`Hub::detach`]: later commands
//! and joins there get `no_such_room`); waits until every change is written
//! ([`Hub::durable`]); moves the Redis pin to the chosen node (compare-and-set from this node);
//! asks that node over HTTP to take the room (`POST /cluster/adopt`, authenticated with the
//! bridge header, i.e. the cluster's shared `token_secret`), which moves the owner in the store
//! from this node to itself (one `UPDATE`, fenced) and restores the room from it; then closes
//! the room's connections here with `closing` `server_shutdown` (1001), on which clients rejoin
//! through any node and are bridged to the room's new node, keeping their seats (each member's
//! presence timeout starts again at the handover). A handover that fails at any step puts the
//! pin and the room back and goes on with the next room; what is left is closed by the normal
//! shutdown and failed over by the other nodes once this node's record is gone.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use onmic_room::RoomId;
use onmic_room::protocol::CloseReason;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{BRIDGE_HEADER, Cluster, registry};
use crate::AppState;
use crate::hub::Hub;
use crate::rest::ApiError;

/// The internal route a draining node calls on the node it hands a room to.
pub const ADOPT_PATH: &str = "/cluster/adopt";
/// Longest wait for the other node to take one room.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(10);

/// `POST /cluster/adopt`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdoptRequest {
    /// The room.
    pub room: String,
    /// The node handing it over (its owner in the store).
    pub from: String,
}

/// What a drain did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrainReport {
    /// Rooms handed to another node.
    pub moved: Vec<(String, String)>,
    /// Rooms that could not be handed over, with why.
    pub failed: Vec<(String, String)>,
    /// Connections told to reconnect.
    pub connections: usize,
    /// How long it took, in milliseconds.
    pub took_ms: u64,
}

impl Cluster {
    /// Whether this node is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Drains this node (see the module's contract). Without a shared store it only marks the
    /// record.
    pub async fn drain(&self, hub: &Arc<Hub>) -> DrainReport {
        let started = Instant::now();
        let mut report = DrainReport::default();
        self.draining.store(true, Ordering::Relaxed);
        if let Err(e) = self.announce().await {
            tracing::warn!(%e, "cannot mark this node draining in Redis; handing rooms over anyway");
        }
        if !self.shared_store {
            return report;
        }
        let census = hub.census();
        let rooms: Vec<RoomId> = census
            .ids
            .into_iter()
            .filter(|r| !census.dismissed.contains(r))
            .collect();
        for room in rooms {
            match self.hand_over(hub, &room).await {
                Ok((node, conns)) => {
                    report.connections += conns;
                    report.moved.push((room.0, node));
                }
                Err(why) => {
                    tracing::warn!(room = %room, %why, "cannot hand a room over while draining");
                    report.failed.push((room.0, why));
                }
            }
        }
        report.took_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            moved = report.moved.len(),
            failed = report.failed.len(),
            connections = report.connections,
            took_ms = report.took_ms,
            "drained"
        );
        report
    }

    /// Rewrites this node's record now (with its `draining` flag), keeping its load.
    async fn announce(&self) -> Result<(), super::ClusterError> {
        let mut record = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.node)
            .cloned()
            .ok_or_else(|| {
                super::ClusterError::Config("this node's record is not cached".into())
            })?;
        record.draining = true;
        let text = serde_json::to_string(&record)
            .map_err(|e| super::ClusterError::Config(e.to_string()))?;
        let mut con = self.redis.clone();
        let _: () = con
            .pset_ex(
                registry::node_key(&self.node),
                text,
                self.ttl.as_millis() as u64,
            )
            .await
            .map_err(|e| self.redis_err(e))?;
        Ok(())
    }

    /// Hands one room over; returns its new node and the connections closed here.
    async fn hand_over(&self, hub: &Arc<Hub>, room: &RoomId) -> Result<(String, usize), String> {
        let live = self.refresh_nodes().await.map_err(|e| e.to_string())?;
        let mut con = self.redis.clone();
        let placed: std::collections::HashMap<String, String> = con
            .hgetall(registry::PLACED_KEY)
            .await
            .map_err(|e| self.redis_err(e).to_string())?;
        let counts = placed
            .iter()
            .filter_map(|(n, t)| Some((n.clone(), registry::parse_placed(n, t).ok()?)))
            .collect();
        let others: Vec<super::NodeRecord> =
            live.into_iter().filter(|n| n.id != self.node).collect();
        let target = registry::rank(&others, &counts)
            .first()
            .map(|n| (*n).clone())
            .ok_or("no other live node can take it")?;
        let detached = hub.detach(room).ok_or("not held, or dismissed")?;
        if let Err(e) = hub.durable().await {
            hub.reattach(detached);
            return Err(format!("its changes are not written: {e}"));
        }
        match self.move_pin(&room.0, &self.node, &target.id).await {
            Ok(true) => {}
            Ok(false) => {
                hub.reattach(detached);
                return Err("its pin names another node".into());
            }
            Err(e) => {
                hub.reattach(detached);
                return Err(e.to_string());
            }
        }
        let asked = self
            .http_client
            .post(format!("http://{}{ADOPT_PATH}", target.http))
            .header(BRIDGE_HEADER, self.bridge_header())
            .timeout(ADOPT_TIMEOUT)
            .json(&AdoptRequest {
                room: room.0.clone(),
                from: self.node.clone(),
            })
            .send()
            .await;
        let refused = match asked {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!(
                "node {} answered {}: {}",
                target.id,
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => Some(format!("node {} did not answer: {e}", target.id)),
        };
        if let Some(why) = refused {
            let _ = self.move_pin(&room.0, &target.id, &self.node).await;
            hub.reattach(detached);
            return Err(why);
        }
        let conns = hub.close_detached(detached, CloseReason::ServerShutdown);
        self.counters.handed_over.fetch_add(1, Ordering::Relaxed);
        Ok((target.id, conns))
    }
}

/// `POST /cluster/adopt` (bridge header only): takes room `room` from node `from` in the store
/// and restores it here.
pub async fn adopt(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(cluster) = state.cluster.clone() else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "not a cluster node")
            .into_response();
    };
    if !super::bridge::bridged(&state, &headers) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "only another node of the cluster may call this",
        )
        .into_response();
    }
    let req: AdoptRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("body: {e}"),
            )
            .into_response();
        }
    };
    if cluster.is_draining() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_unavailable",
            "this node is draining",
        )
        .into_response();
    }
    let (hub, me) = (state.hub.clone(), cluster.node.clone());
    let (room, from) = (req.room.clone(), req.from.clone());
    let claimed =
        tokio::task::spawn_blocking(move || hub.store_unflushed().claim_room(&room, &from, &me))
            .await;
    match claimed {
        Ok(Ok(Some(rec))) => {
            let members = rec.state.members.len();
            state.hub.adopt(rec);
            tracing::info!(
                room = req.room,
                from = req.from,
                members,
                "took a room over from a draining node"
            );
            Json(serde_json::json!({ "room": req.room, "members": members })).into_response()
        }
        Ok(Ok(None)) => ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_room",
            format!("room {} is not node {}'s in the store", req.room, req.from),
        )
        .into_response(),
        Ok(Err(e)) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
    }
}

/// The internal routes of a cluster node.
pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new().route(ADOPT_PATH, axum::routing::post(adopt))
}
