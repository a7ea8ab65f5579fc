//! The likely cause of an incident in one sentence, with numbers, from what
//! lbwatch saw: the LB change right before the start, and what the first
//! alert and the pool's counters say. Nothing it did not see. Sentences
//! begin with lbwatch's own words, so that names keep their case.

use super::report::count;
use super::{Incident, LbEventKind, PoolImpact, ShareImpact};
use crate::detect::text::{hms, names_of, pct, rate};
use crate::model::AlertName;

/// "The reload at 14:00:02Z changed pool web: 3 of 4 servers left (…);
/// server web-2 took 100% of the traffic of pool web (usually 25%)".
pub fn sentence(incident: &Incident) -> String {
    let Some(first) = incident.alerts.first() else {
        return String::new();
    };
    let pool = first.pool.as_deref();
    let impact = pool.and_then(|p| incident.impact.iter().find(|i| i.pool == p));
    let change = change_before(incident, pool);
    let effect = match (first.alert, impact) {
        (AlertName::TrafficSkew | AlertName::ServerDown | AlertName::PoolUnavailable, Some(i)) => {
            moved(i).map(|s| share(s, &i.pool))
        }
        (AlertName::ErrorSpike, Some(i)) => Some(errors(i)),
        (AlertName::TrafficDrop, _) if !incident.impact.is_empty() => Some(missing(incident)),
        _ => None,
    };
    let said = || match &first.summary {
        Some(s) => format!("{} said: {s}", first.alert),
        None => format!("{} on {}", first.alert, incident.target),
    };
    match (change, effect) {
        (Some(c), Some(e)) => format!("{c}; {}", lower_first(&e)),
        (Some(c), None) => format!("{c}; then {}", said()),
        (None, Some(e)) => format!("{e}, with no change of the LB seen before it"),
        (None, None) => said(),
    }
}

/// "Server web-2 took…" after a semicolon: "server web-2 took…".
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_lowercase().chain(c).collect())
}

/// The LB change at the start, said as what it did to the pool.
fn change_before(incident: &Incident, pool: Option<&str>) -> Option<String> {
    let before = |kind: LbEventKind| {
        incident
            .events
            .iter()
            .filter(move |e| e.ts <= incident.detected && e.kind == kind)
            .filter(move |e| pool.is_none() || e.pool.as_deref() == pool || e.pool.is_none())
    };
    let reload = before(LbEventKind::Reload)
        .next()
        .map(|r| format!("The reload at {}", hms(r.ts)));
    let changed = [
        LbEventKind::ServersLeft,
        LbEventKind::WeightChanged,
        LbEventKind::AlgorithmChanged,
    ]
    .into_iter()
    .find_map(|k| before(k).next())
    .map(|e| e.text.clone());
    let down: Vec<&str> = before(LbEventKind::ServerDown)
        .filter_map(|e| e.server.as_deref())
        .collect();
    let went_down = (!down.is_empty()).then(|| {
        let of = pool.map(|p| format!(" of pool {p}")).unwrap_or_default();
        match down.as_slice() {
            [one] => format!("server {one}{of} went down"),
            many => format!("{} servers{of} went down ({})", many.len(), names_of(many)),
        }
    });
    match (reload, changed, went_down) {
        (Some(r), Some(c), _) => Some(format!("{r} changed {c}")),
        (Some(r), None, Some(d)) => Some(format!("{r}, after which {d}")),
        (Some(r), None, None) => Some(format!("{r} came right before it")),
        (None, Some(c), _) => Some(format!("The LB changed {c}")),
        (None, None, Some(d)) => Some(format!("At the start, {d}")),
        (None, None, None) => None,
    }
}

/// The server whose share moved most: the one that took far more than
/// usual, or else the one starved of its usual share.
fn moved(i: &PoolImpact) -> Option<&ShareImpact> {
    let ratio = |s: &ShareImpact| s.usual_share.filter(|u| *u > 0.0).map(|u| s.share / u);
    let hot = i
        .shares
        .iter()
        .filter(|s| {
            s.usual_share
                .is_some_and(|u| s.share >= 1.5 * u && s.share - u >= 0.1)
        })
        .max_by(|a, b| a.share.total_cmp(&b.share));
    let cold = i
        .shares
        .iter()
        .filter(|s| ratio(s).is_some_and(|r| r <= 0.3) && s.usual_share.is_some_and(|u| u >= 0.02))
        .min_by(|a, b| ratio(a).unwrap_or(1.0).total_cmp(&ratio(b).unwrap_or(1.0)));
    hot.or(cold)
}

fn share(s: &ShareImpact, pool: &str) -> String {
    let usual = s
        .usual_share
        .map(|u| format!(" (usually {})", pct(u)))
        .unwrap_or_default();
    format!(
        "Server {} took {} of the traffic of pool {pool}{usual}",
        s.server,
        pct(s.share)
    )
}

fn errors(i: &PoolImpact) -> String {
    let ratio = if i.requests > 0.0 {
        i.failed() / i.requests
    } else {
        0.0
    };
    let usual = i
        .usual_error_ratio
        .map(|u| format!(" (usually {})", pct(u)))
        .unwrap_or_default();
    format!(
        "Pool {} answered {} requests with 5xx beyond its usual ratio, {} of its {} requests{usual}",
        i.pool,
        count(i.failed()),
        pct(ratio),
        count(i.requests)
    )
}

fn missing(incident: &Incident) -> String {
    let missing: f64 = incident.impact.iter().map(|i| i.missing).sum();
    let usual: f64 = incident.impact.iter().filter_map(|i| i.usual_rate).sum();
    format!(
        "Load balancer {} passed on too little traffic: about {} requests fewer than its usual {} req/s",
        incident.target,
        count(missing),
        rate(usual)
    )
}
