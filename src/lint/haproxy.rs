//! Reads HAProxy configs as `haproxy -f` does: the files in order, sections,
//! `defaults` inheritance (the last one before a proxy, or the one named by
//! `from`), `server`, `server-template` and `default-server` lines,
//! `balance`, routing and the request rules that can turn traffic away.

use std::collections::HashMap;

use super::acl::{Acls, Truth};
use super::keywords::HAPROXY;
use super::model::{
    Blocker, Dialect, LbConfig, Location, Pool, Route, Server, SourceFile, UndefinedAcl,
};
use super::LintError;

/// What a `defaults` section hands down to the proxies after it.
#[derive(Debug, Clone, Default)]
struct Defaults {
    balance: Option<(String, Location)>,
    /// `mode http` or `mode tcp`; HAProxy's default is tcp, where
    /// `http-request` rules are ignored.
    http: bool,
    server: ServerParams,
    default_backend: Option<(String, Location)>,
}

#[derive(Debug, Clone, Default)]
struct ServerParams {
    weight: Option<f64>,
    backup: Option<bool>,
    disabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Frontend,
    Backend,
    Listen,
    Defaults,
    Other,
}

/// The proxy section being read.
#[derive(Debug)]
struct Section {
    kind: Kind,
    name: String,
    at: Location,
    defaults: Defaults,
    acls: Acls,
    /// Per rule set (`http-request`, `tcp-request connection`...): whether a
    /// rule that lets some requests through came before.
    escapes: HashMap<String, bool>,
    /// Rules that block every request, and whether they are HTTP rules
    /// (those apply only if the section ends up in `mode http`, wherever
    /// the `mode` line is).
    blockers: Vec<(Blocker, bool)>,
    servers: Vec<Server>,
}

#[derive(Debug)]
struct Reader {
    out: LbConfig,
    named_defaults: HashMap<String, Defaults>,
    last_defaults: Defaults,
    section: Option<Section>,
}

/// Reads the files, in order, as one configuration.
pub fn read(files: Vec<SourceFile>) -> Result<LbConfig, LintError> {
    let mut reader = Reader {
        out: LbConfig {
            dialect: Dialect::Haproxy,
            files: Vec::new(),
            pools: Vec::new(),
            routes: Vec::new(),
            blockers: Vec::new(),
            undefined_acls: Vec::new(),
            unknown: Vec::new(),
        },
        named_defaults: HashMap::new(),
        last_defaults: Defaults::default(),
        section: None,
    };
    for (index, file) in files.iter().enumerate() {
        for (n, line) in file.text.lines().enumerate() {
            let at = Location {
                file: index,
                line: n as u32 + 1,
            };
            let words = words(line).map_err(|reason| parse_error(&file.path, &at, reason))?;
            if !words.is_empty() {
                reader
                    .line(&words, at.clone())
                    .map_err(|reason| parse_error(&file.path, &at, &reason))?;
            }
        }
        // A section ends with its file.
        reader.close();
    }
    reader.out.files = files;
    Ok(reader.out)
}

fn parse_error(path: &str, at: &Location, reason: &str) -> LintError {
    LintError::Parse {
        at: format!("{path}:{}", at.line),
        reason: reason.to_string(),
    }
}

/// Splits a line into words: quotes group, a backslash escapes, `#` starts a
/// comment.
fn words(line: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote");
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "userlist",
    "peers",
    "resolvers",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "fcgi-app",
    "crt-store",
    "traces",
    "log-forward",
    "acme",
];

impl Reader {
    fn line(&mut self, words: &[String], at: Location) -> Result<(), String> {
        let keyword = words[0].as_str();
        if SECTIONS.contains(&keyword) {
            self.close();
            self.open(words, at)?;
            return Ok(());
        }
        // Conditional blocks (`.if`, `.endif`) and diagnostics.
        if keyword.starts_with('.') {
            return Ok(());
        }
        let Some(section) = self.section.as_mut() else {
            return Err(format!("`{keyword}` is outside any section"));
        };
        if matches!(section.kind, Kind::Other) {
            return Ok(());
        }
        let known = directive(section, &mut self.out, words, &at)?;
        if !known
            && !HAPROXY.contains(&keyword)
            && !self.out.unknown.iter().any(|(_, k)| k == keyword)
        {
            self.out.unknown.push((at, keyword.to_string()));
        }
        Ok(())
    }

    fn open(&mut self, words: &[String], at: Location) -> Result<(), String> {
        let kind = match words[0].as_str() {
            "frontend" => Kind::Frontend,
            "backend" => Kind::Backend,
            "listen" => Kind::Listen,
            "defaults" => Kind::Defaults,
            _ => Kind::Other,
        };
        let name = words
            .get(1)
            .filter(|n| *n != "from")
            .cloned()
            .unwrap_or_default();
        if name.is_empty() && matches!(kind, Kind::Frontend | Kind::Backend | Kind::Listen) {
            return Err(format!("`{}` needs a name", words[0]));
        }
        let from = words
            .iter()
            .position(|w| w == "from")
            .and_then(|i| words.get(i + 1));
        let defaults = match from {
            Some(parent) => self
                .named_defaults
                .get(parent)
                .cloned()
                .ok_or_else(|| format!("`from {parent}`: no defaults section of that name"))?,
            None if kind == Kind::Defaults => Defaults::default(),
            None => self.last_defaults.clone(),
        };
        self.section = Some(Section {
            kind,
            name,
            at,
            defaults,
            acls: Acls::default(),
            escapes: HashMap::new(),
            blockers: Vec::new(),
            servers: Vec::new(),
        });
        Ok(())
    }

    /// Ends the current section: a `defaults` becomes what follows inherits,
    /// a backend or listen becomes a pool.
    fn close(&mut self) {
        let Some(mut section) = self.section.take() else {
            return;
        };
        let http = section.defaults.http;
        self.out.blockers.extend(
            section
                .blockers
                .drain(..)
                .filter(|(_, is_http)| http || !is_http)
                .map(|(b, _)| b),
        );
        match section.kind {
            Kind::Defaults => {
                if !section.name.is_empty() {
                    self.named_defaults
                        .insert(section.name.clone(), section.defaults.clone());
                }
                self.last_defaults = section.defaults;
            }
            Kind::Frontend | Kind::Backend | Kind::Listen => {
                let kind = section.kind;
                if let (Kind::Frontend | Kind::Listen, Some((pool, at))) =
                    (kind, &section.defaults.default_backend)
                {
                    self.out.routes.push(Route {
                        from: format!("`{}`", section.name),
                        pool: pool.clone(),
                        written: pool.clone(),
                        at: at.clone(),
                        directive: "default_backend",
                    });
                }
                if kind != Kind::Frontend {
                    self.out.pools.push(pool_of(section));
                }
            }
            Kind::Other => {}
        }
    }
}

fn pool_of(section: Section) -> Pool {
    let (balance, balance_at) = match section.defaults.balance {
        Some((algo, at)) => (algo, Some(at)),
        None => ("roundrobin".to_string(), None),
    };
    Pool {
        balance,
        balance_at,
        self_routed: section.kind == Kind::Listen,
        name: section.name,
        at: section.at,
        servers: section.servers,
    }
}

/// Reads one directive of a proxy or defaults section; `Ok(false)` when it
/// is not one the checks read (it may still be a known keyword).
fn directive(
    section: &mut Section,
    out: &mut LbConfig,
    words: &[String],
    at: &Location,
) -> Result<bool, String> {
    let takes_servers = matches!(section.kind, Kind::Backend | Kind::Listen);
    match words[0].as_str() {
        "balance" => {
            let algo = words.get(1).ok_or("`balance` needs an algorithm")?;
            section.defaults.balance = Some((algo.clone(), at.clone()));
        }
        "default-server" => read_params(&mut section.defaults.server, &words[1..]),
        "server" if takes_servers => {
            let server = server(&section.defaults.server, words, at)?;
            section.servers.push(server);
        }
        "server-template" if takes_servers => {
            let servers = template(&section.defaults.server, words, at)?;
            section.servers.extend(servers);
        }
        "default_backend" => {
            let pool = words
                .get(1)
                .ok_or("`default_backend` needs a backend name")?;
            section.defaults.default_backend = Some((pool.clone(), at.clone()));
        }
        "use_backend" => {
            let pool = words.get(1).ok_or("`use_backend` needs a backend name")?;
            condition(section, out, &words[2..], at);
            // A name built from the request at run time cannot be checked.
            if !pool.contains("%[") {
                out.routes.push(Route {
                    from: format!("`{}`", section.name),
                    pool: pool.clone(),
                    written: pool.clone(),
                    at: at.clone(),
                    directive: "use_backend",
                });
            }
        }
        "acl" => section.acls.define(&words[1..]),
        "mode" => section.defaults.http = words.get(1).is_some_and(|m| m == "http"),
        "http-request" | "tcp-request" | "http-response" => rule(section, out, words, at),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Applies `weight`, `backup`, `disabled` and their opposites.
fn read_params(params: &mut ServerParams, words: &[String]) {
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "weight" => params.weight = it.next().and_then(|v| v.parse().ok()),
            "backup" => params.backup = Some(true),
            "no-backup" => params.backup = Some(false),
            "disabled" => params.disabled = Some(true),
            "enabled" => params.disabled = Some(false),
            _ => {}
        }
    }
}

fn server(defaults: &ServerParams, words: &[String], at: &Location) -> Result<Server, String> {
    let (Some(name), Some(address)) = (words.get(1), words.get(2)) else {
        return Err("`server` needs a name and an address".to_string());
    };
    let mut params = defaults.clone();
    read_params(&mut params, &words[3..]);
    Ok(Server {
        name: name.clone(),
        at: at.clone(),
        address: Some(normalise(address)),
        weight: params.weight.unwrap_or(1.0),
        backup: params.backup.unwrap_or(false),
        disabled: params.disabled.unwrap_or(false),
    })
}

/// `server-template PREFIX NUM|FIRST-LAST ADDRESS [params]`: slots filled at
/// run time (DNS or the runtime API), so their addresses are unknown here.
fn template(
    defaults: &ServerParams,
    words: &[String],
    at: &Location,
) -> Result<Vec<Server>, String> {
    let (Some(prefix), Some(range)) = (words.get(1), words.get(2)) else {
        return Err("`server-template` needs a prefix, a number and an address".to_string());
    };
    let bad =
        || format!("`server-template {prefix}`: `{range}` is not a number or a range like 1-10");
    let (first, last) = match range.split_once('-') {
        Some((a, b)) => (
            a.parse::<u32>().map_err(|_| bad())?,
            b.parse::<u32>().map_err(|_| bad())?,
        ),
        None => (1, range.parse::<u32>().map_err(|_| bad())?),
    };
    let mut params = defaults.clone();
    read_params(&mut params, words.get(4..).unwrap_or(&[]));
    Ok((first..=last)
        .map(|n| Server {
            name: format!("{prefix}{n}"),
            at: at.clone(),
            address: None,
            weight: params.weight.unwrap_or(1.0),
            backup: params.backup.unwrap_or(false),
            disabled: params.disabled.unwrap_or(false),
        })
        .collect())
}

/// `ipv4@10.0.0.1:80`, `10.0.0.1:80`, `[::1]:80` → a comparable form.
fn normalise(address: &str) -> String {
    let bare = address
        .split_once('@')
        .filter(|(family, _)| matches!(*family, "ipv4" | "ipv6" | "tcp" | "tcp4" | "tcp6"))
        .map_or(address, |(_, rest)| rest);
    bare.to_ascii_lowercase()
}

/// Actions that send a request on without reaching a later deny.
const ESCAPES: &[&str] = &[
    "allow",
    "accept",
    "redirect",
    "return",
    "use-service",
    "auth",
];
/// Actions that turn a request away.
const BLOCKS: &[&str] = &["deny", "reject", "tarpit", "silent-drop"];

/// A request rule: records whether it lets requests escape the rest of its
/// set, and whether it blocks every request that reaches it.
fn rule(section: &mut Section, out: &mut LbConfig, words: &[String], at: &Location) {
    // `tcp-request connection reject` names its set in the second word.
    let (set, action_at) = if words[0] == "tcp-request" {
        (
            format!("{} {}", words[0], words.get(1).map_or("", |w| w)),
            2,
        )
    } else {
        (words[0].clone(), 1)
    };
    let Some(action) = words.get(action_at) else {
        return;
    };
    let cond_at = words.iter().position(|w| w == "if" || w == "unless");
    let judged = condition(section, out, cond_at.map_or(&[][..], |i| &words[i..]), at);
    let blocks = BLOCKS.contains(&action.as_str()) || blocking_return(action, words);
    let escaped = section.escapes.get(&set).copied().unwrap_or(false);
    if ESCAPES.contains(&action.as_str()) && !blocks && judged.truth != Truth::Never {
        section.escapes.insert(set.clone(), true);
    }
    if blocks && judged.truth == Truth::Always && !escaped && set != "http-response" {
        let blocker = Blocker {
            at: at.clone(),
            pool: Some(section.name.clone()),
            why: judged.why,
            rule: words.join(" "),
        };
        section.blockers.push((blocker, !set.starts_with("tcp-")));
    }
}

/// `http-request return status 403`: a return that answers with an error.
fn blocking_return(action: &str, words: &[String]) -> bool {
    if action != "return" {
        return false;
    }
    let status = words
        .iter()
        .position(|w| w == "status")
        .and_then(|i| words.get(i + 1))
        .and_then(|s| s.parse::<u16>().ok());
    status.is_some_and(|s| s == 403 || s >= 500)
}

/// Judges `if …`/`unless …` (or no condition: every request), recording the
/// ACL names it uses that the section never defined.
fn condition(
    section: &Section,
    out: &mut LbConfig,
    words: &[String],
    at: &Location,
) -> super::acl::Judged {
    let Some((keyword, rest)) = words.split_first() else {
        return super::acl::Judged {
            truth: Truth::Always,
            why: "it has no condition".to_string(),
        };
    };
    let mut undefined = Vec::new();
    let judged = section
        .acls
        .condition(rest, keyword == "unless", &mut undefined);
    for name in undefined {
        out.undefined_acls.push(UndefinedAcl {
            at: at.clone(),
            section: section.name.clone(),
            name,
        });
    }
    judged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> LbConfig {
        read(vec![SourceFile {
            path: "haproxy.cfg".into(),
            text: text.into(),
        }])
        .unwrap()
    }

    #[test]
    fn words_follow_quotes_escapes_and_comments() {
        let w = words(r#"  acl a hdr(x) "two words" 'single' a\ b # comment"#).unwrap();
        assert_eq!(w, ["acl", "a", "hdr(x)", "two words", "single", "a b"]);
        assert!(words("acl a \"open").is_err());
    }

    #[test]
    fn defaults_hand_down_balance_and_server_params() {
        let c = read_text(
            "defaults\n  balance leastconn\n  default-server weight 5\nbackend web\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80 weight 10 backup\ndefaults named\n  balance source\nbackend api from named\n  server c 10.0.0.3:80\nbackend last\n  server d 10.0.0.4:80\n",
        );
        let web = c.pool("web").unwrap();
        assert_eq!(web.balance, "leastconn");
        assert_eq!(web.servers[0].weight, 5.0);
        assert!(web.servers[1].backup && web.servers[1].weight == 10.0);
        assert_eq!(c.pool("api").unwrap().balance, "source");
        // The last defaults section before a proxy is the one it takes.
        assert_eq!(c.pool("last").unwrap().balance, "source");
    }

    #[test]
    fn templates_are_slots_without_addresses() {
        let c = read_text("backend b\n  server-template s 1-3 app.example:80 check\n");
        let names: Vec<_> = c
            .pool("b")
            .unwrap()
            .servers
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["s1", "s2", "s3"]);
        assert!(c.pool("b").unwrap().servers[0].address.is_none());
    }

    #[test]
    fn a_deny_after_an_allow_is_a_whitelist_not_an_outage() {
        let c = read_text("frontend f\n  mode http\n  http-request allow if { src 10.0.0.0/8 }\n  http-request deny\n  default_backend b\nbackend b\n  server a 10.0.0.1:80\n");
        assert!(c.blockers.is_empty(), "{:?}", c.blockers);
        let c = read_text("frontend f\n  mode http\n  http-request deny\n");
        assert_eq!(c.blockers.len(), 1);
        assert_eq!(c.blockers[0].at.line, 3);
    }

    #[test]
    fn http_rules_apply_in_http_mode_only() {
        // HAProxy ignores them in tcp mode, its default (with a warning).
        let c = read_text("frontend f\n  bind :80\n  http-request deny\n");
        assert!(c.blockers.is_empty());
        let c = read_text("defaults\n  mode http\nfrontend f\n  tcp-request connection reject\n  http-request deny\n");
        assert_eq!(
            c.blockers.iter().map(|b| b.at.line).collect::<Vec<_>>(),
            [4, 5]
        );
    }

    #[test]
    fn a_line_outside_any_section_is_a_parse_error() {
        let e = read(vec![SourceFile {
            path: "x.cfg".into(),
            text: "server a 10.0.0.1:80\n".into(),
        }])
        .unwrap_err();
        assert_eq!(e.to_string(), "x.cfg:1: `server` is outside any section");
    }
}
