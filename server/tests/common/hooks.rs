//! A real HTTP webhook receiver for tests: records every delivery (event id header, whether the
//! signature verifies under [`HOOK_SECRET`], the body) and answers 200.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// The webhook secret the servers under test sign with.
pub const HOOK_SECRET: &str = "hook-secret";

/// One delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    pub signed: bool,
    pub body: Value,
}

/// The receiver: its URL and what it received.
pub struct HookReceiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(
    State(got): State<Arc<Mutex<Vec<Delivery>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let signed =
        header("x-onmic-signature") == onmic_server::webhook::sign(HOOK_SECRET.as_bytes(), &body);
    got.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Delivery {
            event_id: header("x-onmic-event-id"),
            signed,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
    StatusCode::OK
}

impl HookReceiver {
    /// Listens on `ip` (any free port), on the current tokio runtime.
    pub async fn start(ip: std::net::IpAddr) -> HookReceiver {
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("bind the webhook receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(got.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HookReceiver { url, got, task }
    }

    /// Everything received so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
