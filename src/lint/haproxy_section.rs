//! The HAProxy section being read: what `defaults` hand down, and what a
//! proxy section has said so far.

use std::collections::HashMap;

use super::acl::Acls;
use super::haproxy_servers::ServerParams;
use super::model::{Blocker, Location, Route, Server};

/// What a `defaults` section hands down to the proxies after it.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub balance: Option<(String, Location)>,
    /// `mode http` or `mode tcp`; HAProxy's default is tcp, where
    /// `http-request` rules are ignored.
    pub http: bool,
    pub server: ServerParams,
    pub default_backend: Option<(String, Location)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Frontend,
    Backend,
    Listen,
    Defaults,
    Other,
}

/// The proxy section being read.
#[derive(Debug)]
pub struct Section {
    pub kind: Kind,
    pub name: String,
    pub at: Location,
    pub defaults: Defaults,
    pub acls: Acls,
    /// Per rule set (`http-request`, `tcp-request connection`...): whether a
    /// rule that lets some requests through came before.
    pub escapes: HashMap<String, bool>,
    /// Rules that block every request, and whether they are HTTP rules
    /// (those apply only if the section ends up in `mode http`, wherever
    /// the `mode` line is).
    pub blockers: Vec<(Blocker, bool)>,
    pub routes: Vec<Route>,
    pub servers: Vec<Server>,
    /// `disabled`: the proxy is not started.
    pub disabled: bool,
    /// Inside a conditional block whose condition lint cannot know (`.if
    /// defined(MAINTENANCE)`): rules read here may never apply.
    pub uncertain: bool,
}
