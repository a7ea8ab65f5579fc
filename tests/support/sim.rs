//! A small seeded load-balancer simulator for the detector tests: pools of
//! servers with weights, Poisson traffic with a little overdispersion and a
//! persistent per-server bias, background 5xx, scrape jitter, and a script of
//! changes applied at given times. Deterministic for a seed.

#![allow(dead_code)]

use std::borrow::Cow;

use lbwatch::detect::{DetectConfig, Detector};
use lbwatch::model::{
    AlertEvent, AlertName, AlertState, FrontendStat, Sample, SampleBody, ServerStat, Severity,
    Timestamp,
};

/// SplitMix64: enough randomness for tests, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean < 40.0 {
            let l = (-mean).exp();
            let (mut k, mut p) = (0u64, 1.0);
            loop {
                p *= self.uniform();
                if p <= l {
                    return k;
                }
                k += 1;
            }
        }
        (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64
    }
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n < 50 {
            return (0..n).filter(|_| self.uniform() < p).count() as u64;
        }
        let mean = n as f64 * p;
        let sd = (mean * (1.0 - p)).sqrt();
        (mean + sd * self.normal()).round().clamp(0.0, n as f64) as u64
    }
}

#[derive(Debug, Clone)]
pub struct SimServer {
    pub name: String,
    pub weight: f64,
    pub up: bool,
    pub backup: bool,
    /// Multiplies the weight-expected share (1 = healthy; a fault changes it).
    pub share: f64,
    pub error_ratio: f64,
    /// The weight the LB reports, when it differs from the one traffic
    /// follows (a drain reported at once, connections finishing later).
    pub weight_reported: Option<f64>,
    /// Listed in the stats.
    pub listed: bool,
    bias: f64,
    requests: u64,
    errors: u64,
    /// The optional signals, published when the sim's `signals` are on.
    pub sig: SimSignals,
}

/// A server's optional signals: its true response time and the LB's
/// average of it (1/1024 per request, as HAProxy's `rtime`), 4xx,
/// refused connections (each retried once), and its session limit.
#[derive(Debug, Clone)]
pub struct SimSignals {
    pub latency_ms: f64,
    pub avg_ms: f64,
    pub c4xx_ratio: f64,
    /// Fraction of connection attempts refused.
    pub refuse: f64,
    pub limit: Option<f64>,
    c4xx: u64,
    conn_errors: u64,
    last_rate: f64,
}

impl Default for SimSignals {
    fn default() -> Self {
        SimSignals {
            latency_ms: 20.0,
            avg_ms: 20.0,
            c4xx_ratio: 0.01,
            refuse: 0.0,
            limit: None,
            c4xx: 0,
            conn_errors: 0,
            last_rate: 0.0,
        }
    }
}

/// The sim's optional signals: their own random stream (so a case without
/// them draws exactly what it drew before they existed), and one frontend.
#[derive(Debug, Clone)]
pub struct SimFrontend {
    pub rng: Rng,
    /// Fraction of requests the frontend denies (HTTP level: they count in
    /// its requests too).
    pub deny: f64,
    requests: u64,
    denied: u64,
}

#[derive(Debug, Clone)]
pub struct SimPool {
    pub name: String,
    /// Requests per second of the whole pool.
    pub rate: f64,
    pub servers: Vec<SimServer>,
    pub algo: Option<String>,
}

impl SimPool {
    pub fn server(&mut self, name: &str) -> &mut SimServer {
        self.servers
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name}"))
    }
}

pub type Step = Box<dyn Fn(&mut Sim)>;

/// One target with its pools, scraped every `interval` seconds.
pub struct Sim {
    pub target: String,
    pub interval: f64,
    pub pools: Vec<SimPool>,
    /// Multiplies every pool's rate (a blocked LB sets it near 0).
    pub target_rate: f64,
    /// The next scrapes fail while this is above 0.
    pub failing: u32,
    /// Relative per-interval noise on top of Poisson (overdispersion).
    pub noise: f64,
    /// Multiplies every pool's rate: the daily cycle (kept apart from
    /// `target_rate`, which faults use).
    pub diurnal: f64,
    /// Relative per-interval noise of the 5xx ratio.
    pub error_noise: f64,
    pub rng: Rng,
    pub now: f64,
    /// Scripted changes land half-way between two scrapes (as faults do in
    /// recorded scenarios) instead of at their exact time.
    pub snap_to_mid: bool,
    /// (scheduled, actual) time of every change applied.
    pub applied: Vec<(f64, f64)>,
    /// The optional signals, when on.
    pub signals: Option<SimFrontend>,
    script: Vec<(f64, Step)>,
}

pub const START: i64 = 1_717_596_000; // 2024-06-05T14:00:00Z

impl Sim {
    pub fn new(seed: u64, interval: f64) -> Self {
        Sim {
            target: "lb1".into(),
            interval,
            pools: Vec::new(),
            target_rate: 1.0,
            failing: 0,
            noise: 0.05,
            diurnal: 1.0,
            error_noise: 0.0,
            rng: Rng::new(seed),
            now: 0.0,
            snap_to_mid: false,
            applied: Vec::new(),
            signals: None,
            script: Vec::new(),
        }
    }

    /// Adds a pool of `n` equal servers named `{pool}-1` .. `{pool}-n`.
    pub fn pool(mut self, name: &str, n: usize, rate: f64) -> Self {
        let servers = (1..=n)
            .map(|i| self.new_server(&format!("{name}-{i}")))
            .collect();
        self.pools.push(SimPool {
            name: name.into(),
            rate,
            servers,
            algo: None,
        });
        self
    }

    pub fn new_server(&mut self, name: &str) -> SimServer {
        SimServer {
            name: name.into(),
            weight: 1.0,
            up: true,
            backup: false,
            share: 1.0,
            error_ratio: 0.001,
            weight_reported: None,
            listed: true,
            bias: 1.0 + 0.03 * self.rng.normal(),
            requests: 1_000 + self.rng.next_u64() % 1_000_000,
            errors: self.rng.next_u64() % 1_000,
            sig: SimSignals::default(),
        }
    }

    /// Publishes the optional signals from now on, drawn from their own
    /// stream seeded by `seed`: latencies of 5-80 ms per pool (differing a
    /// little by server), 0.5-3% 4xx, and session limits on some pools.
    pub fn with_signals(mut self, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5167_4e41_4c53);
        for p in &mut self.pools {
            let base = 5.0 * (16.0f64).powf(rng.uniform());
            let c4xx = 0.005 + 0.025 * rng.uniform();
            let limited = rng.uniform() < 0.5;
            let need = p.rate / p.servers.len() as f64 * base / 1000.0;
            for s in &mut p.servers {
                s.sig.latency_ms = base * (1.0 + 0.2 * rng.uniform());
                s.sig.avg_ms = s.sig.latency_ms;
                s.sig.c4xx_ratio = c4xx;
                // A limit well above what the server needs at its peak.
                s.sig.limit = limited.then(|| (100.0 * need).max(50.0).ceil());
            }
        }
        self.signals = Some(SimFrontend {
            rng,
            deny: 0.0,
            requests: 0,
            denied: 0,
        });
        self
    }

    /// When the change scheduled at `t` actually happened.
    pub fn applied_at(&self, t: f64) -> f64 {
        self.applied
            .iter()
            .find(|(s, _)| *s == t)
            .map_or(t, |(_, a)| *a)
    }

    /// Runs `step` on the simulated state at `at` seconds.
    pub fn at(mut self, at: f64, step: impl Fn(&mut Sim) + 'static) -> Self {
        self.script.push((at, Box::new(step)));
        self.script.sort_by(|a, b| a.0.total_cmp(&b.0));
        self
    }

    /// The 4xx ratio of `pool`'s first server.
    pub fn clone_c4xx(&mut self, pool: &str) -> f64 {
        self.p(pool).servers[0].sig.c4xx_ratio
    }

    pub fn p(&mut self, name: &str) -> &mut SimPool {
        self.pools
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pool {name}"))
    }

    /// Removes the persistent per-server bias: traffic exactly in
    /// proportion to the weights.
    pub fn unbias(&mut self) {
        for p in &mut self.pools {
            for s in &mut p.servers {
                s.bias = 1.0;
            }
        }
    }

    /// A handful of extra 5xx on one server, all inside one interval.
    pub fn blip(&mut self, pool: &str, server: usize, errors: u64) {
        self.p(pool).servers[server].errors += errors;
    }

    /// Restarts every counter of the target from 0 (an LB reload).
    pub fn reload(&mut self) {
        for p in &mut self.pools {
            for s in &mut p.servers {
                s.requests = 0;
                s.errors = 0;
                s.sig.c4xx = 0;
                s.sig.conn_errors = 0;
            }
        }
        if let Some(f) = self.signals.as_mut() {
            f.requests = 0;
            f.denied = 0;
        }
    }

    /// Adds `secs` seconds of traffic under the current state.
    fn traffic(&mut self, secs: f64) {
        let target_rate = self.target_rate * self.diurnal;
        let noise = self.noise;
        let error_noise = self.error_noise;
        for pool in &mut self.pools {
            let primaries_up = pool
                .servers
                .iter()
                .any(|s| s.listed && s.up && !s.backup && s.weight > 0.0);
            let eligible =
                |s: &SimServer| s.listed && s.up && s.weight > 0.0 && (s.backup != primaries_up);
            let total_w: f64 = pool
                .servers
                .iter()
                .filter(|s| eligible(s))
                .map(|s| s.weight * s.share * s.bias)
                .sum();
            let mean_total = pool.rate * target_rate * secs;
            for s in &mut pool.servers {
                if !eligible(s) || total_w <= 0.0 {
                    continue;
                }
                let wshare = s.weight * s.share * s.bias / total_w;
                let wobble = (1.0 + noise * self.rng.normal()).max(0.0);
                let n = self.rng.poisson(mean_total * wshare * wobble);
                let ratio = s.error_ratio * (1.0 + error_noise * self.rng.normal()).max(0.0);
                let e = self.rng.binomial(n, ratio.clamp(0.0, 1.0));
                s.requests += n;
                s.errors += e;
                if let Some(f) = self.signals.as_mut() {
                    signal_traffic(&mut f.rng, &mut s.sig, n, secs);
                }
            }
        }
        if let Some(f) = self.signals.as_mut() {
            // What the frontend saw: the pools' requests passed it; those
            // it denied count in its requests too (HTTP-level denials), and
            // a bot is denied now and then.
            let demand = self.pools.iter().map(|p| p.rate).sum::<f64>() * target_rate * secs;
            let denied = f.rng.poisson(demand * f.deny + demand * 1e-4);
            let through = f.rng.poisson(demand * (1.0 - f.deny));
            f.requests += through + denied;
            f.denied += denied;
        }
    }

    /// Advances one interval and returns the scrape at its end. A change
    /// scripted inside the interval splits it, as in a real LB, so the
    /// first sample after a change shows it only in part.
    pub fn next_sample(&mut self) -> Sample<'static> {
        let jitter = 1.0 + 0.05 * (2.0 * self.rng.uniform() - 1.0);
        let end = self.now + self.interval * jitter;
        let mid = (self.now + end) / 2.0;
        while let Some(t) = self.script.first().map(|(t, _)| *t).filter(|&t| t <= end) {
            let at = if self.snap_to_mid {
                mid.max(self.now)
            } else {
                t
            };
            if at > self.now {
                self.traffic(at - self.now);
                self.now = at;
            }
            let (_, step) = self.script.remove(0);
            step(self);
            self.applied.push((t, at));
        }
        self.traffic(end - self.now);
        self.now = end;
        let ts = Timestamp::from_micros(START * 1_000_000 + (self.now * 1e6) as i64);
        if self.failing > 0 {
            self.failing -= 1;
            return Sample {
                ts,
                target: Cow::Owned(self.target.clone()),
                body: SampleBody::Error("connection refused".into()),
                frontends: Vec::new(),
            };
        }
        let mut rows = Vec::new();
        for p in &self.pools {
            for s in p.servers.iter().filter(|s| s.listed) {
                let mut row = ServerStat {
                    pool: Cow::Owned(p.name.clone()),
                    server: Cow::Owned(s.name.clone()),
                    requests_total: s.requests,
                    responses_5xx_total: s.errors,
                    up: s.up,
                    weight: s.weight_reported.unwrap_or(s.weight),
                    backup: s.backup,
                    algo: p.algo.clone().map(Cow::Owned),
                    ..Default::default()
                };
                if let Some(f) = self.signals.as_mut() {
                    signal_row(&mut f.rng, &s.sig, &mut row);
                }
                rows.push(row);
            }
        }
        let frontends = self
            .signals
            .as_ref()
            .map(|f| {
                vec![FrontendStat {
                    frontend: "fe".into(),
                    requests_total: Some(f.requests),
                    denied_total: Some(f.denied),
                    responses_4xx_total: None,
                    responses_5xx_total: None,
                }]
            })
            .unwrap_or_default();
        Sample {
            ts,
            target: Cow::Owned(self.target.clone()),
            body: SampleBody::Servers(rows),
            frontends,
        }
    }

    /// Simulates `secs` seconds of scrapes.
    pub fn samples(&mut self, secs: f64) -> Vec<Sample<'static>> {
        let mut out = Vec::new();
        let end = self.now + secs;
        while self.now < end {
            out.push(self.next_sample());
        }
        out
    }
}

/// One server's signals over an interval of `n` requests in `secs`.
fn signal_traffic(rng: &mut Rng, sig: &mut SimSignals, n: u64, secs: f64) {
    sig.c4xx += rng.binomial(n, sig.c4xx_ratio.clamp(0.0, 1.0));
    if sig.refuse > 0.0 {
        let attempts = n as f64 / (1.0 - sig.refuse.min(0.99));
        sig.conn_errors += rng.poisson(attempts * sig.refuse);
    }
    // The interval's own latency, a little noisy, folded into the LB's
    // average one request at a time.
    let own = sig.latency_ms * (1.0 + 0.1 * rng.normal()).max(0.2);
    let keep = (1.0 - 1.0 / 1024.0f64).powf(n as f64);
    sig.avg_ms = keep * sig.avg_ms + (1.0 - keep) * own;
    // The rate sessions follow: arrivals over about one response time
    // (a session lasts that long), not just this interval's.
    let span = (sig.latency_ms / 1000.0).max(secs).max(1e-9);
    let w = (-secs / span).exp();
    sig.last_rate = w * sig.last_rate + (1.0 - w) * n as f64 / secs.max(1e-9);
}

/// A row's signals: sessions by Little's law (Poisson around rate x
/// latency), pinned at the limit, the excess queued.
fn signal_row(rng: &mut Rng, sig: &SimSignals, row: &mut ServerStat) {
    let demand = rng.poisson(sig.last_rate * sig.latency_ms / 1000.0) as f64;
    let sessions = sig.limit.map_or(demand, |l| demand.min(l));
    row.responses_4xx_total = Some(sig.c4xx);
    row.connection_errors_total = Some(sig.conn_errors);
    row.retries_total = Some(sig.conn_errors);
    row.response_errors_total = Some(0);
    row.response_time_ms = Some(sig.avg_ms.round());
    row.sessions_current = Some(sessions);
    row.session_limit = sig.limit;
    row.queue_current = Some((demand - sessions).max(0.0));
}

/// The alert events of a run, with helpers to ask about them.
#[derive(Debug)]
pub struct Run {
    pub events: Vec<AlertEvent>,
}

/// Feeds samples through a detector with the default settings.
pub fn detect(samples: &[Sample]) -> Run {
    detect_with(DetectConfig::default(), samples)
}

pub fn detect_with(cfg: DetectConfig, samples: &[Sample]) -> Run {
    let mut d = Detector::new(cfg);
    Run {
        events: samples.iter().flat_map(|s| d.observe(s)).collect(),
    }
}

impl Run {
    /// Warning and critical firings: what pages somebody.
    pub fn pages(&self) -> Vec<&AlertEvent> {
        self.events
            .iter()
            .filter(|e| e.state == AlertState::Firing && e.severity != Severity::Info)
            .collect()
    }

    /// Seconds from `START + at` to the first firing of `alert` (for `pool`
    /// when given), if it fired at or after `at`.
    pub fn fired_after(&self, alert: AlertName, pool: Option<&str>, at: f64) -> Option<f64> {
        self.events
            .iter()
            .filter(|e| e.state == AlertState::Firing && e.alert == alert)
            .filter(|e| pool.is_none() || e.pool.as_deref() == pool)
            .map(|e| (e.ts.micros() as f64 / 1e6) - START as f64 - at)
            .find(|&d| d >= 0.0)
    }

    pub fn describe(&self) -> String {
        self.events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A real traffic series (the Numenta Anomaly Benchmark's ELB request count
/// and EC2 network series, 5-minute points, MIT; `tests/datasets/`),
/// normalised to a median of 1 and capped at `SURGE_CAP`: the network series
/// count bytes, and their batch transfers reach 77,000 times the median,
/// which no request rate does (the recorded real-traffic scenarios cap
/// their surges the same way).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub levels: Vec<f64>,
}

/// The highest a series' level goes, in multiples of its median.
pub const SURGE_CAP: f64 = 20.0;

/// Seconds between two points of a series.
pub const SERIES_STEP: f64 = 300.0;

impl Series {
    /// The series of one NAB file, e.g. `realAWSCloudwatch/elb_request_count_8c0756.csv`.
    pub fn nab(file: &str) -> Series {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/datasets/nab")
            .join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let raw: Vec<f64> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.rsplit(',').next()?.parse().ok())
            .collect();
        let mut sorted = raw.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2].max(1e-9);
        Series {
            name: file.rsplit('/').next().unwrap_or(file).to_string(),
            levels: raw.iter().map(|v| (v / median).min(SURGE_CAP)).collect(),
        }
    }

    /// The traffic-shaped series: request counts and network bytes in.
    pub fn traffic() -> Vec<Series> {
        [
            "realAWSCloudwatch/elb_request_count_8c0756.csv",
            "realAWSCloudwatch/ec2_network_in_257a54.csv",
            "realAWSCloudwatch/ec2_network_in_5abac7.csv",
            "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
        ]
        .iter()
        .map(|f| Series::nab(f))
        .collect()
    }

    /// Seconds the series spans.
    pub fn span(&self) -> f64 {
        (self.levels.len() - 1) as f64 * SERIES_STEP
    }

    /// The level at `t` seconds into the series, linear between points.
    pub fn level(&self, t: f64) -> f64 {
        let x = (t / SERIES_STEP).clamp(0.0, (self.levels.len() - 1) as f64);
        let i = (x.floor() as usize).min(self.levels.len() - 2);
        let f = x - i as f64;
        self.levels[i] * (1.0 - f) + self.levels[i + 1] * f
    }

    /// The longest stretch of `[from, to)` (series seconds) whose level
    /// stays below 5% of the median of its trailing hour: the natural lulls
    /// a drop detector must sit out.
    pub fn longest_lull(&self, from: f64, to: f64) -> f64 {
        let (mut longest, mut run) = (0.0f64, 0.0);
        let mut t = from;
        while t < to {
            let mut hour: Vec<f64> = (1..=12)
                .map(|k| self.level(t - k as f64 * SERIES_STEP))
                .collect();
            hour.sort_by(f64::total_cmp);
            if self.level(t) < 0.05 * hour[6] {
                run += 10.0;
                longest = longest.max(run);
            } else {
                run = 0.0;
            }
            t += 10.0;
        }
        longest
    }
}

/// The benign life of a production load balancer whose traffic follows a
/// real series from `offset` seconds into it: its surges, dips and lulls,
/// plus the events of `background` (bursts, hot servers, 5xx blips,
/// reloads, drains, failed scrapes).
pub fn real_background(
    mut sim: Sim,
    seed: u64,
    series: &Series,
    offset: f64,
    secs: f64,
    quiet: (f64, f64),
) -> Sim {
    let mut t = 0.0;
    while t < secs {
        let level = series.level(offset + t);
        sim = sim.at(t, move |s| s.diurnal = level);
        t += 30.0;
    }
    let mut rng = Rng::new(seed.wrapping_mul(7919));
    sim.noise = 0.04 + 0.08 * rng.uniform();
    sim.error_noise = 0.3;
    benign_events(sim, &mut rng, secs, quiet)
}

/// The benign life of a production load balancer, scheduled over `secs`
/// seconds: a daily cycle squeezed into about an hour, bursts, servers
/// running hot for a few minutes, 5xx blips, reloads and single failed
/// scrapes, with overdispersed 5xx ratios. Events avoid `[quiet_from,
/// quiet_to)` (the fault under test) where they would mask it.
pub fn background(mut sim: Sim, seed: u64, secs: f64, quiet: (f64, f64)) -> Sim {
    let mut rng = Rng::new(seed.wrapping_mul(7919));
    sim.noise = 0.04 + 0.08 * rng.uniform();
    sim.error_noise = 0.3;
    let cycle = Cycle::draw(&mut rng);
    let mut t = 0.0;
    while t < secs {
        let level = cycle.level(t);
        sim = sim.at(t, move |s| s.diurnal = level);
        t += 30.0;
    }
    benign_events(sim, &mut rng, secs, quiet)
}

/// The synthetic daily cycle `background` gives a case of `seed`.
#[derive(Debug, Clone, Copy)]
pub struct Cycle {
    amplitude: f64,
    period: f64,
    phase: f64,
}

impl Cycle {
    fn draw(rng: &mut Rng) -> Cycle {
        Cycle {
            amplitude: 0.3 + 0.4 * rng.uniform(),
            period: 3000.0 + 1200.0 * rng.uniform(),
            phase: rng.uniform() * std::f64::consts::TAU,
        }
    }

    /// The cycle of `background(_, seed, ..)`, drawn as it draws it.
    pub fn of(seed: u64) -> Cycle {
        let mut rng = Rng::new(seed.wrapping_mul(7919));
        rng.uniform();
        Cycle::draw(&mut rng)
    }

    /// The level at `t` (multiplies every pool's rate; the last level set
    /// holds for 30 s).
    pub fn level(&self, t: f64) -> f64 {
        let t = (t / 30.0).floor() * 30.0;
        1.0 + self.amplitude * (std::f64::consts::TAU * t / self.period + self.phase).sin()
    }
}

/// Bursts, servers running hot, 5xx blips, reloads, drains, autoscaling and
/// single failed scrapes, every few minutes, away from `quiet`.
fn benign_events(mut sim: Sim, rng: &mut Rng, secs: f64, quiet: (f64, f64)) -> Sim {
    let outside = |t: f64, len: f64| t + len < quiet.0 - 60.0 || t > quiet.1 + 60.0;
    let pools: Vec<(String, usize)> = sim
        .pools
        .iter()
        .map(|p| (p.name.clone(), p.servers.len()))
        .collect();
    // When each server's drain ends: a second drain of a server still
    // drained would leave it, when the first one ends, in rotation at a
    // third of its share, a real skew in a case meant to be healthy.
    let mut drained_until: std::collections::HashMap<(String, usize), f64> = Default::default();
    let mut t = 300.0 + 300.0 * rng.uniform();
    while t < secs - 120.0 {
        let (pool, k) = pools[(rng.next_u64() % pools.len() as u64) as usize].clone();
        let server = (rng.next_u64() % k as u64) as usize;
        let free = drained_until
            .get(&(pool.clone(), server))
            .is_none_or(|&end| t > end + 60.0);
        match rng.next_u64() % 7 {
            0 if outside(t, 120.0) => {
                let (x, len) = (2.0 + 2.0 * rng.uniform(), 30.0 + 90.0 * rng.uniform());
                let p = pool.clone();
                sim = sim
                    .at(t, move |s| s.p(&p).rate *= x)
                    .at(t + len, move |s| s.p(&pool).rate /= x);
            }
            1 if outside(t, 300.0) => {
                let (x, len) = (1.25 + 0.15 * rng.uniform(), 60.0 + 240.0 * rng.uniform());
                let p = pool.clone();
                sim = sim
                    .at(t, move |s| s.p(&p).servers[server].share *= x)
                    .at(t + len, move |s| s.p(&pool).servers[server].share /= x);
            }
            2 => {
                let n = 1 + rng.next_u64() % 10;
                sim = sim.at(t, move |s| s.blip(&pool, server, n));
            }
            3 if outside(t, 30.0) => sim = sim.at(t, |s| s.reload()),
            4 if outside(t, 400.0) && k >= 3 && free => {
                // Drained on purpose: weight 0, its connections finish over
                // a few seconds, then its weight comes back.
                let len = 120.0 + 240.0 * rng.uniform();
                drained_until.insert((pool.clone(), server), t + len);
                let (p, p2, p3) = (pool.clone(), pool.clone(), pool.clone());
                sim = sim
                    .at(t, move |s| {
                        let srv = &mut s.p(&p).servers[server];
                        srv.weight_reported = Some(0.0);
                        srv.share *= 0.3;
                    })
                    .at(t + 8.0, move |s| s.p(&p2).servers[server].weight = 0.0)
                    .at(t + len, move |s| {
                        let srv = &mut s.p(&p3).servers[server];
                        srv.weight = 1.0;
                        srv.weight_reported = None;
                        srv.share /= 0.3;
                    });
            }
            5 if outside(t, 60.0) && k >= 10 => {
                // Autoscaling: one server in, or one out.
                let p = pool.clone();
                if rng.uniform() < 0.5 {
                    let name = format!("{pool}-scaled-{}", t as u64);
                    sim = sim.at(t, move |s| {
                        let srv = s.new_server(&name);
                        s.p(&p).servers.push(srv);
                    });
                } else {
                    // Never the first five: tests aim their faults there.
                    let gone = 5 + server % (k - 5);
                    sim = sim.at(t, move |s| s.p(&p).servers[gone].listed = false);
                }
            }
            6 if outside(t, 30.0) => sim = sim.at(t, |s| s.failing = 1),
            _ => {}
        }
        t += 240.0 + 480.0 * rng.uniform();
    }
    sim
}
