//! The verdict of `verify`, pool by pool: significance and effect size
//! both, as in the detector, with its thresholds (`[detection]`).

use std::collections::BTreeSet;

use super::tally::{Counts, PoolTally};
use super::{Allow, Verifier};
use crate::detect::stats::{
    binomial_at_least, binomial_at_most, chi2_sf, effective_servers, g_statistic, poisson_at_most,
};
use crate::model::{AlertEvent, AlertName};

/// After the change, a pool receiving this fraction (or less) of what its
/// rate before predicts has stopped receiving traffic.
const STOP_RATIO: f64 = 0.1;
/// Requests a part needs before its rate or 5xx ratio is compared.
const MIN_REQUESTS: f64 = 20.0;
/// A frontend denying this share of its requests (denied / (received +
/// denied)) ...
const DENIED_SHARE: f64 = 0.25;
/// ... and this many times its share before, turns traffic away.
const DENIED_MULTIPLE: f64 = 10.0;

/// Something verify found, and whether `--allow` declared it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    pub text: String,
    pub allowed: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServerRow {
    pub server: String,
    pub share_before: Option<f64>,
    pub share_after: Option<f64>,
    /// From the weights the LB lists after the change.
    pub expected: Option<f64>,
    pub errors_before: Option<f64>,
    pub errors_after: Option<f64>,
    /// `added`, `removed`, or empty.
    pub change: &'static str,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PoolReport {
    pub target: String,
    pub pool: String,
    pub requests_before: f64,
    pub requests_after: f64,
    pub rate_before: Option<f64>,
    pub rate_after: Option<f64>,
    pub errors_before: Option<f64>,
    pub errors_after: Option<f64>,
    pub servers: Vec<ServerRow>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FrontendReport {
    pub target: String,
    pub frontend: String,
    pub denied_before: Option<f64>,
    pub denied_after: Option<f64>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertReport {
    pub event: AlertEvent,
    pub allowed: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    pub passed: bool,
    /// Whether there was a before to compare with (else only the weights
    /// and the alerts are judged).
    pub compared: bool,
    pub pools: Vec<PoolReport>,
    pub frontends: Vec<FrontendReport>,
    pub alerts: Vec<AlertReport>,
    pub already_firing: Vec<AlertEvent>,
}

pub fn judge(v: &Verifier, allow: &[Allow]) -> Report {
    let keys: BTreeSet<&(String, String)> =
        v.before.pools.keys().chain(v.after.pools.keys()).collect();
    let empty = PoolTally::default();
    let pools: Vec<PoolReport> = keys
        .into_iter()
        .map(|key| {
            let before = v.before.pools.get(key).unwrap_or(&empty);
            let after = v.after.pools.get(key).unwrap_or(&empty);
            pool(v, key, before, after, allow)
        })
        .collect();
    let frontends = frontends(v);
    let alerts: Vec<AlertReport> = v
        .alerts
        .iter()
        .map(|e| AlertReport {
            allowed: matches!(
                e.alert,
                AlertName::TrafficSkew | AlertName::PoolMembershipChanged
            ) && allow.iter().any(|a| Some(a.pool()) == e.pool.as_deref()),
            event: e.clone(),
        })
        .collect();
    let failing = pools
        .iter()
        .flat_map(|p| &p.problems)
        .chain(frontends.iter().flat_map(|f| &f.problems))
        .any(|p| !p.allowed)
        || alerts.iter().any(|a| !a.allowed);
    Report {
        passed: !failing,
        compared: v.has_before,
        pools,
        frontends,
        alerts,
        already_firing: v.already_firing.clone(),
    }
}

fn ratio(c: Counts) -> Option<f64> {
    (c.requests > 0.0).then(|| c.errors / c.requests)
}

fn pool(
    v: &Verifier,
    (target, name): &(String, String),
    before: &PoolTally,
    after: &PoolTally,
    allow: &[Allow],
) -> PoolReport {
    let (tb, ta) = (before.total(), after.total());
    let (sb, sa) = (v.before.seconds(target), v.after.seconds(target));
    let mut report = PoolReport {
        target: target.clone(),
        pool: name.clone(),
        requests_before: tb.requests,
        requests_after: ta.requests,
        rate_before: (sb > 0.0).then(|| tb.requests / sb),
        rate_after: (sa > 0.0).then(|| ta.requests / sa),
        errors_before: ratio(tb),
        errors_after: ratio(ta),
        servers: rows(v, before, after),
        problems: Vec::new(),
    };
    membership(&mut report, allow);
    if v.has_before {
        stopped(v, &mut report, sb, sa);
    }
    spread(v, &mut report, after, allow);
    errors(v, &mut report, tb, ta);
    report
}

fn rows(v: &Verifier, before: &PoolTally, after: &PoolTally) -> Vec<ServerRow> {
    let (tb, ta) = (before.total(), after.total());
    let weights: f64 = after
        .listed
        .iter()
        .filter_map(|s| after.servers.get(s))
        .filter(|s| !s.backup)
        .map(|s| s.weight)
        .sum();
    let names: BTreeSet<&String> = before.servers.keys().chain(after.servers.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let b = before.servers.get(name);
            let a = after
                .servers
                .get(name)
                .filter(|_| after.listed.contains(name));
            let change = match (before.listed.contains(name), a.is_some()) {
                (true, false) if v.has_before => "removed",
                (false, true) if v.has_before && b.is_none() => "added",
                _ => "",
            };
            let share = |c: Option<&super::tally::ServerTally>, t: Counts| {
                c.filter(|_| t.requests > 0.0)
                    .map(|s| s.counts.requests / t.requests)
            };
            ServerRow {
                server: name.clone(),
                share_before: share(b, tb),
                share_after: share(a, ta),
                expected: a
                    .filter(|s| !s.backup && weights > 0.0)
                    .map(|s| s.weight / weights),
                errors_before: b.and_then(|s| ratio(s.counts)),
                errors_after: a.and_then(|s| ratio(s.counts)),
                change,
            }
        })
        .collect()
}

/// Servers that left the pool, and whether the operator said they would.
fn membership(report: &mut PoolReport, allow: &[Allow]) {
    for row in report.servers.iter().filter(|r| r.change == "removed") {
        let allowed = allow.contains(&Allow::Removed {
            pool: report.pool.clone(),
            server: row.server.clone(),
        });
        report.problems.push(Problem {
            text: format!(
                "server {} was removed from pool {}",
                row.server, report.pool
            ),
            allowed,
        });
    }
}

/// A pool that stopped receiving the traffic its rate before predicts.
fn stopped(v: &Verifier, report: &mut PoolReport, sb: f64, sa: f64) {
    if report.requests_before < MIN_REQUESTS || sb <= 0.0 || sa <= 0.0 {
        return;
    }
    let expected = report.requests_before / sb * sa;
    let got = report.requests_after;
    if got <= STOP_RATIO * expected && poisson_at_most(got, expected) < v.detect.drop.significance {
        report.problems.push(Problem {
            text: format!(
                "pool {} received {:.0} requests in the {:.0} s after the change ({:.1}/s), against {:.1}/s before: its traffic stopped",
                report.pool,
                got,
                sa,
                got / sa,
                report.requests_before / sb
            ),
            allowed: false,
        });
    }
}

/// Is the spread over the servers still the one before (or, without a
/// before or with `POOL weights` allowed, the one the weights say)?
fn spread(v: &Verifier, report: &mut PoolReport, after: &PoolTally, allow: &[Allow]) {
    let pool = report.pool.clone();
    if allow.contains(&Allow::Balance { pool: pool.clone() }) {
        return;
    }
    let by_weights = !v.has_before || allow.contains(&Allow::Weights { pool: pool.clone() });
    // The servers both parts can speak for: serving after, and (when
    // comparing with before) serving before too.
    let rows: Vec<&ServerRow> = report
        .servers
        .iter()
        .filter(|r| r.expected.is_some())
        .filter(|r| by_weights || r.share_before.is_some())
        .collect();
    if rows.len() < 2 {
        added(v, report, after);
        return;
    }
    let counts: Vec<f64> = rows
        .iter()
        .map(|r| {
            after
                .servers
                .get(&r.server)
                .map_or(0.0, |s| s.counts.requests)
        })
        .collect();
    let expected: Vec<f64> = rows
        .iter()
        .map(|r| {
            if by_weights {
                r.expected
            } else {
                r.share_before
            }
            .unwrap_or(0.0)
        })
        .collect();
    let finding = skewed(v, &rows, &counts, &expected, by_weights);
    added(v, report, after);
    if let Some(text) = finding {
        report.problems.push(Problem {
            text: format!("pool {pool}: {text}"),
            allowed: false,
        });
    }
}

/// The server whose share moved most, if the move is significant and large.
fn skewed(
    v: &Verifier,
    rows: &[&ServerRow],
    counts: &[f64],
    expected: &[f64],
    by_weights: bool,
) -> Option<String> {
    let n: f64 = counts.iter().sum();
    let e_total: f64 = expected.iter().sum();
    if n < v.detect.skew.min_expected * rows.len() as f64 || e_total <= 0.0 {
        return None;
    }
    let (g, df) = g_statistic(counts, expected);
    let p = chi2_sf(g, df);
    if p >= v.detect.skew.significance {
        return None;
    }
    let ratio = |i: usize| (counts[i] / n) / (expected[i] / e_total);
    // The server that took the most over its due says what happened
    // (web1 took 98%); without one, the most starved.
    let judged = || (0..rows.len()).filter(|&i| expected[i] > 0.0);
    let hottest = judged().max_by(|&a, &b| ratio(a).total_cmp(&ratio(b)))?;
    let coldest = judged().min_by(|&a, &b| ratio(a).total_cmp(&ratio(b)))?;
    let worst =
        if ratio(hottest) >= v.detect.skew.hot_ratio || ratio(coldest) > v.detect.skew.cold_ratio {
            hottest
        } else {
            coldest
        };
    let r = ratio(worst);
    let eff_now = effective_servers(counts.iter().copied()).unwrap_or(0.0);
    let eff_was = effective_servers(expected.iter().copied()).unwrap_or(0.0);
    let s = &v.detect.skew;
    let large = r >= s.hot_ratio || r <= s.cold_ratio || eff_now <= s.concentration_ratio * eff_was;
    let basis = if by_weights {
        "its weights say"
    } else {
        "before the change"
    };
    large.then(|| {
        format!(
            "{} took {:.1}% of the requests after the change, {:.1}% {basis} ({:.2} effective servers, {:.2} expected; G-test p = {p:.1e})",
            rows[worst].server,
            100.0 * counts[worst] / n,
            100.0 * expected[worst] / e_total,
            eff_now,
            eff_was
        )
    })
}

/// An added server that takes far less than its weight's share.
fn added(v: &Verifier, report: &mut PoolReport, after: &PoolTally) {
    let total = report.requests_after;
    for row in report.servers.iter().filter(|r| r.change == "added") {
        let (Some(e), Some(s)) = (row.expected, after.servers.get(&row.server)) else {
            continue;
        };
        let k = s.counts.requests;
        if total * e >= v.detect.skew.min_expected
            && k / total <= v.detect.skew.cold_ratio * e
            && binomial_at_most(k, total, e) < v.detect.skew.significance
        {
            report.problems.push(Problem {
                text: format!(
                    "server {} was added to pool {} but took {:.1}% of its requests, where its weight says {:.1}%",
                    row.server,
                    report.pool,
                    100.0 * k / total,
                    100.0 * e
                ),
                allowed: false,
            });
        }
    }
}

/// A 5xx ratio after far above the one before, beyond chance.
fn errors(v: &Verifier, report: &mut PoolReport, before: Counts, after: Counts) {
    if after.requests < MIN_REQUESTS {
        return;
    }
    let c = &v.detect.errors;
    let was = if before.requests >= MIN_REQUESTS {
        before.errors / before.requests
    } else {
        0.0
    };
    let floor = if v.has_before {
        c.baseline_floor
    } else {
        c.unarmed_floor
    };
    let base = was.max(floor);
    let now = after.errors / after.requests;
    if now >= c.ratio_multiple * base
        && now - was >= c.min_increase
        && binomial_at_least(after.errors, after.requests, base) < c.significance
    {
        let worst = report
            .servers
            .iter()
            .filter_map(|r| r.errors_after.map(|e| (e, &r.server)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(e, s)| format!(" ({s}: {:.1}%)", 100.0 * e))
            .unwrap_or_default();
        report.problems.push(Problem {
            text: format!(
                "pool {}: 5xx went from {:.2}% of requests before the change to {:.2}% after{worst}",
                report.pool,
                100.0 * was,
                100.0 * now
            ),
            allowed: false,
        });
    }
}

fn denied_share(requests: f64, denied: f64) -> Option<f64> {
    (requests + denied > 0.0).then(|| denied / (requests + denied))
}

fn frontends(v: &Verifier) -> Vec<FrontendReport> {
    v.after
        .frontends
        .iter()
        .map(|((target, name), a)| {
            let b = v.before.frontends.get(&(target.clone(), name.clone()));
            let before = b.and_then(|b| denied_share(b.requests, b.denied));
            let after = denied_share(a.requests, a.denied);
            let mut problems = Vec::new();
            if let Some(now) = after {
                let was = before.unwrap_or(0.0);
                if a.requests + a.denied >= MIN_REQUESTS && now >= DENIED_SHARE && now >= DENIED_MULTIPLE * was {
                    problems.push(Problem {
                        text: format!(
                            "frontend {name} denied {:.1}% of its requests after the change, {:.1}% before: {:.0} of {:.0}",
                            100.0 * now,
                            100.0 * was,
                            a.denied,
                            a.requests + a.denied
                        ),
                        allowed: false,
                    });
                }
            }
            FrontendReport {
                target: target.clone(),
                frontend: name.clone(),
                denied_before: before,
                denied_after: after,
                problems,
            }
        })
        .collect()
}
