//! The request bodies of each receiver, as pure functions of the events.

use serde_json::{json, Value};

use super::outbox::Told;
use crate::incident::notice::IncidentNote;
use crate::model::{AlertEvent, AlertState, Severity, Timestamp};

/// Where a person reads an incident: the status page's view of it, and
/// its postmortem draft.
pub fn incident_links(external_url: &str, id: &str) -> [String; 2] {
    let id = query_escape(id);
    [
        format!("{external_url}/#incident={id}"),
        format!("{external_url}/api/v1/incidents/{id}?format=markdown"),
    ]
}

/// The generic webhook body of `docs/interface.md`: the events, and, when
/// they belong to an incident, that incident as they left it, with links.
/// Each event carries its alert's `dedup_key` and an `id` of the
/// transition, the same from every replica watching the LB.
pub fn webhook(events: &[&AlertEvent], incident: Option<&IncidentNote>, external: &str) -> Vec<u8> {
    let events: Vec<Value> = events.iter().map(|e| keyed(e)).collect();
    let mut body = json!({"version": "1", "events": events});
    if let Some(note) = incident {
        let mut v = serde_json::to_value(note).expect("a note serialises");
        let [page, report] = incident_links(external, &note.id);
        v["url"] = json!(page);
        v["report_url"] = json!(report);
        v["dedup_key"] = json!(incident_dedup_key(&note.target));
        body["incident"] = v;
    }
    serde_json::to_vec(&body).expect("events serialise")
}

/// An event as the webhook sends it: its fields, its alert's `dedup_key`,
/// and `id`, a hash of the key and the new state. Replicas date an event a
/// scrape apart, so nothing of its time goes into the id: a receiver that
/// keeps the last id per `dedup_key` knows a repeat by it.
fn keyed(e: &AlertEvent) -> Value {
    let mut v = serde_json::to_value(e).expect("an event serialises");
    let key = dedup_key(e);
    let state = serde_json::to_value(e.state).expect("a state serialises");
    let state = state.as_str().unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{key}\n{state}").as_bytes());
    v["id"] = json!(hex(&digest.as_ref()[..8]));
    v["dedup_key"] = json!(key);
    v
}

/// `X-Lbwatch-Signature` for `body` under `secret`: `sha256=<hex>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex(ring::hmac::sign(&key, body).as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// PagerDuty's limit on `dedup_key`.
const DEDUP_KEY_MAX: usize = 255;
/// PagerDuty's limit on `payload.summary`.
const SUMMARY_MAX: usize = 1024;

/// A stable `dedup_key` per alert: its key, or, when too long, a prefix
/// and a hash of the whole so two long keys never collide.
pub fn dedup_key(e: &AlertEvent) -> String {
    bounded_key(format!("lbwatch/{}", e.key()))
}

/// The `dedup_key` of an incident's page: every alert of the incident
/// updates the one page. A target has one incident open at a time, and
/// replicas watching it date its start a scrape apart, so the key is the
/// target's: the same from every replica. (PagerDuty opens a new alert for
/// a key whose last one resolved.)
pub fn incident_dedup_key(target: &str) -> String {
    bounded_key(format!("lbwatch/incident/{target}"))
}

fn bounded_key(key: String) -> String {
    if key.len() <= DEDUP_KEY_MAX {
        return key;
    }
    let digest = hex(ring::digest::digest(&ring::digest::SHA256, key.as_bytes()).as_ref());
    let keep = cut(&key, DEDUP_KEY_MAX - digest.len() - 1);
    format!("{keep}#{digest}")
}

/// At most `max` bytes of `s`, cut on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn place(e: &AlertEvent) -> String {
    match (&e.pool, &e.server) {
        (Some(p), Some(s)) => format!("{}/{p}/{s}", e.target),
        (Some(p), None) => format!("{}/{p}", e.target),
        _ => e.target.clone(),
    }
}

/// A PagerDuty Events API v2 event: `trigger` for a firing alert,
/// `resolve` for a resolved one, both under the alert's `dedup_key`.
pub fn pagerduty(e: &AlertEvent, routing_key: &str, link: &str) -> Vec<u8> {
    let body = match e.state {
        AlertState::Firing => {
            let text = format!(
                "{} on {}: {}",
                e.alert,
                place(e),
                e.summary.as_deref().unwrap_or("")
            );
            json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key(e),
                "client": "lbwatch",
                "client_url": link,
                "payload": {
                    "summary": cut(&text, SUMMARY_MAX),
                    "source": e.target,
                    "severity": severity(e.severity),
                    "timestamp": e.ts,
                    "component": e.pool,
                    "group": e.target,
                    "class": e.alert,
                    "custom_details": {
                        "server": e.server,
                        "value": e.value,
                        "summary": e.summary,
                    },
                },
            })
        }
        AlertState::Resolved => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key(e),
        }),
    };
    serde_json::to_vec(&body).expect("serialises")
}

/// The labels that identify an alert in Alertmanager: two lbwatch replicas
/// watching the same LB send the same labels, so Alertmanager merges them.
pub fn alertmanager_labels(e: &AlertEvent) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), json!(e.alert));
    labels.insert("target".into(), json!(e.target));
    if let Some(p) = &e.pool {
        labels.insert("pool".into(), json!(p));
    }
    if let Some(s) = &e.server {
        labels.insert("server".into(), json!(s));
    }
    labels.insert("severity".into(), json!(severity(e.severity)));
    Value::Object(labels)
}

/// Alertmanager API v2 `postableAlerts`: each alert's latest event. A firing
/// one is leased until `lease_until` (re-sent before it runs out); a resolved
/// one ends when it resolved. Its `generatorURL` leads to its incident (or,
/// without one, to its target's pools); a resolved alert's annotations say
/// how long its incident lasted and what it cost, once it is over.
pub fn alertmanager(alerts: &[&Told], lease_until: Timestamp, external_url: &str) -> Vec<u8> {
    let body: Vec<Value> = alerts
        .iter()
        .map(|t| {
            let latest = &t.event;
            let firing = latest.state == AlertState::Firing;
            let start = if firing {
                Some(latest)
            } else {
                t.fired.as_ref()
            };
            let summary = start.and_then(|f| f.summary.clone()).unwrap_or_default();
            let mut annotations = serde_json::Map::new();
            annotations.insert("summary".into(), json!(summary));
            if let Some(v) = start.and_then(|f| f.value) {
                annotations.insert("value".into(), json!(v.to_string()));
            }
            let generator = match &t.incident {
                Some(note) => {
                    annotations.insert("incident".into(), json!(note.id));
                    if note.firing == 0 {
                        annotations.insert("incident_summary".into(), json!(note.headline));
                        annotations.insert(
                            "incident_duration_seconds".into(),
                            json!(format!("{:.0}", note.duration_seconds)),
                        );
                        annotations.insert("incident_impact".into(), json!(note.impact));
                    }
                    let [page, _] = incident_links(external_url, &note.id);
                    page
                }
                None => format!(
                    "{external_url}/api/v1/pools?target={}",
                    query_escape(&latest.target)
                ),
            };
            let mut alert = json!({
                "labels": alertmanager_labels(latest),
                "annotations": annotations,
                "endsAt": if firing { lease_until } else { latest.ts },
                "generatorURL": generator,
            });
            if let Some(s) = start {
                alert["startsAt"] = json!(s.ts);
            }
            alert
        })
        .collect();
    serde_json::to_vec(&body).expect("serialises")
}

/// One PagerDuty event for an incident: a `trigger` naming every alert it
/// has firing (sent again, under the same `dedup_key`, as it grows), or its
/// `resolve` once none fires. `events` are the alert events it carries.
/// PagerDuty reads no payload on a resolve: the duration and impact reach
/// it through the links, and reach the other receivers in their payloads.
pub fn pagerduty_incident(
    note: &IncidentNote,
    events: &[&AlertEvent],
    routing_key: &str,
    external_url: &str,
) -> Vec<u8> {
    let dedup_key = incident_dedup_key(&note.target);
    if note.firing == 0 {
        let body = json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
        return serde_json::to_vec(&body).expect("serialises");
    }
    let [page, report] = incident_links(external_url, &note.id);
    let text = &note.headline;
    let last = events.last().map_or(note.detected, |e| e.ts);
    let body = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "lbwatch",
        "client_url": page,
        "links": [
            {"href": page, "text": format!("Incident {}: timeline and chart", note.id)},
            {"href": report, "text": "Postmortem draft"},
        ],
        "payload": {
            "summary": cut(text, SUMMARY_MAX),
            "source": note.target,
            "severity": severity(note.severity),
            "timestamp": last,
            "group": note.target,
            "class": "incident",
            "custom_details": {
                "incident": note.id,
                "start": note.start,
                "detected": note.detected,
                "alerts_firing": note.firing,
                "impact_so_far": note.impact,
                "likely_cause": note.cause,
                "events": events.iter().map(|e| json!({
                    "alert": e.alert, "state": e.state, "pool": e.pool,
                    "server": e.server, "summary": e.summary, "ts": e.ts,
                })).collect::<Vec<_>>(),
            },
        },
    });
    serde_json::to_vec(&body).expect("serialises")
}

/// Percent-encodes a query value.
pub fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlertName;

    fn event(state: AlertState, pool: &str) -> AlertEvent {
        AlertEvent {
            ts: Timestamp::parse_rfc3339("2026-11-22T03:00:00Z").unwrap(),
            state,
            alert: AlertName::TrafficSkew,
            severity: Severity::Critical,
            target: "lb1".into(),
            pool: Some(pool.into()),
            server: None,
            summary: (state == AlertState::Firing).then(|| "é".repeat(900)),
            value: Some(0.93),
        }
    }

    #[test]
    fn pagerduty_limits_hold_for_long_names_and_summaries() {
        let long = "p".repeat(400);
        let e = event(AlertState::Firing, &long);
        let body: Value = serde_json::from_slice(&pagerduty(&e, "KEY", "http://x")).unwrap();
        let key = body["dedup_key"].as_str().unwrap();
        assert!(key.len() <= 255, "{}", key.len());
        assert!(body["payload"]["summary"].as_str().unwrap().len() <= 1024);
        // The same alert, resolved: the same key.
        let r: Value =
            serde_json::from_slice(&pagerduty(&event(AlertState::Resolved, &long), "KEY", ""))
                .unwrap();
        assert_eq!(r["dedup_key"], body["dedup_key"]);
        assert_eq!(r["event_action"], "resolve");
        // Two long keys that differ only at the end stay different.
        let other = event(AlertState::Firing, &format!("{long}x"));
        assert_ne!(dedup_key(&other), key);
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn alertmanager_alerts_carry_identity_labels_and_a_lease() {
        let fired = event(AlertState::Firing, "web");
        let lease = Timestamp::parse_rfc3339("2026-11-22T03:04:00Z").unwrap();
        let told = |event: &AlertEvent, fired: Option<&AlertEvent>| Told {
            event: event.clone(),
            fired: fired.cloned(),
            incident: None,
        };
        let body: Value =
            serde_json::from_slice(&alertmanager(&[&told(&fired, None)], lease, "http://h:1"))
                .unwrap();
        assert_eq!(
            body[0]["labels"],
            json!({"alertname": "TrafficSkew", "target": "lb1", "pool": "web", "severity": "critical"})
        );
        assert_eq!(body[0]["endsAt"], json!(lease));
        assert_eq!(body[0]["annotations"]["value"], "0.93");
        assert_eq!(
            body[0]["generatorURL"],
            "http://h:1/api/v1/pools?target=lb1"
        );
        let resolved = event(AlertState::Resolved, "web");
        let body: Value = serde_json::from_slice(&alertmanager(
            &[&told(&resolved, Some(&fired))],
            lease,
            "http://h:1",
        ))
        .unwrap();
        assert_eq!(body[0]["endsAt"], json!(resolved.ts));
        assert_eq!(body[0]["startsAt"], json!(fired.ts));
    }

    fn note(firing: usize) -> IncidentNote {
        IncidentNote {
            target: "lb 1".into(),
            headline: "ServerDown on lb 1: 3 of 20 servers of pool web down: a, b, c".into(),
            duration_seconds: 190.4,
            impact: "about 1,200 requests failed beyond the usual 5xx".into(),
            ..IncidentNote::sample("lb 1-20261122T025950Z", firing)
        }
    }

    #[test]
    fn an_incident_is_one_page_with_links_and_its_resolve_says_what_it_cost() {
        let e = event(AlertState::Firing, "web");
        let body: Value = serde_json::from_slice(&pagerduty_incident(
            &note(3),
            &[&e, &e],
            "KEY",
            "https://lbw.example",
        ))
        .unwrap();
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["dedup_key"], "lbwatch/incident/lb 1");
        assert_eq!(
            body["payload"]["summary"],
            "ServerDown on lb 1: 3 of 20 servers of pool web down: a, b, c"
        );
        assert_eq!(
            body["links"][0]["href"],
            "https://lbw.example/#incident=lb%201-20261122T025950Z"
        );
        assert_eq!(
            body["links"][1]["href"],
            "https://lbw.example/api/v1/incidents/lb%201-20261122T025950Z?format=markdown"
        );
        assert_eq!(
            body["payload"]["custom_details"]["events"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let over: Value = serde_json::from_slice(&pagerduty_incident(
            &note(0),
            &[&e],
            "KEY",
            "https://lbw.example",
        ))
        .unwrap();
        assert_eq!(over["event_action"], "resolve");
        assert_eq!(over["dedup_key"], body["dedup_key"]);

        let hook: Value =
            serde_json::from_slice(&webhook(&[&e], Some(&note(0)), "http://h")).unwrap();
        assert_eq!(hook["incident"]["duration_seconds"], 190.4);
        assert_eq!(hook["incident"]["firing"], 0);
        assert!(hook["incident"]["impact"]
            .as_str()
            .unwrap()
            .contains("1,200"));
        assert!(hook["incident"]["url"]
            .as_str()
            .unwrap()
            .starts_with("http://h/#incident="));
        assert_eq!(hook["incident"]["dedup_key"], body["dedup_key"]);
        let plain: Value = serde_json::from_slice(&webhook(&[&e], None, "http://h")).unwrap();
        assert!(plain.get("incident").is_none());

        let resolved = event(AlertState::Resolved, "web");
        let told = Told {
            event: resolved,
            fired: Some(e.clone()),
            incident: Some(note(0)),
        };
        let am: Value =
            serde_json::from_slice(&alertmanager(&[&told], resolved_lease(), "http://h")).unwrap();
        assert_eq!(
            am[0]["generatorURL"],
            "http://h/#incident=lb%201-20261122T025950Z"
        );
        assert_eq!(am[0]["annotations"]["incident_duration_seconds"], "190");
        assert!(am[0]["annotations"]["incident_impact"]
            .as_str()
            .unwrap()
            .contains("1,200"));
    }

    fn resolved_lease() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-22T03:10:00Z").unwrap()
    }

    /// Two replicas date the same transition a scrape apart: the webhook's
    /// event id is the same for both, and differs between firing and
    /// resolved, and between alerts.
    #[test]
    fn a_webhook_event_id_names_the_transition_not_its_time() {
        let ids = |events: &[&AlertEvent]| -> Vec<String> {
            let v: Value = serde_json::from_slice(&webhook(events, None, "")).unwrap();
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect()
        };
        let a = event(AlertState::Firing, "web");
        let later = AlertEvent {
            ts: Timestamp::from_micros(a.ts.micros() + 1_000_000),
            value: Some(0.5),
            ..a.clone()
        };
        let resolved = event(AlertState::Resolved, "web");
        let other = event(AlertState::Firing, "api");
        let got = ids(&[&a, &later, &resolved, &other]);
        assert_eq!(got[0], got[1]);
        assert_eq!(got[0].len(), 16);
        assert_ne!(got[0], got[2]);
        assert_ne!(got[0], got[3]);
        let v: Value = serde_json::from_slice(&webhook(&[&a], None, "")).unwrap();
        assert_eq!(v["events"][0]["dedup_key"], "lbwatch/TrafficSkew/lb1/web/");
        assert_eq!(v["events"][0]["alert"], "TrafficSkew");
    }
}
