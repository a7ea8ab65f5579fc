//! A server's optional signals (what only some LBs publish): the counters'
//! deltas and the gauges of the latest scrape, and the state of the checks
//! that read them.

use super::evidence::Quiet;
use super::flapping::Flaps;
use super::latency::LatencyTrack;
use super::maybe::Maybe;
use super::saturation::SaturationTrack;
use super::sparse::SparseTrack;
use crate::model::ServerStat;

/// An optional counter: its last value, and what it did in the interval.
/// 16 bytes, not 32: a server has four, so the `Option`s are flags and the
/// delta a `u32` (counts within an interval, saturating at 4 billion).
/// Snapshots keep the layout with `Option`s (`SavedCounter`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(from = "SavedCounter", into = "SavedCounter")]
pub struct Counter {
    last: u64,
    delta: u32,
    has_last: bool,
    has_delta: bool,
}

const _: () = assert!(std::mem::size_of::<Counter>() == 16);

impl Counter {
    /// The counter's value `now` in a scrape where the server was `known`
    /// (listed before): a counter that went down counts from zero.
    fn take(&mut self, now: Option<u64>, known: bool) {
        let delta = match (now, self.last()) {
            (Some(n), Some(l)) if known => Some(n.checked_sub(l).unwrap_or(n)),
            _ => None,
        };
        self.has_delta = delta.is_some();
        self.delta = delta.map_or(0, |d| u32::try_from(d).unwrap_or(u32::MAX));
        self.has_last = now.is_some();
        self.last = now.unwrap_or(0);
    }

    fn last(&self) -> Option<u64> {
        self.has_last.then_some(self.last)
    }

    /// What it did in the interval: `None` when the LB does not publish
    /// it, or on the first sample.
    pub fn delta(&self) -> Option<f64> {
        self.has_delta.then_some(f64::from(self.delta))
    }
}

/// A counter as snapshots keep it.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedCounter {
    last: Option<u64>,
    delta: Option<f64>,
}

impl From<Counter> for SavedCounter {
    fn from(c: Counter) -> SavedCounter {
        SavedCounter {
            last: c.last(),
            delta: c.delta(),
        }
    }
}

impl From<SavedCounter> for Counter {
    fn from(s: SavedCounter) -> Counter {
        let delta = s.delta.filter(|d| d.is_finite() && *d >= 0.0);
        Counter {
            last: s.last.unwrap_or(0),
            has_last: s.last.is_some(),
            // A float's cast saturates: no wrap for a value past u32.
            delta: delta.map_or(0, |d| d as u32),
            has_delta: delta.is_some(),
        }
    }
}

/// A gauge as the detector takes it: a value that is no measurement (NaN,
/// infinite, negative: a recording may hold one) is no value.
fn gauge(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x >= 0.0)
}

/// A server's signals: its health-check flaps (every LB says up or down),
/// and what only some LBs publish, kept only for servers whose LB does:
/// most never need the room.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Signals {
    pub flaps: Flaps,
    pub lb: Option<Box<Published>>,
}

/// The optional signals of the latest scrape and the checks on them.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Published {
    pub responses_4xx: Counter,
    pub connection_errors: Counter,
    pub response_errors: Counter,
    pub retries: Counter,
    /// Gauges: 8 bytes each, not an `Option`'s 16 (a fleet has a hundred
    /// thousand servers).
    pub response_ms: Maybe,
    pub queue: Maybe,
    pub sessions: Maybe,
    pub session_limit: Maybe,
    /// Connection and response errors against attempts: the ErrorSpike a
    /// server raises when retries hide its failures from clients. Small
    /// while the server has failed none.
    pub failures: SparseTrack<Quiet>,
    /// LatencySpike's and Saturation's state, made when its pool is first
    /// checked (a pool is only once one of its servers publishes a
    /// response time, or a session limit): many pools publish no session
    /// limit, some no response time, and the two took 168 of this
    /// struct's 520 bytes. Unmade, each is the default it would still be.
    #[serde(with = "made_or_default")]
    pub latency: Option<Box<LatencyTrack>>,
    #[serde(with = "made_or_default")]
    pub saturation: Option<Box<SaturationTrack>>,
}

/// A track made only once used, kept in snapshots as the track (its
/// default while unmade), the layout from before; one read back as its
/// default stays unmade.
mod made_or_default {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize + Default>(
        t: &Option<Box<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => t.serialize(s),
            None => T::default().serialize(s),
        }
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Box<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + Default + PartialEq,
    {
        let t = T::deserialize(d)?;
        Ok((t != T::default()).then(|| Box::new(t)))
    }
}

/// Whether the row carries any optional signal.
fn publishes(row: &ServerStat) -> bool {
    row.responses_4xx_total.is_some()
        || row.connection_errors_total.is_some()
        || row.response_errors_total.is_some()
        || row.retries_total.is_some()
        || row.response_time_ms.is_some()
        || row.queue_current.is_some()
        || row.sessions_current.is_some()
        || row.session_limit.is_some()
}

impl Signals {
    /// The row's signals; `known`: the server was listed in the scrape
    /// before, so its counters have deltas.
    pub fn take(&mut self, row: &ServerStat, known: bool) {
        if self.lb.is_none() && !publishes(row) {
            return;
        }
        let p = self.lb.get_or_insert_with(Default::default);
        p.responses_4xx.take(row.responses_4xx_total, known);
        p.connection_errors.take(row.connection_errors_total, known);
        p.response_errors.take(row.response_errors_total, known);
        p.retries.take(row.retries_total, known);
        p.response_ms = gauge(row.response_time_ms).into();
        p.queue = gauge(row.queue_current).into();
        p.sessions = gauge(row.sessions_current).into();
        p.session_limit = gauge(row.session_limit).filter(|&l| l > 0.0).into();
    }
}

impl Published {
    /// Failed attempts in the interval, and of them those that are no
    /// request of the server's own count, when the LB publishes any of
    /// their counters. A refused connection shows as a connection error,
    /// or (HAProxy with `option redispatch`) only as a retry or redispatch:
    /// the larger of the two counts it, so one that shows as both is not
    /// counted twice. Broken responses add to it.
    pub fn failed_attempts(&self) -> Option<(f64, f64)> {
        let (c, r, retried) = (
            self.connection_errors.delta(),
            self.response_errors.delta(),
            self.retries.delta(),
        );
        if c.is_none() && r.is_none() && retried.is_none() {
            return None;
        }
        let refused = c.unwrap_or(0.0).max(retried.unwrap_or(0.0));
        Some((refused + r.unwrap_or(0.0), refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshots are postcard, where fields go by their order: a counter is
    /// written as the `Option`s it was before, and read back from them.
    #[test]
    fn counters_keep_the_snapshot_layout_from_before() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Before {
            last: Option<u64>,
            delta: Option<f64>,
        }
        let mut c = Counter::default();
        c.take(Some(10), false);
        c.take(Some(15), true);
        let before = Before {
            last: Some(15),
            delta: Some(5.0),
        };
        let written = postcard::to_allocvec(&before).unwrap();
        assert_eq!(postcard::to_allocvec(&c).unwrap(), written);
        let read: Counter = postcard::from_bytes(&written).unwrap();
        assert_eq!((read.last(), read.delta()), (Some(15), Some(5.0)));
    }

    /// Unmade tracks are written as their defaults, the layout from
    /// before, and read back unmade; a used one comes back as it was.
    #[test]
    fn tracks_made_only_when_used_keep_the_snapshot_layout() {
        let unmade = Published::default();
        let made = Published {
            latency: Some(Box::default()),
            saturation: Some(Box::default()),
            ..Published::default()
        };
        let written = postcard::to_allocvec(&unmade).unwrap();
        assert_eq!(postcard::to_allocvec(&made).unwrap(), written);
        let read: Published = postcard::from_bytes(&written).unwrap();
        assert!(read.latency.is_none() && read.saturation.is_none());
        let mut used = made;
        used.saturation
            .as_deref_mut()
            .unwrap()
            .verdict(9.0, 10.0, 0.0, 1.0);
        let written = postcard::to_allocvec(&used).unwrap();
        let read: Published = postcard::from_bytes(&written).unwrap();
        assert_eq!(read.saturation, used.saturation);
        assert!(read.latency.is_none());
    }

    #[test]
    fn counters_have_deltas_once_known_and_count_from_zero_after_a_reset() {
        let mut c = Counter::default();
        c.take(Some(10), false);
        assert_eq!(c.delta(), None);
        c.take(Some(15), true);
        assert_eq!(c.delta(), Some(5.0));
        c.take(Some(3), true);
        assert_eq!(c.delta(), Some(3.0));
        let saved: Counter = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!((saved.last(), saved.delta()), (Some(3), Some(3.0)));
        c.take(Some(3 + (1 << 40)), true);
        assert_eq!(c.delta(), Some(f64::from(u32::MAX)), "saturates");
        c.take(None, true);
        assert_eq!(c.delta(), None);
        c.take(Some(7), true);
        assert_eq!(c.delta(), None, "no last value to count from");
        assert_eq!(gauge(Some(f64::NAN)), None);
        assert_eq!(gauge(Some(-1.0)), None);
        assert_eq!(gauge(Some(2.5)), Some(2.5));
    }
}
