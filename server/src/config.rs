//! Server configuration: built-in defaults, then a TOML file, then `ONMIC_*` environment
//! variables (nested keys joined with `__`, e.g. `ONMIC_LISTEN=127.0.0.1:9000`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything the server reads at start-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP/WebSocket listener; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Name of this node, reported by `/health` and `/metrics`; its id in a cluster.
    pub node_name: String,
    /// Log filter in `tracing` syntax (`info`, `onmic_server=debug`, ...); `RUST_LOG` wins.
    pub log: String,
    /// Directory for the database and recordings.
    pub data_dir: PathBuf,
    /// SQLite database file; default `<data_dir>/onmic.sqlite3`; `:memory:` keeps nothing.
    pub database: Option<PathBuf>,
    /// PostgreSQL instead of SQLite: a connection string (`postgres://user:password@host/db` or
    /// `host=/run/postgresql dbname=onmic`); none: SQLite.
    pub database_url: Option<String>,
    /// Rows waiting for the store's writer above which members' requests are refused with
    /// `store_behind` (system changes such as timers and the SFU's reports are still taken).
    pub store_queue_limit: usize,
    /// The customer application this server serves (tokens must carry it).
    pub app_id: String,
    /// Secret that signs access tokens (HMAC-SHA256).
    pub token_secret: String,
    /// REST API credentials: `Authorization: Bearer <customer_key>:<customer_secret>`.
    pub customer_key: String,
    /// See `customer_key`.
    pub customer_secret: String,
    /// Where webhooks are POSTed; none: no webhooks (nothing is queued).
    pub webhook_url: Option<String>,
    /// Secret that signs webhook bodies (HMAC-SHA256, header `X-Onmic-Signature`).
    pub webhook_secret: String,
    /// First webhook retry delay in milliseconds; doubles per attempt up to 60 s.
    pub webhook_retry_ms: u64,
    /// Delivered webhooks are deleted from the outbox this many seconds after delivery, and
    /// undelivered ones this many seconds after they were queued (expired, with a warning).
    pub webhook_retention_secs: u64,
    /// Audit log entries are deleted after this many days.
    pub audit_retention_days: u64,
    /// WebSocket connections from one IP address that have not joined yet (more are refused
    /// with HTTP 429 before the upgrade).
    pub max_prejoin_per_addr: u32,
    /// A member silent this long (milliseconds) goes offline and loses its seat.
    pub presence_timeout_ms: u64,
    /// Regular seats per room unless the create request says otherwise.
    pub seat_count: u16,
    /// Longest chat text in characters.
    pub max_chat_chars: usize,
    /// Chat messages allowed per member per `chat_window_ms`.
    pub chat_burst: u32,
    /// See `chat_burst`.
    pub chat_window_ms: u64,
    /// Words masked in chat.
    pub word_filter: Vec<String>,
    /// WebSocket frames a connection may send per second before being refused, then closed.
    pub max_frames_per_sec: u32,
    /// Audio from a member without an unmuted seat (bombing) also kicks the sender and bans it
    /// for this many milliseconds; none: report only (event + webhook).
    pub bombing_ban_ms: Option<u64>,
    /// SFU driver threads (shards), each with its own UDP port and its own share of the peers;
    /// none: one per core.
    pub media_threads: Option<usize>,
    /// The `ffmpeg` binary that encodes CDN pushes to AAC (a name on `PATH` or a path).
    pub push_ffmpeg: String,
    /// CDN pushes this server runs at once (each costs an `ffmpeg` process and five threads).
    pub push_max: usize,
    /// Failed reconnection attempts in a row after which a push whose RTMP connection broke
    /// gives up (0.5 s, 1 s, 2 s, … 8 s apart).
    pub push_retries: u32,
    /// Redis URL of the cluster this node belongs to (`redis://host:port/db`); none: a single
    /// node, as without a cluster. `node_name` is then the node's id in the cluster.
    pub cluster_redis: Option<String>,
    /// `host:port` where the other nodes reach this node's HTTP API; none: the listen address
    /// (which must then not be a wildcard like 0.0.0.0).
    pub cluster_advertise: Option<String>,
    /// How often the node writes its record and load to Redis, in milliseconds.
    pub cluster_heartbeat_ms: u64,
    /// A node record not refreshed for this long expires (the node is no longer live), in
    /// milliseconds; at least twice `cluster_heartbeat_ms`.
    pub cluster_node_ttl_ms: u64,
    /// In a cluster: the most WebRTC peer connections of one room this node serves itself. As the
    /// room's node, the offers of further listeners (members holding no seat) are placed on
    /// relay nodes; as a relay, it refuses more of that room. None: this node places no listener
    /// on relays (every peer of its rooms connects to it) and relays without a limit.
    pub relay_listeners: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7600)),
            node_name: "onmic-1".into(),
            log: "info".into(),
            data_dir: PathBuf::from("onmic-data"),
            database: None,
            database_url: None,
            store_queue_limit: 100_000,
            app_id: "onmic".into(),
            token_secret: "change-me-token-secret".into(),
            customer_key: "onmic-key".into(),
            customer_secret: "change-me-customer-secret".into(),
            webhook_url: None,
            webhook_secret: "change-me-webhook-secret".into(),
            webhook_retry_ms: 1000,
            webhook_retention_secs: 3 * 24 * 3600,
            audit_retention_days: 90,
            max_prejoin_per_addr: 16,
            presence_timeout_ms: 30_000,
            seat_count: 8,
            max_chat_chars: 500,
            chat_burst: 5,
            chat_window_ms: 5000,
            word_filter: Vec::new(),
            max_frames_per_sec: 50,
            bombing_ban_ms: None,
            media_threads: None,
            push_ffmpeg: "ffmpeg".into(),
            push_max: 8,
            push_retries: 5,
            cluster_redis: None,
            cluster_advertise: None,
            cluster_heartbeat_ms: 1000,
            cluster_node_ttl_ms: 5000,
            relay_listeners: None,
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file named on the command line does not exist.
    #[error("config file {0} does not exist; pass an existing file to --config or leave it out")]
    Missing(PathBuf),
    /// The file or an environment variable holds something that is not valid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// Built-in placeholder secrets on an address other machines can reach.
    #[error(
        "refusing to listen on {listen} with the built-in placeholder secrets ({}): anyone could forge tokens or call the admin API. Set them, e.g. {}=<random string>, or listen on 127.0.0.1 for a local room",
        names.join(", "),
        names.iter().map(|n| format!("ONMIC_{}", n.to_uppercase())).collect::<Vec<_>>().join("=… ")
    )]
    PlaceholderSecrets {
        /// The configured listen address.
        listen: SocketAddr,
        /// The settings still at their placeholder values.
        names: Vec<&'static str>,
    },
}

impl Config {
    /// The secret settings still at their built-in placeholder values.
    pub fn placeholder_secrets(&self) -> Vec<&'static str> {
        let defaults = Config::default();
        [
            ("token_secret", &self.token_secret, &defaults.token_secret),
            (
                "customer_secret",
                &self.customer_secret,
                &defaults.customer_secret,
            ),
            (
                "webhook_secret",
                &self.webhook_secret,
                &defaults.webhook_secret,
            ),
        ]
        .into_iter()
        .filter(|(_, value, default)| value == default)
        .map(|(name, _, _)| name)
        .collect()
    }

    /// Placeholder secrets are fine for a local room on loopback and refused anywhere else.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        let names = self.placeholder_secrets();
        if names.is_empty() || self.listen.ip().is_loopback() {
            return Ok(());
        }
        Err(ConfigError::PlaceholderSecrets {
            listen: self.listen,
            names,
        })
    }

    /// The names of the settings that are secrets (masked by `onmic-server config`).
    pub const SECRET_KEYS: &'static [&'static str] =
        &["token_secret", "customer_secret", "webhook_secret"];

    /// The configuration as JSON with every secret replaced by `"***"` (an empty secret stays
    /// empty, so a missing one is visible).
    pub fn masked(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        for key in Self::SECRET_KEYS {
            if let Some(slot) = v.get_mut(*key)
                && slot.as_str().is_some_and(|s| !s.is_empty())
            {
                *slot = serde_json::Value::String("***".into());
            }
        }
        if let Some(url) = &self.database_url
            && let Some(slot) = v.get_mut("database_url")
        {
            *slot = serde_json::Value::String(mask_password(url));
        }
        // The Redis URL may carry a password: show the rest.
        if let Some(slot) = v.get_mut("cluster_redis")
            && let Some(url) = slot.as_str()
        {
            *slot = serde_json::Value::String(crate::cluster::redact_url(url));
        }
        v
    }

    /// Both stores named: refused, rather than one silently ignored.
    pub fn check_store(&self) -> Result<(), ConfigError> {
        if self.database.is_some() && self.database_url.is_some() {
            return Err(ConfigError::Invalid(
                "database (SQLite) and database_url (PostgreSQL) are both set; keep one".into(),
            ));
        }
        Ok(())
    }

    /// The names of every setting (the keys of the TOML file).
    pub fn keys() -> Vec<String> {
        top_level_keys()
    }

    /// The SQLite database path (`:memory:` for none).
    pub fn database_path(&self) -> PathBuf {
        self.database
            .clone()
            .unwrap_or_else(|| self.data_dir.join("onmic.sqlite3"))
    }

    /// Loads defaults, then `file` (if given), then `ONMIC_*` variables from the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::Missing(file.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only variables that name a setting: other tools' `ONMIC_*` variables (and
        // `ONMIC_CONFIG`, which names the file) must not trip `deny_unknown_fields`.
        let known = top_level_keys();
        let env = Env::prefixed("ONMIC_")
            .filter(move |key| {
                let top = key.as_str().split("__").next().unwrap_or_default();
                known.iter().any(|k| k.eq_ignore_ascii_case(top))
            })
            .split("__");
        figment = figment.merge(env);
        figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

/// A connection string with its password shown as `***` (URL or `key=value` form).
fn mask_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth, host) = match rest.rsplit_once('@') {
            Some(parts) => parts,
            None => return url.to_owned(),
        };
        return match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        };
    }
    url.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The names of the top-level settings, from the defaults themselves.
fn top_level_keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
// figment's Jail API fixes the closure's error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "onmic.toml",
                "node_name = \"from-file\"\nlisten = \"127.0.0.1:9100\"\n",
            )?;
            let c = Config::load(Some(Path::new("onmic.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.node_name, "from-file");
            assert_eq!(c.listen.port(), 9100);
            assert_eq!(c.log, "info", "untouched keys keep their defaults");
            jail.set_env("ONMIC_NODE_NAME", "from-env");
            jail.set_env("ONMIC_SOMETHING_ELSE", "another tool's variable");
            let c = Config::load(Some(Path::new("onmic.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.node_name, "from-env");
            assert_eq!(c.listen.port(), 9100);
            Ok(())
        });
    }

    #[test]
    fn database_url_passwords_are_masked() {
        assert_eq!(
            mask_password("postgres://onmic:s3cret@db.local:5432/onmic"),
            "postgres://onmic:***@db.local:5432/onmic"
        );
        assert_eq!(
            mask_password("host=/run/postgresql user=onmic password=s3cret dbname=onmic"),
            "host=/run/postgresql user=onmic password=*** dbname=onmic"
        );
        assert_eq!(
            mask_password("postgres://db.local/onmic"),
            "postgres://db.local/onmic"
        );
        let c = Config {
            database_url: Some("postgres://u:pw@h/d".into()),
            ..Config::default()
        };
        assert_eq!(c.masked()["database_url"], "postgres://u:***@h/d");
        assert!(c.check_store().is_ok());
        let both = Config {
            database: Some("x.sqlite3".into()),
            ..c
        };
        assert!(both.check_store().is_err());
    }

    #[test]
    fn placeholder_secrets_only_on_loopback() {
        let mut c = Config::default();
        assert!(
            c.check_exposure().is_ok(),
            "a local room on 127.0.0.1 may use them"
        );
        c.listen = "0.0.0.0:7600".parse().expect("addr");
        let err = c.check_exposure().expect_err("exposed placeholders");
        let text = err.to_string();
        assert!(
            text.contains("ONMIC_TOKEN_SECRET") && text.contains("ONMIC_CUSTOMER_SECRET"),
            "{text}"
        );
        c.token_secret = "s1".into();
        c.customer_secret = "s2".into();
        c.webhook_secret = "s3".into();
        assert!(c.check_exposure().is_ok(), "real secrets may be exposed");
        assert!(c.placeholder_secrets().is_empty());
    }

    #[test]
    fn the_cluster_redis_password_is_masked() {
        let c = Config {
            cluster_redis: Some("redis://:hunter2@10.0.0.9:6379/0".into()),
            ..Config::default()
        };
        let shown = c.masked().to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://10.0.0.9:6379/0"), "{shown}");
        assert_eq!(
            Config::default().masked()["cluster_redis"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_are_clear_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "listen = \"not an address\"\n")?;
            let err = Config::load(Some(Path::new("bad.toml"))).expect_err("bad address");
            assert!(err.to_string().contains("listen"), "{err}");
            jail.create_file("typo.toml", "lisen = \"127.0.0.1:1\"\n")?;
            let err = Config::load(Some(Path::new("typo.toml"))).expect_err("unknown key");
            assert!(err.to_string().contains("lisen"), "{err}");
            let err = Config::load(Some(Path::new("nope.toml"))).expect_err("missing file");
            assert!(matches!(err, ConfigError::Missing(_)));
            Ok(())
        });
    }
}
