//! The configuration file: TOML, with `LBWATCH__SECTION__KEY` environment
//! overrides, read with the `config` crate and validated as a whole before
//! anything starts. Every error names its key path and value, and all of
//! them are reported at once.

use std::path::{Path, PathBuf};

use config::{Environment, File, FileFormat};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::detect::DetectConfig;

/// The whole file. Sections this version does not interpret yet are
/// accepted (the same file serves every command) but not read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub detection: DetectConfig,
    #[serde(default)]
    pub http: Option<IgnoredAny>,
    #[serde(default)]
    pub targets: Option<IgnoredAny>,
    #[serde(default)]
    pub notifiers: Option<IgnoredAny>,
}

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
    let errors: Vec<String> = cfg
        .detection
        .validate()
        .iter()
        .map(ToString::to_string)
        .collect();
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(invalid(errors))
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
