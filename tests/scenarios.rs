//! Every recorded scenario through the real `lbwatch replay` binary, scored
//! with the rules of `tests/scenarios/README.md`: a missed fault or a false
//! alarm fails the test. Also the CLI's contract for bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use lbwatch::model::{AlertEvent, AlertState, Severity, Timestamp};
use serde_json::Value;

const GRACE_S: f64 = 300.0;

fn lbwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lbwatch"))
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

fn secs(ts: Timestamp) -> f64 {
    ts.micros() as f64 / 1e6
}

fn time(v: &Value) -> f64 {
    secs(Timestamp::parse_rfc3339(v.as_str().expect("a time")).expect("RFC 3339"))
}

/// Runs `lbwatch replay` on a file; returns the parsed events.
fn replay(samples: &Path) -> Vec<AlertEvent> {
    let out = lbwatch().arg("replay").arg(samples).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        samples.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l}: {e}")))
        .collect()
}

struct Score {
    missed: Vec<String>,
    false_alarms: Vec<String>,
    ttd_intervals: Vec<f64>,
}

fn score(truth: &Value, events: &[AlertEvent]) -> Score {
    let interval = truth["interval_s"].as_f64().unwrap();
    let faults = truth["faults"].as_array().unwrap();
    let mut s = Score {
        missed: vec![],
        false_alarms: vec![],
        ttd_intervals: vec![],
    };
    for f in faults {
        match detected(f, events) {
            Some(d) => s.ttd_intervals.push(d / interval),
            None => s.missed.push(format!("{} ({})", f["id"], f["kind"])),
        }
    }
    for e in events {
        if e.state != AlertState::Firing || e.severity == Severity::Info {
            continue;
        }
        let t = secs(e.ts);
        let in_window = faults.iter().any(|f| {
            f["target"].as_str() == Some(&e.target)
                && time(&f["start"]) <= t
                && t <= time(&f["end"]) + GRACE_S
        });
        if !in_window && !allowed(truth, e) {
            s.false_alarms.push(serde_json::to_string(e).unwrap());
        }
    }
    s
}

/// Whether a benign event allows `e`: a server that really was down for a
/// few seconds may raise ServerDown (or may not), for `allow_s` after it.
fn allowed(truth: &Value, e: &AlertEvent) -> bool {
    let benign = truth["benign"].as_array().map_or(&[][..], Vec::as_slice);
    benign.iter().any(|b| {
        let lists = b["allow"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(e.alert.as_str())));
        let at = time(&b["at"]);
        let t = secs(e.ts);
        lists
            && b["target"].as_str() == Some(&e.target)
            && (b["pool"].is_null() || b["pool"].as_str() == e.pool.as_deref())
            && at <= t
            && t <= at + b["allow_s"].as_f64().unwrap_or(GRACE_S)
    })
}

/// Seconds from the fault's start to its first matching firing, if within
/// its delay.
fn detected(f: &Value, events: &[AlertEvent]) -> Option<f64> {
    let (start, target) = (time(&f["start"]), f["target"].as_str().unwrap());
    let max_delay = f["max_delay_s"].as_f64().unwrap();
    let expect: Vec<&str> = f["expect"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let pool_ok = |e: &AlertEvent| f["pool"].is_null() || e.pool.as_deref() == f["pool"].as_str();
    let relevant =
        |e: &&AlertEvent| e.target == target && expect.contains(&e.alert.as_str()) && pool_ok(e);
    // Already firing at the start counts as detected at the start.
    let mut firing_at_start = std::collections::BTreeMap::new();
    for e in events
        .iter()
        .filter(relevant)
        .filter(|e| secs(e.ts) < start)
    {
        let key = (e.alert, e.pool.clone(), e.server.clone());
        firing_at_start.insert(key, e.state == AlertState::Firing);
    }
    if firing_at_start.values().any(|&f| f) {
        return Some(0.0);
    }
    events
        .iter()
        .filter(relevant)
        .filter(|e| e.state == AlertState::Firing)
        .map(|e| secs(e.ts) - start)
        .find(|&d| (0.0..=max_delay).contains(&d))
}

/// Every scenario of a directory, scored together, as the scorer's
/// `summary:` line reports them.
struct Tally {
    scenarios: usize,
    faults: usize,
    failures: Vec<String>,
    missed: usize,
    false_alarms: usize,
    hours: f64,
    ttd: Vec<f64>,
}

impl Tally {
    fn of(dir: &Path) -> Tally {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".truth.json").map(str::to_string)
            })
            .collect();
        names.sort();
        let mut t = Tally {
            scenarios: names.len(),
            faults: 0,
            failures: vec![],
            missed: 0,
            false_alarms: 0,
            hours: 0.0,
            ttd: vec![],
        };
        for name in &names {
            let truth: Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join(format!("{name}.truth.json"))).unwrap(),
            )
            .unwrap();
            let events = replay(&dir.join(format!("{name}.samples.jsonl.gz")));
            let s = score(&truth, &events);
            t.faults += truth["faults"].as_array().unwrap().len();
            t.hours += truth["duration_s"].as_f64().unwrap() / 3600.0;
            t.missed += s.missed.len();
            t.false_alarms += s.false_alarms.len();
            for m in s.missed {
                t.failures.push(format!("{name}: missed {m}"));
            }
            for fa in s.false_alarms {
                t.failures.push(format!("{name}: false alarm {fa}"));
            }
            t.ttd.extend(s.ttd_intervals);
        }
        t.ttd.sort_by(f64::total_cmp);
        t
    }

    fn recall(&self) -> f64 {
        (self.faults - self.missed) as f64 / self.faults as f64
    }

    fn false_alarms_per_day(&self) -> f64 {
        self.false_alarms as f64 / (self.hours / 24.0)
    }

    /// Nearest-rank 90th percentile of the time to detect, in intervals.
    fn p90(&self) -> f64 {
        self.ttd[((self.ttd.len() as f64 * 0.9).ceil() as usize).max(1) - 1]
    }

    fn summary(&self) -> String {
        format!(
            "summary: detected={}/{} recall={:.3} false_alarms={} false_alarms_per_day={:.2} p90_ttd_intervals={:.2}",
            self.faults - self.missed,
            self.faults,
            self.recall(),
            self.false_alarms,
            self.false_alarms_per_day(),
            self.p90()
        )
    }
}

#[test]
fn every_recorded_scenario_is_detected_without_false_alarms() {
    let t = Tally::of(&dir());
    assert!(
        t.scenarios >= 15,
        "scenarios missing from {}",
        dir().display()
    );
    assert!(t.failures.is_empty(), "{}", t.failures.join("\n"));
    assert!(t.p90() <= 3.0, "{}: {:?}", t.summary(), t.ttd);
}

/// Recordings whose traffic follows real series (NAB's ELB and EC2 data):
/// surges, dips and lulls of real services are background; faults are
/// injected into it.
#[test]
#[allow(clippy::print_stderr)] // the summary line, for the record
fn real_traffic_scenarios_page_for_faults_and_not_for_the_traffic() {
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios-real");
    let t = Tally::of(&real);
    eprintln!("real traffic: {}", t.summary());
    assert!(
        t.scenarios >= 7,
        "scenarios missing from {}",
        real.display()
    );
    // The acceptance is recall 0.97 and at most one false alarm a day; the
    // aim is none, and today there is none: allow a tenth of the
    // acceptance (one in these 17 days), as the sweep on real series does.
    assert!(
        t.recall() >= 0.97 && t.false_alarms_per_day() <= 0.1,
        "{}\n{}",
        t.summary(),
        t.failures.join("\n")
    );
}

/// Recordings whose LBs publish the optional signals (response time,
/// sessions and limits, 4xx, connection errors, frontends' denials), with
/// their faults and their benign cousins (a slow burst, a scanner's 404s,
/// a pool at 85% of its sessions at its peak, one flap).
#[test]
#[allow(clippy::print_stderr)] // the summary line, for the record
fn signal_scenarios_page_for_each_new_fault_and_not_for_their_benign_cousins() {
    let signals = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios-signals");
    let t = Tally::of(&signals);
    eprintln!("signals: {}", t.summary());
    assert!(
        t.scenarios >= 8,
        "scenarios missing from {}",
        signals.display()
    );
    assert!(
        t.failures.is_empty(),
        "{}\n{}",
        t.summary(),
        t.failures.join("\n")
    );
}

#[test]
fn replaying_a_plain_file_and_its_gzip_gives_the_same_events() {
    let gz = dir().join("lb_unreachable.samples.jsonl.gz");
    let plain = std::env::temp_dir().join(format!("lbwatch-plain-{}.jsonl", std::process::id()));
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()),
        &mut text,
    )
    .unwrap();
    std::fs::write(&plain, text).unwrap();
    let (a, b) = (replay(&gz), replay(&plain));
    std::fs::remove_file(&plain).unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

/// Writes `text` to a temporary file and runs `lbwatch replay` on it.
fn replay_text(text: &str, extra: &[&str]) -> (i32, String, String) {
    let path = std::env::temp_dir().join(format!(
        "lbwatch-bad-{}-{}.jsonl",
        std::process::id(),
        text.len()
    ));
    std::fs::write(&path, text).unwrap();
    let out = lbwatch()
        .arg("replay")
        .arg(&path)
        .args(extra)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE");
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        stderr,
    )
}

const GOOD: &str = r#"{"ts":"2024-06-05T14:00:00Z","target":"lb","error":"refused"}"#;

#[test]
fn bad_input_exits_2_naming_the_file_and_line() {
    for (bad, reason) in [
        ("{\"ts\":\"2024-06-05T14:00:01Z\",\"target\":\"lb\"", "EOF"),
        (
            "{\"ts\":\"yesterday\",\"target\":\"lb\",\"error\":\"x\"}",
            "\"yesterday\"",
        ),
        (
            "{\"ts\":\"2024-06-05T14:00:01Z\",\"target\":\"lb\"}",
            "`servers`",
        ),
        (
            "{\"ts\":\"2024-06-05T14:00:01Z\",\"target\":\"lb\",\"servers\":[{\"pool\":\"p\"}]}",
            "missing field `server`",
        ),
        ("not json at all", "expected"),
    ] {
        let (code, _, stderr) = replay_text(&format!("{GOOD}\n\n{bad}\n{GOOD}\n"), &[]);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.starts_with("lbwatch: FILE:3: "), "{bad}: {stderr}");
        assert!(stderr.contains(reason), "{bad}: {stderr}");
    }
    let (code, _, stderr) = replay_text("", &["--config", "/nonexistent.toml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/nonexistent.toml: cannot read"),
        "{stderr}"
    );
    let out = lbwatch()
        .args(["replay", "/nonexistent.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.jsonl: cannot open"));
}

#[test]
fn events_before_a_bad_line_are_printed_and_alerts_still_firing_stay_firing() {
    let mut text = String::new();
    for i in 0..5 {
        text.push_str(&format!(
            "{{\"ts\":\"2024-06-05T14:00:0{i}Z\",\"target\":\"lb\",\"error\":\"refused\"}}\n"
        ));
    }
    let (code, stdout, _) = replay_text(&text, &[]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("\"state\":\"firing\",\"alert\":\"ScrapeFailed\""));
    let (code, stdout, _) = replay_text(&format!("{text}garbage\n"), &[]);
    assert_eq!(code, 2);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[test]
fn detection_settings_come_from_the_config_file() {
    let cfg = std::env::temp_dir().join(format!("lbwatch-cfg-{}.toml", std::process::id()));
    let text = format!("{GOOD}\n{}\n", GOOD.replace("14:00:00", "14:00:01"));
    std::fs::write(&cfg, "[detection]\nscrape_failures = 2\n").unwrap();
    let (_, stdout, _) = replay_text(&text, &["--config", cfg.to_str().unwrap()]);
    assert!(stdout.contains("ScrapeFailed"), "{stdout}");
    std::fs::write(&cfg, "[detection]\nscrape_failure = 2\n").unwrap();
    let (code, _, stderr) = replay_text(&text, &["--config", cfg.to_str().unwrap()]);
    std::fs::remove_file(&cfg).unwrap();
    assert_eq!(code, 2);
    assert!(stderr.contains("scrape_failure"), "{stderr}");
}

#[test]
fn targets_interleaved_in_one_file_give_each_target_its_own_alerts() {
    let read = |name: &str| -> Vec<String> {
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(dir().join(name)).unwrap()),
            &mut text,
        )
        .unwrap();
        text.lines().map(str::to_string).collect()
    };
    let a = read("lb_unreachable.samples.jsonl.gz");
    let b = read("blocked_all.samples.jsonl.gz");
    // Shift b onto a's time span so the two targets really interleave.
    let ts = |l: &str| -> f64 {
        let v: Value = serde_json::from_str(l).unwrap();
        time(&v["ts"])
    };
    let shift = ts(&a[0]) - ts(&b[0]);
    let b: Vec<String> = b
        .iter()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let t = Timestamp::from_micros(((time(&v["ts"]) + shift) * 1e6).round() as i64);
            v["ts"] = Value::String(t.to_string());
            v.to_string()
        })
        .collect();
    let mut both: Vec<&String> = a.iter().chain(&b).collect();
    both.sort_by(|x, y| ts(x).total_cmp(&ts(y)));
    let write = |lines: &[&String], name: &str| {
        let p = std::env::temp_dir().join(format!("lbwatch-{name}-{}.jsonl", std::process::id()));
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, text).unwrap();
        p
    };
    let (pa, pb, pboth) = (
        write(&a.iter().collect::<Vec<_>>(), "a"),
        write(&b.iter().collect::<Vec<_>>(), "b"),
        write(&both, "both"),
    );
    let (ea, eb, eboth) = (replay(&pa), replay(&pb), replay(&pboth));
    for p in [pa, pb, pboth] {
        std::fs::remove_file(p).unwrap();
    }
    assert!(!ea.is_empty() && !eb.is_empty());
    let only = |target: &str| -> Vec<AlertEvent> {
        eboth
            .iter()
            .filter(|e| e.target == target)
            .cloned()
            .collect()
    };
    assert_eq!(only(&ea[0].target), ea);
    assert_eq!(only(&eb[0].target), eb);
}

#[test]
fn out_of_order_samples_and_duplicate_rows_are_reported_not_hidden() {
    let row = r#"{"pool":"p","server":"s","requests_total":1,"responses_5xx_total":0}"#;
    let text = format!(
        "{{\"ts\":\"2024-06-05T14:00:02Z\",\"target\":\"lb\",\"servers\":[{row},{row}]}}\n\
         {{\"ts\":\"2024-06-05T14:00:01Z\",\"target\":\"lb\",\"servers\":[{row}]}}\n"
    );
    let (code, _, stderr) = replay_text(&text, &[]);
    assert_eq!(code, 0);
    assert!(
        stderr.contains("set aside 1 sample(s) not newer than their target's previous one and 1 duplicate server row(s)"),
        "{stderr}"
    );
}
