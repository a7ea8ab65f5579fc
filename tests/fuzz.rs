//! A mutation fuzzer for every parser: the five stats sources, a mapped
//! Prometheus endpoint, the replay line reader (with the detector behind
//! it), the config loader, the outbox journal's lines and the detector's
//! state snapshots. Seeded with the real fixtures and outputs of each, it
//! flips, inserts, deletes, duplicates and splices bytes and drops in the
//! tokens these formats are made of; any panic fails with the input saved
//! under `target/fuzz-crashes/`.
//!
//! The test runs a short smoke of each (`LBWATCH_FUZZ_EXECS`, default 3,000
//! per parser). A long run, as reported in the notes:
//! `LBWATCH_FUZZ_EXECS=10000000 cargo test --profile ci --test fuzz -- --nocapture`.
//! `LBWATCH_FUZZ_SEED` replays a run; each run prints its seed.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use lbwatch::detect::{DetectConfig, Detector};
use lbwatch::source::prometheus::Mapping;
use lbwatch::source::{envoy, haproxy_csv, nginx, prometheus};
use support::sim::Rng;

/// What these formats are made of: a mutation drops one in.
const TOKENS: &[&str] = &[
    ",",
    "\"",
    "\"\"",
    "\n",
    "\r\n",
    "#",
    "::",
    "{",
    "}",
    "[",
    "]",
    ":",
    "=",
    "NaN",
    "+Inf",
    "-Inf",
    "-1",
    "1e308",
    "18446744073709551615",
    "18446744073709551616",
    "0",
    "null",
    "true",
    "\"\\u0000\"",
    "\u{feff}",
    "é",
    "<html>",
    "# TYPE x counter\n",
    "{\"servers\":[]}",
    "\"ts\":\"2024-06-05T14:00:00Z\"",
    "[[targets]]\n",
    "= \"1s\"",
    "\\",
];

fn execs() -> usize {
    std::env::var("LBWATCH_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

/// A fresh seed per run, printed so that a failure can be replayed.
#[allow(clippy::print_stderr, clippy::disallowed_methods)] // the seed, for a human; test code may read the clock
fn seed(name: &str) -> u64 {
    let seed = std::env::var("LBWATCH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("fuzz {name}: LBWATCH_FUZZ_SEED={seed}");
    seed
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let pick = |rng: &mut Rng, n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    for _ in 0..1 + pick(rng, 4) {
        let at = pick(rng, input.len() + 1);
        match rng.next_u64() % 6 {
            0 if !input.is_empty() => {
                let i = pick(rng, input.len());
                input[i] ^= 1 << (rng.next_u64() % 8);
            }
            1 => {
                let t = TOKENS[pick(rng, TOKENS.len())].as_bytes();
                input.splice(at..at, t.iter().copied());
            }
            2 if !input.is_empty() => {
                let end = (at + 1 + pick(rng, 64)).min(input.len());
                input.drain(at.min(end)..end);
            }
            3 if !input.is_empty() => {
                let from = pick(rng, input.len());
                let end = (from + 1 + pick(rng, 128)).min(input.len());
                let chunk = input[from..end].to_vec();
                input.splice(at..at, chunk);
            }
            4 => {
                let other = &seeds[pick(rng, seeds.len())];
                if !other.is_empty() {
                    let from = pick(rng, other.len());
                    let end = (from + 1 + pick(rng, 256)).min(other.len());
                    input.splice(at..at, other[from..end].iter().copied());
                }
            }
            _ => {
                let b = (rng.next_u64() & 0xff) as u8;
                input.insert(at, b);
            }
        }
    }
    input.truncate(1 << 16);
}

/// Runs `target` on `n` mutants of `seeds`; returns the count, or the path
/// of the input that panicked.
fn fuzz(name: &str, seeds: &[Vec<u8>], n: usize, target: impl Fn(&[u8])) -> Result<usize, PathBuf> {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut rng = Rng::new(seed(name));
    for i in 0..n {
        let mut input = seeds[i % seeds.len()].clone();
        if i >= seeds.len() {
            mutate(&mut rng, &mut input, seeds);
        }
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            return Err(save_crash(name, &input));
        }
    }
    Ok(n)
}

fn save_crash(name: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
    std::fs::create_dir_all(&dir).unwrap();
    // The standard hasher with its fixed keys: the same input, the same
    // file name.
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(input, &mut h);
    let path = dir.join(format!("{name}-{:016x}.bin", std::hash::Hasher::finish(&h)));
    std::fs::write(&path, input).unwrap();
    path
}

/// The files of `dir` (under the repository) ending in `ext`, each cut to
/// its first 4 KiB (mutants of small inputs run faster and reach as far).
fn seeds_from(dir: &str, ext: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .map(|p| {
            let mut b = std::fs::read(p).unwrap();
            b.truncate(4096);
            b
        })
        .collect();
    out.sort();
    out
}

#[allow(clippy::print_stderr)] // the exec counts, for the record
fn check(name: &str, seeds: &[Vec<u8>], target: impl Fn(&[u8])) {
    match fuzz(name, seeds, execs(), target) {
        Ok(n) => eprintln!("fuzz {name}: {n} executions, no panic"),
        Err(path) => panic!(
            "fuzz {name}: a panic on the input saved in {}",
            path.display()
        ),
    }
}

#[test]
fn haproxy_csv() {
    check(
        "haproxy_csv",
        &seeds_from("tests/fixtures/haproxy", ".csv"),
        |b| {
            let _ = haproxy_csv::parse(b);
        },
    );
}

#[test]
fn haproxy_prometheus() {
    check(
        "haproxy_prometheus",
        &seeds_from("tests/fixtures/haproxy-prometheus", ".metrics"),
        |b| {
            let _ = prometheus::parse_haproxy(b);
        },
    );
}

#[test]
fn prometheus_mapped() {
    let mapping: Mapping = serde_json::from_value(serde_json::json!({
        "pool_label": "service",
        "requests": { "metric": "traefik_service_requests_total" },
        "errors": { "metric": "traefik_service_requests_total", "labels": { "code": "5.." } }
    }))
    .unwrap();
    let mut seeds = seeds_from("tests/fixtures/traefik", ".txt");
    seeds.extend(seeds_from("tests/fixtures/caddy", ".txt"));
    check("prometheus_mapped", &seeds, |b| {
        let _ = prometheus::parse_mapped(b, &mapping);
    });
}

#[test]
fn envoy_clusters() {
    let mut seeds = seeds_from("tests/fixtures/envoy", "admin-test.json");
    seeds.extend(seeds_from("tests/fixtures/envoy", "mixedcase.json"));
    seeds.extend(seeds_from("tests/fixtures/envoy", ".txt"));
    check("envoy", &seeds, |b| {
        let _ = envoy::parse(b);
    });
}

#[test]
fn nginx_plus_and_vts() {
    let mut seeds = seeds_from("tests/fixtures/nginx-plus", "telegraf.json");
    seeds.extend(seeds_from("tests/fixtures/nginx-plus", "datadog.json"));
    seeds.extend(seeds_from("tests/fixtures/nginx-vts", "telegraf.json"));
    seeds.extend(seeds_from("tests/fixtures/nginx-vts", "upstream.json"));
    check("nginx", &seeds, |b| {
        let _ = nginx::parse_plus(b);
        let _ = nginx::parse_vts(b);
    });
}

/// The replay reader's lines, each fed to a detector: what a recording
/// can hold reaches detection. Seeds: lines of the recorded scenarios
/// (`tests/fixtures/replay-seeds.jsonl`), with an offset timestamp, counters
/// at 2^64 - 1 and a failed scrape.
#[test]
fn replay_lines() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay-seeds.jsonl"),
    )
    .unwrap();
    let seeds: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    let detector = std::cell::RefCell::new(Detector::new(DetectConfig::default()));
    check("replay", &seeds, |b| {
        let Ok(text) = std::str::from_utf8(b) else {
            return;
        };
        if let Ok(sample) = serde_json::from_str::<lbwatch::model::Sample>(text) {
            let _ = detector.borrow_mut().observe(&sample);
        }
    });
}

#[test]
fn config_files() {
    let mut seeds =
        vec![
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lbwatch.toml"))
                .unwrap(),
        ];
    seeds.push(
        b"[[targets]]\nname = \"a\"\nkind = \"haproxy\"\nurl = \"http://x/\"\ninterval = \"1s\"\n"
            .to_vec(),
    );
    let path = Path::new("fuzz.toml");
    check("config", &seeds, |b| {
        let text = String::from_utf8_lossy(b);
        let _ = lbwatch::config::parse_with_env(path, &text, std::iter::empty());
    });
}

#[test]
fn outbox_journal_lines() {
    let seeds: Vec<Vec<u8>> = [
        r#"{"put":3,"event":{"ts":"2024-06-05T14:00:05Z","state":"firing","alert":"TrafficSkew","severity":"critical","target":"lb1","pool":"web","summary":"x","value":0.9}}"#,
        r#"{"ack":3}"#,
        r#"{"state":{"ts":"2024-06-05T14:00:05Z","state":"resolved","alert":"ErrorSpike","severity":"warning","target":"lb1","pool":"web","server":"web-1"}}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    check("outbox", &seeds, |b| {
        let _ = lbwatch::notify::outbox::decode_line(&String::from_utf8_lossy(b));
    });
}

/// Snapshots of a detector that watched a fault: mutated, restored, then
/// fed a sample.
#[test]
fn state_snapshots() {
    let mut sim = support::sim::Sim::new(7, 5.0)
        .pool("web", 4, 200.0)
        .at(600.0, |s| s.p("web").servers[0].share = 50.0);
    let samples = sim.samples(700.0);
    let mut d = Detector::new(DetectConfig::default());
    for s in &samples {
        d.observe(s);
    }
    let seeds = vec![d.snapshot("lb1").unwrap()];
    let last = samples.last().unwrap().clone();
    check("state", &seeds, |b| {
        let mut d = Detector::new(DetectConfig::default());
        if d.restore(b).is_ok() {
            let _ = d.observe(&last);
        }
    });
}
