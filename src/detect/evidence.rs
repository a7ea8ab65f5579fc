//! Sequential evidence for ErrorSpike and TrafficDrop: a CUSUM (Page's
//! cumulative sum of log-likelihood ratios) per pool, server or target.
//!
//! Why CUSUM rather than a per-interval threshold: at 0.5 req/s one interval
//! proves nothing, at 20k req/s one interval proves everything; the sum of
//! log-likelihood ratios accumulates exactly as much evidence as the traffic
//! carries, whatever the scrape interval. Each interval contributes at most
//! half of the threshold, so a single interval (a burst of a handful of 5xx,
//! a short hiccup) can never fire on its own, and the sum is capped so that
//! it drains within a few intervals once the fault is fixed.

use super::config::{DetectConfig, DropConfig, ErrorConfig};
use super::lifecycle::{Lifecycle, Verdict};
use super::stats::{binomial_at_least, binomial_llr, decay, poisson_at_most, poisson_llr};

/// A decayed sum of (events, exposure): a baseline or a short recent window.
#[derive(Debug, Clone, Copy, Default)]
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

/// Page's CUSUM with per-step clipping and an upper cap.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cusum {
    pub sum: f64,
}

impl Cusum {
    pub fn step(&mut self, llr: f64, threshold: f64) {
        self.sum = (self.sum + llr.min(threshold / 2.0)).clamp(0.0, 2.0 * threshold);
    }
}

/// The 5xx ratio of the large-spike alternative (at least).
const LARGE_SPIKE: f64 = 0.05;

/// What an ErrorSpike rests on, for the summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorFinding {
    /// 5xx ratio of the recent window.
    pub ratio: f64,
    /// The baseline ratio it is compared with.
    pub baseline: f64,
    pub errors: f64,
    pub requests: f64,
}

/// ErrorSpike state of one pool or one server.
#[derive(Debug, Clone, Default)]
pub struct ErrorTrack {
    baseline: Decayed,
    baseline_age: f64,
    recent: Decayed,
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
    segment_worst: Decayed,
    pub life: Lifecycle,
}

impl ErrorTrack {
    /// One interval: `requests` sent, `errors` of them 5xx, over `dt`
    /// seconds. `tests` is how many such tests run side by side (servers of
    /// the pool), for the multiple-testing correction.
    pub fn observe(
        &mut self,
        requests: f64,
        errors: f64,
        dt: f64,
        tests: usize,
        cfg: &DetectConfig,
        frozen_too_long: bool,
    ) -> (Verdict, Option<ErrorFinding>) {
        let ec: &ErrorConfig = &cfg.errors;
        if requests <= 0.0 {
            return (Verdict::Hold, None);
        }
        let errors = errors.min(requests);
        let armed = self.baseline_age >= cfg.baseline_warmup.0;
        let floor = if armed {
            ec.baseline_floor
        } else {
            ec.unarmed_floor
        };
        let p0 = self.baseline.ratio().unwrap_or(0.0).max(floor).min(0.5);
        let p1 = (p0 * ec.ratio_multiple).max(p0 + ec.min_increase).min(0.99);
        let m = tests.max(1) as f64;
        // Per-server tests pay for their number: a higher evidence bar and a
        // Bonferroni-divided significance level.
        let threshold = ec.evidence + m.ln();
        let p_large = (p1 * 5.0).clamp(LARGE_SPIKE, 0.99).max(p1);
        self.cusum
            .step(binomial_llr(errors, requests, p0, p1), threshold);
        self.cusum_large
            .step(binomial_llr(errors, requests, p0, p_large), threshold);
        let evidence = self.cusum.sum.max(self.cusum_large.sum);
        // The recent window spans a few intervals (at least 30 s) so the
        // effect is measured on what is happening now.
        let recent_tau = (3.0 * dt).max(30.0);
        self.recent.add(errors, requests, decay(dt, recent_tau));

        if evidence <= 0.0 {
            self.segment = Decayed::default();
            self.segment_worst = Decayed::default();
            self.segment_len = 0;
        } else {
            self.segment.add(errors, requests, 1.0);
            self.segment_len += 1;
            if errors > self.segment_worst.events {
                self.segment_worst = Decayed {
                    events: errors,
                    exposure: requests,
                };
            }
        }
        let trimmed = Decayed {
            events: self.segment.events - self.segment_worst.events,
            exposure: self.segment.exposure - self.segment_worst.exposure,
        };

        let verdict;
        let mut finding = None;
        let recent_ratio = self.recent.ratio().unwrap_or(0.0);
        if evidence >= threshold {
            // The effect, and its significance, on what is happening now:
            // the segment of accumulating evidence (without its worst
            // interval), or the recent window for slower onsets.
            let windows = [
                (self.segment_len >= 2).then_some(trimmed),
                Some(self.recent),
            ];
            for w in windows.into_iter().flatten() {
                let Some(ratio) = w.ratio().filter(|&r| r >= p1) else {
                    continue;
                };
                if binomial_at_least(w.events, w.exposure, p0) < ec.significance / m {
                    finding = Some(ErrorFinding {
                        ratio,
                        baseline: p0,
                        errors: w.events,
                        requests: w.exposure,
                    });
                    break;
                }
            }
        }
        // Evidence still accumulating on a raised ratio neither fires nor
        // clears; a normal ratio or no evidence clears.
        if finding.is_some() {
            verdict = Verdict::Fire;
        } else if evidence > 0.0 && recent_ratio >= p1 {
            verdict = Verdict::Hold;
        } else {
            verdict = Verdict::Clear;
        }
        // The baseline learns only while nothing is raised, so it never
        // learns the fault (unless the fault outlasts the freeze limit).
        if !self.life.active() || frozen_too_long {
            self.baseline
                .add(errors, requests, decay(dt, cfg.baseline_window.0));
            self.baseline_age += dt;
        }
        (verdict, finding)
    }
}

/// What a TrafficDrop rests on, for the summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropFinding {
    pub rate: f64,
    pub baseline_rate: f64,
}

/// TrafficDrop state of one pool or one target.
#[derive(Debug, Clone, Default)]
pub struct RateTrack {
    baseline: Decayed,
    baseline_age: f64,
    cusum: Cusum,
    /// Requests and expected requests since the evidence last was zero.
    segment: Decayed,
    pub life: Lifecycle,
}

impl RateTrack {
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
        let dc: &DropConfig = &cfg.drop;
        let Some(dt) = dt.filter(|&d| d > 0.0) else {
            return (Verdict::Hold, None);
        };
        let armed = self.baseline_age >= cfg.baseline_warmup.0;
        let base_rate = self.baseline.ratio().unwrap_or(0.0);
        let mut verdict = Verdict::Hold;
        let mut finding = None;
        if armed && base_rate > 0.0 {
            let expected = base_rate * dt;
            self.cusum
                .step(poisson_llr(requests, expected, dc.ratio), dc.evidence);
            if self.cusum.sum <= 0.0 {
                self.segment = Decayed::default();
            } else {
                self.segment.add(requests, expected, 1.0);
            }
            let now_low = requests <= dc.ratio * expected;
            if self.cusum.sum >= dc.evidence
                && now_low
                && self.segment.events <= dc.ratio * self.segment.exposure
                && poisson_at_most(self.segment.events, 0.5 * self.segment.exposure)
                    < dc.significance
            {
                verdict = Verdict::Fire;
                finding = Some(DropFinding {
                    rate: requests / dt,
                    baseline_rate: base_rate,
                });
            } else if self.cusum.sum <= 0.0 || !now_low {
                verdict = Verdict::Clear;
            }
        }
        if !self.life.active() || frozen_too_long {
            self.baseline
                .add(requests, dt, decay(dt, dc.baseline_window.0));
            self.baseline_age += dt;
        }
        (verdict, finding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DetectConfig {
        DetectConfig::default()
    }

    /// Feeds (requests, errors) intervals 10 s apart; returns the verdicts.
    fn errors(intervals: &[(f64, f64)]) -> Vec<Verdict> {
        let mut t = ErrorTrack::default();
        intervals
            .iter()
            .map(|&(n, e)| t.observe(n, e, 10.0, 1, &cfg(), false).0)
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

    fn drops(intervals: &[f64]) -> Vec<Verdict> {
        let mut t = RateTrack::default();
        intervals
            .iter()
            .map(|&n| t.observe(n, Some(10.0), &cfg(), false).0)
            .collect()
    }

    #[test]
    fn traffic_falling_to_nothing_fires_but_halving_does_not() {
        let mut v = vec![1000.0; 30];
        v.extend([2.0; 3]);
        let out = drops(&v);
        assert_eq!(&out[30..], &[Verdict::Hold, Verdict::Fire, Verdict::Fire]);
        let mut v = vec![1000.0; 30];
        v.extend([500.0; 20]);
        assert!(!drops(&v).contains(&Verdict::Fire));
    }

    #[test]
    fn drops_wait_for_the_baseline_to_be_armed() {
        assert!(drops(&[1000.0, 1000.0, 0.0, 0.0, 0.0])
            .iter()
            .all(|&v| v == Verdict::Hold));
    }
}
