//! `lbwatch replay --incidents DIR` on recorded scenarios: each fault is one
//! incident whose start and end are within one scrape interval of the
//! fault's injected times, detected after its start; and the postmortem
//! draft of a typo'd pool (a reload that left one server of six) is
//! compared with its snapshot in tests/incidents/ (`LBWATCH_BLESS=1`
//! rewrites it), which a person has read.

use std::path::{Path, PathBuf};
use std::process::Command;

use lbwatch::model::Timestamp;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The incidents of a scenario's replay, as JSON, and the directory.
fn replay(scenario: &str) -> (Vec<Value>, PathBuf) {
    // One directory per call: tests replay the same scenario in parallel.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "lbwatch-incidents-{}-{call}-{scenario}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let recording = repo(&format!("tests/scenarios/{scenario}.samples.jsonl.gz"));
    let out = Command::new(env!("CARGO_BIN_EXE_lbwatch"))
        .args([
            "replay",
            recording.to_str().unwrap(),
            "--incidents",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found: Vec<Value> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    found.sort_by(|a, b| a["start"].as_str().cmp(&b["start"].as_str()));
    (found, dir)
}

fn ts(v: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap()
}

#[test]
fn each_fault_is_one_incident_within_an_interval_of_its_times() {
    for scenario in [
        "vanish_after_reload",
        "weight_typo",
        "blocked_all",
        "error_spike_pool_1s",
        "down_typo_addresses",
    ] {
        let truth: Value = serde_json::from_str(
            &std::fs::read_to_string(repo(&format!("tests/scenarios/{scenario}.truth.json")))
                .unwrap(),
        )
        .unwrap();
        let interval = truth["interval_s"].as_f64().unwrap();
        let fault = &truth["faults"][0];
        let (incidents, _) = replay(scenario);
        assert_eq!(incidents.len(), 1, "{scenario}: {incidents:#?}");
        let i = &incidents[0];
        assert_eq!(i["target"], fault["target"], "{scenario}");
        let (start, detected, end) = (ts(&i["start"]), ts(&i["detected"]), ts(&i["end"]));
        let off = |got: Timestamp, want: &Value| got.secs_since(ts(want)).abs();
        assert!(
            off(start, &fault["start"]) <= interval,
            "{scenario}: start {start} against {}",
            fault["start"]
        );
        assert!(
            off(end, &fault["end"]) <= interval,
            "{scenario}: end {end} against {}",
            fault["end"]
        );
        assert!(
            detected >= start && detected <= end,
            "{scenario}: detected {detected}"
        );
        assert!(!i["cause"].as_str().unwrap().is_empty(), "{scenario}");
    }
}

#[test]
fn the_report_of_a_typod_pool_matches_its_snapshot() {
    let (incidents, dir) = replay("vanish_after_reload");
    let id = incidents[0]["id"].as_str().unwrap();
    let report = std::fs::read_to_string(dir.join(format!("{id}.md"))).unwrap();
    let snapshot = repo("tests/incidents/vanish_after_reload.md");
    if std::env::var_os("LBWATCH_BLESS").is_some() {
        std::fs::write(&snapshot, &report).unwrap();
    }
    let expected =
        std::fs::read_to_string(&snapshot).expect("the snapshot (LBWATCH_BLESS=1 writes it)");
    assert_eq!(
        report, expected,
        "the report changed; read it, then LBWATCH_BLESS=1 to accept"
    );
}

#[test]
fn a_typod_pool_keeps_the_servers_that_left_and_charts_the_pool_around_it() {
    let (incidents, _) = replay("vanish_after_reload");
    let i = &incidents[0];
    let (start, end) = (ts(&i["start"]), ts(&i["end"]));
    let departed = i["departed"].as_array().unwrap();
    let names: Vec<&str> = departed
        .iter()
        .map(|d| d["server"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-01", "web-02", "web-04", "web-05", "web-06"]);
    for d in departed {
        // Six servers at even weights: each usually took about a sixth.
        let usual = d["usual_share"].as_f64().unwrap();
        assert!((usual - 1.0 / 6.0).abs() < 0.03, "{d}");
        assert!(ts(&d["left"]).secs_since(start).abs() <= 10.0, "{d}");
    }
    let series = &i["series"][0];
    assert_eq!(series["pool"], "web");
    let points = series["points"].as_array().unwrap();
    let (first, last) = (ts(&points[0]["ts"]), ts(&points[points.len() - 1]["ts"]));
    assert!((25.0..=35.0).contains(&start.secs_since(first)), "{first}");
    assert!((50.0..=70.0).contains(&last.secs_since(end)), "{last}");
    let web03 = series["servers"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s == "web-03")
        .unwrap();
    let share = |p: &Value| {
        p["shares"][web03]
            .as_f64()
            .unwrap_or_else(|| panic!("no share of web-03: {p}"))
    };
    assert!(share(&points[0]) < 0.3, "before: {}", points[0]);
    let during = points
        .iter()
        .filter(|p| ts(&p["ts"]) > start && ts(&p["ts"]) < end)
        .collect::<Vec<_>>();
    assert!(!during.is_empty());
    assert!(
        during.iter().all(|p| share(p) > 0.95),
        "web-03 takes all while the pool is one server"
    );
}
