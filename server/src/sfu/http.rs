//! WebRTC signalling over HTTP: `POST /rtc/offer` with `{room, token, offer: {type, sdp}}`
//! answers `{type: "answer", sdp}`. The token is the room token of the WebSocket `join`, and the
//! member must have joined over the WebSocket first. Errors are `{code, message}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use onmic_room::{RoomId, token};
use serde::Deserialize;
use str0m::change::SdpOffer;

use super::driver::{Sfu, SfuConfig, SfuError};
use super::router::BombingPolicy;
use crate::AppState;

/// The body of `POST /rtc/offer`.
#[derive(Debug, Deserialize)]
pub struct OfferRequest {
    /// The room.
    pub room: RoomId,
    /// The member's room token.
    pub token: String,
    /// The SDP offer (`{"type": "offer", "sdp": "..."}`).
    pub offer: serde_json::Value,
}

#[derive(Clone)]
struct MediaState {
    app: Arc<AppState>,
    sfu: Option<Arc<Sfu>>,
}

/// Starts the SFU on the HTTP listener's IP (any free UDP port); `None` (logged) if it cannot
/// bind, and `/rtc/offer` then answers 503.
pub fn start_media(hub: &Arc<crate::Hub>, config: &crate::Config) -> Option<Sfu> {
    let udp = std::net::SocketAddr::new(config.listen.ip(), 0);
    let sfu = Sfu::start(
        hub.clone(),
        SfuConfig {
            udp,
            bombing: BombingPolicy {
                kick_and_ban: config.bombing_ban_ms.map(std::time::Duration::from_millis),
                ..BombingPolicy::default()
            },
            volume_interval: std::time::Duration::from_millis(500),
            shards: config.media_threads.unwrap_or(0),
        },
    );
    match sfu {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(%e, %udp, "media (SFU) could not start; /rtc answers 503");
            None
        }
    }
}

/// The signalling routes, on the server's SFU (`AppState::media`).
pub fn routes<S: Clone + Send + Sync + 'static>(app: Arc<AppState>) -> Router<S> {
    let sfu = app.media.clone();
    Router::new()
        .route("/rtc/offer", post(offer))
        .with_state(MediaState { app, sfu })
}

fn error(status: StatusCode, code: &str, message: impl ToString) -> Response {
    let body = serde_json::json!({ "code": code, "message": message.to_string() });
    (status, Json(body)).into_response()
}

async fn offer(State(st): State<MediaState>, body: axum::body::Bytes) -> Response {
    let Some(sfu) = st.sfu.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "media_unavailable",
            "the media service is not running",
        );
    };
    let req: OfferRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed", e),
    };
    let cfg = &st.app.config;
    let claims = match token::verify(
        cfg.token_secret.as_bytes(),
        &req.token,
        &cfg.app_id.as_str().into(),
        &req.room,
        st.app.hub.now(),
    ) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e.code(), e),
    };
    let offer: SdpOffer = match serde_json::from_value(req.offer) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_sdp", e),
    };
    match sfu.connect(req.room, claims.uid, offer).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => {
            let status = match e {
                SfuError::NotMember => StatusCode::FORBIDDEN,
                SfuError::NoSuchRoom => StatusCode::NOT_FOUND,
                SfuError::BadOffer(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, e.code(), e)
        }
    }
}
