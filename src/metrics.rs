//! lbwatch's `/metrics`: what it sees of every load balancer (per target,
//! pool and server), the alerts firing, and its own health.
//!
//! Names follow `lbwatch_<noun>_<unit>[_total]`. Label values come from the
//! configuration and the load balancers' own pool and server names, so the
//! number of series is bounded by what is watched: per server 6 series, per
//! pool 6, per target 2, per firing alert 1, per notifier 7 (see
//! docs/metrics.md).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::cardinality::PerServer;
use crate::detect::InputStats;

type Labels = Vec<(&'static str, String)>;

/// Quantiles over the last 5 to 10 minutes: two histograms, the older
/// dropped every 5 minutes, so a slow spell an hour ago no longer shows.
#[derive(Debug)]
pub struct Quantiles {
    current: Histogram<u64>,
    previous: Histogram<u64>,
    rotated: Instant,
    /// Since the start, for the summary's `_count` and `_sum`.
    count: u64,
    sum: f64,
}

const ROTATE: Duration = Duration::from_secs(300);

impl Quantiles {
    fn new(now: Instant) -> Self {
        // Microseconds up to an hour, to two significant digits (within
        // 1%, plenty for a latency summary): 26 KB a histogram, where three
        // digits took 188 KB, and six of them were most of the daemon's
        // own heap when it watches one LB.
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds");
        Quantiles {
            current: h(),
            previous: h(),
            rotated: now,
            count: 0,
            sum: 0.0,
        }
    }

    fn rotate(&mut self, now: Instant) {
        if now.duration_since(self.rotated) >= ROTATE {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.reset();
            self.rotated = now;
        }
    }

    pub fn record(&mut self, d: Duration, now: Instant) {
        self.rotate(now);
        self.count += 1;
        self.sum += d.as_secs_f64();
        self.current
            .saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
    }

    /// Seconds at each quantile, `None` before anything was recorded.
    pub fn seconds(&self, qs: &[f64]) -> Option<Vec<f64>> {
        let mut all = self.current.clone();
        all.add(&self.previous).ok()?;
        (!all.is_empty()).then(|| {
            qs.iter()
                .map(|&q| all.value_at_quantile(q) as f64 / 1e6)
                .collect()
        })
    }
}

const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// Every metric lbwatch keeps about itself.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `[metrics] per_server` of the running configuration.
    per_server: std::sync::RwLock<PerServer>,
    pub scrapes: Family<Labels, Counter>,
    pub bad_rows: Family<Labels, Counter>,
    pub samples: Counter,
    pub alert_events: Family<Labels, Counter>,
    pub notifications: Family<Labels, Counter>,
    pub queue_depth: Family<Labels, Gauge>,
    /// Pools and servers in each target's latest stats page.
    pub stats_pools: Family<Labels, Gauge>,
    pub stats_servers: Family<Labels, Gauge>,
    pub state_errors: Counter,
    /// Problems `[[discovery]]` met, at each refresh.
    pub discovery_errors: Counter,
    /// Readers that asked the detector for servers and got none, by reason.
    pub server_views_unanswered: Family<Labels, Counter>,
    /// Targets found by `[[discovery]]`.
    pub discovered: Gauge,
    /// The runtime's worker threads (`runtime::MAX_WORKERS` at most, unless
    /// the environment sets them).
    pub runtime_workers: Gauge,
    /// Scrape tasks started: at start, then for each target a reload or
    /// discovery adds or alters (a reload restarts them all).
    pub scrape_tasks_started: Counter,
    pub config_reloads: Family<Labels, Counter>,
    /// Each target's incidents.
    pub incidents: Family<Labels, Counter>,
    pub incidents_open: Family<Labels, Gauge>,
    pub scrape_duration: Mutex<Quantiles>,
    pub detection_latency: Mutex<Quantiles>,
    pub notification_latency: Mutex<Quantiles>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let now = crate::clock::monotonic();
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            per_server: std::sync::RwLock::new(PerServer::All),
            scrapes: Family::default(),
            bad_rows: Family::default(),
            samples: Counter::default(),
            alert_events: Family::default(),
            notifications: Family::default(),
            queue_depth: Family::default(),
            stats_pools: Family::default(),
            stats_servers: Family::default(),
            state_errors: Counter::default(),
            discovery_errors: Counter::default(),
            server_views_unanswered: Family::default(),
            discovered: Gauge::default(),
            runtime_workers: Gauge::default(),
            scrape_tasks_started: Counter::default(),
            config_reloads: Family::default(),
            incidents: Family::default(),
            incidents_open: Family::default(),
            scrape_duration: Mutex::new(Quantiles::new(now)),
            detection_latency: Mutex::new(Quantiles::new(now)),
            notification_latency: Mutex::new(Quantiles::new(now)),
        };
        registry.register(
            "lbwatch_scrapes",
            "Scrapes of load balancer stats, by target and result (ok, fetch_error, parse_error)",
            m.scrapes.clone(),
        );
        registry.register(
            "lbwatch_stats_bad_rows",
            "Rows of stats pages that could not be read and were skipped, by target",
            m.bad_rows.clone(),
        );
        registry.register(
            "lbwatch_samples",
            "Samples through the detector",
            m.samples.clone(),
        );
        registry.register(
            "lbwatch_alert_events",
            "Alert state changes, by alert and state",
            m.alert_events.clone(),
        );
        registry.register(
            "lbwatch_notifications",
            "Notifications by notifier and result (delivered, retried, failed, dropped, unchanged)",
            m.notifications.clone(),
        );
        registry.register(
            "lbwatch_notifier_queue_depth",
            "Notifications accepted and not yet delivered, by notifier",
            m.queue_depth.clone(),
        );
        registry.register(
            "lbwatch_target_stats_pools",
            "Pools in the target's latest stats page (0: nothing to watch)",
            m.stats_pools.clone(),
        );
        registry.register(
            "lbwatch_target_stats_servers",
            "Servers in the target's latest stats page",
            m.stats_servers.clone(),
        );
        registry.register(
            "lbwatch_state_errors",
            "Failures to save or restore the detector's state",
            m.state_errors.clone(),
        );
        registry.register(
            "lbwatch_discovery_errors",
            "Problems [[discovery]] met at each refresh (unreadable files, bad entries, taken names, invalid templates), each logged once with its place",
            m.discovery_errors.clone(),
        );
        registry.register(
            "lbwatch_server_views_unanswered",
            "Requests of /metrics or /api/v1/pools whose servers the detector did not give, by reason (timeout: no answer within 5 s; busy: 8 requests already waiting; stopped: lbwatch stopping): /metrics then had no per-server series, /api/v1/pools the pools without their servers",
            m.server_views_unanswered.clone(),
        );
        registry.register(
            "lbwatch_discovered_targets",
            "Targets found by [[discovery]] (before sharding)",
            m.discovered.clone(),
        );
        registry.register(
            "lbwatch_runtime_worker_threads",
            "Worker threads of lbwatch's tokio runtime: one per CPU available, 2 at most, unless TOKIO_WORKER_THREADS sets their number (the detector and HTTP handlers run on threads of their own)",
            m.runtime_workers.clone(),
        );
        registry.register(
            "lbwatch_scrape_tasks_started",
            "Scrape tasks started: one per target at start, one per target a discovery change adds or alters, all of them again at each reload",
            m.scrape_tasks_started.clone(),
        );
        registry.register(
            "lbwatch_config_reloads",
            "Config reloads (SIGHUP) by result (ok, rejected)",
            m.config_reloads.clone(),
        );
        registry.register(
            "lbwatch_incidents",
            "Incidents opened, by target",
            m.incidents.clone(),
        );
        registry.register(
            "lbwatch_incidents_open",
            "1 while the target has an incident open (its alerts firing, or resolved less than 5 minutes ago), else 0",
            m.incidents_open.clone(),
        );
        registry.register(
            "lbwatch_build",
            "lbwatch's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Arc::new(Metrics { registry, ..m })
    }

    pub fn count(&self, family: &Family<Labels, Counter>, labels: &[(&'static str, &str)]) {
        self.count_n(family, labels, 1);
    }

    pub fn count_n(
        &self,
        family: &Family<Labels, Counter>,
        labels: &[(&'static str, &str)],
        n: u64,
    ) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        family.get_or_create(&labels).inc_by(n);
    }

    /// What a target's latest stats page holds.
    pub fn stats_size(&self, target: &str, pools: usize, servers: usize) {
        let labels: Labels = vec![("target", target.to_string())];
        self.stats_pools.get_or_create(&labels).set(pools as i64);
        self.stats_servers
            .get_or_create(&labels)
            .set(servers as i64);
    }

    pub fn notification(&self, notifier: &str, result: &str, n: u64) {
        self.count_n(
            &self.notifications,
            &[("notifier", notifier), ("result", result)],
            n,
        );
    }

    pub fn time(q: &Mutex<Quantiles>, d: Duration) {
        q.lock()
            .expect("metrics lock")
            .record(d, crate::clock::monotonic());
    }

    /// Which servers' series the next renders export (set at start and on
    /// every reload).
    pub fn set_per_server(&self, per_server: PerServer) {
        *self.per_server.write().expect("metrics lock") = per_server;
    }

    fn per_server(&self) -> PerServer {
        *self.per_server.read().expect("metrics lock")
    }

    /// The targets whose servers the next render exports, by `[metrics]
    /// per_server`: the full views to ask the detector for.
    pub fn server_targets(&self, fleet: &crate::views::Fleet) -> Vec<String> {
        let per_server = self.per_server();
        fleet
            .targets
            .iter()
            .filter(|(_, t)| {
                let exports = |p: &crate::detect::PoolView| {
                    t.alerting.exports(per_server, &p.pool, t.view.last_sample)
                };
                t.view.pools.iter().any(exports)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The exposition: OpenMetrics, or Prometheus text 0.0.4 (`openmetrics`
    /// false), with the detector's view of every LB: the fleet's pools and
    /// targets, and the servers of `servers` (full views, as the detector
    /// gave them for `server_targets`) where `[metrics] per_server` exports
    /// them.
    pub fn render(
        &self,
        fleet: &crate::views::Fleet,
        servers: &[crate::detect::TargetView],
        openmetrics: bool,
    ) -> String {
        let mut out = String::new();
        let mut registry = Registry::default();
        let per_server = self.per_server();
        registry.register_collector(Box::new(View {
            detector_text: view_text(fleet, servers, per_server),
        }));
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &registry);
        for (name, help, q) in [
            ("lbwatch_scrape_duration_seconds", "Time a scrape takes (fetch and parse); quantiles over the last 5-10 minutes", &self.scrape_duration),
            ("lbwatch_detection_latency_seconds", "Time from a scrape's start to the detector's verdict on it; quantiles over the last 5-10 minutes", &self.detection_latency),
            ("lbwatch_notification_latency_seconds", "Time from detection to a receiver's acknowledgement; quantiles over the last 5-10 minutes", &self.notification_latency),
        ] {
            write_summary(&mut out, name, help, &q.lock().expect("metrics lock"));
        }
        if openmetrics {
            out.push_str("# EOF\n");
            out
        } else {
            to_prometheus_text(&out)
        }
    }
}

/// OpenMetrics text to Prometheus text 0.0.4: no `# UNIT` or `# EOF`, and
/// counter and info families named as their samples are.
fn to_prometheus_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut families: Vec<(String, &str)> = Vec::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            families.push((name.to_string(), kind));
        }
    }
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = families.iter().find(|(n, _)| n == name).map(|(_, k)| *k);
            let (name, tail) = match (kind, prefix) {
                (Some("counter"), _) => (format!("{name}_total"), tail.to_string()),
                (Some("info"), "# TYPE ") => (format!("{name}_info"), "gauge".to_string()),
                (Some("info"), _) => (format!("{name}_info"), tail.to_string()),
                _ => (name.to_string(), tail.to_string()),
            };
            let _ = writeln!(out, "{prefix}{name} {tail}");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The detector's view, rendered at scrape time (it changes every sample,
/// and servers come and go: nothing stale is left behind).
#[derive(Debug)]
struct View {
    detector_text: ViewRows,
}

/// A gauge family: name, help, labelled values.
type GaugeRows = (&'static str, &'static str, Vec<(Labels, f64)>);
/// A counter family: name, help, labelled values.
type CounterRows = (&'static str, &'static str, Vec<(Labels, u64)>);

#[derive(Debug, Default)]
struct ViewRows {
    gauges: Vec<GaugeRows>,
    counters: Vec<CounterRows>,
}

fn view_text(
    fleet: &crate::views::Fleet,
    servers: &[crate::detect::TargetView],
    per_server: PerServer,
) -> ViewRows {
    let mut rows = ViewRows::default();
    let mut g = |name, help, v: Vec<(Labels, f64)>| rows.gauges.push((name, help, v));
    let view: Vec<&crate::detect::TargetView> = fleet.targets.values().map(|t| &t.view).collect();
    // The pools whose servers are exported, by target.
    let exported = |t: &crate::detect::TargetView, pool: &str| {
        fleet
            .targets
            .get(&t.target)
            .is_some_and(|s| s.alerting.exports(per_server, pool, t.last_sample))
    };
    let server_labels = |t: &str, p: &str, s: &str| -> Labels {
        vec![
            ("target", t.into()),
            ("pool", p.into()),
            ("server", s.into()),
        ]
    };
    let pool_labels =
        |t: &str, p: &str| -> Labels { vec![("target", t.into()), ("pool", p.into())] };
    type ServerField = fn(&crate::detect::ServerView) -> Option<f64>;
    let server_fields: [(&'static str, &'static str, ServerField); 12] = [
        ("lbwatch_server_requests_per_second", "Requests per second a server took in the last interval", |s| s.requests_per_second.get()),
        ("lbwatch_server_share_ratio", "A server's share of its pool's requests in the last interval", |s| s.share.get()),
        ("lbwatch_server_expected_share_ratio", "The share a server should take (by weight, or its usual share for hash and least-connection pools)", |s| s.expected_share.get()),
        ("lbwatch_server_errors_ratio", "Fraction of a server's responses in the last interval that were 5xx", |s| s.error_ratio.get()),
        ("lbwatch_server_up", "1 when the LB's health check says the server is up", |s| Some(if s.up { 1.0 } else { 0.0 })),
        ("lbwatch_server_weight", "The server's weight in the LB", |s| Some(s.weight)),
        // The optional signals: exported only where the LB publishes them.
        ("lbwatch_server_response_time_seconds", "The LB's recent average response time of the server", |s| s.signals.response_time_ms.get().map(|ms| ms / 1000.0)),
        ("lbwatch_server_usual_response_time_seconds", "The server's usual response time (LatencySpike's baseline)", |s| s.signals.usual_response_time_ms.get().map(|ms| ms / 1000.0)),
        ("lbwatch_server_queued_requests", "Requests the LB holds in the server's queue", |s| s.signals.queue.get()),
        ("lbwatch_server_sessions", "The server's active sessions", |s| s.signals.sessions.get()),
        ("lbwatch_server_session_limit", "The server's session limit (maxconn)", |s| s.signals.session_limit.get()),
        ("lbwatch_server_client_errors_ratio", "Fraction of a server's responses in the last interval that were 4xx", |s| s.signals.client_error_ratio.get()),
    ];
    for (name, help, f) in server_fields {
        let v = servers
            .iter()
            .flat_map(|t| {
                t.pools
                    .iter()
                    .filter(|p| exported(t, &p.pool))
                    .flat_map(move |p| {
                        p.servers.iter().filter_map(move |s| {
                            f(s).map(|v| (server_labels(&t.target, &p.pool, &s.server), v))
                        })
                    })
            })
            .collect();
        g(name, help, v);
    }
    type PoolField = fn(&crate::detect::PoolView) -> Option<f64>;
    let pool_fields: [(&'static str, &'static str, PoolField); 6] = [
        ("lbwatch_pool_requests_per_second", "Requests per second a pool took in the last interval", |p| p.requests_per_second),
        ("lbwatch_pool_errors_ratio", "Fraction of a pool's responses in the last interval that were 5xx", |p| p.error_ratio),
        ("lbwatch_pool_skew_ratio", "Largest ratio of a server's share to its expected share in the last interval (TrafficSkew's share test)", |p| p.skew_ratio),
        ("lbwatch_pool_effective_servers", "Effective number of servers taking the pool's traffic in the last interval, 1/sum(share^2) (TrafficSkew's concentration test)", |p| p.effective_servers),
        ("lbwatch_pool_usual_effective_servers", "Effective number of servers in the pool's baseline", |p| p.usual_effective_servers),
        ("lbwatch_pool_servers", "Servers the LB lists in the pool", |p| Some(p.listed_servers as f64)),
    ];
    for (name, help, f) in pool_fields {
        let v = view
            .iter()
            .flat_map(|t| {
                t.pools
                    .iter()
                    .filter_map(move |p| f(p).map(|v| (pool_labels(&t.target, &p.pool), v)))
            })
            .collect();
        g(name, help, v);
    }
    g(
        "lbwatch_target_up",
        "1 when the latest scrape of the target's stats succeeded",
        view.iter()
            .map(|t| {
                (
                    vec![("target", t.target.clone())],
                    if t.up { 1.0 } else { 0.0 },
                )
            })
            .collect(),
    );
    g(
        "lbwatch_target_last_success_timestamp_seconds",
        "When the target's stats were last scraped successfully",
        view.iter()
            .filter_map(|t| {
                t.last_success
                    .map(|ts| (vec![("target", t.target.clone())], ts.micros() as f64 / 1e6))
            })
            .collect(),
    );
    g(
        "lbwatch_alert_firing",
        "1 for every alert firing now (pool and server empty where they do not apply)",
        fleet
            .firing()
            .map(|a| {
                let sev = serde_json::to_value(a.severity)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                (
                    vec![
                        ("alert", a.alert.as_str().to_string()),
                        ("target", a.target.clone()),
                        ("pool", a.pool.clone().unwrap_or_default()),
                        ("server", a.server.clone().unwrap_or_default()),
                        ("severity", sev),
                    ],
                    1.0,
                )
            })
            .collect(),
    );
    // Per target: what the detector set aside, and the LB's reloads (its
    // counters went back to zero), which Grafana marks on the dashboard.
    let per_target = |f: fn(&InputStats) -> u64| -> Vec<(Labels, u64)> {
        fleet
            .targets
            .iter()
            .map(|(name, t)| (vec![("target", name.clone())], f(&t.input)))
            .collect()
    };
    rows.counters = vec![
        (
            "lbwatch_out_of_order_samples",
            "Samples not newer than their target's previous one, set aside",
            per_target(|i| i.out_of_order),
        ),
        (
            "lbwatch_duplicate_rows",
            "Server rows listed twice in one sample, set aside",
            per_target(|i| i.duplicate_rows),
        ),
        (
            "lbwatch_lb_reloads",
            "Reloads and restarts of the LB seen (its counters went back to zero), by target",
            per_target(|i| i.resets),
        ),
    ];
    rows
}

impl Collector for View {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, rows) in &self.detector_text.gauges {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, v) in rows {
                m.encode_family(labels)?.encode_gauge(v)?;
            }
        }
        for (name, help, rows) in &self.detector_text.counters {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, v) in rows {
                let c: Counter = Counter::default();
                c.inc_by(*v);
                c.encode(m.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// The latency summaries, written by hand: prometheus-client has no
/// summary type, and quantiles from hdrhistogram are what an on-call engineer
/// reads first ("how far behind is lbwatch?").
fn write_summary(out: &mut String, name: &str, help: &str, q: &Quantiles) {
    let _ = writeln!(out, "# HELP {name} {help}.");
    let _ = writeln!(out, "# TYPE {name} summary");
    let _ = writeln!(out, "# UNIT {name} seconds");
    if let Some(values) = q.seconds(&QUANTILES) {
        for (quantile, v) in QUANTILES.iter().zip(values) {
            let _ = writeln!(out, "{name}{{quantile=\"{quantile}\"}} {v}");
        }
    }
    let _ = writeln!(out, "{name}_sum {}", q.sum);
    let _ = writeln!(out, "{name}_count {}", q.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counters_as_their_samples() {
        let om = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total 3\n# HELP x_seconds X.\n# TYPE x_seconds gauge\n# UNIT x_seconds seconds\nx_seconds 1.5\n# HELP v Version.\n# TYPE v info\nv_info{version=\"1\"} 1\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total 3\n# HELP x_seconds X.\n# TYPE x_seconds gauge\nx_seconds 1.5\n# HELP v_info Version.\n# TYPE v_info gauge\nv_info{version=\"1\"} 1\n"
        );
    }

    #[test]
    fn quantiles_forget_old_spells() {
        let t0 = crate::clock::monotonic();
        let mut q = Quantiles::new(t0);
        assert_eq!(q.seconds(&[0.5]), None);
        q.record(Duration::from_secs(3), t0);
        assert_eq!(q.seconds(&[0.5]).unwrap()[0].round(), 3.0);
        q.record(Duration::from_millis(10), t0 + ROTATE);
        q.record(Duration::from_millis(10), t0 + ROTATE * 2);
        let p99 = q.seconds(&[0.99]).unwrap()[0];
        assert!(p99 < 0.011, "{p99}");
    }
}
