//! The song routes, authenticated with a member's room token (`Authorization: Bearer <token>`):
//! `GET /v1/songs`, `POST /v1/songs/{code}/license`, `POST /v1/songs/{code}/key`,
//! `GET /v1/songs/{code}/package` (see `docs/protocol.md`). Errors are `{code, message}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use onmic_room::token::{self, Claims, Privilege};
use onmic_room::{RoomId, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{LicenseClaims, open_license, sign_license};
use crate::AppState;
use crate::hub::HubError;
use crate::rest::{ApiError, MAX_BODY_BYTES, parse_body};

/// Default license lifetime, seconds.
pub const DEFAULT_LICENSE_SECS: u64 = 3600;
/// Longest license lifetime, seconds (a day).
pub const MAX_LICENSE_SECS: u64 = 86_400;
/// Most songs one search returns.
pub const MAX_SEARCH: usize = 100;
/// The header that carries the license on a package download.
pub const LICENSE_HEADER: &str = "x-onmic-license";

/// The song routes.
pub fn routes<S: Clone + Send + Sync + 'static>(app: Arc<AppState>) -> Router<S> {
    Router::new()
        .route("/v1/songs", get(search))
        .route("/v1/songs/{code}/license", post(license))
        .route("/v1/songs/{code}/key", post(key))
        .route("/v1/songs/{code}/package", get(package))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// The member behind `Authorization: Bearer <room token>`: its signature, app and `join` grant
/// checked now.
fn member(state: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .unwrap_or("");
    let unauthorized = |m: String| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    if given.is_empty() {
        return Err(unauthorized(
            "send Authorization: Bearer <the member's room token>".into(),
        ));
    }
    let claims = token::decode(state.config.token_secret.as_bytes(), given)
        .map_err(|e| unauthorized(format!("the room token is not valid: {e}")))?;
    if claims.app.as_str() != state.config.app_id {
        return Err(unauthorized(
            "the room token is for another application".into(),
        ));
    }
    token::check_privilege(&claims, Privilege::Join, state.hub.now())
        .map_err(|e| unauthorized(format!("the room token is not valid now: {e}")))?;
    Ok(claims)
}

fn store_error(e: crate::StoreError) -> ApiError {
    ApiError::from(HubError::from(e))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the request body is over {MAX_BODY_BYTES} bytes"),
    )
}

fn no_such_song(code: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_song",
        format!("no song {code:?} in the catalog; search with GET /v1/songs"),
    )
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

async fn search(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    member(&state, &headers)?;
    let Query(q) = q.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "query: q=<text>, limit=1-100",
        )
    })?;
    if q.q.chars().count() > 100 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the search text is limited to 100 characters",
        ));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_SEARCH);
    let query = q.q.trim().to_owned();
    let songs = state
        .hub
        .read(move |s| s.search_songs(&query, limit))
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "songs": songs })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LicenseRequest {
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn license(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Path(code): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let claims = member(&state, &headers)?;
    let req: LicenseRequest = parse_body(&body.map_err(|_| too_large())?)?;
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_LICENSE_SECS);
    if ttl == 0 || ttl > MAX_LICENSE_SECS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("ttl_secs must be 1-{MAX_LICENSE_SECS}"),
        ));
    }
    // The room must exist (a dismissed or unknown room gets no licenses).
    let room = state.hub.snapshot(&RoomId(claims.room.0.clone()))?;
    if room.dismissed {
        return Err(ApiError::from(HubError::NoSuchRoom));
    }
    if !super::valid_code(&code) || {
        let code = code.clone();
        state
            .hub
            .read(move |s| s.song(&code))
            .await
            .map_err(store_error)?
            .is_none()
    } {
        return Err(no_such_song(&code));
    }
    let now = state.hub.now();
    let lic = LicenseClaims {
        song: code.clone(),
        room: claims.room.0.clone(),
        uid: claims.uid.0.clone(),
        app: state.config.app_id.clone(),
        iat: now.0,
        exp: now.0.saturating_add(ttl.saturating_mul(1000)),
    };
    let signed = sign_license(state.config.token_secret.as_bytes(), &lic);
    state.hub.audit(
        now,
        &format!("member:{}", lic.uid),
        &crate::rest::origin(&extensions),
        &lic.room,
        "song_license",
        &json!({ "song": code, "expires_at": lic.exp }),
    );
    Ok(Json(json!({
        "license": signed, "song": lic.song, "room": lic.room, "uid": lic.uid,
        "expires_at": lic.exp,
    })))
}

/// Checks that `license` is this server's, unexpired, and bound to `claims`' uid and room and
/// to `code`.
fn check_license(
    state: &AppState,
    claims: &Claims,
    code: &str,
    license: &str,
    now: Timestamp,
) -> Result<(), ApiError> {
    let forbidden = |c: &'static str, m: String| ApiError::new(StatusCode::FORBIDDEN, c, m);
    let lic = open_license(state.config.token_secret.as_bytes(), license)
        .map_err(|m| forbidden("license_invalid", format!("{m}; get a new license")))?;
    if lic.app != state.config.app_id {
        return Err(forbidden(
            "license_invalid",
            "the license is for another application".into(),
        ));
    }
    if lic.uid != claims.uid.0 {
        return Err(forbidden(
            "license_wrong_member",
            "the license was issued to another member; get your own with POST /v1/songs/{code}/license".into(),
        ));
    }
    if lic.room != claims.room.0 {
        return Err(forbidden(
            "license_wrong_room",
            format!(
                "the license is for room {:?}, the token for room {:?}; get a license in this room",
                lic.room, claims.room.0
            ),
        ));
    }
    if lic.song != code {
        return Err(forbidden(
            "license_wrong_song",
            format!("the license is for song {:?}, not {code:?}", lic.song),
        ));
    }
    if now.0 >= lic.exp {
        return Err(forbidden(
            "license_expired",
            "the license has expired; get a new one with POST /v1/songs/{code}/license".into(),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    license: String,
}

async fn key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(code): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let claims = member(&state, &headers)?;
    let req: KeyRequest = parse_body(&body.map_err(|_| too_large())?)?;
    check_license(&state, &claims, &code, &req.license, state.hub.now())?;
    let song = {
        let code = code.clone();
        state.hub.read(move |s| s.song(&code)).await
    }
    .map_err(store_error)?
    .ok_or_else(|| no_such_song(&code))?;
    Ok(Json(json!({
        "song": code, "key": hex::encode(song.key), "lyrics": song.lyrics,
    })))
}

async fn package(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let claims = member(&state, &headers)?;
    let license = headers
        .get(LICENSE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    check_license(&state, &claims, &code, license, state.hub.now())?;
    let song = {
        let code = code.clone();
        state.hub.read(move |s| s.song(&code)).await
    }
    .map_err(store_error)?
    .ok_or_else(|| no_such_song(&code))?;
    // axum sets Content-Length from the body's exact size.
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.onmic.song-package")],
        song.package,
    )
        .into_response())
}
