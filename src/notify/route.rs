//! Which alerts go to which notifier.

use crate::config::RouteConfig;
use crate::model::{AlertEvent, AlertName, Severity};

/// A notifier's filter: each list, when not empty, must contain the
/// alert's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route(RouteConfig);

impl Route {
    pub fn new(cfg: RouteConfig) -> Self {
        Route(cfg)
    }

    pub fn matches(&self, e: &AlertEvent) -> bool {
        self.admits(e.alert, e.severity, &e.target, e.pool.as_deref())
    }

    /// Whether this route takes an alert of this name and severity, on this
    /// target and pool (an incident's alerts are judged like events).
    pub fn admits(
        &self,
        alert: AlertName,
        severity: Severity,
        target: &str,
        pool: Option<&str>,
    ) -> bool {
        fn any(list: &[String], v: Option<&str>) -> bool {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x == v))
        }
        let severity = match severity {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        any(&self.0.alerts, Some(alert.as_str()))
            && any(&self.0.severities, Some(severity))
            && any(&self.0.targets, Some(target))
            && any(&self.0.pools, pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertState, Timestamp};

    fn event(alert: AlertName, severity: Severity, pool: Option<&str>) -> AlertEvent {
        AlertEvent {
            ts: Timestamp::from_micros(0),
            state: AlertState::Firing,
            alert,
            severity,
            target: "lb1".into(),
            pool: pool.map(str::to_string),
            server: None,
            summary: None,
            value: None,
        }
    }

    #[test]
    fn every_list_that_is_set_must_match() {
        let route = Route::new(RouteConfig {
            severities: vec!["critical".into()],
            pools: vec!["web".into()],
            ..RouteConfig::default()
        });
        let skew = AlertName::TrafficSkew;
        assert!(route.matches(&event(skew, Severity::Critical, Some("web"))));
        assert!(!route.matches(&event(skew, Severity::Warning, Some("web"))));
        assert!(!route.matches(&event(skew, Severity::Critical, Some("api"))));
        // A target-wide alert has no pool: a pool filter excludes it.
        assert!(!route.matches(&event(AlertName::ScrapeFailed, Severity::Critical, None)));
        assert!(Route::default().matches(&event(AlertName::ScrapeFailed, Severity::Info, None)));
    }
}
