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

/// The previous scrape of one target.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    ts: Option<Timestamp>,
    servers: BTreeMap<(String, String), Seen>,
    algos: BTreeMap<String, Option<String>>,
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
        let reload = self.reloaded(servers);
        let mut events = Vec::new();
        if reload {
            events.push(event(
                ts,
                LbEventKind::Reload,
                None,
                None,
                "the LB reloaded (its counters restarted)".to_string(),
            ));
        }
        let mut pools: BTreeMap<String, Interval> = BTreeMap::new();
        for s in servers {
            let key = (s.pool.to_string(), s.server.to_string());
            let pool = pools.entry(key.0.clone()).or_insert_with(|| Interval {
                ts: Some(ts),
                seconds,
                reload,
                ..Interval::default()
            });
            if let Some(prev) = self.servers.get(&key) {
                let r = delta(s.requests_total, prev.requests);
                pool.requests += r;
                pool.errors += delta(s.responses_5xx_total, prev.errors);
                *pool.by_server.entry(key.1.clone()).or_default() += r;
                self.changes(ts, &key, prev, s, &mut events);
            }
        }
        if !first {
            self.membership(ts, servers, &mut events);
            self.algorithms(ts, servers, &mut events);
        }
        self.remember(ts, servers);
        (events, if first { BTreeMap::new() } else { pools })
    }

    /// Most counters lower than before: the LB restarted them.
    fn reloaded(&self, servers: &[ServerStat<'_>]) -> bool {
        let (mut lower, mut known) = (0, 0);
        for s in servers {
            if let Some(p) = self
                .servers
                .get(&(s.pool.to_string(), s.server.to_string()))
            {
                known += 1;
                lower += usize::from(s.requests_total < p.requests);
            }
        }
        known > 0 && lower * 2 > known
    }

    fn changes(
        &self,
        ts: Timestamp,
        (pool, server): &(String, String),
        prev: &Seen,
        s: &ServerStat<'_>,
        out: &mut Vec<LbEvent>,
    ) {
        let (p, sv) = (Some(pool.clone()), Some(server.clone()));
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
            .keys()
            .map(|(p, s)| (p.as_str(), s.as_str()))
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

    fn remember(&mut self, ts: Timestamp, servers: &[ServerStat<'_>]) {
        self.ts = Some(ts);
        self.servers = servers
            .iter()
            .map(|s| {
                let seen = Seen {
                    requests: s.requests_total,
                    errors: s.responses_5xx_total,
                    up: s.up,
                    weight: s.weight,
                };
                ((s.pool.to_string(), s.server.to_string()), seen)
            })
            .collect();
        self.algos = servers
            .iter()
            .map(|s| (s.pool.to_string(), s.algo.as_ref().map(|a| a.to_string())))
            .collect();
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
