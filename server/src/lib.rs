//! Onmic's room server as a library: [`start`] runs the whole service (HTTP, WebSocket, REST,
//! webhooks, storage) on a tokio runtime and hands back a [`RunningServer`] to query and stop.
//! The `onmic-server` binary and the Studio's embedded local room both use it.
//!
//! Contract: the server is the only authority of a room. Every accepted command goes through the
//! sans-IO `onmic_room::Room`, is handed (with its webhooks) to the store's writer and broadcast
//! to the room's connections in version order under the room's lock ([`hub`]); the writer saves
//! it through [`Store`] (SQLite by default, PostgreSQL with `database_url`) in the background, in
//! order, and a reply that says "done" waits until it is written. A restart restores rooms,
//! seats, bans and pending webhooks. Durability: `docs/store.md`.
// Unsafe code is denied everywhere but `sfu::sendmmsg` (one FFI call, see there).
#![deny(unsafe_code)]

pub mod cluster;
pub mod config;
pub mod http;
pub mod hub;
pub mod page;
pub mod push;
pub mod recording;
pub mod rest;
pub mod sfu;
pub mod songs;
pub mod store;
pub mod webhook;
pub mod ws;

use std::net::SocketAddr;
use std::time::Instant;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use config::{Config, ConfigError};
pub use hub::{Clock, Hub, SystemClock};
pub use store::{PgStore, SqliteStore, Store, StoreError};

/// How long a shutdown waits for the store's writer to save what is pending.
pub const STORE_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often the outbox and the audit log are pruned (see [`Hub::prune`]).
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Shared, read-mostly state every request handler sees.
#[derive(Debug)]
pub struct AppState {
    /// The configuration the server started with.
    pub config: Config,
    /// When the server started (for `/health`'s uptime).
    pub started: Instant,
    /// Every room.
    pub hub: Arc<Hub>,
    /// The media service (SFU and recordings); `None` if its UDP socket could not be bound.
    pub media: Option<Arc<sfu::Sfu>>,
    /// CDN pushes.
    pub pushes: Arc<push::Pushes>,
    /// This node's handle on the cluster; `None` without `cluster_redis` (a single node).
    pub cluster: Option<Arc<cluster::Cluster>>,
    /// Relays of big rooms, as origin and as relay (`cluster::relay`; idle without a cluster).
    pub relays: Arc<cluster::relay::Relays>,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; is another server running there? Pick another address with --listen or ONMIC_LISTEN"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is unsafe or unusable.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The database could not be opened or read.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The cluster (Redis) could not be joined.
    #[error("cluster: {0}")]
    Cluster(#[from] cluster::ClusterError),
    /// The HTTP server failed while running.
    #[error("the HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// A server that is running; drop it or call [`RunningServer::shutdown`] to stop it.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    hub: Arc<Hub>,
    media: Option<Arc<sfu::Sfu>>,
    pushes: Arc<push::Pushes>,
    cluster: Option<Arc<cluster::Cluster>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The address the server really listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the HTTP API, e.g. `http://127.0.0.1:7600`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The media service (SFU), if it started.
    pub fn media(&self) -> Option<&Arc<sfu::Sfu>> {
        self.media.as_ref()
    }

    /// The room hub (for embedding: the media layer's seams live here).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server to end. A
    /// cluster node with a shared store first hands its rooms to other nodes
    /// ([`cluster::drain`]).
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        // In a cluster with a shared store, the rooms move to other nodes first (draining).
        if let Some(cluster) = &self.cluster {
            cluster.drain(&self.hub).await;
        }
        self.hub.shutdown();
        // Pushes close their streams, then recordings end, so their files and listings are complete when this returns.
        self.pushes.stop_all("shutdown").await;
        if let Some(media) = &self.media {
            media.shutdown().await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = match (&mut self.task).await {
            Ok(result) => result,
            Err(join) => Err(ServerError::Serve(std::io::Error::other(join.to_string()))),
        };
        // Last: every change made until now (recordings' listings included) is written.
        let hub = self.hub.clone();
        let lost = tokio::task::spawn_blocking(move || hub.close_store(STORE_CLOSE_WAIT))
            .await
            .unwrap_or(0);
        if lost == 0 {
            tracing::info!("the store's writer is flushed");
        }
        // Only now, with every change written, may other nodes take this node's rooms over.
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
        }
        served
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds the configured address and serves in the background of the current tokio runtime.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// Like [`start`], with an injected clock.
pub async fn start_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, ServerError> {
    config.check_exposure()?;
    if !config.placeholder_secrets().is_empty() {
        tracing::warn!(
            secrets = ?config.placeholder_secrets(),
            "using built-in placeholder secrets: fine for a local room on loopback, set real ones before exposing the server"
        );
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    config.check_store()?;
    let store = store::open(&config)?;
    let interrupted = store.interrupt_recordings()?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "recordings left unfinished by the last run are listed as interrupted"
        );
    }
    let config = Arc::new(config);
    let hub = Arc::new(Hub::new(config.clone(), store, clock)?);
    let media = sfu::http::start_media(&hub, &config).map(Arc::new);
    let pushes = push::Pushes::new(hub.clone(), media.clone());
    let cluster = match &config.cluster_redis {
        None => None,
        Some(_) => {
            let http = cluster::advertised(config.cluster_advertise.as_deref(), addr)?;
            let (load, census) =
                cluster::node_load(&hub, media.as_deref(), &mut cluster::CpuSampler::default())
                    .await;
            let media_addr = media.as_ref().map(|m| m.local_addr());
            cluster::Cluster::start(&config, http, load, media_addr, &census)
                .await?
                .map(Arc::new)
        }
    };
    let state = Arc::new(AppState {
        config: (*config).clone(),
        started: Instant::now(),
        hub: hub.clone(),
        media: media.clone(),
        pushes: pushes.clone(),
        cluster: cluster.clone(),
        relays: cluster::relay::Relays::new(config.relay_listeners),
    });
    let app = http::router(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let (stop_workers, workers_stopped) = watch::channel(false);
    let ticker = {
        let hub = hub.clone();
        let mut stopped = workers_stopped.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(50));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => hub.tick(),
                    _ = prune.tick() => {
                        let hub = hub.clone();
                        let _ = tokio::task::spawn_blocking(move || hub.prune(hub.now())).await;
                    }
                    _ = stopped.changed() => return,
                }
            }
        })
    };
    let webhooks = config.webhook_url.clone().map(|url| {
        tokio::spawn(webhook::run_delivery(
            hub.clone(),
            url,
            workers_stopped.clone(),
        ))
    });
    let heartbeat = cluster.clone().map(|c| {
        tokio::spawn(cluster::run_heartbeat(
            c,
            hub.clone(),
            media.clone(),
            workers_stopped.clone(),
        ))
    });
    let task = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .map_err(ServerError::Serve);
        let _ = stop_workers.send(true);
        let _ = ticker.await;
        if let Some(w) = webhooks {
            let _ = w.await;
        }
        if let Some(h) = heartbeat {
            let _ = h.await;
        }
        served
    });
    tracing::info!(%addr, "listening");
    Ok(RunningServer {
        addr,
        hub,
        media,
        pushes,
        cluster,
        stop: Some(stop),
        task,
    })
}
