//! What a page says of its incident: one headline that names every alert
//! still firing, grouped ("ServerDown on lb1: 8 of 20 servers of pool web
//! down: web-3, web-4, …"), and, once nothing fires, how long it lasted and what it cost.
//! The notifiers that group their pages (PagerDuty, webhooks) send one
//! notification per incident with it, updated as the incident grows.

use serde::{Deserialize, Serialize};

use super::report::count;
use super::{AlertRecord, Incident};
use crate::detect::text::duration;
use crate::model::{AlertName, Severity, Timestamp};

/// Server names a headline lists before "and N more".
const NAMES_SHOWN: usize = 10;

/// An incident as one of its alert events left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentNote {
    pub id: String,
    pub target: String,
    /// Every alert still firing, grouped, with numbers; or, once none is,
    /// that the incident is over, with its duration and impact.
    pub headline: String,
    /// Alerts of the incident still firing after this event.
    pub firing: usize,
    /// The highest severity among them (or among all its alerts, once
    /// none fires).
    pub severity: Severity,
    pub start: Timestamp,
    pub detected: Timestamp,
    #[serde(default)]
    pub end: Option<Timestamp>,
    pub duration_seconds: f64,
    /// The impact in a sentence ("about 1,200 requests failed beyond the
    /// usual 5xx; …"), or that none was measured.
    pub impact: String,
    pub cause: String,
}

impl IncidentNote {
    /// `listed(pool)`: how many servers the pool lists now, for "8 of 20";
    /// `kept(alert)`: the alerts the receiver takes (its route), the only
    /// ones the note counts and names.
    pub fn of(
        i: &Incident,
        now: Timestamp,
        listed: &dyn Fn(&str) -> Option<usize>,
        kept: &dyn Fn(&AlertRecord) -> bool,
    ) -> Self {
        let alerts: Vec<&AlertRecord> = i.alerts.iter().filter(|a| kept(a)).collect();
        let firing: Vec<&AlertRecord> = alerts
            .iter()
            .copied()
            .filter(|a| a.resolved.is_none())
            .collect();
        let ranked = if firing.is_empty() { &alerts } else { &firing };
        // Critical sorts first.
        let severity = ranked
            .iter()
            .map(|a| a.severity)
            .min()
            .unwrap_or(Severity::Warning);
        let duration_seconds = i.duration(now).max(0.0);
        let impact = impact(i);
        let headline = if firing.is_empty() {
            format!("over after {}: {impact}", duration(duration_seconds))
        } else {
            headline(&i.target, &firing, listed)
        };
        IncidentNote {
            id: i.id.clone(),
            target: i.target.clone(),
            headline,
            firing: firing.len(),
            severity,
            start: i.start,
            detected: i.detected,
            end: i.end,
            duration_seconds,
            impact,
            cause: i.cause.clone(),
        }
    }
}

/// The firing alerts, grouped by alert and pool, first fired first.
fn headline(
    target: &str,
    firing: &[&AlertRecord],
    listed: &dyn Fn(&str) -> Option<usize>,
) -> String {
    let mut groups: Vec<(AlertName, Option<&str>, Vec<&AlertRecord>)> = Vec::new();
    for a in firing {
        let key = (a.alert, a.pool.as_deref());
        match groups.iter_mut().find(|(n, p, _)| (*n, *p) == key) {
            Some(g) => g.2.push(a),
            None => groups.push((key.0, key.1, vec![a])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(alert, pool, records)| group(target, *alert, *pool, records, listed))
        .collect();
    parts.join("; ")
}

fn group(
    target: &str,
    alert: AlertName,
    pool: Option<&str>,
    records: &[&AlertRecord],
    listed: &dyn Fn(&str) -> Option<usize>,
) -> String {
    let servers: Vec<&str> = records.iter().filter_map(|a| a.server.as_deref()).collect();
    let (Some(pool), true) = (pool, servers.len() > 1) else {
        // One alert: its own summary says it best.
        let a = records[0];
        let place: Vec<&str> = [Some(target), a.pool.as_deref(), a.server.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let place = place.join("/");
        return match &a.summary {
            Some(s) => format!("{alert} on {place}: {s}"),
            None => format!("{alert} on {place}"),
        };
    };
    let of = listed(pool).map_or(String::new(), |n| format!(" of {n}"));
    let mut names = servers.clone();
    names.sort_unstable();
    names.truncate(NAMES_SHOWN);
    let more = match servers.len() - names.len() {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!(
        "{alert} on {target}: {}{of} servers of pool {pool} {}: {}{more}",
        servers.len(),
        verb(alert),
        names.join(", ")
    )
}

#[cfg(test)]
impl IncidentNote {
    /// A note of incident `id` on lb1 with `firing` alerts, for tests.
    pub fn sample(id: &str, firing: usize) -> IncidentNote {
        IncidentNote {
            id: id.into(),
            target: "lb1".into(),
            headline: String::new(),
            firing,
            severity: Severity::Warning,
            start: Timestamp::from_micros(0),
            detected: Timestamp::from_micros(0),
            end: None,
            duration_seconds: 0.0,
            impact: String::new(),
            cause: String::new(),
        }
    }
}

fn verb(alert: AlertName) -> &'static str {
    match alert {
        AlertName::ServerDown => "down",
        AlertName::ErrorSpike => "returning 5xx beyond their usual ratio",
        AlertName::LatencySpike => "answering slowly",
        AlertName::ServerFlapping => "flapping",
        _ => "alerting",
    }
}

/// The incident's impact in a sentence.
pub fn impact(i: &Incident) -> String {
    if i.impact.is_empty() {
        return "no impact measured (no counters of its pools)".to_string();
    }
    let parts = losses(i);
    if parts.is_empty() {
        "no request failed or went missing beyond the usual".to_string()
    } else {
        parts.join("; ")
    }
}

/// The requests lost, each in a clause: failed beyond the usual 5xx, and
/// missing while a pool was blocked (none below one request).
pub fn losses(i: &Incident) -> Vec<String> {
    let failed: f64 = i.impact.iter().map(|p| p.failed()).sum();
    let missing: f64 = i.impact.iter().map(|p| p.missing).sum();
    let mut parts = Vec::new();
    if failed >= 1.0 {
        parts.push(format!(
            "about {} requests failed beyond the usual 5xx",
            count(failed)
        ));
    }
    if missing >= 1.0 {
        parts.push(format!(
            "about {} requests never reached a server",
            count(missing)
        ));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::PoolImpact;

    fn down(server: &str, at: i64, resolved: Option<i64>) -> AlertRecord {
        AlertRecord {
            alert: AlertName::ServerDown,
            severity: Severity::Warning,
            pool: Some("web".into()),
            server: Some(server.into()),
            fired: Timestamp::from_micros(at * 1_000_000),
            resolved: resolved.map(|r| Timestamp::from_micros(r * 1_000_000)),
            first_value: None,
            last_value: None,
            summary: Some(format!("server {server} of pool web is down")),
        }
    }

    fn incident(alerts: Vec<AlertRecord>) -> Incident {
        Incident {
            id: "lb1-x".into(),
            target: "lb1".into(),
            start: Timestamp::from_micros(0),
            detected: Timestamp::from_micros(1_000_000),
            end: None,
            closed: false,
            alerts,
            events: Vec::new(),
            impact: vec![PoolImpact {
                pool: "web".into(),
                failed_net: 1234.4,
                missing: 0.2,
                ..PoolImpact::default()
            }],
            cause: String::new(),
            departed: Vec::new(),
            series: Vec::new(),
        }
    }

    #[test]
    fn servers_down_together_are_one_headline_naming_them() {
        let mut alerts: Vec<AlertRecord> = (0..12)
            .map(|i| down(&format!("web{:02}", 3 + 10 * i), 1, None))
            .collect();
        alerts.push(down("web99", 1, Some(5)));
        let i = incident(alerts);
        let listed = |p: &str| (p == "web").then_some(200);
        let note = IncidentNote::of(&i, Timestamp::from_micros(61_000_000), &listed, &|_| true);
        assert_eq!(
            note.headline,
            "ServerDown on lb1: 12 of 200 servers of pool web down: web03, web103, web113, web13, \
             web23, web33, web43, web53, web63, web73 and 2 more"
        );
        assert_eq!((note.firing, note.duration_seconds), (12, 61.0));
        assert_eq!(
            note.impact,
            "about 1,234 requests failed beyond the usual 5xx"
        );
    }

    #[test]
    fn one_alert_says_its_summary_and_an_incident_over_says_what_it_cost() {
        let i = incident(vec![down("web1", 1, None)]);
        let note = IncidentNote::of(&i, Timestamp::from_micros(2_000_000), &|_| None, &|_| true);
        assert_eq!(
            note.headline,
            "ServerDown on lb1/web/web1: server web1 of pool web is down"
        );
        let mut over = incident(vec![down("web1", 1, Some(90))]);
        over.end = Some(Timestamp::from_micros(90_000_000));
        let note = IncidentNote::of(
            &over,
            Timestamp::from_micros(95_000_000),
            &|_| None,
            &|_| true,
        );
        assert_eq!(note.firing, 0);
        assert_eq!(
            note.headline,
            "over after 90s: about 1,234 requests failed beyond the usual 5xx"
        );
    }

    #[test]
    fn a_receiver_is_told_only_of_the_alerts_its_route_takes() {
        let mut skew = down("web1", 1, Some(30));
        skew.alert = AlertName::TrafficSkew;
        skew.severity = Severity::Critical;
        let i = incident(vec![skew, down("web2", 2, None)]);
        let critical = |a: &AlertRecord| a.severity == Severity::Critical;
        let note = IncidentNote::of(&i, Timestamp::from_micros(40_000_000), &|_| None, &critical);
        assert_eq!(note.firing, 0, "its only alert resolved: over for it");
        assert_eq!(note.severity, Severity::Critical);
        let all = IncidentNote::of(&i, Timestamp::from_micros(40_000_000), &|_| None, &|_| true);
        assert_eq!((all.firing, all.severity), (1, Severity::Warning));
    }
}
