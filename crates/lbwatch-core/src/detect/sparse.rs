//! ErrorSpike trackers kept small while at rest. A server has two (5xx,
//! and failed attempts where the LB counts them), 224 bytes each: 45 MB
//! for a fleet of 100,000 servers. Most of the time a server's tracker has
//! no evidence under way, and its failed attempts none at all: only its
//! baseline and recent window are then not zero. Such a tracker keeps
//! those alone (`Calm`, 104 bytes; `Quiet`, 72, without errors), is the
//! full tracker again, exactly, for each interval, and small again once
//! it has been at rest for a few intervals.

use super::config::{DetectConfig, ErrorConfig};
use super::evidence::{ErrorFinding, ErrorInterval, ErrorTrack, Part};
use super::lifecycle::{Lifecycle, Verdict};

/// An `ErrorTrack`, at rest (its `P` part) or not. Snapshots keep the
/// full tracker's layout.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(from = "ErrorTrack", into = "ErrorTrack", bound = "P: Part + Clone")]
pub enum SparseTrack<P> {
    Small(P),
    /// The full tracker, and the intervals it has been at rest.
    Busy(Box<ErrorTrack>, u8),
}

/// Intervals at rest before a full tracker is made small again: two, not
/// more. A server with a 5xx now and then (at 0.1% errors, one every
/// minute or two) is full from its error until its evidence is zero
/// again, then for these intervals: at eight, the fleet benchmark held
/// 28,000 full trackers at once (6.3 MB in heaptrack). Boxing one again
/// costs an allocation; a tracker near its threshold pays it every third
/// interval at most.
const CALM_AFTER: u8 = 2;

impl<P: Part> Default for SparseTrack<P> {
    fn default() -> Self {
        SparseTrack::from(ErrorTrack::default())
    }
}

impl<P: Part> From<ErrorTrack> for SparseTrack<P> {
    fn from(t: ErrorTrack) -> Self {
        match P::of(&t) {
            Some(p) => SparseTrack::Small(p),
            None => SparseTrack::Busy(Box::new(t), 0),
        }
    }
}

impl<P: Part> From<SparseTrack<P>> for ErrorTrack {
    fn from(s: SparseTrack<P>) -> ErrorTrack {
        match s {
            SparseTrack::Small(p) => p.track(),
            SparseTrack::Busy(t, _) => *t,
        }
    }
}

impl<P: Part> SparseTrack<P> {
    /// `f` on the full tracker; one that was small is kept small if it
    /// still can be.
    #[inline]
    fn with<R>(&mut self, f: impl FnOnce(&mut ErrorTrack) -> R) -> R {
        match self {
            SparseTrack::Busy(t, _) => f(t),
            SparseTrack::Small(p) => {
                let mut t = p.track();
                let r = f(&mut t);
                match P::of(&t) {
                    Some(q) => *p = q,
                    None => *self = SparseTrack::Busy(Box::new(t), 0),
                }
                r
            }
        }
    }

    /// After an interval: a full tracker at rest for `CALM_AFTER`
    /// intervals is made small (one near its threshold would otherwise be
    /// boxed and unboxed interval after interval).
    fn settle(&mut self) {
        if let SparseTrack::Busy(t, rested) = self {
            match P::of(t) {
                Some(p) if *rested + 1 >= CALM_AFTER => *self = SparseTrack::Small(p),
                Some(_) => *rested += 1,
                None => *rested = 0,
            }
        }
    }

    /// `ErrorTrack::observe`.
    pub fn observe(
        &mut self,
        iv: ErrorInterval,
        tests: usize,
        rules: (&DetectConfig, &ErrorConfig),
        frozen_too_long: bool,
    ) -> (Verdict, Option<ErrorFinding>) {
        let r = self.with(|t| t.observe(iv, tests, rules, frozen_too_long));
        self.settle();
        r
    }

    /// `ErrorTrack::forget_evidence`; a small tracker has none.
    pub fn forget_evidence(&mut self) {
        if let SparseTrack::Busy(t, _) = self {
            t.forget_evidence();
        }
    }

    /// `f` on its lifecycle. A small tracker's is at rest, and most steps
    /// leave it so (a clear verdict): then the tracker stays as it is, not
    /// made full and small again.
    #[inline]
    pub fn life_mut<R>(&mut self, f: impl FnOnce(&mut Lifecycle) -> R) -> R {
        match self {
            SparseTrack::Busy(t, _) => f(&mut t.life),
            SparseTrack::Small(p) => {
                let mut life = Lifecycle::default();
                let r = f(&mut life);
                if life != Lifecycle::default() {
                    let mut t = p.track();
                    t.life = life;
                    *self = SparseTrack::Busy(Box::new(t), 0);
                }
                r
            }
        }
    }

    /// Its lifecycle (at rest while small).
    pub fn life(&self) -> Lifecycle {
        match self {
            SparseTrack::Small(_) => Lifecycle::default(),
            SparseTrack::Busy(t, _) => t.life.clone(),
        }
    }

    #[cfg(test)]
    fn is_small(&self) -> bool {
        matches!(self, SparseTrack::Small(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::evidence::{Calm, Quiet};
    use crate::detect::lifecycle::Persistence;
    use crate::model::Timestamp;

    fn interval(requests: f64, errors: f64) -> ErrorInterval {
        ErrorInterval {
            requests,
            errors,
            dt: 1.0,
            baseline_decay: 0.999,
        }
    }

    /// Quiet for long, a storm, quiet again (evidence forgotten at step
    /// 500), then a 5xx every 40 intervals.
    fn intervals() -> Vec<(f64, f64)> {
        let mut steps: Vec<(f64, f64)> = vec![(0.0, 0.0)];
        steps.extend((0..300).map(|i| (50.0 + (i % 7) as f64, 0.0)));
        steps.extend((0..40).map(|i| (60.0, if i % 3 == 0 { 20.0 } else { 9.0 })));
        steps.extend((0..300).map(|_| (55.0, 0.0)));
        steps.extend((0..400).map(|i| (55.0, if i % 40 == 0 { 1.0 } else { 0.0 })));
        steps
    }

    /// Fed `intervals()`, with its lifecycle stepped as a pool steps it,
    /// the sparse tracker says what the full one says and is the full one,
    /// bit for bit, after every step. Returns whether it was small at each.
    fn agrees<P: Part + Clone + std::fmt::Debug>() -> Vec<bool> {
        let (cfg, ec) = (DetectConfig::default(), ErrorConfig::default());
        let persist = Persistence {
            fire_after: 1,
            fire_after_s: 0.0,
            resolve_after_s: cfg.resolve_after.0,
            resolve_after_samples: 2,
        };
        let mut full = ErrorTrack::default();
        let mut sparse = SparseTrack::<P>::default();
        let mut small = Vec::new();
        let mut fired = false;
        for (k, (requests, errors)) in intervals().into_iter().enumerate() {
            let iv = interval(requests, errors);
            let frozen = k % 97 == 0;
            let want = full.observe(iv, 20, (&cfg, &ec), frozen);
            let got = sparse.observe(iv, 20, (&cfg, &ec), frozen);
            assert_eq!(format!("{want:?}"), format!("{got:?}"), "step {k}");
            let ts = Timestamp::from_micros(k as i64 * 1_000_000);
            let t = full.life.step(want.0, ts, &persist);
            assert_eq!(t, sparse.life_mut(|l| l.step(got.0, ts, &persist)));
            fired |= full.life.firing();
            if k == 500 {
                full.forget_evidence();
                sparse.forget_evidence();
            }
            assert_eq!(format!("{:?}", full.life), format!("{:?}", sparse.life()));
            let now = ErrorTrack::from(sparse.clone());
            assert_eq!(format!("{full:?}"), format!("{now:?}"), "step {k}");
            small.push(sparse.is_small());
        }
        assert!(fired, "the storm fires");
        small
    }

    /// Quiet only until the first failure.
    #[test]
    fn a_quiet_tracker_is_the_full_one_and_small_until_a_failure() {
        let small = agrees::<Quiet>();
        let first = 301;
        assert!(small[..first].iter().all(|s| *s));
        assert!(small[first..].iter().all(|s| !*s));
        assert!(std::mem::size_of::<SparseTrack<Quiet>>() <= 80);
    }

    /// Calm before and long after the storm, and between lone 5xx.
    #[test]
    fn a_calm_tracker_is_the_full_one_and_small_when_no_evidence_builds() {
        let small = agrees::<Calm>();
        assert!(small[..301].iter().all(|s| *s));
        assert!(!small[301], "busy once the storm starts");
        let calm_later = small[700..].iter().filter(|s| **s).count();
        // Busy for a few intervals after each: 309 calm, against 261 when
        // a tracker stayed full for eight intervals at rest.
        assert!(calm_later > 300, "calm {calm_later} of the last 341 steps");
        assert!(std::mem::size_of::<SparseTrack<Calm>>() <= 112);
    }

    /// A snapshot holds the full tracker's bytes, small or not, and reads
    /// back small when it was.
    #[test]
    fn snapshots_keep_the_full_trackers_layout() {
        let (cfg, ec) = (DetectConfig::default(), ErrorConfig::default());
        let mut full = ErrorTrack::default();
        let mut sparse = SparseTrack::<Calm>::default();
        for errors in [0.0, 0.0, 0.0, 12.0] {
            let iv = interval(40.0, errors);
            full.observe(iv, 5, (&cfg, &ec), false);
            sparse.observe(iv, 5, (&cfg, &ec), false);
            let bytes = postcard::to_allocvec(&sparse).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&full).unwrap());
            let back: SparseTrack<Calm> = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back.is_small(), sparse.is_small());
            assert_eq!(format!("{:?}", ErrorTrack::from(back)), format!("{full:?}"));
        }
        assert!(!sparse.is_small());
    }
}
