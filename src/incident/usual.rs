//! What a pool usually does (its rate, 5xx ratio and each server's share),
//! learnt while no incident is open, and whether an interval looks unlike
//! it.

use super::lb_events::{Interval, Name};
use crate::detect::stats::{binomial_at_least, chi2_sf, g_statistic, poisson_at_most};

/// Time constant of a pool's usual rate, 5xx ratio and shares.
const BASELINE_TAU_S: f64 = 600.0;
/// How unlikely by chance an interval must be to count as abnormal.
const SURE: f64 = 1e-3;
/// A pool under this fraction of its usual rate is blocked: its missing
/// requests count.
pub(super) const BLOCKED_RATIO: f64 = 0.5;

#[derive(Debug, Clone, Default)]
pub(super) struct Usual {
    pub rate: Option<f64>,
    pub errors: Option<f64>,
    pub shares: Shares,
    /// Seconds of intervals whose shares were learnt: when a server was
    /// last listed, in the shares' own time.
    learnt_s: f64,
}

/// A server that left keeps its usual share this long (of learning), for
/// the incidents whose start it may be part of (`RING_S` before their
/// first alert); it then fades as if it took nothing, and is forgotten
/// after five time constants (its share under 1%). After a rolling deploy
/// to new names, the new servers were otherwise judged against the old
/// ones' shares, every interval abnormal, and the shares grew with every
/// name ever seen.
const LEFT_KEPT_S: f64 = super::ring::RING_S;
const LEFT_FORGOTTEN_S: f64 = LEFT_KEPT_S + 5.0 * BASELINE_TAU_S;

/// A server's usual share, and when it was last listed (`Usual::learnt_s`).
#[derive(Debug, Clone)]
struct Share {
    name: Name,
    share: f64,
    listed: f64,
}

/// Each server's usual share, in name order. A sorted vector of names
/// shared with the pool's ring, not a map of copied names: a fleet keeps
/// one for each of its hundred thousand servers, and a map's nodes and
/// name copies took four times the room.
#[derive(Debug, Clone, Default)]
pub(super) struct Shares(Vec<Share>);

impl Shares {
    pub fn get(&self, server: &str) -> Option<f64> {
        self.find(server).ok().map(|at| self.0[at].share)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|s| (&*s.name, s.share))
    }

    fn find(&self, server: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|s| (*s.name).cmp(server))
    }

    /// Moves `server`'s usual share a fraction `k` towards `share` (or
    /// starts it there), listed at `now`. The ring gives a pool's servers
    /// in the same order interval after interval, nearly always name
    /// order, so this is nearly always the place after `hint`.
    fn learn(&mut self, server: &Name, share: f64, k: f64, now: f64, hint: &mut usize) {
        let at = match self.0.get(*hint) {
            Some(s) if s.name == *server => Ok(*hint),
            _ => self.find(server),
        };
        match at {
            Ok(at) => {
                let e = &mut self.0[at];
                e.share += k * (share - e.share);
                e.listed = now;
                *hint = at + 1;
            }
            Err(at) => {
                let name = server.clone();
                let listed = now;
                self.0.insert(
                    at,
                    Share {
                        name,
                        share,
                        listed,
                    },
                );
                *hint = at + 1;
            }
        }
    }

    /// The servers not listed at `now`: those gone past `LEFT_KEPT_S`
    /// learn that they took nothing (a fraction `k` towards none), those
    /// gone past `LEFT_FORGOTTEN_S` are forgotten.
    fn left(&mut self, k: f64, now: f64) {
        self.0.retain_mut(|s| {
            let gone = now - s.listed;
            if gone > LEFT_KEPT_S {
                s.share *= 1.0 - k;
            }
            gone <= LEFT_FORGOTTEN_S
        });
        // Servers join one insert at a time and the vector doubles: a
        // pool of 25 would keep room for 32 (a fleet's 100,000 servers,
        // 0.9 MB of it spare).
        if self.0.capacity() > self.0.len() + self.0.len() / 8 + 1 {
            self.0.shrink_to_fit();
        }
    }
}

impl Usual {
    /// Learns an interval: its totals (`i`) and its requests per server,
    /// which a kept interval gives without building a map (none once the
    /// ring dropped them: the shares then learn nothing).
    pub fn learn<'a>(&mut self, i: &Interval, by_server: impl Iterator<Item = (&'a Name, f64)>) {
        if i.seconds <= 0.0 || i.reload {
            return;
        }
        let k = 1.0 - (-i.seconds / BASELINE_TAU_S).exp();
        let mix = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o + k * (new - o)));
        self.rate = mix(self.rate, i.requests / i.seconds);
        if i.requests > 0.0 {
            self.errors = mix(self.errors, i.errors / i.requests);
            let now = self.learnt_s + i.seconds;
            let (mut hint, mut listed) = (0, 0);
            for (s, r) in by_server {
                self.shares.learn(s, r / i.requests, k, now, &mut hint);
                listed += 1;
            }
            if listed > 0 {
                self.learnt_s = now;
                self.shares.left(k, now);
            }
        }
    }

    /// Does this interval look unlike the pool's usual self: far more 5xx,
    /// far less traffic, or its spread moved; each beyond chance
    /// (`SURE`), so that a noisy second at a low rate is no fault.
    pub fn abnormal(&self, i: &Interval) -> bool {
        let errors = self.errors.unwrap_or(0.0).max(1e-4);
        let failing = i.errors / i.requests.max(1.0) >= (3.0 * errors).max(errors + 0.01)
            && binomial_at_least(i.errors, i.requests, errors) < SURE;
        let blocked = self.rate.is_some_and(|r| {
            r >= 1.0
                && i.seconds > 0.0
                && !i.reload
                && i.requests / i.seconds < BLOCKED_RATIO * r
                && poisson_at_most(i.requests, r * i.seconds) < SURE
        });
        failing || blocked || self.moved(i)
    }

    fn moved(&self, i: &Interval) -> bool {
        if i.requests < 10.0 || self.shares.is_empty() {
            return false;
        }
        let (got, expected) = side_by_side(&self.shares, &i.by_server);
        let total: f64 = expected.iter().sum();
        let tv: f64 = got
            .iter()
            .zip(&expected)
            .map(|(g, e)| (g / i.requests - e / total).abs())
            .sum::<f64>()
            / 2.0;
        // The G-test only for a move large enough to matter: most
        // intervals of a fleet stop at the distance.
        tv >= 0.2 && {
            let (g, df) = g_statistic(&got, &expected);
            chi2_sf(g, df) < SURE
        }
    }
}

/// Each server's requests in an interval and its usual share, for every
/// server in either (both are in name order: one pass, no lookup). A
/// server new to the pool is expected to take a little.
fn side_by_side(
    usual: &Shares,
    now: &std::collections::BTreeMap<Name, f64>,
) -> (Vec<f64>, Vec<f64>) {
    use std::cmp::Ordering;
    let (mut got, mut expected) = (Vec::new(), Vec::new());
    let (mut a, mut b) = (usual.iter().peekable(), now.iter().peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => (*ka).cmp(&***kb),
        };
        let e = if order.is_le() {
            a.next().map_or(0.0, |(_, e)| e)
        } else {
            0.0
        };
        let g = if order.is_ge() {
            b.next().map_or(0.0, |(_, g)| *g)
        } else {
            0.0
        };
        got.push(g);
        expected.push(e.max(1e-3));
    }
    (got, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        s.into()
    }

    /// Servers learnt in any order end in name order, each found by name,
    /// and a server learnt again moves towards its new share.
    #[test]
    fn shares_stay_in_name_order_and_move_towards_what_is_learnt() {
        let mut s = Shares::default();
        let mut hint = 0;
        for (n, v) in [("b", 0.5), ("d", 0.25), ("a", 0.25)] {
            s.learn(&name(n), v, 0.5, 1.0, &mut hint);
        }
        let mut hint = 0;
        s.learn(&name("c"), 0.1, 0.5, 2.0, &mut hint);
        let mut hint = 0;
        s.learn(&name("a"), 0.75, 0.5, 3.0, &mut hint);
        s.learn(&name("b"), 0.5, 0.5, 3.0, &mut hint);
        let got: Vec<(&str, f64)> = s.iter().collect();
        assert_eq!(
            got,
            [("a", 0.5), ("b", 0.5), ("c", 0.1), ("d", 0.25)],
            "a moved half way to 0.75"
        );
        assert_eq!(s.get("c"), Some(0.1));
        assert_eq!(s.get("e"), None);
    }

    fn learn(usual: &mut Usual, i: &Interval) {
        usual.learn(i, i.by_server.iter().map(|(s, r)| (s, *r)));
    }

    /// A server listed without traffic (a backup) keeps its usual share of
    /// none; one that left keeps its share while an incident may still
    /// count it, then fades.
    #[test]
    fn a_listed_server_stays_and_one_that_left_fades_only_later() {
        let mut usual = Usual::default();
        for t in 0..600 {
            learn(
                &mut usual,
                &Interval::of(t, &[("a", 90.0), ("b", 10.0), ("backup", 0.0)], 0.0),
            );
        }
        assert_eq!(usual.shares.get("backup"), Some(0.0));
        let b = usual.shares.get("b").unwrap();
        for t in 600..660 {
            learn(
                &mut usual,
                &Interval::of(t, &[("a", 100.0), ("backup", 0.0)], 0.0),
            );
        }
        assert_eq!(usual.shares.get("b"), Some(b), "a minute after it left");
        for t in 660..1200 {
            learn(
                &mut usual,
                &Interval::of(t, &[("a", 100.0), ("backup", 0.0)], 0.0),
            );
        }
        assert!(
            usual.shares.get("b").unwrap() < b / 2.0,
            "ten minutes after"
        );
        assert_eq!(usual.shares.get("backup"), Some(0.0));
    }

    /// After a rolling deploy (every server replaced by one of another
    /// name, traffic spread as before), the new spread becomes the usual
    /// one: the servers that left are forgotten, and an interval like the
    /// others is no longer abnormal.
    #[test]
    fn servers_that_left_fade_from_the_usual_shares() {
        let mut usual = Usual::default();
        let even = |names: [&str; 4], t: i64| {
            let counts: Vec<(&str, f64)> = names.iter().map(|n| (*n, 250.0)).collect();
            Interval::of(t, &counts, 0.0)
        };
        let (old, new) = (["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"]);
        for t in 0..3600 {
            learn(&mut usual, &even(old, t));
        }
        assert!(usual.moved(&even(new, 3600)), "just after the deploy");
        for t in 3600..3600 + 3 * 3600 {
            learn(&mut usual, &even(new, t));
        }
        assert!(!usual.moved(&even(new, 4 * 3600)), "hours after");
        let left: Vec<&str> = usual.shares.iter().map(|(s, _)| s).collect();
        assert_eq!(left, new);
    }

    #[test]
    fn side_by_side_pairs_every_server_of_either() {
        let mut s = Shares::default();
        let mut hint = 0;
        s.learn(&name("a"), 0.5, 1.0, 1.0, &mut hint);
        s.learn(&name("c"), 0.5, 1.0, 1.0, &mut hint);
        let now = [(name("b"), 3.0), (name("c"), 7.0)].into_iter().collect();
        let (got, expected) = side_by_side(&s, &now);
        assert_eq!(got, [0.0, 3.0, 7.0]);
        assert_eq!(expected, [0.5, 1e-3, 0.5]);
    }

    /// A pool's servers, learnt one insert at a time, leave no room to
    /// spare past an eighth.
    #[test]
    fn the_shares_keep_no_spare_room() {
        let mut usual = Usual::default();
        let names: Vec<String> = (0..25).map(|n| format!("web{n:02}")).collect();
        let counts: Vec<(&str, f64)> = names.iter().map(|n| (n.as_str(), 4.0)).collect();
        learn(&mut usual, &Interval::of(0, &counts, 0.0));
        assert_eq!(usual.shares.0.len(), 25);
        assert!(
            usual.shares.0.capacity() <= 29,
            "{}",
            usual.shares.0.capacity()
        );
    }
}
