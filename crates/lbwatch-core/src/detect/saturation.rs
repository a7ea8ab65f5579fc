//! Saturation: a server whose sessions stay at its limit. Past it, the LB
//! queues its requests (hash pools, where they cannot go elsewhere) or sends
//! them to its peers; either way it has no room left.

use super::lifecycle::Persistence;

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

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SaturationTrack {
    /// The server's queue when it first sat at its limit in this episode.
    pub queue_at_start: f64,
    /// Its queue had grown when it fired.
    pub queued: bool,
    pub life: super::lifecycle::Lifecycle,
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
}
