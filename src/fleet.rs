//! The targets this process watches: the configured ones and those
//! `[[discovery]]` finds now, of its shard (`--shard`, else `[cluster]`).

use std::collections::BTreeSet;

use crate::cluster::{Shard, ShardError};
use crate::config::{FileConfig, TargetConfig};
use crate::discovery::{Discovered, Found};
use crate::metrics::Metrics;

/// What discovery last said was wrong, so each problem is logged once,
/// when it appears, not at every refresh.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub discovered: Discovered,
    problems: BTreeSet<String>,
}

/// `base` (the config as read) with the targets discovery `found` added
/// and the other shards' taken out, and what discovery would keep if this
/// config is applied (`seen` is left as it was: the caller keeps the new
/// one only once the config runs). No I/O: `found` was read before.
pub fn watched(
    base: &FileConfig,
    seen: &Seen,
    found: Found,
    cli: Option<Shard>,
    metrics: &Metrics,
) -> Result<(FileConfig, Seen), ShardError> {
    let mut cfg = base.clone();
    let mut next = seen.clone();
    let (added, problems) = discover(&mut cfg, &mut next.discovered, found);
    for p in problems.difference(&seen.problems) {
        tracing::warn!("{p}");
    }
    metrics.discovery_errors.inc_by(problems.len() as u64);
    metrics.discovered.set(added as i64);
    next.problems = problems;
    let shard = match cli {
        Some(s) => Some(s),
        None => Shard::of(&cfg.cluster, &|k| std::env::var(k).ok())?,
    };
    if let Some(s) = shard {
        let all = cfg.targets.len();
        cfg.targets.retain(|t| s.keeps(&t.name));
        tracing::debug!(
            "shard {s}: watching {} of {all} target(s)",
            cfg.targets.len()
        );
    }
    Ok((cfg, next))
}

/// Whether two lists hold the same targets, in any order: a discovery tool
/// that writes its groups in another order changes nothing. (The lists keep
/// the file's order: errors and warnings name `targets[i]` by it.)
pub fn same_targets(a: &[TargetConfig], b: &[TargetConfig]) -> bool {
    fn sorted(l: &[TargetConfig]) -> Vec<&TargetConfig> {
        let mut v: Vec<&TargetConfig> = l.iter().collect();
        v.sort_by(|x, y| x.name.cmp(&y.name));
        v
    }
    a.len() == b.len() && sorted(a) == sorted(b)
}

/// Adds what `[[discovery]]` finds to `cfg`: how many, and the problems. A
/// target that cannot be watched (a name already taken, an invalid key in
/// the template) is left out, as is a file that cannot be read.
fn discover(
    cfg: &mut FileConfig,
    discovered: &mut Discovered,
    found: Found,
) -> (usize, BTreeSet<String>) {
    if cfg.discovery.is_empty() {
        return (0, BTreeSet::new());
    }
    let mut problems: BTreeSet<String> = discovered
        .update(found)
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut names: BTreeSet<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
    let mut added = 0;
    for t in discovered.targets() {
        match admissible(t, &names) {
            Ok(()) => {
                names.insert(t.name.clone());
                cfg.targets.push(t.clone());
                added += 1;
            }
            Err(why) => {
                problems.insert(format!("discovery: target {:?}: {why}; left out", t.name));
            }
        }
    }
    (added, problems)
}

/// Whether a discovered target can be watched: a name of its own, and
/// keys that would pass in `[[targets]]`.
fn admissible(t: &TargetConfig, taken: &BTreeSet<String>) -> Result<(), String> {
    if taken.contains(&t.name) {
        return Err(format!("{} is already watched under that name", t.url));
    }
    let alone = FileConfig {
        targets: vec![t.clone()],
        ..FileConfig::default()
    };
    let invalid = alone.validate();
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(invalid.join("; "))
    }
}

/// How long after a watched file changes it is read: a tool that writes
/// several files, or one in several steps, wakes one reading.
pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// The sooner of two times, either unset.
pub fn sooner(
    a: Option<tokio::time::Instant>,
    b: Option<tokio::time::Instant>,
) -> Option<tokio::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When `[[discovery]]` is next read: every block at the shortest
/// `refresh`, from now.
pub fn next_discovery(base: &FileConfig) -> Option<tokio::time::Instant> {
    base.discovery
        .iter()
        .map(|d| d.refresh.0)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.min(r))))
        .map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(s.max(0.1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, url: &str) -> TargetConfig {
        serde_json::from_value(serde_json::json!({"name": name, "kind": "haproxy", "url": url}))
            .unwrap()
    }

    #[test]
    fn the_same_targets_in_another_order_are_the_same() {
        let (a, b) = (target("a", "http://h:1/"), target("b", "http://h:2/"));
        assert!(same_targets(
            &[a.clone(), b.clone()],
            &[b.clone(), a.clone()]
        ));
        assert!(!same_targets(
            std::slice::from_ref(&a),
            &[a.clone(), b.clone()]
        ));
        let moved = target("b", "http://h:3/");
        assert!(!same_targets(&[a.clone(), b], &[moved, a]));
    }
}
