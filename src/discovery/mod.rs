//! `[[discovery]]`: targets from where a fleet keeps them.
//!
//! - Kind `file` reads Prometheus `file_sd` files (JSON or YAML, the same
//!   format and labels), so any service-discovery tool that writes them
//!   feeds lbwatch:
//!
//!   ```json
//!   [{"targets": ["10.0.0.7:8404"], "labels": {"lb": "eu-1", "__metrics_path__": "/stats;csv"}}]
//!   ```
//! - Kind `dns` asks for SRV records (each names a host and a port) or A /
//!   AAAA records (addresses, with the block's `port`), as Prometheus'
//!   `dns_sd_configs` do.
//!
//! Each address becomes a target built from the block's `template` (kind,
//! interval, auth, TLS: any key of `[[targets]]`), named by the label
//! `name_label` (else the address), at `scheme://address path` (the labels
//! `__scheme__` and `__metrics_path__` win, as in Prometheus). The daemon
//! reads every block again every `refresh` (and a `file` block at once
//! when its directory changes: `watch.rs`), off its detector loop, and
//! starts and stops only the targets that changed: removed ones have their
//! alerts resolved, as on reload.

mod dns;
mod file;
mod watch;

pub use watch::{FileWatch, Seen};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::TargetConfig;
use crate::detect::Secs;

/// `[[discovery]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    pub kind: DiscoveryKind,
    /// Kind `file`: file_sd files; `*`, `?` and `[…]` in any path component.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Kind `dns`: the names to ask for (`_stats._tcp.lb.example.com`).
    #[serde(default)]
    pub names: Vec<String>,
    /// Kind `dns`: `SRV` (the default), `A` or `AAAA`.
    #[serde(default, rename = "type")]
    pub record_type: RecordType,
    /// Kind `dns`: the port of A and AAAA records' addresses.
    #[serde(default)]
    pub port: Option<u16>,
    /// Kind `dns`: the servers to ask (`ip:port`); the system's
    /// (`/etc/resolv.conf`) when empty.
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
    /// How often the block is read again.
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
    Dns,
}

/// The DNS records a `dns` block asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    #[default]
    Srv,
    A,
    Aaaa,
}

fn default_refresh() -> Secs {
    Secs(30.0)
}

fn default_scheme() -> String {
    "http".into()
}

impl DiscoveryConfig {
    /// What is wrong with the block, each naming its key (`discovery[i].…`).
    pub fn problems(&self, i: usize) -> Vec<String> {
        let mut errs = Vec::new();
        let mut say = |key: &str, why: &str| errs.push(format!("discovery[{i}].{key}: {why}"));
        match self.kind {
            DiscoveryKind::File if self.files.is_empty() => {
                say("files", "empty: list the file_sd files to read");
            }
            DiscoveryKind::Dns if self.names.is_empty() => {
                say("names", "empty: list the DNS names to ask for");
            }
            DiscoveryKind::Dns if self.record_type != RecordType::Srv && self.port.is_none() => {
                say("port", "missing: A and AAAA records carry no port");
            }
            _ => {}
        }
        if self.kind == DiscoveryKind::File && !self.names.is_empty() {
            say("names", "only kind = \"dns\" takes names");
        }
        if self.kind == DiscoveryKind::Dns && !self.files.is_empty() {
            say("files", "only kind = \"file\" takes files");
        }
        if self.refresh.0 <= 0.0 || !self.refresh.0.is_finite() {
            say(
                "refresh",
                &format!("{}s is invalid: must be above 0", self.refresh.0),
            );
        }
        errs
    }
}

/// Why discovery found no targets in a file or a name.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery[{block}]: {from}: {why}")]
    Source {
        block: usize,
        from: Source,
        why: String,
    },
    /// The address itself is left out: a malformed one may hold
    /// credentials (`user:password@host`).
    #[error("discovery[{block}]: {from}: group {group}, target {index}: {why}")]
    Target {
        block: usize,
        from: Source,
        group: usize,
        index: usize,
        why: String,
    },
}

/// Where a block's targets come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    File(PathBuf),
    Name(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Name(n) => write!(f, "{n}"),
        }
    }
}

/// A source of one block: the block's index and the file or name.
type Key = (usize, Source);

/// One reading of every block: each source's targets, `None` for a source
/// that could not be read (it keeps what it had), and the problems.
#[derive(Debug, Default)]
pub struct Found {
    sources: Vec<(Key, Option<Vec<TargetConfig>>)>,
    pub errors: Vec<DiscoveryError>,
}

impl Found {
    fn add(&mut self, other: Found) {
        self.sources.extend(other.sources);
        self.errors.extend(other.errors);
    }
}

/// Reads every block: files on a blocking thread (a hung network
/// filesystem must not hold the runtime), names through the resolver.
pub async fn read(blocks: &[DiscoveryConfig]) -> Found {
    let owned = blocks.to_vec();
    let mut found = tokio::task::spawn_blocking(move || read_files(&owned))
        .await
        .unwrap_or_default();
    for (b, block) in blocks.iter().enumerate() {
        if block.kind == DiscoveryKind::Dns {
            found.add(dns::read(b, block).await);
        }
    }
    found
}

/// Reads the blocks of kind `file`, here and now.
pub fn read_files(blocks: &[DiscoveryConfig]) -> Found {
    let mut found = Found::default();
    for (b, block) in blocks.iter().enumerate() {
        if block.kind == DiscoveryKind::File {
            found.add(file::read(b, block));
        }
    }
    found
}

/// What the blocks found, source by source. A source that cannot be read
/// keeps the targets it had (as Prometheus does: a half-written file or a
/// DNS server that does not answer must not drop a fleet); a file that is
/// gone, or a name with no records, takes its targets with it.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    by_source: BTreeMap<Key, Vec<TargetConfig>>,
}

impl Discovered {
    /// Takes a reading: the sources it holds replace the old ones.
    pub fn update(&mut self, found: Found) -> Vec<DiscoveryError> {
        let mut next = BTreeMap::new();
        for (key, targets) in found.sources {
            let kept = match targets {
                Some(t) => Some(t),
                None => self.by_source.remove(&key),
            };
            if let Some(t) = kept {
                next.insert(key, t);
            }
        }
        self.by_source = next;
        found.errors
    }

    /// Every target found, block by block, source by source.
    pub fn targets(&self) -> impl Iterator<Item = &TargetConfig> {
        self.by_source.values().flatten()
    }
}

/// The target of one address (`host:port`): the template, its name (by
/// `name_label`, else `fallback`) and URL. Errors never quote the address
/// or the template's values.
fn target(
    block: &DiscoveryConfig,
    labels: &Map<String, Value>,
    address: &str,
) -> Result<TargetConfig, String> {
    let plain =
        !address.is_empty() && !address.contains(|c: char| c.is_whitespace() || "@/?#".contains(c));
    if !plain {
        return Err("not a host:port address".into());
    }
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
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

    fn block(dir: &std::path::Path) -> DiscoveryConfig {
        let template: Map<String, Value> =
            serde_json::from_str(r#"{"kind": "haproxy", "interval": "2s"}"#).unwrap();
        DiscoveryConfig {
            kind: DiscoveryKind::File,
            files: vec![dir.join("*.json"), dir.join("*.yml")],
            names: vec![],
            record_type: RecordType::Srv,
            port: None,
            nameservers: vec![],
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
        let errors = found.update(read_files(&[block(&dir)]));
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
        assert_eq!(found.update(read_files(&[block(&dir)])).len(), 3);
        assert_eq!(got(&found), all);
        std::fs::write(dir.join("b.yml"), "\n").unwrap();
        assert_eq!(found.update(read_files(&[block(&dir)])).len(), 4);
        assert_eq!(got(&found), all);
        std::fs::remove_file(dir.join("a.json")).unwrap();
        found.update(read_files(&[block(&dir)]));
        assert_eq!(got(&found), all[3..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_block_missing_what_its_kind_needs_is_refused_by_key() {
        let problems = |json: Value| -> Vec<String> {
            serde_json::from_value::<DiscoveryConfig>(json)
                .unwrap()
                .problems(2)
        };
        let dns = |extra: Value| {
            let mut v = serde_json::json!({"kind": "dns", "names": ["_s._tcp.x"]});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        assert!(problems(dns(serde_json::json!({}))).is_empty());
        assert_eq!(
            problems(dns(serde_json::json!({"type": "A"}))),
            ["discovery[2].port: missing: A and AAAA records carry no port"]
        );
        assert!(problems(dns(serde_json::json!({"type": "AAAA", "port": 80}))).is_empty());
        assert_eq!(
            problems(serde_json::json!({"kind": "dns"})),
            ["discovery[2].names: empty: list the DNS names to ask for"]
        );
        assert_eq!(
            problems(
                serde_json::json!({"kind": "file", "files": ["a"], "names": ["b"], "refresh": "0s"})
            ),
            [
                "discovery[2].names: only kind = \"dns\" takes names",
                "discovery[2].refresh: 0s is invalid: must be above 0"
            ]
        );
        assert!(
            serde_json::from_value::<DiscoveryConfig>(dns(serde_json::json!({"type": "MX"})))
                .is_err()
        );
    }
}
