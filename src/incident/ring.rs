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
pub use super::packed::Kept;
use super::packed::{more, pack, unpack, Stored};
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

/// How many intervals of `seconds` a span holds (with one to spare, as
/// the ring keeps the one that ends it); none for an interval of no length.
/// Sized for intervals of a second at the shortest: one much shorter (a
/// scrape late, the next on time; a replay's close timestamps) would
/// otherwise ask for room without bound. Shorter intervals still fit, the
/// room growing an eighth at a time.
fn intervals_in(span: f64, seconds: f64) -> usize {
    if seconds > 0.0 {
        (span / seconds.max(1.0)).ceil() as usize + 2
    } else {
        0
    }
}

#[derive(Debug, Clone)]
pub struct Ring {
    /// The servers of the intervals that still have their requests per
    /// server (and some that left since, until `forget_departed`).
    names: Vec<Name>,
    kept: VecDeque<Stored>,
    /// What the intervals' ends count from.
    base: Timestamp,
    /// The requests per server of `kept[emptied..]`, each interval's run
    /// of `Stored::words` after the one before: one buffer a pool, not one
    /// an interval (each with its allocation's overhead).
    words: VecDeque<u16>,
    /// Leading entries whose requests per server are already dropped.
    emptied: usize,
    /// When `forget_departed` last looked.
    looked: Option<Timestamp>,
}

impl Default for Ring {
    fn default() -> Ring {
        Ring {
            names: Vec::new(),
            kept: VecDeque::new(),
            base: Timestamp::from_micros(0),
            words: VecDeque::new(),
            emptied: 0,
            looked: None,
        }
    }
}

impl Ring {
    /// Keeps `i` as of `now`, and forgets what is too old.
    pub fn push(&mut self, mut i: Interval, abnormal: bool, now: Timestamp) {
        let mut requests = vec![f32::NAN; self.names.len()];
        let listed = i.by_server.len();
        // Made on the first server not at its place, for this interval:
        // a lookup by name, and where each server was found (all of them
        // at their places, nothing needs moving).
        let mut index = None;
        let mut places: Option<Vec<usize>> = None;
        for (k, (server, r)) in std::mem::take(&mut i.by_server).into_iter().enumerate() {
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
        let runs = intervals_in(SHARES_KEPT_S, i.seconds);
        let end = self.offset(i.ts.unwrap_or(now));
        let run = pack(&requests, &mut self.words, runs);
        if self.kept.len() == self.kept.capacity() {
            let room = more(self.kept.len(), intervals_in(RING_S, i.seconds), 1);
            self.kept.reserve_exact(room);
        }
        self.kept.push_back(Stored::new(&i, end, abnormal, run));
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
        self.forget_old(now);
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

    /// Where an interval ending `ts` ends after the base. When a `u32` of
    /// microseconds no longer spans it (about every 69 minutes as time
    /// goes on, or when the clock went back), the base moves to the
    /// earliest end kept or `ts`. Intervals more than 71 minutes apart (a
    /// clock that jumped) cannot be kept together: all those kept before
    /// are dropped.
    fn offset(&mut self, ts: Timestamp) -> u32 {
        if self.kept.is_empty() {
            self.base = ts;
        }
        if let Ok(end) = u32::try_from(ts.micros() - self.base.micros()) {
            return end;
        }
        // Every end kept is at or after the base: the earliest and latest
        // are the least and greatest offsets.
        let (lo, hi) = self
            .kept
            .iter()
            .fold((u32::MAX, 0), |(lo, hi), k| (lo.min(k.end), hi.max(k.end)));
        let at = |offset: u32| self.base.micros() + i64::from(offset);
        let first = at(lo).min(ts.micros());
        let last = at(hi).max(ts.micros());
        if u32::try_from(last - first).is_err() {
            self.kept.clear();
            self.words.clear();
            self.emptied = 0;
            self.base = ts;
            return 0;
        }
        let base = Timestamp::from_micros(first);
        for k in &mut self.kept {
            k.end = (k.end_at(self.base).micros() - first) as u32;
        }
        self.base = base;
        (ts.micros() - first) as u32
    }

    /// Drops the intervals older than `RING_S`, and the requests per
    /// server of those older than `SHARES_KEPT_S`.
    fn forget_old(&mut self, now: Timestamp) {
        let base = self.base;
        let age = |k: &Stored| k.kept(base).ts().map_or(0.0, |t| now.secs_since(t));
        while self.kept.front().is_some_and(|k| age(k) > RING_S) {
            if let Some(k) = self.kept.pop_front() {
                if self.emptied == 0 {
                    self.words.drain(..k.words() as usize);
                }
            }
            self.emptied = self.emptied.saturating_sub(1);
        }
        while let Some(k) = self.kept.get_mut(self.emptied) {
            if age(k) <= SHARES_KEPT_S {
                break;
            }
            self.words.drain(..k.words() as usize);
            k.set_run(0, k.width());
            self.emptied += 1;
        }
    }

    /// Keeps the names at positions `order`, in that order; the intervals
    /// that still have requests per server follow (a server not listed at
    /// the end takes no room).
    fn remap(&mut self, order: &[usize]) {
        let mut words = VecDeque::with_capacity(self.words.len());
        let mut from = 0;
        for k in self.kept.range_mut(self.emptied..) {
            let run = self.words.range(from..from + k.words() as usize).copied();
            from += k.words() as usize;
            let values: Vec<f32> = unpack(run, k.width()).collect();
            let mut out: Vec<f32> = order
                .iter()
                .map(|&at| values.get(at).copied().unwrap_or(f32::NAN))
                .collect();
            while out.last().is_some_and(|r| r.is_nan()) {
                out.pop();
            }
            let (n, width) = pack(&out, &mut words, 1);
            k.set_run(n, width);
        }
        self.words = words;
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
        for at in self.emptied..self.kept.len() {
            for (n, r) in self.requests(at).enumerate() {
                listed[n] |= !r.is_nan();
            }
        }
        let order: Vec<usize> = (0..listed.len()).filter(|at| listed[*at]).collect();
        if order.len() < listed.len() {
            self.remap(&order);
        }
    }

    /// Each server's requests in the interval at position `at`, in the
    /// ring's order (NaN: not listed); none once dropped.
    fn requests(&self, at: usize) -> impl Iterator<Item = f32> + '_ {
        // The runs before it: those of the entries not yet emptied (an
        // emptied one has none, and nothing before it has any).
        let from: usize = self
            .kept
            .range(self.emptied.min(at)..at)
            .map(|k| k.words() as usize)
            .sum();
        let k = &self.kept[at];
        unpack(
            self.words.range(from..from + k.words() as usize).copied(),
            k.width(),
        )
        .take(self.names.len())
    }

    /// The interval at position `at` with its requests per server (none
    /// once dropped).
    pub fn expand(&self, at: usize) -> Interval {
        let mut i = self.kept[at].kept(self.base).totals();
        i.by_server = self.by_server(at).map(|(s, r)| (s.clone(), r)).collect();
        i
    }

    /// The requests per server of the interval at position `at`, without
    /// building a map (none once dropped).
    pub fn by_server(&self, at: usize) -> impl Iterator<Item = (&Name, f64)> + '_ {
        self.names
            .iter()
            .zip(self.requests(at))
            .filter(|(_, r)| !r.is_nan())
            .map(|(s, r)| (s, f64::from(r)))
    }

    /// The intervals, oldest first; an interval's position here is the
    /// one `expand` and `by_server` take.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Kept> + ExactSizeIterator + '_ {
        self.kept.iter().map(|k| k.kept(self.base))
    }

    pub fn back(&self) -> Option<Kept> {
        self.kept.back().map(|k| k.kept(self.base))
    }

    pub fn len(&self) -> usize {
        self.kept.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::packed::Width;

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
        // Room made once for a full ring, not doubled past it (128).
        assert!(
            ring.kept.capacity() <= RING_S as usize + 3,
            "{}",
            ring.kept.capacity()
        );
        let shares = SHARES_KEPT_S as usize + 3;
        assert!(
            ring.words.capacity() <= 2 * shares,
            "{}",
            ring.words.capacity()
        );
        let full = ring.expand(ring.len() - 1);
        assert_eq!(full.by_server.len(), 1, "a is not listed: {full:?}");
        assert_eq!(full.by_server["b"], 2.0);
        assert_eq!(full.requests, 2.0);
        assert!(ring.expand(0).by_server.is_empty(), "dropped");
        let with = (0..ring.len())
            .filter(|at| !ring.expand(*at).by_server.is_empty())
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
        for (at, k) in ring
            .iter()
            .enumerate()
            .skip(ring.len() - SHARES_KEPT_S as usize)
        {
            let t = (k.ts().unwrap().secs_since(Timestamp::from_micros(0))).round() as i64;
            let got: Vec<(String, f64)> = ring
                .by_server(at)
                .map(|(s, r)| (s.to_string(), r))
                .collect();
            let mut want = vec![("a".into(), 1.0), ("b".into(), t as f64), (name(t), 3.0)];
            want.sort_by(|x, y| x.0.cmp(&y.0));
            let mut got = got;
            got.sort_by(|x, y| x.0.cmp(&y.0));
            assert_eq!(got, want, "at {t}");
        }
    }

    /// A pool whose names grow past twice its listed servers is looked
    /// over at most every quarter of the shares' span, not at every
    /// interval (each look unpacks a minute of requests).
    #[test]
    fn departed_servers_are_looked_for_at_most_every_quarter_span() {
        let mut ring = Ring::default();
        let mut looks = Vec::new();
        let mut most = 0;
        for t in 0..600 {
            // A new pod each second, beside two that stay.
            let pod = format!("pod-{t}");
            let counts = [("a", 1.0), ("b", 2.0), (pod.as_str(), 3.0)];
            ring.push(
                interval(t, &counts),
                false,
                Timestamp::from_micros(t * 1_000_000),
            );
            if ring.looked == Some(Timestamp::from_micros(t * 1_000_000)) {
                looks.push(t);
            }
            most = most.max(ring.names.len());
        }
        let gaps: Vec<i64> = looks.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(looks.len() >= 30, "looked {} times", looks.len());
        let quarter = (SHARES_KEPT_S / 4.0) as i64;
        assert!(gaps.iter().all(|g| *g >= quarter), "{gaps:?}");
        // Names pile up only for a quarter span between looks.
        assert!(
            most <= 2 + SHARES_KEPT_S as usize + 3 + quarter as usize,
            "{most}"
        );
    }

    /// Counts below 255 are kept in a byte, those that fit a `u16` in a
    /// word, others (large, or not whole) in two; either way each server
    /// gets back what it had, and a server not listed stays unlisted (an
    /// odd count of bytes included).
    #[test]
    fn requests_come_back_as_they_were_pushed_in_bytes_or_words() {
        let mut ring = Ring::default();
        let cases: [&[(&str, f64)]; 6] = [
            &[("a", 0.0), ("b", 65_534.0), ("c", 7.0)],
            &[("a", 65_535.0), ("c", 1.0)],
            &[("b", 2.5), ("c", 3_000_000.0)],
            &[("c", 12.0)],
            &[("a", 254.0), ("b", 255.0)],
            &[("a", 254.0), ("c", 0.0)],
        ];
        for (t, counts) in cases.iter().enumerate() {
            let t = t as i64;
            ring.push(
                interval(t, counts),
                false,
                Timestamp::from_micros(t * 1_000_000),
            );
        }
        let widths: Vec<(Width, u32)> = ring.kept.iter().map(|k| (k.width(), k.words())).collect();
        // c's lookup moved it before the servers it was listed after, and
        // the intervals before were packed again in that order (a trailing server not listed takes no room).
        assert_eq!(
            widths,
            [
                (Width::Narrow, 3),
                (Width::Wide, 4),
                (Width::Wide, 6),
                (Width::Byte, 1),
                (Width::Narrow, 3),
                (Width::Byte, 1)
            ]
        );
        for (at, counts) in cases.iter().enumerate() {
            let mut got: Vec<(&str, f64)> = ring.by_server(at).map(|(s, r)| (&**s, r)).collect();
            got.sort_by(|a, b| a.0.cmp(b.0));
            assert_eq!(got, *counts);
        }
    }

    /// The byte that pads an odd count is no server: a pool of one keeps
    /// its one name, and no second slot shows.
    #[test]
    fn the_padding_of_an_odd_count_is_no_server() {
        let mut ring = Ring::default();
        for t in 0..3 {
            let now = Timestamp::from_micros(t * 1_000_000);
            ring.push(interval(t, &[("a", 9.0)]), false, now);
        }
        assert_eq!(ring.words.len(), 3, "a byte each, padded to a word");
        ring.forget_departed();
        assert_eq!(ring.names.len(), 1);
        let got: Vec<Vec<f32>> = (0..3).map(|at| ring.requests(at).collect()).collect();
        assert_eq!(got, [[9.0], [9.0], [9.0]]);
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
        let by_server: Vec<Vec<(&str, f64)>> = (0..ring.len())
            .map(|at| ring.by_server(at).map(|(s, r)| (&**s, r)).collect())
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

    /// After a gap longer than the ring, the intervals dropped at once take
    /// their requests per server with them: the next one reads its own.
    #[test]
    fn a_gap_drops_intervals_with_their_requests() {
        let mut ring = Ring::default();
        let at = |t: i64| Timestamp::from_micros(t * 1_000_000);
        for t in 0..5 {
            ring.push(interval(t, &[("a", 1.0), ("b", 2.0)]), false, at(t));
        }
        ring.push(
            interval(500, &[("a", 70_000.0), ("b", 4.0)]),
            false,
            at(500),
        );
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.words.len(), 4, "one wide interval of two servers");
        let got: Vec<(&str, f64)> = ring.by_server(0).map(|(s, r)| (&**s, r)).collect();
        assert_eq!(got, [("a", 70_000.0), ("b", 4.0)]);
    }

    /// An interval far shorter than its scrapes' (a late scrape, then one
    /// on time) asks for no more room than one of a second.
    #[test]
    fn a_very_short_interval_asks_for_bounded_room() {
        let mut ring = Ring::default();
        let at = |us: i64| Timestamp::from_micros(1_000_000_000 + us);
        ring.push(interval(1000, &[("a", 1.0)]), false, at(0));
        let mut short = interval(1000, &[("a", 1.0)]);
        short.ts = Some(at(1));
        short.seconds = 1e-6;
        ring.push(short, false, at(1));
        assert!(
            ring.kept.capacity() <= RING_S as usize + 3,
            "{}",
            ring.kept.capacity()
        );
        assert!(
            ring.words.capacity() <= SHARES_KEPT_S as usize + 3,
            "{}",
            ring.words.capacity()
        );
    }

    /// Ends are kept to the microsecond across the base's moves (a `u32`
    /// of microseconds spans 71 minutes; these three hours move it twice).
    #[test]
    fn ends_are_kept_exactly_as_the_base_moves() {
        let mut ring = Ring::default();
        let at = |t: i64| Timestamp::from_micros(t * 1_000_000 + 7);
        for t in (0..3 * 3600).step_by(30) {
            let mut i = interval(0, &[("a", 1.0)]);
            i.ts = Some(at(t));
            i.seconds = 30.0;
            ring.push(i, false, at(t));
            let ends: Vec<Timestamp> = ring.iter().filter_map(|k| k.ts()).collect();
            let first = (t - 120).max(0);
            let want: Vec<Timestamp> = (first..=t).step_by(30).map(at).collect();
            assert_eq!(ends, want, "at {t}");
        }
        assert!(ring.base > at(3 * 3600 - 4295), "{:?}", ring.base);
    }

    /// A clock that goes back by seconds: the base moves back with it,
    /// and every end stays exact.
    #[test]
    fn a_clock_that_goes_back_keeps_every_end() {
        let mut ring = Ring::default();
        let at = |t: i64| Timestamp::from_micros(t * 1_000_000 + 3);
        for t in [1000, 1001, 990] {
            let mut i = interval(t, &[("a", 1.0)]);
            i.ts = Some(at(t));
            ring.push(i, false, at(t));
        }
        let ends: Vec<Option<Timestamp>> = ring.iter().map(|k| k.ts()).collect();
        assert_eq!(ends, [Some(at(1000)), Some(at(1001)), Some(at(990))]);
        assert_eq!(ring.base, at(990));
    }

    /// A clock that jumps by hours: the intervals before cannot be kept
    /// with the one after, which is kept alone, and read back.
    #[test]
    fn a_clock_jump_of_hours_keeps_the_interval_after_it() {
        for (before, after) in [(10_000, 100), (100, 10_000)] {
            let mut ring = Ring::default();
            let at = |t: i64| Timestamp::from_micros(t * 1_000_000);
            for t in [before - 1, before] {
                ring.push(interval(t, &[("a", 1.0), ("b", 2.0)]), false, at(t));
            }
            ring.push(interval(after, &[("a", 5.0)]), true, at(after));
            let kept: Vec<(Option<Timestamp>, bool)> =
                ring.iter().map(|k| (k.ts(), k.abnormal)).collect();
            assert_eq!(kept, [(Some(at(after)), true)]);
            let got: Vec<(&str, f64)> = ring.by_server(0).map(|(s, r)| (&**s, r)).collect();
            assert_eq!(got, [("a", 5.0)]);
        }
    }
}
