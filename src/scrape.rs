//! Scraping one target: its endpoint and credentials read once, then a
//! fetch and a parse every interval, each sample handed to the detector
//! loop (or to `verify`'s staging run) over a bounded channel.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::TargetConfig;
use crate::fetch::{Endpoint, Fetcher};
use crate::metrics::Metrics;
use crate::model::{FrontendStat, Sample, SampleBody, Timestamp};

self_cell::self_cell!(
    /// A sample with the page its names borrow from (HAProxy's CSV rows),
    /// instead of copies of them: two allocations a row that a fleet of
    /// 100,000 servers would make every second. A sample that borrows
    /// nothing holds an empty page.
    struct PageSample {
        owner: Vec<u8>,
        #[covariant]
        dependent: Sample,
    }
    impl {Debug}
);

/// A sample on its way to the detector loop, holding its slot among the
/// parsed samples waiting (`Handoff`) until the loop is done with it.
#[derive(Debug)]
pub struct Scraped {
    cell: PageSample,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Scraped {
    /// A sample that borrows from no page.
    pub fn owned(sample: Sample<'static>) -> Self {
        Scraped {
            cell: PageSample::new(Vec::new(), |_| sample),
            _slot: None,
        }
    }

    pub fn sample(&self) -> &Sample<'_> {
        self.cell.borrow_dependent()
    }
}

/// Parsed samples that may wait for the detector loop at once. Targets
/// of one phase scrape together, and a page's rows take about
/// twice the page's room: a fleet whose samples all waited parsed would
/// hold every target's rows at once (40 MB at 100,000 servers). Past this
/// many, a task waits with its page fetched but not parsed. Enough to keep
/// the loop busy while the other core parses.
pub const PARSED_WAITING: usize = 64;

/// How scrape tasks hand samples to the detector loop: a bounded channel,
/// and a slot among the `PARSED_WAITING` for each parsed sample in it.
#[derive(Debug, Clone)]
pub struct Handoff {
    tx: mpsc::Sender<Scraped>,
    slots: Arc<Semaphore>,
}

impl Handoff {
    /// The handoff, and the detector loop's end of it.
    pub fn channel() -> (Handoff, mpsc::Receiver<Scraped>) {
        let (tx, rx) = mpsc::channel(1024);
        let slots = Arc::new(Semaphore::new(PARSED_WAITING));
        (Handoff { tx, slots }, rx)
    }

    /// A slot for one more parsed sample, once one is free.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        // The semaphore is never closed.
        self.slots.clone().acquire_owned().await.ok()
    }
}

/// A target ready to scrape.
pub struct Scraper {
    pub name: String,
    parse: crate::source::BoxedParser,
    fetcher: Fetcher,
    interval: Duration,
    /// Cuts the URL's and password's secrets out of errors: a login page
    /// or a proxy's error page may echo them.
    scrubber: crate::secret::Scrubber,
}

pub fn scraper(i: usize, t: &TargetConfig, client: &reqwest::Client) -> anyhow::Result<Scraper> {
    let password = crate::secret::read_secret(
        t.password_file.as_ref(),
        t.password_env.as_ref(),
        &format!("targets[{i}].password"),
    )?;
    let endpoint = target_endpoint(i, t)?;
    let mut scrubber = crate::secret::Scrubber::default();
    if let Endpoint::Http(url) = &endpoint {
        scrubber = scrubber.url(url);
    }
    if let Some(p) = &password {
        scrubber = scrubber.secret(p.expose());
        if let Some(user) = &t.username {
            scrubber = scrubber.basic_auth(user, p.expose());
        }
    }
    let auth = t.username.clone().map(|u| (u, password));
    let client = match &t.tls {
        None => client.clone(),
        Some(tls) => {
            if tls.insecure_skip_verify {
                tracing::warn!(
                    target = %t.name,
                    "targets[{i}].tls.insecure_skip_verify: the stats endpoint's certificate is NOT checked; anyone in between can feed lbwatch its stats"
                );
            }
            Fetcher::tls_client(tls, &format!("targets[{i}].tls"))?
        }
    };
    let fetcher = Fetcher::new(
        endpoint,
        client,
        Duration::from_secs_f64(t.timeout().0),
        t.max_response_bytes,
        auth,
    );
    let parse = t.format.parser();
    Ok(Scraper {
        name: t.name.clone(),
        parse,
        fetcher,
        interval: Duration::from_secs_f64(t.interval.0),
        scrubber,
    })
}

/// Where target `i` is: its `url`, or the secret one of `url_file` or
/// `url_env` (errors name the key, never the URL).
fn target_endpoint(i: usize, t: &TargetConfig) -> anyhow::Result<Endpoint> {
    let which = if t.url_file.is_some() {
        "url_file"
    } else {
        "url_env"
    };
    let key = format!("targets[{i}].{which}");
    match crate::secret::read_secret(t.url_file.as_ref(), t.url_env.as_ref(), &key)? {
        None => {
            Endpoint::parse(t.url.expose()).map_err(|e| anyhow::anyhow!("targets[{i}].url: {e}"))
        }
        Some(url) => Endpoint::parse(url.expose().trim()).map_err(|e| {
            anyhow::anyhow!(
                "{key}: holds an invalid URL ({}): {e}",
                crate::secret::redact(url.expose())
            )
        }),
    }
}

/// Where in its interval a target's scrapes start, as a part of the
/// interval: one of `STEPS` steps over its first `SPREAD`, drawn once, so
/// that its scrapes stay an interval apart. A fleet's targets tick
/// together: fetched within a twentieth of the interval, their pages all
/// waited for the detector at once. Steps rather than any time, so that
/// the workers wake for a batch of scrapes, not for each (spread over any
/// time, the fleet benchmark took 3 points of a core more).
fn phase(rng: &mut fastrand::Rng) -> f64 {
    SPREAD * f64::from(rng.u32(0..STEPS)) / f64::from(STEPS)
}

const SPREAD: f64 = 0.25;
const STEPS: u32 = 10;

/// Scrapes `s` every interval until `stop`, handing each sample to the
/// detector loop. `phased`: each scrape at the target's phase of its
/// interval, the first one too (a fleet's first pages all arrive at once
/// otherwise); else the first at once (`verify`'s short staging run).
pub async fn scrape_loop(
    s: Scraper,
    to: Handoff,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    phased: bool,
) {
    // Scheduling only (the detector never sees it): seeded by the clock so
    // replicas and targets spread out.
    let mut rng = fastrand::Rng::new();
    let part = if phased { phase(&mut rng) } else { 0.0 };
    let first = tokio::time::Instant::now() + s.interval.mul_f64(part);
    let mut ticker = tokio::time::interval_at(first, s.interval);
    // A scrape longer than its interval (a timeout, the detector behind)
    // skips the ticks it missed and keeps the phase.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut said_empty = false;
    loop {
        let sample = tokio::select! {
            () = stop.cancelled() => return,
            sample = async {
                ticker.tick().await;
                // Never more than one scrape in flight: the next tick waits.
                scrape(&s, &to, &metrics, &mut said_empty).await
            } => sample,
        };
        // A full channel (the detector behind) must not keep this task
        // from stopping: a reload or shutdown waits for it.
        tokio::select! {
            () = stop.cancelled() => return,
            sent = to.tx.send(sample) => if sent.is_err() { return },
        }
    }
}

/// One scrape of `s`: its servers, or why not. The time it takes leaves
/// out the wait for a slot: that is the detector's delay, not the scrape's.
async fn scrape(s: &Scraper, to: &Handoff, metrics: &Metrics, said_empty: &mut bool) -> Scraped {
    let ts = crate::clock::now();
    let started = crate::clock::monotonic();
    let page = s.fetcher.fetch().await;
    let fetching = started.elapsed();
    let (scraped, parsing) = match page {
        Ok(mut page) => {
            // A body grown chunk by chunk may have up to twice its size
            // reserved: trimmed before it waits.
            if page.capacity() > page.len() + page.len() / 4 {
                page.shrink_to_fit();
            }
            let slot = to.slot().await;
            let started = crate::clock::monotonic();
            let cell = parsed(s, ts, page, metrics, said_empty);
            (
                Scraped {
                    _slot: slot,
                    ..cell
                },
                started.elapsed(),
            )
        }
        Err(e) => {
            count(s, metrics, "fetch_error");
            let why = s.scrubber.scrub(&e.to_string());
            let owned = Scraped::owned(sample(ts, s, SampleBody::Error(why.into()), Vec::new()));
            (owned, Duration::ZERO)
        }
    };
    Metrics::time(&metrics.scrape_duration, fetching + parsing);
    scraped
}

/// The sample of a page. It keeps the page only when its names borrow
/// from it: a page that failed to parse, or a format whose names are
/// copies, is dropped at once rather than held while the sample waits.
fn parsed(
    s: &Scraper,
    ts: Timestamp,
    page: Vec<u8>,
    metrics: &Metrics,
    said_empty: &mut bool,
) -> Scraped {
    let kept = PageSample::try_new(page, |page| match (s.parse)(page) {
        Ok(parsed) => {
            count(s, metrics, "ok");
            nothing_to_watch(&s.name, &parsed, metrics, said_empty);
            if !parsed.bad_rows.is_empty() {
                metrics.count_n(
                    &metrics.bad_rows,
                    &[("target", &s.name)],
                    parsed.bad_rows.len() as u64,
                );
            }
            if parsed.borrows() {
                Ok(sample(
                    ts,
                    s,
                    SampleBody::Servers(parsed.servers),
                    parsed.frontends,
                ))
            } else {
                let owned = parsed.into_owned();
                Err(sample(
                    ts,
                    s,
                    SampleBody::Servers(owned.servers),
                    owned.frontends,
                ))
            }
        }
        Err(e) => {
            count(s, metrics, "parse_error");
            let why = s.scrubber.scrub(&format!("parsing the stats: {e}"));
            Err(sample(ts, s, SampleBody::Error(why.into()), Vec::new()))
        }
    });
    match kept {
        Ok(cell) => Scraped { cell, _slot: None },
        Err(sample) => Scraped::owned(sample),
    }
}

fn count(s: &Scraper, metrics: &Metrics, result: &str) {
    metrics.count(&metrics.scrapes, &[("target", &s.name), ("result", result)]);
}

fn sample<'a>(
    ts: Timestamp,
    s: &Scraper,
    body: SampleBody<'a>,
    frontends: Vec<FrontendStat<'a>>,
) -> Sample<'a> {
    Sample {
        ts,
        target: s.name.clone().into(),
        body,
        frontends,
    }
}

/// Counts what a page holds; a page with no pool at all (a valid page of an
/// LB with no backends, or the wrong URL) is said once, not every scrape.
fn nothing_to_watch(
    target: &str,
    parsed: &crate::source::Parsed<'_>,
    metrics: &Metrics,
    said: &mut bool,
) {
    let mut pools: Vec<&str> = parsed.servers.iter().map(|s| s.pool.as_ref()).collect();
    // Pages list a pool's servers together: most repeats go before the sort.
    pools.dedup();
    pools.sort_unstable();
    pools.dedup();
    metrics.stats_size(target, pools.len(), parsed.servers.len());
    if parsed.servers.is_empty() && !*said {
        tracing::warn!(
            "its stats list no pool with a server: nothing to watch (check the url and kind, and that the load balancer has backends)"
        );
    }
    *said = parsed.servers.is_empty();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target's phase is one of ten steps over the first quarter of its
    /// interval, each as likely.
    #[test]
    fn phases_are_steps_over_a_quarter_of_the_interval() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let p = phase(&mut rng);
            let step = p / 0.025;
            assert!((step - step.round()).abs() < 1e-9, "{p}");
            seen[step.round() as usize] += 1;
        }
        assert!(seen.iter().all(|n| (900..1100).contains(n)), "{seen:?}");
    }

    /// An HAProxy stats page of one pool, served on loopback until `stop`.
    async fn stats_page(stop: CancellationToken) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/stats;csv", listener.local_addr().unwrap());
        let page = "# pxname,svname,stot,hrsp_5xx,status,weight,act,bck,type,\n\
                    app,web1,10,0,UP,1,1,0,2,\napp,web2,10,0,UP,1,1,0,2,\n";
        tokio::spawn(crate::http::serve(
            listener,
            move |_: &crate::http::Request| crate::http::Reply::ok("text/plain", page.into()),
            crate::http::Guard::default(),
            stop,
        ));
        url
    }

    /// A real scrape task, every 10 ms, whose samples nobody takes: it
    /// parses `PARSED_WAITING` of them and then waits, its next page
    /// fetched but not parsed, until the loop is done with one.
    #[tokio::test]
    async fn a_scrape_task_stops_parsing_while_enough_samples_wait() {
        let stop = CancellationToken::new();
        let url = stats_page(stop.clone()).await;
        let t: TargetConfig = serde_json::from_value(serde_json::json!(
            {"name": "lb", "kind": "haproxy", "url": url, "interval": "10ms"}
        ))
        .unwrap();
        let s = scraper(0, &t, &Fetcher::shared_client().unwrap()).unwrap();
        let (to, mut rx) = Handoff::channel();
        let metrics = Metrics::new();
        tokio::spawn(scrape_loop(s, to, metrics, stop.clone(), true));
        let full = |rx: &mpsc::Receiver<Scraped>| rx.len() >= PARSED_WAITING;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !full(&rx) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rx.len(), PARSED_WAITING, "samples waiting");
        // Ten intervals more: still no more than that.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rx.len(), PARSED_WAITING, "samples waiting, later");
        let first = rx.recv().await.expect("a sample");
        assert!(
            matches!(first.sample().body, SampleBody::Servers(ref rows) if rows.len() == 2),
            "{first:?}"
        );
        drop(first);
        // The freed slot goes to the page fetched and waiting.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while rx.len() < PARSED_WAITING && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(rx.len(), PARSED_WAITING, "the freed slot is taken");
        stop.cancel();
    }
}
