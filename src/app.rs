//! The live daemon: one scrape task per target, each sample through the same
//! detector `lbwatch replay` uses, alert events to stdout and to notifiers,
//! and lbwatch's own HTTP listener.
//!
//! Detection never waits on an output: targets hand samples over a bounded
//! channel, notifiers take events from their own bounded queues and count
//! what they had to drop. Readers of servers (`/metrics`, `/api/v1/pools`)
//! take the loop's time to build them, between two samples.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::FileConfig;
use crate::detect::{Detector, TargetView};
use crate::fetch::Fetcher;
use crate::http::{Reply, Request};
use crate::metrics::Metrics;
use crate::model::{AlertEvent, AlertState};
use crate::notify::Notifier;
use crate::pipeline::{EventWriter, Pipeline};
use crate::scrape::{Handoff, Scraped};
use crate::sinks::{Accounting, Notifiers, Outboxes, Recorder, StateSaver};
use crate::state::StateStore;
use crate::views::{Ask, AskError, Asker, Fleet, Publisher};
use crate::workers::Workers;

pub use crate::pipeline::{human_line, Output};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub output: Output,
    /// Append every sample here, in the replay format.
    pub record: Option<PathBuf>,
    /// The file the config came from: SIGHUP re-reads it.
    pub config_path: Option<PathBuf>,
    /// `--shard I/N`: over `[cluster]`.
    pub shard: Option<crate::cluster::Shard>,
}

/// How long a reader waits for the detector's loop to give it servers: a
/// sample's detection takes milliseconds, a reload can take a few seconds.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// What the HTTP handlers read: the fleet as last published, never the
/// detector itself; its servers, by asking the detector's loop.
struct Shared {
    fleet: tokio::sync::watch::Receiver<Fleet>,
    asker: Asker,
    /// Why the last request for servers went unanswered, if it did.
    unanswered: std::sync::Mutex<Option<&'static str>>,
    incidents: crate::sinks::IncidentBook,
    metrics: Arc<Metrics>,
    notifiers: Notifiers,
    /// The targets configured.
    targets: RwLock<BTreeSet<String>>,
}

impl Shared {
    fn fleet(&self) -> Fleet {
        self.fleet.borrow().clone()
    }

    fn ready(&self, fleet: &Fleet) -> (bool, usize, usize) {
        let targets = self.targets.read().expect("lock");
        let n = targets
            .iter()
            .filter(|t| fleet.targets.get(*t).is_some_and(|s| s.scraped))
            .count();
        (n >= targets.len(), n, targets.len())
    }

    fn notifiers(&self) -> Vec<Arc<Notifier>> {
        self.notifiers.read().expect("lock").clone()
    }

    /// The full views of `targets`, from the detector; a failure is
    /// counted by reason, and logged when the reason changes (a long
    /// reload would otherwise log every scrape and every status refresh).
    fn views(&self, targets: Vec<String>) -> Result<Vec<TargetView>, AskError> {
        let got = self.asker.views(targets);
        let reason = got.as_ref().err().map(AskError::reason);
        let before = std::mem::replace(&mut *self.unanswered.lock().expect("lock"), reason);
        match &got {
            Err(e) => {
                let labels = [("reason", e.reason())];
                self.metrics
                    .count(&self.metrics.server_views_unanswered, &labels);
                if before != reason {
                    tracing::warn!("servers asked of the detector: {e}");
                }
            }
            Ok(_) if before.is_some() => tracing::info!("the detector gives servers again"),
            Ok(_) => {}
        }
        got
    }

    /// `/metrics`: without per-server series when the detector gave none.
    fn metrics_text(&self, openmetrics: bool) -> String {
        let fleet = self.fleet();
        let servers = self
            .views(self.metrics.server_targets(&fleet))
            .unwrap_or_default();
        self.metrics.render(&fleet, &servers, openmetrics)
    }
}

fn routes(shared: Arc<Shared>) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |req| match req.path.as_str() {
        "/" => Reply::ok("text/html; charset=utf-8", crate::status::PAGE.into()),
        "/healthz" => Reply::ok("text/plain", "ok\n".into()),
        "/ready" => {
            let fleet = shared.fleet();
            let (ready, n, of) = shared.ready(&fleet);
            let mut text = format!("{n} of {of} targets scraped\n");
            for (t, _) in fleet.targets.iter().filter(|(_, s)| s.empty) {
                text.push_str(&format!("{t}: its stats list no pool: nothing to watch\n"));
            }
            if ready {
                Reply::ok("text/plain", text)
            } else {
                Reply::ok("text/plain", text).with_status(hyper::StatusCode::SERVICE_UNAVAILABLE)
            }
        }
        "/metrics" => {
            // Prometheus asks for OpenMetrics in its Accept header.
            let om = req.accept.contains("application/openmetrics-text");
            Reply::ok(
                if om {
                    "application/openmetrics-text; version=1.0.0; charset=utf-8"
                } else {
                    "text/plain; version=0.0.4; charset=utf-8"
                },
                shared.metrics_text(om),
            )
        }
        "/api/v1/alerts" => {
            let fleet = shared.fleet();
            let firing: Vec<&AlertEvent> = fleet.firing().collect();
            Reply::json(&serde_json::json!({ "alerts": firing }))
        }
        "/api/v1/incidents" => incident_list(&shared, req),
        path if path.starts_with("/api/v1/incidents/") => {
            // Ids hold target names, escaped in the links lbwatch sends.
            let id = crate::http::path_decode(&path["/api/v1/incidents/".len()..]);
            incident_one(&shared, &id, req.param("format").as_deref())
        }
        "/api/v1/pools" => pools(&shared, req.param("target")),
        _ => Reply::not_found(),
    }
}

/// `/api/v1/pools[?target=NAME]`: every target's pools and servers, and
/// the notifiers' queues. When the detector gives no servers, the pools
/// as last published, with `servers_error` saying why.
fn pools(shared: &Shared, target: Option<String>) -> Reply {
    let fleet = shared.fleet();
    let wanted = |name: &String| target.as_ref().is_none_or(|t| t == name);
    let names: Vec<String> = fleet
        .targets
        .keys()
        .filter(|n| wanted(n))
        .cloned()
        .collect();
    let (view, error) = match shared.views(names) {
        Ok(view) => (view, None),
        Err(e) => {
            let wanted = fleet.targets.values().filter(|t| wanted(&t.view.target));
            (
                wanted.map(|t| t.view.clone()).collect(),
                Some(e.to_string()),
            )
        }
    };
    let notifiers: Vec<_> = shared
        .notifiers()
        .iter()
        .map(|n| serde_json::json!({"notifier": n.name, "undelivered": n.depth()}))
        .collect();
    let mut body = serde_json::json!({ "targets": view, "notifiers": notifiers });
    if let Some(error) = error {
        body["servers_error"] = error.into();
    }
    Reply::json(&body)
}

/// `/api/v1/incidents[?target=NAME]`: every incident, newest first,
/// without their timelines.
fn incident_list(shared: &Shared, req: &Request) -> Reply {
    let target = req.param("target");
    let book = shared.incidents.read().expect("incident book lock");
    let mut list: Vec<serde_json::Value> = book
        .values()
        .filter(|i| target.as_ref().is_none_or(|t| &i.target == t))
        .map(|i| {
            let alerts: Vec<_> = i.alerts.iter().map(|a| a.alert.as_str()).collect();
            // The servers that left stay on the status page while it is open.
            let departed = if i.closed { &[][..] } else { &i.departed[..] };
            serde_json::json!({"id": i.id, "target": i.target, "start": i.start, "detected": i.detected,
                "end": i.end, "closed": i.closed, "alerts": alerts, "cause": i.cause,
                "departed": departed})
        })
        .collect();
    list.sort_by(|a, b| b["start"].as_str().cmp(&a["start"].as_str()));
    Reply::json(&serde_json::json!({ "incidents": list }))
}

/// `/api/v1/incidents/ID[?format=markdown]`: one incident, or its report.
fn incident_one(shared: &Shared, id: &str, format: Option<&str>) -> Reply {
    let book = shared.incidents.read().expect("incident book lock");
    let Some(i) = book.get(id) else {
        return Reply::not_found();
    };
    match format {
        Some("markdown") => {
            let fleet = shared.fleet();
            let latest = fleet
                .targets
                .values()
                .filter_map(|t| t.view.last_sample)
                .max();
            let now = latest.unwrap_or(i.detected);
            Reply::ok(
                "text/markdown; charset=utf-8",
                crate::incident::report::markdown(i, now),
            )
        }
        _ => Reply::json(&crate::incident::report::json(i)),
    }
}

/// Resolve events for every alert of `target`, which is no longer
/// configured (nobody would ever resolve them otherwise); forgets it.
fn forget_target(detector: &mut Detector, store: &StateStore, target: &str) -> Vec<AlertEvent> {
    let now = crate::clock::now();
    let resolved = detector
        .forget(target)
        .unwrap_or_default()
        .into_iter()
        .map(|a| AlertEvent {
            ts: now,
            state: AlertState::Resolved,
            summary: None,
            value: None,
            ..a.event()
        })
        .collect();
    store.remove(target);
    resolved
}

/// Restores every configured target's saved state; the alerts of targets no
/// longer configured are resolved and their state dropped.
fn restore(
    detector: &mut Detector,
    store: &StateStore,
    configured: &BTreeSet<String>,
    metrics: &Metrics,
) -> Vec<AlertEvent> {
    let mut resolved = Vec::new();
    let saved = match store.load_all() {
        Ok(s) => s,
        Err(e) => {
            metrics.state_errors.inc();
            tracing::error!("{e}; starting without the saved state");
            return resolved;
        }
    };
    for (path, bytes) in saved {
        match detector.restore(&bytes) {
            Ok(name) if configured.contains(&name) => {}
            Ok(name) => resolved.extend(forget_target(detector, store, &name)),
            Err(e) => {
                metrics.state_errors.inc();
                tracing::warn!("{}: {e}; that target starts afresh", path.display());
            }
        }
    }
    resolved
}

/// Everything the detector loop keeps across reloads.
struct Daemon {
    /// The config as read, before discovery and sharding.
    base: FileConfig,
    /// What runs: `base` with the discovered targets, of this shard.
    cfg: FileConfig,
    /// When `[[discovery]]` is read again, and what it found last.
    next_discovery: Option<tokio::time::Instant>,
    /// The directories of `[[discovery]]`'s files, watched: a change to a
    /// file a block reads has every block read `fleet::SETTLE` later.
    watch: Option<crate::discovery::FileWatch>,
    /// A reading of `[[discovery]]` under way, off the detector loop.
    /// Another fell due while it ran (a file changed, or the refresh): it
    /// begins `fleet::SETTLE` after this one ends.
    again: bool,
    reading: Option<tokio::task::JoinHandle<crate::discovery::Found>>,
    seen: crate::fleet::Seen,
    /// Discovered targets that could not start (not tried again as such).
    failed: Option<Vec<crate::config::TargetConfig>>,
    config_path: Option<PathBuf>,
    /// `--shard`, applied to every config read.
    shard: Option<crate::cluster::Shard>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    store: Arc<StateStore>,
    shared: Arc<Shared>,
    publisher: Publisher,
    /// Readers' requests for servers, answered between two samples.
    asks: mpsc::Receiver<Ask>,
    workers: Option<Workers>,
    to: Handoff,
}

impl Daemon {
    /// Re-reads the config file: validated first; a bad one is rejected with
    /// every error and the running one keeps going.
    async fn reload(&mut self, pipeline: &mut Pipeline) {
        let Some(path) = self.config_path.clone() else {
            return;
        };
        crate::systemd::notify("RELOADING=1");
        let result = match crate::config::load(&path) {
            Ok(base) => self.adopt(base, pipeline).await,
            Err(e) => Err(e.lines().join("; ")),
        };
        let outcome = match result {
            Ok(()) => {
                tracing::info!(
                    "reloaded {}: {} target(s), {} notifier(s)",
                    path.display(),
                    self.cfg.targets.len(),
                    self.cfg.notifiers.len()
                );
                "ok"
            }
            Err(why) => {
                tracing::error!("config reload rejected, still running the previous one: {why}");
                "rejected"
            }
        };
        self.metrics
            .count(&self.metrics.config_reloads, &[("result", outcome)]);
        crate::systemd::notify("READY=1");
    }

    /// Runs `base`, a config as read (with its discovered targets, of this
    /// shard); what it found is kept only once it runs.
    async fn adopt(&mut self, base: FileConfig, pipeline: &mut Pipeline) -> Result<(), String> {
        let watch = watch_files(&base, &self.metrics);
        let found = crate::discovery::read(&base.discovery).await;
        let (new, seen) =
            crate::fleet::watched(&base, &self.seen, found, self.shard, &self.metrics)
                .map_err(|e| e.to_string())?;
        self.apply(new, pipeline).await?;
        // Accepted: a reading under way is of the old blocks. (A rejected
        // config leaves it to end, and the schedule as it was.)
        if let Some(r) = self.reading.take() {
            r.abort();
        }
        self.again = false;
        self.seen = seen;
        self.failed = None;
        self.next_discovery = crate::fleet::next_discovery(&base);
        self.watch = watch;
        self.base = base;
        Ok(())
    }

    /// A file a block reads changed: the blocks are read soon (a tool that
    /// writes several files wakes one reading). A directory whose watch
    /// ended, or a watch that failed, is read at each refresh from now on.
    fn files_changed(&mut self, change: Result<crate::discovery::Seen, String>) {
        match change {
            Ok(crate::discovery::Seen::Changed) => self.read_soon(),
            Ok(crate::discovery::Seen::Lost(why)) => {
                tracing::warn!("{why}");
                self.metrics.discovery_errors.inc();
                self.read_soon();
            }
            Err(e) => {
                tracing::error!("{e}; the files are read every refresh");
                self.metrics.discovery_errors.inc();
                self.watch = None;
            }
        }
    }

    fn read_soon(&mut self) {
        let soon = tokio::time::Instant::now() + crate::fleet::SETTLE;
        self.next_discovery = crate::fleet::sooner(self.next_discovery, Some(soon));
    }

    /// Starts reading `[[discovery]]` again, on a task of its own: files
    /// on a hung network filesystem, or a DNS server that does not answer,
    /// must not hold the detector loop.
    fn start_reading(&mut self) {
        self.next_discovery = None;
        // One under way may have read a file before it changed: the next
        // begins once it ends (a reading is never cut short: its files may
        // be on a hung filesystem, its names on a slow server).
        if self.reading.is_some() {
            self.again = true;
            return;
        }
        let blocks = self.base.discovery.clone();
        self.reading = Some(tokio::spawn(async move {
            crate::discovery::read(&blocks).await
        }));
    }

    /// Takes what discovery read; a change of targets starts and stops only
    /// the targets that changed (removed ones resolve their alerts). A set
    /// of targets that could not start is not tried again until discovery
    /// finds another.
    async fn rediscover(
        &mut self,
        found: Option<crate::discovery::Found>,
        pipeline: &mut Pipeline,
    ) {
        // A file that changed during the reading is read again soon.
        let refresh = crate::fleet::next_discovery(&self.base);
        self.next_discovery = crate::fleet::sooner(self.next_discovery, refresh);
        if std::mem::take(&mut self.again) {
            self.read_soon();
        }
        let Some(found) = found else {
            return tracing::error!("discovery: the reading stopped before it ended");
        };
        let (new, seen) =
            match crate::fleet::watched(&self.base, &self.seen, found, self.shard, &self.metrics) {
                Ok(found) => found,
                Err(e) => return tracing::error!("cluster: {e}"),
            };
        self.seen = seen;
        let failed = self
            .failed
            .as_ref()
            .is_some_and(|f| crate::fleet::same_targets(f, &new.targets));
        if failed || crate::fleet::same_targets(&new.targets, &self.cfg.targets) {
            return;
        }
        let (before, targets) = (self.cfg.targets.len(), new.targets.clone());
        match self.retarget(new, pipeline).await {
            Ok(how) => {
                self.failed = None;
                tracing::info!("discovery: {before} -> {} target(s){how}", targets.len());
            }
            Err(why) => {
                tracing::error!("discovery: the new targets were not applied: {why}");
                self.failed = Some(targets);
            }
        }
    }

    /// `new` differs from what runs in its targets alone (discovery never
    /// changes the rest): only the targets added, removed or altered stop
    /// or start; the notifiers and every other scrape go on. With nothing
    /// running (a reload and its fallback both failed), everything starts
    /// as on reload. Says what changed, for the log.
    async fn retarget(
        &mut self,
        new: FileConfig,
        pipeline: &mut Pipeline,
    ) -> Result<String, String> {
        let Some(workers) = self.workers.as_mut() else {
            return self.apply(new, pipeline).await.map(|()| String::new());
        };
        let c = (workers.retarget(&new.targets).await).map_err(|e| format!("{e:#}"))?;
        let notifiers = workers.notifiers.clone();
        self.switch_detection(&new, &notifiers, pipeline);
        self.cfg = new;
        Ok(format!(
            ": {} started, {} stopped, {} unchanged",
            c.started, c.stopped, c.kept
        ))
    }

    fn env(&self) -> crate::workers::Env {
        crate::workers::Env {
            to: self.to.clone(),
            metrics: self.metrics.clone(),
            client: self.client.clone(),
            phased: true,
        }
    }

    async fn apply(&mut self, new: FileConfig, pipeline: &mut Pipeline) -> Result<(), String> {
        if new.state.dir() != self.cfg.state.dir() {
            return Err(format!(
                "state.dir: {} -> {} needs a restart",
                self.cfg.state.dir().display(),
                new.state.dir().display()
            ));
        }
        // The old notifiers stop before the new ones open the same outboxes;
        // if the new config cannot start (a password or routing key file
        // unreadable), the old one is started again.
        if let Some(old) = self.workers.take() {
            old.stop().await;
        }
        let built = Workers::build(&new, &self.client, &self.metrics);
        let (parts, result) = match built {
            Ok(parts) => (parts, Ok(())),
            Err(e) => {
                let why = format!("{e:#}");
                let parts =
                    Workers::build(&self.cfg, &self.client, &self.metrics).map_err(|e| {
                        format!("{why}; and the previous config no longer starts: {e:#}")
                    })?;
                (parts, Err(why))
            }
        };
        if result.is_ok() {
            if new.http.tls != self.cfg.http.tls || new.http.basic_auth != self.cfg.http.basic_auth
            {
                tracing::warn!(
                    "http.tls and http.basic_auth changes (and new certificate or password files) take effect at the next restart"
                );
            }
            if new.http.listen != self.cfg.http.listen {
                tracing::warn!(
                    "http.listen: {} -> {} takes effect at the next restart",
                    self.cfg.http.listen,
                    new.http.listen
                );
            }
            self.switch_detection(&new, &parts.notifiers, pipeline);
            self.metrics.set_per_server(new.metrics.per_server);
            self.cfg = new;
        }
        let workers = Workers::start(parts, self.env());
        *self.shared.notifiers.write().expect("lock") = workers.notifiers.clone();
        self.workers = Some(workers);
        result
    }

    /// New detection settings and targets: the detector keeps every
    /// target's state (through its snapshot), forgets removed targets and
    /// resolves their alerts (through the pipeline's sinks: their incidents
    /// close, the new notifiers hear of it).
    fn switch_detection(
        &mut self,
        new: &FileConfig,
        notifiers: &[Arc<Notifier>],
        pipeline: &mut Pipeline,
    ) {
        let configured: BTreeSet<String> = new.targets.iter().map(|t| t.name.clone()).collect();
        if new.detection != self.cfg.detection {
            let d = pipeline.detector_mut();
            let mut fresh = Detector::new(new.detection.clone());
            let names: Vec<String> = d.targets().map(str::to_string).collect();
            for name in names {
                if let Some(bytes) = d.snapshot(&name) {
                    let _ = fresh.restore(&bytes);
                }
            }
            *d = fresh;
        }
        let gone: Vec<String> = pipeline
            .detector()
            .targets()
            .filter(|t| !configured.contains(*t))
            .map(str::to_string)
            .collect();
        // The sinks push to the new notifiers, which open the outboxes the
        // old ones wrote.
        *self.shared.notifiers.write().expect("lock") = notifiers.to_vec();
        for name in gone {
            let resolved = forget_target(pipeline.detector_mut(), &self.store, &name);
            if let Err(e) = pipeline.forget(&name, crate::clock::now(), &resolved) {
                tracing::error!("{name}: {e}");
            }
        }
        self.publisher.refresh(pipeline.detector());
        *self.shared.targets.write().expect("lock") = configured;
    }

    fn configured(&self, target: &str) -> bool {
        self.shared.targets.read().expect("lock").contains(target)
    }

    fn save_all(&self, d: &Detector) {
        let names: Vec<String> = d.targets().map(str::to_string).collect();
        for name in names {
            if let Some(bytes) = d.snapshot(&name) {
                if let Err(e) = self.store.save(&name, &bytes, true) {
                    self.metrics.state_errors.inc();
                    tracing::error!("{e}");
                }
            }
        }
    }
}

/// Whether `listen` keeps the listener on this machine, where a password in
/// clear text crosses no network.
fn on_loopback(listen: &str) -> bool {
    listen.parse::<SocketAddr>().map_or_else(
        |_| listen.starts_with("localhost:"),
        |a| a.ip().is_loopback(),
    )
}

/// The listener's TLS and basic auth, from `[http]`.
fn guard(cfg: &FileConfig) -> anyhow::Result<crate::http::Guard> {
    let tls = match &cfg.http.tls {
        Some(t) => {
            Some(crate::http::tls_acceptor(&t.cert_file, &t.key_file).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let auth = match &cfg.http.basic_auth {
        Some(a) => {
            let password = crate::secret::read_secret(
                a.password_file.as_ref(),
                a.password_env.as_ref(),
                "http.basic_auth.password",
            )?
            .context("http.basic_auth: no password")?;
            if tls.is_none() && !on_loopback(&cfg.http.listen) {
                tracing::warn!(
                    listen = %cfg.http.listen,
                    "http.basic_auth without http.tls: the password crosses the network in clear text; set [http.tls]"
                );
            }
            Some(crate::http::Credentials::new(&a.username, &password))
        }
        None => None,
    };
    Ok(crate::http::Guard { tls, auth })
}

/// Runs until `shutdown` completes; returns the address the HTTP listener
/// bound to through `bound` as soon as it is up. With `opts.config_path`,
/// SIGHUP re-reads that file.
pub async fn run(
    cfg: FileConfig,
    opts: RunOptions,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    metrics
        .runtime_workers
        .set(workers.try_into().unwrap_or(i64::MAX));
    let base = cfg;
    // Watched before the first reading: a file written during it is read
    // again.
    let watch = watch_files(&base, &metrics);
    let found = crate::discovery::read(&base.discovery).await;
    let (cfg, seen) = crate::fleet::watched(
        &base,
        &crate::fleet::Seen::default(),
        found,
        opts.shard,
        &metrics,
    )
    .context("cluster")?;
    metrics.set_per_server(cfg.metrics.per_server);
    let client = Fetcher::shared_client()?;
    let parts = Workers::build(&cfg, &client, &metrics)?;
    let store = Arc::new(StateStore::open(&cfg.state.dir()).context("state.dir")?);
    let configured: BTreeSet<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
    let mut detector = Detector::new(cfg.detection.clone());
    let gone = restore(&mut detector, &store, &configured, &metrics);
    let (publisher, fleet) = Publisher::new(Fleet::restored(&detector));
    let notifiers: Notifiers = Arc::new(RwLock::new(parts.notifiers.clone()));
    let history =
        crate::incident::store::Store::open(&cfg.state.dir(), cfg.state.incident_limits())
            .context("state.dir: the incident history")?;
    let mut incidents = crate::sinks::Incidents::new(Some(history), None);
    incidents.metrics = Some(metrics.clone());
    // Targets no longer configured: their alerts resolve and their
    // incidents close, once the pipeline is up.
    let mut unwatched: BTreeMap<String, Vec<AlertEvent>> = BTreeMap::new();
    for i in incidents.tracker.open() {
        if !configured.contains(&i.target) {
            unwatched.entry(i.target.clone()).or_default();
        }
    }
    for e in gone {
        unwatched.entry(e.target.clone()).or_default().push(e);
    }
    let (asker, asks) = Asker::channel(ANSWER_WITHIN);
    let shared = Arc::new(Shared {
        fleet,
        asker,
        unanswered: Default::default(),
        incidents: incidents.book.clone(),
        metrics: metrics.clone(),
        notifiers: notifiers.clone(),
        targets: RwLock::new(configured),
    });
    let (http_stop, http) = listen(&cfg, bound, shared.clone()).await?;
    let sinks = Sinks {
        metrics: &metrics,
        publisher: &publisher,
        notifiers: &notifiers,
        store: &store,
    };
    let mut pipeline = pipeline(detector, &opts, sinks, incidents)?;
    for (target, resolved) in &unwatched {
        if let Err(e) = pipeline.forget(target, crate::clock::now(), resolved) {
            tracing::error!("{target}: {e}");
        }
    }
    let (to, mut rx) = Handoff::channel();
    let mut daemon = Daemon {
        next_discovery: crate::fleet::next_discovery(&base),
        watch,
        again: false,
        reading: None,
        seen,
        failed: None,
        base,
        cfg,
        config_path: opts.config_path.clone(),
        shard: opts.shard,
        client,
        metrics,
        store,
        shared,
        publisher,
        asks,
        workers: None,
        to,
    };
    daemon.workers = Some(Workers::start(parts, daemon.env()));
    // The config is loaded and the listener is up.
    crate::systemd::notify("READY=1");
    detect_until(shutdown, &mut rx, &mut pipeline, &mut daemon).await?;
    crate::systemd::notify("STOPPING=1");
    // Stop scraping, then detect on what was scraped already (a page still
    // waiting for its parse is dropped with its task): its events
    // reach stdout and the outboxes (on disk, delivered by the next run).
    if let Some(w) = daemon.workers.take() {
        w.stop().await;
    }
    rx.close();
    loop {
        tokio::select! {
            scraped = rx.recv() => match scraped {
                Some(scraped) => {
                    let sample = scraped.sample();
                    if daemon.configured(&sample.target) {
                        pipeline.step(sample)?;
                    }
                }
                None => break,
            },
            Some(ask) = daemon.asks.recv() => {
                ask.answer(pipeline.detector());
            }
        }
    }
    pipeline.finish()?;
    // Readers asking for servers from here on are told at once; those
    // already waiting are answered.
    daemon.asks.close();
    while let Some(ask) = daemon.asks.recv().await {
        ask.answer(pipeline.detector());
    }
    // Keep everything learned; the listener answers until here.
    daemon.save_all(pipeline.detector());
    http_stop.cancel();
    let _ = http.await;
    Ok(())
}

/// Binds `[http] listen` (telling `bound` where) and serves the routes
/// until the token returned is cancelled.
async fn listen(
    cfg: &FileConfig,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shared: Arc<Shared>,
) -> anyhow::Result<(CancellationToken, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(&cfg.http.listen)
        .await
        .with_context(|| format!("http.listen: cannot listen on {}", cfg.http.listen))?;
    if let Some(tx) = bound {
        let _ = tx.send(listener.local_addr()?);
    }
    let stop = CancellationToken::new();
    let task = crate::http::serve(listener, routes(shared), guard(cfg)?, stop.clone());
    Ok((stop, tokio::spawn(task)))
}

/// Watches the directories of `base`'s `file` blocks; what cannot be
/// watched is said, counted, and left to the refresh.
fn watch_files(base: &FileConfig, metrics: &Metrics) -> Option<crate::discovery::FileWatch> {
    let (watch, problems) = crate::discovery::FileWatch::start(&base.discovery);
    for p in &problems {
        tracing::warn!("{p}");
    }
    metrics.discovery_errors.inc_by(problems.len() as u64);
    watch
}

/// What `f` makes of `value` once it is ready; never, without a value: a
/// signal not listened for, no reading under way, no time set.
async fn when<T, F: std::future::Future>(value: Option<T>, f: impl FnOnce(T) -> F) -> F::Output {
    match value {
        Some(v) => f(v).await,
        None => std::future::pending().await,
    }
}

/// The detector loop: each sample through the pipeline, SIGHUP reloads,
/// systemd's watchdog pinged, until `shutdown` (or every scraper is gone).
async fn detect_until(
    shutdown: impl std::future::Future<Output = ()>,
    rx: &mut mpsc::Receiver<Scraped>,
    pipeline: &mut Pipeline,
    daemon: &mut Daemon,
) -> anyhow::Result<()> {
    let mut hup = match &daemon.config_path {
        Some(_) => Some(tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        )?),
        None => None,
    };
    let mut watchdog = crate::systemd::watchdog_interval().map(tokio::time::interval);
    tokio::pin!(shutdown);
    loop {
        let scraped = tokio::select! {
            s = rx.recv() => match s { Some(s) => s, None => return Ok(()) },
            () = &mut shutdown => return Ok(()),
            _ = when(hup.as_mut(), |s| s.recv()) => {
                daemon.reload(pipeline).await;
                continue;
            }
            () = when(daemon.next_discovery, tokio::time::sleep_until) => {
                daemon.start_reading();
                continue;
            }
            change = when(daemon.watch.as_mut(), |w| w.changed()) => {
                daemon.files_changed(change);
                continue;
            }
            // `None`: the reading panicked or was stopped.
            found = when(daemon.reading.as_mut(), |r| async move { r.await.ok() }) => {
                daemon.reading = None;
                daemon.rediscover(found, pipeline).await;
                continue;
            }
            Some(ask) = daemon.asks.recv() => {
                ask.answer(pipeline.detector());
                continue;
            }
            // Pinged from this loop: a detector that stopped taking
            // samples stops the pings, and systemd restarts lbwatch.
            _ = when(watchdog.as_mut(), |w| w.tick()) => {
                crate::systemd::notify("WATCHDOG=1");
                continue;
            }
        };
        // A sample of a target a reload removed, scraped before it: the
        // detector would take it for a new target.
        let sample = scraped.sample();
        if !daemon.configured(&sample.target) {
            continue;
        }
        pipeline.step(sample)?;
    }
}

/// What the live run's sinks share with the rest of the daemon.
struct Sinks<'a> {
    metrics: &'a Arc<Metrics>,
    publisher: &'a Publisher,
    notifiers: &'a Notifiers,
    store: &'a Arc<StateStore>,
}

/// The live run's sinks, in order: the recording, lbwatch's accounting, the
/// views, the incidents (on disk before any event leaves), stdout, the
/// outboxes, then the state that says the events were raised (see
/// `sinks::StateSaver`).
fn pipeline(
    detector: Detector,
    opts: &RunOptions,
    Sinks {
        metrics,
        publisher,
        notifiers,
        store,
    }: Sinks,
    incidents: crate::sinks::Incidents,
) -> anyhow::Result<Pipeline> {
    let book = incidents.book.clone();
    let mut p = Pipeline::new(detector);
    if let Some(path) = &opts.record {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("--out: cannot open {}", path.display()))?;
        p = p.with(Recorder {
            out: std::io::BufWriter::new(file),
        });
    }
    Ok(p.with(Accounting {
        metrics: metrics.clone(),
    })
    .with(publisher.clone())
    // Before any event leaves: an incident that is paged is on disk first.
    .with(incidents)
    .with(EventWriter::new(std::io::stdout(), opts.output, true))
    .with(Outboxes {
        notifiers: notifiers.clone(),
        incidents: book,
    })
    .with(StateSaver {
        store: store.clone(),
        metrics: metrics.clone(),
        saved_at: BTreeMap::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listener's state for a detector that saw one target of two
    /// servers, and the receiving end of its asks.
    fn shared() -> (Arc<Shared>, Detector, mpsc::Receiver<Ask>) {
        let detector = crate::views::tests::detector();
        let (_, fleet) = Publisher::new(Fleet::restored(&detector));
        let (asker, asks) = Asker::channel(std::time::Duration::from_secs(30));
        let shared = Arc::new(Shared {
            fleet,
            asker,
            unanswered: Default::default(),
            incidents: Default::default(),
            metrics: Metrics::new(),
            notifiers: Default::default(),
            targets: RwLock::new(BTreeSet::from(["lb".to_string()])),
        });
        (shared, detector, asks)
    }

    #[test]
    fn servers_come_from_the_detector_and_their_absence_is_said_and_counted() {
        let (shared, detector, mut asks) = shared();
        // The detector's loop answers two asks: /metrics, /api/v1/pools.
        let answering = std::thread::spawn(move || {
            for _ in 0..2 {
                asks.blocking_recv().unwrap().answer(&detector);
            }
            asks
        });
        let text = shared.metrics_text(false);
        assert!(
            text.contains(r#"lbwatch_server_up{target="lb",pool="web",server="b"} 1"#),
            "{text}"
        );
        let reply = pools(&shared, Some("lb".into()));
        assert_eq!(reply.status, hyper::StatusCode::OK);
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["targets"][0]["pools"][0]["listed_servers"], 2);
        assert_eq!(body["targets"][0]["pools"][0]["servers"][1]["server"], "b");
        assert!(body.get("servers_error").is_none(), "{body}");
        // The loop is gone: pools without servers, and why.
        drop(answering.join().unwrap());
        let text = shared.metrics_text(false);
        assert!(!text.contains("lbwatch_server_up{"), "{text}");
        assert!(
            text.contains(r#"lbwatch_pool_servers{target="lb",pool="web"} 2"#),
            "{text}"
        );
        let reply = pools(&shared, None);
        assert_eq!(reply.status, hyper::StatusCode::OK);
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["servers_error"], "the detector is not running");
        let pool = &body["targets"][0]["pools"][0];
        assert_eq!(pool["pool"], "web");
        assert_eq!(pool["listed_servers"], 2);
        assert_eq!(pool["servers"], serde_json::json!([]));
        // Counted before the render that shows it: this one is the third.
        let text = shared.metrics_text(false);
        assert!(
            text.contains(r#"lbwatch_server_views_unanswered_total{reason="stopped"} 3"#),
            "{text}"
        );
    }

    #[test]
    fn basic_auth_without_tls_is_a_warning_only_beyond_loopback() {
        for listen in [
            "127.0.0.1:9108",
            "[::1]:9108",
            "localhost:9108",
            "127.0.0.2:80",
        ] {
            assert!(on_loopback(listen), "{listen}");
        }
        for listen in [
            "0.0.0.0:9108",
            "[::]:9108",
            "10.0.0.5:9108",
            "lbwatch.internal:9108",
        ] {
            assert!(!on_loopback(listen), "{listen}");
        }
    }
}
