//! The likely cause of an incident in one sentence, with numbers, from what
//! lbwatch saw: the LB change right before the start, and what the first
//! alert and the pool's counters say. Nothing it did not see.

use super::{Incident, LbEventKind, PoolImpact};
use crate::detect::text::{hms, pct, rate};
use crate::model::AlertName;

/// "the reload at 14:00:02 shrank pool web from 4 servers to 1; web-2 took
/// 100% of its traffic".
pub fn sentence(incident: &Incident) -> String {
    let Some(first) = incident.alerts.first() else {
        return String::new();
    };
    let pool = first.pool.as_deref();
    let impact = pool.and_then(|p| incident.impact.iter().find(|i| i.pool == p));
    let change = change_before(incident, pool);
    let effect = match (first.alert, impact) {
        (AlertName::TrafficSkew, Some(i)) => top_share(i),
        (AlertName::ErrorSpike, Some(i)) => Some(errors(i)),
        (AlertName::TrafficDrop, _) => Some(missing(incident)),
        (AlertName::ServerDown | AlertName::PoolUnavailable, Some(i)) => {
            top_share(i).filter(|_| moved(i))
        }
        _ => None,
    };
    let fallback = || {
        first
            .summary
            .clone()
            .unwrap_or_else(|| format!("{} on {}", first.alert, incident.target))
    };
    match (change, effect) {
        (Some(c), Some(e)) => format!("{c}; {e}"),
        (Some(c), None) => format!("{c}; then {}", fallback()),
        (None, Some(e)) => e,
        (None, None) => fallback(),
    }
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
        .map(|r| format!("the reload at {}", hms(r.ts)));
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
            [one] => format!("{one}{of} went down"),
            many => format!("{} servers{of} went down ({})", many.len(), many.join(", ")),
        }
    });
    match (reload, changed, went_down) {
        (Some(r), Some(c), _) => Some(format!("{r} changed {c}")),
        (Some(r), None, Some(d)) => Some(format!("{r}, after which {d}")),
        (Some(r), None, None) => Some(format!("{r} came right before it")),
        (None, Some(c), _) => Some(format!("the LB changed {c}")),
        (None, None, Some(d)) => Some(d),
        (None, None, None) => None,
    }
}

/// Whether the busiest server took far more than its usual share.
fn moved(i: &PoolImpact) -> bool {
    i.shares.iter().any(|s| {
        s.usual_share
            .is_some_and(|u| s.share >= 1.5 * u && s.share - u >= 0.1)
    })
}

fn top_share(i: &PoolImpact) -> Option<String> {
    let top = i.shares.iter().max_by(|a, b| a.share.total_cmp(&b.share))?;
    let usual = top
        .usual_share
        .map(|u| format!(" (usually {})", pct(u)))
        .unwrap_or_default();
    Some(format!(
        "{} took {} of pool {}'s traffic{usual}",
        top.server,
        pct(top.share),
        i.pool
    ))
}

fn errors(i: &PoolImpact) -> String {
    let ratio = if i.requests > 0.0 {
        i.failed / i.requests
    } else {
        0.0
    };
    let usual = i
        .usual_error_ratio
        .map(|u| format!(" (usually {})", pct(u)))
        .unwrap_or_default();
    format!(
        "pool {} answered {:.0} requests with 5xx beyond its usual ratio, {} of its {:.0} requests{usual}",
        i.pool,
        i.failed,
        pct(ratio),
        i.requests
    )
}

fn missing(incident: &Incident) -> String {
    let missing: f64 = incident.impact.iter().map(|i| i.missing).sum();
    let usual: f64 = incident.impact.iter().filter_map(|i| i.usual_rate).sum();
    format!(
        "{} passed on too little traffic: about {missing:.0} requests missing against its usual {} req/s",
        incident.target,
        rate(usual)
    )
}
