//! Watches whether the configured room server answers `GET /health`, and tells the UI when that
//! changes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use specta::Type;
use tauri_specta::Event;
use tokio::sync::Notify;

/// How often the server is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(3);

/// The room server's reachability as the Studio last saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type, Event)]
#[serde(
    tag = "state",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerStatus {
    /// Not probed yet.
    Checking {
        /// The server's base URL.
        url: String,
    },
    /// `/health` answered.
    Reachable {
        /// The server's base URL.
        url: String,
        /// The node's name.
        node: String,
        /// The server's version.
        version: String,
        /// Round trip of the probe, ms.
        latency_ms: u32,
    },
    /// `/health` did not answer, or answered wrongly.
    Unreachable {
        /// The server's base URL.
        url: String,
        /// Why, with what to do about it.
        reason: String,
    },
}

#[derive(Deserialize)]
struct Health {
    node: String,
    version: String,
}

/// Shared state between the probe task and the commands.
#[derive(Debug)]
pub struct ServerProbe {
    url: Mutex<String>,
    status: Mutex<ServerStatus>,
    changed: Notify,
}

impl ServerProbe {
    /// A probe for `url` that has not run yet.
    pub fn new(url: String) -> Arc<Self> {
        Arc::new(Self {
            status: Mutex::new(ServerStatus::Checking { url: url.clone() }),
            url: Mutex::new(url),
            changed: Notify::new(),
        })
    }

    /// The last status seen.
    pub fn status(&self) -> ServerStatus {
        lock(&self.status).clone()
    }

    /// The URL probed now (the room server in use).
    pub fn url(&self) -> String {
        lock(&self.url).clone()
    }

    /// Points the probe at another server and probes it at once.
    pub fn set_url(&self, url: String) {
        *lock(&self.status) = ServerStatus::Checking { url: url.clone() };
        *lock(&self.url) = url;
        self.changed.notify_one();
    }

    /// Probes forever, calling `on_change` whenever the status changes.
    pub async fn run(self: Arc<Self>, on_change: impl Fn(&ServerStatus) + Send + 'static) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                tracing::error!("cannot build the HTTP client for server probing: {e}");
                return;
            }
        };
        loop {
            let url = lock(&self.url).clone();
            let status = probe(&client, &url).await;
            let changed = {
                let mut current = lock(&self.status);
                // A URL changed mid-probe: this answer is about the old one.
                let still_current = *lock(&self.url) == url;
                let differs = *current != status && still_current;
                if differs {
                    *current = status.clone();
                }
                differs
            };
            if changed {
                on_change(&status);
            }
            tokio::select! {
                () = tokio::time::sleep(PROBE_INTERVAL) => {}
                () = self.changed.notified() => {}
            }
        }
    }
}

async fn probe(client: &reqwest::Client, url: &str) -> ServerStatus {
    let started = Instant::now();
    let unreachable = |reason: String| ServerStatus::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let response = match client.get(format!("{url}/health")).send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => {
            return unreachable(format!(
                "Nothing answers at {url}. Start the room server (`onmic-server`) or correct the address."
            ));
        }
        Err(e) if e.is_timeout() => {
            return unreachable(format!("{url} did not answer within 2 s."));
        }
        Err(e) => return unreachable(format!("Could not reach {url}: {e}")),
    };
    if !response.status().is_success() {
        return unreachable(format!(
            "{url}/health answered {}; is this an Onmic server?",
            response.status()
        ));
    }
    match response.json::<Health>().await {
        Ok(h) => ServerStatus::Reachable {
            url: url.to_owned(),
            node: h.node,
            version: h.version,
            latency_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
        },
        Err(_) => unreachable(format!("{url}/health did not answer like an Onmic server.")),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
