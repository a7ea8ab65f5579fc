//! The checks of a pool that read the optional signals: response time,
//! sessions against limits, 4xx, and health-check flapping. Each runs only
//! where the LB publishes its signal.

use super::emit::{Context, Emit};
use super::evidence::ErrorInterval;
use super::flapping::FLAP_WINDOW_S;
use super::latency::{slow, LatencyLook, LatencyTrack};
use super::lifecycle::{Persistence, Verdict};
use super::pool::PoolState;
use super::saturation::saturation_persistence;
use super::stats::decay;
use super::text;
use crate::detect::ErrorConfig;
use crate::model::{AlertName, Severity};

/// ClientErrorSpike: a 4xx background of a few percent drifts and bursts
/// (clients, scanners), so the effect must be large: three times the
/// baseline and 10 points more.
const CLIENT_ERRORS: ErrorConfig = ErrorConfig {
    ratio_multiple: 3.0,
    min_increase: 0.10,
    baseline_floor: 0.005,
    unarmed_floor: 0.05,
    evidence: 12.0,
    significance: 1e-6,
};
/// ... and the extra 4xx must come at least this fast: a scanner's
/// 404s at under a request per second are a fact of the internet, not a
/// misrouted pool.
const CLIENT_ERRORS_MIN_RATE: f64 = 1.0;
/// Seconds after a reload during which an UP is not taken as a recovery.
const RELOAD_SETTLE_S: f64 = 5.0;

impl PoolState {
    /// Every check on the optional signals, after the core ones.
    pub fn signal_checks(&mut self, ctx: &Context, emit: &mut Emit) {
        self.flap_check(ctx, emit);
        // Most LBs publish few of the signals: a check with nothing to read
        // and nothing raised is skipped (the detector's hot path).
        let (mut latency, mut sessions) = (self.latency.active(), false);
        for p in self.servers.iter().filter_map(|s| s.signals.lb.as_deref()) {
            latency |=
                !p.response_ms.is_none() || p.latency.as_ref().is_some_and(|l| l.life.active());
            sessions |= !p.session_limit.is_none()
                || p.saturation.as_ref().is_some_and(|s| s.life.active());
        }
        self.client_error_check(ctx, emit);
        if latency {
            self.latency_check(ctx, emit);
        }
        if sessions {
            self.saturation_check(ctx, emit);
        }
    }

    /// The pool left the stats: its signal alerts and its servers' resolve.
    pub fn end_signal_alerts(&mut self, emit: &mut Emit) {
        let pool = Some(&*self.name);
        let never = || unreachable!("ending an alert only resolves it");
        let t = self.client_errors.life.end();
        emit.transition(
            t,
            AlertName::ClientErrorSpike,
            Severity::Warning,
            pool,
            None,
            never,
        );
        let t = self.latency.end();
        emit.transition(
            t,
            AlertName::LatencySpike,
            Severity::Critical,
            pool,
            None,
            never,
        );
        for s in &mut self.servers {
            let server = Some(&*s.name);
            if let Some(track) = s.signals.flaps.track.as_deref_mut() {
                let t = track.life.end();
                emit.transition(
                    t,
                    AlertName::ServerFlapping,
                    Severity::Warning,
                    pool,
                    server,
                    never,
                );
            }
            let Some(p) = s.signals.lb.as_deref_mut() else {
                continue;
            };
            if let Some(l) = p.latency.as_deref_mut() {
                let t = l.life.end();
                let severity = Severity::Warning;
                emit.transition(t, AlertName::LatencySpike, severity, pool, server, never);
            }
            if let Some(sat) = p.saturation.as_deref_mut() {
                let severity = if sat.queued {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                let t = sat.life.end();
                emit.transition(t, AlertName::Saturation, severity, pool, server, never);
            }
        }
    }

    fn flap_check(&mut self, ctx: &Context, emit: &mut Emit) {
        let p = Persistence {
            fire_after: 1,
            fire_after_s: 0.0,
            resolve_after_s: ctx.cfg.resolve_after.0,
            resolve_after_samples: 2,
        };
        // A reloading HAProxy shows its servers UP until their checks fail
        // again: an UP right after a reload is no recovery, and the DOWN
        // after it no new flap.
        let reloading = ctx
            .reload_at
            .is_some_and(|r| ctx.ts.secs_since(r) <= RELOAD_SETTLE_S);
        let name = &self.name;
        for s in &mut self.servers {
            let health = match (s.listed, s.up) {
                (false, _) => None,
                (true, true) if reloading => Some(None),
                (true, up) => Some(Some(up)),
            };
            let Some((verdict, downs)) = s.signals.flaps.observe(health, ctx.ts) else {
                continue;
            };
            let track = s.signals.flaps.track.as_deref_mut().expect("observed");
            // A server that left the stats can no longer be judged.
            let t = if s.listed {
                track.life.step(verdict, ctx.ts, &p)
            } else {
                track.life.end()
            };
            let up = s.up;
            emit.transition(
                t,
                AlertName::ServerFlapping,
                Severity::Warning,
                Some(name),
                Some(&s.name),
                || {
                    let text = text::flapping_summary(&s.name, name, downs, FLAP_WINDOW_S, up);
                    (text, Some(downs as f64))
                },
            );
            s.signals.flaps.tidy();
        }
    }

    fn client_error_check(&mut self, ctx: &Context, emit: &mut Emit) {
        let (mut n, mut e, mut published) = (0.0, 0.0, false);
        for s in self.servers.iter().filter(|s| s.counts.has_delta) {
            if let Some(d) = s.signals.lb.as_ref().and_then(|p| p.responses_4xx.delta()) {
                n += s.counts.d_req;
                e += d;
                published = true;
            }
        }
        let dt = ctx.dt.unwrap_or(0.0);
        if !published {
            // The LB stopped publishing 4xx: nothing holds the alert up.
            let t = self
                .client_errors
                .life
                .step(Verdict::Clear, ctx.ts, &ctx.statistical(1));
            emit.transition(
                t,
                AlertName::ClientErrorSpike,
                Severity::Warning,
                Some(&self.name),
                None,
                || unreachable!("a clear only resolves"),
            );
            return;
        }
        if dt <= 0.0 {
            return;
        }
        let iv = ErrorInterval {
            requests: n,
            errors: e,
            dt,
            baseline_decay: decay(dt, ctx.cfg.baseline_window.0),
        };
        let frozen = ctx.frozen_too_long(&self.client_errors.life);
        let (mut verdict, finding) =
            self.client_errors
                .observe(iv, 1, (ctx.cfg, &CLIENT_ERRORS), frozen);
        if finding.is_some_and(|f| (f.ratio - f.baseline) * n / dt < CLIENT_ERRORS_MIN_RATE) {
            verdict = Verdict::Clear;
        }
        let t = self
            .client_errors
            .life
            .step(verdict, ctx.ts, &ctx.statistical(1));
        let since = self.client_errors.life.since();
        let (name, change) = (&self.name, self.last_change.as_ref());
        emit.transition(
            t,
            AlertName::ClientErrorSpike,
            Severity::Warning,
            Some(name),
            None,
            || {
                let f = finding.expect("a 4xx spike fires only with a finding");
                let text = text::client_error_summary(name, &f, &ctx.context(since, change));
                (text, Some(f.ratio))
            },
        );
    }

    fn latency_check(&mut self, ctx: &Context, emit: &mut Emit) {
        let dt = ctx.dt.unwrap_or(0.0);
        let armed_after = ctx.cfg.warmup(dt.max(1.0));
        let reset = ctx.rate_dt.is_none();
        let looks: Vec<Option<LatencyLook>> = self
            .servers
            .iter_mut()
            .map(|s| {
                let req = if s.counts.has_delta {
                    s.counts.d_req
                } else {
                    0.0
                };
                let serving = s.listed && s.up;
                let p = s.signals.lb.as_deref_mut()?;
                let ms = p.response_ms.get().filter(|_| serving);
                let look = p.latency.get_or_insert_with(Default::default).observe(
                    ms,
                    req,
                    reset || s.joined,
                    armed_after,
                );
                look.filter(|_| serving)
            })
            .collect();
        let covered = self.pool_latency(ctx, emit, &looks);
        self.server_latency(ctx, emit, &looks, covered);
        for p in self
            .servers
            .iter_mut()
            .filter_map(|s| s.signals.lb.as_deref_mut())
        {
            let track = p.latency.get_or_insert_with(Default::default);
            let f = ctx.frozen_too_long(&track.life);
            track.learn(dt, ctx.cfg.baseline_window.0, f);
        }
    }

    /// The pool's LatencySpike (critical): the servers carrying at least
    /// half its requests are slow. Returns whether it is raised.
    fn pool_latency(
        &mut self,
        ctx: &Context,
        emit: &mut Emit,
        looks: &[Option<LatencyLook>],
    ) -> bool {
        let (mut total, mut slow_req, mut slow_n) = (0.0, 0.0, 0);
        let mut worst: Option<(usize, f64)> = None;
        for (i, (s, look)) in self.servers.iter().zip(looks).enumerate() {
            let Some(l) = look else { continue };
            let req = if s.counts.has_delta {
                s.counts.d_req
            } else {
                0.0
            };
            total += req;
            if l.slow {
                slow_req += req;
                slow_n += 1;
                let ratio = l.ms / l.usual_ms;
                if worst.is_none_or(|(_, r)| ratio > r) {
                    worst = Some((i, ratio));
                }
            }
        }
        let verdict = if !self.servers.iter().any(|s| {
            s.signals
                .lb
                .as_ref()
                .is_some_and(|p| !p.response_ms.is_none())
        }) {
            // No server publishes a response time any more.
            Verdict::Clear
        } else if total <= 0.0 {
            Verdict::Hold
        } else if slow_n >= 2 && slow_req >= 0.5 * total {
            Verdict::Fire
        } else {
            Verdict::Clear
        };
        let t = self.latency.step(verdict, ctx.ts, &ctx.statistical(1));
        let since = self.latency.since();
        let listed = looks.iter().filter(|l| l.is_some()).count();
        let (name, change) = (&self.name, self.last_change.as_ref());
        let servers = &self.servers;
        emit.transition(
            t,
            AlertName::LatencySpike,
            Severity::Critical,
            Some(name),
            None,
            || {
                let (i, ratio) = worst.expect("a slow pool has a slowest server");
                let l = looks[i].expect("the slowest server has a look");
                let text = text::pool_latency_summary(
                    name,
                    (slow_n, listed),
                    (&servers[i].name, l.ms, l.usual_ms),
                    &ctx.context(since, change),
                );
                (text, Some(ratio))
            },
        );
        self.latency.active()
    }

    /// Each server's LatencySpike (warning): slow against its own baseline
    /// and against its peers, held while the pool's is raised.
    fn server_latency(
        &mut self,
        ctx: &Context,
        emit: &mut Emit,
        looks: &[Option<LatencyLook>],
        covered: bool,
    ) {
        let mut peers: Vec<f64> = looks.iter().flatten().map(|l| l.ms).collect();
        peers.sort_by(f64::total_cmp);
        let name = &self.name;
        for (s, look) in self.servers.iter_mut().zip(looks) {
            let Some(p) = s.signals.lb.as_deref_mut() else {
                continue;
            };
            let peer = look.and_then(|l| median_without(&peers, l.ms));
            let apart = peer.is_none_or(|p| look.is_some_and(|l| slow(l.ms, p)));
            let mut verdict = match p.response_ms.get() {
                None => Verdict::Clear,
                Some(_) => LatencyTrack::verdict(*look, apart),
            };
            let life = &mut p.latency.get_or_insert_with(Default::default).life;
            if covered && !life.active() {
                verdict = Verdict::Hold;
            }
            let t = if s.listed {
                life.step(verdict, ctx.ts, &ctx.statistical(1))
            } else {
                life.end()
            };
            let since = life.since();
            emit.transition(
                t,
                AlertName::LatencySpike,
                Severity::Warning,
                Some(name),
                Some(&s.name),
                || {
                    let l = look.expect("a slow server has a look");
                    let text = text::server_latency_summary(
                        &s.name,
                        name,
                        &l,
                        peer,
                        &ctx.context(since, None),
                    );
                    (text, Some(l.ms / l.usual_ms))
                },
            );
        }
    }

    fn saturation_check(&mut self, ctx: &Context, emit: &mut Emit) {
        let p = saturation_persistence(ctx.cfg.resolve_after.0);
        let dt = ctx.dt.unwrap_or(0.0);
        let name = &self.name;
        for s in &mut self.servers {
            let Some(sig) = s.signals.lb.as_deref_mut() else {
                continue;
            };
            let sat = sig.saturation.get_or_insert_with(Default::default);
            let (verdict, limit) = match (s.listed, sig.sessions.get(), sig.session_limit.get()) {
                (true, Some(x), Some(l)) => {
                    let queue = sig.queue.get().unwrap_or(0.0);
                    (sat.verdict(x, l, queue, dt), l)
                }
                // No limit (or no sessions) published any more: nothing
                // holds the alert up.
                _ => (Verdict::Clear, 0.0),
            };
            let queue = sig.queue.get().unwrap_or(0.0);
            if verdict == Verdict::Fire && !sat.life.active() {
                sat.queue_at_start = queue;
            }
            let t = if s.listed {
                sat.life.step(verdict, ctx.ts, &p)
            } else {
                sat.life.end()
            };
            let since = sat.life.since();
            if t == Some(super::lifecycle::Transition::Fired) {
                // Critical once requests wait: its queue grew since it
                // first sat at the limit. Its resolve says the same.
                sat.queued = queue >= 1.0 && queue > sat.queue_at_start;
            }
            let severity = if sat.queued {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let (sessions, from) = (sig.sessions.get().unwrap_or(0.0), sat.queue_at_start);
            emit.transition(
                t,
                AlertName::Saturation,
                severity,
                Some(name),
                Some(&s.name),
                || {
                    let held = since.map_or(0.0, |t0| ctx.ts.secs_since(t0));
                    let text = text::saturation_summary(
                        &s.name,
                        name,
                        (sessions, limit),
                        held,
                        (from, queue),
                    );
                    (text, Some(sessions / limit))
                },
            );
        }
    }
}

/// The median of `sorted` with one occurrence of `own` left out; `None`
/// when nothing is left.
fn median_without(sorted: &[f64], own: f64) -> Option<f64> {
    let mut rest: Vec<f64> = sorted.to_vec();
    if let Some(i) = rest.iter().position(|&x| x == own) {
        rest.remove(i);
    }
    (!rest.is_empty()).then(|| rest[rest.len() / 2])
}
