//! What the LB did between two scrapes of a target, as its stats show it:
//! a reload (most counters restarted), servers leaving or joining a pool,
//! weights and algorithms changing, servers going down or coming back; and
//! each pool's traffic over the interval.

use std::collections::{BTreeMap, BTreeSet};

use super::{LbEvent, LbEventKind};
use crate::detect::text::membership_change;
use crate::model::{counter_increase as delta, ServerStat, Timestamp};

/// A server as last scraped.
#[derive(Debug, Clone)]
struct Seen {
    requests: u64,
    errors: u64,
    up: bool,
    weight: f64,
    /// The step that last listed it.
    step: u64,
}

/// One pool over one interval.
#[derive(Debug, Clone, Default)]
pub struct Interval {
    /// The end of the interval (the sample's time) and its length.
    pub ts: Option<Timestamp>,
    pub seconds: f64,
    pub requests: f64,
    pub errors: f64,
    pub by_server: BTreeMap<String, f64>,
    /// The interval holds a reload: its rate is unreliable.
    pub reload: bool,
}

impl Seen {
    fn of(s: &ServerStat<'_>, step: u64) -> Seen {
        Seen {
            requests: s.requests_total,
            errors: s.responses_5xx_total,
            up: s.up,
            weight: s.weight,
            step,
        }
    }
}

#[cfg(test)]
impl Interval {
    /// A one-second interval ending at `t` s with these requests per server
    /// and `errors` 5xx, for tests.
    pub fn of(t: i64, counts: &[(&str, f64)], errors: f64) -> Interval {
        Interval {
            ts: Some(Timestamp::from_micros(t * 1_000_000)),
            seconds: 1.0,
            requests: counts.iter().map(|(_, r)| r).sum(),
            errors,
            by_server: counts.iter().map(|(s, r)| (s.to_string(), *r)).collect(),
            reload: false,
        }
    }
}

/// The previous scrape of one target. Pool by pool, server by server, so
/// that a step looks names up without allocating them (a fleet steps a
/// hundred thousand servers a second through here).
#[derive(Debug, Clone, Default)]
pub struct Previous {
    ts: Option<Timestamp>,
    servers: BTreeMap<String, BTreeMap<String, Seen>>,
    algos: BTreeMap<String, Option<String>>,
    steps: u64,
}

impl Previous {
    /// Compares `servers` (scraped at `ts`) with the previous scrape: the
    /// LB's events, and each pool's interval.
    pub fn step(
        &mut self,
        ts: Timestamp,
        servers: &[ServerStat<'_>],
    ) -> (Vec<LbEvent>, BTreeMap<String, Interval>) {
        let first = self.ts.is_none();
        let seconds = self.ts.map_or(0.0, |p| ts.secs_since(p));
        self.steps += 1;
        let step = self.steps;
        let mut events = Vec::new();
        let mut pools: BTreeMap<String, Interval> = BTreeMap::new();
        let (mut known, mut lower) = (0, 0);
        for s in servers {
            if !pools.contains_key(&*s.pool) {
                let fresh = Interval {
                    ts: Some(ts),
                    seconds,
                    ..Interval::default()
                };
                pools.insert(s.pool.to_string(), fresh);
            }
            let pool = pools.get_mut(&*s.pool).expect("inserted above");
            // Looked up once, compared, then updated in place.
            let Some(prev) = self
                .servers
                .get_mut(&*s.pool)
                .and_then(|p| p.get_mut(&*s.server))
            else {
                continue;
            };
            known += 1;
            lower += usize::from(s.requests_total < prev.requests);
            let r = delta(s.requests_total, prev.requests);
            pool.requests += r;
            pool.errors += delta(s.responses_5xx_total, prev.errors);
            *pool.by_server.entry(s.server.to_string()).or_default() += r;
            Self::changes(ts, (&s.pool, &s.server), prev, s, &mut events);
            *prev = Seen::of(s, step);
        }
        // Most counters lower than before: the LB restarted them.
        if known > 0 && lower * 2 > known {
            let text = "the LB reloaded (its counters restarted)".to_string();
            events.insert(0, event(ts, LbEventKind::Reload, None, None, text));
            pools.values_mut().for_each(|p| p.reload = true);
        }
        // Every server listed before is listed now, and no other: the
        // usual case, which needs no comparison of the two lists.
        let same = known == servers.len() && known == self.listed();
        if !first && !same {
            self.membership(ts, servers, &mut events);
        }
        if !first {
            self.algorithms(ts, servers, &mut events);
        }
        self.remember(ts, servers, step);
        (events, if first { BTreeMap::new() } else { pools })
    }

    /// Servers in the previous scrape.
    fn listed(&self) -> usize {
        self.servers.values().map(BTreeMap::len).sum()
    }

    fn changes(
        ts: Timestamp,
        (pool, server): (&str, &str),
        prev: &Seen,
        s: &ServerStat<'_>,
        out: &mut Vec<LbEvent>,
    ) {
        let (p, sv) = (Some(pool.to_string()), Some(server.to_string()));
        if prev.up && !s.up {
            out.push(event(
                ts,
                LbEventKind::ServerDown,
                p.clone(),
                sv.clone(),
                format!("{server} of pool {pool} went down"),
            ));
        } else if !prev.up && s.up {
            out.push(event(
                ts,
                LbEventKind::ServerUp,
                p.clone(),
                sv.clone(),
                format!("{server} of pool {pool} came back up"),
            ));
        }
        if prev.weight != s.weight {
            let text = format!(
                "{server} of pool {pool}: weight {} → {}",
                prev.weight, s.weight
            );
            out.push(event(ts, LbEventKind::WeightChanged, p, sv, text));
        }
    }

    fn membership(&self, ts: Timestamp, servers: &[ServerStat<'_>], out: &mut Vec<LbEvent>) {
        let now: BTreeSet<(&str, &str)> = servers.iter().map(|s| (&*s.pool, &*s.server)).collect();
        let before: BTreeSet<(&str, &str)> = self
            .servers
            .iter()
            .flat_map(|(p, ss)| ss.keys().map(move |s| (p.as_str(), s.as_str())))
            .collect();
        let pools: BTreeSet<&str> = now.iter().chain(&before).map(|(p, _)| *p).collect();
        for pool in pools {
            fn of<'a>(set: &BTreeSet<(&'a str, &'a str)>, pool: &str) -> Vec<&'a str> {
                set.iter()
                    .filter(|(p, _)| *p == pool)
                    .map(|(_, s)| *s)
                    .collect()
            }
            let (was, is) = (of(&before, pool), of(&now, pool));
            let left: Vec<&str> = was.iter().filter(|s| !is.contains(s)).copied().collect();
            let joined: Vec<&str> = is.iter().filter(|s| !was.contains(s)).copied().collect();
            if left.is_empty() && joined.is_empty() {
                continue;
            }
            let kind = if left.is_empty() {
                LbEventKind::ServersJoined
            } else {
                LbEventKind::ServersLeft
            };
            let text = format!(
                "pool {pool}: {}; {} server{} listed now",
                membership_change(&left, was.len(), &joined),
                is.len(),
                if is.len() == 1 { "" } else { "s" }
            );
            let mut e = event(ts, kind, Some(pool.to_string()), None, text);
            let moved = if left.is_empty() { &joined } else { &left };
            e.servers = moved.iter().map(|s| s.to_string()).collect();
            out.push(e);
        }
    }

    fn algorithms(&self, ts: Timestamp, servers: &[ServerStat<'_>], out: &mut Vec<LbEvent>) {
        let mut seen = BTreeSet::new();
        for s in servers {
            if !seen.insert(&*s.pool) {
                continue;
            }
            let now = s.algo.as_ref().map(|a| a.to_string());
            if let Some(before) = self.algos.get(&*s.pool).filter(|b| **b != now) {
                let name = |a: &Option<String>| a.clone().unwrap_or_else(|| "unknown".into());
                let text = format!("pool {}: balance {} → {}", s.pool, name(before), name(&now));
                out.push(event(
                    ts,
                    LbEventKind::AlgorithmChanged,
                    Some(s.pool.to_string()),
                    None,
                    text,
                ));
            }
        }
    }

    /// Adds the servers new to this step (`step` updated the others in
    /// place) and forgets those no longer listed.
    fn remember(&mut self, ts: Timestamp, servers: &[ServerStat<'_>], step: u64) {
        self.ts = Some(ts);
        for s in servers {
            if !self.servers.contains_key(&*s.pool) {
                self.servers.insert(s.pool.to_string(), BTreeMap::new());
            }
            let pool = self.servers.get_mut(&*s.pool).expect("inserted above");
            if !pool.contains_key(&*s.server) {
                pool.insert(s.server.to_string(), Seen::of(s, step));
            }
            let algo = s.algo.as_deref();
            if self
                .algos
                .get(&*s.pool)
                .is_none_or(|a| a.as_deref() != algo)
            {
                self.algos
                    .insert(s.pool.to_string(), algo.map(str::to_string));
            }
        }
        for pool in self.servers.values_mut() {
            pool.retain(|_, seen| seen.step == step);
        }
        self.servers.retain(|_, pool| !pool.is_empty());
        let listed: BTreeSet<&str> = servers.iter().map(|s| &*s.pool).collect();
        self.algos.retain(|p, _| listed.contains(p.as_str()));
    }
}

fn event(
    ts: Timestamp,
    kind: LbEventKind,
    pool: Option<String>,
    server: Option<String>,
    text: String,
) -> LbEvent {
    LbEvent {
        ts,
        kind,
        pool,
        server,
        servers: Vec::new(),
        text,
    }
}
