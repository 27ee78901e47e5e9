//! `onmic-server`: the Onmic room service.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use onmic_server::Config;
use tracing_subscriber::EnvFilter;

/// Onmic room server: rooms, mic seats, IM, REST admin API, webhooks and the voice SFU.
#[derive(Debug, Parser)]
#[command(
    name = "onmic-server",
    version,
    about = "Onmic room server: rooms, mic seats, IM, REST admin API, webhooks and the voice SFU."
)]
struct Cli {
    /// TOML config file; every key can be overridden by an `ONMIC_<KEY>` environment variable.
    #[arg(long, short, env = "ONMIC_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the config file and ONMIC_LISTEN).
    #[arg(long, global = true)]
    listen: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Print the effective configuration (defaults, file and environment merged) as TOML-like JSON.
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("onmic-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config => match serde_json::to_string_pretty(&config) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("onmic-server: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => serve(config),
    }
}

fn serve(config: Config) -> ExitCode {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    tracing::debug!(?config, "effective configuration");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("onmic-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match onmic_server::start(config).await {
            Ok(server) => server,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        // One stable line on stdout so scripts and tests learn the real port.
        println!("onmic-server listening on {}", server.url());
        let signal = shutdown_signal().await;
        tracing::info!(signal, "shutting down");
        match server.shutdown().await {
            Ok(()) => {
                tracing::info!("shut down cleanly");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Waits for SIGINT (Ctrl-C) or, on Unix, SIGTERM; returns which one arrived.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
