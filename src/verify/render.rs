//! `verify`'s report as text (a table per pool, then the verdict) and JSON.

use std::fmt::Write;

use super::judge::{PoolReport, Problem, Report};
use crate::pipeline::human_line;

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{:.1}%", 100.0 * x))
}

fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.1}/s"))
}

fn problem_line(out: &mut String, p: &Problem) {
    let mark = if p.allowed { "allowed" } else { "FAIL" };
    let _ = writeln!(out, "  {mark}: {}", p.text);
}

fn pool_table(out: &mut String, p: &PoolReport) {
    let _ = writeln!(
        out,
        "{} / pool {}: {:.0} requests before ({}), {:.0} after ({}); 5xx {} before, {} after",
        p.target,
        p.pool,
        p.requests_before,
        rate(p.rate_before),
        p.requests_after,
        rate(p.rate_after),
        pct(p.errors_before),
        pct(p.errors_after)
    );
    let _ = writeln!(
        out,
        "  {:<20} {:>9} {:>9} {:>9} {:>11} {:>10}",
        "server", "before", "after", "weights", "5xx before", "5xx after"
    );
    for s in &p.servers {
        let _ = writeln!(
            out,
            "  {:<20} {:>9} {:>9} {:>9} {:>11} {:>10}{}",
            s.server,
            pct(s.share_before),
            pct(s.share_after),
            pct(s.expected),
            pct(s.errors_before),
            pct(s.errors_after),
            if s.change.is_empty() {
                String::new()
            } else {
                format!("  ({})", s.change)
            }
        );
    }
    for problem in &p.problems {
        problem_line(out, problem);
    }
    out.push('\n');
}

pub fn text(r: &Report) -> String {
    let mut out = String::new();
    if !r.compared {
        out.push_str("no samples before the change (--before or --change-at): the spread is judged against the weights only\n\n");
    }
    for p in &r.pools {
        pool_table(&mut out, p);
    }
    for f in &r.frontends {
        let _ = writeln!(
            out,
            "{} / frontend {}: denied {} of its requests before, {} after",
            f.target,
            f.frontend,
            pct(f.denied_before),
            pct(f.denied_after)
        );
        for problem in &f.problems {
            problem_line(&mut out, problem);
        }
    }
    if !r.already_firing.is_empty() {
        out.push_str("\nalready firing before the change (not counted):\n");
        for e in &r.already_firing {
            let _ = writeln!(out, "  {}", human_line(e));
        }
    }
    if !r.alerts.is_empty() {
        out.push_str("\nalerts after the change:\n");
        for a in &r.alerts {
            let mark = if a.allowed { "allowed" } else { "FAIL" };
            let _ = writeln!(out, "  {mark}: {}", human_line(&a.event));
        }
    }
    let failures = r
        .pools
        .iter()
        .flat_map(|p| &p.problems)
        .chain(r.frontends.iter().flat_map(|f| &f.problems))
        .filter(|p| !p.allowed)
        .count()
        + r.alerts.iter().filter(|a| !a.allowed).count();
    let _ = writeln!(
        out,
        "\nverify: {}",
        if r.passed {
            "PASS: the load balancer spreads traffic as it did before the change".to_string()
        } else {
            format!("FAIL: {failures} problem(s)")
        }
    );
    out
}

pub fn json(r: &Report) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["version"] = "1".into();
    v
}
