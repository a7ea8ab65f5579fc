//! The detector, case by case: every fault lbwatch exists for fires within
//! its delay, at several traffic volumes and scrape intervals; every benign
//! situation a production load balancer sees pages nobody.

mod support;

use lbwatch::model::{AlertName, AlertState, Severity};
use support::sim::{detect, Sim};

/// When faults start: after every baseline is armed.
const FAULT_AT: f64 = 900.0;

/// A fault: a simulated target, the change that breaks it at `FAULT_AT`,
/// and the alert that must fire within `max_delay` seconds.
struct Fault {
    name: &'static str,
    sim: fn(f64) -> Sim,
    intervals: &'static [f64],
    alert: AlertName,
    pool: Option<&'static str>,
    /// In scrape intervals (at least `floor_s`), or seconds when `slow`.
    max_delay: f64,
    slow: bool,
    floor_s: f64,
}

fn check_fault(f: &Fault) {
    for &interval in f.intervals {
        for seed in [1, 2] {
            let mut sim = (f.sim)(interval);
            sim.rng = support::sim::Rng::new(seed);
            // Faults land half-way between two scrapes, as in recordings.
            sim.snap_to_mid = true;
            let samples = sim.samples(FAULT_AT + 900.0);
            let run = detect(&samples);
            let fault_at = sim.applied_at(FAULT_AT);
            let limit = if f.slow {
                f.max_delay
            } else {
                (f.max_delay * interval).max(f.floor_s)
            };
            let early: Vec<_> = run
                .pages()
                .into_iter()
                .filter(|e| (e.ts.micros() as f64 / 1e6) < support::sim::START as f64 + fault_at)
                .collect();
            assert!(
                early.is_empty(),
                "{} at {interval}s (seed {seed}): paged before the fault:\n{}",
                f.name,
                run.describe()
            );
            match run.fired_after(f.alert, f.pool, fault_at) {
                Some(d) if d <= limit => {}
                other => panic!(
                    "{} at {interval}s (seed {seed}): {} fired after {other:?} s, limit {limit} s:\n{}",
                    f.name,
                    f.alert,
                    run.describe()
                ),
            }
        }
    }
}

fn check_quiet(name: &str, sim: fn(f64) -> Sim, intervals: &[f64], secs: f64) {
    for &interval in intervals {
        for seed in [1, 2, 3] {
            let mut s = sim(interval);
            s.rng = support::sim::Rng::new(seed);
            let samples = s.samples(secs);
            let run = detect(&samples);
            assert!(
                run.pages().is_empty(),
                "{name} at {interval}s (seed {seed}) paged:\n{}",
                run.describe()
            );
        }
    }
}

fn shop(_interval: f64) -> Sim {
    Sim::new(1, _interval)
        .pool("web", 6, 900.0)
        .pool("api", 4, 120.0)
}

const FAULTS: &[Fault] = &[
    Fault {
        name: "one server takes everything (hash on a constant key)",
        sim: |i| {
            shop(i).at(FAULT_AT, |s| {
                for srv in s.p("web").servers.iter_mut().skip(1) {
                    srv.share = 0.002;
                }
            })
        },
        intervals: &[1.0, 5.0, 15.0],
        alert: AlertName::TrafficSkew,
        pool: Some("web"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "one server takes everything in a 20k req/s pool of 40",
        sim: |i| {
            Sim::new(1, i).pool("edge", 40, 20_000.0).at(FAULT_AT, |s| {
                s.p("edge").servers[7].share = 500.0;
            })
        },
        intervals: &[1.0],
        alert: AlertName::TrafficSkew,
        pool: Some("edge"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "a starved server",
        sim: |i| {
            Sim::new(1, i).pool("web", 14, 1400.0).at(FAULT_AT, |s| {
                s.p("web").servers[3].share = 0.01;
            })
        },
        intervals: &[1.0, 5.0],
        alert: AlertName::TrafficSkew,
        pool: Some("web"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "a weight typo the LB reports (100 against 1)",
        sim: |i| {
            shop(i).at(FAULT_AT, |s| {
                s.reload();
                s.p("api").servers[2].weight = 100.0;
            })
        },
        intervals: &[5.0, 15.0],
        alert: AlertName::TrafficSkew,
        pool: Some("api"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "a reload leaves one server in the pool",
        sim: |i| {
            shop(i).at(FAULT_AT, |s| {
                s.reload();
                for srv in s.p("web").servers.iter_mut().skip(1) {
                    srv.listed = false;
                }
            })
        },
        intervals: &[1.0, 5.0, 10.0],
        alert: AlertName::TrafficSkew,
        pool: Some("web"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "the first server takes 70% (balance first)",
        sim: |i| {
            Sim::new(1, i).pool("api", 7, 150.0).at(FAULT_AT, |s| {
                s.p("api").servers[0].share = 14.0;
            })
        },
        intervals: &[10.0],
        alert: AlertName::TrafficSkew,
        pool: Some("api"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "a 2 req/s pool sends everything to one server",
        sim: |i| {
            Sim::new(1, i)
                .pool("web", 6, 300.0)
                .pool("cron", 4, 2.0)
                .at(FAULT_AT, |s| {
                    for srv in s.p("cron").servers.iter_mut().skip(1) {
                        srv.share = 0.0;
                    }
                })
        },
        intervals: &[15.0],
        alert: AlertName::TrafficSkew,
        pool: Some("cron"),
        max_delay: 600.0,
        slow: true,
        floor_s: 15.0,
    },
    Fault {
        name: "a share creeping from 1/6 to 3/6 over 20 minutes",
        sim: |i| {
            let mut sim = Sim::new(1, i).pool("web", 6, 600.0);
            for k in 0..=80 {
                let t = FAULT_AT + 15.0 * f64::from(k);
                // share(t)/expected = 1 + 2t/1200 on server 3.
                let r = 1.0 + 2.0 * (15.0 * f64::from(k)) / 1200.0;
                sim = sim.at(t, move |s| {
                    // Raising one server's weight to w gives it w/(w+5).
                    let want = r / 6.0;
                    s.p("web").servers[2].share = 5.0 * want / (1.0 - want);
                });
            }
            sim
        },
        intervals: &[15.0],
        alert: AlertName::TrafficSkew,
        pool: Some("web"),
        max_delay: 600.0,
        slow: true,
        floor_s: 15.0,
    },
    Fault {
        name: "the LB blocks all traffic",
        sim: |i| shop(i).at(FAULT_AT, |s| s.target_rate = 0.002),
        intervals: &[1.0, 10.0, 15.0],
        alert: AlertName::TrafficDrop,
        pool: None,
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "a pool's 5xx ratio jumps to 15%",
        sim: |i| {
            shop(i).at(FAULT_AT, |s| {
                for srv in &mut s.p("api").servers {
                    srv.error_ratio = 0.15;
                }
            })
        },
        intervals: &[1.0, 10.0],
        alert: AlertName::ErrorSpike,
        pool: Some("api"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "a 5 req/s pool's 5xx ratio jumps to 10%",
        sim: |i| {
            Sim::new(1, i)
                .pool("web", 4, 400.0)
                .pool("cron", 3, 5.0)
                .at(FAULT_AT, |s| {
                    for srv in &mut s.p("cron").servers {
                        srv.error_ratio = 0.10;
                    }
                })
        },
        intervals: &[1.0, 15.0],
        alert: AlertName::ErrorSpike,
        pool: Some("cron"),
        max_delay: 3.0,
        slow: false,
        // ~0.5 errors a second: ~7 in 15 s is at the edge of proof.
        floor_s: 30.0,
    },
    Fault {
        name: "a 5 req/s pool's 5xx ratio jumps to 20%",
        sim: |i| {
            Sim::new(1, i)
                .pool("web", 4, 400.0)
                .pool("wiki", 3, 5.0)
                .at(FAULT_AT, |s| {
                    for srv in &mut s.p("wiki").servers {
                        srv.error_ratio = 0.20;
                    }
                })
        },
        intervals: &[10.0],
        alert: AlertName::ErrorSpike,
        pool: Some("wiki"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "a 0.4 req/s pool's 5xx ratio goes from 0.2% to 20%",
        sim: |i| {
            let mut sim = Sim::new(1, i).pool("web", 4, 400.0).pool("cron", 2, 0.4);
            for srv in &mut sim.p("cron").servers {
                srv.error_ratio = 0.002;
            }
            sim.at(FAULT_AT, |s| {
                for srv in &mut s.p("cron").servers {
                    srv.error_ratio = 0.20;
                }
            })
        },
        intervals: &[1.0, 10.0, 15.0],
        alert: AlertName::ErrorSpike,
        pool: Some("cron"),
        max_delay: 600.0,
        slow: true,
        floor_s: 15.0,
    },
    Fault {
        name: "5xx jump tenfold (0.1% to 1%) on a busy pool",
        sim: |i| {
            shop(i).at(FAULT_AT, |s| {
                for srv in &mut s.p("web").servers {
                    srv.error_ratio = 0.01;
                }
            })
        },
        intervals: &[5.0],
        alert: AlertName::ErrorSpike,
        pool: Some("web"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "one server of 20 goes from 0.1% to 4% 5xx",
        sim: |i| {
            Sim::new(1, i).pool("api", 20, 4000.0).at(FAULT_AT, |s| {
                s.p("api").servers[11].error_ratio = 0.04;
            })
        },
        intervals: &[10.0],
        alert: AlertName::ErrorSpike,
        pool: Some("api"),
        max_delay: 600.0,
        slow: true,
        floor_s: 15.0,
    },
    Fault {
        name: "every server but one fails its health check",
        sim: |i| {
            shop(i).at(FAULT_AT, |s| {
                for srv in s.p("web").servers.iter_mut().skip(1) {
                    srv.up = false;
                }
            })
        },
        intervals: &[10.0],
        alert: AlertName::ServerDown,
        pool: Some("web"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "every server of a pool is down",
        sim: |i| {
            shop(i).at(FAULT_AT, |s| {
                for srv in &mut s.p("api").servers {
                    srv.up = false;
                }
            })
        },
        intervals: &[5.0],
        alert: AlertName::PoolUnavailable,
        pool: Some("api"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "three servers fail their checks, the fourth is in maintenance",
        sim: |i| {
            shop(i).at(FAULT_AT, |s| {
                let servers = &mut s.p("api").servers;
                for srv in servers.iter_mut().skip(1) {
                    srv.up = false;
                }
                servers[0].weight = 0.0;
            })
        },
        intervals: &[5.0],
        alert: AlertName::PoolUnavailable,
        pool: Some("api"),
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
    Fault {
        name: "the stats endpoint stops answering",
        sim: |i| shop(i).at(FAULT_AT, |s| s.failing = 1000),
        intervals: &[1.0, 5.0, 15.0],
        alert: AlertName::ScrapeFailed,
        pool: None,
        max_delay: 3.0,
        slow: false,
        floor_s: 15.0,
    },
];

#[test]
fn every_fault_fires_in_time() {
    for f in FAULTS {
        check_fault(f);
    }
}

#[test]
fn a_counter_reset_is_quiet() {
    check_quiet(
        "reloads",
        |i| {
            shop(i)
                .at(700.0, |s| s.reload())
                .at(1300.0, |s| s.reload())
                .at(1311.0, |s| s.reload())
        },
        &[1.0, 5.0, 15.0],
        2400.0,
    );
}

#[test]
fn autoscaling_is_quiet() {
    check_quiet(
        "autoscaling",
        |i| {
            Sim::new(1, i)
                .pool("web", 12, 1200.0)
                .at(700.0, |s| {
                    for n in ["web-13", "web-14"] {
                        let srv = s.new_server(n);
                        s.p("web").servers.push(srv);
                    }
                })
                .at(1500.0, |s| {
                    s.p("web").servers[0].listed = false;
                    s.p("web").servers[5].listed = false;
                })
        },
        &[1.0, 15.0],
        2400.0,
    );
}

#[test]
fn a_canary_with_a_small_weight_is_quiet() {
    check_quiet(
        "canary",
        |i| {
            let mut sim = Sim::new(1, i).pool("api", 8, 600.0);
            for srv in &mut sim.p("api").servers {
                srv.weight = 100.0;
            }
            sim.at(600.0, |s| {
                let mut c = s.new_server("api-canary");
                c.weight = 5.0;
                s.p("api").servers.push(c);
            })
            .at(1800.0, |s| s.p("api").server("api-canary").listed = false)
        },
        &[5.0, 10.0],
        2400.0,
    );
}

#[test]
fn a_drained_server_is_quiet() {
    check_quiet(
        "drain",
        |i| {
            Sim::new(1, i)
                .pool("web", 4, 400.0)
                .at(800.0, |s| s.p("web").servers[1].weight = 0.0)
                .at(1100.0, |s| s.p("web").servers[1].weight = 1.0)
        },
        &[1.0, 5.0, 15.0],
        2000.0,
    );
}

#[test]
fn idle_backups_are_quiet() {
    check_quiet(
        "backups",
        |i| {
            let mut sim = Sim::new(1, i).pool("static", 4, 300.0);
            sim.p("static").servers[3].backup = true;
            sim
        },
        &[5.0],
        1800.0,
    );
}

#[test]
fn a_traffic_burst_is_quiet() {
    check_quiet(
        "burst",
        |i| {
            shop(i)
                .at(800.0, |s| s.target_rate = 4.0)
                .at(920.0, |s| s.target_rate = 1.0)
                .at(1500.0, |s| s.p("api").rate *= 3.0)
                .at(1560.0, |s| s.p("api").rate /= 3.0)
        },
        &[1.0, 10.0],
        2400.0,
    );
}

#[test]
fn a_night_time_low_is_quiet() {
    check_quiet(
        "night",
        |i| {
            let mut sim = shop(i);
            // Down to 30% of the day's traffic over 20 minutes, and back.
            for k in 0..=80 {
                let t = 300.0 + 30.0 * f64::from(k);
                let level = 0.3 + 0.7 * ((f64::from(k) - 40.0).abs() / 40.0);
                sim = sim.at(t, move |s| s.target_rate = level);
            }
            sim
        },
        &[5.0, 15.0],
        2800.0,
    );
}

#[test]
fn a_half_request_per_second_pool_is_quiet() {
    check_quiet(
        "0.5 req/s",
        |i| {
            Sim::new(1, i)
                .pool("admin", 2, 0.5)
                .pool("cron", 4, 2.0)
                .at(1000.0, |s| s.reload())
        },
        &[1.0, 5.0, 15.0],
        3600.0,
    );
}

#[test]
fn a_single_failed_scrape_is_quiet() {
    check_quiet(
        "one failed scrape",
        |i| {
            shop(i)
                .at(700.0, |s| s.failing = 1)
                .at(1200.0, |s| s.failing = 2)
        },
        &[1.0, 15.0],
        1800.0,
    );
}

#[test]
fn a_server_running_30_percent_hot_is_quiet() {
    check_quiet(
        "hot server",
        |i| {
            Sim::new(1, i)
                .pool("web", 3, 500.0)
                .pool("edge", 20, 8000.0)
                .at(700.0, |s| s.p("web").servers[0].share = 1.4)
                .at(1000.0, |s| s.p("web").servers[0].share = 1.0)
                .at(1100.0, |s| s.p("edge").servers[4].share = 1.4)
                .at(1400.0, |s| s.p("edge").servers[4].share = 1.0)
        },
        &[1.0, 15.0],
        2000.0,
    );
}

#[test]
fn a_handful_of_errors_in_one_interval_is_quiet() {
    check_quiet(
        "error blip",
        |i| {
            let mut sim = shop(i);
            for (t, n) in [(700.0, 10), (1000.0, 6), (1300.0, 9), (1301.0, 3)] {
                sim = sim.at(t, move |s| s.blip("api", 1, n));
            }
            sim
        },
        &[1.0, 10.0],
        1800.0,
    );
}

#[test]
fn membership_changes_are_reported_as_info() {
    let mut sim = Sim::new(1, 5.0)
        .pool("web", 12, 1200.0)
        .at(700.0, |s| s.p("web").servers[0].listed = false);
    let run = support::sim::detect(&sim.samples(1200.0));
    let changes: Vec<_> = run
        .events
        .iter()
        .filter(|e| e.alert == AlertName::PoolMembershipChanged)
        .collect();
    assert_eq!(changes.len(), 2, "{}", run.describe());
    assert_eq!(changes[0].state, AlertState::Firing);
    assert_eq!(changes[0].severity, Severity::Info);
    let summary = changes[0].summary.as_deref().unwrap();
    assert!(
        summary.contains("1 of 12 servers left (web-1)"),
        "{summary}"
    );
    assert_eq!(changes[1].state, AlertState::Resolved);
}

/// The shop, with a reload that gives api-3 weight 100 instead of 1 for ten
/// minutes.
fn typo_weight_for_ten_minutes() -> Sim {
    shop(5.0)
        .at(FAULT_AT, |s| {
            s.reload();
            s.p("api").servers[2].weight = 100.0;
        })
        .at(FAULT_AT + 600.0, |s| {
            s.reload();
            s.p("api").servers[2].weight = 1.0;
        })
}

#[test]
fn alerts_say_what_is_wrong_with_numbers_and_resolve_once() {
    let mut sim = typo_weight_for_ten_minutes();
    let run = detect(&sim.samples(FAULT_AT + 1200.0));
    let skew: Vec<_> = run
        .events
        .iter()
        .filter(|e| e.alert == AlertName::TrafficSkew)
        .collect();
    assert_eq!(skew.len(), 2, "{}", run.describe());
    let s = skew[0].summary.as_deref().unwrap();
    for part in [
        "pool api",
        "api-3",
        "usually 4.0",
        "req/s",
        "since 14:15:0",
        "the LB reloaded",
        "api-3 weight 1 -> 100",
    ] {
        assert!(s.contains(part), "{part:?} missing from {s:?}");
    }
    assert!(skew[0].value.unwrap() > 0.9);
    assert_eq!(skew[1].state, AlertState::Resolved);
}

#[test]
fn a_hard_fault_fires_on_the_first_or_second_sample_after_a_start() {
    // lbwatch just (re)started: weight checks work from the second sample.
    let mut sim = Sim::new(1, 10.0).pool("web", 4, 400.0).at(0.0, |s| {
        for srv in s.p("web").servers.iter_mut().skip(1) {
            srv.share = 0.0;
        }
    });
    let run = detect(&sim.samples(60.0));
    let d = run.fired_after(AlertName::TrafficSkew, Some("web"), 0.0);
    assert!(d.is_some_and(|d| d <= 31.0), "{d:?}\n{}", run.describe());
}

#[test]
fn a_detector_restored_from_a_snapshot_continues_exactly() {
    // Restarted in the middle of a fault, or after it: the restored
    // detector emits exactly what the uninterrupted one does, and knows what
    // is firing.
    let mut sim = typo_weight_for_ten_minutes();
    let samples = sim.samples(FAULT_AT + 1200.0);
    let whole = detect(&samples).events;
    assert!(whole.len() >= 2, "{whole:?}");
    let fired_at = samples
        .iter()
        .position(|s| s.ts == whole[0].ts)
        .expect("the firing sample");
    for cut in [fired_at / 2, fired_at + 1, fired_at + 30, samples.len() - 5] {
        let mut first = lbwatch::detect::Detector::new(Default::default());
        let mut events: Vec<_> = samples[..cut]
            .iter()
            .flat_map(|s| first.observe(s))
            .collect();
        let snapshot = first.snapshot(&samples[0].target).unwrap();
        let mut second = lbwatch::detect::Detector::new(Default::default());
        assert_eq!(second.restore(&snapshot).unwrap(), samples[0].target);
        let firing_before: Vec<_> = first.firing().cloned().collect();
        let firing_after: Vec<_> = second.firing().cloned().collect();
        assert_eq!(firing_before, firing_after, "cut at {cut}");
        events.extend(samples[cut..].iter().flat_map(|s| second.observe(s)));
        assert_eq!(events, whole, "cut at sample {cut}");
    }
    let mut d = lbwatch::detect::Detector::new(Default::default());
    assert!(d.restore(b"not a snapshot").is_err());
}

#[test]
fn pool_unavailable_says_which_servers_are_down_and_which_are_in_maintenance() {
    let mut sim = shop(5.0).at(FAULT_AT, |s| {
        let servers = &mut s.p("api").servers;
        for srv in servers.iter_mut().skip(1) {
            srv.up = false;
        }
        servers[0].weight = 0.0;
    });
    let run = detect(&sim.samples(FAULT_AT + 60.0));
    let e = run
        .events
        .iter()
        .find(|e| e.alert == AlertName::PoolUnavailable && e.state == AlertState::Firing)
        .unwrap_or_else(|| panic!("no PoolUnavailable:\n{}", run.describe()));
    let summary = e.summary.as_deref().unwrap();
    assert!(
        summary.starts_with(
            "no server of pool api can serve: of 4 listed, 3 down by the LB's health check (api-2, api-3, api-4) and 1 in maintenance or drained (api-1)"
        ),
        "{summary}"
    );
}

/// An alert on the optional signals resolves when its pool leaves the
/// stats, as the others do: nothing of a pool that is gone stays firing.
#[test]
fn signal_alerts_of_a_pool_that_leaves_the_stats_resolve() {
    let mut sim = Sim::new(7, 5.0).pool("web", 4, 200.0).with_signals(7);
    let mut samples = sim.samples(1200.0);
    for s in &mut sim.p("web").servers {
        s.sig.c4xx_ratio = 0.6;
    }
    samples.extend(sim.samples(120.0));
    for s in &mut sim.p("web").servers {
        s.listed = false;
    }
    samples.extend(sim.samples(60.0));
    let run = detect(&samples);
    let states: Vec<AlertState> = run
        .events
        .iter()
        .filter(|e| e.alert == AlertName::ClientErrorSpike)
        .map(|e| e.state)
        .collect();
    assert_eq!(
        states,
        [AlertState::Firing, AlertState::Resolved],
        "{}",
        run.describe()
    );
}
