//! `GET /metrics`: this node's figures in the Prometheus text format (version 0.0.4), every
//! series labelled `node="<node_name>"`. Served by every node, in a cluster or not; it is not
//! authenticated (like `/health`), so expose it only where the scraper runs.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and line breaks escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Text {
    out: String,
    node: String,
}

impl Text {
    fn series(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        let _ = writeln!(self.out, "{name}{{node=\"{}\"}} {value}", self.node);
    }
}

/// Renders the metrics of `state`'s node.
pub async fn render(state: &AppState) -> String {
    let mut t = Text {
        out: String::new(),
        node: label(&state.config.node_name),
    };
    let census = state.hub.census();
    t.series(
        "onmic_rooms",
        "gauge",
        "Rooms held by this node (not dismissed).",
        census.active,
    );
    t.series(
        "onmic_members",
        "gauge",
        "Members of this node's rooms.",
        census.members,
    );
    // On a blocking thread: the store may be PostgreSQL, slow or gone.
    let (pending, delivered) = state
        .hub
        .read(|s| s.outbox_size())
        .await
        .unwrap_or_default();
    t.series(
        "onmic_webhook_pending",
        "gauge",
        "Webhooks not delivered yet.",
        pending,
    );
    t.series(
        "onmic_webhook_outbox",
        "gauge",
        "Rows in the webhook outbox.",
        pending + delivered,
    );
    t.series(
        "onmic_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        state.started.elapsed().as_secs(),
    );
    if let Some(cpu) = super::process_cpu_seconds() {
        t.series(
            "onmic_process_cpu_seconds_total",
            "counter",
            "User and system CPU time of the process.",
            cpu,
        );
    }
    let stats = match &state.media {
        Some(m) => m.stats().await.ok(),
        None => None,
    };
    t.series(
        "onmic_media_up",
        "gauge",
        "1 if the SFU runs.",
        u8::from(stats.is_some()),
    );
    if let Some(s) = stats {
        let rows: [(&str, &str, &str, u64); 8] = [
            (
                "onmic_sfu_peers",
                "gauge",
                "WebRTC peer connections.",
                s.peers as u64,
            ),
            (
                "onmic_sfu_peers_connected",
                "gauge",
                "Peer connections with ICE and DTLS done.",
                s.connected as u64,
            ),
            (
                "onmic_sfu_packets_in_total",
                "counter",
                "Authorised packets received from publishers.",
                s.forwarded_in,
            ),
            (
                "onmic_sfu_packets_out_total",
                "counter",
                "Packet copies sent to subscribers.",
                s.forwarded_out,
            ),
            (
                "onmic_sfu_dropped_total",
                "counter",
                "Packets the router dropped (no unmuted seat, unknown stream).",
                s.dropped,
            ),
            (
                "onmic_sfu_shed_total",
                "counter",
                "Packets shed after waiting over 500 ms (overload).",
                s.shed,
            ),
            (
                "onmic_sfu_bombings_total",
                "counter",
                "Bombing reports raised.",
                s.bombings,
            ),
            (
                "onmic_sfu_datagrams_in_total",
                "counter",
                "Datagrams received on the media sockets.",
                s.datagrams_in,
            ),
        ];
        for (name, kind, help, v) in rows {
            t.series(name, kind, help, v);
        }
    }
    if let Some(c) = &state.cluster {
        let n = &c.counters;
        t.series(
            "onmic_cluster_live_nodes",
            "gauge",
            "Live nodes this node saw at its last heartbeat.",
            c.live_nodes().len(),
        );
        let rows = [
            (
                "onmic_cluster_bridged_ws_total",
                "WebSocket connections bridged to a room's node.",
                &n.bridged_ws,
            ),
            (
                "onmic_cluster_bridged_http_total",
                "HTTP requests (REST, /rtc/offer) bridged to a room's node.",
                &n.bridged_http,
            ),
            (
                "onmic_cluster_placements_total",
                "Rooms this node placed.",
                &n.placements,
            ),
            (
                "onmic_cluster_redis_errors_total",
                "Redis commands that failed.",
                &n.redis_errors,
            ),
            (
                "onmic_cluster_heartbeats_total",
                "Heartbeats written to Redis.",
                &n.heartbeats,
            ),
            (
                "onmic_cluster_rooms_taken_over_total",
                "Rooms of dead nodes this node took over (failover).",
                &n.taken_over,
            ),
            (
                "onmic_cluster_rooms_handed_over_total",
                "Rooms this node handed to another node while draining.",
                &n.handed_over,
            ),
        ];
        for (name, help, v) in rows {
            t.series(name, "counter", help, v.load(Ordering::Relaxed));
        }
        let r = &state.relays;
        t.series(
            "onmic_relay_links",
            "gauge",
            "Relay links this node holds to rooms' origin nodes (as a relay).",
            r.links(),
        );
        t.series(
            "onmic_relay_subscribers",
            "gauge",
            "Relay links subscribed to this node's rooms (as origin).",
            r.subscribers(),
        );
        t.series(
            "onmic_relay_dropped_total",
            "counter",
            "Forwarded packets not sent to a relay (tap queue full, link lagging).",
            r.dropped(),
        );
        let rc = &r.counters;
        let rows = [
            (
                "onmic_relay_placed_total",
                "Listeners this node (as origin) placed on relays.",
                &rc.placed,
            ),
            (
                "onmic_relay_frames_out_total",
                "Relay link frames sent to relays.",
                &rc.frames_out,
            ),
            (
                "onmic_relay_frames_in_total",
                "Relay link frames received from origins.",
                &rc.frames_in,
            ),
            (
                "onmic_relay_link_errors_total",
                "Relay links refused or lost (bad auth, malformed frame, origin gone).",
                &rc.link_errors,
            ),
        ];
        for (name, help, v) in rows {
            t.series(name, "counter", help, v.load(Ordering::Relaxed));
        }
    }
    t.out
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state).await).into_response()
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label("onmic-1"), "onmic-1");
    }
}
