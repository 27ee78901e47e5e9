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
    /// Name of this node, reported by `/health` (room placement will use it).
    pub node_name: String,
    /// Log filter in `tracing` syntax (`info`, `onmic_server=debug`, ...); `RUST_LOG` wins.
    pub log: String,
    /// Directory for the database and recordings.
    pub data_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7600)),
            node_name: "onmic-1".into(),
            log: "info".into(),
            data_dir: PathBuf::from("onmic-data"),
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
}

impl Config {
    /// Loads defaults, then `file` (if given), then `ONMIC_*` variables from the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::Missing(file.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // `ONMIC_CONFIG` names the file itself and is not a setting.
        figment = figment.merge(Env::prefixed("ONMIC_").ignore(&["CONFIG"]).split("__"));
        figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
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
            let c = Config::load(Some(Path::new("onmic.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.node_name, "from-env");
            assert_eq!(c.listen.port(), 9100);
            Ok(())
        });
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
