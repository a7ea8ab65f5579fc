//! A server's failed-attempts tracker, kept small while it has seen no
//! failure: most servers never refuse a connection nor break a response,
//! and a full `ErrorTrack` (224 bytes) for each of a fleet's 100,000
//! servers is 22 MB. While quiet it keeps the few numbers that are not
//! zero (80 bytes in all); it is the full tracker again, exactly, for each
//! interval, and kept small afterwards if it still can be.

use super::config::{DetectConfig, ErrorConfig};
use super::evidence::{ErrorFinding, ErrorInterval, ErrorTrack, QuietPart};
use super::lifecycle::Verdict;

/// An `ErrorTrack`, quiet (no error seen, no evidence, at rest) or not.
/// Snapshots keep the full tracker's layout.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(from = "ErrorTrack", into = "ErrorTrack")]
pub enum SparseTrack {
    Quiet(QuietPart),
    Busy(Box<ErrorTrack>),
}

impl Default for SparseTrack {
    fn default() -> Self {
        SparseTrack::from(ErrorTrack::default())
    }
}

impl From<ErrorTrack> for SparseTrack {
    fn from(t: ErrorTrack) -> Self {
        match t.quiet_part() {
            Some(q) => SparseTrack::Quiet(q),
            None => SparseTrack::Busy(Box::new(t)),
        }
    }
}

impl From<SparseTrack> for ErrorTrack {
    fn from(s: SparseTrack) -> ErrorTrack {
        match s {
            SparseTrack::Quiet(q) => ErrorTrack::from_quiet(&q),
            SparseTrack::Busy(t) => *t,
        }
    }
}

impl SparseTrack {
    /// `f` on the full tracker, which is kept small afterwards if it can be.
    fn with<R>(&mut self, f: impl FnOnce(&mut ErrorTrack) -> R) -> R {
        match self {
            SparseTrack::Busy(t) => {
                let r = f(t);
                if let Some(q) = t.quiet_part() {
                    *self = SparseTrack::Quiet(q);
                }
                r
            }
            SparseTrack::Quiet(q) => {
                let mut t = ErrorTrack::from_quiet(q);
                let r = f(&mut t);
                *self = SparseTrack::from(t);
                r
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
        self.with(|t| t.observe(iv, tests, rules, frozen_too_long))
    }

    /// `ErrorTrack::forget_evidence`.
    pub fn forget_evidence(&mut self) {
        self.with(ErrorTrack::forget_evidence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(requests: f64, errors: f64) -> ErrorInterval {
        ErrorInterval {
            requests,
            errors,
            dt: 1.0,
            baseline_decay: 0.999,
        }
    }

    /// Fed the same intervals (quiet for long, a storm of failures, quiet
    /// again, evidence forgotten), the sparse tracker says what the full
    /// one says and is the full one, bit for bit, after every step; it is
    /// small while quiet and full once a failure came.
    #[test]
    fn a_sparse_tracker_is_the_full_one_and_small_while_quiet() {
        let (cfg, ec) = (DetectConfig::default(), ErrorConfig::default());
        let mut full = ErrorTrack::default();
        let mut sparse = SparseTrack::default();
        let mut steps: Vec<(f64, f64)> = vec![(0.0, 0.0)];
        steps.extend((0..300).map(|i| (50.0 + (i % 7) as f64, 0.0)));
        steps.extend((0..40).map(|i| (60.0, if i % 3 == 0 { 20.0 } else { 9.0 })));
        steps.extend((0..300).map(|_| (55.0, 0.0)));
        let mut fired = false;
        for (k, (requests, errors)) in steps.into_iter().enumerate() {
            let iv = interval(requests, errors);
            let frozen = k % 97 == 0;
            let want = full.observe(iv, 20, (&cfg, &ec), frozen);
            let got = sparse.observe(iv, 20, (&cfg, &ec), frozen);
            assert_eq!(format!("{want:?}"), format!("{got:?}"), "step {k}");
            fired |= want.0 == Verdict::Fire;
            if k == 500 {
                full.forget_evidence();
                sparse.forget_evidence();
            }
            let now = ErrorTrack::from(sparse.clone());
            assert_eq!(format!("{full:?}"), format!("{now:?}"), "step {k}");
            let quiet = matches!(sparse, SparseTrack::Quiet(_));
            assert_eq!(quiet, k <= 300, "quiet at step {k}");
        }
        assert!(fired, "the storm fires");
        assert!(std::mem::size_of::<SparseTrack>() <= 80);
    }

    /// A snapshot holds the full tracker's bytes, quiet or not, and reads
    /// back quiet when it was.
    #[test]
    fn snapshots_keep_the_full_trackers_layout() {
        let (cfg, ec) = (DetectConfig::default(), ErrorConfig::default());
        let mut full = ErrorTrack::default();
        let mut sparse = SparseTrack::default();
        for errors in [0.0, 0.0, 0.0, 12.0] {
            let iv = interval(40.0, errors);
            full.observe(iv, 5, (&cfg, &ec), false);
            sparse.observe(iv, 5, (&cfg, &ec), false);
            let bytes = postcard::to_allocvec(&sparse).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&full).unwrap());
            let back: SparseTrack = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(
                matches!(back, SparseTrack::Quiet(_)),
                matches!(sparse, SparseTrack::Quiet(_))
            );
            assert_eq!(format!("{:?}", ErrorTrack::from(back)), format!("{full:?}"));
        }
        assert!(matches!(sparse, SparseTrack::Busy(_)));
    }
}
