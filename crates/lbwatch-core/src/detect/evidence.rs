//! Sequential evidence for ErrorSpike: a CUSUM (Page's cumulative sum of
//! log-likelihood ratios) per pool or server.
//!
//! Why CUSUM rather than a per-interval threshold: at 0.5 req/s one interval
//! proves nothing, at 20k req/s one interval proves everything; the sum of
//! log-likelihood ratios accumulates exactly as much evidence as the traffic
//! carries, whatever the scrape interval. Each interval contributes at most
//! half of the threshold, so a single interval (a burst of a handful of 5xx,
//! a short hiccup) can never fire on its own, and the sum is capped so that
//! it drains within a few intervals once the fault is fixed.

use super::config::{DetectConfig, ErrorConfig};
use super::lifecycle::{Lifecycle, Verdict};
use super::stats::{binomial_at_least, decay};

/// A decayed sum of (events, exposure): a baseline or a short recent window.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Decayed {
    pub events: f64,
    pub exposure: f64,
}

impl Decayed {
    pub fn add(&mut self, events: f64, exposure: f64, weight_of_past: f64) {
        self.events = self.events * weight_of_past + events;
        self.exposure = self.exposure * weight_of_past + exposure;
    }

    pub fn ratio(&self) -> Option<f64> {
        (self.exposure > 0.0).then(|| self.events / self.exposure)
    }
}

/// The intervals with the most errors in a window, decayed with it, so a
/// window's ratio can be measured without them: a blip of a handful of 5xx
/// lands in one interval, or straddles two when scrapes are a second apart.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Worst {
    first: Decayed,
    second: Decayed,
}

impl Worst {
    pub fn offer(&mut self, events: f64, exposure: f64, weight_of_past: f64) {
        self.first.add(0.0, 0.0, weight_of_past);
        self.second.add(0.0, 0.0, weight_of_past);
        let new = Decayed { events, exposure };
        if events >= self.first.events {
            self.second = self.first;
            self.first = new;
        } else if events >= self.second.events {
            self.second = new;
        }
    }

    /// `window` without its `n` (1 or 2) worst intervals.
    pub fn trim(&self, window: Decayed, n: usize) -> Decayed {
        let mut out = window;
        for w in [self.first, self.second].iter().take(n) {
            out.events -= w.events;
            out.exposure -= w.exposure;
        }
        out
    }
}

/// Page's CUSUM with per-step clipping and an upper cap.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Cusum {
    pub sum: f64,
}

impl Cusum {
    pub fn step(&mut self, llr: f64, threshold: f64) {
        self.sum = (self.sum + llr.min(threshold / 2.0)).clamp(0.0, 2.0 * threshold);
    }
}

/// Time constant over which the evidence segment fades.
const SEGMENT_FADE_S: f64 = 300.0;

/// An obvious spike: at least twice the effect threshold, on at least four
/// errors besides the worst interval's (three scattered 5xx are no proof,
/// whatever ratio they make).
const OBVIOUS: f64 = 2.0;
const OBVIOUS_ERRORS: f64 = 4.0;

/// The 5xx ratio of the large-spike alternative (at least).
const LARGE_SPIKE: f64 = 0.05;

/// What an ErrorSpike rests on, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorFinding {
    /// 5xx ratio of the recent window.
    pub ratio: f64,
    /// The baseline ratio it is compared with.
    pub baseline: f64,
    pub errors: f64,
    pub requests: f64,
}

/// One interval of one pool or server, for `ErrorTrack::observe`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorInterval {
    pub requests: f64,
    /// Of those, 5xx.
    pub errors: f64,
    /// Seconds the interval lasted.
    pub dt: f64,
    /// Weight of the past in the baseline after `dt` (the same for every
    /// server of a pool, so computed once).
    pub baseline_decay: f64,
}

/// ErrorSpike state of one pool or one server.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ErrorTrack {
    baseline: Decayed,
    baseline_age: f64,
    recent: Decayed,
    recent_worst: Worst,
    /// Evidence for a ratio at the effect threshold, and for a large spike:
    /// the first accumulates slow onsets, the second lets a storm of 5xx at a
    /// few requests per second prove itself within a few intervals.
    cusum: Cusum,
    cusum_large: Cusum,
    /// Intervals since the evidence last was zero, and the one of them with
    /// the most errors (left out when measuring the effect, so that one
    /// interval's blip cannot carry a finding).
    segment: Decayed,
    segment_len: u32,
    segment_secs: f64,
    segment_worst: Worst,
    /// Seconds the baseline has been frozen for accumulating evidence.
    frozen_for: f64,
    coef: CachedCoef,
    pub life: Lifecycle,
}

/// Log-likelihood ratio coefficients for one baseline ratio, kept while the
/// baseline moves by less than 0.2%: logarithms are most of the detector's
/// arithmetic, and a baseline that slow barely changes them.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct LlrCoef {
    p0: f64,
    tests: usize,
    p1: f64,
    per_error: f64,
    per_ok: f64,
    per_error_large: f64,
    per_ok_large: f64,
    threshold: f64,
}

/// `LlrCoef` as each tracker keeps it: in `f32`, 32 bytes rather than 64
/// (a server has two trackers). Their rounding (a part in ten million) is
/// far below the 0.2% the cache already allows the baseline to move.
/// Snapshots keep the `f64` layout (`LlrCoef`'s).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
#[serde(from = "SavedCoef", into = "SavedCoef")]
struct CachedCoef {
    p0: f32,
    tests: u32,
    p1: f32,
    per_error: f32,
    per_ok: f32,
    per_error_large: f32,
    per_ok_large: f32,
    threshold: f32,
}

const _: () = assert!(std::mem::size_of::<CachedCoef>() == 32);

impl CachedCoef {
    fn for_baseline(&mut self, p0: f64, tests: usize, ec: &ErrorConfig) -> LlrCoef {
        let kept = f64::from(self.p0);
        if tests == self.tests as usize && (p0 - kept).abs() <= 0.002 * kept {
            return self.widened();
        }
        let c = LlrCoef::for_baseline(p0, tests, ec);
        *self = CachedCoef::from(SavedCoef(c));
        c
    }

    fn widened(&self) -> LlrCoef {
        LlrCoef {
            p0: f64::from(self.p0),
            tests: self.tests as usize,
            p1: f64::from(self.p1),
            per_error: f64::from(self.per_error),
            per_ok: f64::from(self.per_ok),
            per_error_large: f64::from(self.per_error_large),
            per_ok_large: f64::from(self.per_ok_large),
            threshold: f64::from(self.threshold),
        }
    }
}

/// The cached coefficients as snapshots keep them.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct SavedCoef(LlrCoef);

impl From<CachedCoef> for SavedCoef {
    fn from(c: CachedCoef) -> SavedCoef {
        SavedCoef(c.widened())
    }
}

impl From<SavedCoef> for CachedCoef {
    fn from(SavedCoef(c): SavedCoef) -> CachedCoef {
        CachedCoef {
            p0: c.p0 as f32,
            // More tests than a u32 holds: the cache is never taken for them.
            tests: u32::try_from(c.tests).unwrap_or(u32::MAX),
            p1: c.p1 as f32,
            per_error: c.per_error as f32,
            per_ok: c.per_ok as f32,
            per_error_large: c.per_error_large as f32,
            per_ok_large: c.per_ok_large as f32,
            threshold: c.threshold as f32,
        }
    }
}

impl LlrCoef {
    fn for_baseline(p0: f64, tests: usize, ec: &ErrorConfig) -> LlrCoef {
        let p1 = (p0 * ec.ratio_multiple).max(p0 + ec.min_increase).min(0.99);
        let p_large = (p1 * 5.0).clamp(LARGE_SPIKE, 0.99).max(p1);
        LlrCoef {
            p0,
            tests,
            p1,
            per_error: (p1 / p0).ln(),
            per_ok: ((1.0 - p1) / (1.0 - p0)).ln(),
            per_error_large: (p_large / p0).ln(),
            per_ok_large: ((1.0 - p_large) / (1.0 - p0)).ln(),
            // Per-server tests pay for their number: a higher evidence bar
            // (and, below, a Bonferroni-divided significance level).
            threshold: ec.evidence + (tests.max(1) as f64).ln(),
        }
    }
}

/// What a tracker at rest holds besides zeros, kept in its place (see
/// `sparse.rs`): `of` takes it only when the rest is zero, bit for bit (a
/// `-0.0` is not), and the lifecycle at rest, so that `track` gives back
/// exactly the tracker it was taken from.
pub trait Part: Sized {
    fn of(t: &ErrorTrack) -> Option<Self>;
    fn track(&self) -> ErrorTrack;
}

/// A tracker with no evidence under way: its baseline, recent window and
/// cached coefficients.
#[derive(Debug, Clone, Copy)]
pub struct Calm {
    baseline: Decayed,
    baseline_age: f64,
    recent: Decayed,
    recent_worst: Worst,
    coef: CachedCoef,
}

/// A calm tracker that has seen no error: its exposures and cached
/// coefficients.
#[derive(Debug, Clone, Copy)]
pub struct Quiet {
    baseline_exposure: f64,
    baseline_age: f64,
    recent_exposure: f64,
    worst_exposure: [f64; 2],
    coef: CachedCoef,
}

fn zero(x: f64) -> bool {
    x.to_bits() == 0
}

impl Part for Calm {
    #[inline]
    fn of(t: &ErrorTrack) -> Option<Calm> {
        let empty = |d: &Decayed| zero(d.events) && zero(d.exposure);
        let calm = zero(t.cusum.sum)
            && zero(t.cusum_large.sum)
            && empty(&t.segment)
            && t.segment_len == 0
            && zero(t.segment_secs)
            && empty(&t.segment_worst.first)
            && empty(&t.segment_worst.second)
            && zero(t.frozen_for)
            && t.life == Lifecycle::default();
        calm.then_some(Calm {
            baseline: t.baseline,
            baseline_age: t.baseline_age,
            recent: t.recent,
            recent_worst: t.recent_worst,
            coef: t.coef,
        })
    }

    #[inline]
    fn track(&self) -> ErrorTrack {
        ErrorTrack {
            baseline: self.baseline,
            baseline_age: self.baseline_age,
            recent: self.recent,
            recent_worst: self.recent_worst,
            coef: self.coef,
            ..ErrorTrack::default()
        }
    }
}

impl Part for Quiet {
    #[inline]
    fn of(t: &ErrorTrack) -> Option<Quiet> {
        let errorless = zero(t.baseline.events)
            && zero(t.recent.events)
            && zero(t.recent_worst.first.events)
            && zero(t.recent_worst.second.events);
        let c = Calm::of(t).filter(|_| errorless)?;
        Some(Quiet {
            baseline_exposure: c.baseline.exposure,
            baseline_age: c.baseline_age,
            recent_exposure: c.recent.exposure,
            worst_exposure: [
                c.recent_worst.first.exposure,
                c.recent_worst.second.exposure,
            ],
            coef: c.coef,
        })
    }

    #[inline]
    fn track(&self) -> ErrorTrack {
        let exposed = |exposure| Decayed {
            events: 0.0,
            exposure,
        };
        Calm {
            baseline: exposed(self.baseline_exposure),
            baseline_age: self.baseline_age,
            recent: exposed(self.recent_exposure),
            recent_worst: Worst {
                first: exposed(self.worst_exposure[0]),
                second: exposed(self.worst_exposure[1]),
            },
            coef: self.coef,
        }
        .track()
    }
}

impl ErrorTrack {
    /// Drops accumulated evidence (while a wider alert covers this one, so
    /// its evidence cannot outlive the fault and fire afterwards).
    pub fn forget_evidence(&mut self) {
        self.cusum = Cusum::default();
        self.cusum_large = Cusum::default();
        self.segment = Decayed::default();
        self.segment_worst = Worst::default();
        self.segment_len = 0;
        self.segment_secs = 0.0;
    }

    /// Whether the intervals since the evidence began, this one included,
    /// show the effect (an onset: its evidence is kept), and whether they
    /// still do with the worst left out (a fresh fault: the baseline stops
    /// learning). One interval's blip can start an onset; it cannot freeze
    /// the baseline, and what fires is decided on windows without it.
    fn onset(&self, errors: f64, requests: f64, dt: f64, p1: f64) -> (bool, bool) {
        let fade = decay(dt, SEGMENT_FADE_S);
        let (mut seg, mut worst) = (self.segment, self.segment_worst);
        seg.add(errors, requests, fade);
        worst.offer(errors, requests, fade);
        let trimmed = worst.trim(seg, 1);
        let shows = |w: Decayed| w.exposure > 0.0 && w.events >= p1 * w.exposure;
        (shows(seg), self.segment_len >= 1 && shows(trimmed))
    }

    /// One interval: `requests` sent, `errors` of them 5xx, over `dt`
    /// seconds. `tests` is how many such tests run side by side (servers of
    /// the pool), for the multiple-testing correction.
    pub fn observe(
        &mut self,
        iv: ErrorInterval,
        tests: usize,
        rules: (&DetectConfig, &ErrorConfig),
        frozen_too_long: bool,
    ) -> (Verdict, Option<ErrorFinding>) {
        let (cfg, ec) = rules;
        let ErrorInterval {
            requests,
            errors,
            dt,
            ..
        } = iv;
        if requests <= 0.0 {
            return (Verdict::Hold, None);
        }
        let errors = errors.min(requests);
        let c = self
            .coef
            .for_baseline(self.null_ratio(cfg, ec, dt), tests, ec);
        let ok = requests - errors;
        self.cusum
            .step(errors * c.per_error + ok * c.per_ok, c.threshold);
        self.cusum_large.step(
            errors * c.per_error_large + ok * c.per_ok_large,
            c.threshold,
        );
        let recent_tau = self.add_recent(errors, requests, dt);
        // Left out of the ratios a finding rests on: the worst interval, or
        // the worst two at scrapes under two seconds apart.
        let trim = if dt < 2.0 { 2 } else { 1 };
        let fresh = self.forget_a_past_fault(errors, requests, dt, recent_tau, &c);
        let evidence = self.cusum.sum.max(self.cusum_large.sum);
        self.grow_segment(evidence, errors, requests, dt);
        // Untrimmed: what the last intervals look like, blip included; it
        // decides whether to hold the state and pause the baseline, never
        // whether to fire.
        let recent_ratio = self.recent.ratio().unwrap_or(0.0);
        let finding = (evidence >= c.threshold && self.segment_secs >= cfg.fire_after.0)
            .then(|| self.finding(trim, &c, ec.significance / tests.max(1) as f64))
            .flatten();
        // Evidence still accumulating on a raised ratio neither fires nor
        // clears; a normal ratio or no evidence clears.
        let verdict = if finding.is_some() {
            Verdict::Fire
        } else if evidence > 0.0 && recent_ratio >= c.p1 {
            Verdict::Hold
        } else {
            Verdict::Clear
        };
        let building = evidence >= c.threshold / 2.0 && (recent_ratio >= c.p1 || fresh);
        self.learn(iv, errors, building, frozen_too_long, cfg);
        (verdict, finding)
    }

    /// The ratio errors are judged against. With e errors in n requests, a
    /// ratio of (e + 1) / (n + 1) cannot be ruled out: a quiet pool's
    /// baseline claims no more certainty than its few requests give, a
    /// busy pool's is its plain ratio.
    fn null_ratio(&self, cfg: &DetectConfig, ec: &ErrorConfig, dt: f64) -> f64 {
        let armed = self.baseline_age >= cfg.warmup(dt);
        let floor = if armed {
            ec.baseline_floor
        } else {
            ec.unarmed_floor
        };
        ((self.baseline.events + 1.0) / (self.baseline.exposure + 1.0))
            .max(floor)
            .min(0.5)
    }

    /// Adds the interval to the recent window, which measures the effect on
    /// what is happening now: long enough to hold about 200 requests, at
    /// least two intervals (10 s), at most 5 min. Returns its time constant.
    fn add_recent(&mut self, errors: f64, requests: f64, dt: f64) -> f64 {
        let shortest = (2.0 * dt).max(10.0);
        let recent_tau = (200.0 * dt / requests.max(1.0)).clamp(shortest, shortest.max(300.0));
        let w = decay(dt, recent_tau);
        self.recent.add(errors, requests, w);
        self.recent_worst.offer(errors, requests, w);
        recent_tau
    }

    /// Back near the baseline: whatever evidence remains is about a past
    /// that is over (it can hover above zero long after a fault, when the
    /// ratio settles between the baseline and the alternative). Unless the
    /// intervals since the evidence began, fewer than the recent window
    /// holds, show the effect: at a request every few seconds the recent
    /// window lags a fresh onset by minutes. Returns whether a fresh onset
    /// shows.
    fn forget_a_past_fault(
        &mut self,
        errors: f64,
        requests: f64,
        dt: f64,
        recent_tau: f64,
        c: &LlrCoef,
    ) -> bool {
        let young = self.segment_secs < recent_tau;
        let (onset, fresh) = self.onset(errors, requests, dt, c.p1);
        let (onset, fresh) = (onset && young, fresh && young);
        if !onset
            && self
                .recent
                .ratio()
                .is_some_and(|r| r < c.p0 + (c.p1 - c.p0) / 4.0)
        {
            self.cusum = Cusum::default();
            self.cusum_large = Cusum::default();
        }
        fresh
    }

    /// The segment of accumulating evidence: reset when there is none; it
    /// fades (5 min) so that evidence which hovers above zero long after a
    /// fault cannot keep the fault in it.
    fn grow_segment(&mut self, evidence: f64, errors: f64, requests: f64, dt: f64) {
        if evidence <= 0.0 {
            self.segment = Decayed::default();
            self.segment_worst = Worst::default();
            self.segment_len = 0;
            self.segment_secs = 0.0;
        } else {
            let fade = decay(dt, SEGMENT_FADE_S);
            self.segment.add(errors, requests, fade);
            self.segment_worst.offer(errors, requests, fade);
            self.segment_len += 1;
            self.segment_secs += dt;
        }
    }

    /// The effect, and its significance, on what is happening now: the
    /// segment of accumulating evidence (without its worst `trim`
    /// intervals), or the recent window for slower onsets. A finding
    /// describes now: the recent window, trimmed, must show at least half
    /// the effect. The whole window must be significant at `level`; without
    /// its worst interval it must still show the effect, and be significant
    /// too: at the level itself, or, for an obvious spike (see `OBVIOUS`),
    /// at its square root (1e-3 for 1e-6). A blip can add to the proof of an
    /// obvious spike, never be the proof.
    fn finding(&self, trim: usize, c: &LlrCoef, level: f64) -> Option<ErrorFinding> {
        let recent_trimmed = self.recent_worst.trim(self.recent, trim);
        if !recent_trimmed.ratio().is_some_and(|r| r >= c.p1 / 2.0) {
            return None;
        }
        let trimmed = self.segment_worst.trim(self.segment, trim);
        let windows = [
            (self.segment_len as usize > trim).then_some((self.segment, trimmed)),
            Some((self.recent, recent_trimmed)),
        ];
        windows.into_iter().flatten().find_map(|(whole, w)| {
            let ratio = w.ratio().filter(|&r| r >= c.p1)?;
            let trimmed_level = if ratio >= OBVIOUS * c.p1 && w.events >= OBVIOUS_ERRORS {
                level.sqrt()
            } else {
                level
            };
            (binomial_at_least(whole.events, whole.exposure, c.p0) < level
                && binomial_at_least(w.events, w.exposure, c.p0) < trimmed_level)
                .then_some(ErrorFinding {
                    ratio,
                    baseline: c.p0,
                    errors: w.events,
                    requests: w.exposure,
                })
        })
    }

    /// The baseline learns only while nothing is raised and no evidence is
    /// `building` up, so it never learns the fault (unless the fault
    /// outlasts the freeze limit).
    fn learn(
        &mut self,
        iv: ErrorInterval,
        errors: f64,
        building: bool,
        frozen_too_long: bool,
        cfg: &DetectConfig,
    ) {
        if (!self.life.active() && !building)
            || frozen_too_long
            || self.frozen_for > cfg.baseline_max_freeze.0
        {
            self.baseline.add(errors, iv.requests, iv.baseline_decay);
            self.baseline_age += iv.dt;
            self.frozen_for = 0.0;
        } else {
            self.frozen_for += iv.dt;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshots are postcard, where fields go by their order: the cached
    /// coefficients are written as the `f64`s they were before (in their
    /// order then), and read back from them.
    #[test]
    fn cached_coefficients_keep_the_snapshot_layout_from_before() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Before {
            p0: f64,
            tests: usize,
            p1: f64,
            per_error: f64,
            per_ok: f64,
            per_error_large: f64,
            per_ok_large: f64,
            threshold: f64,
        }
        let mut cached = CachedCoef::default();
        cached.for_baseline(0.01, 3, &cfg().errors);
        let c = cached.widened();
        let before = Before {
            p0: c.p0,
            tests: 3,
            p1: c.p1,
            per_error: c.per_error,
            per_ok: c.per_ok,
            per_error_large: c.per_error_large,
            per_ok_large: c.per_ok_large,
            threshold: c.threshold,
        };
        assert!(
            before.p1 > before.p0 && before.threshold > 0.0,
            "{before:?}"
        );
        let written = postcard::to_allocvec(&before).unwrap();
        assert_eq!(postcard::to_allocvec(&cached).unwrap(), written);
        let read: CachedCoef = postcard::from_bytes(&written).unwrap();
        assert_eq!(postcard::to_allocvec(&read).unwrap(), written);
    }

    fn cfg() -> DetectConfig {
        DetectConfig::default()
    }

    /// Feeds (requests, errors) intervals 10 s apart; returns the verdicts.
    fn errors(intervals: &[(f64, f64)]) -> Vec<Verdict> {
        let mut t = ErrorTrack::default();
        intervals
            .iter()
            .map(|&(requests, errors)| {
                let iv = ErrorInterval {
                    requests,
                    errors,
                    dt: 10.0,
                    baseline_decay: decay(10.0, 600.0),
                };
                t.observe(iv, 1, (&cfg(), &cfg().errors), false).0
            })
            .collect()
    }

    #[test]
    fn a_sustained_error_spike_fires_on_its_second_interval() {
        let mut v = vec![(1000.0, 1.0); 30];
        v.extend([(1000.0, 150.0); 2]);
        let out = errors(&v);
        assert_eq!(out[30], Verdict::Hold);
        assert_eq!(out[31], Verdict::Fire);
    }

    #[test]
    fn a_one_interval_blip_never_fires() {
        let mut v = vec![(1000.0, 1.0); 30];
        v.push((1000.0, 200.0));
        v.extend([(1000.0, 1.0); 30]);
        assert!(!errors(&v).contains(&Verdict::Fire));
    }

    #[test]
    fn a_quiet_server_with_no_requests_proves_nothing() {
        assert_eq!(errors(&[(0.0, 0.0)]), vec![Verdict::Hold]);
    }
}
