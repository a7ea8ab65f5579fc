//! Numbers as an on-call engineer reads them at 3 a.m.: "97%", "0.6%",
//! "1234 req/s", "0.42 req/s", "14:00:05Z".

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
