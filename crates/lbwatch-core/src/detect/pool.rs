//! One pool of one target: its servers, their counters and windows, and the
//! checks that run on every interval (health, membership, skew, errors,
//! drop).

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::config::SkewConfig;
use super::drop::{drop_persistence, RateTrack};
use super::emit::{Change, Context, Emit};
use super::evidence::{ErrorInterval, ErrorTrack};
use super::lifecycle::{Lifecycle, Persistence, Verdict};
use super::server::{ServerState, Taken};
use super::skew::{
    concentration_test, follows_weights, offends, share_test, Basis, SkewFinding, Window,
};
use super::stats::decay;
use super::text::{self, pool_error_summary, server_error_summary, skew_summary};
use crate::model::{AlertName, ServerStat, Severity};

/// An interval's length and the baselines' decay over it, shared by the
/// pool's and its servers' error checks.
#[derive(Debug, Clone, Copy)]
struct Shape {
    dt: f64,
    baseline_decay: f64,
}

impl Shape {
    fn of(self, requests: f64, errors: f64) -> ErrorInterval {
        ErrorInterval {
            requests,
            errors,
            dt: self.dt,
            baseline_decay: self.baseline_decay,
        }
    }
}

/// What the skew tests saw this interval.
#[derive(Debug, Default)]
struct Look {
    /// A significant offender.
    finding: Option<SkewFinding>,
    /// A server visibly off in the last interval, significant or not.
    visible: Option<usize>,
    /// Enough servers in play for a test to say anything.
    evaluated: bool,
}

/// Pool requests a server's own history must cover before its usual share
/// is trusted.
const MIN_HISTORY: f64 = 200.0;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PoolState {
    pub name: Box<str>,
    /// Sorted by name once each scrape is in (servers that join are
    /// appended, then sorted in `settle`): a deterministic order whatever
    /// the order of rows in the stats.
    pub servers: Vec<ServerState>,
    /// Servers that joined in this scrape, appended to `servers` and not
    /// yet sorted into place: name -> position. The others are found by
    /// a binary search of the sorted servers, which needs no room: a map
    /// of every server's name took 33 bytes a server, 3 MB of a fleet of
    /// 100,000, to find the rare row not at its place.
    #[serde(skip)]
    joining: FxHashMap<Arc<str>, usize>,
    /// Where each row of the latest scrape found its server, and the rows
    /// taken so far in this one: a pool lists its servers in the same order
    /// scrape after scrape, so a row is checked at its place before any
    /// lookup by name.
    #[serde(skip)]
    row_at: Vec<u32>,
    #[serde(skip)]
    rows: usize,
    pub algo: Option<Box<str>>,
    pub listed: bool,
    pub seen: u64,
    /// Servers that joined / left in the latest scrape.
    pub joined: Vec<Arc<str>>,
    pub left: Vec<Arc<str>>,
    /// Weight or backup changes in the latest scrape, as "web1 weight 1 -> 100".
    pub reweighted: Vec<String>,
    pub win_age: f64,
    pub base_age: f64,
    pub last_change: Option<Change>,
    pub skew: Lifecycle,
    pub skew_finding: Option<SkewFinding>,
    /// The server the pending skew streak is about.
    skew_candidate: Option<Arc<str>>,
    pub unavailable: Lifecycle,
    pub membership: Lifecycle,
    pub errors: ErrorTrack,
    pub rate: RateTrack,
    /// ClientErrorSpike's evidence, and the pool's LatencySpike.
    #[serde(default)]
    pub client_errors: ErrorTrack,
    #[serde(default)]
    pub latency: Lifecycle,
    /// Scratch space reused across intervals.
    /// The expected shares of the latest interval (unnormalised).
    #[serde(skip)]
    pub expected: Vec<f64>,
    #[serde(skip)]
    baseline: Vec<f64>,
}

impl PoolState {
    pub fn new(name: &str) -> Self {
        PoolState {
            name: name.into(),
            servers: Vec::new(),
            joining: FxHashMap::default(),
            row_at: Vec::new(),
            rows: 0,
            algo: None,
            listed: false,
            seen: 0,
            joined: Vec::new(),
            left: Vec::new(),
            reweighted: Vec::new(),
            win_age: 0.0,
            base_age: 0.0,
            last_change: None,
            skew: Lifecycle::default(),
            skew_finding: None,
            skew_candidate: None,
            unavailable: Lifecycle::default(),
            membership: Lifecycle::default(),
            errors: ErrorTrack::default(),
            rate: RateTrack::default(),
            client_errors: ErrorTrack::default(),
            latency: Lifecycle::default(),
            expected: Vec::new(),
            baseline: Vec::new(),
        }
    }

    /// The position of the server of the scrape's next row, `name`.
    fn server_index(&mut self, name: &str) -> usize {
        let k = self.rows;
        self.rows += 1;
        let hinted = self.row_at.get(k).map(|&i| i as usize);
        if let Some(i) = hinted.filter(|&i| self.servers.get(i).is_some_and(|s| *s.name == *name)) {
            return i;
        }
        let i = match self.find(name) {
            Some(i) => i,
            None => {
                // Appended, and sorted into place once the scrape is in:
                // inserting each joining server in order would move the
                // vector for each, quadratic in a large pool's first
                // scrape.
                let s = ServerState::new(name);
                self.joining.insert(s.name.clone(), self.servers.len());
                self.servers.push(s);
                self.servers.len() - 1
            }
        };
        match self.row_at.get_mut(k) {
            Some(at) => *at = i as u32,
            None => self.row_at.push(i as u32),
        }
        i
    }

    /// The position of the server named `name`, if the pool has it.
    pub fn find(&self, name: &str) -> Option<usize> {
        // Those that joined are the last ones (`learn`'s retain, which
        // could break this, runs only once they are sorted in).
        debug_assert!(self.joining.len() <= self.servers.len());
        let sorted = self.servers.len() - self.joining.len();
        self.servers[..sorted]
            .binary_search_by(|s| (*s.name).cmp(name))
            .ok()
            .or_else(|| self.joining.get(name).copied())
    }

    /// Sorts the servers by name after servers joined (or the pool was
    /// restored from a snapshot, which may list them otherwise), and
    /// forgets where rows found them, as their places changed.
    pub fn reindex(&mut self) {
        self.servers.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        // Dropped, not cleared: a large pool's first scrape left room for
        // all its servers.
        self.joining = FxHashMap::default();
        self.row_at.clear();
    }

    /// Requests in the last interval over servers with a known delta.
    pub fn interval_requests(&self) -> f64 {
        self.servers
            .iter()
            .filter(|s| s.counts.has_delta)
            .map(|s| s.counts.d_req)
            .sum()
    }

    /// Expected shares restricted to servers with a delta this interval.
    fn interval_expected(&self, expected: &[f64]) -> Vec<f64> {
        self.servers
            .iter()
            .zip(expected)
            .map(|(s, &e)| if s.counts.has_delta { e } else { 0.0 })
            .collect()
    }

    fn regime_changed(&self) -> bool {
        !self.joined.is_empty() || !self.left.is_empty() || self.servers.iter().any(|s| s.changed)
    }

    /// Runs every check of the pool on the latest interval.
    pub fn evaluate(&mut self, ctx: &Context, emit: &mut Emit) {
        self.health(ctx, emit);
        self.membership_check(ctx, emit);
        if !self.listed {
            self.end_alerts(emit);
            return;
        }
        if ctx.first {
            return;
        }
        self.skew_check(ctx, emit);
        self.error_check(ctx, emit);
        self.drop_check(ctx, emit);
        self.signal_checks(ctx, emit);
        self.learn(ctx);
    }

    /// The pool's own TrafficDrop. The target-level one already says it
    /// for every pool; a pool with no server up has nowhere to send
    /// traffic, and PoolUnavailable says so.
    fn drop_check(&mut self, ctx: &Context, emit: &mut Emit) {
        let requests = self.interval_requests();
        let frozen = ctx.frozen_too_long(&self.rate.life);
        let covered =
            (ctx.target_drop_active || self.unavailable.active()) && !self.rate.life.active();
        let (verdict, finding) = self
            .rate
            .observe(requests, ctx.rate_dt, ctx.cfg, frozen, covered);
        let t = self.rate.life.step(verdict, ctx.ts, &drop_persistence());
        let since = self.rate.life.since();
        let (name, change) = (&self.name, self.last_change.as_ref());
        emit.transition(
            t,
            AlertName::TrafficDrop,
            Severity::Critical,
            Some(name),
            None,
            || {
                let f = finding.expect("a drop fires only with a finding");
                let text = text::pool_drop_summary(name, &f, &ctx.context(since, change));
                (text, Some(f.rate / f.baseline_rate))
            },
        );
    }

    /// The pool left the stats: nothing of it can be judged any more, so
    /// whatever of it was firing resolves (a pool that comes back starts
    /// afresh, and pages again if it is still wrong).
    fn end_alerts(&mut self, emit: &mut Emit) {
        let pool = Some(&*self.name);
        let never = || unreachable!("ending an alert only resolves it");
        for (life, alert) in [
            (&mut self.skew, AlertName::TrafficSkew),
            (&mut self.errors.life, AlertName::ErrorSpike),
            (&mut self.rate.life, AlertName::TrafficDrop),
        ] {
            emit.transition(life.end(), alert, Severity::Critical, pool, None, never);
        }
        for s in &mut self.servers {
            let t = s.errors.life_mut(Lifecycle::end);
            emit.transition(
                t,
                AlertName::ErrorSpike,
                Severity::Warning,
                pool,
                Some(&s.name),
                never,
            );
        }
        self.end_signal_alerts(emit);
    }

    fn health(&mut self, ctx: &Context, emit: &mut Emit) {
        let name = self.name.clone();
        let listed = self.servers.iter().filter(|s| s.listed).count();
        let down = self.servers.iter().filter(|s| s.listed && !s.up).count();
        // The LB's own health check already debounced going down; coming
        // back needs two samples and 3 s, because a reloading HAProxy shows
        // its servers UP for a moment until their checks fail again.
        let immediate = Persistence {
            fire_after: 1,
            fire_after_s: 0.0,
            resolve_after_s: 3.0,
            resolve_after_samples: 2,
        };
        for s in &mut self.servers {
            let t = if s.listed {
                let v = if s.up { Verdict::Clear } else { Verdict::Fire };
                s.down.with(|l| l.step(v, ctx.ts, &immediate))
            } else {
                s.down.with(Lifecycle::end)
            };
            emit.transition(
                t,
                AlertName::ServerDown,
                Severity::Warning,
                Some(&name),
                Some(&s.name),
                || {
                    let text = text::server_down_summary(&s.name, s.backup, &name, down, listed);
                    (text, Some(down as f64))
                },
            );
        }
        self.availability(ctx, emit, &immediate);
    }

    /// PoolUnavailable: no listed server can serve, each down by the health
    /// check or taken out of rotation (maintenance, drain, weight 0).
    fn availability(&mut self, ctx: &Context, emit: &mut Emit, p: &Persistence) {
        let listed = self.servers.iter().filter(|s| s.listed).count();
        let can_serve = self
            .servers
            .iter()
            .any(|s| s.listed && s.up && s.weight > 0.0);
        let t = if listed == 0 {
            self.unavailable.end()
        } else {
            let v = if can_serve {
                Verdict::Clear
            } else {
                Verdict::Fire
            };
            self.unavailable.step(v, ctx.ts, p)
        };
        let name = self.name.clone();
        let down: Vec<&str> = self
            .servers
            .iter()
            .filter(|s| s.listed && !s.up)
            .map(|s| &*s.name)
            .collect();
        let out: Vec<&str> = self
            .servers
            .iter()
            .filter(|s| s.listed && s.up && s.weight <= 0.0)
            .map(|s| &*s.name)
            .collect();
        let change = self.last_change.as_ref();
        emit.transition(
            t,
            AlertName::PoolUnavailable,
            Severity::Critical,
            Some(&name),
            None,
            || {
                let context = ctx.context(Some(ctx.ts), change);
                let text = text::unavailable_summary(&name, listed, &down, &out, &context);
                (text, Some(0.0))
            },
        );
    }

    fn membership_check(&mut self, ctx: &Context, emit: &mut Emit) {
        let name = self.name.clone();
        let changed = !ctx.first && (!self.joined.is_empty() || !self.left.is_empty());
        let verdict = if changed {
            Verdict::Fire
        } else {
            Verdict::Clear
        };
        let hold = Persistence {
            fire_after: 1,
            fire_after_s: 0.0,
            resolve_after_s: ctx.cfg.membership_hold.0,
            resolve_after_samples: 1,
        };
        let now = self.servers.iter().filter(|s| s.listed).count();
        if !self.reweighted.is_empty() && !ctx.first {
            self.last_change = Some(Change {
                at: ctx.ts,
                what: text::names_of(&self.reweighted),
            });
        }
        if changed {
            let before = now + self.left.len() - self.joined.len();
            self.last_change = Some(Change {
                at: ctx.ts,
                what: text::membership_change(&self.left, before, &self.joined),
            });
        }
        let t = self.membership.step(verdict, ctx.ts, &hold);
        let change = self.last_change.clone();
        emit.transition(
            t,
            AlertName::PoolMembershipChanged,
            Severity::Info,
            Some(&name),
            None,
            || {
                let what = change.map(|c| c.what).unwrap_or_default();
                let reload = ctx.reload_at.filter(|&r| ctx.ts.secs_since(r) <= 300.0);
                let text = text::membership_summary(&name, &what, now, reload);
                (text, Some(now as f64))
            },
        );
    }

    /// A new scrape: nothing joined, left or changed yet.
    pub fn begin_scrape(&mut self) {
        self.rows = 0;
        self.joined.clear();
        self.left.clear();
        self.reweighted.clear();
        for s in &mut self.servers {
            s.begin_scrape();
        }
    }

    /// One row of scrape `gen`; what joined or was reweighted is noted for
    /// the membership summary (not on the target's `first` scrape).
    pub fn take_row(&mut self, row: &ServerStat, gen: u64, first: bool) -> Taken {
        self.seen = gen;
        if let Some(algo) = &row.algo {
            if self.algo.as_deref() != Some(&**algo) {
                self.algo = Some((**algo).into());
            }
        }
        let si = self.server_index(&row.server);
        let s = &mut self.servers[si];
        let (was_weight, was_backup) = (s.weight, s.backup);
        let taken = s.take_row(row, gen);
        match taken {
            Taken::Known { .. } if s.weight != was_weight || s.backup != was_backup => {
                let backup = |b: bool| if b { " (backup)" } else { "" };
                self.reweighted.push(format!(
                    "{} weight {was_weight}{} -> {}{}",
                    s.name,
                    backup(was_backup),
                    s.weight,
                    backup(s.backup),
                ));
            }
            Taken::Joined if !first => self.joined.push(s.name.clone()),
            _ => {}
        }
        taken
    }

    /// After every row of scrape `gen`: servers not listed have left; on a
    /// `reset` (reload) every delta is the count since it.
    pub fn settle(&mut self, gen: u64, reset: bool, first: bool) {
        self.listed = self.seen == gen;
        for s in &mut self.servers {
            if s.listed && s.seen != gen {
                s.listed = false;
                s.counts.has_delta = false;
                self.left.push(s.name.clone());
            } else if s.seen == gen && reset && (s.joined && !first || s.counts.has_delta) {
                s.counts.d_req = s.counts.requests_total as f64;
                s.counts.d_err = s.counts.errors_total as f64;
                s.counts.has_delta = true;
            }
            // A lone server's counter that went down was reset on its own
            // (re-added); its delta is already its count since.
            if s.counts.d_err > s.counts.d_req && s.counts.has_delta {
                s.counts.d_err = s.counts.d_req;
            }
        }
        if !self.joining.is_empty() {
            self.reindex();
        }
        // Servers join one at a time and the vector doubles as it grows:
        // at about 400 bytes a server, the spare room can be up to a tenth
        // of a fleet's memory. Trimmed once the scrape is in: after joins,
        // and after `learn` forgot servers gone for good.
        if self.servers.capacity() > self.servers.len() + self.servers.len() / 8 + 1 {
            self.servers.shrink_to_fit();
        }
    }

    fn skew_check(&mut self, ctx: &Context, emit: &mut Emit) {
        let cfg = &ctx.cfg.skew;
        let regime_changed = self.regime_changed();
        let armed = self.base_age >= ctx.cfg.warmup(ctx.dt.unwrap_or(f64::INFINITY));
        let mut look = Look::default();
        let (expected, basis) = self.expected_shares(armed);
        // A change inside the interval mixes two regimes: the share test
        // waits for a clean interval.
        if !regime_changed {
            self.share_look(&expected, basis, cfg, &mut look);
        }
        self.expected = expected;
        if armed && look.finding.is_none() {
            self.concentration_look(regime_changed, cfg, &mut look);
        }
        // Without a finding, an effect visible in the last interval but too
        // few requests to prove it (the first sample after a reload holds a
        // fraction of a second of traffic) continues a pending streak.
        let verdict = match (
            &look.finding,
            look.evaluated || self.interval_requests() > 0.0,
        ) {
            (Some(_), _) => Verdict::Fire,
            (None, _) if look.visible.is_some() => Verdict::Building,
            (None, true) => Verdict::Clear,
            (None, false) => Verdict::Hold,
        };
        let candidate = look.finding.as_ref().map(|f| f.server).or(look.visible);
        self.follow_candidate(verdict, candidate, cfg);
        let t = self.skew.step(
            verdict,
            ctx.ts,
            &ctx.statistical(ctx.cfg.fire_after_samples),
        );
        if look.finding.is_some() {
            self.skew_finding = look.finding;
        }
        let name = self.name.clone();
        let since = self.skew.since();
        let f = self.skew_finding.clone();
        let servers = &self.servers;
        let change = self.last_change.as_ref();
        let dt = ctx.dt.unwrap_or(0.0);
        emit.transition(
            t,
            AlertName::TrafficSkew,
            Severity::Critical,
            Some(&name),
            None,
            || {
                let f = f.expect("skew fires only with a finding");
                let pool_rps = (dt > 0.0).then(|| {
                    servers
                        .iter()
                        .filter(|s| s.counts.has_delta)
                        .map(|s| s.counts.d_req)
                        .sum::<f64>()
                        / dt
                });
                let context = ctx.context(since, change);
                let text = skew_summary(&name, &servers[f.server].name, &f, pool_rps, &context);
                (text, Some(f.share))
            },
        );
    }

    /// Expected shares: the weights of servers in rotation, or, where the
    /// algorithm does not follow weights, their usual shares once history
    /// tells them.
    fn expected_shares(&mut self, armed: bool) -> (Vec<f64>, Basis) {
        let by_weight = follows_weights(self.algo.as_deref());
        let mut expected = std::mem::take(&mut self.expected);
        expected.clear();
        expected.extend(self.servers.iter().map(|s| {
            if !s.in_rotation() {
                0.0
            } else if by_weight {
                s.weight
            } else {
                s.shares
                    .hist_share
                    .ratio()
                    .filter(|_| armed && s.shares.hist_share.exposure >= MIN_HISTORY)
                    .unwrap_or(0.0)
            }
        }));
        let basis = if by_weight {
            Basis::Weight
        } else {
            Basis::History
        };
        (expected, basis)
    }

    /// The share test over the last interval, then the short and the
    /// smoothed windows (a server sustained hot a while needs less).
    fn share_look(&self, expected: &[f64], basis: Basis, cfg: &SkewConfig, look: &mut Look) {
        let interval_expected = self.interval_expected(expected);
        look.evaluated |= interval_expected.iter().filter(|&&e| e > 0.0).count() >= 2;
        let servers = &self.servers;
        let interval = share_test(
            servers,
            &interval_expected,
            Window::Interval,
            cfg.hot_ratio,
            cfg,
            basis,
        );
        look.visible = interval.visible();
        look.finding = interval.found();
        if look.finding.is_none() && self.win_age > 0.0 {
            look.finding =
                share_test(servers, expected, Window::Short, cfg.hot_ratio, cfg, basis).found();
        }
        if look.finding.is_none() && self.win_age > 0.0 {
            let hot = if self.win_age >= cfg.window.0 {
                cfg.hot_ratio_sustained
            } else {
                cfg.hot_ratio
            };
            look.finding = share_test(servers, expected, Window::Smoothed, hot, cfg, basis).found();
        }
    }

    /// The concentration test against the baseline shares (servers drained
    /// on purpose left out), over the interval then the smoothed window.
    fn concentration_look(&mut self, regime_changed: bool, cfg: &SkewConfig, look: &mut Look) {
        let mut baseline = std::mem::take(&mut self.baseline);
        baseline.clear();
        baseline.extend(
            self.servers
                .iter()
                .map(|s| if s.drained() { 0.0 } else { s.shares.base_req }),
        );
        look.evaluated = true;
        let interval = concentration_test(&self.servers, &baseline, Window::Interval, cfg);
        look.visible = look.visible.or(interval.visible());
        look.finding = interval.found();
        if look.finding.is_none() && !regime_changed && self.win_age > 0.0 {
            look.finding =
                concentration_test(&self.servers, &baseline, Window::Smoothed, cfg).found();
        }
        self.baseline = baseline;
    }

    /// A pending skew streak goes on only while the server it began on is
    /// still visibly off: at a few requests per server and interval, some
    /// server looks hot by chance in many intervals, and one of them must
    /// not make a chance outlier on another server in the next interval a
    /// second hit. (A streak that began on a concentration is about its
    /// busiest server, judged by the same rule.)
    fn follow_candidate(&mut self, verdict: Verdict, candidate: Option<usize>, cfg: &SkewConfig) {
        if verdict == Verdict::Hold {
            return;
        }
        let same = match (&self.skew_candidate, candidate) {
            (Some(name), Some(i)) => *self.servers[i].name == **name,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        if self.skew.active() && !self.skew.firing() {
            let expected = self.interval_expected(&self.expected);
            let old = self.skew_candidate.as_ref().and_then(|n| self.find(n));
            if old.is_some_and(|i| offends(&self.servers, &expected, Window::Interval, i, cfg)) {
                return;
            }
            self.skew = Lifecycle::default();
        }
        self.skew_candidate = candidate.map(|i| self.servers[i].name.clone());
    }

    fn error_check(&mut self, ctx: &Context, emit: &mut Emit) {
        let dt = ctx.dt.unwrap_or(0.0);
        // One decay factor for the pool's and its servers' baselines.
        let shape = Shape {
            dt,
            baseline_decay: decay(dt, ctx.cfg.baseline_window.0),
        };
        let tests = self.pool_errors(ctx, emit, shape);
        self.server_errors(ctx, emit, shape, tests);
    }

    /// The pool's own ErrorSpike (critical); returns how many servers were
    /// tested, the multiple-testing count for each server's.
    fn pool_errors(&mut self, ctx: &Context, emit: &mut Emit, shape: Shape) -> usize {
        let (mut n, mut e) = (0.0, 0.0);
        let mut tests = 0;
        for s in self.servers.iter().filter(|s| s.counts.has_delta) {
            n += s.counts.d_req;
            e += s.counts.d_err;
            tests += 1;
        }
        let frozen = ctx.frozen_too_long(&self.errors.life);
        let (verdict, finding) =
            self.errors
                .observe(shape.of(n, e), 1, (ctx.cfg, &ctx.cfg.errors), frozen);
        let t = self.errors.life.step(verdict, ctx.ts, &ctx.statistical(1));
        let since = self.errors.life.since();
        let worst = self
            .servers
            .iter()
            .filter(|s| s.counts.has_delta && s.counts.d_req > 0.0)
            .max_by(|a, b| {
                (a.counts.d_err / a.counts.d_req).total_cmp(&(b.counts.d_err / b.counts.d_req))
            })
            .map(|s| (s.name.clone(), s.counts.d_err / s.counts.d_req))
            .filter(|_| tests > 1);
        let (name, change) = (&self.name, self.last_change.as_ref());
        emit.transition(
            t,
            AlertName::ErrorSpike,
            Severity::Critical,
            Some(name),
            None,
            || {
                let f = finding.expect("an error spike fires only with a finding");
                let context = ctx.context(since, change);
                let text =
                    pool_error_summary(name, &f, worst.as_ref().map(|(s, r)| (&**s, *r)), &context);
                (text, Some(f.ratio))
            },
        );
        tests
    }

    /// Each server's ErrorSpike (warning), held while the pool's fires.
    fn server_errors(&mut self, ctx: &Context, emit: &mut Emit, shape: Shape, tests: usize) {
        let pool_active = self.errors.life.active();
        let name = &self.name;
        for s in &mut self.servers {
            if !s.counts.has_delta {
                let t = if s.listed {
                    None
                } else {
                    s.errors.life_mut(Lifecycle::end)
                };
                emit.transition(
                    t,
                    AlertName::ErrorSpike,
                    Severity::Warning,
                    Some(name),
                    Some(&s.name),
                    || unreachable!("ending an alert only resolves it"),
                );
                continue;
            }
            let frozen = ctx.frozen_too_long(&s.errors.life());
            let (v5xx, f5xx) = s.errors.observe(
                shape.of(s.counts.d_req, s.counts.d_err),
                tests,
                (ctx.cfg, &ctx.cfg.errors),
                frozen,
            );
            // Failed attempts, where the LB counts them: a server that
            // refuses connections pages even when retries hide it.
            let d_req = s.counts.d_req;
            let failed = s.signals.lb.as_deref_mut().and_then(|p| {
                let (f, refused) = p.failed_attempts()?;
                let iv = shape.of(d_req + refused, f);
                Some(
                    p.failures
                        .observe(iv, tests, (ctx.cfg, &ctx.cfg.errors), frozen),
                )
            });
            let ffail = failed.and_then(|(_, f)| f);
            let mut verdict = failed.map_or(v5xx, |(v, _)| v5xx.or(v));
            if pool_active && !s.errors.life().active() {
                // The pool-level alert already covers it.
                verdict = Verdict::Hold;
                s.errors.forget_evidence();
                if let Some(p) = s.signals.lb.as_deref_mut() {
                    p.failures.forget_evidence();
                }
            }
            let t = s
                .errors
                .life_mut(|l| l.step(verdict, ctx.ts, &ctx.statistical(1)));
            let since = s.errors.life().since();
            emit.transition(
                t,
                AlertName::ErrorSpike,
                Severity::Warning,
                Some(name),
                Some(&s.name),
                || {
                    let context = ctx.context(since, None);
                    match (f5xx, ffail) {
                        (Some(f), _) => (
                            server_error_summary(&s.name, name, &f, &context),
                            Some(f.ratio),
                        ),
                        (None, Some(f)) => (
                            text::server_failure_summary(&s.name, name, &f, &context),
                            Some(f.ratio),
                        ),
                        (None, None) => unreachable!("an error spike fires only with a finding"),
                    }
                },
            );
        }
    }

    /// Updates the smoothed window and the share baseline after the checks,
    /// so the interval is judged against what came before it.
    fn learn(&mut self, ctx: &Context) {
        let Some(dt) = ctx.dt.filter(|&d| d > 0.0) else {
            return;
        };
        let regime_changed = self.regime_changed();
        let w = decay(dt, ctx.cfg.skew.window.0);
        let ws = decay(dt, (2.5 * dt).max(5.0));
        for s in &mut self.servers {
            if regime_changed || !s.counts.has_delta {
                s.shares.short_req = 0.0;
                s.shares.win_req = 0.0;
            } else {
                s.shares.short_req = s.shares.short_req * ws + s.counts.d_req;
                s.shares.win_req = s.shares.win_req * w + s.counts.d_req;
            }
        }
        self.win_age = if regime_changed {
            0.0
        } else {
            self.win_age + dt
        };
        if !self.skew.active() || ctx.frozen_too_long(&self.skew) {
            let b = decay(dt, ctx.cfg.baseline_window.0);
            let rotation_total: f64 = self
                .servers
                .iter()
                .filter(|s| s.counts.has_delta && s.in_rotation())
                .map(|s| s.counts.d_req)
                .sum();
            let mut total = 0.0;
            for s in &mut self.servers {
                s.shares.base_req = s.shares.base_req * b
                    + if s.counts.has_delta {
                        s.counts.d_req
                    } else {
                        0.0
                    };
                total += s.shares.base_req;
                if s.counts.has_delta
                    && s.in_rotation()
                    && !s.changed
                    && !s.joined
                    && rotation_total > 0.0
                {
                    s.shares.hist_share.add(s.counts.d_req, rotation_total, b);
                }
            }
            self.base_age += dt;
            // Servers gone for good fade out of the baseline, then out of
            // memory.
            let before = self.servers.len();
            self.servers.retain(|s| {
                s.listed
                    || s.shares.base_req > 1e-3 * total
                    || s.down.active()
                    || s.errors.life().active()
            });
            if self.servers.len() != before {
                self.reindex();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn row(server: &str, requests: u64, errors: u64, weight: f64) -> ServerStat<'static> {
        ServerStat {
            pool: Cow::Borrowed("web"),
            server: Cow::Owned(server.to_string()),
            requests_total: requests,
            responses_5xx_total: errors,
            up: true,
            weight,
            backup: false,
            algo: None,
            ..Default::default()
        }
    }

    /// One scrape of `rows` as generation `gen`.
    fn scrape(p: &mut PoolState, gen: u64, rows: &[ServerStat], reset: bool) -> Vec<Taken> {
        p.begin_scrape();
        let taken = rows.iter().map(|r| p.take_row(r, gen, gen == 1)).collect();
        p.settle(gen, reset, gen == 1);
        taken
    }

    fn server<'a>(p: &'a PoolState, name: &str) -> &'a ServerState {
        p.servers.iter().find(|s| &*s.name == name).unwrap()
    }

    #[test]
    fn a_pool_keeps_no_slack_once_its_servers_joined() {
        let mut p = PoolState::new("web");
        let rows: Vec<ServerStat> = (0..25)
            .map(|i| row(&format!("s{i:02}"), 1, 0, 1.0))
            .collect();
        scrape(&mut p, 1, &rows, false);
        assert_eq!(p.servers.len(), 25);
        assert!(
            p.servers.capacity() <= 25 + 25 / 8 + 1,
            "{}",
            p.servers.capacity()
        );
        scrape(&mut p, 2, &rows[..24], false);
        assert!(!server(&p, "s24").listed, "left, still remembered");
        let mut more = rows.clone();
        more.push(row("s25", 1, 0, 1.0));
        let taken = scrape(&mut p, 3, &more, false);
        assert_eq!(taken[25], Taken::Joined);
        assert_eq!(p.servers.len(), 26);
        assert!(
            p.servers.capacity() <= 26 + 26 / 8 + 1,
            "{}",
            p.servers.capacity()
        );
        // Every server is found where it is.
        for (i, s) in p.servers.iter().enumerate() {
            assert_eq!(p.find(&s.name), Some(i));
        }
    }

    /// Rows are matched to servers by their place in the last scrape
    /// first: rows in another order, a server joining in the middle, and a
    /// row listed twice still reach their own server.
    #[test]
    fn rows_find_their_server_whatever_their_order() {
        let mut p = PoolState::new("web");
        let names = ["c", "a", "d", "b"];
        let rows = |n: u64, names: &[&str]| -> Vec<ServerStat> {
            names
                .iter()
                .map(|s| row(s, n * (s.as_bytes()[0] as u64), 0, 1.0))
                .collect()
        };
        scrape(&mut p, 1, &rows(1, &names), false);
        scrape(&mut p, 2, &rows(2, &["b", "d", "a", "c"]), false);
        let taken = scrape(&mut p, 3, &rows(3, &["d", "bb", "c", "a", "d", "b"]), false);
        assert_eq!(taken[1], Taken::Joined);
        assert_eq!(taken[4], Taken::Duplicate);
        assert_eq!(
            p.servers.iter().map(|s| &*s.name).collect::<Vec<_>>(),
            ["a", "b", "bb", "c", "d"]
        );
        for s in p.servers.iter().filter(|s| &*s.name != "bb") {
            // Each counter grew by its own name's byte.
            assert_eq!(s.counts.d_req, s.name.as_bytes()[0] as f64, "{}", s.name);
        }
        for (i, s) in p.servers.iter().enumerate() {
            assert_eq!(p.find(&s.name), Some(i));
        }
    }

    #[test]
    fn rows_become_deltas_joins_reweights_and_leaves() {
        let mut p = PoolState::new("web");
        let first = scrape(
            &mut p,
            1,
            &[row("b", 100, 1, 1.0), row("a", 50, 0, 1.0)],
            false,
        );
        assert_eq!(first, [Taken::Joined, Taken::Joined]);
        // Sorted by name whatever the order of rows.
        assert_eq!(
            p.servers.iter().map(|s| &*s.name).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(p.joined.is_empty(), "the first scrape joins nobody");
        let taken = scrape(
            &mut p,
            2,
            &[
                row("a", 80, 2, 3.0),
                row("c", 5, 0, 1.0),
                row("a", 90, 2, 3.0),
            ],
            false,
        );
        assert_eq!(
            taken,
            [
                Taken::Known { decreased: false },
                Taken::Joined,
                Taken::Duplicate
            ]
        );
        let a = server(&p, "a");
        assert_eq!(
            (a.counts.d_req, a.counts.d_err, a.counts.has_delta),
            (30.0, 2.0, true)
        );
        assert_eq!(p.reweighted, ["a weight 1 -> 3"]);
        assert_eq!(p.joined, [Arc::from("c")]);
        assert_eq!(p.left, [Arc::from("b")]);
        assert!(!server(&p, "b").listed && !server(&p, "b").counts.has_delta);
    }

    #[test]
    fn a_counter_that_went_down_counts_from_zero_and_a_reset_counts_everything() {
        let mut p = PoolState::new("web");
        scrape(
            &mut p,
            1,
            &[row("a", 1000, 10, 1.0), row("b", 1000, 10, 1.0)],
            false,
        );
        // `a` alone was re-added: its delta is its count since.
        let taken = scrape(
            &mut p,
            2,
            &[row("a", 40, 50, 1.0), row("b", 1100, 10, 1.0)],
            false,
        );
        assert_eq!(taken[0], Taken::Known { decreased: true });
        let a = server(&p, "a");
        // More errors than requests cannot be: capped.
        assert_eq!((a.counts.d_req, a.counts.d_err), (40.0, 40.0));
        // A reload of the whole LB: every delta is the count since.
        scrape(&mut p, 3, &[row("a", 7, 0, 1.0), row("b", 9, 1, 1.0)], true);
        assert_eq!(server(&p, "b").counts.d_req, 9.0);
        assert_eq!(server(&p, "b").counts.d_err, 1.0);
    }

    #[test]
    fn a_weight_that_is_no_weight_takes_the_server_out_of_rotation() {
        let mut p = PoolState::new("web");
        scrape(
            &mut p,
            1,
            &[row("a", 1, 0, f64::NAN), row("b", 1, 0, -2.0)],
            false,
        );
        assert!(p
            .servers
            .iter()
            .all(|s| s.weight == 0.0 && !s.in_rotation()));
        assert!(p.servers.iter().all(ServerState::drained));
    }
}
