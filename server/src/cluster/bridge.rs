//! Serving a request for a room that lives on another node, by bridging (chosen over redirects,
//! see `docs/decisions.md`): HTTP requests (REST, `/rtc/offer`) are re-sent to the room's node
//! and its answer is streamed back unchanged; a WebSocket is joined to a WebSocket on the room's
//! node, frame for frame, from the client's `join` on. The bridging node adds
//! [`BRIDGE_HEADER`](super::BRIDGE_HEADER) (so the room's node serves the request itself) and
//! [`CLIENT_IP_HEADER`](super::CLIENT_IP_HEADER) (so per-address limits and the audit log see the
//! client, not the bridge).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::Request;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use onmic_room::RoomId;
use tokio_tungstenite::tungstenite;

use super::{BRIDGE_HEADER, CLIENT_IP_HEADER, Cluster, ClusterError, NODE_HEADER, NodeRecord};
use crate::AppState;
use crate::rest::ApiError;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and those the HTTP client sets itself.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    ) || name.as_str() == BRIDGE_HEADER
        || name.as_str() == CLIENT_IP_HEADER
}

/// The answer for a cluster error.
pub fn error_response(e: &ClusterError) -> Response {
    let status = match e {
        ClusterError::NoNodes
        | ClusterError::Redis { .. }
        | ClusterError::NodeDown { .. }
        | ClusterError::NameTaken(_) => StatusCode::SERVICE_UNAVAILABLE,
        ClusterError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.code(), e).into_response()
}

/// Whether a request came over a bridge from a node of this cluster.
pub fn bridged(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    match (&state.cluster, headers.get(BRIDGE_HEADER)) {
        (Some(c), Some(v)) => v.to_str().is_ok_and(|v| c.is_bridge(v)),
        _ => false,
    }
}

/// The client's address: the bridging node's word for it on a bridged request, else the peer's.
pub fn client_ip(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Option<std::net::IpAddr> {
    if bridged(state, headers)
        && let Some(ip) = headers
            .get(CLIENT_IP_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    {
        return Some(ip);
    }
    peer
}

/// For the audit log: the peer's address, or on a bridged request `<client ip> (via <bridge>)`.
pub fn origin(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> String {
    let peer = crate::rest::origin(extensions);
    if !bridged(state, headers) {
        return peer;
    }
    match headers.get(CLIENT_IP_HEADER).and_then(|v| v.to_str().ok()) {
        Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => format!("{ip} (via {peer})"),
        _ => peer,
    }
}

/// Whether `response` was served by another node (bridged there, which audits it).
pub fn served_elsewhere(state: &AppState, response: &Response) -> bool {
    state.cluster.is_some()
        && response
            .headers()
            .get(NODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|n| n != state.config.node_name)
}

fn peer_ip(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Re-sends `req` (its body at most `limit` bytes) to `node` and streams the answer back.
pub async fn forward(
    cluster: &Cluster,
    node: &NodeRecord,
    room: &str,
    req: Request,
    client: Option<std::net::IpAddr>,
    limit: usize,
) -> Response {
    cluster
        .counters
        .bridged_http
        .fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is over {limit} bytes"),
            )
            .into_response();
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let url = format!("http://{}{path}", node.http);
    let mut out = cluster
        .http_client
        .request(parts.method.clone(), url)
        .body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    out = out.header(BRIDGE_HEADER, cluster.bridge_header());
    if let Some(ip) = client {
        out = out.header(CLIENT_IP_HEADER, ip.to_string());
    }
    let answer = match out.send().await {
        Ok(a) if a.status() == StatusCode::NOT_FOUND => {
            // A stale cached pin (see `Cluster::forget`); the next request reads Redis again.
            cluster.forget(room);
            a
        }
        Ok(a) => a,
        Err(e) => {
            return error_response(&ClusterError::Unreachable {
                room: room.to_owned(),
                node: node.id.clone(),
                http: node.http.clone(),
                detail: e.to_string(),
            });
        }
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|e| {
            ApiError::new(StatusCode::BAD_GATEWAY, "node_unavailable", e).into_response()
        })
}

/// The room a REST path is about: `/v1/rooms/{room}/...`.
fn rest_room(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/rooms/")?;
    let room = rest.split('/').next()?;
    (!room.is_empty()).then_some(room)
}

/// REST routing in a cluster (after authentication): `POST /v1/rooms` places the room and
/// creates it on its node; `/v1/rooms/{room}/...` of a room held elsewhere is bridged there.
/// Everything else, bridged requests and requests when no cluster is configured are served here.
pub async fn route_rest(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(cluster) = state.cluster.clone() else {
        return next.run(req).await;
    };
    if bridged(&state, req.headers()) {
        return tag(next.run(req).await, &cluster.node);
    }
    let client = peer_ip(&req);
    let path = req.uri().path().to_owned();
    if path == "/v1/rooms" && req.method() == axum::http::Method::POST {
        return create(&cluster, req, next, client).await;
    }
    if path == "/v1/rooms" && req.method() == axum::http::Method::GET {
        return list(&cluster, req, next).await;
    }
    let Some(room) = rest_room(&path) else {
        return tag(next.run(req).await, &cluster.node);
    };
    if state.hub.member_count(&RoomId(room.to_owned())).is_ok() {
        return tag(next.run(req).await, &cluster.node);
    }
    match cluster.node_of(room).await {
        Ok(Some(node)) => {
            forward(
                &cluster,
                &node,
                room,
                req,
                client,
                crate::rest::MAX_BODY_BYTES,
            )
            .await
        }
        Ok(None) => tag(next.run(req).await, &cluster.node),
        Err(e) => error_response(&e),
    }
}

async fn create(
    cluster: &Cluster,
    req: Request,
    next: Next,
    client: Option<std::net::IpAddr>,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::rest::MAX_BODY_BYTES).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the request body is over {} bytes",
                crate::rest::MAX_BODY_BYTES
            ),
        )
        .into_response();
    };
    // Only the id matters here; the room's node checks the whole body.
    let room = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned));
    let rebuilt = Request::from_parts(parts, Body::from(bytes));
    let Some(room) = room.filter(|r| onmic_room::RoomId(r.clone()).check().is_ok()) else {
        // Not a valid request: let the handler say why.
        return tag(next.run(rebuilt).await, &cluster.node);
    };
    let (node, new_pin) = match cluster.place(&room).await {
        Ok(placed) => placed,
        Err(e) => return error_response(&e),
    };
    let response = if node.id == cluster.node {
        tag(next.run(rebuilt).await, &cluster.node)
    } else {
        let limit = crate::rest::MAX_BODY_BYTES;
        forward(cluster, &node, &room, rebuilt, client, limit).await
    };
    // A room its node did not create (bad request, node gone) must not stay pinned there; a
    // pin made earlier (the room exists: 409) stays.
    if new_pin
        && !response.status().is_success()
        && let Err(e) = cluster.unpin(&room, &node.id).await
    {
        tracing::warn!(%e, room, "cannot undo the pin of a room that was not created");
    }
    response
}

/// `GET /v1/rooms` in a cluster: this node's rooms and every other live node's (asked over
/// the bridge), each with its `node`; nodes that did not answer are listed in
/// `unreachable_nodes`.
async fn list(cluster: &Cluster, req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .cloned();
    let query = req.uri().query().map(str::to_owned);
    let local = next.run(req).await;
    if !local.status().is_success() {
        return tag(local, &cluster.node);
    }
    let Ok(bytes) = axum::body::to_bytes(local.into_body(), usize::MAX).await else {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "room list")
            .into_response();
    };
    let mut rooms: Vec<serde_json::Value> = Vec::new();
    let mut add = |body: &[u8], node: &str| -> bool {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return false;
        };
        let Some(list) = v.get("rooms").and_then(|r| r.as_array()) else {
            return false;
        };
        for room in list {
            let mut room = room.clone();
            room["node"] = serde_json::Value::String(node.to_owned());
            rooms.push(room);
        }
        true
    };
    add(&bytes, &cluster.node);
    let others: Vec<NodeRecord> = cluster
        .live_nodes()
        .into_iter()
        .filter(|n| n.id != cluster.node)
        .collect();
    let asks = others.iter().map(|n| {
        let url = match &query {
            Some(q) => format!("http://{}/v1/rooms?{q}", n.http),
            None => format!("http://{}/v1/rooms", n.http),
        };
        let mut call = cluster
            .http_client
            .get(url)
            .header(BRIDGE_HEADER, cluster.bridge_header())
            .timeout(std::time::Duration::from_secs(5));
        if let Some(a) = &auth {
            call = call.header(axum::http::header::AUTHORIZATION, a);
        }
        async move {
            match call.send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.ok(),
                _ => None,
            }
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut unreachable = Vec::new();
    for (node, answer) in others.iter().zip(answers) {
        cluster
            .counters
            .bridged_http
            .fetch_add(1, Ordering::Relaxed);
        if !answer.is_some_and(|b| add(&b, &node.id)) {
            unreachable.push(node.id.clone());
        }
    }
    let body = serde_json::json!({ "rooms": rooms, "unreachable_nodes": unreachable });
    tag(axum::Json(body).into_response(), &cluster.node)
}

/// Adds [`NODE_HEADER`] to an answer this node served.
fn tag(mut response: Response, node: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(node) {
        response.headers_mut().insert(NODE_HEADER, v);
    }
    response
}

type ClientSink = futures_util::stream::SplitSink<WebSocket, Message>;
type ClientStream = futures_util::stream::SplitStream<WebSocket>;

fn to_remote(m: Message) -> tungstenite::Message {
    match m {
        Message::Text(t) => tungstenite::Message::text(t.as_str()),
        Message::Binary(b) => tungstenite::Message::Binary(b),
        Message::Ping(b) => tungstenite::Message::Ping(b),
        Message::Pong(b) => tungstenite::Message::Pong(b),
        Message::Close(c) => {
            tungstenite::Message::Close(c.map(|c| tungstenite::protocol::CloseFrame {
                code: c.code.into(),
                reason: c.reason.as_str().into(),
            }))
        }
    }
}

fn to_client(m: tungstenite::Message) -> Option<Message> {
    Some(match m {
        tungstenite::Message::Text(t) => Message::Text(Utf8Bytes::from(t.as_str())),
        tungstenite::Message::Binary(b) => Message::Binary(b),
        tungstenite::Message::Ping(b) => Message::Ping(b),
        tungstenite::Message::Pong(b) => Message::Pong(b),
        tungstenite::Message::Close(c) => Message::Close(c.map(|c| CloseFrame {
            code: c.code.into(),
            reason: Utf8Bytes::from(c.reason.as_str()),
        })),
        tungstenite::Message::Frame(_) => return None,
    })
}

/// Opens a WebSocket to `node` and sends the client's `join` there. On success the caller
/// hands both sockets to [`pipe`].
pub async fn open_ws(
    cluster: &Cluster,
    node: &NodeRecord,
    room: &str,
    join: &str,
    client: Option<std::net::IpAddr>,
) -> Result<RemoteWs, ClusterError> {
    use tungstenite::client::IntoClientRequest;
    let unreachable = |detail: String| ClusterError::Unreachable {
        room: room.to_owned(),
        node: node.id.clone(),
        http: node.http.clone(),
        detail,
    };
    let mut request = format!("ws://{}/ws", node.http)
        .into_client_request()
        .map_err(|e| unreachable(e.to_string()))?;
    let headers = request.headers_mut();
    if let Ok(v) = HeaderValue::from_str(cluster.bridge_header()) {
        headers.insert(BRIDGE_HEADER, v);
    }
    if let Some(ip) = client
        && let Ok(v) = HeaderValue::from_str(&ip.to_string())
    {
        headers.insert(CLIENT_IP_HEADER, v);
    }
    let config = tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(Some(onmic_room::protocol::MAX_MESSAGE_BYTES))
        .max_frame_size(Some(onmic_room::protocol::MAX_MESSAGE_BYTES));
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (mut ws, _) = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
        .await
        .map_err(|_| unreachable("no WebSocket within 5 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    ws.send(tungstenite::Message::text(join))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    cluster.counters.bridged_ws.fetch_add(1, Ordering::Relaxed);
    Ok(ws)
}

/// A WebSocket to a room's node.
pub type RemoteWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Copies frames both ways until either side closes (its close frame is passed on).
pub async fn pipe(sink: &mut ClientSink, stream: &mut ClientStream, remote: RemoteWs) {
    let (mut remote_sink, mut remote_stream) = remote.split();
    loop {
        tokio::select! {
            m = stream.next() => match m {
                Some(Ok(m)) => {
                    let closing = matches!(m, Message::Close(_));
                    if remote_sink.send(to_remote(m)).await.is_err() || closing {
                        break;
                    }
                }
                _ => break,
            },
            m = remote_stream.next() => match m {
                Some(Ok(m)) => {
                    let Some(m) = to_client(m) else { continue };
                    let closing = matches!(m, Message::Close(_));
                    if sink.send(m).await.is_err() || closing {
                        break;
                    }
                }
                _ => break,
            },
        }
    }
    let _ = remote_sink.close().await;
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_paths_name_their_room() {
        assert_eq!(rest_room("/v1/rooms/r1"), Some("r1"));
        assert_eq!(rest_room("/v1/rooms/r1/members"), Some("r1"));
        assert_eq!(rest_room("/v1/rooms/"), None);
        assert_eq!(rest_room("/v1/rooms"), None);
        assert_eq!(rest_room("/v1/tokens"), None);
    }

    #[test]
    fn hop_by_hop_headers_are_not_forwarded() {
        for h in ["connection", "host", "content-length", BRIDGE_HEADER] {
            assert!(hop_by_hop(&HeaderName::from_static(h)), "{h}");
        }
        for h in ["authorization", "content-type", "range"] {
            assert!(!hop_by_hop(&HeaderName::from_static(h)), "{h}");
        }
    }
}
