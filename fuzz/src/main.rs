//! One AFL++ harness for every parser lbwatch has; `LBWATCH_FUZZ_TARGET`
//! picks which (`fuzz/run` lists them and runs each). A target never
//! panics on any input: a panic is a crash AFL++ keeps.
//!
//! `lbwatch-fuzz seed-state DIR` writes detector snapshots to seed the
//! `state` target (they are binary and change with the detector, so they
//! are made, not committed).

use std::path::Path;

use lbwatch::detect::{DetectConfig, Detector};
use lbwatch::source::prometheus::Mapping;
use lbwatch::source::{envoy, haproxy_csv, nginx, prometheus};

/// The replay seed lines, fed in order: a detector with history, whose
/// snapshot seeds `state` and whose last sample follows each restore.
const REPLAY: &str = include_str!("../../tests/fixtures/replay-seeds.jsonl");

fn watched() -> Detector {
    let mut d = Detector::new(DetectConfig::default());
    for line in REPLAY.lines() {
        if let Ok(s) = serde_json::from_str::<lbwatch::model::Sample>(line) {
            let _ = d.observe(&s);
        }
    }
    d
}

fn mapping() -> Mapping {
    serde_json::from_value(serde_json::json!({
        "pool_label": "service",
        "requests": { "metric": "traefik_service_requests_total" },
        "errors": { "metric": "traefik_service_requests_total", "labels": { "code": "5.." } }
    }))
    .expect("a valid mapping")
}

fn target(name: &str) -> Box<dyn Fn(&[u8]) + std::panic::RefUnwindSafe> {
    match name {
        "haproxy_csv" => Box::new(|b| drop(haproxy_csv::parse(b))),
        "haproxy_prometheus" => Box::new(|b| drop(prometheus::parse_haproxy(b))),
        "prometheus_mapped" => {
            let m = mapping();
            Box::new(move |b| drop(prometheus::parse_mapped(b, &m)))
        }
        "envoy" => Box::new(|b| drop(envoy::parse(b))),
        "nginx" => Box::new(|b| {
            let _ = nginx::parse_plus(b);
            let _ = nginx::parse_vts(b);
        }),
        // A fresh detector each input, so coverage depends on the input
        // alone; the line goes in twice to reach the rate code.
        "replay" => Box::new(|b| {
            let Ok(text) = std::str::from_utf8(b) else {
                return;
            };
            if let Ok(s) = serde_json::from_str::<lbwatch::model::Sample>(text) {
                let mut d = Detector::new(DetectConfig::default());
                let _ = d.observe(&s);
                let _ = d.observe(&s);
            }
        }),
        "config" => Box::new(|b| {
            let text = String::from_utf8_lossy(b);
            let _ =
                lbwatch::config::parse_with_env(Path::new("fuzz.toml"), &text, std::iter::empty());
        }),
        "outbox" => Box::new(|b| {
            let _ = lbwatch::notify::outbox::decode_line(&String::from_utf8_lossy(b));
        }),
        "state" => {
            let last: lbwatch::model::Sample<'static> =
                serde_json::from_str(REPLAY.lines().last().expect("seed lines")).expect("a sample");
            Box::new(move |b| {
                let mut d = Detector::new(DetectConfig::default());
                if d.restore(b).is_ok() {
                    let _ = d.observe(&last);
                }
            })
        }
        other => panic!("LBWATCH_FUZZ_TARGET={other:?}: no such target"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("seed-state") {
        let dir = Path::new(args.get(2).expect("seed-state DIR"));
        std::fs::create_dir_all(dir).expect("the seed folder");
        let d = watched();
        for (i, t) in d.targets().enumerate() {
            let snap = d.snapshot(t).expect("a snapshot of a watched target");
            std::fs::write(dir.join(format!("state-{i}.bin")), snap).expect("a seed file");
        }
        return;
    }
    let name = std::env::var("LBWATCH_FUZZ_TARGET").expect("LBWATCH_FUZZ_TARGET");
    let run = target(&name);
    afl::fuzz!(|data: &[u8]| run(data));
}
