//! The HTTP surface: routes and their handlers. Handlers are thin; domain logic lives in
//! `onmic-room` and the services this crate drives.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::AppState;

/// What `GET /health` answers.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// Always `"ok"` when the server answers at all.
    pub status: String,
    /// The node's configured name.
    pub node: String,
    /// The server's version.
    pub version: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Rows in the webhook outbox (pending plus delivered ones kept for
    /// `webhook_retention_secs`): the outbox size metric.
    #[serde(default)]
    pub webhook_outbox: u64,
    /// Of those, webhooks not delivered yet.
    #[serde(default)]
    pub webhook_pending: u64,
    /// Rows committed in memory and waiting for the store's writer.
    #[serde(default)]
    pub store_pending: u64,
    /// Milliseconds the store's writes have been failing (none: healthy).
    #[serde(default)]
    pub store_failing_ms: Option<u64>,
}

/// Builds the router with every route of the service.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(crate::cluster::metrics::metrics))
        .route("/ws", get(crate::ws::upgrade))
        .route("/openapi.json", get(crate::rest::openapi))
        .merge(crate::rest::router(state.clone()))
        .merge(crate::sfu::http::routes(state.clone()))
        .merge(crate::cluster::relay::routes(state.clone()))
        .merge(crate::songs::http::routes(state.clone()))
        .merge(crate::page::routes())
        .merge(crate::cluster::drain::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> crate::rest::ApiError {
    crate::rest::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {}; see /openapi.json", uri.path()),
    )
}

async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> crate::rest::ApiError {
    crate::rest::ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; see /openapi.json",
            uri.path()
        ),
    )
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    // On a blocking thread, at most 1 s: /health answers even when the database does not.
    let hub = state.hub.clone();
    let sizes = tokio::task::spawn_blocking(move || hub.store_unflushed().outbox_size());
    let (pending, delivered) = match tokio::time::timeout(Duration::from_secs(1), sizes).await {
        Ok(Ok(Ok(sizes))) => sizes,
        _ => (0, 0),
    };
    let store = state.hub.store_status();
    Json(Health {
        store_pending: u64::try_from(store.pending).unwrap_or(u64::MAX),
        store_failing_ms: store.failing_ms,
        status: "ok".into(),
        node: state.config.node_name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: state.started.elapsed().as_secs(),
        webhook_outbox: pending + delivered,
        webhook_pending: pending,
    })
}
