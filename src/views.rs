//! What the HTTP listener shows (`/metrics`, `/api`, `/ready`, the status
//! page): a read-only copy of each target's summary (its pools' figures)
//! and firing alerts, published by the task that owns the detector after
//! each sample. Readers take the latest copy without waiting on detection.
//!
//! A server's own figures are not copied after each sample: a fleet's
//! 100,000 servers would be kept twice, most of the time for nobody. A
//! reader that shows them asks the detector's loop (`Asker`), which
//! builds them between two samples: that reader waits for the loop (5 s
//! at most), and the loop spends the time of building them (see
//! ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::detect::{Detector, InputStats, TargetView};
use crate::model::{AlertEvent, Sample, SampleBody};
use crate::pipeline::{Sink, SinkError};

/// One target as of its latest sample.
#[derive(Debug)]
pub struct TargetSnapshot {
    /// Its summary: pools without their servers (`Asker` for those).
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
        let Some(view) = detector.target_summary(target) else {
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

/// A reader's request for the full views (every server) of some targets,
/// answered by the loop that owns the detector.
#[derive(Debug)]
pub struct Ask {
    targets: Vec<String>,
    reply: std::sync::mpsc::SyncSender<Vec<TargetView>>,
    /// When the reader stops waiting.
    until: std::time::Instant,
}

impl Ask {
    /// The views of the targets asked for that the detector has; none
    /// built for a reader that stopped waiting (false).
    pub fn answer(self, detector: &Detector) -> bool {
        if crate::clock::monotonic() >= self.until {
            return false;
        }
        // A reader that gave up since takes nothing.
        self.reply.send(full_views(detector, &self.targets)).is_ok()
    }
}

/// The full views (every server) of those of `targets` the detector has,
/// in that order: what a reader of servers is given.
pub fn full_views(detector: &Detector, targets: &[String]) -> Vec<TargetView> {
    targets
        .iter()
        .filter_map(|t| detector.target_view(t))
        .collect()
}

/// Why a reader got no servers from the detector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    #[error("the detector is not running")]
    Stopped,
    #[error("{ASKS_WAITING} requests for servers already wait on the detector")]
    Busy,
    #[error("the detector did not answer within {0:?}")]
    Timeout(Duration),
}

impl AskError {
    /// The `reason` label of `lbwatch_server_views_unanswered`.
    pub fn reason(&self) -> &'static str {
        match self {
            AskError::Stopped => "stopped",
            AskError::Busy => "busy",
            AskError::Timeout(_) => "timeout",
        }
    }
}

/// Asks the detector's loop for full views, from a reader's own thread
/// (the HTTP handlers run on tokio's blocking pool).
#[derive(Debug, Clone)]
pub struct Asker {
    tx: tokio::sync::mpsc::Sender<Ask>,
    wait: Duration,
}

/// Requests that may wait on the detector at once; a reader past them is
/// told the detector is busy rather than queued behind them.
const ASKS_WAITING: usize = 8;

impl Asker {
    /// An asker that waits `wait` for each answer, and the receiving end
    /// the detector's loop answers from.
    pub fn channel(wait: Duration) -> (Asker, tokio::sync::mpsc::Receiver<Ask>) {
        let (tx, rx) = tokio::sync::mpsc::channel(ASKS_WAITING);
        (Asker { tx, wait }, rx)
    }

    /// The full views of `targets` (those the detector has, in that
    /// order). Blocks the calling thread: never call it from a task.
    pub fn views(&self, targets: Vec<String>) -> Result<Vec<TargetView>, AskError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let until = crate::clock::monotonic() + self.wait;
        self.tx
            .try_send(Ask {
                targets,
                reply,
                until,
            })
            .map_err(|e| match e {
                tokio::sync::mpsc::error::TrySendError::Full(_) => AskError::Busy,
                tokio::sync::mpsc::error::TrySendError::Closed(_) => AskError::Stopped,
            })?;
        answer.recv_timeout(self.wait).map_err(|e| match e {
            std::sync::mpsc::RecvTimeoutError::Timeout => AskError::Timeout(self.wait),
            // Dropped unanswered: the loop stopped with it waiting.
            std::sync::mpsc::RecvTimeoutError::Disconnected => AskError::Stopped,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::detect::DetectConfig;
    use crate::model::{ServerStat, Timestamp};

    /// A detector that saw one sample of target "lb": servers a and b of
    /// pool "web".
    pub(crate) fn detector() -> Detector {
        let row = |name: &str| ServerStat {
            pool: "web".into(),
            server: name.to_string().into(),
            requests_total: 10,
            up: true,
            weight: 1.0,
            ..Default::default()
        };
        let mut d = Detector::new(DetectConfig::default());
        d.observe(&Sample {
            ts: Timestamp::from_micros(1_700_000_000_000_000),
            target: "lb".into(),
            body: SampleBody::Servers(vec![row("a"), row("b")]),
            frontends: Vec::new(),
        });
        d
    }

    #[test]
    fn the_snapshot_keeps_pools_and_the_detector_answers_for_servers() {
        let d = detector();
        let fleet = Fleet::restored(&d);
        let pool = &fleet.targets["lb"].view.pools[0];
        assert_eq!((pool.listed_servers, pool.servers.len()), (2, 0));
        let (asker, mut asks) = Asker::channel(Duration::from_secs(30));
        let loop_ = std::thread::spawn(move || {
            let ask = asks.blocking_recv().unwrap();
            assert!(ask.answer(&d));
        });
        let views = asker.views(vec!["nope".into(), "lb".into()]).unwrap();
        loop_.join().unwrap();
        assert_eq!(views.len(), 1);
        let names: Vec<&str> = views[0].pools[0]
            .servers
            .iter()
            .map(|s| &*s.server)
            .collect();
        assert_eq!(names, ["a", "b"]);
        // Nothing asked for: the detector is not bothered.
        assert_eq!(asker.views(Vec::new()), Ok(Vec::new()));
    }

    #[test]
    fn a_reader_is_told_when_the_detector_cannot_answer() {
        let (asker, asks) = Asker::channel(Duration::from_millis(50));
        // Nobody answers: the wait runs out, and the ask, taken late, is
        // not built for nobody.
        assert_eq!(
            asker.views(vec!["lb".into()]),
            Err(AskError::Timeout(Duration::from_millis(50)))
        );
        let mut asks = asks;
        assert!(!asks.try_recv().unwrap().answer(&detector()));
        assert_eq!(
            asker.views(vec!["lb".into()]),
            Err(AskError::Timeout(Duration::from_millis(50)))
        );
        // The queue is full of asks nobody takes: no more wait.
        for _ in 1..ASKS_WAITING {
            let _ = asker.views(vec!["lb".into()]);
        }
        let err = asker.views(vec!["lb".into()]).unwrap_err();
        assert_eq!(
            (err.reason(), err.to_string().as_str()),
            (
                "busy",
                "8 requests for servers already wait on the detector"
            )
        );
        // The loop is gone: told at once.
        drop(asks);
        assert_eq!(asker.views(vec!["lb".into()]), Err(AskError::Stopped));
    }
}
