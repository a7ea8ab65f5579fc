//! Reads HAProxy configs as `haproxy -f` does: the files in order, sections,
//! `defaults` inheritance (the last one before a proxy, or the one named by
//! `from`), `server`, `server-template` and `default-server` lines,
//! `balance`, routing and the request rules that can turn traffic away.

use std::collections::HashMap;

use super::acl::Acls;
use super::haproxy_rules::{condition, rule};
use super::haproxy_section::{Defaults, Kind, Section};
use super::haproxy_servers::{server, template};
use super::keywords::HAPROXY;
use super::model::{Dialect, LbConfig, Location, Pool, Route, SourceFile};
use super::LintError;

/// A `.if` block: whether its lines are read now, whether a branch was
/// taken, and whether lint knows the condition.
#[derive(Debug, Clone, Copy)]
struct Frame {
    taking: bool,
    taken: bool,
    known: bool,
}

#[derive(Debug)]
struct Reader {
    out: LbConfig,
    named_defaults: HashMap<String, Defaults>,
    last_defaults: Defaults,
    section: Option<Section>,
    frames: Vec<Frame>,
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
        frames: Vec::new(),
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

/// Splits a line into words: quotes group, a backslash escapes (but not
/// inside single quotes, as in HAProxy), `#` starts a comment.
fn words(line: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), c) if c != '\'' => word.push(c),
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
        if keyword.starts_with('.') {
            return self.conditional(words);
        }
        if !self.frames.iter().all(|f| f.taking) {
            return Ok(());
        }
        if SECTIONS.contains(&keyword) {
            self.close();
            self.open(words, at)?;
            return Ok(());
        }
        let uncertain = self.frames.iter().any(|f| !f.known);
        let Some(section) = self.section.as_mut() else {
            return Err(format!("`{keyword}` is outside any section"));
        };
        if matches!(section.kind, Kind::Other) {
            return Ok(());
        }
        section.uncertain = uncertain;
        let known = directive(section, &mut self.out, words, &at)?;
        if !known
            && !HAPROXY.contains(&keyword)
            && !self.out.unknown.iter().any(|(_, k)| k == keyword)
        {
            self.out.unknown.push((at, keyword.to_string()));
        }
        Ok(())
    }

    /// `.if`, `.elif`, `.else`, `.endif` (and diagnostics like `.notice`).
    /// A condition lint cannot know (`defined(X)`, `feature(QUIC)`) takes
    /// its first branch only, so that the alternatives do not read as
    /// duplicate servers, and marks it uncertain.
    fn conditional(&mut self, words: &[String]) -> Result<(), String> {
        let outer = |frames: &[Frame]| frames.iter().all(|f| f.taking);
        let known = |expr: &[String]| match expr {
            [w] if w == "0" => Some(false),
            [w] if w == "1" => Some(true),
            _ => None,
        };
        match words[0].as_str() {
            ".if" => {
                let value = known(&words[1..]);
                let taking = outer(&self.frames) && value.unwrap_or(true);
                self.frames.push(Frame {
                    taking,
                    taken: taking,
                    known: value.is_some(),
                });
            }
            ".elif" | ".else" => {
                let Some(frame) = self.frames.pop() else {
                    return Err(format!("`{}` without `.if`", words[0]));
                };
                let value = if words[0] == ".else" {
                    Some(true)
                } else {
                    known(&words[1..])
                };
                let taking = outer(&self.frames) && !frame.taken && value.unwrap_or(true);
                let known = frame.known && value.is_some();
                self.frames.push(Frame {
                    taking,
                    taken: frame.taken || taking,
                    known,
                });
            }
            ".endif" => {
                self.frames.pop().ok_or("`.endif` without `.if`")?;
            }
            _ => {}
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
            routes: Vec::new(),
            servers: Vec::new(),
            disabled: false,
            uncertain: false,
        });
        Ok(())
    }

    /// Ends the current section: a `defaults` becomes what follows inherits,
    /// a backend or listen becomes a pool.
    fn close(&mut self) {
        let Some(mut section) = self.section.take() else {
            return;
        };
        if section.kind == Kind::Defaults {
            if !section.name.is_empty() {
                self.named_defaults
                    .insert(section.name.clone(), section.defaults.clone());
            }
            self.last_defaults = section.defaults;
            return;
        }
        if matches!(section.kind, Kind::Frontend | Kind::Listen) {
            if let Some((pool, at)) = &section.defaults.default_backend {
                let route = route(&section, pool, at, "default_backend");
                section.routes.extend(route);
            }
        }
        // A disabled proxy serves nothing; a backend with no server that
        // refuses (a bot trap, a maintenance page) is meant to.
        let serverless_backend = section.kind == Kind::Backend && section.servers.is_empty();
        let serves = !section.disabled && !serverless_backend;
        let http = section.defaults.http;
        if serves {
            let blockers = section
                .blockers
                .drain(..)
                .filter(|(_, is_http)| http || !is_http);
            self.out.blockers.extend(blockers.map(|(b, _)| b));
        }
        if !section.disabled {
            self.out.routes.append(&mut section.routes);
        }
        if matches!(section.kind, Kind::Backend | Kind::Listen) {
            self.out.pools.push(pool_of(section));
        }
    }
}

/// A reference to a pool, unless its name is only known at run time (a
/// `%[…]` sample expression, a `${…}` environment variable).
fn route(section: &Section, pool: &str, at: &Location, directive: &'static str) -> Option<Route> {
    (!pool.contains("%[") && !pool.contains("${")).then(|| Route {
        from: format!("`{}`", section.name),
        pool: pool.to_string(),
        written: pool.to_string(),
        at: at.clone(),
        directive,
    })
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
        "default-server" => section.defaults.server.read(&words[1..]),
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
            let route = route(section, pool, at, "use_backend");
            section.routes.extend(route);
        }
        "disabled" => section.disabled = true,
        "enabled" => section.disabled = false,
        "acl" => section.acls.define(&words[1..]),
        "mode" => section.defaults.http = words.get(1).is_some_and(|m| m == "http"),
        "http-request" | "tcp-request" | "http-response" => rule(section, out, words, at),
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> LbConfig {
        read(vec![SourceFile::new("haproxy.cfg".into(), text.into())]).unwrap()
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
        let e = read(vec![SourceFile::new(
            "x.cfg".into(),
            "server a 10.0.0.1:80\n".into(),
        )])
        .unwrap_err();
        assert_eq!(e.to_string(), "x.cfg:1: `server` is outside any section");
    }
}
