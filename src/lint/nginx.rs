//! What an NGINX config means for load balancing: `upstream` blocks are
//! pools, `proxy_pass` (and the other `*_pass`) route to them, and
//! `allow`/`deny`/`return` can turn every request of a server block away.

use std::path::Path;

use super::keywords::{NGINX, NGINX_PREFIXES};
use super::model::{normalise_address, Dialect, LbConfig, Pool, Route, Server as PoolServer};
use super::nginx_block::{Access, Server, PASSES};
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
fn upstream_server(d: &Directive) -> Option<PoolServer> {
    let address = normalise_address(d.args.first()?, Some(80));
    let mut server = PoolServer {
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
    for x in inner {
        note_unknown(x, out);
    }
    collect_routes(inner, &name, &mut out.routes);
    let server = Server {
        body: inner,
        access: Access::of(inner, parent),
        pool_of: routes_of,
    };
    out.blockers.extend(server.blocker());
}

fn server_name(inner: &[Directive]) -> Option<String> {
    let names = inner.iter().find(|x| x.name == "server_name")?;
    names
        .args
        .iter()
        .find(|n| *n != "_" && !n.is_empty())
        .cloned()
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

/// The first pool a block passes requests to.
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
}
