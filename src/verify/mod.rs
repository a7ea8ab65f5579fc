//! `lbwatch verify`: the staging gate. A run of samples is split into
//! before and after a change (a recording of before, or a time within the
//! run); the detector runs over all of it, and each pool's traffic after is
//! compared with before: the spread over its servers, its rate, its 5xx,
//! and its frontends' denials. Changes the operator declared (`--allow`)
//! are expected, not failures.

pub mod judge;
pub mod render;
pub mod session;
pub mod tally;

use crate::detect::{DetectConfig, Detector};
use crate::model::{AlertEvent, AlertState, Sample, Severity, Timestamp};

use tally::Part;

/// A change the operator expects, from `--allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// `POOL/SERVER removed`
    Removed { pool: String, server: String },
    /// `POOL/SERVER added`
    Added { pool: String, server: String },
    /// `POOL weights`: the spread follows the new weights.
    Weights { pool: String },
    /// `POOL balance`: the algorithm changed; the spread is not compared.
    Balance { pool: String },
}

impl Allow {
    pub fn parse(text: &str) -> Result<Allow, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let bad = || {
            format!(
                "--allow '{text}': expected 'POOL/SERVER removed', 'POOL/SERVER added', 'POOL weights' or 'POOL balance'"
            )
        };
        match words.as_slice() {
            [what, change @ ("removed" | "added")] => {
                let (pool, server) = what.split_once('/').ok_or_else(bad)?;
                if pool.is_empty() || server.is_empty() {
                    return Err(bad());
                }
                let (pool, server) = (pool.to_string(), server.to_string());
                Ok(if *change == "removed" {
                    Allow::Removed { pool, server }
                } else {
                    Allow::Added { pool, server }
                })
            }
            [pool, "weights"] if !pool.contains('/') => Ok(Allow::Weights {
                pool: pool.to_string(),
            }),
            [pool, "balance"] if !pool.contains('/') => Ok(Allow::Balance {
                pool: pool.to_string(),
            }),
            _ => Err(bad()),
        }
    }

    pub fn pool(&self) -> &str {
        match self {
            Allow::Removed { pool, .. }
            | Allow::Added { pool, .. }
            | Allow::Weights { pool }
            | Allow::Balance { pool } => pool,
        }
    }
}

/// Where the change falls in the run under test (`--change-at`): at a
/// time, or this many seconds after its first sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChangeAt {
    At(Timestamp),
    After(f64),
}

impl ChangeAt {
    pub fn parse(text: &str) -> Result<ChangeAt, String> {
        if let Ok(t) = Timestamp::parse_rfc3339(text) {
            return Ok(ChangeAt::At(t));
        }
        crate::detect::Secs::parse(text)
            .map(|s| ChangeAt::After(s.0))
            .map_err(|_| format!("--change-at '{text}': expected an RFC 3339 time (2026-11-30T14:00:02Z) or a duration into the run (90s)"))
    }
}

/// Takes the samples of both parts and keeps what the verdict needs.
#[derive(Debug)]
pub struct Verifier {
    detector: Detector,
    /// Samples from the change on are "after" (`--change-at`).
    change_at: Option<ChangeAt>,
    /// The first sample of the run under test.
    first: Option<Timestamp>,
    pub before: Part,
    pub after: Part,
    /// Whether any sample was "before".
    pub has_before: bool,
    /// Warning and critical alerts that fired after the change.
    pub alerts: Vec<AlertEvent>,
    /// Alerts firing when the change came (not caused by it).
    pub already_firing: Vec<AlertEvent>,
    pub detect: DetectConfig,
}

impl Verifier {
    pub fn new(detect: DetectConfig, change_at: Option<ChangeAt>) -> Verifier {
        Verifier {
            detector: Detector::new(detect.clone()),
            change_at,
            first: None,
            before: Part::default(),
            after: Part::default(),
            has_before: false,
            alerts: Vec::new(),
            already_firing: Vec::new(),
            detect,
        }
    }

    /// A sample of the `--before` recording.
    pub fn before(&mut self, sample: &Sample<'_>) -> u64 {
        let events = self.detector.observe(sample);
        self.track(&events, false);
        self.before.add(sample);
        self.has_before = true;
        events.len() as u64
    }

    /// A sample of the run under test (before the change if it is earlier
    /// than `--change-at`).
    pub fn after(&mut self, sample: &Sample<'_>) -> u64 {
        let first = *self.first.get_or_insert(sample.ts);
        let before = match self.change_at {
            Some(ChangeAt::At(t)) => sample.ts < t,
            Some(ChangeAt::After(secs)) => sample.ts.secs_since(first) < secs,
            None => false,
        };
        if before {
            return self.before(sample);
        }
        let events = self.detector.observe(sample);
        self.track(&events, true);
        self.after.add(sample);
        events.len() as u64
    }

    fn track(&mut self, events: &[AlertEvent], after: bool) {
        for e in events {
            let paging = e.severity != Severity::Info;
            match (e.state, after) {
                (AlertState::Firing, true) if paging => self.alerts.push(e.clone()),
                (AlertState::Firing, false) if paging => self.already_firing.push(e.clone()),
                (AlertState::Resolved, false) => self.already_firing.retain(|a| a.key() != e.key()),
                _ => {}
            }
        }
    }

    pub fn report(&self, allow: &[Allow]) -> judge::Report {
        judge::judge(self, allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowances_parse_or_say_what_is_expected() {
        assert_eq!(
            Allow::parse("web/web-3 removed"),
            Ok(Allow::Removed {
                pool: "web".into(),
                server: "web-3".into()
            })
        );
        assert_eq!(
            Allow::parse("web weights"),
            Ok(Allow::Weights { pool: "web".into() })
        );
        let e = Allow::parse("web removed").unwrap_err();
        assert!(e.starts_with("--allow 'web removed': expected"), "{e}");
        assert!(Allow::parse("web/ added").is_err());
    }
}
