//! The live run's sinks besides stdout and the views: the recording, lbwatch's
//! own accounting, the notifiers' outboxes and the saved state. Each takes
//! every sample with the events it raised (`pipeline::Sink`).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::detect::Detector;
use crate::incident::notice::IncidentNote;
use crate::metrics::Metrics;
use crate::model::{AlertEvent, AlertState, Sample, SampleBody};
use crate::notify::Notice;
use crate::notify::Notifier;
use crate::pipeline::{Sink, SinkError};
use crate::state::StateStore;

/// `lbwatch record`: every sample, in the replay format.
#[derive(Debug)]
pub struct Recorder {
    pub out: std::io::BufWriter<std::fs::File>,
}

impl Sink for Recorder {
    fn take(
        &mut self,
        sample: &Sample<'_>,
        _: &[AlertEvent],
        _: &Detector,
    ) -> Result<(), SinkError> {
        let err = SinkError::io("recording samples");
        serde_json::to_writer(&mut self.out, sample).map_err(|e| err(e.into()))?;
        self.out.write_all(b"\n").map_err(err)?;
        self.out.flush().map_err(SinkError::io("recording samples"))
    }
}

/// Samples, events and detection latency, in lbwatch's own metrics.
#[derive(Debug)]
pub struct Accounting {
    pub metrics: Arc<Metrics>,
}

impl Sink for Accounting {
    fn take(
        &mut self,
        sample: &Sample<'_>,
        events: &[AlertEvent],
        _: &Detector,
    ) -> Result<(), SinkError> {
        let m = &self.metrics;
        m.samples.inc();
        let latency = crate::clock::now().secs_since(sample.ts);
        if latency.is_finite() && latency >= 0.0 {
            Metrics::time(&m.detection_latency, Duration::from_secs_f64(latency));
        }
        for e in events {
            let state = match e.state {
                AlertState::Firing => "firing",
                AlertState::Resolved => "resolved",
            };
            m.count(
                &m.alert_events,
                &[("alert", e.alert.as_str()), ("state", state)],
            );
        }
        Ok(())
    }
}

/// The notifiers of the running configuration (replaced on reload).
pub type Notifiers = Arc<RwLock<Vec<Arc<Notifier>>>>;

/// Hands events to every notifier's outbox: on disk when this returns.
/// Each event goes with its incident as this step left it (`incidents`,
/// which the `Incidents` sink updated just before), counting only the
/// alerts the notifier's route takes, so that the notifiers that group
/// pages name every alert of the incident in one and resolve it when the
/// last of theirs resolves.
#[derive(Debug)]
pub struct Outboxes {
    pub notifiers: Notifiers,
    pub incidents: IncidentBook,
}

impl Outboxes {
    /// `events` to every notifier, with their incident; `listed(pool)`:
    /// the servers the pool lists now.
    fn push(
        &self,
        events: &[AlertEvent],
        now: crate::model::Timestamp,
        listed: &dyn Fn(&str) -> Option<usize>,
    ) {
        let book = self.incidents.read().expect("incident book lock");
        let found: Vec<_> = events.iter().map(|e| incident_of(&book, e)).collect();
        for n in self.notifiers.read().expect("notifiers lock").iter() {
            let notices: Vec<Notice> = events
                .iter()
                .zip(&found)
                .map(|(e, i)| Notice {
                    event: e.clone(),
                    incident: i
                        .map(|i| IncidentNote::of(i, now, listed, &|a| n.admits(&i.target, a))),
                })
                .collect();
            n.push(&notices);
        }
    }
}

/// The incident of `e`'s target that holds `e`'s alert: the latest where
/// it resolved at `e`'s time, or where it fired by then and had not
/// resolved before.
fn incident_of<'a>(
    book: &'a BTreeMap<String, crate::incident::Incident>,
    e: &AlertEvent,
) -> Option<&'a crate::incident::Incident> {
    let prefix = format!("{}-", e.target);
    let key = (e.alert, e.pool.as_deref(), e.server.as_deref());
    let holds = |a: &crate::incident::AlertRecord| {
        a.key() == key
            && match e.state {
                AlertState::Resolved => a.resolved == Some(e.ts),
                AlertState::Firing => a.fired <= e.ts && a.resolved.is_none_or(|r| r >= e.ts),
            }
    };
    book.range(prefix.clone()..)
        .take_while(|(id, _)| id.starts_with(&prefix))
        .map(|(_, i)| i)
        .filter(|i| i.target == e.target && i.alerts.iter().any(holds))
        .last()
}

impl Sink for Outboxes {
    fn take(
        &mut self,
        sample: &Sample<'_>,
        events: &[AlertEvent],
        _: &Detector,
    ) -> Result<(), SinkError> {
        if !events.is_empty() {
            let listed = |pool: &str| match &sample.body {
                SampleBody::Servers(servers) => {
                    Some(servers.iter().filter(|s| s.pool == pool).count())
                }
                SampleBody::Error(_) => None,
            };
            self.push(events, sample.ts, &listed);
        }
        Ok(())
    }

    fn forgotten(
        &mut self,
        _: &str,
        now: crate::model::Timestamp,
        resolved: &[AlertEvent],
    ) -> Result<(), SinkError> {
        if !resolved.is_empty() {
            self.push(resolved, now, &|_| None);
        }
        Ok(())
    }
}

/// Saves a target's state when it raised events (durably: it says they
/// were raised) and every `SAVE_EVERY` otherwise. Comes after `Outboxes`:
/// a crash in between re-raises the events, and the outboxes refuse what
/// they already hold.
#[derive(Debug)]
pub struct StateSaver {
    pub store: Arc<StateStore>,
    pub metrics: Arc<Metrics>,
    pub saved_at: BTreeMap<String, Instant>,
}

impl Sink for StateSaver {
    fn take(
        &mut self,
        sample: &Sample<'_>,
        events: &[AlertEvent],
        detector: &Detector,
    ) -> Result<(), SinkError> {
        let target = &*sample.target;
        let due = self
            .saved_at
            .get(target)
            .is_none_or(|t| t.elapsed() >= crate::state::SAVE_EVERY);
        if !due && events.is_empty() {
            return Ok(());
        }
        if let Some(bytes) = detector.snapshot(target) {
            if let Err(e) = self.store.save(target, &bytes, !events.is_empty()) {
                self.metrics.state_errors.inc();
                tracing::error!("{e}");
            }
            self.saved_at
                .insert(target.to_string(), crate::clock::monotonic());
        }
        Ok(())
    }
}

/// The incidents being built, for the HTTP listener (`/api/v1/incidents`).
pub type IncidentBook = Arc<RwLock<BTreeMap<String, crate::incident::Incident>>>;

/// Builds incidents from each step's sample and events; writes each change
/// to the history (fsync'd, before the outboxes take the events) and, for
/// a replay, the reports of every incident at the end.
#[derive(Debug)]
pub struct Incidents {
    pub tracker: crate::incident::tracker::Tracker,
    pub store: Option<crate::incident::store::Store>,
    pub book: IncidentBook,
    /// `replay --incidents DIR`: where each incident's report goes.
    pub export: Option<std::path::PathBuf>,
    /// The latest sample's time: "now" for the reports of open incidents.
    pub now: Option<crate::model::Timestamp>,
    /// The live run's metrics (reloads, incidents).
    pub metrics: Option<Arc<Metrics>>,
}

impl Incidents {
    pub fn new(
        store: Option<crate::incident::store::Store>,
        export: Option<std::path::PathBuf>,
    ) -> Incidents {
        let mut tracker = crate::incident::tracker::Tracker::default();
        let known = store
            .as_ref()
            .map(|s| s.incidents().clone())
            .unwrap_or_default();
        tracker.restore(known.values().cloned());
        Incidents {
            tracker,
            store,
            book: Arc::new(RwLock::new(known)),
            export,
            now: None,
            metrics: None,
        }
    }
}

impl Incidents {
    /// A change of an incident: to the history (fsync'd), then the book.
    fn record(&mut self, i: crate::incident::Incident) -> Result<(), SinkError> {
        if let Some(store) = &mut self.store {
            store.put(&i).map_err(history_error)?;
        }
        self.book
            .write()
            .expect("incident book lock")
            .insert(i.id.clone(), i);
        Ok(())
    }
}

fn history_error(e: crate::incident::store::StoreError) -> SinkError {
    SinkError::io("writing the incident history")(std::io::Error::other(e.to_string()))
}

impl Sink for Incidents {
    fn take(
        &mut self,
        sample: &Sample<'_>,
        events: &[AlertEvent],
        detector: &Detector,
    ) -> Result<(), SinkError> {
        use crate::incident::tracker::Change;
        self.now = Some(sample.ts);
        let target: &str = &sample.target;
        let names = |pool: &str, server: &str| detector.server_name(target, pool, server);
        for change in self.tracker.observe(sample, events, &names) {
            let i = match change {
                Change::Opened => {
                    if let Some(m) = &self.metrics {
                        m.count(&m.incidents, &[("target", target)]);
                    }
                    continue;
                }
                Change::Updated(i) | Change::Closed(i) => i,
            };
            self.record(i)?;
        }
        if let Some(i) = self.tracker.open_for(target) {
            self.book
                .write()
                .expect("incident book lock")
                .insert(i.id.clone(), i.clone());
        }
        if let Some(m) = &self.metrics {
            // The series exist from a target's first sample, so that its
            // first incident shows as a change.
            let labels = vec![("target", target.to_string())];
            let _ = m.incidents.get_or_create(&labels);
            let open = self.tracker.open_for(target).is_some();
            m.incidents_open.get_or_create(&labels).set(i64::from(open));
        }
        Ok(())
    }

    fn forgotten(
        &mut self,
        target: &str,
        now: crate::model::Timestamp,
        resolved: &[AlertEvent],
    ) -> Result<(), SinkError> {
        if let Some(i) = self.tracker.forget(target, now, resolved) {
            self.record(i)?;
        }
        if let Some(m) = &self.metrics {
            let labels = vec![("target", target.to_string())];
            m.incidents_open.get_or_create(&labels).set(0);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        let (Some(dir), Some(now)) = (&self.export, self.now) else {
            return Ok(());
        };
        let err = SinkError::io("writing the incident reports");
        std::fs::create_dir_all(dir).map_err(err)?;
        for i in self.book.read().expect("incident book lock").values() {
            let md = crate::incident::report::markdown(i, now);
            std::fs::write(dir.join(format!("{}.md", i.id)), md).map_err(err)?;
            let json = serde_json::to_vec_pretty(&crate::incident::report::json(i))
                .map_err(std::io::Error::from)
                .map_err(err)?;
            std::fs::write(dir.join(format!("{}.json", i.id)), json).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectConfig;
    use crate::model::{ServerStat, Timestamp};
    use crate::pipeline::Pipeline;

    fn sample(t: i64) -> Sample<'static> {
        let row = |server: &str| ServerStat {
            pool: "web".into(),
            server: server.to_string().into(),
            requests_total: 100 * t as u64,
            up: true,
            weight: 1.0,
            ..ServerStat::default()
        };
        Sample {
            ts: Timestamp::from_micros(t * 1_000_000),
            target: "lb".into(),
            body: SampleBody::Servers(vec![row("a"), row("b")]),
            frontends: Vec::new(),
        }
    }

    /// How many hold server b's name after three scrapes, with incident
    /// tracking or without.
    fn holders(incidents: bool) -> usize {
        let mut p = Pipeline::new(Detector::new(DetectConfig::default()));
        if incidents {
            p = p.with(Incidents::new(None, None));
        }
        for t in 0..3 {
            p.step(&sample(t)).unwrap();
        }
        let name = p.detector().server_name("lb", "web", "b").unwrap();
        Arc::strong_count(&name)
    }

    /// Incident tracking keeps the detector's names, not copies: its
    /// previous scrape and its ring hold b's.
    #[test]
    fn incidents_share_the_detectors_names() {
        assert_eq!(holders(true), holders(false) + 2);
    }
}
