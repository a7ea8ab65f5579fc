//! One server of a pool as the detector keeps it: its listing, counters,
//! windows and the state of its own alerts.

use super::evidence::{Decayed, ErrorTrack};
use super::lifecycle::Lifecycle;

/// A server as last listed, with what its counters did in the last interval.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServerState {
    pub name: Box<str>,
    /// Listed in the latest successful scrape.
    pub listed: bool,
    /// Generation of the scrape that last listed it (duplicate rows).
    pub seen: u64,
    pub up: bool,
    pub weight: f64,
    pub backup: bool,
    pub requests_total: u64,
    pub errors_total: u64,
    /// The last interval's deltas, valid when `has_delta`.
    pub d_req: f64,
    pub d_err: f64,
    pub has_delta: bool,
    /// Joined, or changed up/weight/backup, in the latest scrape.
    pub joined: bool,
    pub changed: bool,
    /// Requests in the short and the smoothed window since the pool last
    /// changed.
    pub short_req: f64,
    pub win_req: f64,
    /// Decayed requests over the baseline window: the pool's usual shares,
    /// departed servers included (for the concentration test).
    pub base_req: f64,
    /// The server's own share while in rotation: its requests over the
    /// pool's in those intervals (for pools judged by history). A server
    /// new to the pool, or back from a drain, has its share measured over
    /// its own time, not diluted by the time it was away.
    pub hist_share: Decayed,
    pub errors: ErrorTrack,
    pub down: Lifecycle,
}

impl ServerState {
    pub fn new(name: &str) -> Self {
        ServerState {
            name: name.into(),
            listed: false,
            seen: 0,
            up: true,
            weight: 1.0,
            backup: false,
            requests_total: 0,
            errors_total: 0,
            d_req: 0.0,
            d_err: 0.0,
            has_delta: false,
            joined: false,
            changed: false,
            short_req: 0.0,
            win_req: 0.0,
            base_req: 0.0,
            hist_share: Decayed::default(),
            errors: ErrorTrack::default(),
            down: Lifecycle::default(),
        }
    }

    /// Expected to take a weight-proportional share of the pool.
    pub fn in_rotation(&self) -> bool {
        self.listed && self.up && !self.backup && self.weight > 0.0
    }

    /// Taken out on purpose: listed with weight 0 (drained, maintenance).
    pub fn drained(&self) -> bool {
        self.listed && self.weight <= 0.0
    }
}
