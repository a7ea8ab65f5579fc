//! The live daemon: one scrape task per target, each sample through the same
//! detector `lbwatch replay` uses, alert events to stdout and to notifiers,
//! and lbwatch's own HTTP listener.
//!
//! Detection never waits on an output: targets hand samples over a bounded
//! channel, notifiers take events from their own bounded queues and count
//! what they had to drop.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::config::{FileConfig, NotifierConfig, TargetConfig};
use crate::detect::Detector;
use crate::fetch::{Endpoint, Fetcher, Secret};
use crate::http::Reply;
use crate::model::{AlertEvent, AlertState, Sample, SampleBody};

/// How alert events are shown on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// JSON Lines, the replay format.
    Json,
    /// One readable line per event (the demo).
    Human,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub output: Output,
    /// Append every sample here, in the replay format.
    pub record: Option<PathBuf>,
}

/// lbwatch's own counters, served on /metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    scrapes: Mutex<BTreeMap<(String, &'static str), u64>>,
    bad_rows: Mutex<BTreeMap<String, u64>>,
    samples: AtomicU64,
    events: AtomicU64,
    notifications: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Metrics {
    fn scrape(&self, target: &str, result: &'static str) {
        *self
            .scrapes
            .lock()
            .expect("metrics lock")
            .entry((target.to_string(), result))
            .or_default() += 1;
    }

    fn notification(&self, notifier: &str, result: &'static str) {
        *self
            .notifications
            .lock()
            .expect("metrics lock")
            .entry((notifier.to_string(), result))
            .or_default() += 1;
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP lbwatch_scrapes_total Scrapes of load balancer stats, by result.\n# TYPE lbwatch_scrapes_total counter\n");
        for ((t, r), n) in self.scrapes.lock().expect("metrics lock").iter() {
            out.push_str(&format!(
                "lbwatch_scrapes_total{{target=\"{}\",result=\"{r}\"}} {n}\n",
                label(t)
            ));
        }
        out.push_str("# HELP lbwatch_stats_bad_rows_total Rows of stats pages that could not be read and were skipped.\n# TYPE lbwatch_stats_bad_rows_total counter\n");
        for (t, n) in self.bad_rows.lock().expect("metrics lock").iter() {
            out.push_str(&format!(
                "lbwatch_stats_bad_rows_total{{target=\"{}\"}} {n}\n",
                label(t)
            ));
        }
        out.push_str("# HELP lbwatch_samples_total Samples through the detector.\n# TYPE lbwatch_samples_total counter\n");
        out.push_str(&format!(
            "lbwatch_samples_total {}\n",
            self.samples.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP lbwatch_alert_events_total Alert state changes.\n# TYPE lbwatch_alert_events_total counter\n");
        out.push_str(&format!(
            "lbwatch_alert_events_total {}\n",
            self.events.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP lbwatch_notifications_total Notifications by notifier and result.\n# TYPE lbwatch_notifications_total counter\n");
        for ((n, r), c) in self.notifications.lock().expect("metrics lock").iter() {
            out.push_str(&format!(
                "lbwatch_notifications_total{{notifier=\"{}\",result=\"{r}\"}} {c}\n",
                label(n)
            ));
        }
        out
    }
}

/// A label value, escaped for the exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A target ready to scrape.
struct Scraper {
    name: String,
    parse: crate::source::BoxedParser,
    fetcher: Fetcher,
    interval: Duration,
}

fn read_secret(
    file: Option<&PathBuf>,
    env: Option<&String>,
    key: &str,
) -> anyhow::Result<Option<Secret>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{key}: cannot read {}", path.display()))?;
        return Ok(Some(Secret::new(
            text.trim_end_matches(['\n', '\r']).to_string(),
        )));
    }
    if let Some(var) = env {
        let value = std::env::var(var)
            .with_context(|| format!("{key}: environment variable {var} is not set"))?;
        return Ok(Some(Secret::new(value)));
    }
    Ok(None)
}

fn scraper(i: usize, t: &TargetConfig, client: &reqwest::Client) -> anyhow::Result<Scraper> {
    let password = read_secret(
        t.password_file.as_ref(),
        t.password_env.as_ref(),
        &format!("targets[{i}].password"),
    )?;
    let auth = t.username.clone().map(|u| (u, password));
    let endpoint = Endpoint::parse(&t.url).map_err(|e| anyhow::anyhow!("targets[{i}].url: {e}"))?;
    let fetcher = Fetcher::new(
        endpoint,
        client.clone(),
        Duration::from_secs_f64(t.timeout().0),
        t.max_response_bytes,
        auth,
    );
    let parse = crate::source::build(&t.kind, t.mapping.as_ref())
        .map_err(|e| anyhow::anyhow!("targets[{i}].kind: {:?}: {e}", t.kind))?;
    Ok(Scraper {
        name: t.name.clone(),
        parse,
        fetcher,
        interval: Duration::from_secs_f64(t.interval.0),
    })
}

/// A small generator for scrape jitter (not in the detector: scheduling only).
fn jitter_seed(name: &str) -> u64 {
    let t = crate::clock::now().micros() as u64;
    name.bytes().fold(t ^ 0x9E37_79B9_7F4A_7C15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

async fn scrape_loop(s: Scraper, tx: mpsc::Sender<Sample<'static>>, metrics: Arc<Metrics>) {
    let mut ticker = tokio::time::interval(s.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rng = jitter_seed(&s.name);
    loop {
        ticker.tick().await;
        // Up to 5% of the interval of jitter, so targets spread out.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let jitter = s.interval.mul_f64(0.05 * (rng % 1000) as f64 / 1000.0);
        tokio::time::sleep(jitter).await;
        // Never more than one scrape in flight: the next tick waits for this.
        let ts = crate::clock::now();
        let body = match s.fetcher.fetch().await {
            Ok(bytes) => match (s.parse)(&bytes) {
                Ok(parsed) => {
                    metrics.scrape(&s.name, "ok");
                    if !parsed.bad_rows.is_empty() {
                        *metrics
                            .bad_rows
                            .lock()
                            .expect("metrics lock")
                            .entry(s.name.clone())
                            .or_default() += parsed.bad_rows.len() as u64;
                    }
                    SampleBody::Servers(parsed.servers)
                }
                Err(e) => {
                    metrics.scrape(&s.name, "parse_error");
                    SampleBody::Error(format!("parsing the stats: {e}").into())
                }
            },
            Err(e) => {
                metrics.scrape(&s.name, "fetch_error");
                SampleBody::Error(e.to_string().into())
            }
        };
        let sample = Sample {
            ts,
            target: s.name.clone().into(),
            body,
        };
        if tx.send(sample).await.is_err() {
            return;
        }
    }
}

/// The generic webhook: `{"version":"1","events":[...]}`, retried with
/// backoff a few times. (Durable delivery comes with the notifier work.)
async fn webhook_loop(
    name: String,
    cfg: NotifierConfig,
    mut rx: mpsc::Receiver<AlertEvent>,
    metrics: Arc<Metrics>,
) {
    let url = cfg.url.clone().unwrap_or_default();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(_) => return,
    };
    while let Some(first) = rx.recv().await {
        let mut events = vec![first];
        while let Ok(more) = rx.try_recv() {
            events.push(more);
        }
        let body = serde_json::to_vec(&serde_json::json!({"version": "1", "events": events}))
            .unwrap_or_default();
        let mut delay = Duration::from_millis(200);
        let mut delivered = false;
        for _ in 0..6 {
            let mut req = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone());
            for (k, v) in &cfg.headers {
                req = req.header(k, v);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => break,
                _ => {}
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        metrics.notification(&name, if delivered { "delivered" } else { "failed" });
    }
}

/// /healthz and /metrics.
fn routes(metrics: Arc<Metrics>) -> impl Fn(&str) -> Reply + Send + Sync + 'static {
    move |path| match path {
        "/healthz" => Reply::ok("text/plain", "ok\n".into()),
        "/metrics" => Reply::ok("text/plain; version=0.0.4", metrics.render()),
        _ => Reply::not_found(),
    }
}

/// One readable line for an event.
pub fn human_line(e: &AlertEvent) -> String {
    let what = match (&e.pool, &e.server) {
        (Some(p), Some(s)) => format!("{}/{p}/{s}", e.target),
        (Some(p), None) => format!("{}/{p}", e.target),
        _ => e.target.clone(),
    };
    let (h, m, s) = e.ts.hms();
    let state = match e.state {
        AlertState::Firing => "FIRING  ",
        AlertState::Resolved => "RESOLVED",
    };
    let severity = serde_json::to_value(e.severity)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut line = format!(
        "{h:02}:{m:02}:{s:02}Z {state} {severity:<8} {:<22} {what}",
        e.alert.as_str()
    );
    if let Some(summary) = &e.summary {
        line.push_str("\n          ");
        line.push_str(summary);
    }
    line
}

/// Runs until `shutdown` completes; returns the address the HTTP listener
/// bound to through `bound` as soon as it is up.
pub async fn run(
    cfg: FileConfig,
    opts: RunOptions,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let client = Fetcher::shared_client()?;
    let scrapers = cfg
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| scraper(i, t, &client))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let listener = tokio::net::TcpListener::bind(&cfg.http.listen)
        .await
        .with_context(|| format!("http.listen: cannot listen on {}", cfg.http.listen))?;
    if let Some(tx) = bound {
        let _ = tx.send(listener.local_addr()?);
    }
    tokio::spawn(crate::http::serve(listener, routes(metrics.clone())));

    let mut notifiers = Vec::new();
    for (i, n) in cfg.notifiers.iter().enumerate() {
        let (tx, rx) = mpsc::channel(10_000);
        tokio::spawn(webhook_loop(
            format!("notifiers[{i}]"),
            n.clone(),
            rx,
            metrics.clone(),
        ));
        notifiers.push((format!("notifiers[{i}]"), tx));
    }
    let (tx, mut rx) = mpsc::channel::<Sample<'static>>(1024);
    for s in scrapers {
        tokio::spawn(scrape_loop(s, tx.clone(), metrics.clone()));
    }
    drop(tx);
    let mut recording = match &opts.record {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--out: cannot open {}", path.display()))?,
        )),
        None => None,
    };
    let mut detector = Detector::new(cfg.detection.clone());
    let mut events = Vec::new();
    tokio::pin!(shutdown);
    loop {
        let sample = tokio::select! {
            s = rx.recv() => match s { Some(s) => s, None => break },
            () = &mut shutdown => break,
        };
        metrics.samples.fetch_add(1, Ordering::Relaxed);
        if let Some(w) = recording.as_mut() {
            serde_json::to_writer(&mut *w, &sample)?;
            w.write_all(b"\n")?;
            w.flush()?;
        }
        events.clear();
        detector.observe_into(&sample, &mut events);
        let mut out = std::io::stdout().lock();
        for e in &events {
            metrics.events.fetch_add(1, Ordering::Relaxed);
            match opts.output {
                Output::Json => serde_json::to_writer(&mut out, e)?,
                Output::Human => out.write_all(human_line(e).as_bytes())?,
            }
            out.write_all(b"\n")?;
            for (name, tx) in &notifiers {
                if tx.try_send(e.clone()).is_err() {
                    // A slow receiver never slows detection: count the drop.
                    metrics.notification(name, "dropped");
                }
            }
        }
        out.flush()?;
    }
    Ok(())
}
