//! TrafficDrop: a load balancer (or one pool) that stopped passing traffic
//! while its stats still answer.
//!
//! Why it is not a comparison with the last few minutes: real traffic swings
//! 10x within the hour, surges last hours, and many services fall to almost
//! nothing for a few minutes several times a day. A drop detector that reads
//! "10% of the last five minutes" as an outage pages for all of these. This
//! one asks the question an engineer would: has this pool ever been this low
//! for this long, and is the silence long enough, at this volume, to rule
//! out one of its natural lulls? What it compares with is in `history.rs`.
//!
//! - **A stop** is a run of intervals whose requests stay at most
//!   `drop.ratio` (2%) of the last minute's rate, a tenth of the usual
//!   level and a quarter of the lowest quarter-hour of the day, plus one
//!   stray request: a blocked LB, not a partial dip, not a lull that ramped
//!   down, not a return to a level the day has seen. A partial drop pages
//!   nobody.
//! - **Natural lulls are learnt.** Every stop that ends by itself without
//!   having paged is a lull of this pool; the longest (fading over
//!   `drop.lull_memory`) sets how long a stop must last before it pages:
//!   `drop.lull_margin` times longer and at least one interval longer, and
//!   never less than `drop.min_duration` and two intervals.
//! - **Evidence scales with volume.** The stop must be significant
//!   (`drop.significance`) against a pool still running at
//!   `drop.lull_ratio` (7%) of its recent level (the last five minutes,
//!   between the usual level and four times it), and unlike chance even at
//!   the lowest rate on record (less than once a day): at 500 req/s a
//!   second of nothing settles it, at 2 req/s about 80 s, at 0.05 req/s
//!   minutes; a pool that has had a silent quarter-hour today never pages
//!   for silence.
//! - **Nothing is learnt from a stop** until it ends by itself (then it is
//!   a lull, and its traffic joins the history), nor while another alert
//!   covers the pool, nor while the drop fires, unless it fires past
//!   `baseline_max_freeze`: then the new level is learnt and the stop is
//!   judged against it, so a pool whose traffic moved elsewhere for good
//!   resolves.
//! - **It resolves when the evidence is gone:** two intervals in a row with
//!   traffic above the stop's depth (`detection.resolve_after` does not
//!   apply: an outage that is over is over).

use super::config::{DetectConfig, DropConfig};
use super::history::History;
use super::lifecycle::{Lifecycle, Persistence, Verdict};
use super::stats::{decay, poisson_at_most};

/// A stop runs below this fraction of the day's lowest quarter-hour: well
/// below anything the pool did on its own ...
const FLOOR_FRACTION: f64 = 0.25;

/// ... and below this fraction of the usual level (the hour's median): a
/// cut to 2% of a surge that began minutes ago can leave more than 2% of
/// the usual level, and is a stop all the same.
const USUAL_FRACTION: f64 = 0.1;

/// The recent level counts as evidence up to this multiple of the usual
/// level: a surge that ends in a lull must not make the lull look decisive.
const RECENT_CAP: f64 = 4.0;

/// Traffic is back in the pool's range at this fraction of its usual level.
const BACK_FRACTION: f64 = 0.25;

/// A stop spans at least this many intervals: one interval is a blip.
const MIN_INTERVALS: u32 = 2;

/// One stray request does not end a stop (a health check passing through,
/// a client retrying into the block).
const STRAY_REQUESTS: f64 = 1.0;

/// A silence that chance brings less than once in this long, even at the
/// pool's lowest rate, is no lull.
const ONCE_IN_S: f64 = 86_400.0;

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

/// A run of intervals at (almost) no traffic, with the limits it is judged
/// by, taken from the history when it began.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Stop {
    secs: f64,
    requests: f64,
    intervals: u32,
    /// The usual level when it began.
    usual: f64,
    /// The most it may pass, as a rate (see the module comment).
    ceiling: f64,
    /// The lowest rate on record when it began.
    lowest: f64,
    /// The recent level when it began: what the evidence is measured
    /// against (a fault cuts traffic from where it was; a lull usually
    /// ramps down to its bottom, and the evidence is then weaker).
    level: f64,
}

impl Stop {
    /// A stop that would begin with this interval, if it is one.
    fn begin(h: &History, requests: f64, dt: f64, dc: &DropConfig) -> Option<Stop> {
        let usual = h.usual();
        let ceiling = (dc.ratio * h.last_minute)
            .min(USUAL_FRACTION * usual)
            .min(FLOOR_FRACTION * h.lowest());
        let s = Stop {
            secs: dt,
            requests,
            intervals: 1,
            usual,
            ceiling,
            lowest: h.lowest(),
            level: h.recent.min(RECENT_CAP * usual),
        };
        (requests <= ceiling * dt + STRAY_REQUESTS).then_some(s)
    }

    /// The stop with this interval, if it goes on: the whole stop stays
    /// under the ceiling (a few stray requests at low volume do not end a
    /// lull), and the interval is not back in the pool's range (a quarter
    /// of the usual level): however long an outage, it ends with the first
    /// interval of real traffic.
    fn extend(&self, requests: f64, dt: f64) -> Option<Stop> {
        let s = Stop {
            secs: self.secs + dt,
            requests: self.requests + requests,
            intervals: self.intervals + 1,
            ..*self
        };
        let holds = s.requests <= s.ceiling * s.secs + STRAY_REQUESTS
            && requests < BACK_FRACTION * self.usual * dt;
        holds.then_some(s)
    }

    /// Significant against a lull at `drop.lull_ratio` of the recent level,
    /// and unlike chance at the lowest rate on record.
    fn unlike_a_lull(&self, dc: &DropConfig) -> bool {
        let against_lull = poisson_at_most(self.requests, dc.lull_ratio * self.level * self.secs);
        let once = 1.0 / (self.lowest * ONCE_IN_S).max(1.0);
        against_lull < dc.significance
            && self.lowest > 0.0
            && poisson_at_most(self.requests, self.lowest * self.secs) < once
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
    /// After a restore from a snapshot.
    pub fn repair(&mut self) {
        self.history.repair();
    }

    /// One interval: `requests` over `dt` seconds. `dt` is `None` when the
    /// interval's length is unknown (the first sample after a counter reset
    /// covers only the time since the reload). `covered`: another alert
    /// says it already (the target's drop, PoolUnavailable), so nothing is
    /// judged nor learnt.
    pub fn observe(
        &mut self,
        requests: f64,
        dt: Option<f64>,
        cfg: &DetectConfig,
        frozen_too_long: bool,
        covered: bool,
    ) -> (Verdict, Option<DropFinding>) {
        let dc = &cfg.drop;
        let Some(dt) = dt.filter(|&d| d > 0.0 && requests.is_finite()) else {
            return (Verdict::Hold, None);
        };
        if covered {
            self.stop = None;
            return (Verdict::Hold, None);
        }
        self.longest_lull *= decay(dt, dc.lull_memory.0);
        if frozen_too_long {
            // Firing past the freeze limit: the level now is the new
            // normal; learn it and judge the stop against it.
            self.history.add(requests, dt, dc.baseline_window.0);
            self.stop = None;
        }
        let armed =
            self.history.age >= cfg.warmup(dt).max(dc.min_history.0) && self.history.usual() > 0.0;
        if !armed {
            self.end_stop(dc);
            self.learn(requests, dt, dc, frozen_too_long);
            return (Verdict::Clear, None);
        }
        let next = match &self.stop {
            Some(s) => s.extend(requests, dt),
            None => Stop::begin(&self.history, requests, dt, dc),
        };
        let Some(next) = next else {
            self.end_stop(dc);
            self.learn(requests, dt, dc, frozen_too_long);
            return (Verdict::Clear, None);
        };
        self.stop = Some(next);
        self.judge(next, dt, dc)
    }

    /// Whether the stop pages now.
    fn judge(&self, s: Stop, dt: f64, dc: &DropConfig) -> (Verdict, Option<DropFinding>) {
        let finding = DropFinding {
            rate: s.requests / s.secs,
            baseline_rate: s.usual,
            secs: s.secs,
            longest_lull: self.longest_lull,
        };
        // A firing drop stays up while its stop goes on.
        if self.life.firing() {
            return (Verdict::Fire, Some(finding));
        }
        // Longer than any lull on record by the margin, and by at least
        // one more interval (lulls are measured in whole intervals).
        let lulls = (dc.lull_margin * self.longest_lull).max(self.longest_lull + dt);
        let needed = dc.min_duration.0.max(lulls);
        if s.secs >= needed && s.intervals >= MIN_INTERVALS && s.unlike_a_lull(dc) {
            (Verdict::Fire, Some(finding))
        } else {
            (Verdict::Hold, None)
        }
    }

    /// Closes the stop in progress: one that never paged was a natural
    /// lull, learnt with its traffic; one that paged is forgotten.
    fn end_stop(&mut self, dc: &DropConfig) {
        if let Some(s) = self.stop.take() {
            if !self.life.active() {
                self.longest_lull = self.longest_lull.max(s.secs);
                self.history.add(s.requests, s.secs, dc.baseline_window.0);
            }
        }
    }

    /// The usual level learns an interval that is no stop, unless the drop
    /// is firing (then only past the freeze limit, done above).
    fn learn(&mut self, requests: f64, dt: f64, dc: &DropConfig, frozen_too_long: bool) {
        if !self.life.firing() && !frozen_too_long {
            self.history.add(requests, dt, dc.baseline_window.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::config::Secs;
    use crate::model::Timestamp;

    fn cfg() -> DetectConfig {
        DetectConfig::default()
    }

    /// A track and the time of its latest interval.
    #[derive(Default, Clone)]
    struct Clocked {
        t: RateTrack,
        now: f64,
    }

    impl Clocked {
        /// Feeds intervals of `dt` seconds through the verdicts and the
        /// lifecycle, as the detector does (frozen past the limit
        /// included); returns the verdicts.
        fn run_with(
            &mut self,
            dt: f64,
            intervals: &[f64],
            c: &DetectConfig,
            covered: bool,
        ) -> Vec<Verdict> {
            intervals
                .iter()
                .map(|&n| {
                    self.now += dt;
                    let now = Timestamp::from_micros((self.now * 1e6) as i64);
                    let frozen = self
                        .t
                        .life
                        .since()
                        .is_some_and(|s| now.secs_since(s) > c.baseline_max_freeze.0);
                    let v = self.t.observe(n, Some(dt), c, frozen, covered).0;
                    self.t.life.step(v, now, &drop_persistence());
                    v
                })
                .collect()
        }
    }

    fn run(t: &mut Clocked, dt: f64, intervals: &[f64]) -> Vec<Verdict> {
        t.run_with(dt, intervals, &cfg(), false)
    }

    fn first_fire(v: &[Verdict]) -> Option<usize> {
        v.iter().position(|&v| v == Verdict::Fire)
    }

    #[test]
    fn a_busy_pool_that_stops_pages_after_the_minimum_duration() {
        let mut t = Clocked::default();
        run(&mut t, 1.0, &[500.0; 900]);
        let v = run(&mut t, 1.0, &[0.0; 20]);
        // 8 s of nothing at 500 req/s: the minimum duration, not the
        // evidence, is what it waits for.
        assert_eq!(first_fire(&v), Some(7));
    }

    #[test]
    fn a_new_pool_is_not_judged_before_it_has_some_history() {
        let mut t = Clocked::default();
        run(&mut t, 1.0, &[500.0; 300]);
        assert!(!run(&mut t, 1.0, &[0.0; 120]).contains(&Verdict::Fire));
        // Ten minutes of history: now it is.
        let mut t = Clocked::default();
        run(&mut t, 1.0, &[500.0; 600]);
        assert!(run(&mut t, 1.0, &[0.0; 120]).contains(&Verdict::Fire));
    }

    #[test]
    fn a_lull_that_ramps_down_is_not_a_stop() {
        let mut t = Clocked::default();
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
        // The same depth, abruptly: a stop.
        assert!(run(&mut t, 10.0, &[45.0; 12]).contains(&Verdict::Fire));
    }

    #[test]
    fn the_end_of_a_long_surge_is_not_a_drop() {
        let mut t = Clocked::default();
        // 1 req/s for an hour, then a 2000x batch surge for 90 minutes:
        // the hour's median is the surge; the return to 1 req/s is 0.05% of
        // it, but the day has seen that level.
        run(&mut t, 10.0, &[10.0; 360]);
        run(&mut t, 10.0, &[20_000.0; 540]);
        assert!(!run(&mut t, 10.0, &[10.0; 360]).contains(&Verdict::Fire));
        // Had it never been seen, it would read as a stop.
        let mut t = Clocked::default();
        run(&mut t, 10.0, &[20_000.0; 900]);
        assert!(run(&mut t, 10.0, &[10.0; 30]).contains(&Verdict::Fire));
    }

    #[test]
    fn halving_or_a_deep_dip_never_pages() {
        let mut t = Clocked::default();
        run(&mut t, 10.0, &[1000.0; 360]);
        assert!(!run(&mut t, 10.0, &[500.0; 100]).contains(&Verdict::Fire));
        assert!(!run(&mut t, 10.0, &[50.0; 100]).contains(&Verdict::Fire));
    }

    #[test]
    fn a_quiet_pool_needs_minutes_of_silence() {
        let mut t = Clocked::default();
        run(&mut t, 10.0, &[20.0; 360]); // 2 req/s for an hour
        let v = run(&mut t, 10.0, &[0.0; 30]);
        let at = first_fire(&v).expect("fires") as f64 * 10.0 + 10.0;
        assert!((60.0..=120.0).contains(&at), "fired after {at} s");
    }

    #[test]
    fn a_stop_no_longer_than_its_natural_lulls_stays_quiet() {
        let mut t = Clocked::default();
        let mut day = vec![20.0; 360]; // 2 req/s at 10 s scrapes
        day.extend([0.0; 8]); // an 80 s lull: too short to be significant
        day.extend([20.0; 360]);
        assert!(!run(&mut t, 10.0, &day).contains(&Verdict::Fire));
        // The lull was learnt because it ended without paging.
        assert!(
            (t.t.longest_lull - 80.0).abs() < 1.0,
            "{}",
            t.t.longest_lull
        );
        assert!(!run(&mut t.clone(), 10.0, &[0.0; 11]).contains(&Verdict::Fire));
        // One and a half times its longest lull: an outage.
        let v = run(&mut t, 10.0, &[0.0; 20]);
        assert_eq!(first_fire(&v), Some(11));
    }

    #[test]
    fn it_resolves_as_soon_as_traffic_is_back_even_after_a_long_outage() {
        let mut t = Clocked::default();
        run(&mut t, 1.0, &[100.0; 900]);
        let v = run(&mut t, 1.0, &[0.0; 3600]);
        assert_eq!(v.last(), Some(&Verdict::Fire));
        assert!(t.t.life.firing());
        assert_eq!(run(&mut t, 1.0, &[100.0; 2]), [Verdict::Clear; 2]);
        assert!(!t.t.life.active());
    }

    #[test]
    fn one_burst_inside_an_outage_does_not_resolve_it() {
        let mut t = Clocked::default();
        run(&mut t, 1.0, &[100.0; 900]);
        run(&mut t, 1.0, &[0.0; 30]);
        let v = run(&mut t, 1.0, &[100.0, 0.0, 100.0, 0.0, 0.0]);
        assert_eq!(
            v,
            [
                Verdict::Clear,
                Verdict::Fire,
                Verdict::Clear,
                Verdict::Fire,
                Verdict::Fire
            ]
        );
        assert!(t.t.life.firing());
    }

    #[test]
    fn an_outage_past_the_freeze_limit_becomes_the_new_normal_and_resolves() {
        let mut t = Clocked::default();
        run(&mut t, 10.0, &[1000.0; 360]);
        // Traffic moved elsewhere for good: 0.5% is left.
        let v = run(&mut t, 10.0, &[5.0; 720]);
        let fired = first_fire(&v).expect("fires");
        let back = v.iter().skip(fired).position(|&v| v == Verdict::Clear);
        let back = back.expect("resolves once the new level is learnt") as f64 * 10.0;
        // An hour frozen, then half an hour for the hour's median to move.
        assert!((3600.0..=3600.0 + 1900.0).contains(&back), "{back} s");
        assert!(!t.t.life.active());
        // And it stays resolved at its new level.
        assert!(!run(&mut t, 10.0, &[5.0; 360]).contains(&Verdict::Fire));
    }

    #[test]
    fn a_pool_covered_by_another_alert_learns_nothing_of_it() {
        let mut t = Clocked::default();
        run(&mut t, 10.0, &[1000.0; 360]);
        let before = t.t.history.clone();
        let v = t.run_with(10.0, &[0.0; 200], &cfg(), true);
        assert!(v.iter().all(|&v| v == Verdict::Hold));
        assert_eq!(t.t.history.age, before.age);
        assert_eq!(t.t.history.usual(), before.usual());
    }

    #[test]
    fn an_unknown_interval_proves_nothing() {
        let mut t = Clocked::default();
        run(&mut t, 1.0, &[500.0; 900]);
        let c = cfg();
        assert_eq!(t.t.observe(0.0, None, &c, false, false).0, Verdict::Hold);
        assert_eq!(
            t.t.observe(f64::NAN, Some(1.0), &c, false, false).0,
            Verdict::Hold
        );
    }

    #[test]
    fn the_minimum_duration_is_configurable() {
        let mut c = cfg();
        c.drop.min_duration = Secs(2.0);
        let mut t = Clocked::default();
        t.run_with(1.0, &[500.0; 900], &c, false);
        let v = t.run_with(1.0, &[0.0; 3], &c, false);
        assert_eq!(first_fire(&v), Some(1));
    }
}
