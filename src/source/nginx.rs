//! NGINX Plus (`/api/N/http/upstreams`, `/api/N/stream/upstreams`, and the
//! legacy `/status` document) and nginx-module-vts (`/status/format/json`):
//! pure parsers from JSON bytes to servers, by field name.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::{json_counter, json_gauge, json_weight, Parsed, RowError, SourceError};
use crate::model::{FrontendStat, ServerStat};

/// Peers under unique names: two peers of one upstream can share an address
/// (a backup of the same host), so a repeated name gets its peer id.
fn unique(names: &mut BTreeMap<String, usize>, name: &str, id: &Value) -> String {
    let n = names.entry(name.to_string()).or_default();
    *n += 1;
    if *n == 1 {
        name.to_string()
    } else {
        format!(
            "{name}#{}",
            id.as_u64().map_or(n.to_string(), |i| i.to_string())
        )
    }
}

/// NGINX Plus: the API's upstreams object (`{"name": {"peers": [...]}}`), or
/// the legacy status document with an `upstreams` member.
pub fn parse_plus(bytes: &[u8]) -> Result<Parsed<'_>, SourceError> {
    let doc = super::json(bytes, "NGINX Plus upstreams JSON")?;
    let upstreams = match doc.get("upstreams") {
        Some(u) if doc.get("nginx_version").is_some() || doc.get("version").is_some() => u,
        _ => &doc,
    };
    let Some(upstreams) = upstreams.as_object() else {
        return Err(SourceError::NotThisFormat {
            expected: "NGINX Plus upstreams JSON (an object of upstreams)",
            found: super::excerpt(&doc.to_string()),
        });
    };
    let mut out = Parsed {
        frontends: server_zones(&doc),
        ..Parsed::default()
    };
    for (pool, u) in upstreams {
        let peers = u.get("peers").unwrap_or(u);
        let Some(peers) = peers.as_array() else {
            out.bad_rows.push(RowError {
                at: format!("upstreams.{pool}"),
                reason: "no `peers` list".into(),
            });
            continue;
        };
        let mut names = BTreeMap::new();
        for (i, p) in peers.iter().enumerate() {
            let at = format!("upstreams.{pool}.peers[{i}]");
            match plus_peer(pool, p, &mut names) {
                Ok(s) => out.servers.push(s),
                Err(reason) => out.bad_rows.push(RowError { at, reason }),
            }
        }
    }
    Ok(out)
}

/// The legacy status document's `server_zones`: what each virtual server
/// received and answered (NGINX Plus counts no denials).
fn server_zones(doc: &Value) -> Vec<FrontendStat<'static>> {
    let Some(zones) = doc.get("server_zones").and_then(Value::as_object) else {
        return Vec::new();
    };
    let count = |z: &Value, path: &str| z.pointer(path).and_then(Value::as_u64);
    zones
        .iter()
        .map(|(name, z)| FrontendStat {
            frontend: Cow::Owned(name.clone()),
            requests_total: count(z, "/requests"),
            denied_total: None,
            responses_4xx_total: count(z, "/responses/4xx"),
            responses_5xx_total: count(z, "/responses/5xx"),
        })
        .collect()
}

fn plus_peer(
    pool: &str,
    p: &Value,
    names: &mut BTreeMap<String, usize>,
) -> Result<ServerStat<'static>, String> {
    let name = p
        .get("server")
        .or_else(|| p.get("name"))
        .and_then(Value::as_str)
        .ok_or("no `server`")?;
    // HTTP upstreams count requests; stream (TCP/UDP) upstreams connections.
    let requests = json_counter(p.get("requests"), "requests")?
        .or(json_counter(p.get("connections"), "connections")?)
        .ok_or("no `requests` (or `connections`) counter")?;
    // A failed attempt (`fails`: refused, timed out, reset) got no answer
    // at all: it failed as surely as a 5xx.
    let errors = json_counter(p.pointer("/responses/5xx"), "responses.5xx")?.unwrap_or(0)
        + json_counter(p.get("fails"), "fails")?.unwrap_or(0);
    let state = p.get("state").and_then(Value::as_str).unwrap_or("up");
    // `down` and `draining` are an operator's decision (out of rotation);
    // `unavail` and `unhealthy` are failures.
    let (up, in_rotation) = match state {
        "up" | "checking" => (true, true),
        "down" | "draining" => (true, false),
        "unavail" | "unhealthy" => (false, true),
        other => return Err(format!("state {other:?} is not a peer state")),
    };
    let weight = json_weight(p.get("weight"))?;
    Ok(ServerStat {
        pool: Cow::Owned(pool.to_string()),
        server: Cow::Owned(unique(names, name, p.get("id").unwrap_or(&Value::Null))),
        requests_total: requests,
        responses_5xx_total: errors.min(requests),
        up,
        weight: if in_rotation { weight } else { 0.0 },
        backup: p.get("backup").and_then(Value::as_bool).unwrap_or(false),
        algo: None,
        responses_4xx_total: json_counter(p.pointer("/responses/4xx"), "responses.4xx")?,
        connection_errors_total: json_counter(p.get("fails"), "fails")?,
        response_time_ms: json_gauge(p.get("response_time"), "response_time")?,
        sessions_current: json_gauge(p.get("active"), "active")?,
        // 0 is NGINX's "no limit".
        session_limit: json_gauge(p.get("max_conns"), "max_conns")?.filter(|&l| l > 0.0),
        ..Default::default()
    })
}

/// nginx-module-vts: `upstreamZones` (`::nogroups`, peers outside any
/// upstream block, is not a pool and is left out).
pub fn parse_vts(bytes: &[u8]) -> Result<Parsed<'_>, SourceError> {
    let doc = super::json(bytes, "nginx-vts status JSON")?;
    let Some(zones) = doc.get("upstreamZones").and_then(Value::as_object) else {
        // A server with no upstream block has no `upstreamZones`: a valid
        // page with nothing to watch, not a failed scrape.
        if doc.get("serverZones").is_some() || doc.get("nginxVersion").is_some() {
            return Ok(Parsed::default());
        }
        return Err(SourceError::NotThisFormat {
            expected: "nginx-vts status JSON with `upstreamZones`",
            found: super::excerpt(&doc.to_string()),
        });
    };
    let mut out = Parsed::default();
    for (pool, peers) in zones.iter().filter(|(k, _)| k.as_str() != "::nogroups") {
        let mut names = BTreeMap::new();
        for (i, p) in peers.as_array().into_iter().flatten().enumerate() {
            let at = format!("upstreamZones.{pool}[{i}]");
            let mut peer = || -> Result<ServerStat<'static>, String> {
                let name = p
                    .get("server")
                    .and_then(Value::as_str)
                    .ok_or("no `server`")?;
                let requests = json_counter(p.get("requestCounter"), "requestCounter")?
                    .ok_or("no `requestCounter`")?;
                let errors =
                    json_counter(p.pointer("/responses/5xx"), "responses.5xx")?.unwrap_or(0);
                let down = p.get("down").and_then(Value::as_bool).unwrap_or(false);
                Ok(ServerStat {
                    pool: Cow::Owned(pool.clone()),
                    server: Cow::Owned(unique(&mut names, name, &Value::from(i))),
                    requests_total: requests,
                    responses_5xx_total: errors.min(requests),
                    up: !down,
                    weight: json_weight(p.get("weight"))?,
                    backup: p.get("backup").and_then(Value::as_bool).unwrap_or(false),
                    algo: None,
                    responses_4xx_total: json_counter(
                        p.pointer("/responses/4xx"),
                        "responses.4xx",
                    )?,
                    response_time_ms: json_gauge(p.get("responseMsec"), "responseMsec")?,
                    ..Default::default()
                })
            };
            match peer() {
                Ok(s) => out.servers.push(s),
                Err(reason) => out.bad_rows.push(RowError { at, reason }),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_non_json_are_named() {
        let e = parse_plus(b"<html><body>502 Bad Gateway</body></html>").unwrap_err();
        assert!(e.to_string().contains("got \"an HTML page\""), "{e}");
        // A login page is named by its title; its form, which may echo the
        // URL and its token, is not shown.
        let login = b"<html><head><TITLE>Sign in</TITLE></head><form action=\"/login?next=/api?token=s3cret\">";
        let e = parse_plus(login).unwrap_err().to_string();
        assert!(e.contains("got \"an HTML page: Sign in\""), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        assert!(matches!(
            parse_vts(b"{\"x\":"),
            Err(SourceError::NotJson(_))
        ));
        assert!(parse_plus(b"[1,2]").is_err());
    }

    #[test]
    fn peer_states_map_to_up_down_and_out_of_rotation() {
        let doc = br#"{"web":{"peers":[
            {"id":0,"server":"a","state":"up","requests":5,"weight":2},
            {"id":1,"server":"b","state":"unhealthy","requests":5},
            {"id":2,"server":"c","state":"draining","requests":5},
            {"id":3,"server":"c","state":"up","requests":5,"backup":true},
            {"id":4,"server":"d","state":"weird","requests":5}]}}"#;
        let p = parse_plus(doc).unwrap();
        let s: Vec<_> = p
            .servers
            .iter()
            .map(|s| (s.server.as_ref(), s.up, s.weight, s.backup))
            .collect();
        assert_eq!(
            s,
            [
                ("a", true, 2.0, false),
                ("b", false, 1.0, false),
                ("c", true, 0.0, false),
                ("c#3", true, 1.0, true)
            ]
        );
        assert_eq!(p.bad_rows[0].at, "upstreams.web.peers[4]");
    }
}
