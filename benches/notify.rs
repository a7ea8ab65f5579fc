//! Notification benchmark: alert events through a notifier's durable outbox
//! (fsync'd journal) to a webhook on loopback, with a healthy receiver.
//! Reports the throughput (notifications per second, events pushed as fast
//! as possible) and the latency lbwatch adds from detection to the receiver
//! having the event (p50, p99), events pushed one at a time as they are in
//! production.
//!
//! `cargo bench --bench notify`; `cargo test --bench notify` runs a short
//! version that only shows it works.

#![allow(clippy::print_stdout, clippy::disallowed_methods)] // a benchmark reports, and reads the clock

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use lbwatch::model::{AlertEvent, AlertName, AlertState, Severity, Timestamp};

/// Arrival time of each event, by its server name.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver() -> (String, Arrivals) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let now = Instant::now();
                            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            let mut seen = seen.lock().unwrap();
                            for e in v["events"].as_array().unwrap() {
                                seen.insert(e["server"].as_str().unwrap().to_string(), now);
                            }
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (url, arrivals)
}

fn event(i: usize) -> AlertEvent {
    AlertEvent {
        ts: Timestamp::from_micros(1_795_000_000_000_000 + i as i64),
        state: AlertState::Firing,
        alert: AlertName::ServerDown,
        severity: Severity::Warning,
        target: "lb1".into(),
        pool: Some("web".into()),
        server: Some(format!("s{i}")),
        summary: Some(format!(
            "server s{i} of pool web is down by the LB's health check (1 of 12 servers down)"
        )),
        value: Some(1.0),
    }
}

async fn notifier(url: &str, dir: &std::path::Path) -> Arc<lbwatch::notify::Notifier> {
    std::fs::create_dir_all(dir).unwrap();
    let cfg_path = dir.join("bench.toml");
    std::fs::write(
        &cfg_path,
        format!("[[notifiers]]\nkind = \"webhook\"\nurl = \"{url}\"\nqueue_size = 1000000\n"),
    )
    .unwrap();
    let cfg = lbwatch::config::load_with_env(&cfg_path, []).unwrap();
    let metrics = lbwatch::metrics::Metrics::new();
    let n = lbwatch::notify::build(0, &cfg.notifiers[0], &cfg.http, dir, &metrics)
        .unwrap()
        .remove(0);
    tokio::spawn(n.clone().run(
        reqwest::Client::new(),
        tokio_util::sync::CancellationToken::new(),
    ));
    n
}

/// Waits until `n` events arrived; a benchmark whose receiver never gets
/// them fails after a minute, naming how many did, rather than waiting
/// forever.
async fn wait_for(arrivals: &Arrivals, n: usize) {
    let limit = Instant::now() + Duration::from_secs(60);
    loop {
        let got = arrivals.lock().unwrap().len();
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < limit,
            "notify bench: {got} of {n} notifications arrived within 60 s"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (burst, singles) = if quick { (200, 50) } else { (20_000, 2_000) };
    let dir = std::env::temp_dir().join(format!("lbwatch-bench-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // Throughput: a storm of events, each push its own fsync'd append.
    let (url, arrivals) = receiver().await;
    let n = notifier(&url, &dir.join("burst")).await;
    let start = Instant::now();
    for i in 0..burst {
        n.push(&[event(i).into()]);
    }
    wait_for(&arrivals, burst).await;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "notify/throughput: {burst} notifications through the outbox to a loopback webhook in {secs:.2} s = {:.0} notifications/s",
        burst as f64 / secs
    );

    // Latency: one event at a time, from the detector handing it over
    // (which includes the fsync) to the receiver having it.
    let (url, arrivals) = receiver().await;
    let n = notifier(&url, &dir.join("single")).await;
    let mut pushed = Vec::with_capacity(singles);
    for i in 0..singles {
        let at = Instant::now();
        n.push(&[event(i).into()]);
        pushed.push(at);
        wait_for(&arrivals, i + 1).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seen = arrivals.lock().unwrap();
    let mut ms: Vec<f64> = pushed
        .iter()
        .enumerate()
        .map(|(i, at)| seen[&format!("s{i}")].duration_since(*at).as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "notify/latency: detection to receiver over {singles} single events: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
