//! The delivery tasks: requests, retries and acknowledgements.

use std::time::Duration;

use super::{payload, Notifier, Receiver};
use crate::model::{AlertState, Timestamp};
use crate::secret::SecretUrl;

/// Events per request at most.
const BATCH_MAX: usize = 100;
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

/// Jittered exponential backoff: a random delay between half the bound and
/// the bound, so a
/// fleet of lbwatch replicas does not retry in lockstep.
struct Backoff {
    attempt: u32,
    /// Seeded from the system's entropy: replicas must not draw alike.
    rng: fastrand::Rng,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            attempt: 0,
            rng: fastrand::Rng::new(),
        }
    }

    fn next(&mut self) -> Duration {
        let bound = BACKOFF_START
            .saturating_mul(1 << self.attempt.min(10))
            .min(BACKOFF_MAX);
        self.attempt += 1;
        // Between half the bound and the bound.
        bound.mul_f64(0.5 + 0.5 * self.rng.f64())
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
        if retryable(status.as_u16()) {
            Err(SendError::Retry(why))
        } else {
            Err(SendError::Refused(why))
        }
    }
}

/// Whether a receiver that answered `status` may take the request later:
/// too many requests, a timeout, or a failure on its side. Any other 4xx
/// says the request itself is wrong; sending it again changes nothing.
fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// How many of the `pending` notifications (oldest first) go in one
/// request: those of one incident, so that the incident is one page
/// (updated as it grows), not one per alert; of events without an
/// incident, as many as fit for a webhook and one for PagerDuty
/// (`single`), whose events are one alert each.
fn batch_len(pending: &[super::outbox::Entry], single: bool) -> usize {
    let id = |e: &super::outbox::Entry| e.incident.as_ref().map(|n| n.id.clone());
    let Some(first) = pending.first() else {
        return 0;
    };
    let first = id(first);
    if first.is_none() && single {
        return 1;
    }
    pending.iter().take_while(|e| id(e) == first).count()
}

/// Webhook and PagerDuty: every event, in order, once each; grouped by
/// incident.
pub(super) async fn stream_loop(n: &Notifier, client: &reqwest::Client) {
    let mut backoff = Backoff::new();
    let mut failing_since: Option<String> = None;
    loop {
        let batch = {
            let pending = n.outbox.lock().expect("outbox lock").pending(BATCH_MAX);
            let single = matches!(n.receiver, Receiver::PagerDuty { .. });
            let take = batch_len(&pending, single);
            pending.into_iter().take(take).collect::<Vec<_>>()
        };
        let Some(last) = batch.last().map(|e| e.seq) else {
            n.wake.notified().await;
            continue;
        };
        let events: Vec<&crate::model::AlertEvent> = batch.iter().map(|e| &e.event).collect();
        // The incident as the last of these events left it.
        let note = batch.last().and_then(|e| e.incident.as_ref());
        let result = match &n.receiver {
            Receiver::Webhook {
                url,
                headers,
                secret,
            } => {
                let body = payload::webhook(&events, note, &n.external_url);
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
                let body = match note {
                    Some(note) => payload::pagerduty_incident(
                        note,
                        &events,
                        routing_key.expose(),
                        &n.external_url,
                    ),
                    None => {
                        let link = format!(
                            "{}/api/v1/pools?target={}",
                            n.external_url,
                            payload::query_escape(&events[0].target)
                        );
                        payload::pagerduty(events[0], routing_key.expose(), &link)
                    }
                };
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
                acknowledge(n, last);
            }
            Err(SendError::Refused(why)) => {
                tracing::error!("gave up on {count} notification(s): {why}");
                n.metrics.notification(&n.name, "failed", count);
                acknowledge(n, last);
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

/// Marks everything up to `seq` done. The journal write (and, now and
/// then, its rewrite) waits on the disk: the worker hands its other tasks
/// to another thread meanwhile. It is not a detached blocking task: the
/// delivery task ends only once the write has, and a reload opens the same
/// journal right after.
fn acknowledge(n: &Notifier, seq: u64) {
    tokio::task::block_in_place(|| n.acknowledge(seq));
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
    let mut backoff = Backoff::new();
    let mut failing_since: Option<String> = None;
    loop {
        let (body, last, count, accepted) = {
            let outbox = n.outbox.lock().expect("outbox lock");
            let (body, count) = alert_set(&outbox, crate::clock::now(), *resend, &n.external_url);
            let pending = outbox.pending(usize::MAX);
            (
                body,
                pending.last().map(|e| e.seq),
                count,
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
                    acknowledge(n, seq);
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

/// What Alertmanager is told at `now`: every alert firing, and those
/// resolved in the last `RESOLVED_RESEND`, leased for 4 resend intervals;
/// `None` when there is nothing to say. Also how many alerts that is.
fn alert_set(
    outbox: &super::outbox::Outbox,
    now: Timestamp,
    resend: Duration,
    external_url: &str,
) -> (Option<Vec<u8>>, u64) {
    let lease = Timestamp::from_micros(now.micros() + (resend.as_micros() as i64) * 4);
    let alerts: Vec<_> = outbox
        .latest()
        .filter(|t| {
            t.event.state == AlertState::Firing || now.secs_since(t.event.ts) <= RESOLVED_RESEND
        })
        .collect();
    let body = (!alerts.is_empty()).then(|| payload::alertmanager(&alerts, lease, external_url));
    (body, alerts.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::tests::{event, notices};

    #[test]
    fn alertmanager_hears_of_firing_and_recent_resolves_with_a_lease_of_four_intervals() {
        let dir = std::env::temp_dir().join(format!("lbwatch-deliver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("am.outbox");
        let _ = std::fs::remove_file(&path);
        let mut outbox = super::super::outbox::Outbox::open(&path, 100).unwrap();
        let t0 = 1_800_000_000;
        let now = Timestamp::from_micros((t0 + 3600) * 1_000_000);
        let at = crate::clock::monotonic();
        let (empty, none) = alert_set(&outbox, now, Duration::from_secs(60), "http://h");
        assert_eq!((empty, none), (None, 0), "nothing to say is no request");
        let events = [
            event(AlertState::Firing, "web-1", t0),
            event(AlertState::Firing, "web-2", t0),
            event(AlertState::Resolved, "web-2", t0 + 3600 - 600),
            event(AlertState::Firing, "web-3", t0),
            event(AlertState::Resolved, "web-3", t0 + 3600 - 1200),
        ];
        outbox.push(&notices(&events), at).unwrap();
        let (body, count) = alert_set(&outbox, now, Duration::from_secs(60), "http://h");
        let body: serde_json::Value = serde_json::from_slice(&body.unwrap()).unwrap();
        // web-3 resolved 20 minutes ago: past the 15 it is re-sent for.
        assert_eq!(count, 2);
        let servers: Vec<&str> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["labels"]["server"].as_str().unwrap())
            .collect();
        assert_eq!(servers, ["web-1", "web-2"]);
        let lease = Timestamp::from_micros(now.micros() + 240 * 1_000_000);
        let firing = &body.as_array().unwrap()[0];
        assert_eq!(firing["endsAt"], serde_json::json!(lease));
        let resolved = &body.as_array().unwrap()[1];
        assert_eq!(
            resolved["endsAt"],
            serde_json::json!(Timestamp::from_micros((t0 + 3000) * 1_000_000))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_request_carries_the_events_of_one_incident() {
        let entry = |seq: u64, incident: Option<&str>| super::super::outbox::Entry {
            seq,
            event: event(AlertState::Firing, &format!("web-{seq}"), 1),
            incident: incident.map(|id| crate::incident::notice::IncidentNote::sample(id, 1)),
            accepted: None,
        };
        let pending = [
            entry(1, Some("a")),
            entry(2, Some("a")),
            entry(3, Some("a")),
            entry(4, None),
            entry(5, None),
            entry(6, Some("b")),
        ];
        for single in [true, false] {
            assert_eq!(batch_len(&pending, single), 3, "one incident, one request");
            assert_eq!(batch_len(&pending[5..], single), 1);
            assert_eq!(batch_len(&[], single), 0);
        }
        assert_eq!(batch_len(&pending[3..], true), 1, "PagerDuty: one alert");
        assert_eq!(batch_len(&pending[3..], false), 2, "a webhook: all of them");
    }

    #[test]
    fn only_throttling_timeouts_and_server_errors_are_retried() {
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(retryable(s), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 413, 422] {
            assert!(!retryable(s), "{s}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_and_starts_over_on_reset() {
        let mut b = Backoff::new();
        let mut bound = BACKOFF_START;
        for _ in 0..20 {
            let d = b.next();
            assert!(
                d >= bound / 2 && d <= bound,
                "{d:?} not within half of {bound:?}"
            );
            bound = (bound * 2).min(BACKOFF_MAX);
        }
        assert_eq!(bound, BACKOFF_MAX);
        b.reset();
        assert!(b.next() <= BACKOFF_START);
        // Two senders do not wait alike.
        let (mut x, mut y) = (Backoff::new(), Backoff::new());
        let same = (0..8).filter(|_| x.next() == y.next()).count();
        assert!(same < 8, "two backoffs drew the same delays");
    }
}
