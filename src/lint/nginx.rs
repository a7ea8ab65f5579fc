//! What an NGINX config means for load balancing: `upstream` blocks are
//! pools, `proxy_pass` (and the other `*_pass`) route to them, and
//! `allow`/`deny`/`return` can turn every request of a server block away.

use std::path::Path;

use super::keywords::{NGINX, NGINX_PREFIXES};
use super::model::{Blocker, Dialect, LbConfig, Location, Pool, Route, Server};
use super::nginx_syntax::{self, Directive};
use super::LintError;

/// Reads an NGINX config and everything it includes.
pub fn read(main: &Path) -> Result<LbConfig, LintError> {
    let (tree, files) = nginx_syntax::read(main)?;
    let mut out = LbConfig {
        dialect: Dialect::Nginx,
        files: Vec::new(),
        pools: Vec::new(),
        routes: Vec::new(),
        blockers: Vec::new(),
        undefined_acls: Vec::new(),
        unknown: files
            .missing
            .iter()
            .map(|(at, p)| (at.clone(), format!("include {p}")))
            .collect(),
    };
    walk(&tree, &mut out, &Access::default());
    out.files = files.files;
    Ok(out)
}

/// The `allow`/`deny` rules in force in a context: a context with rules of
/// its own replaces its parent's.
#[derive(Debug, Clone, Default)]
struct Access {
    /// The `deny all` that catches every client, with no `allow` before it.
    deny_all: Option<(Location, String)>,
}

impl Access {
    fn of(block: &[Directive], parent: &Access) -> Access {
        let rules: Vec<&Directive> = block
            .iter()
            .filter(|d| d.name == "allow" || d.name == "deny")
            .collect();
        if rules.is_empty() {
            return parent.clone();
        }
        let first_all = rules.iter().take_while(|d| d.name == "deny").find(|d| {
            d.args
                .first()
                .is_some_and(|a| matches!(a.as_str(), "all" | "0.0.0.0/0" | "::/0"))
        });
        Access {
            deny_all: first_all.map(|d| (d.at.clone(), format!("deny {};", d.args.join(" ")))),
        }
    }
}

/// Walks the main contexts (`http`, `stream`, and what includes put at the
/// top), collecting pools, server blocks and unknown directives.
fn walk(block: &[Directive], out: &mut LbConfig, parent: &Access) {
    let access = Access::of(block, parent);
    for d in block {
        note_unknown(d, out);
        match (d.name.as_str(), &d.block) {
            ("upstream", Some(inner)) => upstream(d, inner, out),
            ("server", Some(inner)) => server_block(d, inner, out, &access),
            ("http" | "stream", Some(inner)) => walk(inner, out, &access),
            _ => {}
        }
    }
}

fn note_unknown(d: &Directive, out: &mut LbConfig) {
    let known =
        NGINX.contains(&d.name.as_str()) || NGINX_PREFIXES.iter().any(|p| d.name.starts_with(p));
    if !known && !out.unknown.iter().any(|(_, k)| *k == d.name) {
        out.unknown.push((d.at.clone(), d.name.clone()));
    }
}

fn upstream(d: &Directive, inner: &[Directive], out: &mut LbConfig) {
    let Some(name) = d.args.first() else {
        return;
    };
    let mut balance = "roundrobin".to_string();
    let mut balance_at = None;
    let mut servers = Vec::new();
    for s in inner {
        note_unknown(s, out);
        match s.name.as_str() {
            "ip_hash" | "hash" | "least_conn" | "random" | "least_time" | "sticky" => {
                balance = s.name.clone();
                balance_at = Some(s.at.clone());
            }
            "server" => servers.extend(upstream_server(s)),
            _ => {}
        }
    }
    out.pools.push(Pool {
        name: name.clone(),
        at: d.at.clone(),
        balance,
        balance_at,
        self_routed: false,
        servers,
    });
}

/// `server ADDRESS [weight=N] [backup] [down] …` inside an upstream.
fn upstream_server(d: &Directive) -> Option<Server> {
    let address = normalise(d.args.first()?);
    let mut server = Server {
        name: address.clone(),
        at: d.at.clone(),
        address: Some(address),
        weight: 1.0,
        backup: false,
        disabled: false,
    };
    for a in &d.args[1..] {
        match a.split_once('=') {
            Some(("weight", w)) => server.weight = w.parse().unwrap_or(1.0),
            _ if a == "backup" => server.backup = true,
            _ if a == "down" => server.disabled = true,
            _ => {}
        }
    }
    Some(server)
}

/// `10.0.0.1` is `10.0.0.1:80`; case does not matter in host names.
fn normalise(address: &str) -> String {
    let lower = address.to_ascii_lowercase();
    if lower.starts_with("unix:") || has_port(&lower) {
        lower
    } else {
        format!("{lower}:80")
    }
}

fn has_port(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => {
            port.chars().all(|c| c.is_ascii_digit()) && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    }
}

/// The directives that hand a request to an upstream.
const PASSES: &[&str] = &[
    "proxy_pass",
    "fastcgi_pass",
    "uwsgi_pass",
    "scgi_pass",
    "grpc_pass",
    "memcached_pass",
];

/// The pool a `*_pass` names, when it names one: a bare name with no dot,
/// no port and no variable. Anything else is a host outside the config.
fn pool_named(target: &str) -> Option<&str> {
    let rest = target.split_once("://").map_or(target, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or("");
    let bare = !host.is_empty()
        && !host.contains(['.', ':', '$', '['])
        && !rest.starts_with("unix:")
        && host != "localhost";
    bare.then_some(host)
}

/// One `server { }` block: its routes, and whether it turns every request
/// away while routing to a pool.
fn server_block(d: &Directive, inner: &[Directive], out: &mut LbConfig, parent: &Access) {
    let name = d
        .args
        .is_empty()
        .then(|| server_name(inner))
        .flatten()
        .map(|n| format!("server `{n}`"))
        .unwrap_or_else(|| format!("the server block at line {}", d.at.line));
    let access = Access::of(inner, parent);
    let mut routes = Vec::new();
    for x in inner {
        note_unknown(x, out);
    }
    collect_routes(inner, &name, &mut routes);
    let pool = routes.first().map(|r: &Route| r.pool.clone());
    let proxies = proxies(inner);
    out.routes.extend(routes);
    if !proxies {
        // A block that passes nothing on (a catch-all `return 444`, a
        // static site) cannot starve a pool.
        return;
    }
    if let Some(ret) = inner.iter().find(|x| blocking_return(x)) {
        out.blockers.push(Blocker {
            at: ret.at.clone(),
            pool: pool.clone(),
            why: format!(
                "`return {}` at the server level answers every request before any location",
                ret.args[0]
            ),
            rule: format!("return {};", ret.args.join(" ")),
        });
        return;
    }
    let stream = inner.iter().any(|x| x.name == "proxy_pass");
    if stream {
        if let Some((at, rule)) = access.deny_all {
            out.blockers.push(Blocker {
                at,
                pool,
                why: "no `allow` comes before it".into(),
                rule,
            });
        }
        return;
    }
    if let Some(b) = catch_all_blocked(inner, &access, pool) {
        out.blockers.push(b);
    }
}

fn server_name(inner: &[Directive]) -> Option<String> {
    let names = inner.iter().find(|x| x.name == "server_name")?;
    names
        .args
        .iter()
        .find(|n| *n != "_" && !n.is_empty())
        .cloned()
}

/// Does anything in this block hand requests to an upstream or host?
fn proxies(block: &[Directive]) -> bool {
    block
        .iter()
        .any(|d| PASSES.contains(&d.name.as_str()) || d.block.as_deref().is_some_and(proxies))
}

fn collect_routes(block: &[Directive], from: &str, out: &mut Vec<Route>) {
    for d in block {
        if let (true, Some(pool)) = (
            PASSES.contains(&d.name.as_str()),
            d.args.first().and_then(|t| pool_named(t)),
        ) {
            out.push(Route {
                from: from.to_string(),
                pool: pool.to_string(),
                written: d.args[0].clone(),
                at: d.at.clone(),
                directive: PASSES
                    .iter()
                    .find(|p| **p == d.name)
                    .copied()
                    .unwrap_or("proxy_pass"),
            });
        }
        if let Some(inner) = &d.block {
            collect_routes(inner, from, out);
        }
    }
}

/// `return 403`, `return 444` or a 5xx: an answer that serves nobody.
fn blocking_return(d: &Directive) -> bool {
    d.name == "return"
        && d.args
            .first()
            .and_then(|c| c.parse::<u16>().ok())
            .is_some_and(|c| c == 403 || c == 444 || c >= 500)
}

/// The catch-all `location /` turning every request away, while it (or no
/// other location) is what carries the server's traffic to a pool.
fn catch_all_blocked(
    inner: &[Directive],
    access: &Access,
    pool: Option<String>,
) -> Option<Blocker> {
    let locations: Vec<&Directive> = inner
        .iter()
        .filter(|d| d.name == "location" && d.block.is_some())
        .collect();
    let root = locations.iter().find(|d| {
        matches!(d.args.as_slice(), [p] if p == "/")
            || matches!(d.args.as_slice(), [m, p] if m == "^~" && p == "/")
    })?;
    let body = root.block.as_deref().unwrap_or(&[]);
    let own = Access::of(body, access);
    let (at, rule, why) = match body.iter().find(|x| blocking_return(x)) {
        Some(ret) => (
            ret.at.clone(),
            format!("return {};", ret.args.join(" ")),
            format!(
                "`return {}` in `location /` answers every request",
                ret.args[0]
            ),
        ),
        None => {
            let (at, rule) = own.deny_all?;
            (
                at,
                rule,
                "`location /` is the catch-all, and no `allow` comes before the `deny`".to_string(),
            )
        }
    };
    let carries = proxies(body)
        || !locations
            .iter()
            .any(|l| !std::ptr::eq(*l, *root) && proxies(l.block.as_deref().unwrap_or(&[])));
    let pool = routes_of(body).or(pool);
    carries.then_some(Blocker {
        at,
        pool,
        why,
        rule,
    })
}

fn routes_of(block: &[Directive]) -> Option<String> {
    let mut routes = Vec::new();
    collect_routes(block, "", &mut routes);
    routes.into_iter().next().map(|r| r.pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_targets_name_a_pool_only_when_bare() {
        assert_eq!(pool_named("http://backend"), Some("backend"));
        assert_eq!(pool_named("http://backend/api/"), Some("backend"));
        assert_eq!(pool_named("app_pool"), Some("app_pool"));
        assert_eq!(pool_named("http://api.example.com"), None);
        assert_eq!(pool_named("http://backend:8080"), None);
        assert_eq!(pool_named("http://$upstream"), None);
        assert_eq!(pool_named("http://unix:/run/app.sock"), None);
        assert_eq!(pool_named("http://localhost"), None);
    }

    #[test]
    fn addresses_take_the_default_port() {
        assert_eq!(normalise("10.0.0.1"), "10.0.0.1:80");
        assert_eq!(normalise("App.Local:8080"), "app.local:8080");
        assert_eq!(normalise("[::1]:81"), "[::1]:81");
        assert_eq!(normalise("unix:/tmp/a.sock"), "unix:/tmp/a.sock");
    }
}
