//! `[metrics] per_server`: which servers' series `/metrics` exports. A fleet
//! of 100,000 servers at 6 to 12 series each is more than most Prometheus
//! servers want from one job; the pools' series (6 each) say whether a pool
//! is healthy, and a server's own series matter while its pool is alerting.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::{AlertEvent, Timestamp};

/// How long after its last alert a pool's servers stay exported, so that a
/// Prometheus scraping every minute still sees the servers of an alert
/// that fired and resolved between two scrapes.
pub const GRACE_S: f64 = 300.0;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerServer {
    /// Every server's series.
    #[default]
    All,
    /// A server's series only while its pool has an alert firing, and for
    /// `GRACE_S` after (by the target's sample time).
    Alerting,
    /// No server series: pools only.
    None,
}

/// `[metrics]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub per_server: PerServer,
}

/// When each pool of a target last had an alert firing. An alert about the
/// whole target (ScrapeFailed above all) does not count: a network blip
/// across a fleet would export every server at once, and a target that
/// cannot be scraped has no fresh server figures to show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alerting(BTreeMap<String, Timestamp>);

impl Alerting {
    /// The previous record, updated with the alerts firing at `now`.
    pub fn after(&self, firing: &[AlertEvent], now: Option<Timestamp>) -> Alerting {
        let mut next = self.clone();
        if let Some(now) = now {
            for pool in firing.iter().filter_map(|a| a.pool.as_ref()) {
                next.0.insert(pool.clone(), now);
            }
            next.0.retain(|_, t| now.secs_since(*t) <= GRACE_S);
        }
        next
    }

    /// Whether `pool`'s servers are exported at `now` under `per_server`.
    pub fn exports(&self, per_server: PerServer, pool: &str, now: Option<Timestamp>) -> bool {
        match per_server {
            PerServer::All => true,
            PerServer::None => false,
            PerServer::Alerting => {
                let recent = |t: &Timestamp| now.is_none_or(|n| n.secs_since(*t) <= GRACE_S);
                self.0.get(pool).is_some_and(recent)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertName, AlertState, Severity};

    fn at(s: i64) -> Option<Timestamp> {
        Some(Timestamp::from_micros(s * 1_000_000))
    }

    fn alert(pool: Option<&str>) -> AlertEvent {
        AlertEvent {
            ts: Timestamp::from_micros(0),
            state: AlertState::Firing,
            alert: AlertName::TrafficSkew,
            severity: Severity::Critical,
            target: "lb1".into(),
            pool: pool.map(str::to_string),
            server: None,
            summary: None,
            value: None,
        }
    }

    #[test]
    fn a_pool_is_exported_while_alerting_and_for_the_grace_after() {
        let quiet = Alerting::default();
        assert!(quiet.exports(PerServer::All, "web", at(0)));
        assert!(!quiet.exports(PerServer::Alerting, "web", at(0)));
        let firing = quiet.after(&[alert(Some("web"))], at(10));
        assert!(firing.exports(PerServer::Alerting, "web", at(10)));
        assert!(!firing.exports(PerServer::Alerting, "api", at(10)));
        assert!(!firing.exports(PerServer::None, "web", at(10)));
        let after = firing.after(&[], at(10 + 299));
        assert!(after.exports(PerServer::Alerting, "web", at(10 + 299)));
        let later = after.after(&[], at(10 + 301));
        assert!(!later.exports(PerServer::Alerting, "web", at(10 + 301)));
        // A target-wide alert (ScrapeFailed) shows no pool's servers.
        let wide = quiet.after(&[alert(None)], at(5));
        assert!(!wide.exports(PerServer::Alerting, "api", at(5)));
    }
}
