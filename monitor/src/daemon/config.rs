//! The daemon's configuration file (`/etc/agent-monitor/config.yaml`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::sink::Redaction;

pub use crate::cli::{DEFAULT_CONFIG, DEFAULT_SOCKET};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The policy file; without it, the built-in policy (which adopts nothing).
    #[serde(default)]
    pub policy: Option<PathBuf>,
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    #[serde(default)]
    pub events: Events,
    #[serde(default)]
    pub redact: Redaction,
    #[serde(default)]
    pub metrics: Metrics,
    /// What becomes of running sessions when the daemon stops.
    #[serde(default)]
    pub on_stop: OnStop,
    /// What becomes of running sessions if the daemon dies (see `watchdog`); by
    /// default, per session: `kill` in enforce mode, `freeze` in audit mode.
    #[serde(default)]
    pub on_monitor_death: Option<crate::watchdog::OnMonitorDeath>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Events {
    /// NDJSON on stdout (journald under systemd).
    #[serde(default = "yes")]
    pub stdout: bool,
    #[serde(default)]
    pub file: Option<FileSink>,
    /// Lines buffered per `events --follow` client before it loses lines.
    #[serde(default = "default_follower_buffer")]
    pub follower_buffer: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    pub path: PathBuf,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_keep")]
    pub keep: u32,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Prometheus text file, rewritten every few seconds (node_exporter's textfile
    /// collector reads it).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnStop {
    /// Sessions go on running without the monitor (their kernel state goes with it).
    #[default]
    Release,
    /// Sessions are frozen in place until a daemon starts again and takes them back.
    Freeze,
}

fn yes() -> bool {
    true
}
fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}
fn default_follower_buffer() -> usize {
    16_384
}
fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_keep() -> u32 {
    5
}

impl Default for Events {
    fn default() -> Self {
        Events { stdout: true, file: None, follower_buffer: default_follower_buffer() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            policy: None,
            socket: default_socket(),
            events: Events::default(),
            redact: Redaction::default(),
            metrics: Metrics::default(),
            on_stop: OnStop::default(),
            on_monitor_death: None,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file at the default place means the defaults.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_CONFIG) => {
                return Ok(Config::default());
            }
            Err(error) => anyhow::bail!("reading the configuration {}: {error}", path.display()),
        };
        Config::parse(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(file) = &config.events.file {
            anyhow::ensure!(
                file.max_bytes >= 4096,
                "events.file.max_bytes: {} is too small (at least 4096)",
                file.max_bytes
            );
        }
        config.redact.validate()?;
        anyhow::ensure!(config.events.follower_buffer > 0, "events.follower_buffer must be at least 1");
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_config_is_valid() {
        let config = Config::parse(include_str!("../../../packaging/config.yaml")).unwrap();
        assert_eq!(config.policy.as_deref(), Some(Path::new("/etc/agent-monitor/policy.yaml")));
        assert_eq!(config.socket, Path::new(DEFAULT_SOCKET));
        let policy = crate::policy::parse_policy(include_str!("../../../packaging/policy.yaml"));
        assert!(policy.is_ok(), "{policy:?}");
    }

    #[test]
    fn the_packaged_policy_is_the_built_in_one() {
        let packaged = crate::policy::parse_policy(include_str!("../../../packaging/policy.yaml")).unwrap();
        let built_in = crate::policy::default_policy();
        assert_eq!(packaged.profile("default"), built_in.profile("default"));
    }

    #[test]
    fn an_empty_file_means_the_defaults() {
        assert_eq!(Config::parse("{}").unwrap(), Config::default());
    }

    #[test]
    fn every_key() {
        let config = Config::parse(
            "policy: /etc/agent-monitor/policy.yaml\nsocket: /run/x.sock\nevents:\n  stdout: false\n  file: {path: /var/log/e.ndjson, max_bytes: 65536, keep: 2}\n  follower_buffer: 10\nredact: {argv: true, path_prefixes: [/home]}\nmetrics: {file: /run/m.prom}\non_stop: freeze\non_monitor_death: kill\n",
        )
        .unwrap();
        assert_eq!(config.on_stop, OnStop::Freeze);
        assert_eq!(config.on_monitor_death, Some(crate::watchdog::OnMonitorDeath::Kill));
        assert_eq!(config.events.file.unwrap().keep, 2);
        assert!(config.redact.argv);
    }

    #[test]
    fn mistakes_are_named() {
        let error = Config::parse("polcy: /x\n").unwrap_err().to_string();
        assert!(error.contains("polcy"), "{error}");
        let error = Config::parse("on_stop: explode\n").unwrap_err().to_string();
        assert!(error.contains("explode") || error.contains("on_stop"), "{error}");
    }
}
