//! `scripts/bench-vs-stack` through its real interface, in its quick mode:
//! a real HAProxy of 200 servers under loopback traffic, watched in turn by
//! Debian's HAProxy exporter, Prometheus (16 rules) and Alertmanager at a
//! 5 s scrape, then by lbwatch at 1 s. The test checks that both sides ran
//! and were measured; the figures in the README come from the full run
//! (3 minutes a side), and no aim is asserted here (a timed test would
//! flake on a loaded machine).

use super::*;

/// The CPU-seconds per minute and peak RSS of a side's total row.
fn totals(report: &str, side: &str) -> (f64, f64) {
    let row = report
        .lines()
        .find(|l| l.starts_with(&format!("| **{side}, total**")))
        .unwrap_or_else(|| panic!("no total for {side}: {report}"));
    let cells: Vec<&str> = row.split('|').map(|c| c.trim().trim_matches('*')).collect();
    (cells[4].parse().unwrap(), cells[5].parse().unwrap())
}

#[test]
fn bench_vs_stack_measures_the_stack_and_lbwatch_on_one_haproxy() {
    let out = artifact("bench-vs-stack-quick.md");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = Command::new(root.join("scripts/bench-vs-stack"))
        .args([
            "--quick",
            "--lbwatch",
            env!("CARGO_BIN_EXE_lbwatch"),
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench-vs-stack failed: {stderr}");
    let report = std::fs::read_to_string(&out).unwrap();
    let (stack_cpu, stack_rss) = totals(&report, "the usual stack");
    let (cpu, rss) = totals(&report, "lbwatch");
    assert!(stack_cpu > 0.0 && stack_rss > 0.0, "{report}");
    assert!(cpu > 0.0 && rss > 0.0, "{report}");
    for process in [
        "prometheus-haproxy-exporter",
        "prometheus",
        "prometheus-alertmanager",
    ] {
        assert!(
            report.contains(&format!("| the usual stack | {process} |")),
            "{process} not measured: {report}"
        );
    }
    assert!(report.contains("Prometheus loaded 16 rules"), "{report}");
    assert!(report.contains("exports all 14 metric names"), "{report}");
    assert!(report.contains("lbwatch sees all 200 servers"), "{report}");
    assert!(report.contains("**Ratios (stack / lbwatch):**"), "{report}");
}
