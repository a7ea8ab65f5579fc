//! Kind `file`: Prometheus `file_sd` files, JSON or YAML.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{DiscoveryConfig, DiscoveryError, Found, Source};

/// One file_sd group.
#[derive(Debug, Deserialize)]
struct Group {
    targets: Vec<String>,
    #[serde(default)]
    labels: Map<String, Value>,
}

/// Reads block `b`'s files (its globs expanded now).
pub(super) fn read(b: usize, block: &DiscoveryConfig) -> Found {
    let mut found = Found::default();
    for path in block.files.iter().flat_map(|p| crate::glob::glob(p)) {
        let source = Source::File(path.clone());
        match read_groups(&path) {
            Ok(groups) => {
                let targets = targets(b, block, &source, &groups, &mut found.errors);
                found.sources.push(((b, source), Some(targets)));
            }
            Err(why) => {
                found.errors.push(DiscoveryError::Source {
                    block: b,
                    from: source.clone(),
                    why,
                });
                found.sources.push(((b, source), None));
            }
        }
    }
    found
}

/// The targets of one file's groups.
fn targets(
    b: usize,
    block: &DiscoveryConfig,
    source: &Source,
    groups: &[Group],
    errors: &mut Vec<DiscoveryError>,
) -> Vec<crate::config::TargetConfig> {
    let mut found = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for (index, address) in group.targets.iter().enumerate() {
            match super::target(block, &group.labels, address) {
                Ok(t) => found.push(t),
                Err(why) => errors.push(DiscoveryError::Target {
                    block: b,
                    from: source.clone(),
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
