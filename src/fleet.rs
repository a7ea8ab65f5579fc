//! The targets this process watches: the configured ones and those
//! `[[discovery]]` finds now, of its shard (`--shard`, else `[cluster]`).

use crate::cluster::{Shard, ShardError};
use crate::config::FileConfig;
use crate::metrics::Metrics;

/// `base` (the config as read) with the discovered targets added and the
/// other shards' taken out. A discovered target that cannot be watched (a
/// name already taken, an invalid key in the template) is left out, logged
/// with its place and counted in `lbwatch_discovery_errors`; so is a file
/// that cannot be read.
pub fn watched(
    base: &FileConfig,
    discovered: &mut crate::discovery::Discovered,
    cli: Option<Shard>,
    metrics: &Metrics,
) -> Result<FileConfig, ShardError> {
    let mut cfg = base.clone();
    if !base.discovery.is_empty() {
        let errors = discovered.refresh(&base.discovery);
        let mut problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let mut added = 0;
        for t in discovered.targets().cloned() {
            if cfg.targets.iter().any(|k| k.name == t.name) {
                problems.push(format!(
                    "discovery: target {:?} ({}) is already watched under that name; left out",
                    t.name, t.url
                ));
                continue;
            }
            let alone = FileConfig {
                targets: vec![t.clone()],
                notifiers: Vec::new(),
                discovery: Vec::new(),
                ..base.clone()
            };
            let invalid = alone.validate();
            if invalid.is_empty() {
                cfg.targets.push(t);
                added += 1;
            } else {
                let why = invalid.join("; ").replace("targets[0]", "its template");
                problems.push(format!("discovery: target {:?}: {why}; left out", t.name));
            }
        }
        for p in &problems {
            tracing::warn!("{p}");
        }
        metrics.discovery_errors.inc_by(problems.len() as u64);
        metrics.discovered.set(added);
    }
    let shard = match cli {
        Some(s) => Some(s),
        None => Shard::of(&cfg.cluster, &|k| std::env::var(k).ok())?,
    };
    if let Some(s) = shard {
        let all = cfg.targets.len();
        cfg.targets.retain(|t| s.keeps(&t.name));
        tracing::info!(
            "shard {s}: watching {} of {all} target(s)",
            cfg.targets.len()
        );
    }
    Ok(cfg)
}

/// When `[[discovery]]` is next read: the shortest `refresh` from now.
pub fn next_discovery(base: &FileConfig) -> Option<tokio::time::Instant> {
    base.discovery
        .iter()
        .map(|d| d.refresh.0)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.min(r))))
        .map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(s.max(0.1)))
}
