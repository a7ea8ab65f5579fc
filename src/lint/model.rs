//! What `lint` reads out of a load balancer's config, whatever its grammar:
//! pools and their servers, what routes to them, and the rules that turn
//! requests away. The HAProxy and NGINX readers fill it; the checks read only
//! this.

use std::fmt;

/// A line of an input file (1-based), as `FILE:LINE`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Index into [`LbConfig::files`].
    pub file: usize,
    pub line: u32,
}

/// One input file and its lines, kept for the report's excerpts.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
    /// Where each line starts, so that an excerpt costs no scan.
    starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: String, text: String) -> SourceFile {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile { path, text, starts }
    }

    /// The text of 1-based line `n`, without its end of line.
    pub fn line(&self, n: u32) -> &str {
        let Some(&start) = self.starts.get((n as usize).saturating_sub(1)) else {
            return "";
        };
        let rest = &self.text[start..];
        let line = rest.split('\n').next().unwrap_or("");
        line.strip_suffix('\r').unwrap_or(line)
    }
}

/// A server's address in one form, for comparison: the `ipv4@`-style
/// prefixes dropped, IPs in their canonical text (IPv6 with or without
/// brackets, as HAProxy takes the part after the last colon as the port),
/// host names lowercased, sockets as `unix:PATH`. `default_port` fills a
/// missing port (80 in NGINX; HAProxy then uses the client's).
pub fn normalise_address(written: &str, default_port: Option<u16>) -> String {
    let lower = written.to_ascii_lowercase();
    let bare = match lower.split_once('@') {
        Some((family, rest)) if family != "unix" && !family.contains([':', '/']) => rest,
        _ => lower.as_str(),
    };
    if let Some(path) = bare
        .strip_prefix("unix@")
        .or_else(|| bare.strip_prefix("unix:"))
    {
        return format!("unix:{path}");
    }
    if bare.starts_with('/') {
        return format!("unix:{bare}");
    }
    let (host, port) = if let Some(rest) = bare.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        (host, after.strip_prefix(':'))
    } else if bare.matches(':').count() > 1 {
        match bare.rsplit_once(':') {
            Some((h, p)) if h.parse::<std::net::Ipv6Addr>().is_ok() => (h, Some(p)),
            _ => (bare, None),
        }
    } else {
        match bare.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (bare, None),
        }
    };
    let host = host
        .parse::<std::net::IpAddr>()
        .map_or_else(|_| host.to_string(), |ip| ip.to_string());
    let port = port
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .or_else(|| default_port.map(|p| p.to_string()));
    match (port, host.contains(':')) {
        (Some(p), true) => format!("[{host}]:{p}"),
        (Some(p), false) => format!("{host}:{p}"),
        (None, _) => host,
    }
}

/// An HTTP status that serves nobody: 403 (and NGINX's 444, which closes
/// the connection) or any 5xx.
pub fn refuses(status: u16) -> bool {
    status == 403 || status == 444 || status >= 500
}

/// Which grammar a config is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Haproxy,
    Nginx,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Haproxy => "haproxy",
            Dialect::Nginx => "nginx",
        })
    }
}

/// A config as the checks see it.
#[derive(Debug, Clone)]
pub struct LbConfig {
    pub dialect: Dialect,
    pub files: Vec<SourceFile>,
    pub pools: Vec<Pool>,
    pub routes: Vec<Route>,
    /// Rules that turn away every request reaching them.
    pub blockers: Vec<Blocker>,
    /// ACL names used in a condition and defined nowhere in reach.
    pub undefined_acls: Vec<UndefinedAcl>,
    /// Directives this reader does not know (first use of each).
    pub unknown: Vec<(Location, String)>,
}

impl LbConfig {
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// `FILE:LINE` of a location.
    pub fn at(&self, at: &Location) -> String {
        format!("{}:{}", self.files[at.file].path, at.line)
    }
}

/// A pool: an HAProxy `backend`/`listen` or an NGINX `upstream`.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub at: Location,
    /// The balance algorithm as written (`roundrobin` when left to the
    /// default), and where it was set.
    pub balance: String,
    pub balance_at: Option<Location>,
    /// A `listen` section routes to itself.
    pub self_routed: bool,
    pub servers: Vec<Server>,
}

impl Pool {
    /// The servers that take traffic in normal times: not backup, not
    /// disabled, weight above zero.
    pub fn active(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().filter(|s| s.takes_traffic())
    }

    /// Each active server's expected share of the pool's requests, from the
    /// weights.
    pub fn shares(&self) -> Vec<(&str, f64)> {
        let total: f64 = self.active().map(|s| s.weight).sum();
        if total <= 0.0 {
            return Vec::new();
        }
        self.active()
            .map(|s| (s.name.as_str(), s.weight / total))
            .collect()
    }

    /// 1 / Σ share²: how many equal servers the weights amount to.
    pub fn effective_servers(&self) -> f64 {
        crate::detect::stats::effective_servers(self.active().map(|s| s.weight)).unwrap_or(0.0)
    }
}

/// One server line of a pool.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub at: Location,
    /// Where the server is, normalised for comparison (`10.0.0.1:80`);
    /// `None` when it is only known at run time (a `server-template` slot,
    /// a host name resolved by `resolvers`).
    pub address: Option<String>,
    pub weight: f64,
    pub backup: bool,
    pub disabled: bool,
}

impl Server {
    /// Can take requests at all: enabled, weight above zero.
    pub fn can_serve(&self) -> bool {
        !self.disabled && self.weight > 0.0
    }

    /// Takes requests in normal times: can serve, and is no backup.
    pub fn takes_traffic(&self) -> bool {
        !self.backup && self.can_serve()
    }
}

/// A reference from a frontend (or server block) to a pool by name.
#[derive(Debug, Clone)]
pub struct Route {
    /// The section or block the reference is in, for people (`` `fe` ``,
    /// ``server `example.com` ``).
    pub from: String,
    pub pool: String,
    /// The reference as written (`http://app/api/`).
    pub written: String,
    pub at: Location,
    /// The directive as people know it (`use_backend`, `proxy_pass`).
    pub directive: &'static str,
}

/// A rule that denies or rejects every request reaching it.
#[derive(Debug, Clone)]
pub struct Blocker {
    pub at: Location,
    /// Where the rule is: the HAProxy section (frontend, listen or
    /// backend), or the upstream the blocked NGINX location serves.
    pub pool: Option<String>,
    /// Why every request is caught: "no condition", "`src 0.0.0.0/0` covers
    /// every client address".
    pub why: String,
    /// The rule, as written.
    pub rule: String,
}

/// An ACL a condition uses and its HAProxy section never defines.
#[derive(Debug, Clone)]
pub struct UndefinedAcl {
    pub at: Location,
    pub section: String,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_compare_in_one_form() {
        let same = |a: &str, b: &str| normalise_address(a, None) == normalise_address(b, None);
        assert!(same("[2001:db8::1]:80", "2001:db8::1:80"));
        assert!(same("ipv6@::1:80", "[::1]:80"));
        assert!(same("ipv6@[0:0::1]:80", "[::1]:80"));
        assert!(same("unix@/run/app.sock", "/run/app.sock"));
        assert!(same("ipv4@10.0.0.1:80", "10.0.0.1:80"));
        assert!(same("App.Example:8080", "app.example:8080"));
        assert!(!same("10.0.0.1:80", "10.0.0.1:81"));
        assert_eq!(normalise_address("10.0.0.1", Some(80)), "10.0.0.1:80");
        assert_eq!(normalise_address("[::1]", Some(80)), "[::1]:80");
        assert_eq!(
            normalise_address("unix:/tmp/a.sock", Some(80)),
            "unix:/tmp/a.sock"
        );
    }

    #[test]
    fn lines_are_found_by_number() {
        let f = SourceFile::new("f".into(), "a\r\nb\n\nd".into());
        assert_eq!(
            [f.line(1), f.line(2), f.line(3), f.line(4), f.line(5)],
            ["a", "b", "", "d", ""]
        );
    }
}
