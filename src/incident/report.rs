//! The postmortem draft of an incident: summary, duration, impact,
//! detection, the timeline, the root-cause hint, and the sections only a
//! person can write, as headings with prompts. It says nothing lbwatch
//! does not know.

use std::fmt::Write;

use super::{Incident, PoolImpact};
use crate::detect::text::{duration, hms, pct, rate};
use crate::model::Timestamp;

/// "2026-11-30 14:00:02Z".
fn when(ts: Timestamp) -> String {
    let text = ts.to_string();
    let date = text.get(..10).unwrap_or(&text);
    format!("{date} {}", hms(ts))
}

/// "1,234".
pub fn count(x: f64) -> String {
    let n = x.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Lines of the timeline: the LB's events and the alerts, in order.
fn timeline(i: &Incident) -> Vec<(Timestamp, String)> {
    let mut lines: Vec<(Timestamp, String)> =
        i.events.iter().map(|e| (e.ts, e.text.clone())).collect();
    for a in &i.alerts {
        let what = match (&a.pool, &a.server) {
            (Some(p), Some(s)) => format!("{p}/{s}"),
            (Some(p), None) => p.clone(),
            _ => i.target.clone(),
        };
        let severity = serde_json::to_value(a.severity)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let summary = a
            .summary
            .as_deref()
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        lines.push((
            a.fired,
            format!("**{} {severity}** on {what} fired{summary}", a.alert),
        ));
        if let Some(r) = a.resolved {
            lines.push((r, format!("{} on {what} resolved", a.alert)));
        }
    }
    lines.sort_by_key(|(t, _)| *t);
    lines
}

fn impact_table(out: &mut String, pools: &[PoolImpact]) {
    out.push_str("| pool | requests | failed beyond the usual 5xx | missing against the usual rate | usual rate | usual 5xx |\n|---|---:|---:|---:|---:|---:|\n");
    for p in pools {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            p.pool,
            count(p.requests),
            count(p.failed()),
            count(p.missing),
            p.usual_rate
                .map_or("unknown".into(), |r| format!("{} req/s", rate(r))),
            p.usual_error_ratio.map_or("unknown".into(), pct)
        );
    }
    for p in pools
        .iter()
        .filter(|p| p.requests > 0.0 && p.shares.len() > 1)
    {
        let _ = writeln!(out, "\nShare of pool {}'s requests during the incident:\n\n| server | requests | share | usual share |\n|---|---:|---:|---:|", p.pool);
        for s in &p.shares {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                s.server,
                count(s.requests),
                pct(s.share),
                s.usual_share.map_or("unknown".into(), pct)
            );
        }
    }
}

/// The draft in Markdown.
pub fn markdown(i: &Incident, now: Timestamp) -> String {
    let mut out = String::new();
    let first = i.alerts.first();
    let title = first.map_or("an incident".to_string(), |a| {
        format!(
            "{} on {}{}",
            a.alert,
            i.target,
            a.pool.as_ref().map(|p| format!("/{p}")).unwrap_or_default()
        )
    });
    let _ = writeln!(out, "# Incident {}: {title}\n", i.id);
    let _ = writeln!(out, "## Summary\n\n{}\n", summary(i, now));
    let end = match (i.end, i.closed) {
        (Some(e), _) => when(e),
        (None, _) => "still open".to_string(),
    };
    let _ = writeln!(
        out,
        "| | |\n|---|---|\n| Load balancer | {} |\n| Start | {} |\n| Detected | {} ({} after the start) |\n| End | {end} |\n| Duration | {}{} |\n| Alerts | {} |\n",
        i.target,
        when(i.start),
        when(i.detected),
        duration(i.detected.secs_since(i.start)),
        duration(i.duration(now)),
        if i.end.is_none() { " so far" } else { "" },
        i.alerts.len()
    );
    out.push_str("## Impact\n\n");
    if i.impact.is_empty() {
        out.push_str("Unknown: lbwatch had no counters of the pools concerned during the incident (the load balancer could not be scraped, or the incident began as lbwatch started).\n");
    } else {
        out.push_str("Estimated from the load balancer's counters against each pool's usual traffic: its average over about the ten minutes before the incident (the alerts' own baselines are learnt differently and may differ a little). Requests below the usual rate are those the pools did not receive while under half of it: an estimate of the traffic turned away.\n\n");
        impact_table(&mut out, &i.impact);
    }
    out.push('\n');
    if let Some(a) = first {
        let _ = writeln!(
            out,
            "## Detection\n\nlbwatch raised {} at {}, {} after the start.\n",
            a.alert,
            hms(a.fired),
            duration(a.fired.secs_since(i.start))
        );
    }
    out.push_str("## Timeline (UTC)\n\nThe load balancer's events are dated by lbwatch's scrapes: each happened within one scrape interval before its time.\n\n| time | event |\n|---|---|\n");
    for (t, text) in timeline(i) {
        let _ = writeln!(out, "| {} | {} |", hms(t), text.replace('|', "\\|"));
    }
    let _ = writeln!(
        out,
        "\n## Root cause (lbwatch's hint)\n\n{}.\n",
        capitalised(&i.cause)
    );
    out.push_str(PROMPTS);
    out
}

const PROMPTS: &str = "## Resolution\n\n_What restored service, who did it, and when. lbwatch saw the end above; it does not know what was done._\n\n## Corrective and preventive measures\n\n_What will stop this from happening again (a `lbwatch lint` check in the pipeline, a staging `lbwatch verify`), and who owns each measure._\n\n## Lessons learned\n\n_What went well, what went wrong, where the team looked first._\n";

/// What happened, for how long, and what it cost, in a few sentences.
fn summary(i: &Incident, now: Timestamp) -> String {
    let mut alerts: Vec<&str> = i.alerts.iter().map(|a| a.alert.as_str()).collect();
    alerts.dedup();
    let span = if i.end.is_some() {
        "lasted"
    } else {
        "has lasted"
    };
    let mut text = format!(
        "The incident on {} {span} {} from {} ({}).",
        i.target,
        duration(i.duration(now)),
        hms(i.start),
        alerts.join(", ")
    );
    for loss in super::notice::losses(i) {
        let _ = write!(text, " {}.", capitalised(&loss));
    }
    format!("{text} Likely cause: {}.", i.cause)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

/// `lbwatch incidents`: one line each, newest first.
pub fn list(incidents: &[&Incident], now: Timestamp) -> String {
    let mut out = String::new();
    if incidents.is_empty() {
        out.push_str("no incident\n");
    }
    for i in incidents {
        let alerts: Vec<&str> = i.alerts.iter().map(|a| a.alert.as_str()).collect();
        let state = if i.end.is_none() { ", still open" } else { "" };
        let _ = writeln!(
            out,
            "{}  {}  {}{state}  {}\n    {}",
            i.id,
            when(i.start),
            duration(i.duration(now)),
            alerts.join(", "),
            i.cause
        );
    }
    out
}

/// The same as JSON.
pub fn json(i: &Incident) -> serde_json::Value {
    let mut v = serde_json::to_value(i).unwrap_or_default();
    v["timeline"] = timeline(i)
        .into_iter()
        .map(|(ts, text)| serde_json::json!({"ts": ts, "event": text}))
        .collect();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_with_separators() {
        assert_eq!(
            [count(0.4), count(1234.0), count(1_234_567.0)],
            ["0", "1,234", "1,234,567"]
        );
    }
}
