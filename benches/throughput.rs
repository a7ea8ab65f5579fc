//! Throughput benchmarks, single-threaded (one core):
//!
//! * detector: `Detector::observe` over samples already in memory, in
//!   server-samples per second;
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
        let mut d = Detector::new(DetectConfig::default());
        let start = Instant::now();
        lbwatch::replay::replay(&path, text.as_bytes(), &mut d, io::sink()).unwrap();
        start.elapsed()
    });
    let secs = t.as_secs_f64();
    println!(
        "replay from memory: {:.0} MB/s, {:.2} M server-samples/s",
        mb / secs,
        server_samples as f64 / secs / 1e6
    );

    if !quick {
        let t = best(|| {
            let mut d = Detector::new(DetectConfig::default());
            let start = Instant::now();
            let input = lbwatch::replay::open(&path).unwrap();
            lbwatch::replay::replay(&path, input, &mut d, io::sink()).unwrap();
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
