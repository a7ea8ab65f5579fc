//! `scripts/bench-vs-stack` through its real interface, in its quick mode:
//! a real HAProxy of 200 servers under loopback traffic, watched in turn by
//! Debian's HAProxy exporter, Prometheus (16 rules) and Alertmanager at a
//! 5 s scrape, then by lbwatch at 1 s. The test checks that both sides ran
//! and were measured; the figures in the README come from the full run
//! (3 minutes a side), and no aim is asserted here (a timed test would
//! flake on a loaded machine).

use super::*;

/// A side's total row: its CPU-seconds per minute, whether that figure is
/// only a bound (`< x`: less than one clock tick counted in the window, as
/// lbwatch can be over the quick run's 15 s), and its peak RSS.
fn totals(report: &str, side: &str) -> (f64, bool, f64) {
    let row = report
        .lines()
        .find(|l| l.starts_with(&format!("| **{side}, total**")))
        .unwrap_or_else(|| panic!("no total for {side}: {report}"));
    let cells: Vec<&str> = row.split('|').map(|c| c.trim().trim_matches('*')).collect();
    let (cpu, bound) = match cells[4].strip_prefix("< ") {
        Some(bound) => (bound, true),
        None => (cells[4], false),
    };
    (cpu.parse().unwrap(), bound, cells[5].parse().unwrap())
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
    let (stack_cpu, stack_bound, stack_rss) = totals(&report, "the usual stack");
    let (cpu, bound, rss) = totals(&report, "lbwatch");
    assert!(
        !stack_bound && stack_cpu > 0.0 && stack_rss > 0.0,
        "{report}"
    );
    // A bound is still a figure: one tick over the window, never zero.
    assert!(cpu > 0.0 && rss > 0.0, "{report}");
    if bound {
        assert!(report.contains("CPU more than"), "{report}");
    }
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
