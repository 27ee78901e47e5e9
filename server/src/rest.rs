//! The REST admin API under `/v1`, authenticated with `Authorization: Bearer <key>:<secret>`
//! (the customer credentials from the configuration). Every admin action is written to the audit
//! log. The OpenAPI document (`server/openapi.json`, served at `/openapi.json`) lists exactly
//! [`REST_ROUTES`]; a test keeps the two in step.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use onmic_room::token::{self, Claims, Grant, Privilege};
use onmic_room::{Action, Command, Role, RoomError, RoomId, SeatIndex, Uid};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::hub::{CreateRoom, HubError};
use crate::push::{PushError, PushRequest};
use crate::recording::RecordingError;
use crate::store::StoreError;

/// Every REST route as (method, OpenAPI path). `/openapi.json` must document exactly these.
pub const REST_ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/rooms"),
    ("get", "/v1/rooms"),
    ("get", "/v1/rooms/{room}"),
    ("get", "/v1/rooms/{room}/members"),
    ("get", "/v1/rooms/{room}/gifts"),
    ("post", "/v1/rooms/{room}/kick"),
    ("post", "/v1/rooms/{room}/unban"),
    ("post", "/v1/rooms/{room}/chat_mute"),
    ("post", "/v1/rooms/{room}/chat_unmute"),
    ("post", "/v1/rooms/{room}/seat_mute"),
    ("post", "/v1/rooms/{room}/seat_unmute"),
    ("post", "/v1/rooms/{room}/floor"),
    ("post", "/v1/rooms/{room}/dismiss"),
    ("post", "/v1/rooms/{room}/recording/start"),
    ("post", "/v1/rooms/{room}/recording/stop"),
    ("get", "/v1/rooms/{room}/recordings"),
    ("get", "/v1/rooms/{room}/recordings/{id}/file"),
    ("post", "/v1/rooms/{room}/push/start"),
    ("post", "/v1/rooms/{room}/push/stop"),
    ("get", "/v1/rooms/{room}/push"),
    ("post", "/v1/tokens"),
    ("get", "/v1/audit"),
    ("post", "/v1/node/drain"),
    ("get", "/v1/songs"),
    ("post", "/v1/songs/{code}/license"),
    ("post", "/v1/songs/{code}/key"),
    ("get", "/v1/songs/{code}/package"),
];

/// The checked-in OpenAPI document.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// An API error: status plus `{code, message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with its HTTP status, stable code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl ToString) -> ApiError {
        ApiError {
            status,
            code,
            message: message.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        let status = match &e {
            HubError::NoSuchRoom | HubError::Room(RoomError::NotMember(_)) => StatusCode::NOT_FOUND,
            HubError::RoomExists | HubError::ConfusableRoomId(_) => StatusCode::CONFLICT,
            HubError::Invalid(_)
            | HubError::Id(_)
            | HubError::Room(
                RoomError::OutOfRange { .. }
                | RoomError::BadText(_)
                | RoomError::InvalidId(_)
                | RoomError::EmptyMessage
                | RoomError::MessageTooLong { .. },
            ) => StatusCode::BAD_REQUEST,
            HubError::Room(RoomError::PermissionDenied) => StatusCode::FORBIDDEN,
            HubError::Room(_) => StatusCode::CONFLICT,
            HubError::Store(StoreError::Behind { .. } | StoreError::NotSaved) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            HubError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), &e)
    }
}

impl From<RecordingError> for ApiError {
    fn from(e: RecordingError) -> ApiError {
        let status = match &e {
            RecordingError::NoSuchRoom => StatusCode::NOT_FOUND,
            RecordingError::Dismissed
            | RecordingError::AlreadyRecording
            | RecordingError::NotRecording => StatusCode::CONFLICT,
            RecordingError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), &e)
    }
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> ApiError {
        let status = match &e {
            PushError::NoSuchRoom => StatusCode::NOT_FOUND,
            PushError::InvalidUrl(_) | PushError::UnsupportedCodec(_) => StatusCode::BAD_REQUEST,
            PushError::Dismissed | PushError::AlreadyPushing | PushError::NotPushing => {
                StatusCode::CONFLICT
            }
            PushError::Unreachable(_) | PushError::Refused(_) => StatusCode::BAD_GATEWAY,
            PushError::Limit(_) | PushError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), &e)
    }
}

/// Every code a REST error may carry (`docs/protocol.md` lists them; a test compares).
pub const REST_ERROR_CODES: &[&str] = &[
    "unauthorized",
    "invalid_request",
    "not_found",
    "method_not_allowed",
    "too_large",
    "too_many_connections",
    "no_such_room",
    "room_exists",
    "confusable_room_id",
    "invalid_uid",
    "invalid_room_id",
    "out_of_range",
    "still_recording",
    "file_gone",
    "already_pushing",
    "not_pushing",
    "invalid_push_url",
    "unsupported_codec",
    "push_limit",
    "rtmp_unreachable",
    "rtmp_refused",
    "encoder_failed",
    "no_such_song",
    "license_invalid",
    "license_expired",
    "license_wrong_member",
    "license_wrong_room",
    "license_wrong_song",
    "cluster_unavailable",
    "node_unavailable",
    "internal",
];

/// Longest REST request body, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body: parsed refusing duplicate keys, with errors that name the field and
/// never show the parser's internals (`invalid_request`, HTTP 400).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the request body is over {MAX_BODY_BYTES} bytes"),
                )
            })?;
        parse_body(&bytes).map(JsonBody)
    }
}

/// Parses a REST body (see [`JsonBody`]).
pub fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m);
    let text = std::str::from_utf8(bytes).map_err(|_| bad("the body is not UTF-8".into()))?;
    let value = onmic_room::protocol::parse_unique(text)
        .map_err(|e| bad(format!("the body is not a JSON object: {e}")))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if let Some(field) = inner.strip_prefix("missing field ") {
            return bad(format!("missing field {field}"));
        }
        if inner.starts_with("unknown variant") {
            let v = inner.split(", expected").next().unwrap_or(&inner);
            return bad(format!("{path}: {v}"));
        }
        if path == "." {
            return bad("the body must be a JSON object (see /openapi.json)".into());
        }
        bad(format!(
            "field {path} has the wrong type or is out of range (see /openapi.json)"
        ))
    })
}

type ApiResult = Result<Json<Value>, ApiError>;

/// The REST routes (auth applied by the caller).
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/rooms", post(create_room).get(list_rooms))
        .route("/v1/rooms/{room}", get(get_room))
        .route("/v1/rooms/{room}/members", get(members))
        .route("/v1/rooms/{room}/gifts", get(gifts))
        .route("/v1/rooms/{room}/kick", post(kick))
        .route("/v1/rooms/{room}/unban", post(unban))
        .route("/v1/rooms/{room}/chat_mute", post(chat_mute))
        .route("/v1/rooms/{room}/chat_unmute", post(chat_unmute))
        .route("/v1/rooms/{room}/seat_mute", post(seat_mute))
        .route("/v1/rooms/{room}/seat_unmute", post(seat_unmute))
        .route("/v1/rooms/{room}/floor", post(floor))
        .route("/v1/rooms/{room}/dismiss", post(dismiss))
        .route("/v1/rooms/{room}/recording/start", post(start_recording))
        .route("/v1/rooms/{room}/recording/stop", post(stop_recording))
        .route("/v1/rooms/{room}/recordings", get(recordings))
        .route("/v1/rooms/{room}/recordings/{id}/file", get(recording_file))
        .route("/v1/rooms/{room}/push/start", post(start_push))
        .route("/v1/rooms/{room}/push/stop", post(stop_push))
        .route("/v1/rooms/{room}/push", get(push_status))
        .route("/v1/tokens", post(issue_token))
        .route("/v1/audit", get(audit_log))
        .route("/v1/node/drain", post(drain_node))
        // In a cluster, requests for rooms held by another node go there (after auth below).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::cluster::bridge::route_rest,
        ))
        .layer(axum::middleware::from_fn_with_state(state, auth))
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// The credentials of `Authorization: Bearer <key>:<secret>` (the scheme in any case).
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or("")
}

/// The peer address of a request (`local` when served without one, e.g. in-process).
pub fn origin(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "local".to_owned(), |c| c.0.to_string())
}

async fn auth(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let expected = format!(
        "{}:{}",
        state.config.customer_key, state.config.customer_secret
    );
    let given = bearer(&headers);
    // Compare digests so the comparison time does not depend on where the strings differ.
    if given.is_empty() || digest(given.as_bytes()) != digest(expected.as_bytes()) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <customer_key>:<customer_secret>",
        )
        .into_response();
    }
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    // Every POST is an admin action (or a token): record it with its outcome.
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    };
    let from = crate::cluster::bridge::origin(&state, &parts.headers, &parts.extensions);
    let path = parts.uri.path().to_owned();
    let response = next
        .run(Request::from_parts(
            parts,
            axum::body::Body::from(bytes.clone()),
        ))
        .await;
    // In a cluster, the node that served a bridged request records it in its own audit log.
    if crate::cluster::bridge::served_elsewhere(&state, &response) {
        return response;
    }
    let mut request: Value = onmic_room::protocol::parse_unique(&String::from_utf8_lossy(&bytes))
        .unwrap_or_else(|_| {
            if path.ends_with("/push/start") {
                // It may hold a stream key: not kept.
                return Value::String("(not a JSON object)".into());
            }
            Value::String(String::from_utf8_lossy(&bytes).chars().take(512).collect())
        });
    // A CDN stream key is a secret: the log keeps that one was given, not what it was.
    if let Some(key) = request.get_mut("stream_key") {
        *key = Value::String("***".into());
    }
    let (room, action) = match path.strip_prefix("/v1/rooms/") {
        Some(rest) => {
            let (room, action) = rest.split_once('/').unwrap_or((rest, ""));
            (room.to_owned(), action.to_owned())
        }
        None => {
            let room = request
                .get("id")
                .or_else(|| request.get("room"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let action = match path.as_str() {
                "/v1/rooms" => "create_room",
                "/v1/tokens" => "issue_token",
                other => other,
            };
            (room, action.to_owned())
        }
    };
    let detail = json!({ "request": request, "status": response.status().as_u16() });
    state.hub.audit(
        state.hub.now(),
        &actor(&state),
        &from,
        &room,
        &action,
        &detail,
    );
    // The answer goes out once the change (if any) and this audit entry are written; a success
    // that could not be written in time becomes `not_saved`.
    if let Err(e) = state.hub.durable().await
        && response.status().is_success()
    {
        return ApiError::from(e).into_response();
    }
    response
}

fn actor(state: &AppState) -> String {
    format!("rest:{}", state.config.customer_key)
}

#[derive(Deserialize)]
struct AuditQuery {
    room: Option<String>,
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

/// Most audit entries one `GET /v1/audit` returns.
pub const MAX_AUDIT_PAGE: usize = 1000;

async fn audit_log(
    State(state): State<Arc<AppState>>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "query: room=<id>, since=<ms since the epoch>, limit=1-1000",
        )
    })?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE);
    let room = q.room.clone();
    let since = onmic_room::Timestamp(q.since);
    let entries = state
        .hub
        .read(move |s| s.audit_log(room.as_deref(), since, limit))
        .await
        .map_err(HubError::from)?;
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|r| {
            let detail: Value = serde_json::from_str(&r.detail).unwrap_or(Value::String(r.detail));
            json!({ "at": r.at, "actor": r.actor, "origin": r.origin, "room": r.room,
                    "action": r.action, "detail": detail })
        })
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

/// `POST /v1/node/drain`: this node (the one asked) hands its rooms to the other nodes and
/// takes no new ones (`docs/cluster.md`, Draining); it keeps running until stopped.
async fn drain_node(State(state): State<Arc<AppState>>) -> ApiResult {
    let Some(cluster) = state.cluster.clone() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "this server is not a cluster node (no cluster_redis): there is nowhere to move its rooms",
        ));
    };
    let report = cluster.drain(&state.hub).await;
    let pairs = |v: &[(String, String)], key: &str| -> Vec<Value> {
        v.iter()
            .map(|(room, x)| json!({ "room": room, key: x }))
            .collect()
    };
    Ok(Json(json!({
        "node": cluster.node,
        "moved": pairs(&report.moved, "node"),
        "failed": pairs(&report.failed, "error"),
        "connections": report.connections,
        "took_ms": report.took_ms,
    })))
}

async fn create_room(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<CreateRoom>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let room = state.hub.create_room_unaudited(req)?;
    Ok((StatusCode::CREATED, Json(json!(room))))
}

async fn list_rooms(State(state): State<Arc<AppState>>) -> ApiResult {
    let rooms: Vec<Value> = state
        .hub
        .list()
        .into_iter()
        .map(|(s, created)| {
            json!({
                "id": s.id, "owner": s.owner, "title": s.title, "members": s.members.len(),
                "version": s.version, "dismissed": s.dismissed, "created_at": created,
            })
        })
        .collect();
    Ok(Json(json!({ "rooms": rooms })))
}

async fn get_room(State(state): State<Arc<AppState>>, Path(room): Path<String>) -> ApiResult {
    Ok(Json(json!(state.hub.snapshot(&RoomId(room))?)))
}

#[derive(Deserialize)]
struct MembersQuery {
    #[serde(default)]
    hosts_only: bool,
}

#[derive(Serialize)]
struct MemberView {
    uid: Uid,
    role: Role,
    seat: Option<SeatIndex>,
}

async fn members(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    q: Result<Query<MembersQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "query: hosts_only=true or false",
        )
    })?;
    let s = state.hub.snapshot(&RoomId(room))?;
    let members: Vec<MemberView> = s
        .members
        .keys()
        .map(|u| MemberView {
            uid: u.clone(),
            role: s.role(u).unwrap_or(Role::Audience),
            seat: s.seat_of(u).map(|x| x.index),
        })
        .filter(|m| !q.hosts_only || m.seat.is_some())
        .collect();
    Ok(Json(json!({ "members": members })))
}

async fn gifts(State(state): State<Arc<AppState>>, Path(room): Path<String>) -> ApiResult {
    let id = RoomId(room);
    let s = state.hub.snapshot(&id)?;
    let room = id.as_str().to_owned();
    let ledger = state
        .hub
        .read(move |s| s.gifts(&room))
        .await
        .map_err(HubError::from)?;
    let board: Vec<Value> = s
        .leaderboard()
        .into_iter()
        .map(|(uid, value)| json!({ "uid": uid, "value": value }))
        .collect();
    Ok(Json(json!({ "ledger": ledger, "leaderboard": board })))
}

/// Runs a system command in a room (the audit entry is written by the `auth` middleware).
fn run(state: &AppState, room: String, action: Action) -> ApiResult {
    let id = RoomId(room);
    let events = state.hub.execute(&id, Command::system(action))?;
    let version = match events.last() {
        Some(e) => e.version,
        None => state.hub.snapshot(&id)?.version,
    };
    Ok(Json(json!({ "version": version })))
}

#[derive(Deserialize, Serialize)]
struct UidBody {
    uid: Uid,
}

#[derive(Deserialize, Serialize)]
struct KickBody {
    uid: Uid,
    #[serde(default)]
    ban_secs: u64,
}

#[derive(Deserialize, Serialize)]
struct MuteBody {
    uid: Uid,
    duration_secs: u64,
}

#[derive(Deserialize, Serialize)]
struct FloorBody {
    uid: Uid,
    grant: bool,
}

async fn kick(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    JsonBody(b): JsonBody<KickBody>,
) -> ApiResult {
    let action = Action::Kick {
        uid: b.uid.clone(),
        ban: Duration::from_secs(b.ban_secs),
    };
    run(&state, room, action)
}

async fn unban(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    JsonBody(b): JsonBody<UidBody>,
) -> ApiResult {
    let action = Action::Unban { uid: b.uid.clone() };
    run(&state, room, action)
}

async fn chat_mute(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    JsonBody(b): JsonBody<MuteBody>,
) -> ApiResult {
    let action = Action::MuteChat {
        uid: b.uid.clone(),
        duration: Duration::from_secs(b.duration_secs),
    };
    run(&state, room, action)
}

async fn chat_unmute(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    JsonBody(b): JsonBody<UidBody>,
) -> ApiResult {
    let action = Action::UnmuteChat { uid: b.uid.clone() };
    run(&state, room, action)
}

fn seat_of(state: &AppState, room: &str, uid: &Uid) -> Result<SeatIndex, ApiError> {
    let s = state.hub.snapshot(&RoomId(room.to_owned()))?;
    s.seat_of(uid)
        .map(|x| x.index)
        .ok_or_else(|| HubError::Room(RoomError::NotSeated).into())
}

async fn seat_mute(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    JsonBody(b): JsonBody<UidBody>,
) -> ApiResult {
    let seat = seat_of(&state, &room, &b.uid)?;
    run(&state, room, Action::MuteSeat { seat })
}

async fn seat_unmute(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    JsonBody(b): JsonBody<UidBody>,
) -> ApiResult {
    let seat = seat_of(&state, &room, &b.uid)?;
    run(&state, room, Action::UnmuteSeat { seat })
}

async fn floor(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    JsonBody(b): JsonBody<FloorBody>,
) -> ApiResult {
    let action = if b.grant {
        Action::GrantFloor { uid: b.uid.clone() }
    } else {
        Action::RevokeFloor { uid: b.uid.clone() }
    };
    run(&state, room, action)
}

async fn dismiss(State(state): State<Arc<AppState>>, Path(room): Path<String>) -> ApiResult {
    run(&state, room, Action::Dismiss)
}

/// The body of `recording/start` and `recording/stop`: empty, or an empty JSON object.
fn empty_body(body: &[u8]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    serde_json::from_slice::<Empty>(body)
        .map(|_| ())
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("send no body or {{}}: {e}"),
            )
        })
}

fn media(state: &AppState) -> Result<&Arc<crate::sfu::Sfu>, ApiError> {
    state
        .media
        .as_ref()
        .ok_or_else(|| RecordingError::Stopped.into())
}

async fn start_recording(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    empty_body(&body)?;
    let id = RoomId(room);
    let record = media(&state)?.start_recording(id.clone()).await?;
    Ok((StatusCode::CREATED, Json(json!(record))))
}

async fn stop_recording(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    empty_body(&body)?;
    let id = RoomId(room);
    // An unknown room is 404, not "not recording".
    state.hub.snapshot(&id)?;
    let record = media(&state)?.stop_recording(id.clone()).await?;
    Ok(Json(json!(record)))
}

/// Starts pushing the room's mix to an RTMP server (`docs/push.md`).
async fn start_push(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    JsonBody(request): JsonBody<PushRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let status = state.pushes.start(RoomId(room), request).await?;
    Ok((StatusCode::CREATED, Json(json!(status))))
}

/// Stops the room's push; answers with its final status once the stream is closed.
async fn stop_push(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    empty_body(&body)?;
    let status = state.pushes.stop(&RoomId(room), "request").await?;
    Ok(Json(json!(status)))
}

/// The room's running push, or its last one.
async fn push_status(State(state): State<Arc<AppState>>, Path(room): Path<String>) -> ApiResult {
    match state.pushes.status(&RoomId(room)) {
        Ok(status) => Ok(Json(json!(status))),
        // Nothing to show is "not found" here, not a conflict.
        Err(e @ PushError::NotPushing) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            e.code(),
            "this room has not been pushed since the server started",
        )),
        Err(e) => Err(e.into()),
    }
}

async fn recordings(State(state): State<Arc<AppState>>, Path(room): Path<String>) -> ApiResult {
    let id = RoomId(room);
    state.hub.snapshot(&id)?;
    let room = id.as_str().to_owned();
    let list = state
        .hub
        .read(move |s| s.recordings(&room))
        .await
        .map_err(HubError::from)?;
    Ok(Json(json!({ "recordings": list })))
}

/// The Ogg Opus file of a finished recording (Range requests supported, for players that seek).
async fn recording_file(
    State(state): State<Arc<AppState>>,
    Path((room, rec)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    use tower::ServiceExt;
    let id = RoomId(room);
    state.hub.snapshot(&id)?;
    let room = id.as_str().to_owned();
    let record = state
        .hub
        .read(move |s| s.recordings(&room))
        .await
        .map_err(HubError::from)?
        .into_iter()
        .find(|r| r.id == rec)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("room {} has no recording {rec}", id.as_str()),
            )
        })?;
    if record.status == "recording" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "still_recording",
            "the recording is still running; stop it first",
        ));
    }
    let ogg: header::HeaderValue = header::HeaderValue::from_static("audio/ogg");
    let served = tower_http::services::ServeFile::new(&record.file)
        .oneshot(request)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    if served.status() == StatusCode::NOT_FOUND {
        return Err(ApiError::new(
            StatusCode::GONE,
            "file_gone",
            format!("the file of recording {rec} is no longer on the server"),
        ));
    }
    let mut response = served.map(axum::body::Body::new);
    response.headers_mut().insert(header::CONTENT_TYPE, ogg);
    if let Ok(v) = header::HeaderValue::from_str(&format!(
        "attachment; filename=\"{}-{}.opus\"",
        id.as_str().replace(['/', '"'], "_"),
        record.id.replace(['/', '"'], "_")
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `POST /v1/tokens` body.
#[derive(Debug, Deserialize, Serialize)]
pub struct TokenRequest {
    /// Room.
    pub room: RoomId,
    /// User.
    pub uid: Uid,
    /// Privileges (default: join and publish_audio).
    #[serde(default = "default_privileges")]
    pub privileges: Vec<Privilege>,
    /// Lifetime in seconds (default 3600).
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
}

fn default_privileges() -> Vec<Privilege> {
    vec![Privilege::Join, Privilege::PublishAudio]
}

fn default_ttl() -> u64 {
    3600
}

/// Longest token lifetime, in seconds (366 days).
pub const MAX_TTL_SECS: u64 = onmic_room::config::MAX_DURATION_MS / 1000;

/// Checks a token request against the identity rule and the bounds; `(code, message)` if not.
/// Both the REST API and `onmic-server token` use it.
pub fn check_token_request(req: &TokenRequest) -> Result<(), (&'static str, String)> {
    req.room.check().map_err(|e| (e.code(), e.to_string()))?;
    req.uid.check().map_err(|e| (e.code(), e.to_string()))?;
    if req.ttl_secs == 0 || req.ttl_secs > MAX_TTL_SECS {
        return Err(("out_of_range", format!("ttl_secs must be 1-{MAX_TTL_SECS}")));
    }
    if req.privileges.is_empty() {
        return Err((
            "invalid_request",
            "privileges must name at least one of join, publish_audio, admin".into(),
        ));
    }
    Ok(())
}

/// Signs a token for `req` at `now` with the configured app and secret.
pub fn make_token(
    config: &crate::Config,
    req: &TokenRequest,
    now: onmic_room::Timestamp,
) -> (String, onmic_room::Timestamp) {
    let expires = now.plus(Duration::from_secs(req.ttl_secs));
    let claims = Claims {
        app: config.app_id.as_str().into(),
        room: req.room.clone(),
        uid: req.uid.clone(),
        issued: now,
        grants: req
            .privileges
            .iter()
            .map(|p| Grant {
                privilege: *p,
                not_before: now,
                expires,
            })
            .collect(),
    };
    (
        token::issue(config.token_secret.as_bytes(), &claims),
        expires,
    )
}

async fn issue_token(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> ApiResult {
    check_token_request(&req)
        .map_err(|(code, m)| ApiError::new(StatusCode::BAD_REQUEST, code, m))?;
    let (token, expires) = make_token(&state.config, &req, state.hub.now());
    Ok(Json(json!({ "token": token, "expires": expires })))
}
