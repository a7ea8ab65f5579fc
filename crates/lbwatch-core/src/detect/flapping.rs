//! ServerFlapping: a server whose health check goes down again and again.
//! Each down is a ServerDown that resolves by itself, and a page for each
//! one is noise; the pattern is the finding.

use std::collections::VecDeque;

use super::lifecycle::{Lifecycle, Verdict};
use crate::model::Timestamp;

/// Downs within `FLAP_WINDOW_S` that make a server flapping.
pub const FLAP_DOWNS: usize = 4;
pub const FLAP_WINDOW_S: f64 = 600.0;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct FlapTrack {
    /// When each recent down was first seen.
    downs: VecDeque<Timestamp>,
    /// Up in the previous scrape that listed it (`None`: not listed).
    was_up: Option<bool>,
    pub life: Lifecycle,
}

impl FlapTrack {
    /// The server's health in scrape `ts` (`None`: not listed); returns
    /// whether it is flapping and how many times it went down in the window.
    pub fn observe(&mut self, up: Option<bool>, ts: Timestamp) -> (Verdict, usize) {
        if self.was_up == Some(true) && up == Some(false) {
            self.downs.push_back(ts);
        }
        self.was_up = up;
        while self
            .downs
            .front()
            .is_some_and(|&d| ts.secs_since(d) > FLAP_WINDOW_S)
        {
            self.downs.pop_front();
        }
        let n = self.downs.len();
        let verdict = if n >= FLAP_DOWNS {
            Verdict::Fire
        } else {
            Verdict::Clear
        };
        (verdict, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_downs_in_ten_minutes_flap_and_one_does_not() {
        let at = |s: i64| Timestamp::from_micros(s * 1_000_000);
        let mut f = FlapTrack::default();
        let mut t = 0;
        let mut last = (Verdict::Clear, 0);
        for _ in 0..4 {
            for up in [true, false] {
                t += 30;
                last = f.observe(Some(up), at(t));
            }
        }
        assert_eq!(last, (Verdict::Fire, 4));
        // Ten quiet minutes later, it is over.
        assert_eq!(f.observe(Some(true), at(t + 700)), (Verdict::Clear, 0));
        // Leaving the stats and coming back down is no flap.
        let mut g = FlapTrack::default();
        g.observe(Some(true), at(0));
        g.observe(None, at(10));
        assert_eq!(g.observe(Some(false), at(20)), (Verdict::Clear, 0));
    }
}
