//! One load balancer instance: its scrape health, its pools, and the
//! counter bookkeeping that turns cumulative totals into interval deltas.

use super::config::DetectConfig;
use super::denied::FrontendState;
use super::drop::{drop_persistence, RateTrack};
use super::emit::{Context, Emit};
use super::firing::FiringAlert;
use super::lifecycle::{Lifecycle, Persistence, Verdict};
use super::pool::PoolState;
use super::server::Taken;
use super::text::{denied_summary, scrape_failed_summary, target_drop_summary};
use crate::model::{AlertName, FrontendStat, ServerStat, Severity, Timestamp};

/// Counts of input the detector set aside, for lbwatch's own metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputStats {
    /// Samples older than (or as old as) the target's previous one.
    pub out_of_order: u64,
    /// Rows naming a pool/server pair already listed in the same sample.
    pub duplicate_rows: u64,
    /// Counter resets seen (LB reloads or restarts).
    pub resets: u64,
}

impl InputStats {
    /// Both counts summed (over targets).
    pub fn plus(&self, other: &InputStats) -> InputStats {
        InputStats {
            out_of_order: self.out_of_order + other.out_of_order,
            duplicate_rows: self.duplicate_rows + other.duplicate_rows,
            resets: self.resets + other.resets,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TargetState {
    pub name: Box<str>,
    generation: u64,
    pub last_ts: Option<Timestamp>,
    pub last_ok: Option<Timestamp>,
    /// Seconds the latest deltas span (`None` after a counter reset).
    pub last_dt: Option<f64>,
    reload_at: Option<Timestamp>,
    pub fail_streak: u32,
    first_failure: Option<Timestamp>,
    scrape: Lifecycle,
    /// Sorted by name, like servers within a pool.
    pub pools: Vec<PoolState>,
    rate: RateTrack,
    pub stats: InputStats,
    /// Alerts of this target firing now.
    pub firing: Vec<FiringAlert>,
    /// Sorted by name.
    #[serde(default)]
    pub frontends: Vec<FrontendState>,
}

impl TargetState {
    pub fn new(name: &str) -> Self {
        TargetState {
            name: name.into(),
            generation: 0,
            last_ts: None,
            last_ok: None,
            last_dt: None,
            reload_at: None,
            fail_streak: 0,
            first_failure: None,
            scrape: Lifecycle::default(),
            pools: Vec::new(),
            rate: RateTrack::default(),
            stats: InputStats::default(),
            firing: Vec::new(),
            frontends: Vec::new(),
        }
    }

    /// After a restore from a snapshot: what is not in a snapshot is rebuilt,
    /// what a snapshot of another layout could break is made safe.
    pub fn repair(&mut self) {
        self.rate.repair();
        for p in &mut self.pools {
            p.reindex();
            p.rate.repair();
        }
    }

    /// Accepts the sample's time; `false` for a sample that is not newer
    /// than the previous one (it is counted and ignored).
    fn advance(&mut self, ts: Timestamp) -> bool {
        if self.last_ts.is_some_and(|last| ts <= last) {
            self.stats.out_of_order += 1;
            return false;
        }
        self.last_ts = Some(ts);
        true
    }

    pub fn observe_error(
        &mut self,
        cfg: &DetectConfig,
        ts: Timestamp,
        reason: &str,
        emit: &mut Emit,
    ) {
        if !self.advance(ts) {
            return;
        }
        self.fail_streak += 1;
        let first = *self.first_failure.get_or_insert(ts);
        // Several failures in a row, spanning a few seconds: a restarting LB
        // at 1 s scrapes is not an outage.
        let blind_for = self.last_ok.map_or(f64::INFINITY, |ok| ts.secs_since(ok));
        let verdict = if self.fail_streak >= cfg.scrape_failures && blind_for >= cfg.fire_after.0 {
            Verdict::Fire
        } else {
            Verdict::Hold
        };
        let t = self.scrape.step(verdict, ts, &immediate());
        let (name, n) = (&self.name, self.fail_streak);
        emit.transition(
            t,
            AlertName::ScrapeFailed,
            Severity::Critical,
            None,
            None,
            || {
                (
                    scrape_failed_summary(name, n, first, reason),
                    Some(f64::from(n)),
                )
            },
        );
    }

    pub fn observe_servers(
        &mut self,
        cfg: &DetectConfig,
        ts: Timestamp,
        (rows, frontends): (&[ServerStat], &[FrontendStat]),
        emit: &mut Emit,
    ) {
        if !self.advance(ts) {
            return;
        }
        self.fail_streak = 0;
        self.first_failure = None;
        let t = self.scrape.step(Verdict::Clear, ts, &immediate());
        emit.transition(
            t,
            AlertName::ScrapeFailed,
            Severity::Critical,
            None,
            None,
            || unreachable!("a successful scrape only resolves"),
        );

        let first = self.last_ok.is_none();
        let dt = self.last_ok.map(|t| ts.secs_since(t));
        let reset = self.ingest(rows, first);
        if reset {
            self.reload_at = Some(ts);
            self.stats.resets += 1;
        }
        self.last_ok = Some(ts);

        let rate_dt = if reset { None } else { dt };
        self.last_dt = rate_dt;
        let total: f64 = self.pools.iter().map(PoolState::interval_requests).sum();
        let mut ctx = Context {
            cfg,
            ts,
            dt,
            rate_dt,
            first,
            reload_at: self.reload_at,
            target_drop_active: false,
        };
        if !first {
            let frozen = ctx.frozen_too_long(&self.rate.life);
            let (verdict, finding) = self.rate.observe(total, rate_dt, cfg, frozen, false);
            let t = self.rate.life.step(verdict, ts, &drop_persistence());
            let name = &self.name;
            let pools = self.pools.iter().filter(|p| p.listed).count();
            emit.transition(
                t,
                AlertName::TrafficDrop,
                Severity::Critical,
                None,
                None,
                || {
                    let f = finding.expect("a drop fires only with a finding");
                    (
                        target_drop_summary(name, pools, &f),
                        Some(f.rate / f.baseline_rate),
                    )
                },
            );
        }
        self.denied_check(&ctx, frontends, emit);
        // The pools learn whether the target's drop covers them.
        ctx.target_drop_active = self.rate.life.active();
        for pool in &mut self.pools {
            pool.evaluate(&ctx, emit);
        }
        // Pools gone from the stats for good are forgotten once nothing of
        // theirs is raised.
        self.pools.retain(|p| {
            p.listed
                || p.skew.active()
                || p.errors.life.active()
                || p.rate.life.active()
                || p.membership.active()
                || p.client_errors.life.active()
                || p.latency.active()
        });
    }

    /// RequestsDenied of each frontend the LB publishes (critical, the
    /// frontend's name as the pool).
    fn denied_check(&mut self, ctx: &Context, rows: &[FrontendStat], emit: &mut Emit) {
        for f in &mut self.frontends {
            f.listed = false;
        }
        for row in rows {
            let i = match self
                .frontends
                .binary_search_by(|f| (*f.name).cmp(&row.frontend))
            {
                Ok(i) => i,
                Err(i) => {
                    self.frontends.insert(i, FrontendState::new(&row.frontend));
                    i
                }
            };
            let f = &mut self.frontends[i];
            if f.listed {
                continue;
            }
            f.listed = true;
            // After a reload the frontend's counters restarted: they count
            // since then, within the interval, so it is judged at once (an
            // ACL typo ships in a reload).
            let dt = if ctx.first { None } else { ctx.dt };
            let rules = (
                ctx.cfg.warmup(dt.unwrap_or(1.0)),
                ctx.frozen_too_long(&f.life),
            );
            let (verdict, finding) = f.observe(row, dt, rules);
            let t = f.life.step(verdict, ctx.ts, &ctx.statistical(1));
            let since = f.life.since();
            emit.transition(
                t,
                AlertName::RequestsDenied,
                Severity::Critical,
                Some(&f.name),
                None,
                || {
                    let found = finding.expect("a denial fires only with a finding");
                    let text = denied_summary(&f.name, &found, &ctx.context(since, None));
                    (text, Some(found.share()))
                },
            );
        }
        for f in self.frontends.iter_mut().filter(|f| !f.listed) {
            let t = f.life.end();
            emit.transition(
                t,
                AlertName::RequestsDenied,
                Severity::Critical,
                Some(&f.name),
                None,
                || unreachable!("ending an alert only resolves it"),
            );
        }
        self.frontends.retain(|f| f.listed);
    }

    /// Turns the rows into per-server deltas. Returns whether the target's
    /// counters were reset (most counters went down: a reload).
    fn ingest(&mut self, rows: &[ServerStat], first: bool) -> bool {
        self.generation += 1;
        let gen = self.generation;
        for p in &mut self.pools {
            p.begin_scrape();
        }
        let (mut known, mut decreased) = (0usize, 0usize);
        let mut cached: Option<usize> = None;
        for row in rows {
            let pi = self.pool_for(&row.pool, &mut cached);
            match self.pools[pi].take_row(row, gen, first) {
                Taken::Duplicate => self.stats.duplicate_rows += 1,
                Taken::Known { decreased: d } => {
                    known += 1;
                    decreased += usize::from(d);
                }
                Taken::Joined => {}
            }
        }
        // A reload restarts every counter of the target: when most counters
        // went down, every server's delta is its whole count since then.
        let reset = known > 0 && decreased * 2 >= known;
        for p in &mut self.pools {
            p.settle(gen, reset, first);
        }
        reset
    }

    /// The position of `pool`, added if new. Rows of one pool usually come
    /// together: the last one is tried first.
    fn pool_for(&mut self, pool: &str, cached: &mut Option<usize>) -> usize {
        let pi = match *cached {
            Some(i) if *self.pools[i].name == *pool => i,
            _ => match self.find_pool(pool) {
                Ok(i) => i,
                Err(i) => {
                    self.pools.insert(i, PoolState::new(pool));
                    i
                }
            },
        };
        *cached = Some(pi);
        pi
    }

    /// The position of `pool` (the pools are sorted by name), or where it
    /// would go.
    fn find_pool(&self, pool: &str) -> Result<usize, usize> {
        self.pools.binary_search_by(|p| (*p.name).cmp(pool))
    }

    /// The name this target keeps for `server` of `pool`, if it has it.
    pub fn server_name(&self, pool: &str, server: &str) -> Option<std::sync::Arc<str>> {
        let pool = &self.pools[self.find_pool(pool).ok()?];
        pool.find(server).map(|i| pool.servers[i].name.clone())
    }
}

fn immediate() -> Persistence {
    Persistence {
        fire_after: 1,
        fire_after_s: 0.0,
        resolve_after_s: 0.0,
        resolve_after_samples: 1,
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::{DetectConfig, Detector};
    use crate::model::{AlertName, AlertState, Sample, SampleBody, ServerStat, Timestamp};

    fn sample(t: i64, counts: &[u64]) -> Sample<'static> {
        let rows = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| ServerStat {
                pool: "web".into(),
                server: format!("s{i}").into(),
                requests_total: n,
                responses_5xx_total: 0,
                up: true,
                weight: 1.0,
                backup: false,
                algo: None,
                ..Default::default()
            })
            .collect();
        Sample {
            ts: Timestamp::from_micros(1_700_000_000_000_000 + t * 1_000_000),
            target: "lb".into(),
            body: SampleBody::Servers(rows),
            frontends: Vec::new(),
        }
    }

    #[test]
    fn a_reload_an_old_sample_and_a_duplicate_row_are_counted_not_judged() {
        let mut d = Detector::new(DetectConfig::default());
        d.observe(&sample(0, &[1000, 1000, 1000]));
        d.observe(&sample(5, &[1100, 1100, 1100]));
        // Most counters went down: a reload, counted once; its rates are
        // not judged (the interval since it is unknown), so nothing fires.
        let events = d.observe(&sample(10, &[40, 50, 1150]));
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(d.input_stats().resets, 1);
        // A sample no newer than the last is set aside.
        assert!(d.observe(&sample(10, &[50, 60, 1160])).is_empty());
        assert_eq!(d.input_stats().out_of_order, 1);
        // A server listed twice in one sample: the second row is set aside.
        let mut dup = sample(15, &[90, 100, 1200]);
        if let SampleBody::Servers(rows) = &mut dup.body {
            let again = rows[0].clone();
            rows.push(again);
        }
        d.observe(&dup);
        assert_eq!(d.input_stats().duplicate_rows, 1);
    }

    #[test]
    fn failed_scrapes_page_after_the_configured_count_and_resolve_on_success() {
        let cfg = DetectConfig::default();
        let mut d = Detector::new(cfg.clone());
        d.observe(&sample(0, &[1000, 1000]));
        let fail = |t| Sample {
            body: SampleBody::Error("connection refused".into()),
            ..sample(t, &[])
        };
        let mut fired = None;
        for i in 1..=cfg.scrape_failures as i64 {
            let events = d.observe(&fail(i));
            if events.iter().any(|e| e.alert == AlertName::ScrapeFailed) {
                fired = Some(i);
            }
        }
        assert_eq!(fired, Some(cfg.scrape_failures as i64));
        let back = d.observe(&sample(10, &[1010, 1010]));
        assert!(
            back.iter()
                .any(|e| e.alert == AlertName::ScrapeFailed && e.state == AlertState::Resolved),
            "{back:?}"
        );
    }
}
