//! Onmic's room server as a library: [`start`] runs the whole service (HTTP, WebSocket, SFU) on
//! a tokio runtime and hands back a [`RunningServer`] to query and stop. The `onmic-server`
//! binary and the Studio's embedded local room both use it.
#![forbid(unsafe_code)]

pub mod config;
pub mod http;

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{Config, ConfigError};

/// Shared, read-mostly state every request handler sees.
#[derive(Debug)]
pub struct AppState {
    /// The configuration the server started with.
    pub config: Config,
    /// When the server started (for `/health`'s uptime).
    pub started: Instant,
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
    /// The HTTP server failed while running.
    #[error("the HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// A server that is running; drop it or call [`RunningServer::shutdown`] to stop it.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
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

    /// Stops accepting, lets in-flight requests finish, and waits for the server to end.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join) => Err(ServerError::Serve(std::io::Error::other(join.to_string()))),
        }
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
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let state = std::sync::Arc::new(AppState {
        config,
        started: Instant::now(),
    });
    let app = http::router(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .map_err(ServerError::Serve)
    });
    tracing::info!(%addr, "listening");
    Ok(RunningServer {
        addr,
        stop: Some(stop),
        task,
    })
}
