//! What one configuration runs: a scrape task per target and a delivery
//! task per notifier. A reload replaces them all; a change discovery
//! finds starts and stops only the targets it adds, removes or alters, so
//! a fleet whose registry churns keeps its other scrapes and deliveries.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::{FileConfig, TargetConfig};
use crate::metrics::Metrics;
use crate::model::Sample;
use crate::notify::Notifier;
use crate::scrape::{scrape_loop, scraper, Handoff, Scraper};

/// Everything that can fail before a configuration starts, done: its
/// targets' endpoints and secrets read, its notifiers opened.
pub struct Built {
    scrapers: Vec<(TargetConfig, Scraper)>,
    pub notifiers: Vec<Arc<Notifier>>,
}

/// Where the tasks send their samples, what they count, and the client
/// they share (same settings, one connection pool and TLS setup).
#[derive(Clone)]
pub struct Env {
    pub to: Handoff,
    pub metrics: Arc<Metrics>,
    pub client: reqwest::Client,
    /// Scrapes start at each target's phase of its interval (the daemon),
    /// or at once (`verify`).
    pub phased: bool,
}

/// One target's scrape task and the settings it runs with.
struct Scraping {
    target: TargetConfig,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What `retarget` did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub started: usize,
    pub stopped: usize,
    pub kept: usize,
}

pub struct Workers {
    env: Env,
    scrapes: BTreeMap<String, Scraping>,
    /// Stops the deliveries; each scrape has its own token.
    stop: CancellationToken,
    tasks: TaskTracker,
    pub notifiers: Vec<Arc<Notifier>>,
}

/// Reads each target's endpoint and secrets; `i` is its place in the
/// config's list, which errors name (`targets[i]`).
fn scrapers<'a>(
    targets: impl Iterator<Item = (usize, &'a TargetConfig)>,
    client: &reqwest::Client,
) -> anyhow::Result<Vec<(TargetConfig, Scraper)>> {
    targets
        .map(|(i, t)| Ok((t.clone(), scraper(i, t, client)?)))
        .collect()
}

impl Workers {
    /// Builds everything of `cfg` that can fail before anything starts.
    pub fn build(
        cfg: &FileConfig,
        client: &reqwest::Client,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Built> {
        let scrapers = scrapers(cfg.targets.iter().enumerate(), client)?;
        let mut notifiers = Vec::new();
        for (i, n) in cfg.notifiers.iter().enumerate() {
            notifiers.extend(crate::notify::build(
                i,
                n,
                &cfg.http,
                &cfg.state.dir(),
                metrics,
            )?);
        }
        Ok(Built {
            scrapers,
            notifiers,
        })
    }

    pub fn start(built: Built, env: Env) -> Workers {
        let mut w = Workers {
            env,
            scrapes: BTreeMap::new(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            notifiers: built.notifiers,
        };
        for n in &w.notifiers {
            let task = n.clone().run(w.env.client.clone(), w.stop.clone());
            w.tasks.spawn(task);
        }
        for (target, s) in built.scrapers {
            w.spawn(target, s);
        }
        w
    }

    fn spawn(&mut self, target: TargetConfig, s: Scraper) {
        let stop = CancellationToken::new();
        let span = tracing::info_span!("scrape", target = %s.name);
        let env = &self.env;
        let task = scrape_loop(
            s,
            env.to.clone(),
            env.metrics.clone(),
            stop.clone(),
            env.phased,
        );
        let task = self.tasks.spawn(task.instrument(span));
        env.metrics.scrape_tasks_started.inc();
        self.scrapes
            .insert(target.name.clone(), Scraping { target, stop, task });
    }

    /// Runs `targets` from now on: those new or changed are built first
    /// (if one cannot be, nothing changes), then those gone or changed
    /// stop, and the built ones start. A target whose settings are the
    /// same keeps its task, its schedule and its scrape in flight.
    pub async fn retarget(&mut self, targets: &[TargetConfig]) -> anyhow::Result<Change> {
        let fresh = targets.iter().enumerate().filter(|(_, t)| !self.runs(t));
        let built = scrapers(fresh, &self.env.client)?;
        let wanted: BTreeMap<&str, &TargetConfig> =
            targets.iter().map(|t| (t.name.as_str(), t)).collect();
        let gone: Vec<String> = (self.scrapes.keys())
            .filter(|name| !wanted.get(name.as_str()).is_some_and(|t| self.runs(t)))
            .cloned()
            .collect();
        for name in &gone {
            if let Some(s) = self.scrapes.remove(name) {
                if s.task.is_finished() && wanted.contains_key(name.as_str()) {
                    tracing::warn!(target = %name, "its scrape task had ended; started again");
                }
                s.stop.cancel();
                // A task that panicked is gone already; nothing to wait on.
                let _ = s.task.await;
            }
        }
        let change = Change {
            started: built.len(),
            stopped: gone.len(),
            kept: self.scrapes.len(),
        };
        for (target, s) in built {
            self.spawn(target, s);
        }
        Ok(change)
    }

    /// Whether `t`'s scrape runs, with these settings. A task that ended
    /// without being stopped (a panic) does not: it is started again.
    fn runs(&self, t: &TargetConfig) -> bool {
        (self.scrapes.get(&t.name)).is_some_and(|s| s.target == *t && !s.task.is_finished())
    }

    /// Stops every scrape and delivery, and waits until they have: a scrape
    /// in flight is dropped (a page fetched and waiting for its parse too),
    /// a delivery in flight is sent again by the next run (its outbox still
    /// holds it).
    pub async fn stop(self) {
        for s in self.scrapes.values() {
            s.stop.cancel();
        }
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Scrapes every target of `cfg` for `duration`, handing each sample to
/// `take` as it comes (`verify`'s staging run: nothing is detected,
/// notified or served here).
pub async fn scrape_for(
    cfg: &FileConfig,
    duration: std::time::Duration,
    mut take: impl FnMut(&Sample<'_>),
) -> anyhow::Result<()> {
    let client = crate::fetch::Fetcher::shared_client()?;
    let built = Built {
        scrapers: scrapers(cfg.targets.iter().enumerate(), &client)?,
        notifiers: Vec::new(),
    };
    if built.scrapers.is_empty() {
        return Ok(());
    }
    let (to, mut rx) = Handoff::channel();
    let env = Env {
        to,
        metrics: Metrics::new(),
        client,
        // A staging run of seconds: every target's first sample at once.
        phased: false,
    };
    let workers = Workers::start(built, env);
    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            sample = rx.recv() => match sample {
                Some(s) => take(s.sample()),
                None => break,
            },
        }
    }
    // The channel stays open while the tasks stop: one blocked on a full
    // channel is stopped by its token, not by a reader.
    workers.stop().await;
    Ok(())
}
