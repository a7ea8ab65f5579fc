//! Any Prometheus text endpoint, through a mapping from metrics and labels
//! to pool, server, requests, 5xx, up and weight; and HAProxy's exporters
//! (the built-in one, both `haproxy_server_status` shapes, and the
//! standalone haproxy_exporter) without any mapping.
//!
//! Where an endpoint has no per-server counter (Traefik's and Caddy's
//! metrics are per service or per handler), a mapping without
//! `server_label` watches each pool as a whole: traffic drops and 5xx spikes
//! still work, skew needs servers.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use super::{counter_value, weight_value, Parsed, RowError, SourceError};
use crate::model::ServerStat;

/// One series of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Series {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn label_value(rest: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &rest[i + 1..])),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some(c) => out.push(c),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated label value".into())
}

fn series(line: &str) -> Result<Series, String> {
    let name_end = line.find(['{', ' ', '\t']).ok_or("no value")?;
    let name = line[..name_end].to_string();
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches([' ', ',']);
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = inner.find('=').ok_or("label without `=`")?;
            let key = inner[..eq].trim().to_string();
            let quoted = inner[eq + 1..]
                .trim_start()
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let (value, after) = label_value(quoted)?;
            labels.push((key, value));
            inner = after;
        }
    }
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .map_err(|_| format!("value {v:?} is not a number"))?,
    };
    Ok(Series {
        name,
        labels,
        value,
    })
}

/// Parses the text exposition format; bad lines are counted.
pub fn exposition(bytes: &[u8]) -> Result<(Vec<Series>, Vec<RowError>), SourceError> {
    let (text, first) = super::text_and_first_line(bytes)?;
    if first.starts_with('<') || first.starts_with('{') {
        return Err(SourceError::NotThisFormat {
            expected: "Prometheus text exposition",
            found: super::excerpt(first),
        });
    }
    let mut all = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match series(line) {
            Ok(s) => all.push(s),
            Err(reason) => bad.push(RowError {
                at: format!("line {}", i + 1),
                reason,
            }),
        }
    }
    if all.is_empty() && !bad.is_empty() {
        return Err(SourceError::NotThisFormat {
            expected: "Prometheus text exposition",
            found: super::excerpt(first),
        });
    }
    Ok((all, bad))
}

/// Which series count: a metric name and label values (a value ending in
/// `*` matches by prefix: `code = "5*"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    pub metric: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    fn matches(&self, s: &Series) -> bool {
        s.name == self.metric
            && self.labels.iter().all(|(k, want)| {
                let got = s.label(k).unwrap_or("");
                match want.strip_suffix('*') {
                    Some(prefix) => got.starts_with(prefix),
                    None => got == want,
                }
            })
    }
}

/// `[targets.mapping]` of a `prometheus` target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The label naming the pool (`service`, `envoy_cluster_name`, ...).
    pub pool_label: String,
    /// The label naming the server; without it each pool is watched whole.
    #[serde(default)]
    pub server_label: Option<String>,
    /// Summed per pool and server: cumulative requests.
    pub requests: Selector,
    /// Summed per pool and server: cumulative 5xx.
    #[serde(default)]
    pub errors: Option<Selector>,
    /// A value above 0 is up.
    #[serde(default)]
    pub up: Option<Selector>,
    #[serde(default)]
    pub weight: Option<Selector>,
}

/// The name a pool watched as a whole goes by.
pub const WHOLE_POOL: &str = "(pool)";

#[derive(Default)]
struct Acc {
    requests: Option<f64>,
    errors: f64,
    up: Option<bool>,
    out_of_rotation: bool,
    weight: Option<f64>,
}

fn finish(acc: BTreeMap<(String, String), Acc>, bad_rows: Vec<RowError>) -> Parsed {
    let mut out = Parsed {
        servers: Vec::new(),
        bad_rows,
        ..Default::default()
    };
    for ((pool, server), a) in acc {
        match server_stat(&a) {
            Ok((requests, errors, weight)) => out.servers.push(ServerStat {
                pool: Cow::Owned(pool),
                server: Cow::Owned(server),
                requests_total: requests,
                responses_5xx_total: errors.min(requests),
                up: a.up.unwrap_or(true),
                weight,
                backup: false,
                algo: None,
                ..Default::default()
            }),
            Err(reason) => out.bad_rows.push(RowError {
                at: format!("{pool}/{server}"),
                reason,
            }),
        }
    }
    out
}

/// Requests, errors and weight of one server's series: NaN, infinities and
/// negative values are named, never passed on.
fn server_stat(a: &Acc) -> Result<(u64, u64, f64), String> {
    let requests = a.requests.ok_or("no request counter among its series")?;
    let requests = counter_value(requests, "requests")?;
    let errors = counter_value(a.errors, "errors")?;
    let weight = if a.out_of_rotation {
        0.0
    } else {
        weight_value(a.weight.unwrap_or(1.0), "weight")?
    };
    Ok((requests, errors, weight))
}

/// Any endpoint, through `mapping`.
pub fn parse_mapped(bytes: &[u8], mapping: &Mapping) -> Result<Parsed, SourceError> {
    let (all, bad_rows) = exposition(bytes)?;
    let mut acc: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for s in &all {
        let Some(pool) = s.label(&mapping.pool_label) else {
            continue;
        };
        let server = match &mapping.server_label {
            Some(l) => match s.label(l) {
                Some(v) => v.to_string(),
                None => continue,
            },
            None => WHOLE_POOL.to_string(),
        };
        let key = (pool.to_string(), server);
        if mapping.requests.matches(s) {
            let a = acc.entry(key.clone()).or_default();
            a.requests = Some(a.requests.unwrap_or(0.0) + s.value);
        }
        if mapping.errors.as_ref().is_some_and(|e| e.matches(s)) {
            acc.entry(key.clone()).or_default().errors += s.value;
        }
        if mapping.up.as_ref().is_some_and(|u| u.matches(s)) {
            let a = acc.entry(key.clone()).or_default();
            a.up = Some(a.up.unwrap_or(false) || s.value > 0.0);
        }
        if mapping.weight.as_ref().is_some_and(|w| w.matches(s)) {
            acc.entry(key).or_default().weight = Some(s.value);
        }
    }
    Ok(finish(acc, bad_rows))
}

/// HAProxy's exporters: the built-in one (`proxy` label; `haproxy_server_status`
/// with a `state` label from 2.4, a number before) and the standalone
/// haproxy_exporter (`backend` label, `haproxy_server_up`). Requests are the
/// sum of HTTP responses, or sessions for TCP servers.
pub fn parse_haproxy(bytes: &[u8]) -> Result<Parsed, SourceError> {
    let (all, bad_rows) = exposition(bytes)?;
    let mut acc: BTreeMap<(String, String), Acc> = BTreeMap::new();
    let mut sessions: BTreeMap<(String, String), f64> = BTreeMap::new();
    for s in all.iter().filter(|s| s.name.starts_with("haproxy_server_")) {
        let Some(pool) = s.label("proxy").or_else(|| s.label("backend")) else {
            continue;
        };
        let Some(server) = s.label("server") else {
            continue;
        };
        let key = (pool.to_string(), server.to_string());
        match s.name.as_str() {
            "haproxy_server_http_responses_total" => {
                let a = acc.entry(key).or_default();
                a.requests = Some(a.requests.unwrap_or(0.0) + s.value);
                if s.label("code") == Some("5xx") {
                    a.errors += s.value;
                }
            }
            "haproxy_server_sessions_total" => {
                *sessions.entry(key).or_default() += s.value;
            }
            "haproxy_server_weight" => acc.entry(key).or_default().weight = Some(s.value),
            "haproxy_server_up" => acc.entry(key).or_default().up = Some(s.value > 0.0),
            "haproxy_server_status" => {
                let a = acc.entry(key).or_default();
                match s.label("state") {
                    // 2.4+: one series per state, 1 for the current one.
                    Some(state) if s.value > 0.0 => match state {
                        "UP" | "no check" => a.up = Some(true),
                        "MAINT" | "DRAIN" | "NOLB" => {
                            a.up = Some(true);
                            a.out_of_rotation = true;
                        }
                        _ => a.up = Some(false),
                    },
                    Some(_) => {}
                    // Before 2.4: 0 DOWN, 1 UP, 2 MAINT, 3 DRAIN, 4 NOLB.
                    None => match s.value as i64 {
                        0 => a.up = Some(false),
                        1 => a.up = Some(true),
                        _ => {
                            a.up = Some(true);
                            a.out_of_rotation = true;
                        }
                    },
                }
            }
            _ => {}
        }
    }
    for (key, n) in sessions {
        let a = acc.entry(key).or_default();
        if a.requests.is_none() {
            a.requests = Some(n);
        }
    }
    Ok(finish(acc, bad_rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lines_with_escapes_timestamps_and_specials() {
        let (s, bad) = exposition(
            b"# HELP x y\nm{a=\"1\",b=\"q\\\"uo\\\\te\"} 3 1700000000\nm2 +Inf\nm3{a=\"x\",} 4\nbroken{a=1} 2\n",
        )
        .unwrap();
        assert_eq!(s[0].label("b"), Some("q\"uo\\te"));
        assert_eq!(s[0].value, 3.0);
        assert!(s[1].value.is_infinite());
        assert_eq!(s[2].label("a"), Some("x"));
        assert_eq!(bad.len(), 1);
        assert!(exposition(b"<html>").is_err());
    }

    #[test]
    fn a_mapping_sums_series_and_prefix_matches() {
        let m = Mapping {
            pool_label: "service".into(),
            server_label: None,
            requests: Selector {
                metric: "req".into(),
                labels: BTreeMap::new(),
            },
            errors: Some(Selector {
                metric: "req".into(),
                labels: [("code".to_string(), "5*".to_string())].into(),
            }),
            up: None,
            weight: None,
        };
        let p = parse_mapped(b"req{service=\"a\",code=\"200\"} 10\nreq{service=\"a\",code=\"503\"} 2\nreq{service=\"a\",code=\"500\"} 1\n", &m).unwrap();
        assert_eq!(p.servers.len(), 1);
        let s = &p.servers[0];
        assert_eq!(
            (s.server.as_ref(), s.requests_total, s.responses_5xx_total),
            (WHOLE_POOL, 13, 3)
        );
    }
}
