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
}

impl SourceFile {
    /// The text of 1-based line `n`, without its end of line.
    pub fn line(&self, n: u32) -> &str {
        self.text
            .lines()
            .nth((n as usize).saturating_sub(1))
            .unwrap_or("")
    }
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
    /// `None` when it is only known at run time (a `server-template` slot).
    pub address: Option<String>,
    pub weight: f64,
    pub backup: bool,
    pub disabled: bool,
}

impl Server {
    pub fn takes_traffic(&self) -> bool {
        !self.backup && !self.disabled && self.weight > 0.0
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
    /// The section, or for NGINX the pool the blocked location serves.
    pub pool: Option<String>,
    /// Why every request is caught: "no condition", "`src 0.0.0.0/0` covers
    /// every client address".
    pub why: String,
    /// The rule, as written.
    pub rule: String,
}

#[derive(Debug, Clone)]
pub struct UndefinedAcl {
    pub at: Location,
    pub section: String,
    pub name: String,
}
