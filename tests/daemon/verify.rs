//! `lbwatch verify` against a real HAProxy with the tests' loopback
//! traffic: a baseline run recorded with `--record`, then each change
//! applied by a reload and verified `--before` that baseline. The bad
//! changes (a typo'd pool that lost two of its three server lines, an ACL
//! that denies everything, weights 100:1:1, `balance source`) fail; the
//! benign ones (a server added, a timeout changed) and a declared removal
//! pass. Each config HAProxy ran is also linted `--against` the baseline's,
//! so the two gates are seen to agree. (Every server line at one address
//! cannot show in the LB's stats: that typo is lint's alone.)

use super::*;
use support::haproxy::{Backend, Haproxy, LbSpec, PoolSpec, Traffic};

/// `lbwatch verify ARGS --format json`: exit code and report.
fn verify(cfg: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = lbwatch()
        .args([
            "verify",
            "--config",
            cfg.to_str().unwrap(),
            "--format",
            "json",
        ])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), report)
}

/// Every problem not declared with --allow, as text.
fn failures(report: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for section in ["pools", "frontends"] {
        for p in report[section].as_array().unwrap() {
            for problem in p["problems"].as_array().unwrap() {
                if problem["allowed"] == false {
                    out.push(problem["text"].as_str().unwrap().to_string());
                }
            }
        }
    }
    for a in report["alerts"].as_array().unwrap() {
        if a["allowed"] == false {
            out.push(format!("alert {}", a["event"]["alert"]));
        }
    }
    out
}

#[test]
fn verify_on_a_real_haproxy_fails_bad_changes_and_passes_benign_ones() {
    let web: Vec<Backend> = (0..4).map(|_| Backend::start()).collect();
    let spec = |n: usize,
                weights: &[u32],
                balance: Option<&'static str>,
                frontend: &[&str],
                lines: &[&str]| LbSpec {
        pools: vec![PoolSpec {
            balance,
            lines: lines.iter().map(|l| l.to_string()).collect(),
            ..PoolSpec::of("web", &web[..n], weights)
        }],
        frontend_lines: frontend.iter().map(|l| l.to_string()).collect(),
        ..LbSpec::default()
    };
    let base = spec(3, &[1, 1, 1], None, &[], &[]);
    let mut lb = Haproxy::start(scratch("verify-haproxy"), &base);
    let _traffic = Traffic::start(lb.frontend_port, vec!["/web".into()], 60);
    let cfg = write_config("verify.toml", &target("lb", &lb.stats_url(), ""));
    std::thread::sleep(Duration::from_secs(1));

    // The baseline: nothing to compare with yet, so the spread is judged
    // against the weights; it passes, and its samples are kept.
    let before = scratch("verify-before.jsonl");
    let (code, report) = verify(&cfg, &["--for", "8s", "--record", before.to_str().unwrap()]);
    assert_eq!((code, failures(&report)), (0, vec![]), "{report:#}");
    assert_eq!(report["compared"], false);
    let before = before.to_str().unwrap();
    let deployed = scratch("verify-deployed.cfg");
    std::fs::write(&deployed, lb.config(&base)).unwrap();

    // The ACL was meant for 10.66.0.0/16, a scanner's network.
    let acl_typo = [
        "acl scanners src 0.0.0.0/0",
        "http-request deny if scanners",
    ];
    // (name, the LB after the change, --allow, what verify's failure says,
    // the error lint gives against the baseline's config)
    type Case<'a> = (
        &'a str,
        LbSpec,
        Vec<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "a timeout changed",
            spec(3, &[1, 1, 1], None, &[], &["timeout server 6s"]),
            vec![],
            None,
            None,
        ),
        (
            "a server added",
            spec(4, &[1, 1, 1, 1], None, &[], &[]),
            vec![],
            None,
            None,
        ),
        (
            "a declared removal",
            spec(2, &[1, 1], None, &[], &[]),
            vec!["--allow", "web/web3 removed"],
            None,
            None,
        ),
        (
            "an undeclared removal",
            spec(2, &[1, 1], None, &[], &[]),
            vec![],
            Some("server web3 was removed from pool web"),
            None,
        ),
        (
            "a typo'd pool",
            spec(1, &[1], None, &[], &[]),
            vec![],
            Some("server web2 was removed from pool web"),
            Some("pool-shrunk"),
        ),
        (
            "weights 100:1:1",
            spec(3, &[100, 1, 1], None, &[], &[]),
            vec![],
            Some("pool web: web1 took"),
            Some("weights-skewed"),
        ),
        (
            "balance source",
            spec(3, &[1, 1, 1], Some("source"), &[], &[]),
            vec![],
            Some("of the requests after the change"),
            None,
        ),
        (
            "an ACL typo that denies everything",
            spec(3, &[1, 1, 1], None, &acl_typo, &[]),
            vec![],
            Some("frontend fe denied"),
            Some("denies-everything"),
        ),
    ];
    for (name, after, allow, failure, lint_error) in cases {
        lint_agrees(name, &deployed, &lb.config(&after), lint_error);
        lb.reload_and_wait(&after);
        let mut args = vec!["--for", "6s", "--before", before];
        args.extend(allow);
        let (code, report) = verify(&cfg, &args);
        let got = failures(&report);
        if name == "weights 100:1:1" {
            // The text report, as the README shows it.
            let out = lbwatch()
                .args(["verify", "--config", cfg.to_str().unwrap()])
                .args(&args)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1));
            let path = artifact("verify-weights.txt");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, &out.stdout).unwrap();
        }
        match failure {
            None => assert_eq!((code, &got), (0, &vec![]), "{name}: {report:#}"),
            Some(text) => {
                assert_eq!(code, 1, "{name} passed: {report:#}");
                assert!(
                    got.iter().any(|g| g.contains(text)),
                    "{name}: no failure saying '{text}' in {got:#?}"
                );
            }
        }
    }
}

/// `lbwatch lint --against` the deployed config gives `error` (or none).
fn lint_agrees(name: &str, deployed: &Path, config: &str, error: Option<&str>) {
    let changed = scratch("verify-changed.cfg");
    std::fs::write(&changed, config).unwrap();
    let out = lbwatch()
        .arg("lint")
        .args(["--format", "json", "--against"])
        .args([deployed, &changed])
        .output()
        .unwrap();
    let lint: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<&str> = lint["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors,
        error.into_iter().collect::<Vec<_>>(),
        "{name}: lint says {lint:#}"
    );
}

/// A recording of target `lb`, pool `web`, one sample a second for `secs`
/// seconds from `start`: each second, `step(t)` gives each server's
/// (requests, 5xx) and weight.
fn recording(
    name: &str,
    start: i64,
    secs: i64,
    step: impl Fn(i64) -> Vec<(&'static str, u64, u64, u32)>,
) -> PathBuf {
    let path = scratch(name);
    let mut totals = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    let mut out = String::new();
    for t in 0..secs {
        let mut servers = Vec::new();
        for (server, requests, errors, weight) in step(t) {
            let c = totals.entry(server).or_default();
            c.0 += requests;
            c.1 += errors;
            servers.push(
                serde_json::json!({"pool": "web", "server": server, "requests_total": c.0,
                "responses_5xx_total": c.1, "up": true, "weight": weight, "backup": false}),
            );
        }
        let ts = lbwatch::model::Timestamp::from_micros((start + t) * 1_000_000);
        out += &serde_json::json!({"ts": ts, "target": "lb", "servers": servers}).to_string();
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn verify_reads_recordings_splits_at_change_at_and_honours_allow() {
    let cfg = write_config(
        "verify-offline.toml",
        &target("lb", "http://127.0.0.1:9/stats;csv", ""),
    );
    let even = |_| vec![("web1", 20, 0, 1), ("web2", 20, 0, 1), ("web3", 20, 0, 1)];
    let before = recording("v-before.jsonl", 1_800_000_000, 30, even);
    let b = before.to_str().unwrap();

    // One run, the change 30 s in: web2's 5xx jump to 30%.
    let run = recording("v-run.jsonl", 1_800_000_100, 60, |t| {
        let e = if t >= 30 { 6 } else { 0 };
        vec![("web1", 20, 0, 1), ("web2", 20, e, 1), ("web3", 20, 0, 1)]
    });
    let (code, report) = verify(
        &cfg,
        &["--after", run.to_str().unwrap(), "--change-at", "30s"],
    );
    assert_eq!(code, 1, "{report:#}");
    let got = failures(&report);
    assert!(
        got.iter().any(
            |f| f.contains("5xx went from 0.00% of requests before the change to 10.")
                && f.contains("(web2: 30.0%)")
        ),
        "{got:?}"
    );
    // The same run split at an RFC 3339 time instead.
    let at = lbwatch::model::Timestamp::from_micros((1_800_000_100 + 30) * 1_000_000);
    let at = serde_json::to_value(at).unwrap();
    let (code, _) = verify(
        &cfg,
        &[
            "--after",
            run.to_str().unwrap(),
            "--change-at",
            at.as_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);

    // New weights 10:1:1, followed by the traffic: a skew unless declared.
    let reweighted = recording("v-weights.jsonl", 1_800_000_200, 30, |_| {
        vec![("web1", 100, 0, 10), ("web2", 10, 0, 1), ("web3", 10, 0, 1)]
    });
    let r = reweighted.to_str().unwrap();
    let (code, report) = verify(&cfg, &["--before", b, "--after", r]);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        failures(&report)[0]
            .contains("web1 took 83.3% of the requests after the change, 33.3% before"),
        "{report:#}"
    );
    // ... its spread then judged against the new weights: as they say.
    let (code, report) = verify(
        &cfg,
        &["--before", b, "--after", r, "--allow", "web weights"],
    );
    assert_eq!((code, failures(&report)), (0, vec![]), "{report:#}");
    // A server added that takes nothing fails; with its share it passes.
    let starved = recording("v-added.jsonl", 1_800_000_300, 30, |_| {
        vec![
            ("web1", 20, 0, 1),
            ("web2", 20, 0, 1),
            ("web3", 20, 0, 1),
            ("web4", 0, 0, 1),
        ]
    });
    let (code, report) = verify(&cfg, &["--before", b, "--after", starved.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(failures(&report).iter().any(|f| f.contains("server web4 was added to pool web but took 0.0% of its requests, where its weight says 25.0%")), "{report:#}");

    // Bad input: exit 2, naming what is wrong.
    let usage = |args: &[&str]| {
        let out = lbwatch()
            .args(["verify", "--config", cfg.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = usage(&["--after", b, "--for", "5s"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("give either --for DURATION"), "{err}");
    let (code, err) = usage(&["--after", b, "--allow", "web removed"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--allow 'web removed': expected"), "{err}");
    std::fs::write(scratch("v-bad.jsonl"), "{\"ts\": 1}\n").unwrap();
    let (code, err) = usage(&["--after", scratch("v-bad.jsonl").to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("v-bad.jsonl:1:"), "{err}");
}
