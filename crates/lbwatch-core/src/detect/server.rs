//! One server of a pool as the detector keeps it: its listing, counters,
//! windows and the state of its own alerts.

use super::evidence::{Calm, Decayed};
use super::lifecycle::Boxed;
use super::signals::Signals;
use super::sparse::SparseTrack;
use crate::model::ServerStat;

/// A server's counters as last listed, and the last interval's deltas.
/// (Fields in the order of the snapshot layout.)
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub requests_total: u64,
    pub errors_total: u64,
    /// The last interval's deltas, valid when `has_delta`.
    pub d_req: f64,
    pub d_err: f64,
    pub has_delta: bool,
}

/// A server's requests in the windows the skew tests judge.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Shares {
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
}

/// What a row did to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A second row for it in one scrape: set aside.
    Duplicate,
    /// Listed before: it has a delta; `decreased` when a counter went down.
    Known { decreased: bool },
    /// Not listed before.
    Joined,
}

/// A server as last listed, with what its counters did in the last interval.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServerState {
    pub name: std::sync::Arc<str>,
    /// Listed in the latest successful scrape.
    pub listed: bool,
    /// Generation of the scrape that last listed it (duplicate rows).
    pub seen: u64,
    pub up: bool,
    pub weight: f64,
    pub backup: bool,
    /// Its counters and what they did in the last interval.
    pub counts: Counts,
    /// Joined, or changed up/weight/backup, in the latest scrape.
    pub joined: bool,
    pub changed: bool,
    /// Its requests in the windows the skew tests judge.
    pub shares: Shares,
    /// Its ErrorSpike tracker, small while no evidence builds.
    pub errors: SparseTrack<Calm>,
    /// ServerDown's lifecycle, boxed while it runs.
    pub down: Boxed,
    /// What only some LBs publish, and the checks on it.
    #[serde(default)]
    pub signals: Signals,
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
            counts: Counts::default(),
            joined: false,
            changed: false,
            shares: Shares::default(),
            errors: SparseTrack::default(),
            down: Boxed::default(),
            signals: Signals::default(),
        }
    }

    /// A new scrape: no delta, nothing joined or changed yet.
    pub fn begin_scrape(&mut self) {
        self.counts.has_delta = false;
        self.joined = false;
        self.changed = false;
    }

    /// Its row of scrape `gen`: the deltas since the last one (a counter
    /// that went down counts from zero), its listing and weight.
    pub fn take_row(&mut self, row: &ServerStat, gen: u64) -> Taken {
        if self.seen == gen {
            return Taken::Duplicate;
        }
        self.seen = gen;
        // A weight that is no weight (NaN, infinite, negative: the sources
        // refuse them, a recording may not) takes the server out of
        // rotation, as a weight of 0 does.
        let weight = if row.weight.is_finite() && row.weight >= 0.0 {
            row.weight
        } else {
            0.0
        };
        self.signals.take(row, self.listed);
        let taken = if self.listed {
            self.changed = self.up != row.up || self.weight != weight || self.backup != row.backup;
            let decreased = row.requests_total < self.counts.requests_total
                || row.responses_5xx_total < self.counts.errors_total;
            if decreased {
                self.counts.d_req = row.requests_total as f64;
                self.counts.d_err = row.responses_5xx_total as f64;
            } else {
                self.counts.d_req = (row.requests_total - self.counts.requests_total) as f64;
                self.counts.d_err = (row.responses_5xx_total - self.counts.errors_total) as f64;
            }
            self.counts.has_delta = true;
            Taken::Known { decreased }
        } else {
            self.joined = true;
            Taken::Joined
        };
        self.listed = true;
        self.up = row.up;
        self.weight = weight;
        self.backup = row.backup;
        self.counts.requests_total = row.requests_total;
        self.counts.errors_total = row.responses_5xx_total;
        taken
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
