//! The delivery tasks: requests, retries and acknowledgements.

use std::time::Duration;

use super::{payload, Notifier, Receiver};
use crate::model::{AlertState, Timestamp};
use crate::secret::SecretUrl;

/// Webhook events per request.
const WEBHOOK_BATCH: usize = 100;
/// First retry delay, doubled per attempt up to `BACKOFF_MAX`.
const BACKOFF_START: Duration = Duration::from_millis(250);
/// Short enough that a receiver back from an outage gets its backlog within
/// seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Prometheus re-sends resolved alerts this long, so an Alertmanager that
/// missed the resolve (restarting, partitioned) still learns of it.
const RESOLVED_RESEND: f64 = 15.0 * 60.0;

/// Why a request did not deliver.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// Worth retrying: connection refused or reset, timeout, 429, 5xx.
    #[error("{0}")]
    Retry(String),
    /// The receiver refused the request for good (4xx other than 429).
    #[error("{0}")]
    Refused(String),
}

/// Full-jitter backoff: a random delay up to the exponential bound, so a
/// fleet of lbwatch replicas does not retry in lockstep.
struct Backoff {
    attempt: u32,
    rng: u64,
}

impl Backoff {
    fn new(seed: &str) -> Self {
        let t = crate::clock::now().micros() as u64;
        let rng = seed.bytes().fold(t | 1, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3) | 1
        });
        Backoff { attempt: 0, rng }
    }

    fn next(&mut self) -> Duration {
        let bound = BACKOFF_START
            .saturating_mul(1 << self.attempt.min(10))
            .min(BACKOFF_MAX);
        self.attempt += 1;
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        // Between half the bound and the bound.
        bound.mul_f64(0.5 + 0.5 * (self.rng % 1000) as f64 / 1000.0)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Notifier {
    /// One POST; the error names the receiver (credentials redacted) and
    /// what it answered.
    async fn post(
        &self,
        client: &reqwest::Client,
        url: &SecretUrl,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> Result<(), SendError> {
        let shown = url.shown();
        let mut req = client
            .post(url.expose())
            .timeout(self.timeout)
            .header("content-type", "application/json");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            // `without_url`: the URL may hold credentials.
            Err(e) if e.is_timeout() => {
                return Err(SendError::Retry(format!(
                    "{shown}: no answer within {:?}",
                    self.timeout
                )))
            }
            Err(e) => {
                let e = e.without_url();
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why = format!("{why}: {s}");
                    source = s.source();
                }
                return Err(SendError::Retry(format!("{shown}: {why}")));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = self.scrubber.scrub(&resp.text().await.unwrap_or_default());
        let excerpt: String = text.chars().take(300).collect();
        let why = format!("{shown} answered {status}: {}", excerpt.trim());
        if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
            Err(SendError::Retry(why))
        } else {
            Err(SendError::Refused(why))
        }
    }
}

/// Webhook and PagerDuty: every event, in order, once each.
pub(super) async fn stream_loop(n: &Notifier, client: &reqwest::Client) {
    let mut backoff = Backoff::new(&n.name);
    let mut failing_since: Option<String> = None;
    loop {
        let batch_size = match n.receiver {
            Receiver::Webhook { .. } => WEBHOOK_BATCH,
            _ => 1,
        };
        let batch = n.outbox.lock().expect("outbox lock").pending(batch_size);
        let Some(last) = batch.last().map(|e| e.seq) else {
            n.wake.notified().await;
            continue;
        };
        let events: Vec<&crate::model::AlertEvent> = batch.iter().map(|e| &e.event).collect();
        let result = match &n.receiver {
            Receiver::Webhook {
                url,
                headers,
                secret,
            } => {
                let body = payload::webhook(&events);
                let signature = secret
                    .as_ref()
                    .map(|s| payload::signature(s.expose().as_bytes(), &body));
                let mut extra: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.expose()))
                    .collect();
                if let Some(sig) = &signature {
                    extra.push(("x-lbwatch-signature", sig));
                }
                n.post(client, url, body, &extra).await
            }
            Receiver::PagerDuty { url, routing_key } => {
                let link = format!(
                    "{}/api/v1/pools?target={}",
                    n.external_url,
                    payload::query_escape(&events[0].target)
                );
                let body = payload::pagerduty(events[0], routing_key.expose(), &link);
                n.post(client, url, body, &[]).await
            }
            Receiver::Alertmanager { .. } => unreachable!("alertmanager has its own loop"),
        };
        let count = batch.len() as u64;
        match result {
            Ok(()) => {
                if let Some(why) = failing_since.take() {
                    tracing::info!(
                        "delivering again after {} attempt(s) (last error: {why})",
                        backoff.attempt
                    );
                }
                backoff.reset();
                n.metrics.notification(&n.name, "delivered", count);
                let now = crate::clock::monotonic();
                for e in &batch {
                    if let Some(at) = e.accepted {
                        crate::metrics::Metrics::time(
                            &n.metrics.notification_latency,
                            now.duration_since(at),
                        );
                    }
                }
                n.acknowledge(last);
            }
            Err(SendError::Refused(why)) => {
                tracing::error!("gave up on {count} notification(s): {why}");
                n.metrics.notification(&n.name, "failed", count);
                n.acknowledge(last);
            }
            Err(SendError::Retry(why)) => {
                n.metrics.notification(&n.name, "retried", count);
                if failing_since.is_none() {
                    tracing::warn!("{why}; retrying ({} waiting)", n.depth());
                }
                failing_since = Some(why);
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
}

impl Notifier {
    fn acknowledge(&self, seq: u64) {
        let mut outbox = self.outbox.lock().expect("outbox lock");
        if let Err(e) = outbox.ack(seq) {
            // Worst case the notification is sent again after a restart.
            self.span.in_scope(|| tracing::warn!("{e}"));
        }
        self.set_depth(outbox.depth());
    }
}

/// Alertmanager: the current set of alerts, sent on every change and
/// re-sent every `resend` interval with a lease of 4 intervals, so an
/// Alertmanager that restarted empty has them back within one interval, and
/// an lbwatch that died lets its alerts expire instead of firing forever.
pub(super) async fn alertmanager_loop(n: &Notifier, client: &reqwest::Client) {
    let Receiver::Alertmanager { url, resend } = &n.receiver else {
        return;
    };
    let endpoint = SecretUrl::new(&format!("{}/api/v2/alerts", url.expose()));
    let mut backoff = Backoff::new(&n.name);
    let mut failing_since: Option<String> = None;
    loop {
        let (body, last, count, accepted) = {
            let outbox = n.outbox.lock().expect("outbox lock");
            let now = crate::clock::now();
            let lease = Timestamp::from_micros(now.micros() + (resend.as_micros() as i64) * 4);
            let alerts: Vec<_> = outbox
                .latest()
                .filter(|(e, _)| {
                    e.state == AlertState::Firing || now.secs_since(e.ts) <= RESOLVED_RESEND
                })
                .collect();
            let pending = outbox.pending(usize::MAX);
            (
                (!alerts.is_empty())
                    .then(|| payload::alertmanager(&alerts, lease, &n.external_url)),
                pending.last().map(|e| e.seq),
                alerts.len() as u64,
                pending
                    .iter()
                    .filter_map(|e| e.accepted)
                    .collect::<Vec<_>>(),
            )
        };
        let result = match body {
            Some(body) => n.post(client, &endpoint, body, &[]).await,
            None => Ok(()),
        };
        match result {
            Ok(()) => {
                if let Some(why) = failing_since.take() {
                    tracing::info!("delivering again (last error: {why})");
                }
                backoff.reset();
                if count > 0 {
                    n.metrics.notification(&n.name, "delivered", count);
                }
                let now = crate::clock::monotonic();
                for at in accepted {
                    crate::metrics::Metrics::time(
                        &n.metrics.notification_latency,
                        now.duration_since(at),
                    );
                }
                if let Some(seq) = last {
                    n.acknowledge(seq);
                }
                let next_resend = tokio::time::Instant::now() + *resend;
                tokio::select! {
                    () = n.wake.notified() => {}
                    () = tokio::time::sleep_until(next_resend) => {}
                }
            }
            Err(e) => {
                let why = e.to_string();
                n.metrics.notification(&n.name, "retried", count);
                if failing_since.is_none() {
                    tracing::warn!("{why}; retrying");
                }
                failing_since = Some(why);
                // A refused request is retried too: the set is re-sent in
                // full each time, so the next attempt may well be accepted.
                let wait = backoff.next();
                tokio::select! {
                    () = n.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
