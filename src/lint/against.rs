//! `lint --against`: the change from the deployed config, pool by pool.
//! Servers are matched by name (NGINX's by address), so reordering lines is
//! no change, and weights by their proportions, so doubling them all is
//! none either.

use std::collections::HashMap;

use super::model::{LbConfig, Pool};
use super::{Check, Finding, Found};

/// A server whose expected share grows this many times over takes what was
/// several servers' traffic: the typo'd weight (100 where 1 was meant).
const SHARE_GROWTH: f64 = 5.0;
/// New weights that leave the pool with this fraction (or less) of its
/// effective servers concentrate its traffic: 100:1:1 after 1:1:1 leaves
/// 1.04 of 3.
const EFFECTIVE_FLOOR: f64 = 0.6;

/// Hash-like algorithms pile a client's (or a URL's) traffic on one server;
/// after an even spread, that is a change in behaviour worth a look.
const PILING: &[&str] = &[
    "source",
    "uri",
    "url_param",
    "hdr",
    "rdp-cookie",
    "first",
    "random",
    "hash",
    "ip_hash",
];
const SPREADING: &[&str] = &[
    "roundrobin",
    "leastconn",
    "static-rr",
    "least_conn",
    "least_time",
];

pub fn run(old: &LbConfig, new: &LbConfig) -> Vec<Finding> {
    let mut found = Found::new(new);
    for pool in &new.pools {
        let Some(before) = old.pool(&pool.name) else {
            found.push(
                Check::PoolChanged,
                &pool.at,
                (Some(&pool.name), None),
                format!(
                    "pool `{}` is new, with {} server(s)",
                    pool.name,
                    pool.servers.len()
                ),
                String::new(),
            );
            continue;
        };
        if !shrunk(before, pool, &mut found) {
            weights(before, pool, &mut found);
        }
        balance(before, pool, &mut found);
        summary(before, pool, &mut found);
    }
    let mut findings = found.findings;
    let mut gone = Found::new(old);
    for pool in old.pools.iter().filter(|p| new.pool(&p.name).is_none()) {
        gone.push(
            Check::PoolChanged,
            &pool.at,
            (Some(&pool.name), None),
            format!(
                "pool `{}` was removed (it had {} server(s))",
                pool.name,
                pool.servers.len()
            ),
            String::new(),
        );
    }
    findings.extend(gone.findings);
    findings
}

fn names(pool: &Pool) -> Vec<&str> {
    pool.active().map(|s| s.name.as_str()).collect()
}

/// A pool that lost at least half of its serving servers, or all but one.
fn shrunk(before: &Pool, pool: &Pool, found: &mut Found) -> bool {
    let (was, now) = (before.active().count(), pool.active().count());
    if was < 2 || !(now * 2 <= was || now == 1) {
        return false;
    }
    let kept = names(pool);
    let lost: Vec<&str> = names(before)
        .into_iter()
        .filter(|n| !kept.contains(n))
        .collect();
    let share = match pool.shares().as_slice() {
        [(name, _)] => {
            format!(": `{name}` will take all of its traffic, {was} times its share before")
        }
        _ => String::new(),
    };
    found.push(
        Check::PoolShrunk,
        &pool.at,
        (Some(&pool.name), kept.first().copied().filter(|_| now == 1)),
        format!(
            "pool `{}` goes from {was} serving servers to {now} ({} no longer serving){share}",
            pool.name,
            lost.join(", ")
        ),
        "restore the servers, or declare the shrink in the change's review if it is meant"
            .to_string(),
    );
    true
}

/// Whether weights changed other than all by one factor (servers added at
/// the pool's usual weight are no change of weights).
fn weights_changed(before: &Pool, pool: &Pool) -> bool {
    let old: HashMap<&str, f64> = before
        .active()
        .map(|s| (s.name.as_str(), s.weight))
        .collect();
    let ratios: Vec<f64> = pool
        .active()
        .filter_map(|s| old.get(s.name.as_str()).map(|w| s.weight / w))
        .collect();
    let Some(&scale) = ratios.first() else {
        return false;
    };
    let mut usual: Vec<f64> = old.values().copied().collect();
    usual.sort_by(f64::total_cmp);
    let typical = usual.get(usual.len() / 2).copied().unwrap_or(1.0) * scale;
    let differs = |a: f64, b: f64| (a - b).abs() > 1e-9 * a.abs().max(b.abs());
    ratios.iter().any(|r| differs(*r, scale))
        || pool
            .active()
            .filter(|s| !old.contains_key(s.name.as_str()))
            .any(|s| differs(s.weight, typical))
}

fn weights(before: &Pool, pool: &Pool, found: &mut Found) {
    if !weights_changed(before, pool) {
        return;
    }
    let old: HashMap<&str, f64> = before.shares().into_iter().collect();
    // The server whose share grew most is where the typo usually is; an
    // added server is compared with the pool's average share before.
    let average = 1.0 / old.len().max(1) as f64;
    let Some((name, o, share)) = pool
        .shares()
        .into_iter()
        .map(|(n, share)| (n, old.get(n).copied().unwrap_or(average), share))
        .max_by(|a, b| (a.2 / a.1).total_cmp(&(b.2 / b.1)))
    else {
        return;
    };
    let (eff_old, eff_new) = (before.effective_servers(), pool.effective_servers());
    let grew = share >= SHARE_GROWTH * o;
    if !grew && eff_new > EFFECTIVE_FLOOR * eff_old {
        return;
    }
    let server = pool
        .servers
        .iter()
        .find(|s| s.name == name)
        .unwrap_or(&pool.servers[0]);
    found.push(
        Check::WeightsSkewed,
        &server.at,
        (Some(&pool.name), Some(name)),
        format!(
            "with the new weights, server `{name}` of pool `{}` goes from {:.1}% to {:.1}% of its traffic ({:.1}×), and the pool's weights amount to {eff_new:.2} servers sharing it where they amounted to {eff_old:.2}",
            pool.name,
            o * 100.0,
            share * 100.0,
            share / o
        ),
        "check the weights for a typo (an extra digit); weights should follow the servers' capacity".to_string(),
    );
}

fn algorithm(balance: &str) -> &str {
    balance.split(['(', ' ']).next().unwrap_or(balance)
}

fn balance(before: &Pool, pool: &Pool, found: &mut Found) {
    let (was, now) = (algorithm(&before.balance), algorithm(&pool.balance));
    if was == now || !SPREADING.contains(&was) || !PILING.contains(&now) {
        return;
    }
    found.push(
        Check::BalanceChanged,
        pool.balance_at.as_ref().unwrap_or(&pool.at),
        (Some(&pool.name), None),
        format!(
            "pool `{}` now balances by `{}` where it used `{was}`: a few clients (or URLs) can pile their traffic on one server",
            pool.name, pool.balance
        ),
        format!("keep `{was}` unless the change is meant (session affinity, caches)"),
    );
}

/// What changed in a pool, for the reviewer: servers, weights, algorithm.
fn summary(before: &Pool, pool: &Pool, found: &mut Found) {
    let old: HashMap<&str, &super::model::Server> = before
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let new: HashMap<&str, &super::model::Server> =
        pool.servers.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut parts = Vec::new();
    for s in &pool.servers {
        match old.get(s.name.as_str()) {
            None => parts.push(format!("added `{}` (weight {})", s.name, s.weight)),
            Some(o) if o.weight != s.weight => {
                parts.push(format!("`{}` weight {} → {}", s.name, o.weight, s.weight))
            }
            Some(o) if o.disabled != s.disabled || o.backup != s.backup => {
                parts.push(format!("`{}` is now {}", s.name, state(s)))
            }
            Some(_) => {}
        }
    }
    for s in before
        .servers
        .iter()
        .filter(|s| !new.contains_key(s.name.as_str()))
    {
        parts.push(format!("removed `{}`", s.name));
    }
    if before.balance != pool.balance {
        parts.push(format!("balance `{}` → `{}`", before.balance, pool.balance));
    }
    if parts.is_empty() {
        return;
    }
    found.push(
        Check::PoolChanged,
        &pool.at,
        (Some(&pool.name), None),
        format!("pool `{}`: {}", pool.name, parts.join("; ")),
        String::new(),
    );
}

fn state(s: &super::model::Server) -> &'static str {
    match (s.disabled, s.backup) {
        (true, _) => "disabled",
        (false, true) => "a backup",
        (false, false) => "serving",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::haproxy;
    use crate::lint::model::SourceFile;

    fn cfg(text: &str) -> LbConfig {
        haproxy::read(vec![SourceFile::new("h.cfg".into(), text.into())]).unwrap()
    }

    fn errors(old: &str, new: &str) -> Vec<(&'static str, u32)> {
        run(&cfg(old), &cfg(new))
            .iter()
            .filter(|f| f.severity() > super::super::Severity::Info)
            .map(|f| (f.check.id(), f.line))
            .collect()
    }

    const FOUR: &str = "backend web\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n  server c 10.0.0.3:80\n  server d 10.0.0.4:80\n";

    #[test]
    fn shrinking_and_skewing_are_errors() {
        assert_eq!(
            errors(
                FOUR,
                "backend web\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n"
            ),
            [("pool-shrunk", 1)]
        );
        assert_eq!(
            errors(FOUR, "backend web\n  server a 10.0.0.1:80 weight 100\n  server b 10.0.0.2:80\n  server c 10.0.0.3:80\n  server d 10.0.0.4:80\n"),
            [("weights-skewed", 2)]
        );
        assert_eq!(
            errors(FOUR, "backend web\n  balance source\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n  server c 10.0.0.3:80\n  server d 10.0.0.4:80\n"),
            [("balance-changed", 2)]
        );
    }

    #[test]
    fn benign_changes_are_no_error() {
        let doubled = FOUR.replace(":80\n", ":80 weight 2\n");
        assert_eq!(errors(FOUR, &doubled), []);
        let reordered = "backend web\n  server d 10.0.0.4:80\n  server c 10.0.0.3:80\n  server b 10.0.0.2:80\n  server a 10.0.0.1:80\n";
        assert_eq!(errors(FOUR, reordered), []);
        let added = format!("{FOUR}  server e 10.0.0.5:80\n");
        assert_eq!(errors(FOUR, &added), []);
        let one_less =
            "backend web\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n  server c 10.0.0.3:80\n";
        assert_eq!(errors(FOUR, one_less), []);
    }
}
