//! Whether an NGINX server block turns every request away before its pools:
//! `allow`/`deny` as inherited (a context with rules of its own replaces
//! its parent's; `satisfy any` lets authenticated clients through), and
//! `return` with a status that serves nobody.

use std::collections::HashMap;

use super::model::{refuses, Blocker, Location};
use super::nginx_syntax::Directive;

/// The directives that hand a request to an upstream.
pub const PASSES: &[&str] = &[
    "proxy_pass",
    "fastcgi_pass",
    "uwsgi_pass",
    "scgi_pass",
    "grpc_pass",
    "memcached_pass",
];

/// The access rules in force in a context.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The `deny all` that catches every client, with no `allow` before it.
    deny_all: Option<(Location, String)>,
    satisfy_any: bool,
}

impl Access {
    pub fn of(block: &[Directive], parent: &Access) -> Access {
        let satisfy_any = block
            .iter()
            .rfind(|d| d.name == "satisfy")
            .map_or(parent.satisfy_any, |d| {
                d.args.first().is_some_and(|a| a == "any")
            });
        let rules: Vec<&Directive> = block
            .iter()
            .filter(|d| d.name == "allow" || d.name == "deny")
            .collect();
        if rules.is_empty() {
            return Access {
                satisfy_any,
                ..parent.clone()
            };
        }
        let first_all = rules.iter().take_while(|d| d.name == "deny").find(|d| {
            d.args
                .first()
                .is_some_and(|a| matches!(a.as_str(), "all" | "0.0.0.0/0" | "::/0"))
        });
        Access {
            deny_all: first_all.map(|d| (d.at.clone(), format!("deny {};", d.args.join(" ")))),
            satisfy_any,
        }
    }

    /// The `deny` that refuses everyone, unless authentication can let
    /// clients through (`satisfy any`).
    fn refusing(&self) -> Option<&(Location, String)> {
        self.deny_all.as_ref().filter(|_| !self.satisfy_any)
    }
}

/// `return 403`, `return 444` or a 5xx, directly in a block.
pub fn refusing_return(block: &[Directive]) -> Option<&Directive> {
    block.iter().find(|d| {
        d.name == "return"
            && d.args
                .first()
                .and_then(|c| c.parse::<u16>().ok())
                .is_some_and(refuses)
    })
}

/// Does anything in this block hand requests on?
pub fn passes(block: &[Directive]) -> bool {
    block
        .iter()
        .any(|d| PASSES.contains(&d.name.as_str()) || d.block.as_deref().is_some_and(passes))
}

/// A location of the server block, with the access rules it runs under.
struct Place<'a> {
    at: &'a Directive,
    body: &'a [Directive],
    access: Access,
}

/// What a server block routes to, named for the findings.
#[derive(Debug)]
pub struct Server<'a> {
    pub body: &'a [Directive],
    pub access: Access,
    /// The upstream a location passes to, by the location's directive.
    pub pool_of: fn(&[Directive]) -> Option<String>,
}

impl Server<'_> {
    /// The rule that refuses every request of this block, if one does.
    pub fn blocker(&self) -> Option<Blocker> {
        if !passes(self.body) {
            // A block that passes nothing on (a catch-all `return 444`, a
            // static site) cannot starve a pool.
            return None;
        }
        let pool = (self.pool_of)(self.body);
        if let Some(ret) = refusing_return(self.body) {
            let why = format!(
                "`return {}` at the server level answers every request before any location",
                ret.args[0]
            );
            return Some(blocker(ret, why, pool));
        }
        if self.body.iter().any(|d| d.name == "proxy_pass") {
            // A stream server: its access rules are all there is.
            let (at, rule) = self.access.refusing()?.clone();
            let why = "no `allow` comes before it".to_string();
            return Some(Blocker {
                at,
                pool,
                why,
                rule,
            });
        }
        self.locations()
    }

    fn locations(&self) -> Option<Blocker> {
        let mut places = Vec::new();
        collect(self.body, &self.access, &mut places);
        let named: HashMap<&str, &[Directive]> = places
            .iter()
            .filter_map(|p| Some((p.at.args.first()?.strip_prefix('@')?, p.body)))
            .collect();
        // Named locations are reached only through the others.
        let entries: Vec<&Place> = places.iter().filter(|p| !is_named(p.at)).collect();
        let carries = |p: &Place| passes(p.body) || reaches(p.body, &named);
        let root = entries.iter().find(|p| is_root(p.at));
        if let Some(root) = root {
            let others_open = entries
                .iter()
                .any(|p| !std::ptr::eq(*p, *root) && carries(p) && refused(p).is_none());
            if carries(root) || !others_open {
                return refused(root)
                    .map(|(at, rule, why)| self.found(at, rule, why, root, &named));
            }
        }
        // No catch-all: every location that passes requests on refuses.
        let carrying: Vec<&&Place> = entries.iter().filter(|p| carries(p)).collect();
        let refusals: Vec<_> = carrying.iter().filter_map(|p| refused(p)).collect();
        if carrying.is_empty() || refusals.len() < carrying.len() {
            return None;
        }
        let (at, rule, why) = refusals.into_iter().next()?;
        Some(self.found(at, rule, why, carrying[0], &named))
    }

    fn found(
        &self,
        at: Location,
        rule: String,
        why: String,
        place: &Place,
        named: &HashMap<&str, &[Directive]>,
    ) -> Blocker {
        let via = references(place.body).find_map(|n| named.get(n).and_then(|b| (self.pool_of)(b)));
        let pool = (self.pool_of)(place.body)
            .or(via)
            .or_else(|| (self.pool_of)(self.body));
        Blocker {
            at,
            pool,
            why,
            rule,
        }
    }
}

fn blocker(d: &Directive, why: String, pool: Option<String>) -> Blocker {
    Blocker {
        at: d.at.clone(),
        pool,
        why,
        rule: format!("{} {};", d.name, d.args.join(" ")),
    }
}

/// Every location, nested ones too, with the rules each runs under.
fn collect<'a>(block: &'a [Directive], parent: &Access, out: &mut Vec<Place<'a>>) {
    for d in block.iter().filter(|d| d.name == "location") {
        let Some(body) = d.block.as_deref() else {
            continue;
        };
        let access = Access::of(body, parent);
        collect(body, &access, out);
        out.push(Place {
            at: d,
            body,
            access,
        });
    }
}

fn is_named(location: &Directive) -> bool {
    location.args.first().is_some_and(|a| a.starts_with('@'))
}

/// `location /` and `location ^~ /`: where every request without a more
/// specific location goes.
fn is_root(location: &Directive) -> bool {
    matches!(location.args.as_slice(), [p] if p == "/")
        || matches!(location.args.as_slice(), [m, p] if m == "^~" && p == "/")
}

/// Named locations a block hands requests to (`try_files … @app`,
/// `error_page 404 = @app`).
fn references(block: &[Directive]) -> impl Iterator<Item = &str> {
    block
        .iter()
        .filter(|d| d.name == "try_files" || d.name == "error_page")
        .filter_map(|d| d.args.last()?.strip_prefix('@'))
}

fn reaches(block: &[Directive], named: &HashMap<&str, &[Directive]>) -> bool {
    references(block).any(|n| named.get(n).is_some_and(|b| passes(b)))
}

/// Why a location refuses every request: its own `return`, or the `deny`
/// it runs under.
fn refused(place: &Place) -> Option<(Location, String, String)> {
    if let Some(ret) = refusing_return(place.body) {
        let why = format!(
            "`return {}` answers every request of this location",
            ret.args[0]
        );
        return Some((
            ret.at.clone(),
            format!("return {};", ret.args.join(" ")),
            why,
        ));
    }
    let (at, rule) = place.access.refusing()?.clone();
    let why = if is_root(place.at) {
        "`location /` is the catch-all, and no `allow` comes before the `deny`".to_string()
    } else {
        "no `allow` comes before it, for any location that passes requests on".to_string()
    };
    Some((at, rule, why))
}
