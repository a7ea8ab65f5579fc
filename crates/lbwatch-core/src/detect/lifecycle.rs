//! pending -> firing -> resolved, with hysteresis: an alert fires after its
//! condition held for `fire_after` consecutive samples and resolves only
//! after it has been clear for `resolve_after` seconds and two samples, so
//! one fault gives one firing and one resolve rather than a flap.

use crate::model::Timestamp;

/// What a check concluded about one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The condition holds.
    Fire,
    /// The effect is visible but not yet significant (a sample with too few
    /// requests to prove it): it continues a pending streak, but an alert
    /// fires only on a sample that proves it.
    Building,
    /// The condition was evaluated and does not hold.
    Clear,
    /// Nothing can be concluded from this sample (no traffic, a partial
    /// interval after a reload, a baseline not armed yet): keep the state.
    Hold,
}

impl Verdict {
    /// Two checks of one alert together: the stronger verdict wins, and
    /// one that cannot conclude keeps the state against one that clears.
    pub fn or(self, other: Verdict) -> Verdict {
        let rank = |v: Verdict| match v {
            Verdict::Fire => 3,
            Verdict::Building => 2,
            Verdict::Hold => 1,
            Verdict::Clear => 0,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    #[default]
    Inactive,
    Pending,
    Firing,
}

/// How long a condition must hold, and be gone, before the state changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Persistence {
    pub fire_after: u32,
    /// ... and held across at least this many seconds.
    pub fire_after_s: f64,
    pub resolve_after_s: f64,
    pub resolve_after_samples: u32,
}

/// A state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Fired,
    Resolved,
}

/// 32 bytes, not 48: a server has up to five of them, so its times are
/// kept without `Option`s, each meaningful only while its streak runs
/// (`since` while active, `clear_since` while `clear_streak > 0`).
/// Snapshots keep the layout with `Option`s (`Saved`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Saved", into = "Saved")]
pub struct Lifecycle {
    phase: Phase,
    streak: u32,
    clear_streak: u32,
    /// When the condition first held in the current episode.
    since: Timestamp,
    /// When it first was clear since it fired.
    clear_since: Timestamp,
}

const _: () = assert!(std::mem::size_of::<Lifecycle>() == 32);

/// No time: what `since` and `clear_since` hold outside their streaks.
const UNSET: Timestamp = Timestamp::from_micros(0);

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: Phase::Inactive,
            streak: 0,
            clear_streak: 0,
            since: UNSET,
            clear_since: UNSET,
        }
    }
}

/// A lifecycle as snapshots keep it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    phase: Phase,
    streak: u32,
    since: Option<Timestamp>,
    clear_streak: u32,
    clear_since: Option<Timestamp>,
}

impl From<Lifecycle> for Saved {
    fn from(l: Lifecycle) -> Saved {
        Saved {
            phase: l.phase,
            streak: l.streak,
            since: l.since(),
            clear_streak: l.clear_streak,
            clear_since: (l.clear_streak > 0).then_some(l.clear_since),
        }
    }
}

impl From<Saved> for Lifecycle {
    /// A saved episode without its start (never written so) starts over.
    fn from(s: Saved) -> Lifecycle {
        let (Some(since), true) = (s.since, s.phase != Phase::Inactive) else {
            return Lifecycle::default();
        };
        let clear_since = s.clear_since.filter(|_| s.clear_streak > 0);
        Lifecycle {
            phase: s.phase,
            streak: s.streak,
            clear_streak: if clear_since.is_some() {
                s.clear_streak
            } else {
                0
            },
            since,
            clear_since: clear_since.unwrap_or(UNSET),
        }
    }
}

impl Lifecycle {
    /// Pending or firing: the condition is (being) raised, so the baselines
    /// behind it must not learn.
    pub fn active(&self) -> bool {
        self.phase != Phase::Inactive
    }

    pub fn firing(&self) -> bool {
        self.phase == Phase::Firing
    }

    /// Start of the current episode (first sample whose condition held).
    pub fn since(&self) -> Option<Timestamp> {
        self.active().then_some(self.since)
    }

    pub fn step(&mut self, verdict: Verdict, ts: Timestamp, p: &Persistence) -> Option<Transition> {
        match (verdict, self.phase) {
            (Verdict::Hold, _) => None,
            (Verdict::Building, Phase::Inactive) => {
                self.phase = Phase::Pending;
                self.since = ts;
                self.streak = 1;
                None
            }
            (Verdict::Building, Phase::Pending) => {
                self.streak += 1;
                None
            }
            (Verdict::Fire, Phase::Firing) => {
                self.clear_streak = 0;
                None
            }
            // An effect still visible but no longer proven neither keeps a
            // firing alert up nor clears it: at a few requests per server,
            // chance alone makes some server look hot in many intervals,
            // and that must not hold an alert for hours.
            (Verdict::Building, Phase::Firing) => None,
            (Verdict::Fire, phase) => {
                if phase == Phase::Inactive {
                    self.since = ts;
                    self.streak = 0;
                }
                self.streak += 1;
                let held = ts.secs_since(self.since);
                if self.streak >= p.fire_after && held >= p.fire_after_s {
                    self.phase = Phase::Firing;
                    self.clear_streak = 0;
                    Some(Transition::Fired)
                } else {
                    self.phase = Phase::Pending;
                    None
                }
            }
            (Verdict::Clear, Phase::Inactive) => None,
            (Verdict::Clear, Phase::Pending) => {
                *self = Lifecycle::default();
                None
            }
            (Verdict::Clear, Phase::Firing) => {
                if self.clear_streak == 0 {
                    self.clear_since = ts;
                }
                self.clear_streak += 1;
                let first_clear = self.clear_since;
                if self.clear_streak >= p.resolve_after_samples
                    && ts.secs_since(first_clear) >= p.resolve_after_s
                {
                    *self = Lifecycle::default();
                    Some(Transition::Resolved)
                } else {
                    None
                }
            }
        }
    }

    /// Ends the alert whatever its condition (its subject left), reporting a
    /// resolve when it was firing.
    pub fn end(&mut self) -> Option<Transition> {
        let was = self.firing();
        *self = Lifecycle::default();
        was.then_some(Transition::Resolved)
    }
}

/// A lifecycle in a box only while it is not at rest: a server's
/// ServerDown lifecycle rests nearly all the time, and 8 bytes for each of
/// a fleet's 100,000 servers take less room than 32. Snapshots keep the
/// lifecycle's layout.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Lifecycle", into = "Lifecycle")]
pub struct Boxed(Option<Box<Lifecycle>>);

impl Boxed {
    /// `f` on the lifecycle; boxed when it leaves rest, unboxed on its
    /// return.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut Lifecycle) -> R) -> R {
        let resting = Lifecycle::default();
        match &mut self.0 {
            Some(life) => {
                let r = f(life);
                if **life == resting {
                    self.0 = None;
                }
                r
            }
            None => {
                let mut life = resting.clone();
                let r = f(&mut life);
                if life != resting {
                    self.0 = Some(Box::new(life));
                }
                r
            }
        }
    }

    pub fn active(&self) -> bool {
        self.0.as_deref().is_some_and(Lifecycle::active)
    }
}

impl From<Lifecycle> for Boxed {
    fn from(l: Lifecycle) -> Boxed {
        Boxed((l != Lifecycle::default()).then(|| Box::new(l)))
    }
}

impl From<Boxed> for Lifecycle {
    fn from(b: Boxed) -> Lifecycle {
        b.0.map(|l| *l).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A boxed lifecycle is boxed while it runs and no longer once at
    /// rest, steps as the lifecycle does, and keeps its layout in
    /// snapshots.
    #[test]
    fn a_boxed_lifecycle_is_boxed_only_while_it_runs() {
        let p = Persistence {
            fire_after: 1,
            fire_after_s: 0.0,
            resolve_after_s: 0.0,
            resolve_after_samples: 2,
        };
        let at = |s: i64| Timestamp::from_micros(s * 1_000_000);
        let (mut boxed, mut plain) = (Boxed::default(), Lifecycle::default());
        let verdicts = [
            Verdict::Clear,
            Verdict::Fire,
            Verdict::Fire,
            Verdict::Clear,
            Verdict::Clear,
        ];
        let mut boxes = Vec::new();
        for (t, v) in verdicts.into_iter().enumerate() {
            let t = at(t as i64);
            assert_eq!(boxed.with(|l| l.step(v, t, &p)), plain.step(v, t, &p));
            assert_eq!(boxed.active(), plain.active());
            boxes.push(boxed.0.is_some());
            let bytes = postcard::to_allocvec(&boxed).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&plain).unwrap());
            assert_eq!(postcard::from_bytes::<Boxed>(&bytes).unwrap(), boxed);
        }
        // Boxed while clearing too (the second clear resolves).
        assert_eq!(boxes, [false, true, true, true, false]);
    }

    /// The layout snapshots held before the times lost their `Option`s.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Before {
        phase: Phase,
        streak: u32,
        since: Option<Timestamp>,
        clear_streak: u32,
        clear_since: Option<Timestamp>,
    }

    /// Snapshots are postcard, where fields go by their order: a firing
    /// lifecycle that has begun to clear is written as before, and read
    /// back from what was written before.
    #[test]
    fn snapshots_keep_the_layout_from_before() {
        let ts = |s: i64| Timestamp::from_micros(1_700_000_000_000_000 + s * 1_000_000);
        let mut l = Lifecycle::default();
        l.step(Fire, ts(0), &P);
        l.step(Fire, ts(1), &P);
        l.step(Clear, ts(2), &P);
        let before = Before {
            phase: Phase::Firing,
            streak: 2,
            since: Some(ts(0)),
            clear_streak: 1,
            clear_since: Some(ts(2)),
        };
        let written = postcard::to_allocvec(&before).unwrap();
        assert_eq!(postcard::to_allocvec(&l).unwrap(), written);
        let read: Lifecycle = postcard::from_bytes(&written).unwrap();
        let again: Before = postcard::from_bytes(&postcard::to_allocvec(&read).unwrap()).unwrap();
        assert_eq!(again, before);
    }
    use Verdict::{Clear, Fire, Hold};

    const P: Persistence = Persistence {
        fire_after: 2,
        fire_after_s: 0.0,
        resolve_after_s: 10.0,
        resolve_after_samples: 2,
    };

    /// Runs verdicts one second apart; returns the transitions with the
    /// second at which they happened.
    fn check(verdicts: &[Verdict]) -> Vec<(usize, Transition)> {
        let mut l = Lifecycle::default();
        verdicts
            .iter()
            .enumerate()
            .filter_map(|(i, &v)| {
                let ts = Timestamp::from_micros(i as i64 * 1_000_000);
                l.step(v, ts, &P).map(|t| (i, t))
            })
            .collect()
    }

    /// A lifecycle saved and restored at any step goes on as the one that
    /// was not: its times survive the layout snapshots keep.
    #[test]
    fn a_restored_lifecycle_goes_on_as_the_saved_one() {
        let run = [
            Fire, Fire, Clear, Fire, Clear, Clear, Hold, Clear, Clear, Clear,
        ];
        let ts = |i: usize| Timestamp::from_micros(1_700_000_000_000_000 + i as i64 * 4_000_000);
        for cut in 0..run.len() {
            let (mut kept, mut saved) = (Lifecycle::default(), Lifecycle::default());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for (i, &v) in run.iter().enumerate() {
                if i == cut {
                    let text = serde_json::to_string(&saved).unwrap();
                    saved = serde_json::from_str(&text).unwrap();
                }
                a.push(kept.step(v, ts(i), &P));
                b.push(saved.step(v, ts(i), &P));
                assert_eq!(kept.since(), saved.since(), "cut {cut} step {i}");
            }
            assert_eq!(a, b, "cut {cut}");
            assert!(a.contains(&Some(Transition::Resolved)), "{a:?}");
        }
    }

    #[test]
    fn fires_after_consecutive_hits_only() {
        assert_eq!(check(&[Fire, Clear, Fire, Clear, Fire]), vec![]);
        assert_eq!(check(&[Fire, Fire]), vec![(1, Transition::Fired)]);
        // Hold neither advances nor breaks a streak.
        assert_eq!(check(&[Fire, Hold, Fire]), vec![(2, Transition::Fired)]);
    }

    #[test]
    fn a_visible_but_unproven_effect_continues_a_streak_but_never_fires_alone() {
        use Verdict::Building;
        assert_eq!(check(&[Building, Building, Building]), vec![]);
        assert_eq!(check(&[Building, Fire]), vec![(1, Transition::Fired)]);
        assert_eq!(check(&[Building, Clear, Fire]), vec![]);
    }

    #[test]
    fn a_visible_but_unproven_effect_does_not_keep_an_alert_firing() {
        use Verdict::Building;
        let mut v = vec![Fire, Fire];
        // Clear now and then, an unproven effect in between: resolves once
        // the first clear is resolve_after old.
        for _ in 0..8 {
            v.extend([Clear, Building]);
        }
        assert_eq!(
            check(&v),
            vec![(1, Transition::Fired), (12, Transition::Resolved)]
        );
    }

    #[test]
    fn fires_only_once_the_condition_held_long_enough() {
        let p = Persistence {
            fire_after_s: 3.0,
            ..P
        };
        let mut l = Lifecycle::default();
        let fired: Vec<_> = (0..5)
            .map(|i| l.step(Fire, Timestamp::from_micros(i * 1_000_000), &p))
            .collect();
        assert_eq!(fired, [None, None, None, Some(Transition::Fired), None]);
    }

    #[test]
    fn resolves_only_after_staying_clear_long_enough() {
        let mut v = vec![Fire, Fire];
        v.extend([Clear; 5]);
        v.push(Fire); // a relapse restarts the clear period
        v.extend([Clear; 12]);
        assert_eq!(
            check(&v),
            vec![(1, Transition::Fired), (18, Transition::Resolved)]
        );
    }

    #[test]
    fn end_resolves_only_what_fired() {
        let mut l = Lifecycle::default();
        assert_eq!(l.end(), None);
        let t = Timestamp::from_micros(0);
        l.step(Fire, t, &P);
        l.step(Fire, t, &P);
        assert_eq!(l.end(), Some(Transition::Resolved));
        assert!(!l.active());
    }
}
