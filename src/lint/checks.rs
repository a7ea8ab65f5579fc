//! The checks of one config: pools that cannot spread traffic, routes to
//! nowhere, rules that turn everyone away.

use std::collections::HashMap;

use super::model::{Dialect, LbConfig, Pool};
use super::{Check, Finding, Found};

pub fn run(config: &LbConfig) -> Vec<Finding> {
    let mut found = Found::new(config);
    for pool in &config.pools {
        addresses(pool, &mut found);
        capacity(config, pool, &mut found);
    }
    routes(config, &mut found);
    blockers(config, &mut found);
    for (at, directive) in &config.unknown {
        found.push(
            Check::UnknownDirective,
            at,
            (None, None),
            format!("`{directive}` is not a directive lbwatch reads; what it does to routing is not checked"),
            format!("check that `{directive}` is spelt as {} documents it", dialect_name(config.dialect)),
        );
    }
    found.findings
}

fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::Haproxy => "HAProxy",
        Dialect::Nginx => "NGINX",
    }
}

/// Servers sharing an address: one machine takes the share of several.
fn addresses(pool: &Pool, found: &mut Found) {
    // A disabled server takes no traffic; orchestrators park empty slots as
    // disabled servers at one placeholder address.
    let mut by_address: HashMap<&str, Vec<usize>> = HashMap::new();
    let enabled = pool.servers.iter().filter(|s| !s.disabled).count();
    for (i, s) in pool.servers.iter().enumerate().filter(|(_, s)| !s.disabled) {
        if let Some(a) = &s.address {
            by_address.entry(a).or_default().push(i);
        }
    }
    let mut groups: Vec<_> = by_address
        .into_iter()
        .filter(|(_, v)| v.len() > 1)
        .collect();
    groups.sort_by_key(|(_, v)| v[0]);
    for (address, members) in groups {
        let first = &pool.servers[members[0]];
        let second = &pool.servers[members[1]];
        let names: Vec<&str> = members
            .iter()
            .map(|&i| pool.servers[i].name.as_str())
            .collect();
        if members.len() == enabled {
            found.push(
                Check::PoolOneAddress,
                &second.at,
                (Some(&pool.name), Some(&second.name)),
                format!(
                    "all {} servers of pool `{}` are at {address} ({}): every request lands on one machine, while the stats show {} servers sharing the traffic",
                    members.len(),
                    pool.name,
                    names.join(", "),
                    members.len()
                ),
                "give each server line its own address (a copy-paste left them equal)".to_string(),
            );
        } else {
            found.push(
                Check::DuplicateAddress,
                &second.at,
                (Some(&pool.name), Some(&second.name)),
                format!(
                    "server `{}` of pool `{}` is at {address}, like `{}` (line {}): that machine takes {} shares of the pool's traffic",
                    second.name,
                    pool.name,
                    first.name,
                    first.at.line,
                    members.len()
                ),
                format!("point `{}` at its own machine, or remove the duplicate line", second.name),
            );
        }
    }
}

/// Pools with no server to take traffic, only backups, or one server.
fn capacity(config: &LbConfig, pool: &Pool, found: &mut Found) {
    let n = pool.servers.len();
    if n == 0 {
        return;
    }
    let active = pool.active().count();
    let routed = pool.self_routed || config.routes.iter().any(|r| r.pool == pool.name);
    if !pool.servers.iter().any(|s| s.can_serve()) {
        let how = if config.dialect == Dialect::Nginx {
            "`down`"
        } else {
            "`disabled` or of weight 0"
        };
        found.push(
            Check::AllDisabled,
            &pool.at,
            (Some(&pool.name), None),
            format!(
                "every server of pool `{}` ({n}) is {how}: no request it receives can be served",
                pool.name
            ),
            "enable at least one server (remove `disabled`/`down`, or give it a weight)"
                .to_string(),
        );
    } else if active == 0 && pool.servers.iter().all(|s| s.backup) {
        found.push(
            Check::AllBackup,
            &pool.at,
            (Some(&pool.name), None),
            format!("every server of pool `{}` ({n}) is a backup: traffic goes to the first backup only", pool.name),
            "remove `backup` from the servers meant to share the traffic".to_string(),
        );
    } else if n == 1 && routed {
        let s = &pool.servers[0];
        found.push(
            Check::SingleServer,
            &s.at,
            (Some(&pool.name), Some(&s.name)),
            format!("pool `{}` has one server, `{}`: it is a single point of failure for the traffic routed to it", pool.name, s.name),
            "add a second server, or accept the risk for this pool".to_string(),
        );
    }
}

/// Routes to pools the config does not define.
fn routes(config: &LbConfig, found: &mut Found) {
    for r in &config.routes {
        if config.pool(&r.pool).is_some() {
            continue;
        }
        let (what, fix) = match config.dialect {
            Dialect::Haproxy => ("backend", "define the backend, or fix the name's spelling"),
            Dialect::Nginx => ("upstream", "define the upstream, or use a host name with a dot or a port if it is outside this config"),
        };
        let known = nearest(&r.pool, config.pools.iter().map(|p| p.name.as_str()));
        found.push(
            Check::MissingPool,
            &r.at,
            (Some(&r.pool), None),
            format!(
                "`{} {}` in {} names no {what} of this config{}",
                r.directive,
                r.written,
                r.from,
                known
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default()
            ),
            fix.to_string(),
        );
    }
}

/// The closest defined name, when the difference looks like a typo.
fn nearest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names
        .map(|n| (distance(name, n), n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 4))
        .min()
        .map(|(_, n)| n)
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn blockers(config: &LbConfig, found: &mut Found) {
    for b in &config.blockers {
        found.push(
            Check::DeniesEverything,
            &b.at,
            (b.pool.as_deref(), None),
            format!("`{}` turns away every request: {}", b.rule, b.why),
            "give the rule a condition that matches only the requests to refuse, or remove it"
                .to_string(),
        );
    }
    for u in &config.undefined_acls {
        found.push(
            Check::UndefinedAcl,
            &u.at,
            (Some(&u.section), None),
            format!(
                "the condition uses ACL `{}`, which `{}` does not define",
                u.name, u.section
            ),
            "define the ACL in this section with `acl`, or fix the name's spelling".to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::haproxy;
    use crate::lint::model::SourceFile;

    fn lint(text: &str) -> Vec<Finding> {
        let c = haproxy::read(vec![SourceFile::new("h.cfg".into(), text.into())]).unwrap();
        run(&c)
    }

    fn ids(f: &[Finding]) -> Vec<(&str, u32)> {
        f.iter().map(|f| (f.check.id(), f.line)).collect()
    }

    #[test]
    fn one_address_for_all_and_a_duplicate_for_some() {
        let all = lint(
            "backend web\n  server a 10.0.0.1:80\n  server b 10.0.0.1:80\n  server c 10.0.0.1:80\n",
        );
        assert_eq!(ids(&all), [("pool-one-address", 3)]);
        assert!(
            all[0]
                .message
                .contains("all 3 servers of pool `web` are at 10.0.0.1:80"),
            "{}",
            all[0].message
        );
        let some = lint("backend web\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n  server c ipv4@10.0.0.1:80\n");
        assert_eq!(ids(&some), [("duplicate-address", 4)]);
        assert_eq!(some[0].server.as_deref(), Some("c"));
    }

    #[test]
    fn missing_backends_name_the_nearest() {
        let f = lint("frontend f\n  bind :80\n  use_backend api if { path_beg /api }\n  default_backend webb\nbackend web\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n");
        let ids = ids(&f);
        assert!(ids.contains(&("missing-pool", 4)), "{ids:?}");
        let m = f.iter().find(|f| f.line == 4).unwrap();
        assert!(m.message.contains("did you mean `web`"), "{}", m.message);
    }

    #[test]
    fn disabled_backup_and_single_server_pools() {
        let f = lint("backend a\n  server x 10.0.0.1:80 disabled\n  server y 10.0.0.2:80 weight 0\nbackend b\n  server x 10.0.0.1:80 backup\n  server y 10.0.0.2:80 backup\nlisten c\n  bind :80\n  server x 10.0.0.1:80\n");
        assert_eq!(
            ids(&f),
            [
                ("all-servers-disabled", 1),
                ("all-servers-backup", 4),
                ("single-server-pool", 9)
            ]
        );
    }
}
