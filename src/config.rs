//! The configuration tree: a TOML file, then `EWALL_<SECTION>__<KEY>` environment variables on
//! top, then defaults for everything left out. `ewall serve` with no file runs on SQLite under
//! `./ewall-data` with the default listeners.
//!
//! Each stage's section is defined next to the stage (`ingest::ListenerConfig`,
//! `store::StoreConfig`, `api::HttpConfig`, `fence::FenceConfig`, `ingest::IngestConfig`,
//! `api::integration::IntegrationConfig`); this file assembles them, applies the overrides and checks the whole. Every error names the key
//! at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::alert::dispatch::webhook::WebhookConfig;
use crate::api::integration::IntegrationConfig;
use crate::api::HttpConfig;
use crate::fence::{FenceConfig, LevelsConfig};
pub use crate::ingest::mqtt::MqttConfig;
use crate::ingest::{IngestConfig, ListenerConfig, Listeners};
use crate::store::StoreConfig;
use crate::supervision::SupervisionConfig;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "EWALL_";

/// A configuration problem, with the key it concerns.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// File path.
        path: PathBuf,
        /// OS error.
        reason: String,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {reason}")]
    Syntax {
        /// File path.
        path: PathBuf,
        /// Parser message with line and column.
        reason: String,
    },
    /// A key has a bad value or is unknown.
    #[error("config key `{key}`: {problem}")]
    Key {
        /// Dotted key path (`listeners.gt06.listen`).
        key: String,
        /// What is wrong and what is expected.
        problem: String,
    },
}

impl ConfigError {
    fn key(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the SQLite database and other local state.
    pub data_dir: PathBuf,
    /// Longest a graceful shutdown may take before the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Capacity of each bounded channel between pipeline stages.
    pub channel_capacity: usize,
    /// Storage.
    pub store: StoreConfig,
    /// The HTTP API.
    pub http: HttpConfig,
    /// MQTT (gateways and the alert topic).
    pub mqtt: MqttConfig,
    /// The fence engine.
    pub fence: FenceConfig,
    /// Confirmation and severity per supervision level (`[levels.strict|normal|lenient]`).
    pub levels: LevelsConfig,
    /// What every ingest path checks in a position (plausibility, time window).
    pub ingest: IngestConfig,
    /// Device listeners, one per protocol.
    pub listeners: Listeners,
    /// Webhook receivers of the alert events (`[[webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// What the police entry-exit integration is shown.
    pub integration: IntegrationConfig,
    /// Monitoring orders and the timer-driven rules (`[supervision]`).
    pub supervision: SupervisionConfig,
    /// The audit trail: retention of positions and its checkpoint key.
    pub audit: crate::audit::AuditConfig,
    /// The operator console's map (`[console]`).
    pub console: crate::console::ConsoleConfig,
    /// Cluster mode on NATS JetStream (`[cluster]`); absent for a single node.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./ewall-data"),
            shutdown_timeout: Duration::from_secs(30),
            channel_capacity: 4096,
            store: StoreConfig::default(),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            fence: FenceConfig::default(),
            levels: LevelsConfig::default(),
            ingest: IngestConfig::default(),
            listeners: Listeners::default(),
            webhooks: Vec::new(),
            integration: IntegrationConfig::default(),
            supervision: SupervisionConfig::default(),
            audit: crate::audit::AuditConfig::default(),
            console: crate::console::ConsoleConfig::default(),
            cluster: None,
        }
    }
}

impl Config {
    /// Reads `path` (if given), applies the `EWALL_*` variables from `env` and checks the result.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file or key at fault.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut tree, env)?;
        let config = Config::from_table(tree)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads the file and the process environment.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_env(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load(path, std::env::vars())
    }

    fn from_table(tree: toml::Table) -> Result<Config, ConfigError> {
        // Defaults go underneath what was given, so a partial section (a listener with only
        // `strict_checksum`) keeps the defaults of its other keys.
        let mut merged = toml::Table::try_from(Config::default())
            .expect("the default config serialises to a table");
        merge(&mut merged, tree);
        let de = toml::Value::Table(merged);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::key(
                if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                e.inner().to_string(),
            )
        })
    }

    /// The store URL, defaulting to `ewall.db` in the data directory.
    pub fn store_url(&self) -> String {
        if self.store.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("ewall.db").display())
        } else {
            self.store.url.clone()
        }
    }

    /// Checks values that parse but make no sense together.
    ///
    /// # Errors
    /// The first problem found, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.channel_capacity == 0 {
            return Err(ConfigError::key("channel_capacity", "must be at least 1"));
        }
        if self.store.batch_max == 0 {
            return Err(ConfigError::key("store.batch_max", "must be at least 1"));
        }
        if self.store.commit_attempts == 0 {
            return Err(ConfigError::key(
                "store.commit_attempts",
                "must be at least 1",
            ));
        }
        let url = self.store_url();
        if crate::store::Backend::of(&url).is_none() {
            return Err(ConfigError::key(
                "store.url",
                format!(
                    "unsupported database {:?}; this build supports sqlite://PATH and \
                     postgres://USER@HOST/DB",
                    crate::store::redact_url(&url)
                ),
            ));
        }
        if self.store.pool_max == 0 {
            return Err(ConfigError::key("store.pool_max", "must be at least 1"));
        }
        if self.store.writers > 1
            && crate::store::Backend::of(&url) == Some(crate::store::Backend::Sqlite)
        {
            return Err(ConfigError::key(
                "store.writers",
                "SQLite has a single writer; more than 1 needs PostgreSQL",
            ));
        }
        self.mqtt
            .validate()
            .map_err(|(key, problem)| ConfigError::key(format!("mqtt.{key}"), problem))?;
        self.http
            .validate()
            .map_err(|(key, problem)| ConfigError::key(format!("http.{key}"), problem))?;
        let mut names = std::collections::BTreeSet::new();
        for (i, webhook) in self.webhooks.iter().enumerate() {
            webhook
                .validate()
                .map_err(|(k, problem)| ConfigError::key(format!("webhooks[{i}].{k}"), problem))?;
            if !names.insert(webhook.name.as_str()) {
                return Err(ConfigError::key(
                    format!("webhooks[{i}].name"),
                    format!("{:?} is used by another webhook", webhook.name),
                ));
            }
        }
        self.integration
            .validate()
            .map_err(|(key, problem)| ConfigError::key(format!("integration.{key}"), problem))?;
        self.fence
            .validate()
            .map_err(|(key, problem)| ConfigError::key(format!("fence.{key}"), problem))?;
        self.levels
            .validate()
            .map_err(|(key, problem)| ConfigError::key(format!("levels.{key}"), problem))?;
        self.ingest
            .validate()
            .map_err(|(key, problem)| ConfigError::key(format!("ingest.{key}"), problem))?;
        self.supervision
            .validate()
            .map_err(|(key, problem)| ConfigError::key(format!("supervision.{key}"), problem))?;
        self.audit
            .validate()
            .map_err(|(key, problem)| ConfigError::key(format!("audit.{key}"), problem))?;
        self.console
            .validate()
            .map_err(|(key, problem)| ConfigError::key(format!("console.{key}"), problem))?;
        if let Some(cluster) = &self.cluster {
            cluster
                .validate()
                .map_err(|(key, problem)| ConfigError::key(format!("cluster.{key}"), problem))?;
            if crate::store::Backend::of(&url) != Some(crate::store::Backend::Postgres) {
                return Err(ConfigError::key(
                    "store.url",
                    "[cluster] needs a PostgreSQL store shared by every node \
                     (postgres://USER@HOST/DB); SQLite is a single node's file",
                ));
            }
        }
        let mut seen: BTreeMap<SocketAddr, String> = BTreeMap::new();
        seen.insert(self.http.listen, "http.listen".into());
        if self.mqtt.enabled && self.mqtt.is_embedded() && self.mqtt.embedded_listen.port() != 0 {
            if let Some(other) =
                seen.insert(self.mqtt.embedded_listen, "mqtt.embedded_listen".into())
            {
                return Err(ConfigError::key(
                    "mqtt.embedded_listen",
                    format!("{} is already used by `{other}`", self.mqtt.embedded_listen),
                ));
            }
        }
        for (name, listener) in self.listeners.iter() {
            let key = |k: &str| format!("listeners.{name}.{k}");
            listener
                .validate()
                .map_err(|(k, problem)| ConfigError::key(key(k), problem))?;
            if !listener.enabled || listener.listen.port() == 0 {
                continue;
            }
            if let Some(other) = seen.insert(listener.listen, key("listen")) {
                return Err(ConfigError::key(
                    key("listen"),
                    format!("{} is already used by `{other}`", listener.listen),
                ));
            }
        }
        Ok(())
    }
}

impl Listeners {
    /// Each listener with its protocol name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &ListenerConfig)> {
        [
            ("gt06", &self.gt06),
            ("jt808", &self.jt808),
            ("h02", &self.h02),
            ("watch", &self.watch),
            ("osmand", &self.osmand),
        ]
        .into_iter()
    }
}

/// Overlays `EWALL_<SECTION>__<KEY>=value` variables on the parsed file. Sections nest with
/// `__` (`EWALL_LISTENERS__GT06__LISTEN`); a top-level key has no section (`EWALL_DATA_DIR`).
/// Values that read as TOML numbers or booleans become those; anything else is a string.
fn apply_env(
    tree: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // Variables the tests and CI use to find services are not configuration keys.
        if rest.starts_with("TEST_") || rest == "LOG" {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::key(
                name.clone(),
                "malformed override; use EWALL_<SECTION>__<KEY>",
            ));
        }
        let value = env_value(&raw);
        let (last, sections) = path.split_last().expect("split yields at least one item");
        let mut table = &mut *tree;
        for (i, section) in sections.iter().enumerate() {
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::key(
                        path[..=i].join("."),
                        format!("{name} treats it as a section, but it is a value"),
                    ))
                }
            };
        }
        table.insert(last.clone(), value);
    }
    Ok(())
}

/// Deep-merges `over` onto `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn env_value(raw: &str) -> toml::Value {
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        if raw.contains('.') {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ewall.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn no_file_gives_the_embedded_defaults() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(config.store_url(), "sqlite://./ewall-data/ewall.db");
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.listeners.gt06.listen.to_string(), "0.0.0.0:5023");
        assert_eq!(config.listeners.jt808.listen.to_string(), "0.0.0.0:5015");
        assert_eq!(config.listeners.h02.listen.to_string(), "0.0.0.0:5013");
        assert_eq!(config.listeners.watch.listen.to_string(), "0.0.0.0:5093");
        assert_eq!(config.listeners.osmand.listen.to_string(), "0.0.0.0:5055");
        assert_eq!(config.mqtt.url, "embedded");
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = load(
            "[http]\nlisten = \"127.0.0.1:9000\"\n[listeners.gt06]\nstrict_checksum = false\n",
            &[
                ("EWALL_HTTP__LISTEN", "127.0.0.1:9100"),
                ("EWALL_LISTENERS__GT06__STRICT_CHECKSUM", "true"),
                ("EWALL_DATA_DIR", "/tmp/elsewhere"),
                ("EWALL_STORE__BATCH_LINGER", "5ms"),
                ("EWALL_TEST_PG_URL", "postgres://ignored"),
                ("PATH", "/usr/bin"),
            ],
        )
        .unwrap();
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:9100");
        assert!(config.listeners.gt06.strict_checksum);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/elsewhere"));
        assert_eq!(config.store.batch_linger, Duration::from_millis(5));
        assert_eq!(config.store_url(), "sqlite:///tmp/elsewhere/ewall.db");
    }

    #[test]
    fn errors_name_the_key() {
        let err = load("[http]\nlisten = \"nowhere\"\n", &[]).unwrap_err();
        let ConfigError::Key { key, problem } = &err else {
            panic!("{err}")
        };
        assert_eq!(key, "http.listen");
        assert!(problem.contains("invalid socket address"), "{problem}");

        let err = load("[ingest]\nmax_fix_age = \"5m\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("ingest.max_fix_age"), "{err}");
        let config = load("", &[("EWALL_INGEST__MAX_FIX_AHEAD", "2m")]).unwrap();
        assert_eq!(config.ingest.max_fix_ahead, Duration::from_secs(120));

        let err = load("[listeners.gt06]\nlisen = \"0.0.0.0:1\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("listeners.gt06"), "{err}");
        assert!(err.to_string().contains("lisen"), "{err}");

        let err = load("", &[("EWALL_STORE__BATCH_MAX", "0")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::key("store.batch_max", "must be at least 1")
        );

        let err = load("[store]\nurl = \"mysql://x\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("store.url"), "{err}");

        // SQLite has one writer; PostgreSQL takes several, and chooses 2 by itself.
        let err = load("[store]\nwriters = 2\n", &[]).unwrap_err();
        assert!(err.to_string().contains("store.writers"), "{err}");
        let config = load("[store]\nwriters = 1\n", &[]).unwrap();
        assert_eq!(config.store.writer_count(), 1);
        let config = load("[store]\nurl = \"postgres://u@h/db\"\n", &[]).unwrap();
        assert_eq!(config.store.writer_count(), 2);
        let config = load("[store]\nurl = \"postgres://u@h/db\"\nwriters = 4\n", &[]).unwrap();
        assert_eq!(config.store.writer_count(), 4);

        let err = load("data_dir = [", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }

    #[test]
    fn two_listeners_on_one_address_are_refused() {
        let err = load("[listeners.h02]\nlisten = \"0.0.0.0:5023\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
    }

    #[test]
    fn deploy_examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(Some(&path), Vec::new())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 1, "no example config in deploy/");
        let production = Config::load(Some(&dir.join("ewall.toml")), Vec::new()).unwrap();
        assert!(production.supervision.require_order);
        assert!(!Config::default().supervision.require_order);
    }

    #[test]
    fn supervision_keys_are_checked() {
        let err = load("[supervision]\norder_expiring_days = 93\n", &[]).unwrap_err();
        assert!(
            err.to_string().contains("supervision.order_expiring_days"),
            "{err}"
        );
        let err = load("[levels.strict]\noffline_after_s = 0\n", &[]).unwrap_err();
        assert!(
            err.to_string().contains("levels.strict.offline_after_s"),
            "{err}"
        );
        let config = load("[supervision]\nrequire_order = true\n", &[]).unwrap();
        assert!(config.supervision.require_order);
    }
}
