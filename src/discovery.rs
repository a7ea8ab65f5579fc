//! `[[discovery]]`: targets from where a fleet keeps them. Kind `file`
//! reads Prometheus `file_sd` files (JSON or YAML, the same format and
//! labels), so any service-discovery tool that writes them feeds lbwatch:
//!
//! ```json
//! [{"targets": ["10.0.0.7:8404"], "labels": {"lb": "eu-1", "__metrics_path__": "/stats;csv"}}]
//! ```
//!
//! Each address becomes a target built from the block's `template` (kind,
//! interval, auth, TLS: any key of `[[targets]]`), named by the label
//! `name_label` (else the address), at `scheme://address path` (the labels
//! `__scheme__` and `__metrics_path__` win, as in Prometheus). The daemon
//! reads the files again every `refresh` and applies a change as a reload
//! does: new targets start, removed ones have their alerts resolved.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::TargetConfig;
use crate::detect::Secs;

/// `[[discovery]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    pub kind: DiscoveryKind,
    /// file_sd files; `*`, `?` and `[…]` in any path component.
    pub files: Vec<PathBuf>,
    /// How often the files are read again.
    #[serde(default = "default_refresh")]
    pub refresh: Secs,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// The stats page's path on each address (e.g. `/stats;csv`).
    #[serde(default)]
    pub path: String,
    /// The label whose value names the target; the address when unset or
    /// missing.
    #[serde(default)]
    pub name_label: Option<String>,
    /// Keys every discovered target takes, as in `[[targets]]`.
    #[serde(default)]
    pub template: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryKind {
    File,
}

fn default_refresh() -> Secs {
    Secs(30.0)
}

fn default_scheme() -> String {
    "http".into()
}

/// Why discovery found no targets in a file.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery[{block}]: {path}: {why}")]
    File {
        block: usize,
        path: PathBuf,
        why: String,
    },
    /// The address itself is left out: a malformed one may hold
    /// credentials (`user:password@host`).
    #[error("discovery[{block}]: {path}: group {group}, target {index}: {why}")]
    Target {
        block: usize,
        path: PathBuf,
        group: usize,
        index: usize,
        why: String,
    },
}

/// One file_sd group.
#[derive(Debug, Deserialize)]
struct Group {
    targets: Vec<String>,
    #[serde(default)]
    labels: Map<String, Value>,
}

/// What the blocks found, file by file. A file that cannot be read keeps
/// the targets it had (as Prometheus does: a half-written file must not
/// drop a fleet); a file that is gone takes its targets with it.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    by_file: std::collections::BTreeMap<(usize, PathBuf), Vec<TargetConfig>>,
}

impl Discovered {
    /// Reads every block's files again; the errors of the files and
    /// entries that could not be read (the others still count).
    pub fn refresh(&mut self, blocks: &[DiscoveryConfig]) -> Vec<DiscoveryError> {
        let mut errors = Vec::new();
        let mut next = std::collections::BTreeMap::new();
        for (b, block) in blocks.iter().enumerate() {
            for path in block.files.iter().flat_map(|p| crate::glob::glob(p)) {
                let key = (b, path.clone());
                match read_groups(&path) {
                    Ok(groups) => {
                        let targets = targets(b, block, &path, &groups, &mut errors);
                        next.insert(key, targets);
                    }
                    Err(why) => {
                        errors.push(DiscoveryError::File {
                            block: b,
                            path,
                            why,
                        });
                        if let Some(kept) = self.by_file.remove(&key) {
                            next.insert(key, kept);
                        }
                    }
                }
            }
        }
        self.by_file = next;
        errors
    }

    /// Every target found, block by block, file by file.
    pub fn targets(&self) -> impl Iterator<Item = &TargetConfig> {
        self.by_file.values().flatten()
    }
}

/// The targets of one file's groups.
fn targets(
    b: usize,
    block: &DiscoveryConfig,
    path: &Path,
    groups: &[Group],
    errors: &mut Vec<DiscoveryError>,
) -> Vec<TargetConfig> {
    let mut found = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for (index, address) in group.targets.iter().enumerate() {
            match target(block, group, address) {
                Ok(t) => found.push(t),
                Err(why) => errors.push(DiscoveryError::Target {
                    block: b,
                    path: path.to_path_buf(),
                    group: g,
                    index,
                    why,
                }),
            }
        }
    }
    found
}

/// A file's groups: JSON, or YAML for `.yml`/`.yaml`.
fn read_groups(path: &Path) -> Result<Vec<Group>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    // An empty file is one being written (or truncated by mistake): YAML
    // would read it as no groups, and drop every target it had.
    if text.trim().is_empty() {
        return Err("empty".into());
    }
    let yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml");
    if yaml {
        serde_yaml::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }
}

/// The target of one address (`host:port`): the template, its name and
/// URL. Errors never quote the address or the template's values.
fn target(block: &DiscoveryConfig, group: &Group, address: &str) -> Result<TargetConfig, String> {
    let plain =
        !address.is_empty() && !address.contains(|c: char| c.is_whitespace() || "@/?#".contains(c));
    if !plain {
        return Err("not a host:port address".into());
    }
    let label = |k: &str| group.labels.get(k).and_then(Value::as_str);
    let name = block
        .name_label
        .as_deref()
        .and_then(label)
        .unwrap_or(address);
    let scheme = label("__scheme__").unwrap_or(&block.scheme);
    let path = label("__metrics_path__").unwrap_or(&block.path);
    let mut t = block.template.clone();
    t.insert("name".into(), Value::String(name.to_string()));
    t.insert(
        "url".into(),
        Value::String(format!("{scheme}://{address}{path}")),
    );
    serde_json::from_value(Value::Object(t))
        .map_err(|e| crate::config::without_values(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(dir: &Path) -> DiscoveryConfig {
        let template: Map<String, Value> =
            serde_json::from_str(r#"{"kind": "haproxy", "interval": "2s"}"#).unwrap();
        DiscoveryConfig {
            kind: DiscoveryKind::File,
            files: vec![dir.join("*.json"), dir.join("*.yml")],
            refresh: Secs(5.0),
            scheme: "http".into(),
            path: "/stats;csv".into(),
            name_label: Some("lb".into()),
            template,
        }
    }

    #[test]
    fn file_sd_groups_become_targets_named_by_their_label() {
        let dir = std::env::temp_dir().join(format!("lbwatch-sd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.json"),
            r#"[{"targets": ["10.0.0.7:8404"], "labels": {"lb": "eu-1"}},
                {"targets": ["10.0.0.8:8404", "10.0.0.9:8404"],
                 "labels": {"__scheme__": "https", "__metrics_path__": "/s"}}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("b.yml"),
            "- targets: ['10.0.1.1:80']\n  labels:\n    lb: us-1\n",
        )
        .unwrap();
        std::fs::write(dir.join("c.json"), "not json").unwrap();
        std::fs::write(
            dir.join("d.json"),
            r#"[{"targets": ["admin:s3cret@10.0.0.5:8404"]}]"#,
        )
        .unwrap();
        let mut found = Discovered::default();
        let errors = found.refresh(&[block(&dir)]);
        let got = |found: &Discovered| -> Vec<(String, String, f64)> {
            found
                .targets()
                .map(|t| (t.name.clone(), t.url.expose().to_string(), t.interval.0))
                .collect()
        };
        let all: Vec<(String, String, f64)> = vec![
            ("eu-1".into(), "http://10.0.0.7:8404/stats;csv".into(), 2.0),
            (
                "10.0.0.8:8404".into(),
                "https://10.0.0.8:8404/s".into(),
                2.0,
            ),
            (
                "10.0.0.9:8404".into(),
                "https://10.0.0.9:8404/s".into(),
                2.0,
            ),
            ("us-1".into(), "http://10.0.1.1:80/stats;csv".into(), 2.0),
        ];
        assert_eq!(got(&found), all);
        assert_eq!(errors.len(), 2, "{errors:?}");
        let e = errors[0].to_string();
        assert!(
            e.starts_with("discovery[0]: ") && e.contains("c.json"),
            "{e}"
        );
        let e = errors[1].to_string();
        assert!(
            e.contains("d.json: group 0, target 0: not a host:port"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        // A file half-written or empty keeps its targets; a file removed
        // drops them.
        std::fs::write(dir.join("a.json"), "[{").unwrap();
        assert_eq!(found.refresh(&[block(&dir)]).len(), 3);
        assert_eq!(got(&found), all);
        std::fs::write(dir.join("b.yml"), "\n").unwrap();
        assert_eq!(found.refresh(&[block(&dir)]).len(), 4);
        assert_eq!(got(&found), all);
        std::fs::remove_file(dir.join("a.json")).unwrap();
        found.refresh(&[block(&dir)]);
        assert_eq!(got(&found), all[3..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
