//! The HTTP surface: routes and their handlers. Handlers are thin; domain logic lives in
//! `onmic-room` and the services this crate drives.

use std::sync::Arc;

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
}

/// Builds the router with every route of the service.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ws", get(crate::ws::upgrade))
        .route("/openapi.json", get(crate::rest::openapi))
        .merge(crate::rest::router(state.clone()))
        .merge(crate::sfu::http::routes(state.clone()))
        .merge(crate::page::routes())
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        node: state.config.node_name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: state.started.elapsed().as_secs(),
    })
}
