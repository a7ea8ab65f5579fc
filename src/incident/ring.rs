//! A pool's recent intervals, kept small: a fleet of 100,000 servers
//! scraped every second would otherwise hold a map of every server's
//! requests for every second of the lookback (gigabytes). Each interval
//! keeps its totals and whether it looked abnormal when it came, for
//! `RING_S`; each server's requests are kept as numbers in the order of
//! the pool's names, and only for `SHARES_KEPT_S` (long enough to be
//! learnt `LEARN_LAG_S` late, and to chart and count an incident's first
//! shares).

use std::collections::{HashMap, VecDeque};

use super::lb_events::{Interval, Name};
use crate::model::Timestamp;

/// How long a pool's intervals are kept: a fault's start is looked for up
/// to this long before its first alert, and the chart reaches this far
/// back.
pub const RING_S: f64 = 120.0;
/// How long each server's requests are kept: to be learnt `LEARN_LAG_S`
/// late, and for the chart's half minute before a start whose alert came
/// up to half a minute later.
pub const SHARES_KEPT_S: f64 = 2.0 * super::chart::BEFORE_S;
const _: () = assert!(SHARES_KEPT_S > super::tracker::LEARN_LAG_S + 5.0);

/// One interval as kept: its totals, and each server's requests (packed,
/// see `requests`), for a fleet's hundred thousand servers times a minute
/// of intervals. 48 bytes, for a ring of 120 a pool:
/// the time is kept without an `Option`, and the 5xx as `f32` (exact to 16
/// million an interval), which fit in the words the other totals leave.
#[derive(Debug, Clone)]
pub struct Kept {
    ts: Timestamp,
    has_ts: bool,
    /// `requests` holds each count as an `f32` in two words.
    wide: bool,
    reload: bool,
    /// Abnormal against the pool's usual self when it came, or a reload.
    pub abnormal: bool,
    errors: f32,
    seconds: f64,
    requests_total: f64,
    /// Requests per server, in the order of the ring's names; emptied
    /// after `SHARES_KEPT_S`. Counts in an interval are whole numbers,
    /// nearly always below 65,535 at a scrape every few seconds: kept as
    /// `u16` then (exact, half the room), else as `f32` in two words.
    requests: Box<[u16]>,
}

/// A server not listed in the interval, in narrow `requests`.
const NOT_LISTED: u16 = u16::MAX;

/// Each server's requests (NaN: not listed) as `Kept` keeps them, and
/// whether they are wide.
fn packed(requests: &[f32]) -> (Box<[u16]>, bool) {
    let narrow = |r: f32| r >= 0.0 && r < f32::from(NOT_LISTED) && r.fract() == 0.0;
    if requests.iter().all(|r| r.is_nan() || narrow(*r)) {
        let words = requests
            .iter()
            .map(|r| if r.is_nan() { NOT_LISTED } else { *r as u16 })
            .collect();
        return (words, false);
    }
    let words = requests
        .iter()
        .flat_map(|r| {
            let b = r.to_bits();
            [(b >> 16) as u16, b as u16]
        })
        .collect();
    (words, true)
}

impl Kept {
    pub fn ts(&self) -> Option<Timestamp> {
        self.has_ts.then_some(self.ts)
    }

    /// Each server's requests in the ring's order (NaN: not listed); none
    /// once dropped.
    fn requests(&self) -> impl Iterator<Item = f32> + '_ {
        let words = if self.wide { 2 } else { 1 };
        self.requests.chunks_exact(words).map(|w| match *w {
            [hi, lo] => f32::from_bits(u32::from(hi) << 16 | u32::from(lo)),
            [NOT_LISTED] => f32::NAN,
            [r] => f32::from(r),
            _ => unreachable!("chunks of one or two words"),
        })
    }

    /// The interval's totals (its `by_server` left empty).
    pub fn totals(&self) -> Interval {
        Interval {
            ts: self.ts(),
            seconds: self.seconds,
            requests: self.requests_total,
            // Past 16 million, the f32's rounding could exceed the requests.
            errors: f64::from(self.errors).min(self.requests_total),
            by_server: Default::default(),
            reload: self.reload,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// The servers of the intervals that still have their requests per
    /// server (and some that left since, until `forget_departed`).
    names: Vec<Name>,
    kept: VecDeque<Kept>,
    /// Leading entries whose requests per server are already dropped.
    emptied: usize,
    /// When `forget_departed` last looked.
    looked: Option<Timestamp>,
}

impl Ring {
    /// Keeps `i` as of `now`, and forgets what is too old.
    pub fn push(&mut self, i: Interval, abnormal: bool, now: Timestamp) {
        let mut requests = vec![f32::NAN; self.names.len()];
        let listed = i.by_server.len();
        // Made on the first server not at its place, for this interval:
        // a lookup by name, and where each server was found (all of them
        // at their places, nothing needs moving).
        let mut index = None;
        let mut places: Option<Vec<usize>> = None;
        for (k, (server, r)) in i.by_server.into_iter().enumerate() {
            // A pool lists the same servers, in name order, interval after
            // interval: each is found at its place before it is looked up.
            let at = match self.names.get(k).filter(|n| **n == server) {
                Some(_) => k,
                None => self.place(server, &mut requests, &mut index),
            };
            requests[at] = r as f32;
            if at != k || places.is_some() {
                places.get_or_insert_with(|| (0..k).collect()).push(at);
            }
        }
        // All at their places, the slots past them are servers not listed:
        // no room kept for them (else `remap` below trims them).
        if places.is_none() {
            requests.truncate(listed);
        }
        let (requests, wide) = packed(&requests);
        self.kept.push_back(Kept {
            ts: i.ts.unwrap_or(now),
            has_ts: i.ts.is_some(),
            wide,
            seconds: i.seconds,
            requests_total: i.requests,
            errors: i.errors as f32,
            reload: i.reload,
            abnormal,
            requests,
        });
        // Servers not at their places: put where the next interval will
        // list them, so that it needs no lookup.
        if let Some(places) = places {
            let mut first = vec![false; self.names.len()];
            for &at in &places {
                first[at] = true;
            }
            let others = (0..self.names.len()).filter(|at| !first[*at]);
            let order: Vec<usize> = places.iter().copied().chain(others).collect();
            self.remap(&order);
        }
        let age = |k: &Kept| k.ts().map_or(0.0, |t| now.secs_since(t));
        while self.kept.front().is_some_and(|k| age(k) > RING_S) {
            self.kept.pop_front();
            self.emptied = self.emptied.saturating_sub(1);
        }
        while let Some(k) = self.kept.get_mut(self.emptied) {
            if age(k) <= SHARES_KEPT_S {
                break;
            }
            k.requests = Box::default();
            self.emptied += 1;
        }
        // Looked at most every quarter of the shares' span: a pool that
        // shrank keeps its names that long whatever happens.
        let looked_lately = self
            .looked
            .is_some_and(|t| now.secs_since(t) < SHARES_KEPT_S / 4.0);
        if self.names.len() > 2 * listed + 8 && !looked_lately {
            self.looked = Some(now);
            self.forget_departed();
        }
    }

    /// Keeps the names at positions `order`, in that order; the intervals
    /// that still have requests per server follow (a server not listed at
    /// the end takes no room).
    fn remap(&mut self, order: &[usize]) {
        for k in self.kept.range_mut(self.emptied..) {
            let values: Vec<f32> = k.requests().collect();
            let mut out: Vec<f32> = order
                .iter()
                .map(|&at| values.get(at).copied().unwrap_or(f32::NAN))
                .collect();
            while out.last().is_some_and(|r| r.is_nan()) {
                out.pop();
            }
            (k.requests, k.wide) = packed(&out);
        }
        self.names = order.iter().map(|&at| self.names[at].clone()).collect();
    }

    /// Where `server` is in `names`, added if new; `index` finds the
    /// others by name.
    fn place(
        &mut self,
        server: Name,
        requests: &mut Vec<f32>,
        index: &mut Option<HashMap<Name, usize>>,
    ) -> usize {
        let names = &self.names;
        let index = index.get_or_insert_with(|| {
            names
                .iter()
                .enumerate()
                .map(|(at, n)| (n.clone(), at))
                .collect()
        });
        if let Some(at) = index.get(&server) {
            return *at;
        }
        self.names.push(server.clone());
        index.insert(server, self.names.len() - 1);
        requests.push(f32::NAN);
        self.names.len() - 1
    }

    /// Forgets the names no interval with its requests per server lists:
    /// servers that left. A pool whose servers come and go under new names
    /// (a pod's at each deploy) would otherwise keep every name it ever
    /// had, and each interval a slot for each.
    fn forget_departed(&mut self) {
        let mut listed = vec![false; self.names.len()];
        for k in self.kept.range(self.emptied..) {
            for (at, r) in k.requests().enumerate() {
                listed[at] |= !r.is_nan();
            }
        }
        let order: Vec<usize> = (0..listed.len()).filter(|at| listed[*at]).collect();
        if order.len() < listed.len() {
            self.remap(&order);
        }
    }

    /// The interval with its requests per server (none once dropped).
    pub fn expand(&self, k: &Kept) -> Interval {
        let mut i = k.totals();
        i.by_server = self
            .names
            .iter()
            .zip(k.requests())
            .filter(|(_, r)| !r.is_nan())
            .map(|(s, r)| (s.clone(), f64::from(r)))
            .collect();
        i
    }

    /// Its requests per server, without building a map (none once
    /// dropped).
    pub fn by_server<'a>(&'a self, k: &'a Kept) -> impl Iterator<Item = (&'a Name, f64)> + 'a {
        self.names
            .iter()
            .zip(k.requests())
            .filter(|(_, r)| !r.is_nan())
            .map(|(s, r)| (s, f64::from(r)))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Kept> + ExactSizeIterator {
        self.kept.iter()
    }

    pub fn back(&self) -> Option<&Kept> {
        self.kept.back()
    }

    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// The entries from position `from` on.
    pub fn range(&self, from: usize) -> impl Iterator<Item = &Kept> {
        self.kept.range(from..)
    }
}

const _: () = assert!(std::mem::size_of::<Kept>() == 48);

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(t: i64, counts: &[(&str, f64)]) -> Interval {
        Interval::of(t, counts, 0.0)
    }

    #[test]
    fn intervals_are_kept_for_their_span_and_servers_for_less() {
        let mut ring = Ring::default();
        for t in 0..400 {
            let now = Timestamp::from_micros(t * 1_000_000);
            let counts: &[(&str, f64)] = if t < 200 {
                &[("a", 3.0), ("b", 1.0)]
            } else {
                &[("b", 2.0)]
            };
            ring.push(interval(t, counts), t % 7 == 0, now);
        }
        assert_eq!(ring.len(), RING_S as usize + 1);
        let last = ring.back().unwrap();
        let full = ring.expand(last);
        assert_eq!(full.by_server.len(), 1, "a is not listed: {full:?}");
        assert_eq!(full.by_server["b"], 2.0);
        assert_eq!(full.requests, 2.0);
        let oldest = ring.iter().next().unwrap();
        assert!(ring.expand(oldest).by_server.is_empty(), "dropped");
        let with = ring
            .iter()
            .filter(|k| !ring.expand(k).by_server.is_empty())
            .count();
        assert_eq!(with, SHARES_KEPT_S as usize + 1);
        let first = 399 - RING_S as i64;
        let flagged = (first..400).filter(|t| t % 7 == 0).count();
        assert_eq!(ring.iter().filter(|k| k.abnormal).count(), flagged);
    }

    /// A pool whose servers come and go under new names keeps only the
    /// names of the intervals that still have their requests per server,
    /// and each of those intervals keeps what each server had.
    #[test]
    fn servers_that_left_are_forgotten() {
        let mut ring = Ring::default();
        let name = |t: i64| format!("pod-{}", t / 5);
        for t in 0..1000 {
            let pod = name(t);
            let counts = [("a", 1.0), ("b", t as f64), (pod.as_str(), 3.0)];
            ring.push(
                interval(t, &counts),
                false,
                Timestamp::from_micros(t * 1_000_000),
            );
        }
        // A new pod every 5 s: a minute of shares lists 13 of them at most.
        assert!(ring.names.len() <= 2 + 13 + 8 + 3, "{:?}", ring.names.len());
        for k in ring.iter().skip(ring.len() - SHARES_KEPT_S as usize) {
            let t = (k.ts().unwrap().secs_since(Timestamp::from_micros(0))).round() as i64;
            let got: Vec<(String, f64)> =
                ring.by_server(k).map(|(s, r)| (s.to_string(), r)).collect();
            let mut want = vec![("a".into(), 1.0), ("b".into(), t as f64), (name(t), 3.0)];
            want.sort_by(|x, y| x.0.cmp(&y.0));
            let mut got = got;
            got.sort_by(|x, y| x.0.cmp(&y.0));
            assert_eq!(got, want, "at {t}");
        }
    }

    /// Counts that fit a `u16` are kept narrow, others (large, or not
    /// whole) wide; either way each server gets back what it had, and a
    /// server not listed stays unlisted.
    #[test]
    fn requests_come_back_as_they_were_pushed_narrow_or_wide() {
        let mut ring = Ring::default();
        let cases: [&[(&str, f64)]; 4] = [
            &[("a", 0.0), ("b", 65_534.0), ("c", 7.0)],
            &[("a", 65_535.0), ("c", 1.0)],
            &[("b", 2.5), ("c", 3_000_000.0)],
            &[("c", 12.0)],
        ];
        for (t, counts) in cases.iter().enumerate() {
            let t = t as i64;
            ring.push(
                interval(t, counts),
                false,
                Timestamp::from_micros(t * 1_000_000),
            );
        }
        let wide: Vec<bool> = ring.iter().map(|k| k.wide).collect();
        assert_eq!(wide, [false, true, true, false]);
        for (k, counts) in ring.iter().zip(cases) {
            let mut got: Vec<(&str, f64)> = ring.by_server(k).map(|(s, r)| (&**s, r)).collect();
            got.sort_by(|a, b| a.0.cmp(b.0));
            assert_eq!(got, counts);
        }
    }

    /// A server that joins anywhere but last is put where the next
    /// intervals list it (they then need no lookup), and the intervals
    /// kept before keep what each server had.
    #[test]
    fn a_server_joining_in_the_middle_takes_its_place() {
        let mut ring = Ring::default();
        let at = |t: i64| Timestamp::from_micros(t * 1_000_000);
        ring.push(interval(0, &[("web1", 5.0), ("web9", 6.0)]), false, at(0));
        ring.push(interval(1, &[("web1", 7.0), ("web9", 8.0)]), false, at(1));
        let joined = [("web1", 1.0), ("web10", 2.0), ("web9", 3.0)];
        ring.push(interval(2, &joined), false, at(2));
        let names: Vec<&str> = ring.names.iter().map(|n| &**n).collect();
        assert_eq!(names, ["web1", "web10", "web9"]);
        let by_server: Vec<Vec<(&str, f64)>> = ring
            .iter()
            .map(|k| ring.by_server(k).map(|(s, r)| (&**s, r)).collect())
            .collect();
        assert_eq!(
            by_server,
            [
                vec![("web1", 5.0), ("web9", 6.0)],
                vec![("web1", 7.0), ("web9", 8.0)],
                joined.to_vec()
            ]
        );
    }
}
