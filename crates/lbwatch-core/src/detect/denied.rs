//! RequestsDenied: a frontend that denies a share of its requests far
//! above its own baseline. An ACL typo that blocks everyone shows here
//! first, in the frontend's own counters, before any pool goes quiet.

use super::evidence::Decayed;
use super::lifecycle::{Lifecycle, Verdict};
use super::stats::decay;
use crate::model::FrontendStat;

/// A denied share pages from this level (a bot being denied is a fraction
/// of a percent; a rule that blocks everyone, most of the traffic). The
/// share is denied / (requests + denied), as the contract defines it, since
/// connection-level denials never reach `requests_total`; HTTP denials do
/// (HAProxy counts them in both), so a frontend denying every HTTP request
/// shows a share of one half ...
const DENIED_SHARE: f64 = 0.25;
/// ... and from this multiple of the usual share.
const DENIED_MULTIPLE: f64 = 10.0;
/// Until the usual share has been learnt this long, only a share at least
/// this high pages: a frontend that denies a third of its traffic by design
/// (rate limiting) must not page on lbwatch's first minute.
const UNARMED_SHARE: f64 = 0.45;
/// Requests (received and denied) a judgement needs; fewer are carried
/// over to the next interval.
const MIN_REQUESTS: f64 = 20.0;
/// Time constant of the usual share.
const BASELINE_TAU_S: f64 = 1800.0;

/// What a RequestsDenied rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeniedFinding {
    pub denied: f64,
    pub requests: f64,
    pub usual: f64,
    pub secs: f64,
}

impl DeniedFinding {
    pub fn share(&self) -> f64 {
        self.denied / self.requests.max(1.0)
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct FrontendState {
    pub name: Box<str>,
    last: Option<(u64, u64)>,
    /// Received and denied since the last judgement, and over how long.
    pending: (f64, f64, f64),
    usual: Decayed,
    /// Seconds of traffic the usual share has learnt.
    learnt_s: f64,
    pub listed: bool,
    pub life: Lifecycle,
}

impl FrontendState {
    pub fn new(name: &str) -> Self {
        FrontendState {
            name: name.into(),
            ..Default::default()
        }
    }

    /// The frontend's row after `dt` seconds (`None`: the first, or after a
    /// reset); returns the verdict and, when it fires, the finding.
    /// `rules`: the healthy time the usual share needs, and whether the
    /// alert has been raised past the baselines' freeze limit (then what
    /// it sees is the new normal, and is learnt).
    pub fn observe(
        &mut self,
        row: &FrontendStat,
        dt: Option<f64>,
        (armed_after, frozen_too_long): (f64, bool),
    ) -> (Verdict, Option<DeniedFinding>) {
        let (Some(req), Some(den)) = (row.requests_total, row.denied_total) else {
            self.last = None;
            return (Verdict::Hold, None);
        };
        let last = self.last.replace((req, den));
        let (Some((lr, ld)), Some(dt)) = (last, dt) else {
            return (Verdict::Hold, None);
        };
        // A counter that went down (a reload) counts from zero.
        let d_req = req.checked_sub(lr).unwrap_or(req) as f64;
        let d_den = den.checked_sub(ld).unwrap_or(den) as f64;
        let (r, d, s) = self.pending;
        self.pending = (r + d_req, d + d_den, s + dt);
        let (r, d, secs) = self.pending;
        if r + d < MIN_REQUESTS {
            return (Verdict::Hold, None);
        }
        self.pending = (0.0, 0.0, 0.0);
        let usual = self.usual.ratio().unwrap_or(0.0);
        let share = d / (r + d);
        let floor = if self.learnt_s >= armed_after {
            DENIED_SHARE
        } else {
            UNARMED_SHARE
        };
        let denies = share >= floor && share >= DENIED_MULTIPLE * usual;
        if (!denies && !self.life.active()) || frozen_too_long {
            self.usual.add(d, r + d, decay(secs, BASELINE_TAU_S));
            self.learnt_s += secs;
        }
        if denies {
            let f = DeniedFinding {
                denied: d,
                requests: r + d,
                usual,
                secs,
            };
            (Verdict::Fire, Some(f))
        } else {
            (Verdict::Clear, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(req: u64, den: u64) -> FrontendStat<'static> {
        FrontendStat {
            frontend: "fe".into(),
            requests_total: Some(req),
            denied_total: Some(den),
            responses_4xx_total: None,
            responses_5xx_total: None,
        }
    }

    #[test]
    fn a_frontend_denying_most_requests_fires_and_bots_do_not() {
        let mut f = FrontendState::new("fe");
        let (mut req, mut den) = (0, 0);
        let rules = (120.0, false);
        assert_eq!(f.observe(&row(req, den), None, rules).0, Verdict::Hold);
        for i in 0..100 {
            req += 1000;
            den += u64::from(i % 10 == 0);
            assert_eq!(
                f.observe(&row(req, den), Some(10.0), rules).0,
                Verdict::Clear
            );
        }
        req += 30;
        den += 970;
        let (v, finding) = f.observe(&row(req, den), Some(10.0), rules);
        assert_eq!(v, Verdict::Fire);
        let f = finding.unwrap();
        assert!((f.share() - 0.97).abs() < 1e-9 && f.usual < 0.001, "{f:?}");
        // A frontend that denies 30% by design does not page on the
        // first minutes, and then has learnt that it does.
        let mut limited = FrontendState::new("fe");
        let (mut req, mut den) = (0, 0);
        limited.observe(&row(req, den), None, rules);
        for _ in 0..100 {
            req += 70;
            den += 30;
            let v = limited.observe(&row(req, den), Some(10.0), rules).0;
            assert_eq!(v, Verdict::Clear);
        }
    }
}
