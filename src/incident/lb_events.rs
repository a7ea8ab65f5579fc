//! What the LB did between two scrapes of a target, as its stats show it:
//! a reload (most counters restarted), servers leaving or joining a pool,
//! weights and algorithms changing, servers going down or coming back; and
//! each pool's traffic over the interval.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{LbEvent, LbEventKind};
use crate::detect::text::membership_change;
use crate::model::{counter_increase as delta, ServerStat, Timestamp};

/// One pool over one interval.
#[derive(Debug, Clone, Default)]
pub struct Interval {
    /// The end of the interval (the sample's time) and its length.
    pub ts: Option<Timestamp>,
    pub seconds: f64,
    pub requests: f64,
    pub errors: f64,
    pub by_server: BTreeMap<Name, f64>,
    /// The interval holds a reload: its rate is unreliable.
    pub reload: bool,
}

impl Interval {
    /// An empty interval of `seconds` ending at `ts`.
    fn over(ts: Timestamp, seconds: f64) -> Interval {
        Interval {
            ts: Some(ts),
            seconds,
            ..Interval::default()
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
            by_server: counts.iter().map(|(s, r)| (Name::from(*s), *r)).collect(),
            reload: false,
        }
    }
}

/// A server's name as kept: shared by the previous scrape and each
/// interval, so that a step allocates no name for a server it knew.
pub type Name = Arc<str>;

/// Where a step finds the name the detector keeps for a server (its pool,
/// its name), to share it: `None` where the detector has none. Asked only
/// for servers the previous scrape did not list: after a change of
/// detection settings (a detector rebuilt from snapshots, with names of
/// its own) the names kept stay those of the detector before, two copies,
/// until the target's servers change.
pub type Names<'a> = &'a dyn Fn(&str, &str) -> Option<Name>;

/// A server of the previous scrape, as it was. 48 bytes, not 64: its
/// pool is a place in `Previous::pools`, and its fields are not nested, so
/// that the flag fills the room the place leaves.
#[derive(Debug, Clone)]
struct Entry {
    server: Name,
    requests: u64,
    errors: u64,
    weight: f64,
    pool: u32,
    up: bool,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 48);

/// The previous scrape of one target, in the order it listed its servers.
/// An LB lists them in the same order scrape after scrape, so a step finds
/// each server at its place with one comparison, and looks names up only
/// when the list changed (a fleet steps a hundred thousand servers a
/// second through here).
#[derive(Debug, Clone, Default)]
pub struct Previous {
    ts: Option<Timestamp>,
    list: Vec<Entry>,
    /// The pools `list` names.
    pools: Vec<Name>,
    algos: BTreeMap<String, Option<String>>,
}

impl Previous {
    /// Compares `servers` (scraped at `ts`) with the previous scrape: the
    /// LB's events, and each pool's interval.
    pub fn step(
        &mut self,
        ts: Timestamp,
        servers: &[ServerStat<'_>],
        names: Names<'_>,
    ) -> (Vec<LbEvent>, BTreeMap<String, Interval>) {
        let first = self.ts.is_none();
        let seconds = self.ts.map_or(0.0, |p| ts.secs_since(p));
        let mut events = Vec::new();
        let in_place = self.list.len() == servers.len()
            && self.list.iter().zip(servers).all(|(e, s)| self.is(e, s));
        let found: Vec<Option<usize>> = if in_place {
            (0..servers.len()).map(Some).collect()
        } else {
            self.places(servers)
        };
        let layout = Layout::of(servers);
        let mut pools: Vec<(Interval, Vec<(Name, f64)>)> = layout
            .sizes
            .iter()
            .map(|n| (Interval::over(ts, seconds), Vec::with_capacity(*n)))
            .collect();
        let (mut known, mut lower) = (0, 0);
        for ((s, at), slot) in servers.iter().zip(&found).zip(&layout.slots) {
            let Some(prev) = at.map(|i| &self.list[i]) else {
                continue;
            };
            let (pool, by_server) = &mut pools[*slot];
            known += 1;
            lower += usize::from(s.requests_total < prev.requests);
            let r = delta(s.requests_total, prev.requests);
            pool.requests += r;
            pool.errors += delta(s.responses_5xx_total, prev.errors);
            by_server.push((prev.server.clone(), r));
            Self::changes(ts, (&s.pool, &s.server), prev, s, &mut events);
        }
        // Most counters lower than before: the LB restarted them.
        let reload = known > 0 && lower * 2 > known;
        if reload {
            let text = "the LB reloaded (its counters restarted)".to_string();
            events.insert(0, event(ts, LbEventKind::Reload, None, None, text));
        }
        // Every server listed before is listed now, and no other: the
        // usual case, which needs no comparison of the two lists.
        let same = known == servers.len() && known == self.list.len();
        if !first && !same {
            self.membership(ts, servers, &mut events);
        }
        if !first {
            self.algorithms(ts, servers, &layout, &mut events);
        }
        self.remember(ts, servers, (&found, names), in_place, &layout);
        if first {
            return (events, BTreeMap::new());
        }
        let intervals = pools
            .into_iter()
            .zip(&layout.first)
            .map(|((mut i, by_server), first)| {
                i.reload = reload;
                i.by_server = summed(by_server);
                (servers[*first].pool.to_string(), i)
            })
            .collect();
        (events, intervals)
    }

    /// Where each of `servers` was in the previous list, by name: for a
    /// list whose order or members changed.
    fn places(&self, servers: &[ServerStat<'_>]) -> Vec<Option<usize>> {
        let index: HashMap<(&str, &str), usize> = self
            .list
            .iter()
            .enumerate()
            .map(|(i, e)| ((&*self.pools[e.pool as usize], &*e.server), i))
            .collect();
        servers
            .iter()
            .map(|s| index.get(&(&*s.pool, &*s.server)).copied())
            .collect()
    }

    fn changes(
        ts: Timestamp,
        (pool, server): (&str, &str),
        prev: &Entry,
        s: &ServerStat<'_>,
        out: &mut Vec<LbEvent>,
    ) {
        // Named only when something changed: this runs for every server of
        // every scrape, and nearly always finds nothing.
        let mut said = |kind, text| {
            let (p, sv) = (Some(pool.to_string()), Some(server.to_string()));
            out.push(event(ts, kind, p, sv, text));
        };
        if prev.up && !s.up {
            said(
                LbEventKind::ServerDown,
                format!("{server} of pool {pool} went down"),
            );
        } else if !prev.up && s.up {
            said(
                LbEventKind::ServerUp,
                format!("{server} of pool {pool} came back up"),
            );
        }
        if prev.weight != s.weight {
            let text = format!(
                "{server} of pool {pool}: weight {} → {}",
                prev.weight, s.weight
            );
            said(LbEventKind::WeightChanged, text);
        }
    }

    fn membership(&self, ts: Timestamp, servers: &[ServerStat<'_>], out: &mut Vec<LbEvent>) {
        let now: BTreeSet<(&str, &str)> = servers.iter().map(|s| (&*s.pool, &*s.server)).collect();
        let before: BTreeSet<(&str, &str)> = self
            .list
            .iter()
            .map(|e| (&*self.pools[e.pool as usize], &*e.server))
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

    fn algorithms(
        &self,
        ts: Timestamp,
        servers: &[ServerStat<'_>],
        layout: &Layout,
        out: &mut Vec<LbEvent>,
    ) {
        for s in layout.first.iter().map(|i| &servers[*i]) {
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

    /// Keeps this scrape for the next step: in place when the list is the
    /// same, else rebuilt in its new order (names shared with the old one).
    fn remember(
        &mut self,
        ts: Timestamp,
        servers: &[ServerStat<'_>],
        (found, names): (&[Option<usize>], Names<'_>),
        in_place: bool,
        layout: &Layout,
    ) {
        self.ts = Some(ts);
        if in_place {
            for (e, s) in self.list.iter_mut().zip(servers) {
                e.take(s);
            }
        } else {
            let mut places: HashMap<&str, u32> = HashMap::new();
            let mut pools = Vec::new();
            let list = servers
                .iter()
                .zip(found)
                .map(|(s, at)| {
                    let old = at.map(|i| &self.list[i]);
                    let pool = *places.entry(&*s.pool).or_insert_with(|| {
                        let name = old.map(|e| self.pools[e.pool as usize].clone());
                        pools.push(name.unwrap_or_else(|| Name::from(&*s.pool)));
                        (pools.len() - 1) as u32
                    });
                    let server = old.map_or_else(
                        || names(&s.pool, &s.server).unwrap_or_else(|| Name::from(&*s.server)),
                        |e| e.server.clone(),
                    );
                    let mut e = Entry {
                        server,
                        requests: 0,
                        errors: 0,
                        weight: 0.0,
                        pool,
                        up: false,
                    };
                    e.take(s);
                    e
                })
                .collect();
            self.list = list;
            self.pools = pools;
        }
        let listed: BTreeSet<&str> = layout.first.iter().map(|i| &*servers[*i].pool).collect();
        for s in layout.first.iter().map(|i| &servers[*i]) {
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
        self.algos.retain(|p, _| listed.contains(p.as_str()));
    }
}

impl Entry {
    /// Takes what `s` shows now.
    fn take(&mut self, s: &ServerStat<'_>) {
        self.requests = s.requests_total;
        self.errors = s.responses_5xx_total;
        self.weight = s.weight;
        self.up = s.up;
    }
}

impl Previous {
    /// `e` is the entry of `s`.
    fn is(&self, e: &Entry, s: &ServerStat<'_>) -> bool {
        *e.server == *s.server && *self.pools[e.pool as usize] == *s.pool
    }
}

/// Which pool each server of a scrape is in, as slots in the order the
/// pools first appear: found by comparing with the server before (an LB
/// lists a pool's servers together), else by name.
struct Layout {
    /// Each server's pool slot.
    slots: Vec<usize>,
    /// Each slot's first server, and its number of servers.
    first: Vec<usize>,
    sizes: Vec<usize>,
}

impl Layout {
    fn of(servers: &[ServerStat<'_>]) -> Layout {
        let mut slots = Vec::with_capacity(servers.len());
        let (mut first, mut sizes): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        for (i, s) in servers.iter().enumerate() {
            let last = i.checked_sub(1).filter(|p| servers[*p].pool == s.pool);
            let slot = match last {
                Some(p) => slots[p],
                None => *by_name.entry(&*s.pool).or_insert_with(|| {
                    first.push(i);
                    sizes.push(0);
                    first.len() - 1
                }),
            };
            sizes[slot] += 1;
            slots.push(slot);
        }
        Layout {
            slots,
            first,
            sizes,
        }
    }
}

/// Requests per server as a map: a server listed twice counts once, with
/// both its intervals' requests.
fn summed(mut by_server: Vec<(Name, f64)>) -> BTreeMap<Name, f64> {
    by_server.sort_by(|a, b| a.0.cmp(&b.0));
    by_server.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    by_server.into_iter().collect()
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
