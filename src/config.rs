//! The configuration file: TOML, with `LBWATCH__SECTION__KEY` environment
//! overrides, read with the `config` crate and validated as a whole before
//! anything starts. Every error names its key path and value, and all of
//! them are reported at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Environment, File, FileFormat};
use serde::Deserialize;

use crate::detect::{DetectConfig, Secs};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub notifiers: Vec<NotifierConfig>,
    #[serde(default)]
    pub detection: DetectConfig,
}

/// `[http]`: lbwatch's own listener (/metrics, /healthz).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Loopback unless told otherwise: the stats of a load balancer are
    /// nobody else's business.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9847".into(),
        }
    }
}

/// `[[targets]]`: one load balancer's stats endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Appears as `target` in samples, alerts and metrics.
    pub name: String,
    /// The stats format.
    pub kind: String,
    /// `http(s)://...` or `unix:///path/to/admin.sock` (HAProxy runtime API).
    pub url: String,
    #[serde(default = "default_interval")]
    pub interval: Secs,
    /// Per scrape; default: the interval, at most 10 s.
    #[serde(default)]
    pub timeout: Option<Secs>,
    /// A larger response is cut off and the scrape counted as failed.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// HTTP basic auth; the password comes from a file or the environment,
    /// never from this file, and never appears in logs or errors.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// For `kind = "prometheus"`: which metrics and labels are what.
    #[serde(default)]
    pub mapping: Option<crate::source::prometheus::Mapping>,
}

fn default_interval() -> Secs {
    Secs(5.0)
}

fn default_max_response_bytes() -> u64 {
    16 << 20
}

impl TargetConfig {
    pub fn timeout(&self) -> Secs {
        self.timeout.unwrap_or(Secs(self.interval.0.min(10.0)))
    }
}

/// `[[notifiers]]`: where alert events go besides stdout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub kind: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub routing_key_env: Option<String>,
}

/// Notifiers this version delivers to.
pub const NOTIFIER_KINDS: &[&str] = &["webhook"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {}", errors.join("; "))]
    Invalid { path: PathBuf, errors: Vec<String> },
}

impl ConfigError {
    /// Every problem found, one per line, each prefixed with the file.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![self.to_string()],
            ConfigError::Invalid { path, errors } => errors
                .iter()
                .map(|e| format!("{}: {e}", path.display()))
                .collect(),
        }
    }
}

/// Reads `path` with overrides from the process environment.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// Reads `path` with overrides from `env` (`LBWATCH__DETECTION__SKEW__HOT_RATIO=3`).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let overrides: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("LBWATCH__"))
        .collect();
    let invalid = |errors: Vec<String>| ConfigError::Invalid {
        path: path.to_path_buf(),
        errors,
    };
    let built = config::Config::builder()
        .add_source(File::from_str(&text, FileFormat::Toml))
        .add_source(
            Environment::with_prefix("LBWATCH")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(overrides)),
        )
        .build()
        .map_err(|e| invalid(vec![e.to_string()]))?;
    let cfg: FileConfig = built
        .try_deserialize()
        .map_err(|e| invalid(vec![e.to_string()]))?;
    let errors = cfg.validate();
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(invalid(errors))
    }
}

impl FileConfig {
    /// Every problem of the whole file, each naming its key path and value.
    pub fn validate(&self) -> Vec<String> {
        let mut errs: Vec<String> = self
            .detection
            .validate()
            .iter()
            .map(ToString::to_string)
            .collect();
        if self.http.listen.parse::<SocketAddr>().is_err() {
            errs.push(format!(
                "http.listen: {:?} is invalid: expected an address and port like \"127.0.0.1:9847\"",
                self.http.listen
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let key = |k: &str| format!("targets[{i}].{k}");
            if t.name.trim().is_empty() {
                errs.push(format!(
                    "{}: {:?} is invalid: a target needs a name",
                    key("name"),
                    t.name
                ));
            } else if !names.insert(t.name.clone()) {
                errs.push(format!(
                    "{}: {:?} is invalid: another target has that name",
                    key("name"),
                    t.name
                ));
            }
            if let Err(why) = crate::source::build(&t.kind, t.mapping.as_ref()) {
                errs.push(format!("{}: {:?} is invalid: {why}", key("kind"), t.kind));
            }
            if let Err(why) = crate::fetch::Endpoint::parse(&t.url) {
                errs.push(format!(
                    "{}: {:?} is invalid: {why}",
                    key("url"),
                    crate::fetch::redact(&t.url)
                ));
            }
            if !(t.interval.0.is_finite() && t.interval.0 >= 0.1) {
                errs.push(format!(
                    "{}: {} is invalid: at least 100ms",
                    key("interval"),
                    t.interval
                ));
            }
            let timeout = t.timeout();
            if !(timeout.0.is_finite() && timeout.0 > 0.0) {
                errs.push(format!(
                    "{}: {timeout} is invalid: a positive duration",
                    key("timeout")
                ));
            }
            if t.max_response_bytes < 1024 {
                errs.push(format!(
                    "{}: {} is invalid: at least 1024",
                    key("max_response_bytes"),
                    t.max_response_bytes
                ));
            }
            if t.password_file.is_some() && t.password_env.is_some() {
                errs.push(format!(
                    "{}: set password_file or password_env, not both",
                    key("password_file")
                ));
            }
            if (t.password_file.is_some() || t.password_env.is_some()) && t.username.is_none() {
                errs.push(format!("{}: a password needs a username", key("username")));
            }
        }
        for (i, n) in self.notifiers.iter().enumerate() {
            let key = |k: &str| format!("notifiers[{i}].{k}");
            if !NOTIFIER_KINDS.contains(&n.kind.as_str()) {
                errs.push(format!(
                    "{}: {:?} is invalid: supported kinds are {}",
                    key("kind"),
                    n.kind,
                    NOTIFIER_KINDS.join(", ")
                ));
                continue;
            }
            match &n.url {
                None => errs.push(format!("{}: missing: a webhook needs a url", key("url"))),
                Some(u) => match crate::fetch::Endpoint::parse(u) {
                    Ok(crate::fetch::Endpoint::Http(_)) => {}
                    Ok(_) => errs.push(format!(
                        "{}: {:?} is invalid: a webhook is http(s)://",
                        key("url"),
                        crate::fetch::redact(u)
                    )),
                    Err(why) => errs.push(format!(
                        "{}: {:?} is invalid: {why}",
                        key("url"),
                        crate::fetch::redact(u)
                    )),
                },
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Secs;

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<FileConfig, ConfigError> {
        let dir = std::env::temp_dir().join(format!("lbwatch-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.toml", text.len() * 31 + env.len()));
        std::fs::write(&path, text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let r = load_with_env(&path, env);
        std::fs::remove_file(&path).unwrap();
        r
    }

    #[test]
    fn the_minimal_config_of_the_interface_is_accepted() {
        let cfg = load_text(
            r#"
[http]
listen = "127.0.0.1:9847"

[[targets]]
name = "lb1"
kind = "haproxy"
url = "http://127.0.0.1:8404/stats;csv"
interval = "1s"

[[notifiers]]
kind = "webhook"
url = "http://127.0.0.1:9999/hook"
"#,
            &[],
        )
        .unwrap();
        assert_eq!(cfg.detection, DetectConfig::default());
    }

    #[test]
    fn detection_settings_and_environment_overrides_apply() {
        let cfg = load_text(
            "[detection]\nresolve_after = \"2m\"\n[detection.skew]\nhot_ratio = 3.0\n",
            &[("LBWATCH__DETECTION__DROP__RATIO", "0.2"), ("OTHER", "x")],
        )
        .unwrap();
        assert_eq!(cfg.detection.resolve_after, Secs(120.0));
        assert_eq!(cfg.detection.skew.hot_ratio, 3.0);
        assert_eq!(cfg.detection.drop.ratio, 0.2);
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let e = load_text("[detection.skew]\nhot_ration = 3.0\n", &[]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("hot_ration"), "{msg}");
        let e = load_text("[detectoin]\n", &[]).unwrap_err();
        assert!(e.to_string().contains("detectoin"), "{e}");
    }

    #[test]
    fn invalid_values_are_all_reported_with_their_key_path() {
        let e = load_text(
            "[detection.skew]\nhot_ratio = 0.5\n[detection.errors]\nsignificance = 7\n",
            &[],
        )
        .unwrap_err();
        let lines = e.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("detection.skew.hot_ratio: 0.5")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("detection.errors.significance: 7")),
            "{lines:?}"
        );
        let e = load_text("[detection]\nresolve_after = \"soon\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("\"soon\""), "{e}");
    }

    #[test]
    fn the_documented_example_holds_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lbwatch.toml");
        let cfg = load_with_env(&path, []).unwrap();
        assert_eq!(cfg.detection, DetectConfig::default());
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let e = load(Path::new("/nonexistent/lbwatch.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/lbwatch.toml: cannot read"),
            "{e}"
        );
    }
}
