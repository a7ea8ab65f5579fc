//! Numbers as an on-call engineer reads them at 3 a.m.: "97%", "0.6%",
//! "1234 req/s", "0.42 req/s", "14:00:05Z".

use super::drop::DropFinding;
use super::evidence::ErrorFinding;
use super::skew::{SkewFinding, SkewKind};
use crate::model::Timestamp;

/// A ratio as a percentage with as many digits as it needs.
pub fn pct(x: f64) -> String {
    let p = x * 100.0;
    if !p.is_finite() {
        "n/a".into()
    } else if p.abs() >= 10.0 || p == 0.0 {
        format!("{p:.0}%")
    } else if p.abs() >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}

/// A rate per second with as many digits as it needs.
pub fn rate(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A duration as "45s", "3m20s", "1h05m".
pub fn duration(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    match s {
        0..=99 => format!("{s}s"),
        100..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Time of day in UTC.
pub fn hms(ts: Timestamp) -> String {
    let (h, m, s) = ts.hms();
    format!("{h:02}:{m:02}:{s:02}Z")
}

/// TrafficSkew's summary: who takes what against what was expected, the
/// pool's rate (`pool_rps`, when known) and `context` (since when, after
/// which change).
pub fn skew_summary(
    pool: &str,
    server: &str,
    f: &SkewFinding,
    pool_rps: Option<f64>,
    context: &str,
) -> String {
    let pool_rate = pool_rps.map_or(String::new(), |r| {
        format!("; the pool takes {} req/s", rate(r))
    });
    match f.kind {
        SkewKind::Hot | SkewKind::Cold => format!(
            "{server} takes {} of pool {pool}'s requests (expected {} by {}){pool_rate}{context}",
            pct(f.share),
            pct(f.expected),
            f.basis.as_str()
        ),
        SkewKind::Concentrated { now, usual } => format!(
            "pool {pool}'s traffic concentrates on {now:.1} effective servers (usually {usual:.1}): {server} takes {} of its requests (usually {}){pool_rate}{context}",
            pct(f.share),
            pct(f.expected)
        ),
    }
}

/// The numbers behind an ErrorSpike.
fn error_numbers(f: &ErrorFinding) -> String {
    format!(
        " ({:.0} of {:.0} recent requests; baseline {})",
        f.errors,
        f.requests,
        pct(f.baseline)
    )
}

/// A pool's ErrorSpike: its 5xx ratio, the numbers, the worst server (with
/// its ratio) where there are several, and `context`.
pub fn pool_error_summary(
    pool: &str,
    f: &ErrorFinding,
    worst: Option<(&str, f64)>,
    context: &str,
) -> String {
    let worst = worst.map_or(String::new(), |(s, r)| {
        format!("; worst server {s} at {}", pct(r))
    });
    format!(
        "pool {pool} answers {} 5xx{}{worst}{context}",
        pct(f.ratio),
        error_numbers(f)
    )
}

/// One server's ErrorSpike.
pub fn server_error_summary(server: &str, pool: &str, f: &ErrorFinding, context: &str) -> String {
    format!(
        "{server} in pool {pool} answers {} 5xx{}{context}",
        pct(f.ratio),
        error_numbers(f)
    )
}

/// "0.21 req/s, 0.12% of its usual 167 req/s, for 1m40s, 2.1x its
/// longest natural lull (48s)": what a summary says of a stop.
fn drop_numbers(f: &DropFinding) -> String {
    let lulls = if f.longest_lull > 0.0 {
        format!(
            ", {:.1}x its longest natural lull ({})",
            f.secs / f.longest_lull,
            duration(f.longest_lull)
        )
    } else {
        String::new()
    };
    format!(
        "{} req/s, {} of its usual {} req/s, for {}{lulls}",
        rate(f.rate),
        pct(f.rate / f.baseline_rate),
        rate(f.baseline_rate),
        duration(f.secs),
    )
}

/// A pool's TrafficDrop.
pub fn pool_drop_summary(pool: &str, f: &DropFinding, context: &str) -> String {
    format!("pool {pool} receives {}{context}", drop_numbers(f))
}

/// A target's TrafficDrop: every pool at once, while the stats answer.
pub fn target_drop_summary(target: &str, pools: usize, f: &DropFinding) -> String {
    format!(
        "{target} passes to its {pools} pools {}, while its stats answer: the load balancer is not routing traffic",
        drop_numbers(f)
    )
}

/// ScrapeFailed: `n` failures in a row since `first`, and the last reason.
pub fn scrape_failed_summary(target: &str, n: u32, first: Timestamp, reason: &str) -> String {
    format!(
        "{n} consecutive scrapes of {target}'s stats failed since {}: {reason}; lbwatch cannot see this load balancer",
        hms(first)
    )
}

/// ServerDown: `down` of `listed` servers of the pool are down.
pub fn server_down_summary(
    server: &str,
    backup: bool,
    pool: &str,
    down: usize,
    listed: usize,
) -> String {
    let kind = if backup { "backup server" } else { "server" };
    format!(
        "{kind} {server} of pool {pool} is down by the LB's health check ({down} of {listed} servers down)"
    )
}

/// PoolUnavailable: which listed servers are down and which are out of
/// rotation.
pub fn unavailable_summary(
    pool: &str,
    listed: usize,
    down: &[&str],
    out: &[&str],
    context: &str,
) -> String {
    let mut why = Vec::new();
    if !down.is_empty() {
        why.push(format!(
            "{} down by the LB's health check ({})",
            down.len(),
            names_of(down)
        ));
    }
    if !out.is_empty() {
        why.push(format!(
            "{} in maintenance or drained ({})",
            out.len(),
            names_of(out)
        ));
    }
    format!(
        "no server of pool {pool} can serve: of {listed} listed, {}{context}",
        why.join(" and ")
    )
}

/// What a membership change did: "1 of 4 servers left (web-3), 1 joined
/// (web-5)"; `before` is how many were listed before it.
pub fn membership_change<T: AsRef<str>>(left: &[T], before: usize, joined: &[T]) -> String {
    let mut what = Vec::new();
    if !left.is_empty() {
        what.push(format!(
            "{} of {before} servers left ({})",
            left.len(),
            names_of(left)
        ));
    }
    if !joined.is_empty() {
        what.push(format!("{} joined ({})", joined.len(), names_of(joined)));
    }
    what.join(", ")
}

/// PoolMembershipChanged, with the reload it followed (if recent).
pub fn membership_summary(pool: &str, what: &str, now: usize, reload: Option<Timestamp>) -> String {
    let reload = reload
        .map(|r| format!(", right after the LB reloaded at {}", hms(r)))
        .unwrap_or_default();
    format!(
        "pool {pool} changed: {what}; {now} server{} listed now{reload}",
        if now == 1 { "" } else { "s" }
    )
}

/// ServerFlapping.
pub fn flapping_summary(server: &str, pool: &str, downs: usize, window_s: f64, up: bool) -> String {
    format!(
        "{server} of pool {pool} went down {downs} times in the last {} by the LB's health check (it is {} now): a flapping health check or a server that keeps crashing",
        duration(window_s),
        if up { "up" } else { "down" }
    )
}

/// ClientErrorSpike.
pub fn client_error_summary(pool: &str, f: &ErrorFinding, context: &str) -> String {
    format!(
        "pool {pool} answers {} 4xx ({:.0} of {:.0} recent requests; baseline {}): requests may be routed to the wrong pool{context}",
        pct(f.ratio),
        f.errors,
        f.requests,
        pct(f.baseline)
    )
}

/// A server's ErrorSpike on failed connection attempts and broken
/// responses, which retries can hide from clients.
pub fn server_failure_summary(server: &str, pool: &str, f: &ErrorFinding, context: &str) -> String {
    format!(
        "{server} in pool {pool} fails {} of attempts: refused connections, retries or broken responses ({:.0} of {:.0} recent attempts; baseline {}); retries and redispatches may hide it from clients{context}",
        pct(f.ratio),
        f.errors,
        f.requests,
        pct(f.baseline)
    )
}

/// A pool's LatencySpike: how many servers are slow, and the slowest.
pub fn pool_latency_summary(
    pool: &str,
    (slow, of): (usize, usize),
    (server, ms, usual): (&str, f64, f64),
    context: &str,
) -> String {
    format!(
        "pool {pool} answers slowly: {slow} of {of} servers at several times their usual response time; the slowest, {server}, at {} (usually {}){context}",
        millis(ms),
        millis(usual)
    )
}

/// A server's LatencySpike, with its peers' median.
pub fn server_latency_summary(
    server: &str,
    pool: &str,
    l: &super::latency::LatencyLook,
    peers: Option<f64>,
    context: &str,
) -> String {
    let peers = peers.map_or(String::new(), |p| format!("; its peers {}", millis(p)));
    format!(
        "{server} in pool {pool} answers in {} on average (usually {}{peers}){context}",
        millis(l.ms),
        millis(l.usual_ms)
    )
}

/// Saturation: sessions against the limit, for how long, and the queue.
pub fn saturation_summary(
    server: &str,
    pool: &str,
    (sessions, limit): (f64, f64),
    held_s: f64,
    (queue_from, queue): (f64, f64),
) -> String {
    let queue = if queue >= 1.0 {
        format!("; {queue:.0} requests queued (from {queue_from:.0})")
    } else {
        String::new()
    };
    format!(
        "{server} of pool {pool} holds {sessions:.0} sessions of its limit of {limit:.0} for {}{queue}: it has no room for more",
        duration(held_s)
    )
}

/// RequestsDenied.
pub fn denied_summary(frontend: &str, f: &super::denied::DeniedFinding, context: &str) -> String {
    format!(
        "frontend {frontend} denies {} of its requests ({:.0} of {:.0} in the last {}; usually {}): a rule or ACL is blocking clients{context}",
        pct(f.share()),
        f.denied,
        f.requests,
        duration(f.secs),
        pct(f.usual)
    )
}

/// Milliseconds as people read them: "35 ms", "1.2 s".
pub fn millis(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// Up to a few names, then how many more: a summary stays one line even
/// when a hundred servers change.
pub fn names_of<T: AsRef<str>>(list: &[T]) -> String {
    const SHOWN: usize = 5;
    let mut s = list
        .iter()
        .take(SHOWN)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > SHOWN {
        s.push_str(&format!(" and {} more", list.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_naturally() {
        assert_eq!(pct(0.974), "97%");
        assert_eq!(pct(0.0571), "5.7%");
        assert_eq!(pct(0.006), "0.60%");
        assert_eq!(pct(0.0), "0%");
        assert_eq!(rate(20_011.4), "20011");
        assert_eq!(rate(42.17), "42.2");
        assert_eq!(rate(0.5), "0.50");
        assert_eq!(duration(45.2), "45s");
        assert_eq!(duration(200.0), "3m20s");
        assert_eq!(duration(3900.0), "1h05m");
        assert_eq!(
            hms(Timestamp::parse_rfc3339("2024-06-05T14:00:05.7Z").unwrap()),
            "14:00:05Z"
        );
    }
}
