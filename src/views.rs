//! What the HTTP listener shows (`/metrics`, `/api`, `/ready`, the status
//! page): a read-only copy of each target's view and firing alerts,
//! published by the task that owns the detector after each sample. Readers
//! take the latest copy and never wait on detection, nor detection on them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::detect::{Detector, InputStats, TargetView};
use crate::model::{AlertEvent, Sample, SampleBody};
use crate::pipeline::{Sink, SinkError};

/// One target as of its latest sample.
#[derive(Debug)]
pub struct TargetSnapshot {
    pub view: TargetView,
    pub firing: Vec<AlertEvent>,
    /// Input the detector set aside.
    pub input: InputStats,
    /// Scraped (successfully or not) since lbwatch started; a target
    /// restored from saved state is not, until its first scrape.
    pub scraped: bool,
    /// Its latest stats list no server: nothing to watch.
    pub empty: bool,
    /// When each pool last had an alert firing (`[metrics] per_server`).
    pub alerting: crate::cardinality::Alerting,
}

/// Every target, by name. Cheap to clone: each target is shared.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub targets: BTreeMap<String, Arc<TargetSnapshot>>,
}

impl Fleet {
    /// The targets of a detector restored from saved state.
    pub fn restored(detector: &Detector) -> Fleet {
        let mut fleet = Fleet::default();
        for name in detector.targets() {
            fleet.put(detector, name, false, false);
        }
        fleet
    }

    fn put(&mut self, detector: &Detector, target: &str, scraped: bool, empty: bool) {
        let Some(view) = detector.target_view(target) else {
            self.targets.remove(target);
            return;
        };
        let firing: Vec<AlertEvent> = detector.firing_of(target).map(|a| a.event()).collect();
        let alerting = self
            .targets
            .get(target)
            .map(|t| t.alerting.clone())
            .unwrap_or_default()
            .after(&firing, view.last_sample);
        let snap = TargetSnapshot {
            view,
            firing,
            input: detector.input_stats_of(target),
            scraped,
            empty,
            alerting,
        };
        self.targets.insert(target.to_string(), Arc::new(snap));
    }

    /// Every alert firing now, by target.
    pub fn firing(&self) -> impl Iterator<Item = &AlertEvent> {
        self.targets.values().flat_map(|t| t.firing.iter())
    }
}

/// Publishes each target's snapshot after its sample.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: Arc<tokio::sync::watch::Sender<Fleet>>,
}

impl Publisher {
    pub fn new(fleet: Fleet) -> (Publisher, tokio::sync::watch::Receiver<Fleet>) {
        let (tx, rx) = tokio::sync::watch::channel(fleet);
        (Publisher { tx: Arc::new(tx) }, rx)
    }

    /// The fleet as the detector now has it (after a reload forgot
    /// targets or changed settings), scraped flags kept.
    pub fn refresh(&self, detector: &Detector) {
        self.tx.send_modify(|fleet| {
            let old = std::mem::take(&mut fleet.targets);
            for name in detector.targets() {
                let (scraped, empty) = old
                    .get(name)
                    .map_or((false, false), |t| (t.scraped, t.empty));
                fleet.put(detector, name, scraped, empty);
            }
        });
    }
}

impl Sink for Publisher {
    fn take(
        &mut self,
        sample: &Sample<'_>,
        _: &[AlertEvent],
        detector: &Detector,
    ) -> Result<(), SinkError> {
        let target = &*sample.target;
        let empty = match &sample.body {
            SampleBody::Servers(rows) => rows.is_empty(),
            SampleBody::Error(_) => self
                .tx
                .borrow()
                .targets
                .get(target)
                .is_some_and(|t| t.empty),
        };
        self.tx
            .send_modify(|fleet| fleet.put(detector, target, true, empty));
        Ok(())
    }
}
