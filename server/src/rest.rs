//! The REST admin API under `/v1`, authenticated with `Authorization: Bearer <key>:<secret>`
//! (the customer credentials from the configuration). Every admin action is written to the audit
//! log. The OpenAPI document (`server/openapi.json`, served at `/openapi.json`) lists exactly
//! [`REST_ROUTES`]; a test keeps the two in step.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
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
use crate::recording::RecordingError;

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
    ("post", "/v1/tokens"),
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
    fn new(status: StatusCode, code: &'static str, message: impl ToString) -> ApiError {
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
            HubError::RoomExists => StatusCode::CONFLICT,
            HubError::Invalid(_) => StatusCode::BAD_REQUEST,
            HubError::Room(RoomError::PermissionDenied) => StatusCode::FORBIDDEN,
            HubError::Room(_) => StatusCode::CONFLICT,
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

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text())
    }
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
        .route("/v1/tokens", post(issue_token))
        .layer(axum::middleware::from_fn_with_state(state, auth))
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
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
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare digests so the comparison time does not depend on where the strings differ.
    if given.is_empty() || digest(given.as_bytes()) != digest(expected.as_bytes()) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <customer_key>:<customer_secret>",
        )
        .into_response();
    }
    next.run(req).await
}

fn actor(state: &AppState) -> String {
    format!("rest:{}", state.config.customer_key)
}

async fn create_room(
    State(state): State<Arc<AppState>>,
    body: Result<Json<CreateRoom>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(req) = body?;
    let room = state.hub.create_room(req, &actor(&state))?;
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
    Query(q): Query<MembersQuery>,
) -> ApiResult {
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
    let ledger = state
        .hub
        .store()
        .gifts(id.as_str())
        .map_err(HubError::from)?;
    let board: Vec<Value> = s
        .leaderboard()
        .into_iter()
        .map(|(uid, value)| json!({ "uid": uid, "value": value }))
        .collect();
    Ok(Json(json!({ "ledger": ledger, "leaderboard": board })))
}

fn run(state: &AppState, room: String, name: &str, detail: &Value, action: Action) -> ApiResult {
    let id = RoomId(room);
    let events = state.hub.execute(&id, Command::system(action))?;
    state
        .hub
        .audit(state.hub.now(), &actor(state), &id, name, detail);
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
    body: Result<Json<KickBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body?;
    let action = Action::Kick {
        uid: b.uid.clone(),
        ban: Duration::from_secs(b.ban_secs),
    };
    run(&state, room, "kick", &json!(b), action)
}

async fn unban(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: Result<Json<UidBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body?;
    let action = Action::Unban { uid: b.uid.clone() };
    run(&state, room, "unban", &json!(b), action)
}

async fn chat_mute(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: Result<Json<MuteBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body?;
    let action = Action::MuteChat {
        uid: b.uid.clone(),
        duration: Duration::from_secs(b.duration_secs),
    };
    run(&state, room, "chat_mute", &json!(b), action)
}

async fn chat_unmute(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: Result<Json<UidBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body?;
    let action = Action::UnmuteChat { uid: b.uid.clone() };
    run(&state, room, "chat_unmute", &json!(b), action)
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
    body: Result<Json<UidBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body?;
    let seat = seat_of(&state, &room, &b.uid)?;
    run(
        &state,
        room,
        "seat_mute",
        &json!(b),
        Action::MuteSeat { seat },
    )
}

async fn seat_unmute(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: Result<Json<UidBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body?;
    let seat = seat_of(&state, &room, &b.uid)?;
    run(
        &state,
        room,
        "seat_unmute",
        &json!(b),
        Action::UnmuteSeat { seat },
    )
}

async fn floor(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: Result<Json<FloorBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body?;
    let action = if b.grant {
        Action::GrantFloor { uid: b.uid.clone() }
    } else {
        Action::RevokeFloor { uid: b.uid.clone() }
    };
    run(&state, room, "floor", &json!(b), action)
}

async fn dismiss(State(state): State<Arc<AppState>>, Path(room): Path<String>) -> ApiResult {
    run(&state, room, "dismiss", &json!({}), Action::Dismiss)
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
    let detail = json!({ "recording": record.id });
    state.hub.audit(
        state.hub.now(),
        &actor(&state),
        &id,
        "recording_start",
        &detail,
    );
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
    let detail = json!({ "recording": record.id });
    state.hub.audit(
        state.hub.now(),
        &actor(&state),
        &id,
        "recording_stop",
        &detail,
    );
    Ok(Json(json!(record)))
}

async fn recordings(State(state): State<Arc<AppState>>, Path(room): Path<String>) -> ApiResult {
    let id = RoomId(room);
    state.hub.snapshot(&id)?;
    let list = state
        .hub
        .store()
        .recordings(id.as_str())
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
    let record = state
        .hub
        .store()
        .recordings(id.as_str())
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
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> ApiResult {
    let Json(req) = body?;
    if req.uid.0.is_empty() || req.ttl_secs == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "uid and a positive ttl_secs are required",
        ));
    }
    let (token, expires) = make_token(&state.config, &req, state.hub.now());
    Ok(Json(json!({ "token": token, "expires": expires })))
}
