//! Incidents: the alerts of one target that overlap or follow each other
//! closely, with what the LB did around them (reloads, pool changes,
//! servers going down), their impact estimated from the counters against
//! each pool's own baseline, and the likely cause in one sentence.
//!
//! `tracker.rs` builds them from samples and alert events (pure: time is
//! the samples'); `store.rs` keeps them on disk; `report.rs` writes the
//! postmortem draft.

pub mod cause;
pub mod chart;
pub mod lb_events;
pub mod notice;
mod packed;
pub mod report;
mod ring;
pub mod store;
pub mod tracker;
mod usual;

use serde::{Deserialize, Serialize};

use crate::model::{AlertName, Severity, Timestamp};

/// One incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `TARGET-YYYYMMDDTHHMMSSZ` of its start.
    pub id: String,
    pub target: String,
    /// When the distribution broke (the first abnormal interval, or the LB
    /// change right before it).
    pub start: Timestamp,
    /// The first alert.
    pub detected: Timestamp,
    /// When the pools went back to their usual selves, as the counters show
    /// it (or, when they never showed the fault, the last alert's resolve);
    /// unset while an alert fires.
    #[serde(default)]
    pub end: Option<Timestamp>,
    /// No alert followed within the grace period: the incident is over.
    #[serde(default)]
    pub closed: bool,
    pub alerts: Vec<AlertRecord>,
    /// What the LB did from a little before the start to the end.
    pub events: Vec<LbEvent>,
    pub impact: Vec<PoolImpact>,
    pub cause: String,
    /// Servers that left a pool the incident is about, with the share they
    /// usually took: the status page keeps them as greyed rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departed: Vec<Departed>,
    /// Each pool's figures around the incident, for its chart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<chart::PoolSeries>,
}

impl Incident {
    /// Seconds from start to end (or to `now` while open).
    pub fn duration(&self, now: Timestamp) -> f64 {
        self.end.unwrap_or(now).secs_since(self.start)
    }
}

/// One alert of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub alert: AlertName,
    pub severity: Severity,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub server: Option<String>,
    pub fired: Timestamp,
    #[serde(default)]
    pub resolved: Option<Timestamp>,
    #[serde(default)]
    pub first_value: Option<f64>,
    #[serde(default)]
    pub last_value: Option<f64>,
    #[serde(default)]
    pub summary: Option<String>,
}

impl AlertRecord {
    pub fn key(&self) -> (AlertName, Option<&str>, Option<&str>) {
        (self.alert, self.pool.as_deref(), self.server.as_deref())
    }
}

/// Something the LB did, as its stats show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbEvent {
    pub ts: Timestamp,
    pub kind: LbEventKind,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub server: Option<String>,
    /// The servers that left or joined, for a membership change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// The event in a sentence, with its numbers.
    pub text: String,
}

/// A server that left a pool during (or right before) an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Departed {
    pub pool: String,
    pub server: String,
    pub left: Timestamp,
    /// Its share of the pool's requests before it left, once learnt.
    #[serde(default)]
    pub usual_share: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbEventKind {
    Reload,
    ServersLeft,
    ServersJoined,
    WeightChanged,
    AlgorithmChanged,
    ServerDown,
    ServerUp,
}

/// What one pool went through during the incident.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolImpact {
    pub pool: String,
    /// Requests the pool received from the start on.
    pub requests: f64,
    /// 5xx beyond the pool's usual ratio, net (intervals below it count
    /// against it); see [`PoolImpact::failed`] for the figure to show.
    pub failed_net: f64,
    /// Requests missing against the usual rate while traffic was blocked
    /// (the pool below half its usual rate).
    pub missing: f64,
    #[serde(default)]
    pub usual_rate: Option<f64>,
    #[serde(default)]
    pub usual_error_ratio: Option<f64>,
    /// Each server's share of the pool's requests during the incident,
    /// against its usual share.
    pub shares: Vec<ShareImpact>,
}

impl PoolImpact {
    /// Requests that failed beyond the usual 5xx ratio (never below zero).
    pub fn failed(&self) -> f64 {
        self.failed_net.max(0.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareImpact {
    pub server: String,
    pub requests: f64,
    pub share: f64,
    #[serde(default)]
    pub usual_share: Option<f64>,
}

/// `lb1-20261130T140002Z`.
pub fn incident_id(target: &str, start: Timestamp) -> String {
    let secs = start.micros().div_euclid(1_000_000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{target}-{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_target_and_the_start() {
        let t = Timestamp::parse_rfc3339("2026-11-30T14:00:02.500Z").unwrap();
        assert_eq!(incident_id("lb1", t), "lb1-20261130T140002Z");
        let t = Timestamp::parse_rfc3339("2024-02-29T23:59:59Z").unwrap();
        assert_eq!(incident_id("x", t), "x-20240229T235959Z");
    }
}
