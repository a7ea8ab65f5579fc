//! Builds incidents from samples and alert events, target by target: pure
//! (no I/O, no clock; time is the samples'), so a replay and a live run
//! build the same incidents.

use std::collections::{BTreeMap, VecDeque};

use super::lb_events::{Interval, Names, Previous};
use super::ring::Ring;
use super::usual::{Usual, BLOCKED_RATIO};
use super::{
    cause, chart, incident_id, AlertRecord, Departed, Incident, LbEvent, LbEventKind, PoolImpact,
    ShareImpact,
};
use crate::model::{AlertEvent, AlertState, Sample, SampleBody, Severity, Timestamp};

/// Alerts of a target that follow the end of an incident within this many
/// seconds belong to it (a reload, then a skew, then 5xx on what is left).
pub const GRACE_S: f64 = 300.0;
/// How far back the LB events before an incident's start are looked for.
const LOOKBACK_S: f64 = 600.0;
/// Intervals are learnt into a pool's baseline this late: the first
/// seconds of a fault, before its alert, stay out of it.
pub const LEARN_LAG_S: f64 = 30.0;
#[derive(Debug, Clone, Default)]
struct PoolTrack {
    usual: Usual,
    recent: Ring,
    /// Intervals up to here are learnt (or skipped, being an incident's).
    learned_until: Option<Timestamp>,
}

impl PoolTrack {
    /// Learns the intervals older than `LEARN_LAG_S`, so that the start of
    /// a fault is not in the baseline by the time its alert fires; while an
    /// incident is open, skips them.
    fn learn(&mut self, now: Timestamp, skip: bool) {
        if skip {
            self.learned_until = Some(now);
            return;
        }
        // Only the intervals since the last learnt one: scanning back to it
        // keeps a step's cost independent of the ring's length.
        let learned = self.learned_until;
        let fresh = self
            .recent
            .iter()
            .rev()
            .take_while(|k| k.ts().is_none_or(|t| learned.is_none_or(|l| t > l)))
            .count();
        let from = self.recent.len() - fresh;
        for (at, k) in self.recent.iter().enumerate().skip(from) {
            let Some(ts) = k.ts() else { continue };
            if now.secs_since(ts) < LEARN_LAG_S {
                break;
            }
            self.usual.learn(&k.totals(), self.recent.by_server(at));
            self.learned_until = Some(ts);
        }
    }
}

/// One target's state.
#[derive(Debug, Default)]
struct TargetTrack {
    previous: Previous,
    pools: BTreeMap<String, PoolTrack>,
    recent_events: VecDeque<LbEvent>,
    /// The incident open (or ended within the grace period).
    open: Option<Incident>,
    /// Normal intervals since the incident's last abnormal one: counted in
    /// its impact if the fault shows again, dropped when it ends.
    pending: Vec<(String, Usual, Interval)>,
    /// Where the previous incident ended: the next starts after it.
    last_end: Option<Timestamp>,
}

/// What a step did to the incidents.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An incident began (it is `Updated` too).
    Opened,
    /// Opened, or changed (an alert, a resolve, an end): the incident now.
    Updated(Incident),
    /// Over for good.
    Closed(Incident),
}

/// Every target's incidents.
#[derive(Debug, Default)]
pub struct Tracker {
    targets: BTreeMap<String, TargetTrack>,
}

impl Tracker {
    /// Takes back incidents still open when lbwatch stopped.
    pub fn restore(&mut self, open: impl IntoIterator<Item = Incident>) {
        for i in open.into_iter().filter(|i| !i.closed) {
            let target = i.target.clone();
            self.targets.entry(target).or_default().open = Some(i);
        }
    }

    /// A target no longer watched (removed from the configuration): its
    /// alerts resolve with `resolved`, and its incident, over, closes now
    /// rather than stay open with nobody to end it.
    /// Alerts it had firing and `resolved` misses end `now` too.
    pub fn forget(
        &mut self,
        target: &str,
        now: Timestamp,
        resolved: &[AlertEvent],
    ) -> Option<Incident> {
        let mut t = self.targets.remove(target)?;
        for e in resolved.iter().filter(|e| e.target == target) {
            t.alert(e);
        }
        let mut done = t.open.take()?;
        for a in done.alerts.iter_mut().filter(|a| a.resolved.is_none()) {
            a.resolved = Some(now.max(a.fired));
        }
        if done.end.is_none() {
            let last = done.alerts.iter().filter_map(|a| a.resolved).max();
            done.end = Some(last.unwrap_or(now).max(done.start));
        }
        done.closed = true;
        done.cause = cause::sentence(&done);
        Some(done)
    }

    /// The incidents open now.
    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.targets.values().filter_map(|t| t.open.as_ref())
    }

    /// `target`'s open incident, as it stands (its impact grows with every
    /// sample; the history is written only when it changes otherwise).
    pub fn open_for(&self, target: &str) -> Option<&Incident> {
        self.targets.get(target)?.open.as_ref()
    }

    /// `names`: the detector's name of a server (pool, server), shared
    /// rather than copied.
    pub fn observe(
        &mut self,
        sample: &Sample<'_>,
        events: &[AlertEvent],
        names: Names<'_>,
    ) -> Vec<Change> {
        let t = self.targets.entry(sample.target.to_string()).or_default();
        let mut changes = Vec::new();
        // An incident over for good is closed before this sample's alerts,
        // which begin a new one (even after a pause in the samples).
        if t.open
            .as_ref()
            .and_then(|o| o.end)
            .is_some_and(|end| sample.ts.secs_since(end) > GRACE_S)
        {
            let mut done = t.open.take().expect("checked");
            done.closed = true;
            done.cause = cause::sentence(&done);
            t.last_end = done.end;
            changes.push(Change::Closed(done));
        }
        if let SampleBody::Servers(servers) = &sample.body {
            t.scraped(sample.ts, servers, names);
        }
        let was_open = t.open.is_some();
        let mut changed = false;
        for e in events.iter().filter(|e| e.target == *sample.target) {
            changed |= t.alert(e);
        }
        if !was_open && t.open.is_some() {
            changes.push(Change::Opened);
        }
        if let Some(open) = t.open.as_ref().filter(|_| changed) {
            changes.push(Change::Updated(open.clone()));
        }
        changes
    }
}

impl TargetTrack {
    fn scraped(
        &mut self,
        ts: Timestamp,
        servers: &[crate::model::ServerStat<'_>],
        names: Names<'_>,
    ) {
        let (events, intervals) = self.previous.step(ts, servers, names);
        for e in events {
            if let Some(open) = &mut self.open {
                let pools: Vec<String> = self
                    .pools
                    .keys()
                    .filter(|p| concerns(open, p))
                    .cloned()
                    .collect();
                departures(open, &self.pools, &pools, &e);
                open.events.push(e.clone());
            }
            self.recent_events.push_back(e);
        }
        while self
            .recent_events
            .front()
            .is_some_and(|e| ts.secs_since(e.ts) > LOOKBACK_S)
        {
            self.recent_events.pop_front();
        }
        let open = self.open.is_some();
        for (name, interval) in intervals {
            // Found before inserting: `entry` would copy the name every time.
            if !self.pools.contains_key(&name) {
                self.pools.insert(name.clone(), PoolTrack::default());
            }
            let pool = self.pools.get_mut(&name).expect("inserted above");
            if let Some(open) = self.open.as_mut().filter(|o| charting(o, &name, ts)) {
                draw(open, &name, pool, &interval);
            }
            let abnormal = interval.reload || pool.usual.abnormal(&interval);
            if let Some(open) = self
                .open
                .as_mut()
                .filter(|o| o.end.is_none() && concerns(o, &name))
            {
                if abnormal {
                    for (p, usual, i) in self.pending.drain(..) {
                        account(open, &p, &usual, &i);
                    }
                    account(open, &name, &pool.usual, &interval);
                } else {
                    self.pending
                        .push((name.clone(), pool.usual.clone(), interval.clone()));
                }
            }
            pool.recent.push(interval, abnormal, ts);
            pool.learn(ts, open);
        }
    }

    /// Takes an alert event; whether the incident changed.
    fn alert(&mut self, e: &AlertEvent) -> bool {
        match e.state {
            AlertState::Firing if e.severity != Severity::Info => {
                if self.open.is_none() {
                    self.open = Some(self.start(e));
                    self.pending.clear();
                    for pool in self.pools.values_mut() {
                        pool.learn(e.ts, true);
                    }
                }
                let open = self.open.as_mut().expect("opened above");
                // A firing raised again (after a crash, before the state was
                // saved) is the same alert, not a second one.
                let key = (e.alert, e.pool.as_deref(), e.server.as_deref());
                if open
                    .alerts
                    .iter()
                    .any(|r| r.key() == key && r.resolved.is_none())
                {
                    return false;
                }
                open.end = None;
                open.alerts.push(record(e));
                if let (Some(p), Some(server)) = (&e.pool, &e.server) {
                    let named = |s: &str| {
                        open.alerts.iter().any(|a| {
                            a.pool.as_deref() == Some(p.as_str()) && a.server.as_deref() == Some(s)
                        })
                    };
                    let mut series = std::mem::take(&mut open.series);
                    chart::of(&mut series, p).chart_server(server, &named);
                    open.series = series;
                }
                open.cause = cause::sentence(open);
                true
            }
            AlertState::Resolved => {
                let Some(open) = &mut self.open else {
                    return false;
                };
                let key = (e.alert, e.pool.as_deref(), e.server.as_deref());
                let Some(r) = open
                    .alerts
                    .iter_mut()
                    .rev()
                    .find(|r| r.key() == key && r.resolved.is_none())
                else {
                    return false;
                };
                r.resolved = Some(e.ts);
                r.last_value = e.value.or(r.last_value);
                if open.alerts.iter().all(|r| r.resolved.is_some()) {
                    let end = self.recovered().unwrap_or(e.ts);
                    let open = self.open.as_mut().expect("checked");
                    open.end = Some(end.max(open.start));
                    self.pending.clear();
                }
                true
            }
            AlertState::Firing => false,
        }
    }

    /// When the incident's pools went back to their usual selves, as the
    /// counters show it (the alerts resolve later, with hysteresis): the
    /// beginning of the run of normal intervals that ends now. `None` when
    /// the counters never showed the fault (a server down that the traffic
    /// hid, an LB that could not be scraped): the alerts say when it ended.
    fn recovered(&self) -> Option<Timestamp> {
        let incident = self.open.as_ref()?;
        let mut end = None;
        for (_, track) in self.pools.iter().filter(|(n, _)| concerns(incident, n)) {
            let normal: Vec<super::ring::Kept> = track
                .recent
                .iter()
                .rev()
                .take_while(|k| !k.abnormal)
                .collect();
            if normal.len() == track.recent.len() {
                return None;
            }
            let began = normal.last().and_then(|k| began(&k.totals()))?;
            end = Some(end.map_or(began, |e: Timestamp| e.max(began)));
        }
        end
    }

    /// Opens an incident at its first alert: its start is the first of the
    /// abnormal intervals leading to the alert (or the LB change right
    /// before them), and its impact is counted from there.
    fn start(&self, first: &AlertEvent) -> Incident {
        let pools: Vec<&String> = match &first.pool {
            Some(p) if self.pools.contains_key(p) => vec![p],
            _ => self.pools.keys().collect(),
        };
        let mut start = first.ts;
        for p in &pools {
            let track = &self.pools[*p];
            let run = track.recent.iter().rev().take_while(|k| k.abnormal);
            // The fault began within the first abnormal interval: its
            // beginning is the previous scrape.
            if let Some(earliest) = run.filter_map(|k| began(&k.totals())).last() {
                start = start.min(earliest);
            }
        }
        // The LB change that opened the run (within one interval of it).
        let slack = pools
            .iter()
            .filter_map(|p| self.pools[*p].recent.back())
            .map(|k| k.totals().seconds)
            .fold(1.0, f64::max);
        if let Some(change) = self
            .recent_events
            .iter()
            .filter(|e| e.ts <= first.ts && start.secs_since(e.ts) <= slack)
            .map(|e| e.ts)
            .min()
        {
            start = start.min(change);
        }
        // Never before the previous incident's end: its intervals are its.
        if let Some(last) = self.last_end {
            start = start
                .max(Timestamp::from_micros(last.micros() + 1_000_000))
                .min(first.ts);
        }
        let mut incident = Incident {
            id: incident_id(&first.target, start),
            target: first.target.clone(),
            start,
            detected: first.ts,
            end: None,
            closed: false,
            alerts: Vec::new(),
            events: self
                .recent_events
                .iter()
                .filter(|e| start.secs_since(e.ts) <= slack)
                .cloned()
                .collect(),
            impact: Vec::new(),
            cause: String::new(),
            departed: Vec::new(),
            series: Vec::new(),
        };
        let concerned: Vec<String> = pools.iter().map(|p| p.to_string()).collect();
        for e in incident.events.clone() {
            departures(&mut incident, &self.pools, &concerned, &e);
        }
        for (name, track) in self.pools.iter().filter(|(n, _)| pools.contains(n)) {
            backfill(chart::of(&mut incident.series, name), track, start);
            for (at, _) in track
                .recent
                .iter()
                .enumerate()
                .filter(|(_, k)| k.ts().is_some_and(|t| t >= start))
            {
                account(&mut incident, name, &track.usual, &track.recent.expand(at));
            }
        }
        incident
    }
}

/// The pools an incident is about: those its alerts name, or every pool
/// when one of them is about the whole target.
fn concerns(incident: &Incident, pool: &str) -> bool {
    incident.impact.iter().any(|p| p.pool == pool)
        || incident
            .alerts
            .iter()
            .any(|a| a.pool.as_deref().is_none_or(|p| p == pool))
}

/// Whether an interval of `pool` at `ts` belongs on the incident's chart:
/// a pool it is about, up to a minute after its end.
fn charting(incident: &Incident, pool: &str, ts: Timestamp) -> bool {
    concerns(incident, pool)
        && incident
            .end
            .is_none_or(|end| ts.secs_since(end) <= chart::AFTER_S)
}

/// Adds an interval to the pool's chart; a pool new to the chart gets its
/// recent intervals first.
fn draw(incident: &mut Incident, pool: &str, track: &PoolTrack, i: &Interval) {
    let start = incident.start;
    let series = chart::of(&mut incident.series, pool);
    if series.points.is_empty() {
        backfill(series, track, start);
    }
    series.push(i);
}

/// The pool's intervals from half a minute before the incident's start.
fn backfill(series: &mut chart::PoolSeries, track: &PoolTrack, start: Timestamp) {
    let from = Timestamp::from_micros(start.micros() - (chart::BEFORE_S * 1e6) as i64);
    for (at, _) in track
        .recent
        .iter()
        .enumerate()
        .filter(|(_, k)| k.ts().is_some_and(|t| t >= from))
    {
        series.push(&track.recent.expand(at));
    }
}

/// The servers a membership change took out of one of the `concerned`
/// pools, with the share each usually took (once per server: one that
/// leaves again keeps its first departure).
fn departures(
    incident: &mut Incident,
    pools: &BTreeMap<String, PoolTrack>,
    concerned: &[String],
    e: &LbEvent,
) {
    let (LbEventKind::ServersLeft, Some(pool)) = (e.kind, &e.pool) else {
        return;
    };
    if !concerned.contains(pool) {
        return;
    }
    let usual = pools.get(pool).map(|t| &t.usual.shares);
    for server in &e.servers {
        let known = incident
            .departed
            .iter()
            .any(|d| d.pool == *pool && d.server == *server);
        if !known {
            incident.departed.push(Departed {
                pool: pool.clone(),
                server: server.clone(),
                left: e.ts,
                usual_share: usual.and_then(|u| u.get(server)),
            });
        }
    }
}

/// The beginning of an interval: the scrape before it.
fn began(i: &Interval) -> Option<Timestamp> {
    i.ts.map(|t| Timestamp::from_micros(t.micros() - (i.seconds * 1e6) as i64))
}

fn record(e: &AlertEvent) -> AlertRecord {
    AlertRecord {
        alert: e.alert,
        severity: e.severity,
        pool: e.pool.clone(),
        server: e.server.clone(),
        fired: e.ts,
        resolved: None,
        first_value: e.value,
        last_value: e.value,
        summary: e.summary.clone(),
    }
}

/// Adds one interval of one pool to the incident's impact.
fn account(incident: &mut Incident, pool: &str, usual: &Usual, i: &Interval) {
    let impact = match incident.impact.iter_mut().position(|p| p.pool == pool) {
        Some(at) => &mut incident.impact[at],
        None => {
            incident.impact.push(PoolImpact {
                pool: pool.to_string(),
                usual_rate: usual.rate,
                usual_error_ratio: usual.errors,
                ..PoolImpact::default()
            });
            incident.impact.last_mut().expect("pushed")
        }
    };
    impact.requests += i.requests;
    // Net of the intervals below the usual ratio too: chance highs alone
    // would add up to a count of nothing.
    impact.failed_net += i.errors - i.requests * usual.errors.unwrap_or(0.0);
    if let Some(rate) = usual.rate.filter(|_| i.seconds > 0.0 && !i.reload) {
        if i.requests / i.seconds < BLOCKED_RATIO * rate {
            impact.missing += (rate * i.seconds - i.requests).max(0.0);
        }
    }
    for (server, r) in &i.by_server {
        match impact.shares.iter_mut().find(|s| *s.server == **server) {
            Some(s) => s.requests += r,
            None => impact.shares.push(ShareImpact {
                server: server.to_string(),
                requests: *r,
                share: 0.0,
                usual_share: usual.shares.get(server),
            }),
        }
    }
    let total = impact.requests;
    for s in &mut impact.shares {
        s.share = if total > 0.0 { s.requests / total } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertName, ServerStat};

    fn sample(t: i64, counts: &[(u64, u64)]) -> Sample<'static> {
        let servers = counts
            .iter()
            .enumerate()
            .map(|(i, (r, e))| ServerStat {
                pool: "web".into(),
                server: format!("web-{}", i + 1).into(),
                requests_total: *r,
                responses_5xx_total: *e,
                up: true,
                weight: 1.0,
                ..ServerStat::default()
            })
            .collect();
        Sample {
            ts: Timestamp::from_micros(t * 1_000_000),
            target: "lb".into(),
            body: SampleBody::Servers(servers),
            frontends: Vec::new(),
        }
    }

    fn event(t: i64, state: AlertState, alert: AlertName) -> AlertEvent {
        AlertEvent {
            ts: Timestamp::from_micros(t * 1_000_000),
            state,
            alert,
            severity: Severity::Critical,
            target: "lb".into(),
            pool: Some("web".into()),
            server: None,
            summary: None,
            value: None,
        }
    }

    /// The previous scrape keeps the names the detector lends, and copies
    /// only those it has none for.
    #[test]
    fn kept_names_are_the_detectors() {
        let lent: std::sync::Arc<str> = "web-1".into();
        let names =
            |pool: &str, server: &str| (pool == "web" && server == "web-1").then(|| lent.clone());
        let mut tracker = Tracker::default();
        tracker.observe(&sample(0, &[(10, 0), (10, 0)]), &[], &names);
        let count = || std::sync::Arc::strong_count(&lent);
        // The lender's, and the previous scrape's.
        assert_eq!(count(), 2);
        // And the ring's, from the first interval on; no more after.
        tracker.observe(&sample(1, &[(20, 0), (20, 0)]), &[], &names);
        assert_eq!(count(), 3);
        tracker.observe(&sample(2, &[(30, 0), (30, 0)]), &[], &names);
        assert_eq!(count(), 3);
    }

    /// Two servers at 100 req/s each for 20 minutes; `fault(t)` gives each
    /// server's (requests, 5xx) per second while it lasts (300-360 s); the
    /// alert fires at 303 s and resolves at 380 s.
    fn run(fault: impl Fn(i64) -> [(u64, u64); 2]) -> Incident {
        let mut tracker = Tracker::default();
        let mut totals = [(0u64, 0u64); 2];
        let mut closed = None;
        for t in 0..1200 {
            let step = if (300..360).contains(&t) {
                fault(t)
            } else {
                [(100, 0), (100, 0)]
            };
            for (c, s) in totals.iter_mut().zip(step) {
                c.0 += s.0;
                c.1 += s.1;
            }
            let events = match t {
                303 => vec![event(t, AlertState::Firing, AlertName::ErrorSpike)],
                380 => vec![event(t, AlertState::Resolved, AlertName::ErrorSpike)],
                _ => vec![],
            };
            for change in tracker.observe(&sample(t, &totals), &events, &|_, _| None) {
                if let Change::Closed(i) = change {
                    closed = Some(i);
                }
            }
        }
        closed.expect("closed after the grace period")
    }

    fn secs(ts: Timestamp) -> f64 {
        ts.micros() as f64 / 1e6
    }

    #[test]
    fn a_5xx_storm_is_counted_from_its_start_to_its_end() {
        // web-2 answers 20% 5xx: 20 failed requests a second for 60 s.
        let i = run(|_| [(100, 0), (100, 20)]);
        assert!((secs(i.start) - 299.0).abs() <= 1.0, "start {}", i.start);
        assert!(
            (secs(i.end.unwrap()) - 359.0).abs() <= 1.0,
            "end {:?}",
            i.end
        );
        assert_eq!(secs(i.detected), 303.0);
        let web = &i.impact[0];
        assert!(
            (web.failed() - 1200.0).abs() <= 120.0,
            "failed {}",
            web.failed()
        );
        assert_eq!(web.missing, 0.0);
        assert!(
            i.cause.starts_with(
                "Pool web answered 1,200 requests with 5xx beyond its usual ratio, 9.8% of its 12,200 requests (usually 0%)"
            ),
            "{}",
            i.cause
        );
    }

    #[test]
    fn a_blocked_pool_counts_the_requests_missing() {
        let i = run(|_| [(0, 0), (0, 0)]);
        let web = &i.impact[0];
        assert!(
            (web.missing - 12_000.0).abs() <= 1_200.0,
            "missing {}",
            web.missing
        );
        assert!((secs(i.start) - 299.0).abs() <= 1.0, "start {}", i.start);
        assert!(
            (secs(i.end.unwrap()) - 359.0).abs() <= 1.0,
            "end {:?}",
            i.end
        );
    }

    #[test]
    fn a_forgotten_target_closes_its_incident_at_its_last_resolve() {
        let mut t = Tracker::default();
        for s in 0..60 {
            t.observe(
                &sample(s, &[(100 * s as u64, 0), (100 * s as u64, 0)]),
                &[],
                &|_, _| None,
            );
        }
        let fired = event(60, AlertState::Firing, AlertName::TrafficSkew);
        t.observe(&sample(60, &[(6000, 0), (5900, 0)]), &[fired], &|_, _| None);
        assert!(t.open_for("lb").is_some());
        let resolved = event(61, AlertState::Resolved, AlertName::TrafficSkew);
        let done = t
            .forget("lb", resolved.ts, std::slice::from_ref(&resolved))
            .expect("its incident");
        assert!(done.closed && done.alerts[0].resolved == Some(resolved.ts));
        // The counters never showed the fault: it ended at its resolve.
        assert_eq!(done.end, Some(resolved.ts));
        assert!(t.open_for("lb").is_none());
        assert!(t.forget("lb", resolved.ts, &[]).is_none(), "forgotten once");
    }

    #[test]
    fn a_firing_raised_twice_still_ends_and_a_later_fault_is_another_incident() {
        let mut tracker = Tracker::default();
        let mut totals = [(0u64, 0u64); 2];
        let mut closed = Vec::new();
        for t in 0..1400 {
            let failing = (300..360).contains(&t) || (900..960).contains(&t);
            let step = if failing {
                [(100, 0), (100, 20)]
            } else {
                [(100, 0), (100, 0)]
            };
            for (c, s) in totals.iter_mut().zip(step) {
                c.0 += s.0;
                c.1 += s.1;
            }
            let events = match t {
                // The second firing is the first raised again (a restart
                // before the state was saved).
                303 | 310 | 903 => vec![event(t, AlertState::Firing, AlertName::ErrorSpike)],
                380 | 980 => vec![event(t, AlertState::Resolved, AlertName::ErrorSpike)],
                _ => vec![],
            };
            for change in tracker.observe(&sample(t, &totals), &events, &|_, _| None) {
                if let Change::Closed(i) = change {
                    closed.push(i);
                }
            }
        }
        assert_eq!(closed.len(), 2, "{closed:#?}");
        assert_eq!(closed[0].alerts.len(), 1);
        assert_ne!(closed[0].id, closed[1].id);
        assert!(closed[1].start > closed[0].end.unwrap());
        assert!(
            (secs(closed[1].start) - 899.0).abs() <= 1.0,
            "{}",
            closed[1].start
        );
    }
}
