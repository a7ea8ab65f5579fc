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
//! signature), `pagerduty` (Events API v2, one event per request: one page
//! per incident, re-triggered as it grows, resolved when none of its alerts
//! fires; an alert outside any incident is a page of its own),
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
use tokio_util::sync::CancellationToken;

use crate::config::{HttpConfig, NotifierConfig};
use crate::metrics::Metrics;
use crate::secret::{read_secret, Scrubber, Secret, SecretUrl};
pub use outbox::Notice;
use outbox::Outbox;
use route::Route;

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Where a notifier delivers.
#[derive(Debug)]
enum Receiver {
    Webhook {
        url: SecretUrl,
        /// Values may be credentials (`Authorization`): secrets too.
        headers: Vec<(String, Secret)>,
        secret: Option<Secret>,
    },
    PagerDuty {
        url: SecretUrl,
        routing_key: Secret,
    },
    Alertmanager {
        url: SecretUrl,
        resend: Duration,
    },
}

impl Receiver {
    /// Every secret of this receiver, to cut out of what it answers.
    fn scrubber(&self) -> Scrubber {
        match self {
            Receiver::Webhook {
                url,
                headers,
                secret,
            } => headers
                .iter()
                .map(|(_, v)| v)
                .chain(secret)
                .fold(Scrubber::default().url(url.expose()), |s, v| {
                    s.header(v.expose())
                }),
            Receiver::PagerDuty { url, routing_key } => Scrubber::default()
                .url(url.expose())
                .secret(routing_key.expose()),
            Receiver::Alertmanager { url, .. } => Scrubber::default().url(url.expose()),
        }
    }
}

/// One receiver with its outbox.
#[derive(Debug)]
pub struct Notifier {
    pub name: String,
    /// `deliver{notifier=...}`: every log line of its delivery.
    span: tracing::Span,
    receiver: Receiver,
    /// Cuts the receiver's secrets out of its answers before they are logged.
    scrubber: Scrubber,
    route: Route,
    outbox: Mutex<Outbox>,
    wake: tokio::sync::Notify,
    timeout: Duration,
    external_url: String,
    metrics: Arc<Metrics>,
}

/// The receiver URLs of a `[[notifiers]]` entry: written in the file, or
/// read from its `url_file` or `url_env` (several separated by white space
/// or commas) and checked there, the errors naming the key, never the URL.
fn receiver_urls(
    cfg: &NotifierConfig,
    key: &dyn Fn(&str) -> String,
) -> anyhow::Result<Vec<SecretUrl>> {
    let c = cfg.common();
    let which = if c.url_file.is_some() {
        "url_file"
    } else {
        "url_env"
    };
    let Some(text) = read_secret(c.url_file, c.url_env, &key(which))? else {
        return Ok(cfg.receivers());
    };
    let urls: Vec<SecretUrl> = text
        .expose()
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|u| !u.is_empty())
        .map(SecretUrl::new)
        .collect();
    for u in &urls {
        match crate::endpoint::Endpoint::parse(u.expose()) {
            Ok(crate::endpoint::Endpoint::Http(_)) => {}
            Ok(_) => anyhow::bail!("{}: holds {u}, not an http(s):// URL", key(which)),
            Err(why) => anyhow::bail!("{}: holds an invalid URL ({u}): {why}", key(which)),
        }
    }
    if urls.len() > 1 && !matches!(cfg, NotifierConfig::Alertmanager(_)) {
        anyhow::bail!(
            "{}: holds {} URLs, {} takes one",
            key(which),
            urls.len(),
            cfg.kind()
        );
    }
    Ok(urls)
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
    let urls = receiver_urls(cfg, &key)?;
    let receivers: Vec<(String, Receiver)> = match cfg {
        NotifierConfig::Webhook(w) => vec![(
            name.clone(),
            Receiver::Webhook {
                url: urls.into_iter().next().context(key("url"))?,
                headers: w
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                secret: read_secret(
                    w.secret_file.as_ref(),
                    w.secret_env.as_ref(),
                    &key("secret"),
                )?,
            },
        )],
        NotifierConfig::Pagerduty(p) => vec![(
            name.clone(),
            Receiver::PagerDuty {
                url: urls
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| SecretUrl::new(PAGERDUTY_URL)),
                routing_key: read_secret(
                    p.routing_key_file.as_ref(),
                    p.routing_key_env.as_ref(),
                    &key("routing_key"),
                )?
                .context(format!("{}: missing", key("routing_key_file")))?,
            },
        )],
        NotifierConfig::Alertmanager(a) => {
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
                            url: SecretUrl::new(url.expose().trim_end_matches('/')),
                            resend: Duration::from_secs_f64(a.resend_interval.0),
                        },
                    )
                })
                .collect()
        }
    };
    receivers
        .into_iter()
        .map(|(name, receiver)| {
            let path = state_dir.join("outbox").join(format!("{name}.jsonl"));
            let outbox = Outbox::open(&path, cfg.common().queue_size)
                .with_context(|| format!("{}: cannot open its outbox", key("kind")))?;
            if outbox.unreadable_lines > 0 {
                tracing::warn!(
                    notifier = %name,
                    "skipped {} unreadable line(s) of {}",
                    outbox.unreadable_lines,
                    path.display()
                );
            }
            Ok(Arc::new(Notifier {
                span: tracing::info_span!("deliver", notifier = %name),
                name,
                scrubber: receiver.scrubber(),
                receiver,
                route: Route::new(cfg.common().route.clone()),
                outbox: Mutex::new(outbox),
                wake: tokio::sync::Notify::new(),
                timeout: Duration::from_secs_f64(cfg.common().timeout.0),
                external_url: http.external_url(),
                metrics: metrics.clone(),
            }))
        })
        .collect()
}

impl Notifier {
    /// Accepts the events this notifier's route takes: on disk when this
    /// returns. Never waits on the receiver.
    pub fn push(&self, notices: &[Notice]) {
        let mine: Vec<Notice> = notices
            .iter()
            .filter(|n| self.route.matches(&n.event))
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
                    self.span.in_scope(|| {
                        tracing::error!(
                            "outbox full ({} undelivered), dropped {} notification(s)",
                            outbox.depth(),
                            p.dropped
                        )
                    });
                }
            }
            Err(e) => {
                // The disk refused: deliver from memory rather than lose
                // the page, and say so.
                self.metrics
                    .notification(&self.name, "journal_error", mine.len() as u64);
                self.span.in_scope(|| tracing::error!("{e}"));
            }
        }
        self.set_depth(outbox.depth());
        drop(outbox);
        self.wake.notify_one();
    }

    /// Whether this notifier's route takes an alert of `target`'s incident:
    /// what it is told of an incident counts only those.
    pub fn admits(&self, target: &str, a: &crate::incident::AlertRecord) -> bool {
        self.route
            .admits(a.alert, a.severity, target, a.pool.as_deref())
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

    /// Delivers until `stop`. A delivery cut short stays in the outbox and
    /// is sent again by the next run.
    pub async fn run(self: Arc<Self>, client: reqwest::Client, stop: CancellationToken) {
        use tracing::Instrument as _;
        self.set_depth(self.depth());
        let span = self.span.clone();
        let deliver = async {
            match &self.receiver {
                Receiver::Alertmanager { .. } => deliver::alertmanager_loop(&self, &client).await,
                _ => deliver::stream_loop(&self, &client).await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => {}
            () = deliver.instrument(span) => {}
        }
    }
}
