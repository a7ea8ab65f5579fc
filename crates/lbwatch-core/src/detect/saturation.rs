//! Saturation: a server whose sessions stay at its limit. Past it, the LB
//! queues its requests (hash pools, where they cannot go elsewhere) or sends
//! them to its peers; either way it has no room left.

use super::lifecycle::{Persistence, Verdict};
use super::stats::decay;

/// A limit of at least this many sessions counts as reached at
/// `NEAR_LIMIT` of it; a smaller one only when every session is taken.
const LARGE_LIMIT: f64 = 20.0;
const NEAR_LIMIT: f64 = 0.95;

/// Whether `sessions` sit at `limit`. A pool busy at its daily peak touches
/// 90-100% of its limit in single scrapes; a saturated server stays there,
/// which the persistence below asks for.
pub fn at_limit(sessions: f64, limit: f64) -> bool {
    let need = if limit >= LARGE_LIMIT {
        (NEAR_LIMIT * limit).ceil()
    } else {
        limit
    };
    sessions >= need
}

/// At the limit for 4 scrapes in a row spanning at least 20 s: a peak's
/// single scrapes at the limit are one or two in a row.
pub fn saturation_persistence(resolve_after_s: f64) -> Persistence {
    Persistence {
        fire_after: 4,
        fire_after_s: 20.0,
        resolve_after_s,
        resolve_after_samples: 2,
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SaturationTrack {
    /// How full the server has been lately: sessions over limit, smoothed
    /// over two intervals (at least 10 s).
    pub fill: f64,
    filled: bool,
    /// The server's queue when it first sat at its limit in this episode.
    pub queue_at_start: f64,
    /// Its queue had grown when it fired.
    pub queued: bool,
    pub life: super::lifecycle::Lifecycle,
}

impl SaturationTrack {
    /// One scrape's sessions against the limit, `dt` seconds after the
    /// last. A server saturated by its demand sits at its limit with a
    /// momentary dip now and then (a request completes as a scrape looks):
    /// a dip continues a streak while the recent fill stays near full; a
    /// busy peak at 85% of the limit touches it in single scrapes, and its
    /// fill says it is not full.
    /// Requests queued for the server (`queue`) say it is full too: the LB
    /// queues for a server only at its limit, and a scrape that lands as a
    /// session ends sees one free slot and the queue that fills it.
    pub fn verdict(&mut self, sessions: f64, limit: f64, queue: f64, dt: f64) -> Verdict {
        let r = (sessions / limit).min(1.0);
        self.fill = match self.filled {
            false => r,
            true => {
                let w = decay(dt, (2.0 * dt).max(10.0));
                w * self.fill + (1.0 - w) * r
            }
        };
        self.filled = true;
        if at_limit(sessions, limit) || queue >= 1.0 {
            Verdict::Fire
        } else if self.life.active() && self.fill >= NEAR_LIMIT {
            Verdict::Building
        } else {
            Verdict::Clear
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_reached_near_it_when_large_and_at_it_when_small() {
        assert!(at_limit(2.0, 2.0));
        assert!(!at_limit(1.0, 2.0));
        assert!(at_limit(95.0, 100.0));
        assert!(!at_limit(94.0, 100.0));
        assert!(!at_limit(18.0, 19.0));
    }

    #[test]
    fn a_dip_continues_a_saturation_and_a_busy_peak_does_not_start_one() {
        let mut t = SaturationTrack::default();
        for _ in 0..20 {
            t.verdict(2.0, 2.0, 0.0, 1.0);
        }
        t.life.step(
            Verdict::Fire,
            crate::model::Timestamp::from_micros(0),
            &saturation_persistence(60.0),
        );
        assert_eq!(t.verdict(1.0, 2.0, 0.0, 1.0), Verdict::Building, "one dip");
        assert_eq!(
            t.verdict(1.0, 2.0, 3.0, 1.0),
            Verdict::Fire,
            "a free slot and a queue"
        );
        let mut peak = SaturationTrack::default();
        let mut verdicts = Vec::new();
        for i in 0..40 {
            let sessions = if i % 7 == 0 { 100.0 } else { 82.0 };
            verdicts.push(peak.verdict(sessions, 100.0, 0.0, 1.0));
        }
        assert!(!verdicts.contains(&Verdict::Building), "{verdicts:?}");
    }
}
