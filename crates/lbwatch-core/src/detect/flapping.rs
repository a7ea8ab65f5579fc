//! ServerFlapping: a server whose health check goes down again and again.
//! Each down is a ServerDown that resolves by itself, and a page for each
//! one is noise; the pattern is the finding.

use std::collections::VecDeque;

use super::lifecycle::{Lifecycle, Verdict};
use crate::model::Timestamp;

/// Downs within `FLAP_WINDOW_S` that make a server flapping.
pub const FLAP_DOWNS: usize = 4;
pub const FLAP_WINDOW_S: f64 = 600.0;

/// A server's downs: only a server that went down has a `FlapTrack`; the
/// others (nearly all of them) carry their last health alone.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Flaps {
    /// Up in the previous scrape that listed it (`None`: not listed).
    was_up: Option<bool>,
    pub track: Option<Box<FlapTrack>>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct FlapTrack {
    /// When each recent down was first seen.
    downs: VecDeque<Timestamp>,
    pub life: Lifecycle,
}

impl Flaps {
    /// The server's health in scrape `ts` (`None`: not listed); returns
    /// whether it is flapping and how many times it went down in the
    /// window, or `None` when it has not gone down in it and nothing is
    /// raised.
    /// `health` is `None` for a server not listed, `Some(None)` for a
    /// health that cannot be trusted (right after a reload), which keeps the
    /// last one.
    pub fn observe(
        &mut self,
        health: Option<Option<bool>>,
        ts: Timestamp,
    ) -> Option<(Verdict, usize)> {
        let up = match health {
            None => None,
            Some(None) => self.was_up,
            Some(Some(up)) => Some(up),
        };
        let went_down = self.was_up == Some(true) && up == Some(false);
        self.was_up = up;
        if went_down {
            self.track
                .get_or_insert_with(Default::default)
                .downs
                .push_back(ts);
        }
        let track = self.track.as_deref_mut()?;
        while track
            .downs
            .front()
            .is_some_and(|&d| ts.secs_since(d) > FLAP_WINDOW_S)
        {
            track.downs.pop_front();
        }
        let n = track.downs.len();
        let verdict = if n >= FLAP_DOWNS {
            Verdict::Fire
        } else {
            Verdict::Clear
        };
        Some((verdict, n))
    }

    /// Forgets the track once nothing is in the window and nothing raised.
    pub fn tidy(&mut self) {
        if self
            .track
            .as_ref()
            .is_some_and(|t| t.downs.is_empty() && !t.life.active())
        {
            self.track = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_downs_in_ten_minutes_flap_and_one_does_not() {
        let at = |s: i64| Timestamp::from_micros(s * 1_000_000);
        let mut f = Flaps::default();
        assert_eq!(
            f.observe(Some(Some(true)), at(0)),
            None,
            "a healthy server has no track"
        );
        let mut t = 0;
        let mut last = None;
        for _ in 0..4 {
            for up in [true, false] {
                t += 30;
                last = f.observe(Some(Some(up)), at(t));
            }
        }
        assert_eq!(last, Some((Verdict::Fire, 4)));
        // Ten quiet minutes later, it is over, and forgotten once resolved.
        assert_eq!(
            f.observe(Some(Some(true)), at(t + 700)),
            Some((Verdict::Clear, 0))
        );
        f.track.as_mut().unwrap().life = Lifecycle::default();
        f.tidy();
        assert!(f.track.is_none());
        // Leaving the stats and coming back down is no flap.
        let mut g = Flaps::default();
        g.observe(Some(Some(true)), at(0));
        g.observe(None, at(10));
        assert_eq!(g.observe(Some(Some(false)), at(20)), None);
        // An UP right after a reload is not trusted: the DOWN after it is
        // no new down.
        let mut h = Flaps::default();
        h.observe(Some(Some(false)), at(0));
        h.observe(Some(None), at(10));
        assert_eq!(h.observe(Some(Some(false)), at(20)), None);
    }
}
