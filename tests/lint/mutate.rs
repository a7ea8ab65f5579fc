//! Mutations of a real config, each the kind of edit that causes an outage
//! (a copy-pasted address, a deny that matches everyone, a weight with an
//! extra digit…) or a benign one, with what `lint` must say of it. Edits are
//! made on the text, line by line, as a person makes them; where the
//! pools and their lines are is read from lint's own model of the original.

use std::collections::BTreeMap;

use lbwatch::lint::model::{LbConfig, Pool};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Haproxy,
    Nginx,
}

#[derive(Debug)]
pub enum Expect {
    /// No error.
    Clean,
    /// This check, on this pool (`None`: no pool to name), at this line of
    /// the file whose path ends with `file`.
    Finding {
        check: String,
        pool: Option<String>,
        file: String,
        line: u32,
    },
}

#[derive(Debug)]
pub struct Mutant {
    pub name: String,
    pub kind: &'static str,
    /// Changed files: original path, new text.
    pub files: Vec<(String, String)>,
    /// Whether the LB's own check accepts such a config.
    pub lb_accepts: bool,
    /// Linted `--against` the original.
    pub against: bool,
    pub expect: Expect,
}

/// The kinds each dialect's corpus must exercise.
pub fn kinds(d: Dialect) -> &'static [&'static str] {
    match d {
        Dialect::Haproxy => &[
            "one-address",
            "duplicate",
            "deny",
            "undefined-acl",
            "disabled",
            "missing-pool",
            "shrink",
            "weights",
            "balance",
            "benign-add",
            "benign-reorder",
            "benign-timeouts",
            "benign-double",
        ],
        Dialect::Nginx => &[
            "one-address",
            "duplicate",
            "deny",
            "disabled",
            "missing-pool",
            "shrink",
            "weights",
            "balance",
            "benign-add",
            "benign-reorder",
            "benign-timeouts",
            "benign-double",
        ],
    }
}

/// Line edits on the config's files.
#[derive(Default)]
struct Edits {
    /// file index → line → new lines in its place (empty: deleted).
    lines: BTreeMap<usize, BTreeMap<u32, Vec<String>>>,
}

impl Edits {
    fn replace(&mut self, file: usize, line: u32, text: String) {
        self.lines.entry(file).or_default().insert(line, vec![text]);
    }

    fn delete(&mut self, file: usize, line: u32) {
        self.lines.entry(file).or_default().insert(line, Vec::new());
    }

    /// Inserts after `line`, keeping what replaces the line itself.
    fn insert_after(&mut self, c: &LbConfig, file: usize, line: u32, text: String) {
        let entry = self.lines.entry(file).or_default();
        let current = entry
            .remove(&line)
            .unwrap_or_else(|| vec![c.files[file].line(line).to_string()]);
        let mut all = current;
        all.push(text);
        entry.insert(line, all);
    }

    fn apply(self, c: &LbConfig) -> Vec<(String, String)> {
        self.lines
            .into_iter()
            .map(|(file, edits)| {
                let f = &c.files[file];
                let mut out = String::new();
                for (i, line) in f.text.lines().enumerate() {
                    match edits.get(&(i as u32 + 1)) {
                        Some(new) => new.iter().for_each(|l| {
                            out.push_str(l);
                            out.push('\n');
                        }),
                        None => {
                            out.push_str(line);
                            out.push('\n');
                        }
                    }
                }
                (f.path.clone(), out)
            })
            .collect()
    }
}

struct Ctx<'a> {
    d: Dialect,
    c: &'a LbConfig,
    out: Vec<Mutant>,
}

impl Ctx<'_> {
    fn push(
        &mut self,
        kind: &'static str,
        name: String,
        edits: Edits,
        lb_accepts: bool,
        against: bool,
        expect: Expect,
    ) {
        self.out.push(Mutant {
            name: format!("{kind}: {name}"),
            kind,
            files: edits.apply(self.c),
            lb_accepts,
            against,
            expect,
        });
    }

    /// `check` on `pool` at `at`.
    fn at_pool(&self, check: &str, pool: &Pool, at: &lbwatch::lint::model::Location) -> Expect {
        self.finding(check, Some(&pool.name), at.file, at.line)
    }

    fn finding(&self, check: &str, pool: Option<&str>, file: usize, line: u32) -> Expect {
        let path = &self.c.files[file].path;
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        Expect::Finding {
            check: check.into(),
            pool: pool.map(String::from),
            file: name,
            line,
        }
    }
}

pub fn mutants(d: Dialect, c: &LbConfig) -> Vec<Mutant> {
    let mut ctx = Ctx {
        d,
        c,
        out: Vec::new(),
    };
    for pool in &c.pools {
        if !mutable(d, c, pool) {
            continue;
        }
        addresses(&mut ctx, pool);
        disabled(&mut ctx, pool);
        shrink(&mut ctx, pool);
        weights(&mut ctx, pool);
        balance(&mut ctx, pool);
        benign_pool(&mut ctx, pool);
    }
    missing_pools(&mut ctx);
    match d {
        Dialect::Haproxy => haproxy_denies(&mut ctx),
        Dialect::Nginx => nginx_denies(&mut ctx),
    }
    benign_timeouts(&mut ctx);
    benign_double(&mut ctx);
    ctx.out
}

/// A pool whose server lines can be edited one by one: each on a line of
/// its own, no template slots.
fn mutable(d: Dialect, c: &LbConfig, pool: &Pool) -> bool {
    !pool.servers.is_empty()
        && pool.servers.iter().all(|s| {
            let line = c.files[s.at.file].line(s.at.line).trim();
            s.address.is_some()
                && match d {
                    Dialect::Haproxy => line.starts_with("server "),
                    Dialect::Nginx => line.starts_with("server ") && line.matches(';').count() == 1,
                }
        })
}

fn words(line: &str) -> (String, Vec<String>) {
    let indent = line.len() - line.trim_start().len();
    let text = line.trim().trim_end_matches(';');
    (
        line[..indent].to_string(),
        text.split_whitespace().map(String::from).collect(),
    )
}

fn join(d: Dialect, indent: &str, words: &[String]) -> String {
    let end = if d == Dialect::Nginx { ";" } else { "" };
    format!("{indent}{}{end}", words.join(" "))
}

/// The index of the address word on a server line.
fn address_index(d: Dialect) -> usize {
    if d == Dialect::Haproxy {
        2
    } else {
        1
    }
}

fn server_line(ctx: &Ctx, at: &lbwatch::lint::model::Location) -> (String, Vec<String>) {
    let (indent, mut w) = words(ctx.c.files[at.file].line(at.line));
    // Drop a trailing comment: edits append words.
    if let Some(i) = w.iter().position(|x| x.starts_with('#')) {
        w.truncate(i);
    }
    (indent, w)
}

fn set_address(ctx: &Ctx, at: &lbwatch::lint::model::Location, address: &str) -> String {
    let (indent, mut w) = server_line(ctx, at);
    w[address_index(ctx.d)] = address.to_string();
    join(ctx.d, &indent, &w)
}

fn set_weight(ctx: &Ctx, at: &lbwatch::lint::model::Location, weight: u32) -> String {
    let (indent, mut w) = server_line(ctx, at);
    match ctx.d {
        Dialect::Haproxy => match w.iter().position(|x| x == "weight") {
            Some(i) if i + 1 < w.len() => w[i + 1] = weight.to_string(),
            _ => w.insert(3, format!("weight {weight}")),
        },
        Dialect::Nginx => match w.iter().position(|x| x.starts_with("weight=")) {
            Some(i) => w[i] = format!("weight={weight}"),
            None => w.insert(2, format!("weight={weight}")),
        },
    }
    join(ctx.d, &indent, &w)
}

/// Appends a keyword (last, so that it wins over an `enabled` on the line).
fn add_word(ctx: &Ctx, at: &lbwatch::lint::model::Location, word: &str) -> String {
    let (indent, mut w) = server_line(ctx, at);
    w.push(word.to_string());
    join(ctx.d, &indent, &w)
}

/// The address as written on the line (lint's model has it normalised).
fn written_address(ctx: &Ctx, at: &lbwatch::lint::model::Location) -> String {
    server_line(ctx, at).1[address_index(ctx.d)].clone()
}

fn addresses(ctx: &mut Ctx, pool: &Pool) {
    let enabled: Vec<_> = pool.servers.iter().filter(|s| !s.disabled).collect();
    if enabled.len() < 2 {
        return;
    }
    let first = written_address(ctx, &enabled[0].at);
    let mut e = Edits::default();
    for s in &enabled[1..] {
        e.replace(s.at.file, s.at.line, set_address(ctx, &s.at, &first));
    }
    let expect = ctx.finding(
        "pool-one-address",
        Some(&pool.name),
        enabled[1].at.file,
        enabled[1].at.line,
    );
    ctx.push("one-address", pool.name.clone(), e, true, false, expect);
    if enabled.len() >= 3 {
        let last = enabled[enabled.len() - 1];
        let mut e = Edits::default();
        e.replace(
            last.at.file,
            last.at.line,
            set_address(ctx, &last.at, &first),
        );
        let expect = ctx.at_pool("duplicate-address", pool, &last.at);
        ctx.push("duplicate", pool.name.clone(), e, true, false, expect);
    }
}

fn disabled(ctx: &mut Ctx, pool: &Pool) {
    if pool.servers.iter().all(|s| s.disabled) {
        return;
    }
    let word = if ctx.d == Dialect::Haproxy {
        "disabled"
    } else {
        "down"
    };
    let mut e = Edits::default();
    for s in pool.servers.iter().filter(|s| !s.disabled) {
        e.replace(s.at.file, s.at.line, add_word(ctx, &s.at, word));
    }
    let expect = ctx.at_pool("all-servers-disabled", pool, &pool.at);
    ctx.push("disabled", pool.name.clone(), e, true, false, expect);
}

fn shrink(ctx: &mut Ctx, pool: &Pool) {
    let Some(keep) = pool.active().next() else {
        return;
    };
    if pool.active().count() < 2 {
        return;
    }
    let mut e = Edits::default();
    for s in pool.servers.iter().filter(|s| s.at != keep.at) {
        e.delete(s.at.file, s.at.line);
    }
    let expect = ctx.at_pool("pool-shrunk", pool, &pool.at);
    ctx.push("shrink", pool.name.clone(), e, true, true, expect);
}

/// The rule for a damaging weight change, written out here on its
/// own: one server's share ≥ 5× what it was, or the effective number of
/// servers ≤ 60% of what it was.
fn skews(before: &[f64], after: &[f64]) -> bool {
    let shares = |w: &[f64]| {
        let t: f64 = w.iter().sum();
        w.iter().map(|x| x / t).collect::<Vec<_>>()
    };
    let eff = |s: &[f64]| 1.0 / s.iter().map(|x| x * x).sum::<f64>();
    let (b, a) = (shares(before), shares(after));
    b.iter().zip(&a).any(|(x, y)| *y >= 5.0 * x) || eff(&a) <= 0.6 * eff(&b)
}

/// An extra digit on the lightest server's weight.
fn weights(ctx: &mut Ctx, pool: &Pool) {
    let active: Vec<_> = pool.active().collect();
    if active.len() < 2 {
        return;
    }
    let Some((i, light)) = active
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.weight.total_cmp(&b.1.weight))
    else {
        return;
    };
    let heavy = (light.weight * 10.0) as u32;
    if ctx.d == Dialect::Haproxy && heavy > 256 {
        return;
    }
    let before: Vec<f64> = active.iter().map(|s| s.weight).collect();
    let mut after = before.clone();
    after[i] = f64::from(heavy);
    if !skews(&before, &after) {
        return;
    }
    let mut e = Edits::default();
    e.replace(
        light.at.file,
        light.at.line,
        set_weight(ctx, &light.at, heavy),
    );
    let expect = ctx.at_pool("weights-skewed", pool, &light.at);
    ctx.push("weights", pool.name.clone(), e, true, true, expect);
}

fn balance(ctx: &mut Ctx, pool: &Pool) {
    let header = ctx.c.files[pool.at.file]
        .line(pool.at.line)
        .trim_end()
        .to_string();
    let mut e = Edits::default();
    let line = match ctx.d {
        Dialect::Haproxy => {
            if !matches!(
                pool.balance.as_str(),
                "roundrobin" | "leastconn" | "static-rr"
            ) {
                return;
            }
            match &pool.balance_at {
                Some(at) if at.file == pool.at.file && at.line > pool.at.line => {
                    let text = ctx.c.files[at.file].line(at.line);
                    let indent = &text[..text.len() - text.trim_start().len()];
                    e.replace(at.file, at.line, format!("{indent}balance source"));
                    at.line
                }
                _ => {
                    e.insert_after(ctx.c, pool.at.file, pool.at.line, "  balance source".into());
                    pool.at.line + 1
                }
            }
        }
        Dialect::Nginx => {
            if pool.balance != "roundrobin"
                || pool.servers.iter().any(|s| s.backup)
                || !header.ends_with('{')
            {
                return;
            }
            e.insert_after(ctx.c, pool.at.file, pool.at.line, "    ip_hash;".into());
            pool.at.line + 1
        }
    };
    let expect = ctx.finding("balance-changed", Some(&pool.name), pool.at.file, line);
    ctx.push("balance", pool.name.clone(), e, true, true, expect);
}

/// A server added at the pool's usual weight, and the server lines in
/// reverse order.
fn benign_pool(ctx: &mut Ctx, pool: &Pool) {
    let last = pool.servers.iter().max_by_key(|s| s.at.line).unwrap();
    let mut weights: Vec<f64> = pool.active().map(|s| s.weight).collect();
    weights.sort_by(f64::total_cmp);
    let usual = weights.get(weights.len() / 2).copied().unwrap_or(1.0) as u32;
    let (indent, _) = server_line(ctx, &last.at);
    let port = 20000 + ctx.out.len();
    let line = match ctx.d {
        Dialect::Haproxy => {
            format!("{indent}server lbwatch-added 127.0.0.254:{port} weight {usual}")
        }
        Dialect::Nginx => format!("{indent}server 127.0.0.254:{port} weight={usual};"),
    };
    let mut e = Edits::default();
    e.insert_after(ctx.c, last.at.file, last.at.line, line);
    ctx.push(
        "benign-add",
        pool.name.clone(),
        e,
        true,
        true,
        Expect::Clean,
    );

    let lines: Vec<_> = pool.servers.iter().map(|s| s.at.clone()).collect();
    if lines.len() >= 2 && lines.iter().all(|l| l.file == lines[0].file) {
        let mut e = Edits::default();
        for (to, from) in lines.iter().zip(lines.iter().rev()) {
            e.replace(
                to.file,
                to.line,
                ctx.c.files[from.file].line(from.line).to_string(),
            );
        }
        ctx.push(
            "benign-reorder",
            pool.name.clone(),
            e,
            true,
            true,
            Expect::Clean,
        );
    }
}

/// A route to a pool whose name lost its spelling: a doubled last letter.
fn missing_pools(ctx: &mut Ctx) {
    let mut seen = std::collections::HashSet::new();
    for r in ctx
        .c
        .routes
        .iter()
        .filter(|r| ctx.c.pool(&r.pool).is_some())
    {
        if !seen.insert((r.at.file, r.at.line)) {
            continue;
        }
        let text = ctx.c.files[r.at.file].line(r.at.line);
        let typo = format!("{}{}", r.pool, r.pool.chars().last().unwrap());
        // Replace the name where it stands as a word (`http://NAME/`).
        let Some(pos) = find_word(text, &r.pool) else {
            continue;
        };
        let new = format!("{}{typo}{}", &text[..pos], &text[pos + r.pool.len()..]);
        let mut e = Edits::default();
        e.replace(r.at.file, r.at.line, new);
        let expect = ctx.finding("missing-pool", Some(&typo), r.at.file, r.at.line);
        ctx.push(
            "missing-pool",
            format!("{} in {}", r.pool, r.from),
            e,
            false,
            false,
            expect,
        );
    }
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let boundary = |c: Option<char>| {
        c.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
    };
    text.match_indices(word).map(|(i, _)| i).find(|&i| {
        boundary(text[..i].chars().last()) && boundary(text[i + word.len()..].chars().next())
    })
}

/// Deny rules that match everyone, placed first in every frontend and
/// listen section (rules in tcp mode only where they apply there).
fn haproxy_denies(ctx: &mut Ctx) {
    for (file, f) in ctx.c.files.iter().enumerate() {
        let mut defaults_http = false;
        let lines: Vec<&str> = f.text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let first = line.split_whitespace().next().unwrap_or("");
            let body = section_body(&lines, i);
            if first == "defaults" {
                defaults_http = mode_of(&body).unwrap_or(false);
            }
            let name = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let http = mode_of(&body).unwrap_or(defaults_http);
            let has = |prefix: &str| body.iter().any(|l| l.trim_start().starts_with(prefix));
            if has("disabled") {
                continue;
            }
            let header = i as u32 + 1;
            match first {
                "frontend" | "listen" => {
                    deny_variants(ctx, file, header, &name, http);
                    if http && !has("http-request allow") && !has(".if") {
                        deny_last(ctx, file, header, &name, &body);
                    }
                }
                // A backend with servers that denies: its servers are
                // unreachable.
                "backend" if http && has("server") && !has("http-request allow") => {
                    let mut e = Edits::default();
                    e.insert_after(ctx.c, file, header, "  http-request deny".into());
                    let expect = ctx.finding("denies-everything", Some(&name), file, header + 1);
                    ctx.push("deny", format!("backend {name}"), e, true, false, expect);
                }
                _ => {}
            }
        }
    }
}

/// A deny after the section's own rules (a redirect, a header set…): still
/// every request, as none of them lets a request on to a server.
fn deny_last(ctx: &mut Ctx, file: usize, header: u32, section: &str, body: &[&str]) {
    let after = body
        .iter()
        .rposition(|l| l.trim_start().starts_with("http-request"))
        .map_or(header, |i| header + 1 + i as u32);
    let mut e = Edits::default();
    e.insert_after(ctx.c, file, after, "  http-request deny".into());
    let expect = ctx.finding("denies-everything", Some(section), file, after + 1);
    ctx.push(
        "deny",
        format!("{section}: after its rules"),
        e,
        true,
        false,
        expect,
    );
}

/// The lines of the section starting at `start`.
fn section_body<'a>(lines: &[&'a str], start: usize) -> Vec<&'a str> {
    lines[start + 1..]
        .iter()
        .take_while(|l| !l.starts_with(|c: char| c.is_ascii_alphabetic()))
        .copied()
        .collect()
}

fn mode_of(body: &[&str]) -> Option<bool> {
    body.iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&"mode"))
        .map(|w| w.get(1) == Some(&"http"))
}

fn deny_variants(ctx: &mut Ctx, file: usize, header: u32, section: &str, http: bool) {
    let mut variants: Vec<(&str, Vec<&str>, bool)> =
        vec![("tcp reject", vec!["tcp-request connection reject"], true)];
    if http {
        variants.extend([
            ("no condition", vec!["http-request deny"], true),
            ("if TRUE", vec!["http-request deny if TRUE"], true),
            ("if !FALSE", vec!["http-request deny if !FALSE"], true),
            (
                "src 0.0.0.0/0",
                vec![
                    "acl lbwatch_all src 0.0.0.0/0",
                    "http-request deny if lbwatch_all",
                ],
                true,
            ),
            (
                "path_beg /",
                vec!["http-request deny if { path_beg / }"],
                true,
            ),
            (
                "negated never",
                vec![
                    "acl lbwatch_none src --",
                    "http-request deny if !lbwatch_none",
                ],
                true,
            ),
            ("return 503", vec!["http-request return status 503"], true),
        ]);
    }
    for (name, lines, accepted) in variants {
        let mut e = Edits::default();
        let mut at = header;
        for l in &lines {
            e.insert_after(ctx.c, file, header, format!("  {l}"));
            at += 1;
        }
        let expect = ctx.finding("denies-everything", Some(section), file, at);
        ctx.push(
            "deny",
            format!("{section}: {name}"),
            e,
            accepted,
            false,
            expect,
        );
    }
    if http {
        let mut e = Edits::default();
        e.insert_after(
            ctx.c,
            file,
            header,
            "  http-request deny if !lbwatch_typo".into(),
        );
        let expect = ctx.finding("undefined-acl", Some(section), file, header + 1);
        ctx.push(
            "undefined-acl",
            section.to_string(),
            e,
            false,
            false,
            expect,
        );
    }
}

/// `deny all;` and `return 503;` first in every `location /` that passes
/// requests on.
fn nginx_denies(ctx: &mut Ctx) {
    for (file, f) in ctx.c.files.iter().enumerate() {
        let lines: Vec<&str> = f.text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w == ["server", "{"] {
                server_deny(ctx, file, &lines, i);
                continue;
            }
            if w != ["location", "/", "{"] {
                continue;
            }
            let end = block_end(&lines, i);
            let body = &lines[i + 1..end];
            if !body.iter().any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|d| d.ends_with("_pass"))
            }) {
                continue;
            }
            let pool = ctx
                .c
                .routes
                .iter()
                .find(|r| {
                    r.at.file == file
                        && r.at.line as usize > i + 1
                        && (r.at.line as usize) <= end + 1
                })
                .map(|r| r.pool.clone());
            for rule in ["deny all;", "return 503;"] {
                let mut e = Edits::default();
                e.insert_after(ctx.c, file, i as u32 + 1, format!("        {rule}"));
                let expect = ctx.finding("denies-everything", pool.as_deref(), file, i as u32 + 2);
                ctx.push(
                    "deny",
                    format!("location / at line {}: {rule}", i + 1),
                    e,
                    true,
                    false,
                    expect,
                );
            }
        }
    }
}

/// `deny all;` first in a server block whose locations have no access
/// rules of their own and pass to one pool: every location inherits it.
fn server_deny(ctx: &mut Ctx, file: usize, lines: &[&str], start: usize) {
    let end = block_end(lines, start);
    let body = &lines[start + 1..end];
    let first_word = |l: &&str| l.split_whitespace().next().unwrap_or("").to_string();
    if body
        .iter()
        .map(first_word)
        .any(|d| matches!(d.as_str(), "allow" | "deny" | "satisfy" | "return"))
    {
        return;
    }
    let pools: std::collections::BTreeSet<&str> = ctx
        .c
        .routes
        .iter()
        .filter(|r| r.at.file == file && (start + 1..=end).contains(&(r.at.line as usize)))
        .map(|r| r.pool.as_str())
        .collect();
    let [pool] = pools.into_iter().collect::<Vec<_>>()[..] else {
        return;
    };
    let mut e = Edits::default();
    e.insert_after(ctx.c, file, start as u32 + 1, "        deny all;".into());
    let expect = ctx.finding("denies-everything", Some(pool), file, start as u32 + 2);
    ctx.push(
        "deny",
        format!("server at line {}: deny all;", start + 1),
        e,
        true,
        false,
        expect,
    );
}

/// The index of the line closing the block opened on line `start`.
fn block_end(lines: &[&str], start: usize) -> usize {
    let mut depth = 0i32;
    for (i, l) in lines.iter().enumerate().skip(start) {
        let code = l.split('#').next().unwrap_or("");
        depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
        if depth <= 0 && i > start {
            return i;
        }
    }
    lines.len() - 1
}

fn benign_timeouts(ctx: &mut Ctx) {
    let mut e = Edits::default();
    let mut any = false;
    for (file, f) in ctx.c.files.iter().enumerate() {
        for (i, line) in f.text.lines().enumerate() {
            let (indent, w) = words(line);
            let timeout = match ctx.d {
                Dialect::Haproxy => w.len() == 3 && w[0] == "timeout",
                Dialect::Nginx => {
                    w.len() == 2 && w[0].ends_with("_timeout") && line.trim_end().ends_with(';')
                }
            };
            if timeout {
                let mut w = w.clone();
                *w.last_mut().unwrap() = "77s".into();
                e.replace(file, i as u32 + 1, join(ctx.d, &indent, &w));
                any = true;
            }
        }
    }
    if any {
        ctx.push(
            "benign-timeouts",
            "every timeout at 77s".into(),
            e,
            true,
            true,
            Expect::Clean,
        );
    }
}

/// Every weight doubled: the same proportions.
fn benign_double(ctx: &mut Ctx) {
    let mut e = Edits::default();
    let cap = if ctx.d == Dialect::Haproxy {
        256.0
    } else {
        f64::MAX
    };
    let pools: Vec<&Pool> = ctx
        .c
        .pools
        .iter()
        .filter(|p| mutable(ctx.d, ctx.c, p))
        .collect();
    if pools.is_empty()
        || pools
            .iter()
            .flat_map(|p| &p.servers)
            .any(|s| s.weight * 2.0 > cap)
    {
        return;
    }
    for s in pools.iter().flat_map(|p| &p.servers) {
        e.replace(
            s.at.file,
            s.at.line,
            set_weight(ctx, &s.at, (s.weight * 2.0) as u32),
        );
    }
    ctx.push(
        "benign-double",
        "every weight doubled".into(),
        e,
        true,
        true,
        Expect::Clean,
    );
}
