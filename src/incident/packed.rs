//! How the incident ring packs what it keeps: each interval in 20 bytes
//! (`Stored`), and each server's requests in bytes or words of a buffer
//! the pool's intervals share (`pack`, `unpack`). A fleet's 4,000 pools
//! keep 120 intervals each, and 100,000 servers a minute of requests.

use std::collections::VecDeque;

use super::lb_events::Interval;
use crate::model::Timestamp;

/// One interval as the ring shows it: its end, length and totals, and
/// whether it looked abnormal when it came.
#[derive(Debug, Clone, Copy)]
pub struct Kept {
    ts: Timestamp,
    seconds: f64,
    requests_total: f32,
    errors: f32,
    has_ts: bool,
    reload: bool,
    /// Abnormal against the pool's usual self when it came, or a reload.
    pub abnormal: bool,
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

/// One interval as the ring keeps it: 20 bytes, not the 32 of a `Kept`,
/// for a ring of 120 a pool. Its end is kept in microseconds after the
/// ring's base (a `u32` spans 71 minutes; the ring, two), its requests and
/// 5xx as `f32` (whole counts are exact to 16 million an interval), and its
/// flags with its words in one `u32`. Its length is kept in microseconds
/// too, and reads back as the very `f64` it was made from (samples are
/// timed to the microsecond): an incident's start is an interval's end
/// less its length, and the interval that ends there must still be
/// counted in it. A length past a `u32` of microseconds (a target that
/// could not be scraped for hours) is kept in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    /// Microseconds, or milliseconds when `LONG`: see `length_of`.
    length: u32,
    /// Microseconds after the ring's base.
    pub end: u32,
    requests_total: f32,
    errors: f32,
    /// Its words (the low bits, `MAX_WORDS` at most: see `Ring::words`;
    /// none once dropped), its width and flags.
    bits: u32,
}

const _: () = assert!(std::mem::size_of::<Stored>() == 20);

/// An interval's length: whole microseconds, as samples are timed, up to
/// 71 minutes; past that, milliseconds (`true`), up to 49 days. A
/// negative one (a clock that went back), or not a number, is kept as none.
fn length_of(seconds: f64) -> (u32, bool) {
    let micros = (seconds * 1e6).round();
    // Not a number: none, as `as` makes it.
    if micros.is_nan() || micros <= f64::from(u32::MAX) {
        return (micros.max(0.0) as u32, false);
    }
    (
        (seconds * 1e3).round().min(f64::from(u32::MAX)) as u32,
        true,
    )
}

/// Words an interval may take: a pool of 33 million servers, in `f32`s.
pub const MAX_WORDS: u32 = (1 << 26) - 1;
const LONG: u32 = 1 << 26;
const HAS_TS: u32 = 1 << 27;
const RELOAD: u32 = 1 << 28;
const ABNORMAL: u32 = 1 << 29;
const WIDTH_SHIFT: u32 = 30;

impl Stored {
    /// `i` ending `end` µs after the ring's base (`has_ts`: `i` had its
    /// time), with its requests per server in `words` of `width`.
    pub fn new(i: &Interval, end: u32, abnormal: bool, (words, width): (u32, Width)) -> Stored {
        let flag = |on: bool, bit: u32| if on { bit } else { 0 };
        let (length, long) = length_of(i.seconds);
        let mut s = Stored {
            length,
            end,
            requests_total: i.requests as f32,
            errors: i.errors as f32,
            bits: flag(i.ts.is_some(), HAS_TS)
                | flag(i.reload, RELOAD)
                | flag(abnormal, ABNORMAL)
                | flag(long, LONG),
        };
        s.set_run(words, width);
        s
    }

    pub fn words(&self) -> u32 {
        self.bits & MAX_WORDS
    }

    pub fn width(&self) -> Width {
        match self.bits >> WIDTH_SHIFT {
            0 => Width::Byte,
            1 => Width::Narrow,
            _ => Width::Wide,
        }
    }

    /// Its requests per server are now `words` of `width`.
    pub fn set_run(&mut self, words: u32, width: Width) {
        debug_assert!(words <= MAX_WORDS);
        let flags = self.bits & (HAS_TS | RELOAD | ABNORMAL | LONG);
        self.bits = flags | words.min(MAX_WORDS) | (width as u32) << WIDTH_SHIFT;
    }

    /// When it ended, for a ring based at `base`.
    pub fn end_at(&self, base: Timestamp) -> Timestamp {
        Timestamp::from_micros(base.micros() + i64::from(self.end))
    }

    /// As the ring shows it.
    pub fn kept(&self, base: Timestamp) -> Kept {
        Kept {
            ts: self.end_at(base),
            seconds: match self.bits & LONG {
                0 => f64::from(self.length) / 1e6,
                _ => f64::from(self.length) / 1e3,
            },
            requests_total: self.requests_total,
            errors: self.errors,
            has_ts: self.bits & HAS_TS != 0,
            reload: self.bits & RELOAD != 0,
            abnormal: self.bits & ABNORMAL != 0,
        }
    }
}

/// How an interval's counts are packed in the ring's words. Counts in an
/// interval are whole numbers, nearly always below 65,535 at a scrape
/// every few seconds, and at a scrape a second most servers of a fleet
/// take fewer than 255: such counts take a byte (two a word), the others
/// a word, as `u16`; any other (larger, or not whole) two, as an `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    Byte = 0,
    Narrow = 1,
    Wide = 2,
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

/// Appends each server's requests (NaN: not listed) to `words` as the ring
/// keeps them, at the narrowest `Width` that holds them all; how many
/// words, and the width.
/// `runs`: how many intervals like this one the buffer will hold, for room
/// made at once.
pub fn pack(requests: &[f32], words: &mut VecDeque<u16>, runs: usize) -> (u32, Width) {
    // A pool past 67 million servers keeps the requests of the first.
    let requests = &requests[..requests.len().min(MAX_WORDS as usize / 2)];
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

/// Room to reserve in a buffer of `len` that will hold `full` (at least
/// `needed` more): made once, to its size, not doubled (a ring of 121
/// intervals would end in room for 128, and leave the room for 32 and 64
/// it outgrew to the allocator, for each of a fleet's 4,000 pools); past
/// that, an eighth more.
pub fn more(len: usize, full: usize, needed: usize) -> usize {
    full.saturating_sub(len).max(needed).max(len / 8)
}

/// The requests of `words`, packed by `pack` (NaN: not listed; bytes may
/// end with one more, for the padding).
pub fn unpack(words: impl Iterator<Item = u16>, width: Width) -> impl Iterator<Item = f32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths made as the incident tracker makes them, from two times in
    /// microseconds, read back to the bit.
    #[test]
    fn an_intervals_length_reads_back_as_it_was_made() {
        let base = Timestamp::from_micros(1_700_000_000_000_000);
        for micros in [
            0,
            1,
            999_999,
            1_000_000,
            1_000_001,
            4_999_873,
            4_294_967_295,
        ] {
            let end = Timestamp::from_micros(base.micros() + micros);
            let i = Interval {
                ts: Some(end),
                seconds: end.secs_since(base),
                ..Interval::default()
            };
            let kept = Stored::new(&i, 0, false, (0, Width::Byte)).kept(base);
            assert_eq!(
                kept.totals().seconds.to_bits(),
                i.seconds.to_bits(),
                "{micros}"
            );
        }
        // Past 71 minutes, to the millisecond (its flags and run kept);
        // nonsense as none.
        let long = f64::from(u32::MAX) / 1e6 + 0.0015;
        for (seconds, back) in [
            (7200.0, 7200.0),
            (long, (long * 1e3).round() / 1e3),
            (1e9, f64::from(u32::MAX) / 1e3),
            (-1.0, 0.0),
            (f64::NAN, 0.0),
        ] {
            let i = Interval {
                seconds,
                reload: true,
                ..Interval::default()
            };
            let mut stored = Stored::new(&i, 0, true, (0, Width::Byte));
            stored.set_run(MAX_WORDS, Width::Wide);
            let kept = stored.kept(base);
            assert_eq!(kept.totals().seconds, back, "{seconds}");
            assert!(kept.abnormal && kept.reload && kept.ts().is_none());
            assert_eq!((stored.words(), stored.width()), (MAX_WORDS, Width::Wide));
        }
    }
}
