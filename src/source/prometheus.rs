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
use crate::model::{FrontendStat, ServerStat};

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
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    pub metric: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Each value is multiplied by this: 1000 for a time in seconds read
    /// as `response_time_ms`.
    #[serde(default)]
    pub scale: Option<f64>,
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
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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
    /// The optional signals, each summed per pool and server (the response
    /// time averaged over its series).
    #[serde(default)]
    pub responses_4xx: Option<Selector>,
    #[serde(default)]
    pub connection_errors: Option<Selector>,
    #[serde(default)]
    pub response_errors: Option<Selector>,
    #[serde(default)]
    pub retries: Option<Selector>,
    #[serde(default)]
    pub response_time_ms: Option<Selector>,
    #[serde(default)]
    pub queue: Option<Selector>,
    #[serde(default)]
    pub sessions: Option<Selector>,
    #[serde(default)]
    pub session_limit: Option<Selector>,
}

/// The optional signals, in the order of `Mapping`'s and of `Acc::signals`.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Responses4xx,
    ConnectionErrors,
    ResponseErrors,
    Retries,
    ResponseTimeMs,
    Queue,
    Sessions,
    SessionLimit,
}

impl Mapping {
    fn signals(&self) -> [(Signal, Option<&Selector>); 8] {
        [
            (Signal::Responses4xx, self.responses_4xx.as_ref()),
            (Signal::ConnectionErrors, self.connection_errors.as_ref()),
            (Signal::ResponseErrors, self.response_errors.as_ref()),
            (Signal::Retries, self.retries.as_ref()),
            (Signal::ResponseTimeMs, self.response_time_ms.as_ref()),
            (Signal::Queue, self.queue.as_ref()),
            (Signal::Sessions, self.sessions.as_ref()),
            (Signal::SessionLimit, self.session_limit.as_ref()),
        ]
    }
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
    /// Sum and number of series of each `Signal`.
    signals: [Option<(f64, u32)>; 8],
}

impl Acc {
    fn add(&mut self, signal: Signal, value: f64) {
        let (sum, n) = self.signals[signal as usize].get_or_insert((0.0, 0));
        *sum += value;
        *n += 1;
    }

    /// The optional signals on a server (the other fields default). A
    /// negative or non-finite one is left out and named in `bad`: the
    /// server's requests and health still count.
    fn signals(&self, bad: &mut Vec<String>) -> ServerStat<'static> {
        let get = |signal: Signal| self.signals[signal as usize];
        let mut counter = |signal: Signal, name: &str| {
            let (sum, _) = get(signal)?;
            counter_value(sum, name).map_err(|why| bad.push(why)).ok()
        };
        let responses_4xx_total = counter(Signal::Responses4xx, "responses_4xx");
        let connection_errors_total = counter(Signal::ConnectionErrors, "connection_errors");
        let response_errors_total = counter(Signal::ResponseErrors, "response_errors");
        let retries_total = counter(Signal::Retries, "retries");
        let mut gauge = |signal: Signal, name: &str, mean: bool| {
            let (sum, n) = get(signal)?;
            // HAProxy's exporter writes NaN for a setting that is not set
            // (a server without `maxconn`): not published.
            if sum.is_nan() {
                return None;
            }
            let v = if mean { sum / f64::from(n) } else { sum };
            if v.is_finite() && v >= 0.0 {
                Some(v)
            } else {
                bad.push(format!("`{name}` is {v}, not a measurement"));
                None
            }
        };
        ServerStat {
            responses_4xx_total,
            connection_errors_total,
            response_errors_total,
            retries_total,
            response_time_ms: gauge(Signal::ResponseTimeMs, "response_time_ms", true),
            queue_current: gauge(Signal::Queue, "queue", false),
            sessions_current: gauge(Signal::Sessions, "sessions", false),
            session_limit: gauge(Signal::SessionLimit, "session_limit", false).filter(|&l| l > 0.0),
            ..Default::default()
        }
    }
}

fn finish(acc: BTreeMap<(String, String), Acc>, bad_rows: Vec<RowError>) -> Parsed<'static> {
    let mut out = Parsed {
        servers: Vec::new(),
        bad_rows,
        ..Default::default()
    };
    for ((pool, server), a) in acc {
        let mut unread = Vec::new();
        let signals = a.signals(&mut unread);
        out.bad_rows
            .extend(unread.into_iter().map(|reason| RowError {
                at: format!("{pool}/{server}"),
                reason,
            }));
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
                ..signals
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
pub fn parse_mapped<'a>(bytes: &'a [u8], mapping: &Mapping) -> Result<Parsed<'a>, SourceError> {
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
            acc.entry(key.clone()).or_default().weight = Some(s.value);
        }
        for (signal, sel) in mapping.signals() {
            if let Some(sel) = sel.filter(|sel| sel.matches(s)) {
                let v = s.value * sel.scale.unwrap_or(1.0);
                acc.entry(key.clone()).or_default().add(signal, v);
            }
        }
    }
    Ok(finish(acc, bad_rows))
}

/// HAProxy's exporters: the built-in one (`proxy` label; `haproxy_server_status`
/// with a `state` label from 2.4, a number before) and the standalone
/// haproxy_exporter (`backend` label, `haproxy_server_up`). Requests are the
/// sum of HTTP responses, or sessions for TCP servers.
pub fn parse_haproxy(bytes: &[u8]) -> Result<Parsed<'_>, SourceError> {
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
                match s.label("code") {
                    Some("5xx") => a.errors += s.value,
                    Some("4xx") => a.add(Signal::Responses4xx, s.value),
                    _ => {}
                }
            }
            "haproxy_server_connection_errors_total" => {
                acc.entry(key)
                    .or_default()
                    .add(Signal::ConnectionErrors, s.value);
            }
            "haproxy_server_response_errors_total" => {
                acc.entry(key)
                    .or_default()
                    .add(Signal::ResponseErrors, s.value);
            }
            "haproxy_server_retry_warnings_total" | "haproxy_server_redispatch_warnings_total" => {
                acc.entry(key).or_default().add(Signal::Retries, s.value);
            }
            "haproxy_server_response_time_average_seconds" => {
                acc.entry(key)
                    .or_default()
                    .add(Signal::ResponseTimeMs, s.value * 1000.0);
            }
            "haproxy_server_current_queue" => {
                acc.entry(key).or_default().add(Signal::Queue, s.value)
            }
            "haproxy_server_current_sessions" => {
                acc.entry(key).or_default().add(Signal::Sessions, s.value);
            }
            "haproxy_server_limit_sessions" => {
                acc.entry(key)
                    .or_default()
                    .add(Signal::SessionLimit, s.value);
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
    let mut parsed = finish(acc, bad_rows);
    parsed.frontends = haproxy_frontends(&all);
    Ok(parsed)
}

/// The exporters' frontend series: requests, denials (requests,
/// connections and sessions), 4xx and 5xx, per `proxy` (or `frontend`).
fn haproxy_frontends(all: &[Series]) -> Vec<FrontendStat<'static>> {
    let mut fronts: BTreeMap<&str, [Option<f64>; 4]> = BTreeMap::new();
    for s in all
        .iter()
        .filter(|s| s.name.starts_with("haproxy_frontend_"))
    {
        let Some(name) = s.label("proxy").or_else(|| s.label("frontend")) else {
            continue;
        };
        let slot = match (s.name.as_str(), s.label("code")) {
            ("haproxy_frontend_http_requests_total", _) => 0,
            (
                "haproxy_frontend_requests_denied_total"
                | "haproxy_frontend_denied_connections_total"
                | "haproxy_frontend_denied_sessions_total",
                _,
            ) => 1,
            ("haproxy_frontend_http_responses_total", Some("4xx")) => 2,
            ("haproxy_frontend_http_responses_total", Some("5xx")) => 3,
            _ => continue,
        };
        let v = &mut fronts.entry(name).or_default()[slot];
        *v = Some(v.unwrap_or(0.0) + s.value);
    }
    let count = |v: Option<f64>| v.and_then(|x| counter_value(x, "frontend counter").ok());
    fronts
        .into_iter()
        .map(|(name, [req, den, c4, c5])| FrontendStat {
            frontend: Cow::Owned(name.to_string()),
            requests_total: count(req),
            denied_total: count(den),
            responses_4xx_total: count(c4),
            responses_5xx_total: count(c5),
        })
        .collect()
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
                scale: None,
            },
            errors: Some(Selector {
                metric: "req".into(),
                labels: [("code".to_string(), "5*".to_string())].into(),
                scale: None,
            }),
            up: None,
            weight: None,
            ..Mapping::default()
        };
        let p = parse_mapped(b"req{service=\"a\",code=\"200\"} 10\nreq{service=\"a\",code=\"503\"} 2\nreq{service=\"a\",code=\"500\"} 1\n", &m).unwrap();
        assert_eq!(p.servers.len(), 1);
        let s = &p.servers[0];
        assert_eq!(
            (s.server.as_ref(), s.requests_total, s.responses_5xx_total),
            (WHOLE_POOL, 13, 3)
        );
    }

    #[test]
    fn a_mapping_reads_the_optional_signals_scaled_and_averaged() {
        let sel = |metric: &str, scale: Option<f64>| {
            Some(Selector {
                metric: metric.into(),
                labels: BTreeMap::new(),
                scale,
            })
        };
        let m = Mapping {
            pool_label: "svc".into(),
            server_label: Some("pod".into()),
            requests: Selector {
                metric: "req".into(),
                ..Selector::default()
            },
            responses_4xx: sel("c4xx", None),
            response_time_ms: sel("latency_seconds", Some(1000.0)),
            sessions: sel("active", None),
            session_limit: sel("limit", None),
            ..Mapping::default()
        };
        let page = "req{svc=\"a\",pod=\"p1\"} 10\nc4xx{svc=\"a\",pod=\"p1\"} 3\n\
            latency_seconds{svc=\"a\",pod=\"p1\",route=\"x\"} 0.02\n\
            latency_seconds{svc=\"a\",pod=\"p1\",route=\"y\"} 0.04\n\
            active{svc=\"a\",pod=\"p1\"} 5\nlimit{svc=\"a\",pod=\"p1\"} NaN\n";
        let p = parse_mapped(page.as_bytes(), &m).unwrap();
        let s = &p.servers[0];
        assert_eq!(s.responses_4xx_total, Some(3));
        assert!((s.response_time_ms.unwrap() - 30.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.sessions_current, Some(5.0));
        assert_eq!(s.session_limit, None, "NaN is no limit");
        assert_eq!(s.connection_errors_total, None, "not mapped");
        let bad = "req{svc=\"a\",pod=\"p1\"} 10\nactive{svc=\"a\",pod=\"p1\"} -1\n";
        let p = parse_mapped(bad.as_bytes(), &m).unwrap();
        assert!(
            p.bad_rows[0].reason.contains("`sessions` is -1"),
            "{:?}",
            p.bad_rows
        );
        // The server still counts, without the value that is no value.
        assert_eq!(
            (p.servers[0].requests_total, p.servers[0].sessions_current),
            (10, None)
        );
    }
}
