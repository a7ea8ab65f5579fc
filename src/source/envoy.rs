//! Envoy's admin `/clusters`: the JSON form (`?format=json`, either protobuf
//! casing, zero-valued stats omitted, values as strings) and the text form
//! (`cluster::host::stat::value`). Pools are clusters, servers their hosts.
//!
//! Requests are the host's `rq_total`; errors its `rq_error` (Envoy counts
//! 5xx responses and connection failures there: the nearest per-host
//! measure of failing requests it exposes).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::{json_counter, json_weight, weight_value, Parsed, RowError, SourceError};
use crate::model::ServerStat;

/// Either form, told apart by the first character.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, SourceError> {
    let text = std::str::from_utf8(bytes).map_err(|e| SourceError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    match text.trim_start().chars().next() {
        Some('{') => parse_json(text),
        Some('<') => Err(SourceError::NotThisFormat {
            expected: "Envoy /clusters (JSON or text)",
            found: super::excerpt(text.trim_start().lines().next().unwrap_or("")),
        }),
        _ => parse_text(text),
    }
}

/// A field under either protobuf JSON casing.
fn field<'a>(v: &'a Value, snake: &str, camel: &str) -> Option<&'a Value> {
    v.get(snake).or_else(|| v.get(camel))
}

fn address(h: &Value) -> Option<String> {
    let a = h.get("address")?;
    if let Some(sock) = field(a, "socket_address", "socketAddress") {
        let host = sock.get("address")?.as_str()?;
        // Some versions write `port`.
        let port = field(sock, "port_value", "portValue")
            .or_else(|| sock.get("port"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        return Some(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        });
    }
    a.get("pipe")?
        .get("path")?
        .as_str()
        .map(|p| format!("unix:{p}"))
}

/// Health from EDS and the health flags: (up, in rotation).
fn health(h: &Value) -> (bool, bool) {
    let Some(hs) = field(h, "health_status", "healthStatus") else {
        return (true, true);
    };
    let flag = |s: &str, c: &str| field(hs, s, c).and_then(Value::as_bool).unwrap_or(false);
    if flag("failed_active_health_check", "failedActiveHealthCheck")
        || flag("failed_outlier_check", "failedOutlierCheck")
    {
        return (false, true);
    }
    match field(hs, "eds_health_status", "edsHealthStatus").and_then(Value::as_str) {
        Some("UNHEALTHY" | "TIMEOUT") => (false, true),
        Some("DRAINING") => (true, false),
        _ if flag("pending_dynamic_removal", "pendingDynamicRemoval") => (true, false),
        _ => (true, true),
    }
}

fn parse_json(text: &str) -> Result<Parsed<'_>, SourceError> {
    let doc = super::json(text.as_bytes(), "Envoy /clusters?format=json")?;
    let Some(clusters) =
        field(&doc, "cluster_statuses", "clusterStatuses").and_then(Value::as_array)
    else {
        return Err(SourceError::NotThisFormat {
            expected: "Envoy /clusters?format=json (cluster_statuses)",
            found: super::excerpt(&doc.to_string()),
        });
    };
    let mut out = Parsed::default();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (ci, c) in clusters.iter().enumerate() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        // Two clusters of one name (one per priority, or a config mistake)
        // are two pools, not one: their hosts do not share traffic.
        let n = seen.entry(name).or_default();
        *n += 1;
        let pool = if *n == 1 || name.is_empty() {
            name.to_string()
        } else {
            format!("{name}#{n}")
        };
        let pool = pool.as_str();
        let hosts = field(c, "host_statuses", "hostStatuses").and_then(Value::as_array);
        for (hi, h) in hosts.into_iter().flatten().enumerate() {
            let at = format!("cluster_statuses[{ci}].host_statuses[{hi}]");
            let Some(server) = address(h).filter(|_| !pool.is_empty()) else {
                out.bad_rows.push(RowError {
                    at,
                    reason: "no cluster name or host address".into(),
                });
                continue;
            };
            // Zero-valued stats are left out by proto3: absent means 0.
            let stat = |name: &str| -> Result<u64, String> {
                let s = h
                    .get("stats")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|s| s.get("name").and_then(Value::as_str) == Some(name));
                Ok(json_counter(s.and_then(|s| s.get("value")), name)?.unwrap_or(0))
            };
            let (requests, errors) = match (stat("rq_total"), stat("rq_error")) {
                (Ok(r), Ok(e)) => (r, e),
                (Err(reason), _) | (_, Err(reason)) => {
                    out.bad_rows.push(RowError { at, reason });
                    continue;
                }
            };
            // An optional stat that cannot be read is left out and said;
            // the host's requests and health still count.
            let mut optional = |name: &str| {
                stat(name)
                    .map_err(|reason| {
                        out.bad_rows.push(RowError {
                            at: at.clone(),
                            reason,
                        })
                    })
                    .ok()
            };
            let signals = ServerStat {
                connection_errors_total: optional("cx_connect_fail"),
                response_errors_total: optional("rq_timeout"),
                sessions_current: optional("rq_active").map(|n| n as f64),
                ..Default::default()
            };
            let (up, in_rotation) = health(h);
            let weight = match json_weight(h.get("weight")) {
                Ok(w) => w,
                Err(reason) => {
                    out.bad_rows.push(RowError { at, reason });
                    continue;
                }
            };
            out.servers.push(ServerStat {
                pool: Cow::Owned(pool.to_string()),
                server: Cow::Owned(server),
                requests_total: requests,
                responses_5xx_total: errors.min(requests),
                up,
                weight: if in_rotation { weight } else { 0.0 },
                backup: false,
                algo: None,
                ..signals
            });
        }
    }
    Ok(out)
}

/// A host's optional signals: Envoy publishes connection failures,
/// timeouts (the nearest to broken responses) and active requests; an
/// absent one is zero, as the JSON form omits zero-valued stats.
fn signals(connect_fail: u64, timeouts: u64, active: u64) -> ServerStat<'static> {
    ServerStat {
        connection_errors_total: Some(connect_fail),
        response_errors_total: Some(timeouts),
        sessions_current: Some(active as f64),
        ..Default::default()
    }
}

#[derive(Default)]
struct TextHost {
    requests: Option<u64>,
    errors: u64,
    connect_fail: u64,
    timeouts: u64,
    active: u64,
    weight: Option<f64>,
    flags: Option<String>,
}

fn parse_text(text: &str) -> Result<Parsed<'_>, SourceError> {
    let mut hosts: BTreeMap<(String, String), TextHost> = BTreeMap::new();
    let mut bad_rows = Vec::new();
    let mut recognised = 0usize;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // cluster::host::stat::value, where an IPv6 host itself holds "::":
        // split the cluster off the front and stat and value off the back.
        let Some((cluster, rest)) = line.split_once("::") else {
            bad_rows.push(RowError {
                at: format!("line {}", i + 1),
                reason: "not `cluster::...` text".into(),
            });
            continue;
        };
        recognised += 1;
        let mut back = rest.rsplitn(3, "::");
        let (Some(value), Some(stat), Some(host)) = (back.next(), back.next(), back.next()) else {
            continue; // a cluster-level line (cluster::key::value)
        };
        if !(host.contains(':') || host.starts_with('/') || host.starts_with("unix")) {
            continue; // cluster-level settings (outlier, circuit breakers)
        }
        let h = hosts
            .entry((cluster.to_string(), host.to_string()))
            .or_default();
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("`{stat}` is {v:?}, not a count"))
        };
        let r = match stat {
            "rq_total" => number(value).map(|n| h.requests = Some(n)),
            "rq_error" => number(value).map(|n| h.errors = n),
            "cx_connect_fail" => number(value).map(|n| h.connect_fail = n),
            "rq_timeout" => number(value).map(|n| h.timeouts = n),
            "rq_active" => number(value).map(|n| h.active = n),
            "weight" => value
                .parse()
                .map_err(|_| format!("`weight` is {value:?}"))
                .and_then(|w| weight_value(w, "weight"))
                .map(|w| h.weight = Some(w)),
            "health_flags" => {
                h.flags = Some(value.to_string());
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(reason) = r {
            bad_rows.push(RowError {
                at: format!("line {}", i + 1),
                reason,
            });
        }
    }
    if recognised == 0 && !bad_rows.is_empty() {
        return Err(SourceError::NotThisFormat {
            expected: "Envoy /clusters (JSON or text)",
            found: super::excerpt(text.trim_start().lines().next().unwrap_or("")),
        });
    }
    let mut servers = Vec::new();
    for ((pool, server), h) in hosts {
        // An absent counter is zero, as in the JSON form: the host still
        // counts, with its health flags.
        let requests = h.requests.unwrap_or(0);
        let flags = h.flags.unwrap_or_else(|| "healthy".into());
        let failed = flags.contains("failed_active_hc")
            || flags.contains("failed_outlier_check")
            || flags.contains("failed_eds_health");
        let out_of_rotation = !failed
            && (flags.contains("pending_dynamic_removal") || flags.contains("eds_status_draining"));
        servers.push(ServerStat {
            pool: Cow::Owned(pool),
            server: Cow::Owned(server),
            requests_total: requests,
            responses_5xx_total: h.errors.min(requests),
            up: !failed,
            weight: if out_of_rotation {
                0.0
            } else {
                h.weight.unwrap_or(1.0)
            },
            backup: false,
            algo: None,
            ..signals(h.connect_fail, h.timeouts, h.active)
        });
    }
    Ok(Parsed {
        servers,
        bad_rows,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_hosts_may_be_ipv6_and_cluster_lines_are_not_hosts() {
        let text = "web::[::1]:80::rq_total::7\nweb::[::1]:80::rq_error::2\nweb::[::1]:80::health_flags::healthy\nweb::added_via_api::true\nweb::default_priority::max_connections::1\n";
        let p = parse(text.as_bytes()).unwrap();
        assert_eq!(p.servers.len(), 1, "{p:?}");
        let s = &p.servers[0];
        assert_eq!(
            (
                s.server.as_ref(),
                s.requests_total,
                s.responses_5xx_total,
                s.up
            ),
            ("[::1]:80", 7, 2, true)
        );
    }

    #[test]
    fn html_is_not_envoy() {
        assert!(parse(b"<html>login</html>")
            .unwrap_err()
            .to_string()
            .contains("Envoy"));
    }
}
