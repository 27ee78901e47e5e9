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
    /// Print the effective configuration (defaults, file and environment merged) as JSON, with
    /// the secrets masked.
    Config {
        /// Print the secrets in clear.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Issue an access token signed with the configured `token_secret` and `app_id`.
    Token {
        /// Room the token is for.
        #[arg(long)]
        room: String,
        /// User id.
        #[arg(long)]
        uid: String,
        /// Privileges, comma-separated: join, publish_audio, admin.
        #[arg(long, value_delimiter = ',', default_value = "join,publish_audio")]
        privileges: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// The DRM song catalog.
    Song {
        #[command(subcommand)]
        action: SongCommand,
    },
    /// The cluster this node's configuration names (`cluster_redis`).
    Cluster {
        #[command(subcommand)]
        action: ClusterCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The live nodes with their addresses and load, and the rooms placed on each.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SongCommand {
    /// Encrypt a local audio file (MP3, FLAC, AAC/M4A, Ogg Vorbis, WAV) into the catalog.
    Import {
        /// The audio file.
        file: PathBuf,
        /// Title.
        #[arg(long)]
        title: String,
        /// Artist.
        #[arg(long)]
        artist: String,
        /// LRC lyrics file.
        #[arg(long)]
        lyrics: Option<PathBuf>,
        /// Song code (default: derived from the file's SHA-256).
        #[arg(long)]
        code: Option<String>,
    },
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
        Command::Config { show_secrets } => match serde_json::to_string_pretty(&if show_secrets {
            serde_json::to_value(&config).unwrap_or_default()
        } else {
            config.masked()
        }) {
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
        Command::Token {
            room,
            uid,
            privileges,
            ttl,
        } => token(&config, room, uid, &privileges, ttl),
        Command::Song {
            action:
                SongCommand::Import {
                    file,
                    title,
                    artist,
                    lyrics,
                    code,
                },
        } => song_import(&config, &file, title, artist, lyrics.as_deref(), code),
        Command::Cluster {
            action: ClusterCommand::Status { json },
        } => cluster_status(&config, json),
    }
}

fn cluster_status(config: &Config, json: bool) -> ExitCode {
    let Some(url) = config.cluster_redis.as_deref() else {
        eprintln!(
            "onmic-server: no cluster configured; set cluster_redis (ONMIC_CLUSTER_REDIS) to the cluster's Redis URL"
        );
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("onmic-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(onmic_server::cluster::status(url)) {
        Ok(status) => {
            if json {
                match serde_json::to_string_pretty(&status) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("onmic-server: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", status.table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("onmic-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn song_import(
    config: &Config,
    file: &std::path::Path,
    title: String,
    artist: String,
    lyrics: Option<&std::path::Path>,
    code: Option<String>,
) -> ExitCode {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let media = match read(file) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("onmic-server: {e}");
            return ExitCode::from(2);
        }
    };
    let lyrics = match lyrics.map(|p| {
        read(p).and_then(|b| {
            String::from_utf8(b).map_err(|_| format!("{} is not UTF-8 text", p.display()))
        })
    }) {
        None => None,
        Some(Ok(text)) => Some(text),
        Some(Err(e)) => {
            eprintln!("onmic-server: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match config
        .check_store()
        .map_err(|e| e.to_string())
        .and_then(|()| onmic_server::store::open(config).map_err(|e| e.to_string()))
    {
        Ok(store) => store,
        Err(e) => {
            eprintln!("onmic-server: cannot open the catalog: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = onmic_server::Clock::now(&onmic_server::SystemClock);
    let req = onmic_server::songs::ImportRequest {
        media,
        media_name: file.display().to_string(),
        title,
        artist,
        lyrics,
        code,
    };
    match onmic_server::songs::import(&*store, req, now) {
        Ok(song) => {
            let record = onmic_server::store::AuditRecord {
                at: now,
                actor: "cli".into(),
                origin: "local".into(),
                room: String::new(),
                action: "song_import".into(),
                detail: serde_json::json!({ "song": &song, "file": file.display().to_string() })
                    .to_string(),
            };
            if let Err(e) = store.audit(&record) {
                eprintln!("onmic-server: cannot record the import in the audit log: {e}");
                return ExitCode::FAILURE;
            }
            println!("{}", serde_json::json!(song));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("onmic-server: {e}");
            match e {
                onmic_server::songs::ImportError::Store(_) => ExitCode::FAILURE,
                _ => ExitCode::from(2),
            }
        }
    }
}

fn token(config: &Config, room: String, uid: String, privileges: &[String], ttl: u64) -> ExitCode {
    let mut parsed = Vec::new();
    for p in privileges {
        match serde_json::from_value(serde_json::Value::String(p.trim().to_owned())) {
            Ok(p) => parsed.push(p),
            Err(_) => {
                eprintln!("onmic-server: unknown privilege {p:?}; use join, publish_audio, admin");
                return ExitCode::from(2);
            }
        }
    }
    let req = onmic_server::rest::TokenRequest {
        room: room.into(),
        uid: uid.into(),
        privileges: parsed,
        ttl_secs: ttl,
    };
    if let Err((code, message)) = onmic_server::rest::check_token_request(&req) {
        eprintln!("onmic-server: {message} ({code})");
        return ExitCode::from(2);
    }
    let now = onmic_server::Clock::now(&onmic_server::SystemClock);
    // Every issued token is in the audit log, whichever way it was issued.
    let store = match config
        .check_store()
        .map_err(|e| e.to_string())
        .and_then(|()| onmic_server::store::open(config).map_err(|e| e.to_string()))
    {
        Ok(store) => store,
        Err(e) => {
            eprintln!("onmic-server: cannot record the token in the audit log: {e}");
            return ExitCode::FAILURE;
        }
    };
    let record = onmic_server::store::AuditRecord {
        at: now,
        actor: "cli".into(),
        origin: "local".into(),
        room: req.room.0.clone(),
        action: "issue_token".into(),
        detail: serde_json::json!({ "request": &req }).to_string(),
    };
    if let Err(e) = store.audit(&record) {
        eprintln!("onmic-server: cannot record the token in the audit log: {e}");
        return ExitCode::FAILURE;
    }
    let (token, _) = onmic_server::rest::make_token(config, &req, now);
    println!("{token}");
    ExitCode::SUCCESS
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
        let signal = shutdown_signal();
        println!("onmic-server listening on {}", server.url());
        let signal = signal.await;
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

/// Installs the SIGINT (Ctrl-C) and, on Unix, SIGTERM handlers now, and returns a future that
/// waits for either and says which arrived. Installing before the "listening" line is printed
/// closes a race where a signal sent right after start-up killed the process uncleanly.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                },
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                    "SIGINT"
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
