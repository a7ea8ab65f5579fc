//! The alerts firing now, per target: kept in step with the events raised,
//! for the API, the metrics and the snapshot a restart resumes from.

use serde::{Deserialize, Serialize};

use crate::model::{AlertEvent, AlertName, AlertState, Severity, Timestamp};

/// An alert raised now, with the text and value it fired with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiringAlert {
    pub since: Timestamp,
    pub alert: AlertName,
    pub severity: Severity,
    pub target: String,
    pub pool: Option<String>,
    pub server: Option<String>,
    pub summary: Option<String>,
    pub value: Option<f64>,
}

impl FiringAlert {
    fn same_alert(&self, e: &AlertEvent) -> bool {
        self.alert == e.alert && self.pool == e.pool && self.server == e.server
    }

    /// The event it fired with.
    pub fn event(&self) -> AlertEvent {
        AlertEvent {
            ts: self.since,
            state: AlertState::Firing,
            alert: self.alert,
            severity: self.severity,
            target: self.target.clone(),
            pool: self.pool.clone(),
            server: self.server.clone(),
            summary: self.summary.clone(),
            value: self.value,
        }
    }
}

/// Keeps a target's list of firing alerts in step with its events.
pub fn track_firing(firing: &mut Vec<FiringAlert>, events: &[AlertEvent]) {
    for e in events {
        firing.retain(|f| !f.same_alert(e));
        if e.state == AlertState::Firing {
            firing.push(FiringAlert {
                since: e.ts,
                alert: e.alert,
                severity: e.severity,
                target: e.target.clone(),
                pool: e.pool.clone(),
                server: e.server.clone(),
                summary: e.summary.clone(),
                value: e.value,
            });
        }
    }
}
