//! TrafficDrop: a load balancer (or one pool) that stopped passing traffic
//! while its stats still answer.
//!
//! Why it is not a comparison with the last few minutes: real traffic swings
//! 10x within the hour, surges last hours, and many services fall to almost
//! nothing for a few minutes several times a day. A drop detector that reads
//! "10% of the last five minutes" as an outage pages for all of these. This
//! one asks the question an engineer would: has this pool ever been this low
//! for this long, and is the silence long enough, at this volume, to rule
//! out one of its natural lulls?
//!
//! - **The usual level** is the median of per-minute rates over the last
//!   hour (`drop.baseline_window`, in 60 buckets). A median ignores a
//!   surge shorter than half the window and a lull of a few minutes; the
//!   level a run is judged against is the one from before the run began.
//! - **A stop** is a run of intervals whose requests stay at most
//!   `drop.ratio` (2%) of that level, plus one stray request: a blocked LB,
//!   not a partial dip. A partial drop, however deep a trough of the daily
//!   cycle it is, pages nobody.
//! - **Natural lulls are learnt.** Every stop that ends by itself without
//!   having paged is a lull of this pool; the longest (forgotten over
//!   `drop.lull_memory`) sets how long a stop must last before it pages:
//!   `drop.lull_margin` times longer, and at least `drop.min_duration`.
//! - **Evidence scales with volume.** Even with no lull on record, the stop
//!   must be significant (`drop.significance`) against a pool still running
//!   at `drop.lull_ratio` (7%) of its level: at 500 req/s one second of
//!   nothing settles it, at 2 req/s it takes about 80 s, at 0.5 req/s five
//!   minutes. That is what the detector does while history is short: with
//!   no lull on record, it waits as long as the volume needs, never less.
//! - **It resolves when the evidence is gone:** two intervals with traffic
//!   above the stop's depth.

use super::config::{DetectConfig, DropConfig};
use super::lifecycle::{Lifecycle, Persistence, Verdict};
use super::stats::{decay, poisson_at_most};

/// The hour's buckets (a minute each) and the day's (a quarter-hour each).
const HOUR_BUCKETS: usize = 60;
const DAY_BUCKETS: usize = 96;

/// A stop runs below this fraction of the day's lowest quarter-hour.
const FLOOR_FRACTION: f64 = 0.25;

/// The recent level's time constant, in minute buckets.
const RECENT_BUCKETS: f64 = 5.0;

/// The recent level counts as evidence up to this multiple of the usual
/// level: a surge that ends in a lull must not make the lull look decisive.
const RECENT_CAP: f64 = 4.0;

/// A stop spans at least this many intervals: one interval is a blip.
const MIN_INTERVALS: u32 = 2;

/// One stray request does not end a stop (a health check passing through,
/// a client retrying into the block).
const STRAY_REQUESTS: f64 = 1.0;

/// What a TrafficDrop rests on, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DropFinding {
    /// The rate over the stop so far.
    pub rate: f64,
    /// The usual level it is compared with.
    pub baseline_rate: f64,
    /// Seconds the stop has lasted.
    pub secs: f64,
    /// The longest natural lull on record, in seconds (0: none).
    pub longest_lull: f64,
}

impl DropFinding {
    /// ", longer than any of its natural lulls (longest 3m20s)", or why
    /// none is on record.
    pub fn lulls(&self) -> String {
        if self.longest_lull > 0.0 {
            format!(
                ", {:.1}x its longest natural lull ({})",
                self.secs / self.longest_lull,
                duration(self.longest_lull)
            )
        } else {
            String::new()
        }
    }
}

/// A drop fires as soon as its stop is long and significant enough (the
/// stop itself is the persistence), and resolves once two intervals in a
/// row carry traffic again.
pub fn drop_persistence() -> Persistence {
    Persistence {
        fire_after: 1,
        fire_after_s: 0.0,
        resolve_after_s: 0.0,
        resolve_after_samples: 2,
    }
}

/// "45s", "3m20s", "1h05m".
pub fn duration(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    match s {
        0..=99 => format!("{s}s"),
        100..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Per-bucket rates over a window, and their median.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Buckets {
    /// Closed buckets, a ring from `head` once full.
    rates: Vec<f32>,
    head: usize,
    /// The bucket being filled.
    requests: f64,
    secs: f64,
    /// Median and minimum of the closed buckets (before any closed: the
    /// open one's rate, and none).
    median: f64,
    min: Option<f64>,
}

impl Buckets {
    fn add(&mut self, requests: f64, dt: f64, bucket_secs: f64, capacity: usize) {
        self.requests += requests;
        self.secs += dt;
        if self.secs >= bucket_secs {
            let rate = (self.requests / self.secs) as f32;
            if self.rates.len() < capacity {
                self.rates.push(rate);
            } else {
                self.rates[self.head] = rate;
                self.head = (self.head + 1) % capacity;
            }
            self.requests = 0.0;
            self.secs = 0.0;
            self.median = median(&self.rates);
            self.min = self.rates.iter().copied().reduce(f32::min).map(f64::from);
        } else if self.rates.is_empty() {
            self.median = self.requests / self.secs;
        }
    }
}

/// What the pool's traffic usually is.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct History {
    /// Per-minute rates of the last `drop.baseline_window` (an hour).
    hour: Buckets,
    /// Quarter-hour rates of 24 such windows (a day): their minimum is the
    /// lowest the pool has run for a quarter of an hour.
    day: Buckets,
    /// Seconds of traffic seen.
    age: f64,
    /// The rate of the last few minutes (decayed), the best guess of what
    /// traffic would be now without a fault.
    recent: f64,
    /// The rate of the last minute (decayed): what a stop cuts from. A
    /// fault cuts traffic abruptly; a natural lull ramps down to its
    /// bottom, and this follows it down.
    last_minute: f64,
}

impl History {
    fn add(&mut self, requests: f64, dt: f64, window: f64) {
        let minute = window / HOUR_BUCKETS as f64;
        let (w, w1) = if self.age > 0.0 {
            (decay(dt, RECENT_BUCKETS * minute), decay(dt, minute))
        } else {
            (0.0, 0.0)
        };
        self.recent = self.recent * w + requests / dt * (1.0 - w);
        self.last_minute = self.last_minute * w1 + requests / dt * (1.0 - w1);
        self.age += dt;
        self.hour.add(requests, dt, minute, HOUR_BUCKETS);
        self.day.add(
            requests,
            dt,
            24.0 * window / DAY_BUCKETS as f64,
            DAY_BUCKETS,
        );
    }

    fn usual(&self) -> f64 {
        self.hour.median
    }

    /// A stop is far below the lowest quarter-hour of the day: a pool back
    /// at a level it ran at before (after a surge lifted the hour's median,
    /// say) has not stopped. In its first hour, when a quarter-hour or two
    /// is all there is, the lowest minute counts too: with that little
    /// history, silence is the better guess.
    fn floor(&self) -> f64 {
        FLOOR_FRACTION * self.lowest()
    }

    /// The lowest rate on record (see `floor`).
    fn lowest(&self) -> f64 {
        let day = self.day.min.unwrap_or(f64::INFINITY);
        if self.day.rates.len() < 4 {
            day.min(self.hour.min.unwrap_or(f64::INFINITY))
        } else {
            day
        }
    }
}

fn median(rates: &[f32]) -> f64 {
    let mut buf = [0f32; DAY_BUCKETS];
    let buf = &mut buf[..rates.len()];
    buf.copy_from_slice(rates);
    let mid = buf.len() / 2;
    let (_, m, _) = buf.select_nth_unstable_by(mid, f32::total_cmp);
    f64::from(*m)
}

/// A run of intervals at (almost) no traffic.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Stop {
    secs: f64,
    requests: f64,
    intervals: u32,
    /// The usual level when it began: what its depth is judged against.
    usual: f64,
    /// ... and the most it may pass, as a rate: below the usual level by
    /// `drop.ratio`, and below the day's floor.
    ceiling: f64,
    /// The lowest rate on record when it began.
    lowest: f64,
    /// The recent level when it began: what the evidence is measured
    /// against (a fault cuts traffic from where it was; a lull usually
    /// ramps down to its bottom, and the evidence is then weaker).
    level: f64,
}

impl Stop {
    fn holds(&self) -> bool {
        self.requests <= self.ceiling * self.secs + STRAY_REQUESTS
    }

    /// Even at the lowest rate on record, a silence this deep and long
    /// comes by chance less than once a day (a day holds as many chances
    /// as requests at that rate): at 0.5 req/s about 20 s of nothing, at
    /// 0.05 req/s three minutes; never, for a pool that has run at nothing.
    fn unlike_chance(&self) -> bool {
        let once_a_day = 1.0 / (self.lowest * 86_400.0).max(1.0);
        self.lowest > 0.0 && poisson_at_most(self.requests, self.lowest * self.secs) < once_a_day
    }
}

/// TrafficDrop state of one pool or one target.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RateTrack {
    history: History,
    stop: Option<Stop>,
    /// The longest natural lull on record, in seconds, fading over
    /// `drop.lull_memory`.
    longest_lull: f64,
    pub life: Lifecycle,
}

impl RateTrack {
    /// Drops the stop being measured (while a wider alert covers it).
    pub fn forget_evidence(&mut self) {
        self.stop = None;
    }

    /// One interval: `requests` over `dt` seconds. `dt` is `None` when the
    /// interval's length is unknown (the first sample after a counter reset
    /// covers only the time since the reload).
    pub fn observe(
        &mut self,
        requests: f64,
        dt: Option<f64>,
        cfg: &DetectConfig,
        frozen_too_long: bool,
    ) -> (Verdict, Option<DropFinding>) {
        let dc = &cfg.drop;
        let Some(dt) = dt.filter(|&d| d > 0.0) else {
            return (Verdict::Hold, None);
        };
        self.longest_lull *= decay(dt, dc.lull_memory.0);
        let armed =
            self.history.age >= cfg.warmup(dt).max(dc.min_history.0) && self.history.usual() > 0.0;
        let (verdict, finding) = if armed {
            self.judge(requests, dt, dc)
        } else {
            self.stop = None;
            (Verdict::Clear, None)
        };
        // The usual level never learns the outage (unless it outlasts the
        // freeze limit, and is then the new normal).
        if !self.life.firing() || frozen_too_long {
            self.history.add(requests, dt, dc.baseline_window.0);
        }
        (verdict, finding)
    }

    fn judge(&mut self, requests: f64, dt: f64, dc: &DropConfig) -> (Verdict, Option<DropFinding>) {
        let h = &self.history;
        let next = match self.stop {
            Some(s) => Stop {
                secs: s.secs + dt,
                requests: s.requests + requests,
                intervals: s.intervals + 1,
                ..s
            },
            None => Stop {
                secs: dt,
                requests,
                intervals: 1,
                usual: h.usual(),
                ceiling: (dc.ratio * h.usual().min(h.last_minute)).min(h.floor()),
                lowest: h.lowest(),
                level: h.recent.clamp(h.usual(), RECENT_CAP * h.usual()),
            },
        };
        if !next.holds() {
            // Traffic is back: a stop that ended without paging was one of
            // the pool's natural lulls.
            if let Some(s) = self.stop.take() {
                if !self.life.active() {
                    self.longest_lull = self.longest_lull.max(s.secs);
                }
            }
            return (Verdict::Clear, None);
        }
        self.stop = Some(next);
        // Longer than any lull on record by the margin, and by at least
        // one more interval (lulls are measured in whole intervals).
        let lulls = (dc.lull_margin * self.longest_lull).max(self.longest_lull + dt);
        let needed = dc.min_duration.0.max(lulls);
        let unlike_a_lull = poisson_at_most(next.requests, dc.lull_ratio * next.level * next.secs)
            < dc.significance
            && next.unlike_chance();
        if next.secs >= needed && next.intervals >= MIN_INTERVALS && unlike_a_lull {
            let finding = DropFinding {
                rate: next.requests / next.secs,
                baseline_rate: next.usual,
                secs: next.secs,
                longest_lull: self.longest_lull,
            };
            (Verdict::Fire, Some(finding))
        } else {
            (Verdict::Hold, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::config::Secs;

    fn cfg() -> DetectConfig {
        DetectConfig::default()
    }

    /// Feeds intervals of `dt` seconds; returns the verdicts.
    fn run(t: &mut RateTrack, dt: f64, intervals: &[f64]) -> Vec<Verdict> {
        intervals
            .iter()
            .map(|&n| t.observe(n, Some(dt), &cfg(), false).0)
            .collect()
    }

    fn first_fire(v: &[Verdict]) -> Option<usize> {
        v.iter().position(|&v| v == Verdict::Fire)
    }

    #[test]
    fn a_busy_pool_that_stops_pages_after_the_minimum_duration() {
        let mut t = RateTrack::default();
        run(&mut t, 1.0, &[500.0; 600]);
        let v = run(&mut t, 1.0, &[0.0; 20]);
        // 8 s of nothing at 500 req/s: the minimum duration, not the
        // evidence, is what it waits for.
        assert_eq!(first_fire(&v), Some(7));
    }

    #[test]
    fn a_new_pool_is_not_judged_before_it_has_some_history() {
        let mut t = RateTrack::default();
        run(&mut t, 1.0, &[500.0; 300]);
        assert!(!run(&mut t, 1.0, &[0.0; 60]).contains(&Verdict::Fire));
    }

    #[test]
    fn a_lull_that_ramps_down_is_not_a_stop() {
        let mut t = RateTrack::default();
        run(&mut t, 10.0, &[3000.0; 360]);
        // Down to 1.5% of its level over five minutes, as real series do
        // between two of their five-minute points, then back up: 1.5% of
        // the usual level, but not of the minute before.
        let ramp: Vec<f64> = (0..=30)
            .map(|i| 3000.0 * (1.0 - 0.985 * f64::from(i) / 30.0))
            .collect();
        let mut lull = ramp.clone();
        lull.extend(ramp.iter().rev());
        assert!(!run(&mut t, 10.0, &lull).contains(&Verdict::Fire));
    }

    #[test]
    fn a_return_to_a_level_seen_earlier_in_the_day_is_not_a_stop() {
        let mut t = RateTrack::default();
        run(&mut t, 10.0, &[10.0; 360]); // 1 req/s for an hour
        run(&mut t, 10.0, &[20_000.0; 540]); // a 2000x batch surge, 90 min
        assert!(!run(&mut t, 10.0, &[10.0; 360]).contains(&Verdict::Fire));
    }

    #[test]
    fn halving_or_a_deep_dip_never_pages() {
        let mut t = RateTrack::default();
        run(&mut t, 10.0, &[1000.0; 360]);
        assert!(!run(&mut t, 10.0, &[500.0; 100]).contains(&Verdict::Fire));
        assert!(!run(&mut t, 10.0, &[50.0; 100]).contains(&Verdict::Fire));
    }

    #[test]
    fn a_quiet_pool_needs_minutes_of_silence() {
        let mut t = RateTrack::default();
        run(&mut t, 10.0, &[20.0; 360]); // 2 req/s for an hour
        let v = run(&mut t, 10.0, &[0.0; 30]);
        let at = first_fire(&v).expect("fires") as f64 * 10.0 + 10.0;
        assert!((60.0..=120.0).contains(&at), "fired after {at} s");
    }

    #[test]
    fn a_stop_no_longer_than_its_natural_lulls_stays_quiet() {
        let mut t = RateTrack::default();
        let mut day = vec![20.0; 360]; // 2 req/s at 10 s scrapes
        day.extend([0.0; 8]); // an 80 s lull: too short to be significant
        day.extend([20.0; 360]);
        assert!(!run(&mut t, 10.0, &day).contains(&Verdict::Fire));
        // The lull was learnt because it ended without paging.
        assert!((t.longest_lull - 80.0).abs() < 1.0, "{}", t.longest_lull);
        assert!(!run(&mut t.clone(), 10.0, &[0.0; 11]).contains(&Verdict::Fire));
        // One and a half times its longest lull: an outage.
        let v = run(&mut t, 10.0, &[0.0; 20]);
        assert_eq!(first_fire(&v), Some(11));
    }

    #[test]
    fn the_end_of_a_surge_is_not_a_drop() {
        let mut t = RateTrack::default();
        run(&mut t, 15.0, &[450.0; 240]); // 30 req/s for an hour
        run(&mut t, 15.0, &[6300.0; 240]); // a 14x surge for an hour
        assert!(!run(&mut t, 15.0, &[450.0; 480]).contains(&Verdict::Fire));
    }

    #[test]
    fn it_resolves_as_soon_as_traffic_is_back() {
        let mut t = RateTrack::default();
        run(&mut t, 1.0, &[100.0; 600]);
        let v = run(&mut t, 1.0, &[0.0; 15]);
        assert_eq!(v.last(), Some(&Verdict::Fire));
        assert_eq!(run(&mut t, 1.0, &[100.0]), vec![Verdict::Clear]);
    }

    #[test]
    fn drops_wait_for_the_baseline_to_be_armed() {
        let mut t = RateTrack::default();
        assert!(run(&mut t, 10.0, &[1000.0, 1000.0, 0.0, 0.0, 0.0])
            .iter()
            .all(|&v| v != Verdict::Fire));
    }

    #[test]
    fn the_minimum_duration_is_configurable() {
        let mut c = cfg();
        c.drop.min_duration = Secs(2.0);
        let mut t = RateTrack::default();
        for _ in 0..600 {
            t.observe(500.0, Some(1.0), &c, false);
        }
        let v: Vec<_> = (0..3)
            .map(|_| t.observe(0.0, Some(1.0), &c, false).0)
            .collect();
        assert_eq!(first_fire(&v), Some(1));
    }
}
