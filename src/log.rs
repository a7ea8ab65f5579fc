//! lbwatch's own logs: `tracing`, written to stderr by `tracing-subscriber`
//! (journald and container runtimes keep it), as text for people or JSON
//! Lines for log pipelines. Levels come from `[log] level`, overridden by
//! `RUST_LOG`. Scrapes run in a `scrape{target=...}` span, deliveries in a
//! `deliver{notifier=...}` span. Secrets never reach a log: they are `Secret`s,
//! and URLs are shown as scheme and host (`secret::redact`).

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per event for people: time, level, span, message.
    #[default]
    Text,
    /// One JSON object per event, for log pipelines.
    Json,
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or `RUST_LOG`
    /// directives (`info,lbwatch::notify=debug`); `RUST_LOG` wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl LogConfig {
    /// Why `level` is not a filter, if it is not.
    pub fn invalid_level(&self) -> Option<String> {
        EnvFilter::try_new(&self.level).err().map(|e| e.to_string())
    }
}

/// Starts logging; `format` overrides the config's (`--log-format`). Only
/// the first call in a process takes effect.
pub fn init(cfg: &LogConfig, format: Option<LogFormat>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let _ = match format.unwrap_or(cfg.format) {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
