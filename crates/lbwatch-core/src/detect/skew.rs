//! TrafficSkew: is a pool's traffic spread the way it should be?
//!
//! Two questions, each needing significance *and* effect size, because at
//! 3 requests anything looks skewed and at a million requests everything is
//! significant:
//!
//! 1. Against the weights: does a server take at least `hot_ratio` times (or
//!    at most `cold_ratio` times) its weight-expected share, and is that
//!    beyond chance (an exact binomial test of that server, Bonferroni-
//!    corrected for the pool's size)? A G-test of the whole pool is not the
//!    gate here: its many degrees of freedom would dilute one starved server
//!    among twenty healthy ones. Judged on the
//!    last interval, and on a smoothed window for slow drifts and for pools
//!    too quiet for one interval to prove anything. Pools balanced by hash
//!    or least-connections are judged against their own recent shares
//!    instead of their weights.
//! 2. Against the pool's own history: has the traffic concentrated on far
//!    fewer servers (effective number 1/sum(share^2)) than the pool's
//!    baseline, significantly (G-test against the baseline shares)? This
//!    catches the typo'd pool and the typo'd weight that the LB faithfully
//!    reports, where the weights agree with the traffic.

use super::config::SkewConfig;
use super::server::ServerState;
use super::stats::{binomial_at_least, binomial_at_most, chi2_sf, effective_servers, g_statistic};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SkewKind {
    /// A server far above its expected share.
    Hot,
    /// A server far below its expected share.
    Cold,
    /// Traffic concentrated on far fewer servers than the pool's history.
    Concentrated { now: f64, usual: f64 },
}

/// What a TrafficSkew rests on, for the summary and the `value`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SkewFinding {
    pub kind: SkewKind,
    /// Index of the server the finding is about (the busiest one for a
    /// concentration).
    pub server: usize,
    pub share: f64,
    pub expected: f64,
    /// Requests the finding was measured on.
    pub requests: f64,
    /// What the expectation came from.
    pub basis: Basis,
}

/// Where a pool's expected shares come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Basis {
    /// The weights the LB reports.
    Weight,
    /// The pool's own recent shares (hash and least-connection pools, and
    /// the concentration test).
    History,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Weight => "weight",
            Basis::History => "recent history",
        }
    }
}

/// What a test concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing beyond the thresholds.
    Nothing,
    /// The effect is there but not yet significant (too few requests), on
    /// this server.
    Visible(usize),
    /// Effect and significance: a finding.
    Found(SkewFinding),
}

impl Outcome {
    pub fn found(self) -> Option<SkewFinding> {
        match self {
            Outcome::Found(f) => Some(f),
            _ => None,
        }
    }

    /// The server an effect is visible on, found or not.
    pub fn visible(&self) -> Option<usize> {
        match self {
            Outcome::Nothing => None,
            Outcome::Visible(i) => Some(*i),
            Outcome::Found(f) => Some(f.server),
        }
    }
}

/// Which counts a test looks at.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// The last interval.
    Interval,
    /// The last few intervals (at least 5 s): at 1 s scrapes one interval of
    /// a quiet server proves nothing, a handful does.
    Short,
    /// The smoothed window since the pool last changed.
    Smoothed,
}

fn counts(s: &ServerState, w: Window) -> f64 {
    match w {
        Window::Interval => {
            if s.counts.has_delta {
                s.counts.d_req
            } else {
                0.0
            }
        }
        Window::Short => s.shares.short_req,
        Window::Smoothed => s.shares.win_req,
    }
}

/// Balancing algorithms whose shares follow the weights. Anything else
/// (hashing, least-connections, `first`) legitimately departs from them.
pub fn follows_weights(algo: Option<&str>) -> bool {
    match algo {
        None => true,
        Some(a) => matches!(
            a.trim().to_ascii_lowercase().as_str(),
            "" | "roundrobin"
                | "round_robin"
                | "round-robin"
                | "rr"
                | "wrr"
                | "static-rr"
                | "random"
                | "weighted_round_robin"
        ),
    }
}

/// Test 1: per-server shares against an expectation (`expected[i]`, zero
/// for servers that take no part). Returns the most significant offender.
pub fn share_test(
    servers: &[ServerState],
    expected: &[f64],
    window: Window,
    hot: f64,
    cfg: &SkewConfig,
    basis: Basis,
) -> Outcome {
    let mut total = 0.0;
    let mut exp_sum = 0.0;
    let mut parts = 0usize;
    for (s, &e) in servers.iter().zip(expected) {
        if e > 0.0 {
            total += counts(s, window);
            exp_sum += e;
            parts += 1;
        }
    }
    if parts < 2 || total <= 0.0 {
        return Outcome::Nothing;
    }
    let alpha = cfg.significance / parts as f64;
    let mut best: Option<(f64, SkewFinding)> = None;
    // Beyond the thresholds and more likely than not beyond chance (p below
    // 1 / servers), though not yet significant: visible.
    let mut visible: Option<(f64, usize)> = None;
    for (i, (s, &e)) in servers.iter().zip(expected).enumerate() {
        if e <= 0.0 {
            continue;
        }
        let p = e / exp_sum;
        let c = counts(s, window);
        let Some((kind, pval)) = offence(c, total, p, hot, cfg) else {
            continue;
        };
        if pval < 1.0 / parts as f64 && visible.is_none_or(|(vp, _)| pval < vp) {
            visible = Some((pval, i));
        }
        if pval < alpha && best.as_ref().is_none_or(|(bp, _)| pval < *bp) {
            best = Some((
                pval,
                SkewFinding {
                    kind,
                    server: i,
                    share: c / total,
                    expected: p,
                    requests: total,
                    basis,
                },
            ));
        }
    }
    match best {
        Some((_, finding)) => Outcome::Found(finding),
        None => visible.map_or(Outcome::Nothing, |(_, i)| Outcome::Visible(i)),
    }
}

/// Whether server `i` is visibly beyond the thresholds in `window` (the
/// same rule as `share_test`'s visible, for one server): a pending streak
/// goes on while the server it began on still is.
pub fn offends(
    servers: &[ServerState],
    expected: &[f64],
    window: Window,
    i: usize,
    cfg: &SkewConfig,
) -> bool {
    let (mut total, mut exp_sum, mut parts) = (0.0, 0.0, 0usize);
    for (s, &e) in servers.iter().zip(expected) {
        if e > 0.0 {
            total += counts(s, window);
            exp_sum += e;
            parts += 1;
        }
    }
    let Some((s, &e)) = servers.get(i).zip(expected.get(i)) else {
        return false;
    };
    if parts < 2 || total <= 0.0 || e <= 0.0 {
        return false;
    }
    let c = counts(s, window);
    offence(c, total, e / exp_sum, cfg.hot_ratio, cfg).is_some_and(|(_, p)| p < 1.0 / parts as f64)
}

/// A server taking `c` of `total` requests where it should take a share
/// `p`: hot (at least `hot` times its share) or cold (at most
/// `cold_ratio`, when enough was expected to tell), with the p-value of so
/// many or so few by chance.
fn offence(c: f64, total: f64, p: f64, hot: f64, cfg: &SkewConfig) -> Option<(SkewKind, f64)> {
    let want = total * p;
    if c >= hot * want {
        Some((SkewKind::Hot, binomial_at_least(c, total, p)))
    } else if c <= cfg.cold_ratio * want && want >= cfg.min_expected {
        Some((SkewKind::Cold, binomial_at_most(c, total, p)))
    } else {
        None
    }
}

/// Test 2: concentration against the baseline shares (`baseline[i]`, zero
/// for servers deliberately drained, which an operator took out on purpose).
pub fn concentration_test(
    servers: &[ServerState],
    baseline: &[f64],
    window: Window,
    cfg: &SkewConfig,
) -> Outcome {
    let observed: Vec<f64> = servers
        .iter()
        .zip(baseline)
        .map(|(s, &b)| if b > 0.0 { counts(s, window) } else { 0.0 })
        .collect();
    let (Some(usual), Some(now)) = (
        effective_servers(baseline.iter().copied()),
        effective_servers(observed.iter().copied()),
    ) else {
        return Outcome::Nothing;
    };
    if usual < 1.5 || now > cfg.concentration_ratio * usual {
        return Outcome::Nothing;
    }
    let Some((server, &top)) = observed
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
    else {
        return Outcome::Nothing;
    };
    let (g, df) = g_statistic(&observed, baseline);
    if chi2_sf(g, df) >= cfg.significance {
        return Outcome::Visible(server);
    }
    let total: f64 = observed.iter().sum();
    let base_total: f64 = baseline.iter().sum();
    Outcome::Found(SkewFinding {
        kind: SkewKind::Concentrated { now, usual },
        server,
        share: top / total,
        expected: baseline[server] / base_total,
        requests: total,
        basis: Basis::History,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_least_connection_pools_do_not_follow_weights() {
        for a in [
            None,
            Some("roundrobin"),
            Some("static-rr"),
            Some("ROUND_ROBIN"),
        ] {
            assert!(follows_weights(a), "{a:?}");
        }
        for a in [
            "leastconn",
            "source",
            "uri",
            "hdr(host)",
            "first",
            "ip_hash",
            "RING_HASH",
        ] {
            assert!(!follows_weights(Some(a)), "{a}");
        }
    }
}
