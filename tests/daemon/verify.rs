//! `lbwatch verify` against a real HAProxy with the tests' loopback
//! traffic: a baseline run recorded with `--record`, then each change
//! applied by a reload and verified `--before` that baseline. The bad
//! changes (a typo'd pool, an ACL that denies everything, weights 100:1:1,
//! `balance source`) fail; the benign ones (a server added, a timeout
//! changed) and a declared removal pass.

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
                deny_all: bool,
                lines: &[&str]| LbSpec {
        pools: vec![PoolSpec {
            balance,
            lines: lines.iter().map(|l| l.to_string()).collect(),
            ..PoolSpec::of("web", &web[..n], weights)
        }],
        deny_all,
        ..LbSpec::default()
    };
    let base = spec(3, &[1, 1, 1], None, false, &[]);
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

    // (name, the LB after the change, --allow, what the failure says)
    let cases: Vec<(&str, LbSpec, Vec<&str>, Option<&str>)> = vec![
        (
            "a timeout changed",
            spec(3, &[1, 1, 1], None, false, &["timeout server 6s"]),
            vec![],
            None,
        ),
        (
            "a server added",
            spec(4, &[1, 1, 1, 1], None, false, &[]),
            vec![],
            None,
        ),
        (
            "a declared removal",
            spec(2, &[1, 1], None, false, &[]),
            vec!["--allow", "web/web3 removed"],
            None,
        ),
        (
            "an undeclared removal",
            spec(2, &[1, 1], None, false, &[]),
            vec![],
            Some("server web3 was removed from pool web"),
        ),
        (
            "a typo'd pool",
            spec(1, &[1], None, false, &[]),
            vec![],
            Some("server web2 was removed from pool web"),
        ),
        (
            "weights 100:1:1",
            spec(3, &[100, 1, 1], None, false, &[]),
            vec![],
            Some("pool web: web1 took"),
        ),
        (
            "balance source",
            spec(3, &[1, 1, 1], Some("source"), false, &[]),
            vec![],
            Some("of the requests after the change"),
        ),
        (
            "an ACL that denies everything",
            spec(3, &[1, 1, 1], None, true, &[]),
            vec![],
            Some("frontend fe denied"),
        ),
    ];
    for (name, after, allow, failure) in cases {
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
