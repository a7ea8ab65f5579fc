//! The figures behind an incident's chart: each pool's rate, 5xx ratio and
//! servers' shares, one point per scrape interval from half a minute before
//! the start to a minute after the end. Bounded, because the incident is
//! written to the history whenever it changes: at most `MAX_POINTS` points
//! (every other point goes when a long incident reaches it, and from then
//! on one interval in two is kept, so the whole span keeps one resolution) and
//! `MAX_SERVERS` servers per pool (those the alerts name first).

use serde::{Deserialize, Serialize};

use super::lb_events::Interval;
use crate::model::Timestamp;

/// Points kept per pool.
pub const MAX_POINTS: usize = 240;
/// Servers charted per pool.
pub const MAX_SERVERS: usize = 16;
/// How long before the start the chart reaches (the servers' requests are
/// kept about twice that long, for an alert that comes late).
pub const BEFORE_S: f64 = 30.0;
/// How long after the end it goes on.
pub const AFTER_S: f64 = 60.0;

/// One pool's figures around an incident.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolSeries {
    pub pool: String,
    /// The servers charted, in the order of each point's `shares`.
    pub servers: Vec<String>,
    pub points: Vec<Point>,
    /// Intervals per point (doubled at each halving).
    #[serde(default = "one")]
    pub stride: u32,
    /// Intervals passed over since the last point.
    #[serde(default)]
    pub passed: u32,
}

fn one() -> u32 {
    1
}

/// One interval of one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The end of the interval.
    pub ts: Timestamp,
    /// Requests per second; unknown over a reload (counters restarted).
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub error_ratio: Option<f64>,
    /// Each charted server's share of the pool's requests; `None` where it
    /// was not listed or the pool took nothing.
    pub shares: Vec<Option<f64>>,
}

impl PoolSeries {
    /// Makes room for `server` among the charted ones (an alert names it):
    /// it replaces the last server no alert asked for when the chart is
    /// full.
    pub fn chart_server(&mut self, server: &str, named: &dyn Fn(&str) -> bool) {
        if self.servers.iter().any(|s| s == server) {
            return;
        }
        if self.servers.len() < MAX_SERVERS {
            self.servers.push(server.to_string());
            return;
        }
        if let Some(at) = self.servers.iter().rposition(|s| !named(s)) {
            self.servers[at] = server.to_string();
            for p in &mut self.points {
                if let Some(v) = p.shares.get_mut(at) {
                    *v = None;
                }
            }
        }
    }

    /// Adds one interval (ignored when it is not after the last point).
    pub fn push(&mut self, i: &Interval) {
        let Some(ts) = i.ts else { return };
        if self.points.last().is_some_and(|p| p.ts >= ts) {
            return;
        }
        self.passed += 1;
        if !self.points.is_empty() && self.passed < self.stride.max(1) {
            return;
        }
        self.passed = 0;
        for s in i.by_server.keys() {
            if self.servers.len() >= MAX_SERVERS {
                break;
            }
            if !self.servers.iter().any(|k| **k == **s) {
                self.servers.push(s.to_string());
            }
        }
        let total = i.requests;
        let shares = self
            .servers
            .iter()
            .map(|s| {
                let r = i.by_server.get(s.as_str())?;
                (total > 0.0).then(|| r / total)
            })
            .collect();
        self.points.push(Point {
            ts,
            rate: (i.seconds > 0.0 && !i.reload).then(|| i.requests / i.seconds),
            error_ratio: (total > 0.0).then(|| i.errors / total),
            shares,
        });
        if self.points.len() > MAX_POINTS {
            // Every other point: the same span at half the resolution.
            let mut keep = false;
            self.points.retain(|_| {
                keep = !keep;
                keep
            });
            self.stride = self.stride.max(1) * 2;
        }
    }
}

/// The series of `pool` in `series`, created if need be.
pub fn of<'a>(series: &'a mut Vec<PoolSeries>, pool: &str) -> &'a mut PoolSeries {
    match series.iter().position(|s| s.pool == pool) {
        Some(at) => &mut series[at],
        None => {
            series.push(PoolSeries {
                pool: pool.to_string(),
                stride: 1,
                ..PoolSeries::default()
            });
            series.last_mut().expect("pushed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(t: i64, counts: &[(&str, f64)]) -> Interval {
        Interval::of(t, counts, 1.0)
    }

    #[test]
    fn points_hold_rate_errors_and_shares_and_stay_bounded() {
        let mut s = PoolSeries::default();
        s.push(&interval(1, &[("a", 30.0), ("b", 10.0)]));
        s.push(&interval(1, &[("a", 1.0)]));
        assert_eq!(s.points.len(), 1, "a point not after the last is ignored");
        let p = &s.points[0];
        assert_eq!((p.rate, p.error_ratio), (Some(40.0), Some(1.0 / 40.0)));
        assert_eq!(p.shares, [Some(0.75), Some(0.25)]);
        for t in 2..2000 {
            s.push(&interval(t, &[("a", 10.0)]));
        }
        assert!(s.points.len() <= MAX_POINTS);
        assert!(s.points.len() > MAX_POINTS / 2);
        assert_eq!(s.points[0].ts, Timestamp::from_micros(1_000_000));
        // One resolution over the whole span: the gaps differ by at most
        // the latest stride (the newest points, not yet halved).
        let gaps: Vec<f64> = s
            .points
            .windows(2)
            .map(|w| w[1].ts.secs_since(w[0].ts))
            .collect();
        let (lo, hi) = gaps
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), g| (lo.min(*g), hi.max(*g)));
        assert!(hi <= lo, "gaps from {lo} to {hi} s");
        // b left: its share is unknown, not zero.
        assert_eq!(s.points.last().unwrap().shares, [Some(1.0), None]);
    }

    #[test]
    fn a_server_an_alert_names_is_charted_even_in_a_large_pool() {
        let mut s = PoolSeries::default();
        let many: Vec<(String, f64)> = (0..40).map(|i| (format!("s{i:02}"), 1.0)).collect();
        let counts: Vec<(&str, f64)> = many.iter().map(|(n, r)| (n.as_str(), *r)).collect();
        s.push(&interval(1, &counts));
        assert_eq!(s.servers.len(), MAX_SERVERS);
        s.chart_server("s39", &|n| n == "s39");
        assert!(s.servers.contains(&"s39".to_string()));
        assert_eq!(s.servers.len(), MAX_SERVERS);
        s.chart_server("s38", &|n| n == "s39" || n == "s38");
        assert!(s.servers.contains(&"s39".to_string()));
        assert!(s.servers.contains(&"s38".to_string()));
    }
}
