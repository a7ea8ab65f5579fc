//! The detector: a pure, synchronous state machine from samples to alert
//! events, `Detector::observe(&Sample) -> Vec<AlertEvent>`.
//!
//! Invariants (checked by `tests/purity.rs` and by clippy's
//! `disallowed-methods`): nothing in this module does I/O, reads a clock or
//! draws a random number. Time is the sample's `ts`; a failed scrape is a
//! sample too. Therefore a replay and a live run that see the same samples
//! emit the same alerts, byte for byte, and every behaviour is testable in
//! microseconds. Targets share no state; pools and servers are kept sorted by
//! name, so neither the order of rows in a scrape nor the order targets
//! interleave in changes the output.
//!
//! Why the statistics look the way they do: naive thresholds page on noise
//! at low traffic and miss slow drifts at high traffic. Every statistical
//! alert needs both significance (a test that scales with the traffic
//! volume) and effect size (a ratio an engineer would care about); baselines
//! are the pool's own history, frozen while an alert of theirs is raised so
//! they never learn the fault. See `skew.rs` and `evidence.rs`.

mod config;
mod denied;
mod drop;
mod emit;
mod evidence;
mod firing;
mod flapping;
mod history;
mod latency;
mod lifecycle;
mod maybe;
mod pool;
mod pool_signals;
mod saturation;
mod server;
mod signals;
mod skew;
mod sparse;
pub mod stats;
mod target;
pub mod text;
mod view;

use std::collections::BTreeMap;

pub use config::{
    DetectConfig, DropConfig, DurationError, ErrorConfig, InvalidValue, Secs, SkewConfig,
};
pub use firing::FiringAlert;
pub use maybe::Maybe;
pub use target::InputStats;
pub use view::{PoolView, ServerView, SignalsView, TargetView};

use crate::model::{AlertEvent, Sample, SampleBody};
use emit::Emit;
use target::TargetState;

/// The detector over any number of targets.
#[derive(Debug)]
pub struct Detector {
    cfg: DetectConfig,
    targets: BTreeMap<Box<str>, TargetState>,
}

impl Detector {
    pub fn new(cfg: DetectConfig) -> Self {
        Detector {
            cfg,
            targets: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// Feeds one sample; returns the alert state changes it caused, in a
    /// deterministic order (target-level, then pools by name, then servers
    /// by name).
    pub fn observe(&mut self, sample: &Sample) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        self.observe_into(sample, &mut out);
        out
    }

    /// As `observe`, appending to `out` (no allocation when nothing changes).
    pub fn observe_into(&mut self, sample: &Sample, out: &mut Vec<AlertEvent>) {
        let name: &str = &sample.target;
        if !self.targets.contains_key(name) {
            self.targets.insert(name.into(), TargetState::new(name));
        }
        let target = self.targets.get_mut(name).expect("inserted above");
        let start = out.len();
        let mut emit = Emit {
            ts: sample.ts,
            target: name,
            out,
        };
        match &sample.body {
            SampleBody::Error(reason) => {
                target.observe_error(&self.cfg, sample.ts, reason, &mut emit)
            }
            SampleBody::Servers(rows) => {
                target.observe_servers(&self.cfg, sample.ts, (rows, &sample.frontends), &mut emit)
            }
        }
        firing::track_firing(&mut target.firing, &out[start..]);
    }

    /// What every target looks like after its latest sample, by name.
    pub fn view(&self) -> Vec<TargetView> {
        self.targets.values().map(view::target_view).collect()
    }

    /// One target's view.
    pub fn target_view(&self, target: &str) -> Option<TargetView> {
        self.targets.get(target).map(view::target_view)
    }

    /// One target's view without its pools' servers.
    pub fn target_summary(&self, target: &str) -> Option<TargetView> {
        self.targets.get(target).map(view::target_summary)
    }

    /// The name the detector keeps for a server, to share rather than
    /// copy (a fleet's 100,000 names are 2.4 MB a copy).
    pub fn server_name(
        &self,
        target: &str,
        pool: &str,
        server: &str,
    ) -> Option<std::sync::Arc<str>> {
        self.targets.get(target)?.server_name(pool, server)
    }

    /// Alerts firing now, by target, then in the order they fired.
    pub fn firing(&self) -> impl Iterator<Item = &FiringAlert> {
        self.targets.values().flat_map(|t| t.firing.iter())
    }

    /// Alerts of `target` firing now, in the order they fired.
    pub fn firing_of(&self, target: &str) -> impl Iterator<Item = &FiringAlert> {
        self.targets
            .get(target)
            .into_iter()
            .flat_map(|t| t.firing.iter())
    }

    /// Names of the targets seen so far.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.targets.keys().map(|k| &**k)
    }

    /// One target's whole state, to resume from after a restart: the
    /// baselines, the evidence and every alert's phase, so a restarted
    /// lbwatch neither pages again for what it already raised nor misses a
    /// resolve, nor relearns a baseline during a fault.
    pub fn snapshot(&self, target: &str) -> Option<Vec<u8>> {
        let state = self.targets.get(target)?;
        postcard::to_allocvec(&(SNAPSHOT_VERSION, state)).ok()
    }

    /// Restores a target from `snapshot`; returns its name.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<String, SnapshotError> {
        let (version, mut state): (u32, TargetState) =
            postcard::from_bytes(snapshot).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(version));
        }
        state.repair();
        let name = state.name.to_string();
        self.targets.insert(state.name.clone(), state);
        Ok(name)
    }

    /// Forgets a target (removed from the configuration).
    pub fn forget(&mut self, target: &str) -> Option<Vec<FiringAlert>> {
        self.targets.remove(target).map(|t| t.firing)
    }

    /// Input the detector set aside, summed over targets.
    pub fn input_stats(&self) -> InputStats {
        self.targets
            .values()
            .fold(InputStats::default(), |a, t| a.plus(&t.stats))
    }

    /// Input the detector set aside for `target`.
    pub fn input_stats_of(&self, target: &str) -> InputStats {
        self.targets
            .get(target)
            .map_or_else(InputStats::default, |t| t.stats)
    }
}

/// Bumped whenever the layout of the detector's state changes: a snapshot
/// of another layout is refused rather than misread.
const SNAPSHOT_VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("the snapshot is unreadable: {0}")]
    Corrupt(String),
    #[error("the snapshot has layout version {0}, this lbwatch reads version {SNAPSHOT_VERSION}")]
    Version(u32),
}
