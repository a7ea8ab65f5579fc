//! LatencySpike: a server (or a whole pool) answering far slower than its
//! own baseline.
//!
//! What the LB publishes is its own moving average (HAProxy's `rtime` moves
//! by 1/1024 per request), so one slow burst keeps the average up for as
//! long as it takes the LB to forget it: minutes at a few requests per
//! second. A fault is told from such a burst by the latency of each
//! interval on its own, recovered from two averages and the requests
//! between them: a burst raises one or two intervals, a fault every one.

use super::lifecycle::{Lifecycle, Verdict};
use super::stats::decay;

/// Slower than this multiple of the usual average ...
pub const LATENCY_RATIO: f64 = 3.0;
/// ... and by at least this many milliseconds.
pub const LATENCY_MIN_INCREASE_MS: f64 = 100.0;
/// Consecutive intervals that must each be slow on their own.
const SLOW_INTERVALS: u32 = 3;
/// Two slow intervals in a row are a level, not a burst's edges, when the
/// faster is at least this fraction of the slower.
const STEADY: f64 = 0.6;
/// The averaging the LBs do: the weight of one request.
const AVERAGE_OVER: f64 = 1024.0;
/// Requests after a reload before the LB's average means anything (it
/// restarts from nothing).
const SETTLE_REQUESTS: f64 = 64.0;
/// Requests a span of intervals needs for its own latency to be told
/// apart: the LB rounds its average to the millisecond, and the span's own
/// latency is recovered from the average's change over the span's weight
/// (5% at 50 requests), so fewer would turn rounding into hundreds of ms.
const MIN_SPAN_REQUESTS: f64 = 50.0;

/// Whether `ms` is far above `usual`.
pub fn slow(ms: f64, usual: f64) -> bool {
    ms >= LATENCY_RATIO * usual && ms >= usual + LATENCY_MIN_INCREASE_MS
}

/// What one interval showed of a server's response time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyLook {
    /// The LB's average now, and the usual one.
    pub ms: f64,
    pub usual_ms: f64,
    /// The average is slow, and has been slow interval after interval.
    pub slow: bool,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyTrack {
    /// Log of the usual average, learnt while nothing is slow.
    usual_log: f64,
    learnt_s: f64,
    prev_ms: Option<f64>,
    /// The average when the span being judged began, and the requests
    /// since: at a few requests per interval, intervals are joined until
    /// they hold enough to tell their own latency.
    span_start_ms: Option<f64>,
    span_requests: f64,
    /// Requests since the LB's average restarted.
    since_reset: f64,
    /// Consecutive intervals that were slow on their own, and whether the
    /// last two were about as slow as each other.
    streak: u32,
    steady: bool,
    last_own: f64,
    pub life: Lifecycle,
}

impl LatencyTrack {
    /// One interval: the LB's average `ms` after `requests`; `reset` when
    /// the average restarted (a reload, a server new to the pool).
    /// `armed_after` is the healthy time the baseline needs.
    pub fn observe(
        &mut self,
        ms: Option<f64>,
        requests: f64,
        reset: bool,
        armed_after: f64,
    ) -> Option<LatencyLook> {
        if reset {
            self.since_reset = 0.0;
            self.prev_ms = None;
            self.span_start_ms = None;
            self.span_requests = 0.0;
            self.streak = 0;
        }
        self.since_reset += requests;
        let Some(ms) = ms else {
            self.span_start_ms = None;
            return None;
        };
        self.prev_ms = Some(ms);
        let Some(start) = self.span_start_ms else {
            self.span_start_ms = Some(ms);
            self.span_requests = 0.0;
            return None;
        };
        self.span_requests += requests;
        // A server that answers within the millisecond shows 0: a value,
        // once the average has requests behind it.
        if self.since_reset < SETTLE_REQUESTS || self.learnt_s < armed_after {
            self.span_start_ms = Some(ms);
            self.span_requests = 0.0;
            return None;
        }
        let usual = self.usual_log.exp();
        if self.span_requests >= MIN_SPAN_REQUESTS {
            let weight = 1.0 - (1.0 - 1.0 / AVERAGE_OVER).powf(self.span_requests);
            let own = (ms - (1.0 - weight) * start) / weight;
            self.streak = if slow(own, usual) { self.streak + 1 } else { 0 };
            // A fault's intervals are alike; a burst's edges are each part
            // slow, and no two alike.
            let (lo, hi) = (own.min(self.last_own), own.max(self.last_own));
            self.steady = lo > 0.0 && lo >= STEADY * hi;
            self.last_own = own;
            self.span_start_ms = Some(ms);
            self.span_requests = 0.0;
        }
        Some(LatencyLook {
            ms,
            usual_ms: usual,
            slow: slow(ms, usual) && self.streak >= SLOW_INTERVALS && self.steady,
        })
    }

    /// The usual average, once anything was learnt.
    pub fn usual_ms(&self) -> Option<f64> {
        (self.learnt_s > 0.0).then(|| self.usual_log.exp())
    }

    /// Learns the usual average over `tau` seconds, unless something is
    /// slow (the baseline never learns the fault).
    pub fn learn(&mut self, dt: f64, tau: f64, frozen_too_long: bool) {
        let Some(ms) = self.prev_ms else {
            return;
        };
        // Logs of at least a millisecond: "usually 0 ms" would make any
        // time infinitely slower.
        let log = ms.max(1.0).ln();
        if self.since_reset < SETTLE_REQUESTS {
            return;
        }
        let calm = !self.life.active() && self.streak == 0;
        if self.learnt_s == 0.0 {
            self.usual_log = log;
        } else if calm || frozen_too_long {
            let w = decay(dt, tau);
            self.usual_log = w * self.usual_log + (1.0 - w) * log;
        } else {
            return;
        }
        self.learnt_s += dt;
    }

    /// The check's verdict on `look`, given whether the server stands out
    /// from its peers.
    pub fn verdict(look: Option<LatencyLook>, apart: bool) -> Verdict {
        match look {
            None => Verdict::Hold,
            Some(l) if l.slow && apart => Verdict::Fire,
            Some(_) => Verdict::Clear,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut LatencyTrack, series: &[f64], requests: f64) -> Vec<bool> {
        series
            .iter()
            .map(|&ms| {
                let look = t.observe(Some(ms), requests, false, 60.0);
                t.learn(10.0, 600.0, false);
                look.is_some_and(|l| l.slow)
            })
            .collect()
    }

    #[test]
    fn a_lasting_slowdown_is_slow_and_a_fading_burst_is_not() {
        let mut t = LatencyTrack::default();
        run(&mut t, &[30.0; 30], 200.0);
        // A burst: one interval of slow requests lifts the average, which
        // then fades as the LB forgets it (200 requests per interval).
        let w = 1.0 - (1.0 - 1.0 / AVERAGE_OVER).powf(200.0);
        let mut avg = 30.0;
        let mut burst = Vec::new();
        for own in [600.0, 30.0, 30.0, 30.0, 30.0, 30.0] {
            avg = (1.0 - w) * avg + w * own;
            burst.push(avg);
        }
        assert!(burst[1] > 90.0, "the average stays up: {burst:?}");
        assert_eq!(run(&mut t, &burst, 200.0), [false; 6]);
        // A fault: every interval slow.
        let mut fault = Vec::new();
        for _ in 0..8 {
            avg = (1.0 - w) * avg + w * 600.0;
            fault.push(avg);
        }
        let seen = run(&mut t, &fault, 200.0);
        assert!(seen[4..].iter().all(|&s| s), "{seen:?} over {fault:?}");
    }
}
