//! What every check of one sample shares: the sample's time, the interval,
//! the configuration, and the place alert events are written to.

use super::config::DetectConfig;
use super::lifecycle::{Lifecycle, Persistence, Transition};
use super::text::hms;
use crate::model::{AlertEvent, AlertName, AlertState, Severity, Timestamp};

/// The interval a sample closes.
#[derive(Debug)]
pub struct Context<'a> {
    pub cfg: &'a DetectConfig,
    pub ts: Timestamp,
    /// Seconds since the previous successful scrape (`None` on the first).
    pub dt: Option<f64>,
    /// The interval's length for rates: `None` on the first sample and on
    /// the first after a counter reset, which covers only the time since
    /// the reload.
    pub rate_dt: Option<f64>,
    pub first: bool,
    /// When the target's counters last reset (LB reload or restart).
    pub reload_at: Option<Timestamp>,
    pub target_drop_active: bool,
}

/// How recent a reload or pool change must be to be named as the likely cause.
const CAUSE_WINDOW_S: f64 = 300.0;

impl Context<'_> {
    /// Persistence of a statistical alert that fires after `fire_after`
    /// consecutive hits. With one hit, the check's own evidence spans the
    /// minimum duration; with several, they must span it, counting the
    /// interval of the first.
    pub fn statistical(&self, fire_after: u32) -> Persistence {
        let fire_after_s = if fire_after <= 1 {
            0.0
        } else {
            (self.cfg.fire_after.0 - self.dt.unwrap_or(0.0)).max(0.0)
        };
        Persistence {
            fire_after,
            fire_after_s,
            resolve_after_s: self.cfg.resolve_after.0,
            resolve_after_samples: 2,
        }
    }

    /// A baseline frozen for its alert longer than the limit learns again.
    pub fn frozen_too_long(&self, life: &Lifecycle) -> bool {
        life.since()
            .is_some_and(|s| self.ts.secs_since(s) > self.cfg.baseline_max_freeze.0)
    }

    /// ", since 14:00:05Z, right after the LB reloaded at 14:00:02Z": when it
    /// started and what changed just before.
    pub fn context(&self, since: Option<Timestamp>, change: Option<&Change>) -> String {
        let Some(since) = since else {
            return String::new();
        };
        let mut s = format!(", since {}", hms(since));
        let recent = |at: Timestamp| {
            let d = since.secs_since(at);
            (-1.0..=CAUSE_WINDOW_S).contains(&d)
        };
        let mut causes = Vec::new();
        if let Some(r) = self.reload_at.filter(|&r| recent(r)) {
            causes.push(format!("the LB reloaded at {}", hms(r)));
        }
        if let Some(c) = change.filter(|c| recent(c.at)) {
            causes.push(format!("the pool changed at {}: {}", hms(c.at), c.what));
        }
        if !causes.is_empty() {
            s.push_str(", right after ");
            s.push_str(&causes.join(" and "));
        }
        s
    }
}

/// Collects the alert events of one sample.
#[derive(Debug)]
pub struct Emit<'a> {
    pub ts: Timestamp,
    pub target: &'a str,
    pub out: &'a mut Vec<AlertEvent>,
}

impl Emit<'_> {
    /// Writes the event of a transition, if any. The summary is only built
    /// when an alert fires, so the common case allocates nothing.
    pub fn transition(
        &mut self,
        t: Option<Transition>,
        alert: AlertName,
        severity: Severity,
        pool: Option<&str>,
        server: Option<&str>,
        fired: impl FnOnce() -> (String, Option<f64>),
    ) {
        let Some(t) = t else { return };
        let (state, summary, value) = match t {
            Transition::Fired => {
                let (summary, value) = fired();
                (AlertState::Firing, Some(summary), value)
            }
            Transition::Resolved => (AlertState::Resolved, None, None),
        };
        self.out.push(AlertEvent {
            ts: self.ts,
            state,
            alert,
            severity,
            target: self.target.to_string(),
            pool: pool.map(str::to_string),
            server: server.map(str::to_string),
            summary,
            value: value.filter(|v| v.is_finite()),
        });
    }
}

/// What changed in a pool, remembered to say in summaries: postmortems say
/// people lose hours when nothing points at the reload that caused it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub at: Timestamp,
    pub what: String,
}
