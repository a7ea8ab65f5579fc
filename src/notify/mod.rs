//! Notifiers: where alert events go besides stdout.
//!
//! Each notifier has its own durable outbox (`outbox.rs`) and its own
//! delivery task, so a slow or dead receiver never slows detection nor
//! another receiver. Detection hands events over with `Notifier::push`,
//! which returns once they are on disk; the task delivers them in order,
//! retrying with jittered exponential backoff on connection errors,
//! timeouts, 429 and 5xx, and giving up (logged with the receiver's answer)
//! on any other 4xx.
//!
//! Kinds: `webhook` (the generic payload, optional headers and HMAC
//! signature), `pagerduty` (Events API v2, one event per request),
//! `alertmanager` (API v2: the whole set of firing and recently resolved
//! alerts, re-sent on a lease as Prometheus does).

mod deliver;
pub mod outbox;
pub mod payload;
pub mod route;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;

use crate::config::{HttpConfig, NotifierConfig};
use crate::fetch::Secret;
use crate::metrics::Metrics;
use crate::model::AlertEvent;
use outbox::Outbox;
use route::Route;

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Where a notifier delivers.
#[derive(Debug)]
enum Receiver {
    Webhook {
        url: String,
        headers: Vec<(String, String)>,
        secret: Option<Secret>,
    },
    PagerDuty {
        url: String,
        routing_key: Secret,
    },
    Alertmanager {
        url: String,
        resend: Duration,
    },
}

/// One receiver with its outbox.
#[derive(Debug)]
pub struct Notifier {
    pub name: String,
    receiver: Receiver,
    route: Route,
    outbox: Mutex<Outbox>,
    wake: tokio::sync::Notify,
    timeout: Duration,
    external_url: String,
    metrics: Arc<Metrics>,
}

/// A secret from a file (trailing newline dropped) or an environment
/// variable; `key` names the setting in errors.
pub fn read_secret(
    file: Option<&std::path::PathBuf>,
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

/// The notifiers of `[[notifiers]]` entry `i`: one, or one per Alertmanager
/// of a cluster.
pub fn build(
    i: usize,
    cfg: &NotifierConfig,
    http: &HttpConfig,
    state_dir: &Path,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Vec<Arc<Notifier>>> {
    let name = cfg.name(i);
    let key = |k: &str| format!("notifiers[{i}].{k}");
    let receivers: Vec<(String, Receiver)> = match cfg.kind.as_str() {
        "webhook" => vec![(
            name.clone(),
            Receiver::Webhook {
                url: cfg.url.clone().unwrap_or_default(),
                headers: cfg.headers.clone().into_iter().collect(),
                secret: read_secret(
                    cfg.secret_file.as_ref(),
                    cfg.secret_env.as_ref(),
                    &key("secret"),
                )?,
            },
        )],
        "pagerduty" => vec![(
            name.clone(),
            Receiver::PagerDuty {
                url: cfg.url.clone().unwrap_or_else(|| PAGERDUTY_URL.into()),
                routing_key: read_secret(
                    cfg.routing_key_file.as_ref(),
                    cfg.routing_key_env.as_ref(),
                    &key("routing_key"),
                )?
                .context(format!("{}: missing", key("routing_key_file")))?,
            },
        )],
        "alertmanager" => {
            let urls = cfg.receivers();
            let several = urls.len() > 1;
            urls.into_iter()
                .enumerate()
                .map(|(j, url)| {
                    (
                        if several {
                            format!("{name}.{j}")
                        } else {
                            name.clone()
                        },
                        Receiver::Alertmanager {
                            url: url.trim_end_matches('/').to_string(),
                            resend: Duration::from_secs_f64(cfg.resend_interval.0),
                        },
                    )
                })
                .collect()
        }
        other => anyhow::bail!("{}: {other:?} is not a notifier kind", key("kind")),
    };
    receivers
        .into_iter()
        .map(|(name, receiver)| {
            let path = state_dir.join("outbox").join(format!("{name}.jsonl"));
            let outbox = Outbox::open(&path, cfg.queue_size)
                .with_context(|| format!("{}: cannot open its outbox", key("kind")))?;
            if outbox.unreadable_lines > 0 {
                crate::log::warn(format_args!(
                    "notifier {name}: skipped {} unreadable line(s) of {}",
                    outbox.unreadable_lines,
                    path.display()
                ));
            }
            Ok(Arc::new(Notifier {
                name,
                receiver,
                route: Route::new(cfg.route.clone()),
                outbox: Mutex::new(outbox),
                wake: tokio::sync::Notify::new(),
                timeout: Duration::from_secs_f64(cfg.timeout.0),
                external_url: http.external_url(),
                metrics: metrics.clone(),
            }))
        })
        .collect()
}

impl Notifier {
    /// Accepts the events this notifier's route takes: on disk when this
    /// returns. Never waits on the receiver.
    pub fn push(&self, events: &[AlertEvent]) {
        let mine: Vec<AlertEvent> = events
            .iter()
            .filter(|e| self.route.matches(e))
            .cloned()
            .collect();
        if mine.is_empty() {
            return;
        }
        let mut outbox = self.outbox.lock().expect("outbox lock");
        match outbox.push(&mine, crate::clock::monotonic()) {
            Ok(p) => {
                for (result, n) in [("unchanged", p.unchanged), ("dropped", p.dropped)] {
                    if n > 0 {
                        self.metrics.notification(&self.name, result, n as u64);
                    }
                }
                if p.dropped > 0 {
                    crate::log::warn(format_args!(
                        "notifier {}: outbox full ({} undelivered), dropped {} notification(s)",
                        self.name,
                        outbox.depth(),
                        p.dropped
                    ));
                }
            }
            Err(e) => {
                // The disk refused: deliver from memory rather than lose
                // the page, and say so.
                self.metrics
                    .notification(&self.name, "journal_error", mine.len() as u64);
                crate::log::warn(format_args!("notifier {}: {e}", self.name));
            }
        }
        self.set_depth(outbox.depth());
        drop(outbox);
        self.wake.notify_one();
    }

    fn set_depth(&self, depth: usize) {
        self.metrics
            .queue_depth
            .get_or_create(&vec![("notifier", self.name.clone())])
            .set(depth as i64);
    }

    /// Notifications not yet delivered.
    pub fn depth(&self) -> usize {
        self.outbox.lock().expect("outbox lock").depth()
    }

    /// Delivers until the task is dropped.
    pub async fn run(self: Arc<Self>, client: reqwest::Client) {
        self.set_depth(self.depth());
        match &self.receiver {
            Receiver::Alertmanager { .. } => deliver::alertmanager_loop(&self, &client).await,
            _ => deliver::stream_loop(&self, &client).await,
        }
    }
}
