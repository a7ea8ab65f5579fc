//! What each pool, server and frontend did over one part of a run (before
//! or after the change): requests and 5xx summed from counter deltas, and
//! how each server was last listed.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{counter_increase as delta, Sample, SampleBody, Timestamp};

/// Counters summed over a part.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub requests: f64,
    pub errors: f64,
}

/// One server over a part.
#[derive(Debug, Clone, Default)]
pub struct ServerTally {
    pub counts: Counts,
    /// As last listed: weight and backup flag.
    pub weight: f64,
    pub backup: bool,
    /// Counters last seen, to take the next delta from.
    last: Option<(u64, u64)>,
}

/// One pool of one target over a part.
#[derive(Debug, Clone, Default)]
pub struct PoolTally {
    pub servers: BTreeMap<String, ServerTally>,
    /// Servers listed in the target's last sample of the part.
    pub listed: BTreeSet<String>,
    pub algo: Option<String>,
}

impl PoolTally {
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for s in self.servers.values() {
            t.requests += s.counts.requests;
            t.errors += s.counts.errors;
        }
        t
    }
}

/// A frontend's received and denied requests over a part.
#[derive(Debug, Clone, Default)]
pub struct FrontendTally {
    pub requests: f64,
    pub denied: f64,
    last: Option<(u64, u64)>,
}

/// A part of the run: per target, its pools and frontends.
#[derive(Debug, Clone, Default)]
pub struct Part {
    pub pools: BTreeMap<(String, String), PoolTally>,
    pub frontends: BTreeMap<(String, String), FrontendTally>,
    /// First and last sample time per target.
    pub span: BTreeMap<String, (Timestamp, Timestamp)>,
}

impl Part {
    /// Seconds the part covers for `target`.
    pub fn seconds(&self, target: &str) -> f64 {
        self.span.get(target).map_or(0.0, |(a, b)| b.secs_since(*a))
    }

    pub fn add(&mut self, sample: &Sample<'_>) {
        let SampleBody::Servers(servers) = &sample.body else {
            return;
        };
        let target = sample.target.to_string();
        let span = self
            .span
            .entry(target.clone())
            .or_insert((sample.ts, sample.ts));
        span.1 = sample.ts;
        for pool in self.pools.iter_mut().filter(|((t, _), _)| *t == target) {
            pool.1.listed.clear();
        }
        for s in servers {
            let pool = self
                .pools
                .entry((target.clone(), s.pool.to_string()))
                .or_default();
            pool.listed.insert(s.server.to_string());
            pool.algo = s.algo.as_ref().map(|a| a.to_string());
            let t = pool.servers.entry(s.server.to_string()).or_default();
            if let Some((r, e)) = t.last {
                t.counts.requests += delta(s.requests_total, r);
                t.counts.errors += delta(s.responses_5xx_total, e);
            }
            t.last = Some((s.requests_total, s.responses_5xx_total));
            t.weight = s.weight;
            t.backup = s.backup;
        }
        for f in &sample.frontends {
            let (Some(r), Some(d)) = (f.requests_total, f.denied_total) else {
                continue;
            };
            let t = self
                .frontends
                .entry((target.clone(), f.frontend.to_string()))
                .or_default();
            if let Some((r0, d0)) = t.last {
                t.requests += delta(r, r0);
                t.denied += delta(d, d0);
            }
            t.last = Some((r, d));
        }
    }
}
