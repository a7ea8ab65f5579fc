//! Throughput benchmarks, single-threaded (one core):
//!
//! * detector: `Detector::observe` over samples already in memory, in
//!   server-samples per second;
//! * HAProxy stats CSV parsing: a 10,000-server page built from rows of the
//!   real HAProxy 2.6, in MB/s and servers/s;
//! * replay: `lbwatch replay` end to end (JSON parsing, detection, event
//!   output) on the largest recorded scenario, in MB/s and server-samples/s,
//!   from memory and from the gzip'd file.
//!
//! Run with `cargo bench`. Each figure is the best of several rounds, so a
//! busy neighbour on the machine lowers it at most for one round.

#![allow(clippy::print_stdout, clippy::disallowed_methods)] // a benchmark reports, and reads the clock

use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use lbwatch::detect::{DetectConfig, Detector};
use lbwatch::model::{Sample, SampleBody};

const ROUNDS: usize = 5;

fn best(mut round: impl FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| round()).min().unwrap()
}

/// What `lbwatch replay` runs: the detector, its events as JSON lines
/// (thrown away here).
fn replay_pipeline() -> lbwatch::pipeline::Pipeline {
    use lbwatch::pipeline::{EventWriter, Output, Pipeline};
    Pipeline::new(Detector::new(DetectConfig::default())).with(EventWriter::new(
        io::sink(),
        Output::Json,
        false,
    ))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let quick = !std::env::args().any(|a| a == "--bench");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios/healthy_edge_1s.samples.jsonl.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    if quick {
        text.truncate(text[..200_000].rfind('\n').unwrap() + 1);
    }
    let samples: Vec<Sample> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let server_samples: usize = samples
        .iter()
        .map(|s| match &s.body {
            SampleBody::Servers(v) => v.len(),
            SampleBody::Error(_) => 0,
        })
        .sum();
    let mb = text.len() as f64 / 1e6;
    println!(
        "input: {} ({} samples, {server_samples} server-samples, {mb:.1} MB of JSON)",
        path.file_name().unwrap().to_string_lossy(),
        samples.len()
    );

    let t = best(|| {
        let mut d = Detector::new(DetectConfig::default());
        let mut out = Vec::new();
        let start = Instant::now();
        for s in &samples {
            d.observe_into(s, &mut out);
        }
        std::hint::black_box(&out);
        start.elapsed()
    });
    println!(
        "detector: {:.1} M server-samples/s ({:.0} ns per server-sample)",
        server_samples as f64 / t.as_secs_f64() / 1e6,
        t.as_secs_f64() * 1e9 / server_samples as f64
    );

    let t = best(|| {
        let mut p = replay_pipeline();
        let start = Instant::now();
        lbwatch::replay::replay(&path, text.as_bytes(), &mut p).unwrap();
        start.elapsed()
    });
    let secs = t.as_secs_f64();
    println!(
        "replay from memory: {:.0} MB/s, {:.2} M server-samples/s",
        mb / secs,
        server_samples as f64 / secs / 1e6
    );

    haproxy_csv_parse(quick);

    if !quick {
        let t = best(|| {
            let mut p = replay_pipeline();
            let start = Instant::now();
            let input = lbwatch::replay::open(&path).unwrap();
            lbwatch::replay::replay(&path, input, &mut p).unwrap();
            start.elapsed()
        });
        let secs = t.as_secs_f64();
        println!(
            "replay from the .jsonl.gz file: {:.0} MB/s of JSON, {:.2} M server-samples/s",
            mb / secs,
            server_samples as f64 / secs / 1e6
        );
    }
}

/// Parses a 10,000-server stats page (100 backends of 100 servers, rows of
/// the real HAProxy 2.6 capture).
fn haproxy_csv_parse(quick: bool) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/haproxy/csv-2.6.12-lbwatch-e2e.csv");
    let capture = std::fs::read_to_string(path).unwrap();
    let header = capture.lines().next().unwrap();
    let server = capture
        .lines()
        .find(|l| l.starts_with("web,web1,"))
        .unwrap();
    let backend = capture
        .lines()
        .find(|l| l.starts_with("web,BACKEND,"))
        .unwrap();
    let (pools, per_pool) = if quick { (2, 10) } else { (100, 100) };
    let mut page = format!("{header}\n");
    for p in 0..pools {
        for s in 0..per_pool {
            let row = server.replacen("web,web1,", &format!("pool{p},srv{s},"), 1);
            page.push_str(&row.replacen(",1,1,0,", &format!(",{},1,0,", 1 + s % 3), 1));
            page.push('\n');
        }
        page.push_str(&backend.replacen("web,", &format!("pool{p},"), 1));
        page.push('\n');
    }
    let servers = pools * per_pool;
    let t = best(|| {
        let start = Instant::now();
        let parsed = lbwatch::source::haproxy_csv::parse(page.as_bytes()).unwrap();
        let took = start.elapsed();
        assert_eq!(parsed.servers.len(), servers);
        took
    });
    println!(
        "haproxy csv parse ({servers} servers, {:.1} MB): {:.0} MB/s, {:.1} M servers/s",
        page.len() as f64 / 1e6,
        page.len() as f64 / t.as_secs_f64() / 1e6,
        servers as f64 / t.as_secs_f64() / 1e6
    );
}
