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

/// One interval as kept: its totals, and how many of the ring's words hold
/// each server's requests. 32 bytes, for a ring of 120 a pool: the time is
/// kept without an `Option`, and the requests and 5xx as `f32` (whole
/// counts are exact to 16 million an interval). The length stays an `f64`:
/// an incident's start is an interval's end less its length, and the
/// interval that ends there must still be counted in it.
#[derive(Debug, Clone)]
pub struct Kept {
    ts: Timestamp,
    seconds: f64,
    requests_total: f32,
    errors: f32,
    /// The ring's words that hold its requests per server (see
    /// `Ring::words`); none once dropped.
    words: u32,
    has_ts: bool,
    /// How its counts are packed in the words.
    width: Width,
    reload: bool,
    /// Abnormal against the pool's usual self when it came, or a reload.
    pub abnormal: bool,
}

/// How an interval's counts are packed in the ring's words. Counts in an
/// interval are whole numbers, nearly always below 65,535 at a scrape
/// every few seconds, and at a scrape a second most servers of a fleet
/// take fewer than 255: such counts take a byte (two a word), the others
/// a word, as `u16`; any other (larger, or not whole) two, as an `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    Byte,
    Narrow,
    Wide,
}

/// A server not listed in the interval, in narrow words and in bytes.
const NOT_LISTED: u16 = u16::MAX;
const NOT_LISTED_BYTE: u8 = u8::MAX;

impl Width {
    /// The narrowest that holds each of `requests` (NaN: not listed).
    fn of(requests: &[f32]) -> Width {
        let whole_below =
            |r: f32, limit: f32| r.is_nan() || (r >= 0.0 && r < limit && r.fract() == 0.0);
        if requests
            .iter()
            .all(|r| whole_below(*r, f32::from(NOT_LISTED_BYTE)))
        {
            Width::Byte
        } else if requests
            .iter()
            .all(|r| whole_below(*r, f32::from(NOT_LISTED)))
        {
            Width::Narrow
        } else {
            Width::Wide
        }
    }

    /// Words for `n` counts.
    fn words(self, n: usize) -> usize {
        match self {
            Width::Byte => n.div_ceil(2),
            Width::Narrow => n,
            Width::Wide => 2 * n,
        }
    }
}

/// Appends each server's requests (NaN: not listed) to `words` as `Kept`
/// keeps them, at the narrowest `Width` that holds them all; how many
/// words, and the width.
/// `runs`: how many intervals like this one the buffer will hold, for room
/// made at once.
fn pack(requests: &[f32], words: &mut VecDeque<u16>, runs: usize) -> (u32, Width) {
    let width = Width::of(requests);
    let before = words.len();
    let needed = width.words(requests.len());
    if words.capacity() < before + needed {
        words.reserve_exact(more(words.len(), needed * runs, needed));
    }
    match width {
        Width::Byte => {
            let byte = |r: Option<&f32>| match r {
                Some(r) if !r.is_nan() => *r as u8,
                _ => NOT_LISTED_BYTE,
            };
            // An odd count ends with a byte for a server not listed.
            for pair in requests.chunks(2) {
                words.push_back(u16::from_be_bytes([byte(pair.first()), byte(pair.get(1))]));
            }
        }
        Width::Narrow => {
            words.extend(
                requests
                    .iter()
                    .map(|r| if r.is_nan() { NOT_LISTED } else { *r as u16 }),
            );
        }
        Width::Wide => {
            for r in requests {
                let b = r.to_bits();
                words.extend([(b >> 16) as u16, b as u16]);
            }
        }
    }
    ((words.len() - before) as u32, width)
}

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

/// Room to reserve in a buffer of `len` that will hold `full` (at least
/// `needed` more): made once, to its size, not doubled (a ring of 121
/// intervals would end in room for 128, and leave the room for 32 and 64
/// it outgrew to the allocator, for each of a fleet's 4,000 pools); past
/// that, an eighth more.
fn more(len: usize, full: usize, needed: usize) -> usize {
    full.saturating_sub(len).max(needed).max(len / 8)
}

/// The requests of `words`, packed by `pack` (NaN: not listed; bytes may
/// end with one more, for the padding).
fn unpack(words: impl Iterator<Item = u16>, width: Width) -> impl Iterator<Item = f32> {
    let mut words = words;
    let mut second: Option<u8> = None;
    let byte = |b: u8| {
        if b == NOT_LISTED_BYTE {
            f32::NAN
        } else {
            f32::from(b)
        }
    };
    std::iter::from_fn(move || {
        if let Some(b) = second.take() {
            return Some(byte(b));
        }
        let first = words.next()?;
        Some(match width {
            Width::Byte => {
                let [hi, lo] = first.to_be_bytes();
                second = Some(lo);
                byte(hi)
            }
            Width::Narrow if first == NOT_LISTED => f32::NAN,
            Width::Narrow => f32::from(first),
            Width::Wide => {
                let lo = words.next().unwrap_or(0);
                f32::from_bits(u32::from(first) << 16 | u32::from(lo))
            }
        })
    })
}

impl Kept {
    pub fn ts(&self) -> Option<Timestamp> {
        self.has_ts.then_some(self.ts)
    }

    /// The interval's totals (its `by_server` left empty).
    pub fn totals(&self) -> Interval {
        Interval {
            ts: self.ts(),
            seconds: self.seconds,
            requests: f64::from(self.requests_total),
            // Past 16 million, the f32's rounding could exceed the requests.
            errors: f64::from(self.errors.min(self.requests_total)),
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
    /// The requests per server of `kept[emptied..]`, each interval's run
    /// of `Kept::words` after the one before: one buffer a pool, not one
    /// an interval (each with its allocation's overhead).
    words: VecDeque<u16>,
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
        let runs = intervals_in(SHARES_KEPT_S, i.seconds);
        let (words, width) = pack(&requests, &mut self.words, runs);
        if self.kept.len() == self.kept.capacity() {
            let room = more(self.kept.len(), intervals_in(RING_S, i.seconds), 1);
            self.kept.reserve_exact(room);
        }
        self.kept.push_back(Kept {
            ts: i.ts.unwrap_or(now),
            has_ts: i.ts.is_some(),
            width,
            seconds: i.seconds,
            requests_total: i.requests as f32,
            errors: i.errors as f32,
            reload: i.reload,
            abnormal,
            words,
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

    /// Drops the intervals older than `RING_S`, and the requests per
    /// server of those older than `SHARES_KEPT_S`.
    fn forget_old(&mut self, now: Timestamp) {
        let age = |k: &Kept| k.ts().map_or(0.0, |t| now.secs_since(t));
        while self.kept.front().is_some_and(|k| age(k) > RING_S) {
            if let Some(k) = self.kept.pop_front() {
                if self.emptied == 0 {
                    self.words.drain(..k.words as usize);
                }
            }
            self.emptied = self.emptied.saturating_sub(1);
        }
        while let Some(k) = self.kept.get_mut(self.emptied) {
            if age(k) <= SHARES_KEPT_S {
                break;
            }
            self.words.drain(..k.words as usize);
            k.words = 0;
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
            let run = self.words.range(from..from + k.words as usize).copied();
            from += k.words as usize;
            let values: Vec<f32> = unpack(run, k.width).collect();
            let mut out: Vec<f32> = order
                .iter()
                .map(|&at| values.get(at).copied().unwrap_or(f32::NAN))
                .collect();
            while out.last().is_some_and(|r| r.is_nan()) {
                out.pop();
            }
            (k.words, k.width) = pack(&out, &mut words, 1);
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
            .map(|k| k.words as usize)
            .sum();
        let k = &self.kept[at];
        unpack(
            self.words.range(from..from + k.words as usize).copied(),
            k.width,
        )
        .take(self.names.len())
    }

    /// The interval at position `at` with its requests per server (none
    /// once dropped).
    pub fn expand(&self, at: usize) -> Interval {
        let mut i = self.kept[at].totals();
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
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Kept> + ExactSizeIterator {
        self.kept.iter()
    }

    pub fn back(&self) -> Option<&Kept> {
        self.kept.back()
    }

    pub fn len(&self) -> usize {
        self.kept.len()
    }
}

const _: () = assert!(std::mem::size_of::<Kept>() == 32);

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
        let widths: Vec<(Width, u32)> = ring.iter().map(|k| (k.width, k.words)).collect();
        // c's lookup moved it first, and the intervals before were packed
        // again in that order (a trailing server not listed takes no room).
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
}
