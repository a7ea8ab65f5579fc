//! Unseen parameters: every fault kind, many times, with pool sizes, traffic
//! volumes, scrape intervals, magnitudes and timings drawn at random (seeded),
//! on top of a realistic background (daily cycle, bursts, hot servers, 5xx
//! blips, reloads, failed scrapes). The detector must find every fault within
//! its delay and page nobody outside the faults. Thresholds fitted to the
//! recorded scenarios fail here.

mod support;

use lbwatch::model::{AlertName, AlertState, Severity};
use support::sim::{background, detect, real_background, Cycle, Rng, Series, Sim, START};

/// Cases per kind; `LBWATCH_SWEEP_CASES` raises it for a longer search.
fn cases() -> u64 {
    std::env::var("LBWATCH_SWEEP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// Fresh cases per test and run (`LBWATCH_SWEEP_FRESH`, default 0): a
/// run of the test suite is deterministic, the regression seeds only; an
/// exploration draws fresh cases on purpose and adds what it finds to the
/// regressions once fixed.
fn fresh() -> u64 {
    std::env::var("LBWATCH_SWEEP_FRESH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// This run's seeds: the regression seeds `1..=cases()`, which every run
/// tries, then `fresh()` seeds from a base drawn anew each run, so every
/// run also tries cases no run tried before. The base is printed;
/// `LBWATCH_SWEEP_BASE=B` runs those cases again, and a failure names its
/// case's seed, which `LBWATCH_SWEEP_SEED=N` runs alone.
#[allow(clippy::print_stderr, clippy::disallowed_methods)] // the base, for a human; test code may read the clock
fn seeds(test: &str) -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = var("LBWATCH_SWEEP_SEED") {
        return vec![seed];
    }
    let base = var("LBWATCH_SWEEP_BASE").unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // Past the regression seeds, and small enough that `seed * 1000`
        // cannot overflow.
        1_000_000 + u64::from(nanos % 1_000_000_000)
    });
    eprintln!("sweep {test}: LBWATCH_SWEEP_BASE={base}");
    (1..=cases()).chain(base + 1..=base + fresh()).collect()
}

struct Case {
    sim: Sim,
    interval: f64,
    start: f64,
    end: f64,
    /// Each expected alert (any of the names) with its pool and max delay.
    expect: Vec<(Vec<AlertName>, Option<String>, f64, f64)>,
    what: String,
}

fn log_uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + (hi.ln() - lo.ln()) * rng.uniform()).exp()
}

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[(rng.next_u64() % xs.len() as u64) as usize]
}

fn range(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize
}

/// A target with the pool under test ("app") and a neighbour.
fn target(rng: &mut Rng, interval: f64, k: usize, rate: f64) -> Sim {
    let mut sim = Sim::new(rng.next_u64(), interval)
        .pool("app", k, rate)
        .pool("other", range(rng, 2, 8), log_uniform(rng, 0.5, 3000.0));
    let e = log_uniform(rng, 1e-4, 5e-3);
    for s in &mut sim.p("app").servers {
        s.error_ratio = e;
    }
    sim
}

fn fast(interval: f64) -> f64 {
    (3.0 * interval).max(15.0)
}

/// The traffic a case runs on: a synthetic daily cycle, or a stretch of a
/// real series (with three hours of it before the fault).
#[derive(Clone, Copy)]
enum Backdrop<'a> {
    Synthetic,
    Real(&'a [Series]),
}

fn case(kind: &str, seed: u64, backdrop: Backdrop) -> Case {
    let mut rng = Rng::new(seed * 1000 + kind.len() as u64);
    let interval = pick(&mut rng, &[1.0, 5.0, 10.0, 15.0]);
    let history = match backdrop {
        Backdrop::Synthetic => 900.0,
        Backdrop::Real(_) => 3.0 * 3600.0,
    };
    let start = history + 600.0 * rng.uniform();
    let mut end = start + 300.0 + 900.0 * rng.uniform();
    let app = Some("app".to_string());
    let skew = vec![AlertName::TrafficSkew];
    let (sim, expect, what) = match kind {
        "vanish" => {
            let (k, rate) = (range(&mut rng, 3, 12), log_uniform(&mut rng, 30.0, 8000.0));
            let err = 0.05 + 0.25 * rng.uniform();
            let sim = target(&mut rng, interval, k, rate)
                .at(start, |s| {
                    s.reload();
                    for srv in s.p("app").servers.iter_mut().skip(1) {
                        srv.listed = false;
                    }
                })
                .at(start + 60.0, move |s| {
                    s.p("app").servers[0].error_ratio = err
                })
                .at(end, |s| {
                    s.reload();
                    for srv in &mut s.p("app").servers {
                        srv.listed = true;
                        srv.error_ratio = 0.001;
                    }
                });
            let expect = vec![
                (skew, app.clone(), start, fast(interval)),
                (
                    vec![AlertName::ErrorSpike],
                    app,
                    start + 60.0,
                    fast(interval),
                ),
            ];
            (sim, expect, format!("k={k} rate={rate:.0} err={err:.2}"))
        }
        "down" => {
            let (k, rate) = (range(&mut rng, 3, 12), log_uniform(&mut rng, 30.0, 8000.0));
            let sim = target(&mut rng, interval, k, rate)
                .at(start, |s| {
                    for srv in s.p("app").servers.iter_mut().skip(1) {
                        srv.up = false;
                    }
                })
                .at(end, |s| {
                    for srv in &mut s.p("app").servers {
                        srv.up = true;
                    }
                });
            let names = vec![
                AlertName::ServerDown,
                AlertName::TrafficSkew,
                AlertName::PoolUnavailable,
            ];
            (
                sim,
                vec![(names, app, start, fast(interval))],
                format!("k={k} rate={rate:.0}"),
            )
        }
        "hash" => {
            let (k, rate) = (range(&mut rng, 3, 20), log_uniform(&mut rng, 30.0, 10000.0));
            let sim = target(&mut rng, interval, k, rate)
                .at(start, move |s| {
                    s.p("app").servers[1].share = 70.0 * k as f64
                })
                .at(end, |s| s.p("app").servers[1].share = 1.0);
            (
                sim,
                vec![(skew, app, start, fast(interval))],
                format!("k={k} rate={rate:.0}"),
            )
        }
        "hash_on_algo_pool" => {
            // A pool balanced by source hash: uneven by design, judged
            // against its own history; then a constant key sends all to one.
            let (k, rate) = (range(&mut rng, 3, 12), log_uniform(&mut rng, 30.0, 8000.0));
            let mut sim = target(&mut rng, interval, k, rate);
            sim.p("app").algo = Some(pick(&mut rng, &["source", "leastconn", "uri"]).to_string());
            for srv in &mut sim.p("app").servers {
                srv.share = 0.5 + 1.2 * rng.uniform();
            }
            let before = sim.p("app").servers[0].share;
            let sim = sim
                .at(start, move |s| {
                    s.p("app").servers[0].share = 70.0 * k as f64
                })
                .at(end, move |s| s.p("app").servers[0].share = before);
            (
                sim,
                vec![(skew, app, start, fast(interval))],
                format!("k={k} rate={rate:.0}"),
            )
        }
        "uneven_first" => {
            let (k, rate) = (range(&mut rng, 4, 10), log_uniform(&mut rng, 30.0, 5000.0));
            let top = 0.6 + 0.2 * rng.uniform();
            let sim = target(&mut rng, interval, k, rate)
                .at(start, move |s| {
                    s.reload();
                    s.p("app").servers[0].share = top / (1.0 - top) * (k as f64 - 1.0);
                })
                .at(end, |s| {
                    s.reload();
                    s.p("app").servers[0].share = 1.0;
                });
            (
                sim,
                vec![(skew, app, start, fast(interval))],
                format!("k={k} rate={rate:.0} top={top:.2}"),
            )
        }
        "starved" => {
            let (k, rate) = (
                range(&mut rng, 10, 20),
                log_uniform(&mut rng, 300.0, 8000.0),
            );
            let sim = target(&mut rng, interval, k, rate)
                .at(start, |s| s.p("app").servers[2].share = 0.01)
                .at(end, |s| s.p("app").servers[2].share = 1.0);
            (
                sim,
                vec![(skew, app, start, fast(interval))],
                format!("k={k} rate={rate:.0}"),
            )
        }
        "weight_typo" => {
            let (k, rate) = (range(&mut rng, 3, 10), log_uniform(&mut rng, 30.0, 5000.0));
            let sim = target(&mut rng, interval, k, rate)
                .at(start, |s| {
                    s.reload();
                    s.p("app").servers[1].weight = 100.0;
                })
                .at(end, |s| {
                    s.reload();
                    s.p("app").servers[1].weight = 1.0;
                });
            (
                sim,
                vec![(skew, app, start, fast(interval))],
                format!("k={k} rate={rate:.0}"),
            )
        }
        "blocked" => {
            let (k, rate) = (range(&mut rng, 2, 10), log_uniform(&mut rng, 30.0, 8000.0));
            let sim = target(&mut rng, interval, k, rate)
                .at(start, |s| s.target_rate = 0.002)
                .at(end, |s| s.target_rate = 1.0);
            let expect = vec![(vec![AlertName::TrafficDrop], None, start, fast(interval))];
            (sim, expect, format!("k={k} rate={rate:.0}"))
        }
        "unreachable" => {
            let (k, rate) = (range(&mut rng, 2, 10), log_uniform(&mut rng, 1.0, 8000.0));
            let n = ((end - start) / interval) as u32;
            let sim = target(&mut rng, interval, k, rate).at(start, move |s| s.failing = n);
            let expect = vec![(vec![AlertName::ScrapeFailed], None, start, fast(interval))];
            (sim, expect, format!("k={k} rate={rate:.0}"))
        }
        "error_spike_pool" => {
            let (k, rate) = (range(&mut rng, 2, 12), log_uniform(&mut rng, 50.0, 8000.0));
            let err = 0.1 + 0.2 * rng.uniform();
            let sim = target(&mut rng, interval, k, rate)
                .at(start, move |s| {
                    for srv in &mut s.p("app").servers {
                        srv.error_ratio = err;
                    }
                })
                .at(end, |s| {
                    for srv in &mut s.p("app").servers {
                        srv.error_ratio = 0.001;
                    }
                });
            let expect = vec![(vec![AlertName::ErrorSpike], app, start, fast(interval))];
            (sim, expect, format!("k={k} rate={rate:.0} err={err:.2}"))
        }
        "error_spike_subtle" => {
            let (k, rate) = (
                range(&mut rng, 15, 25),
                log_uniform(&mut rng, 1000.0, 8000.0),
            );
            let err = 0.03 + 0.02 * rng.uniform();
            let sim = target(&mut rng, interval, k, rate)
                .at(start, move |s| s.p("app").servers[4].error_ratio = err)
                .at(end, |s| s.p("app").servers[4].error_ratio = 0.001);
            let expect = vec![(vec![AlertName::ErrorSpike], app, start, 600.0)];
            (sim, expect, format!("k={k} rate={rate:.0} err={err:.3}"))
        }
        "slow_skew" => {
            let (k, rate) = (range(&mut rng, 3, 10), log_uniform(&mut rng, 100.0, 5000.0));
            let ramp = 600.0 + 600.0 * rng.uniform();
            let mut sim = target(&mut rng, interval, k, rate);
            let kf = k as f64;
            let mut t = 0.0;
            while t <= ramp {
                let want = (1.0 + 2.0 * t / ramp) / kf;
                sim = sim.at(start + t, move |s| {
                    s.p("app").servers[2].share = (kf - 1.0) * want / (1.0 - want);
                });
                t += 15.0;
            }
            end = end.max(start + ramp + 120.0);
            sim = sim.at(end, |s| s.p("app").servers[2].share = 1.0);
            let expect = vec![(skew, app, start, 600.0)];
            (sim, expect, format!("k={k} rate={rate:.0} ramp={ramp:.0}"))
        }
        "low_traffic_skew" => {
            let rate = 1.0 + 2.0 * rng.uniform();
            let sim = target(&mut rng, interval, 4, rate)
                .at(start, |s| {
                    for srv in s.p("app").servers.iter_mut().skip(1) {
                        srv.share = 0.0;
                    }
                })
                .at(end, |s| {
                    for srv in &mut s.p("app").servers {
                        srv.share = 1.0;
                    }
                });
            (
                sim,
                vec![(skew, app, start, 600.0)],
                format!("rate={rate:.1}"),
            )
        }
        _ => signal_case(kind, &mut rng, interval, (start, &mut end)),
    };
    let end = end.max(start + 60.0);
    let (sim, expect, what) = match backdrop {
        Backdrop::Synthetic => {
            // The LB's average moves per request: at the cycle's low it
            // moves that much slower.
            let level = Cycle::of(seed).level(start).clamp(0.1, 1.0);
            let expect = expect
                .into_iter()
                .map(|(names, pool, at, max)| {
                    // So does the count of refused connections.
                    let slower = names.contains(&AlertName::LatencySpike) || kind == "conn_errors";
                    (names, pool, at, if slower { max / level } else { max })
                })
                .collect();
            let sim = background(sim, seed, end + 900.0, (start, end + 300.0));
            (sim, expect, what)
        }
        Backdrop::Real(all) => {
            let series = &all[(rng.next_u64() % all.len() as u64) as usize];
            let offset = 3600.0 + (series.span() - end - 4600.0) * rng.uniform();
            // A blocked LB may take as long as the series' own lulls, plus
            // two intervals, to tell from one (as in the recorded ones).
            let lull = series.longest_lull(offset, offset + end);
            // The LB's average response time moves per request, and
            // refused connections come per request: at a low of the series
            // they show that much slower.
            let level = series.level(offset + start).clamp(0.1, 1.0);
            let expect = expect
                .into_iter()
                .map(|(names, pool, at, max)| {
                    let max = if names.contains(&AlertName::TrafficDrop) {
                        max.max(lull + 2.0 * interval)
                    } else if names.contains(&AlertName::LatencySpike) || kind == "conn_errors" {
                        max / level
                    } else {
                        max
                    };
                    (names, pool, at, max)
                })
                .collect();
            let sim = real_background(sim, seed, series, offset, end + 900.0, (start, end + 300.0));
            let what = format!(
                "{what} on {} from {offset:.0}s (lull {lull:.0}s)",
                series.name
            );
            (sim, expect, what)
        }
    };
    Case {
        sim,
        interval,
        start,
        end,
        expect,
        what: format!("{kind} seed={seed} interval={interval} {what}"),
    }
}

type Built = (Sim, Vec<(Vec<AlertName>, Option<String>, f64, f64)>, String);

/// The faults of the optional signals, on a target that publishes them.
/// `end` may be moved later: a slowdown must last until the LB's average
/// can show it.
fn signal_case(
    kind: &str,
    rng: &mut Rng,
    interval: f64,
    (start, end_at): (f64, &mut f64),
) -> Built {
    let end = *end_at;
    let app = Some("app".to_string());
    let (k, rate) = (range(rng, 3, 12), log_uniform(rng, 20.0, 5000.0));
    let mut sim = target(rng, interval, k, rate).with_signals(rng.next_u64());
    let at_least = |n: f64, secs: f64| (n * interval).max(secs);
    match kind {
        "latency_server" => {
            let factor = 3.0 + 17.0 * rng.uniform();
            let mut sim = sim;
            let base = sim.p("app").servers[1].sig.latency_ms;
            let slow = (base * factor).max(base + 150.0);
            // The LB's average reaches 3x and +100 ms after this many
            // requests of the server (at 0.75x its expected rate).
            let need = ((3.0 * base).max(base + 100.0) - base) / (slow - base);
            let requests = -1024.0 * (1.0 - need.min(0.99)).ln();
            let server_rate = 0.75 * rate / k as f64;
            let max = (requests / server_rate + 3.0 * interval).max(at_least(3.0, 15.0));
            // At the cycle's low it takes up to ten times as long.
            *end_at = end.max(start + 10.0 * max + 60.0);
            let end = *end_at;
            let sim = sim
                .at(start, move |s| s.p("app").servers[1].sig.latency_ms = slow)
                .at(end, move |s| s.p("app").servers[1].sig.latency_ms = base);
            let expect = vec![(vec![AlertName::LatencySpike], app, start, max)];
            (
                sim,
                expect,
                format!("k={k} rate={rate:.0} {base:.0}->{slow:.0} ms"),
            )
        }
        "saturation" => {
            // A limit typo'd down at runtime: 200 -> 2.
            let sim = sim
                .at(start, |s| s.p("app").servers[0].sig.limit = Some(2.0))
                .at(end, |s| s.p("app").servers[0].sig.limit = None);
            let expect = vec![(vec![AlertName::Saturation], app, start, at_least(5.0, 30.0))];
            // It needs sessions to pin: a server with about fifty in flight
            // (a few at the lows of real traffic), whose peers have the
            // room for that.
            let sim = sim.at(0.0, move |s| {
                for srv in &mut s.p("app").servers {
                    srv.sig.latency_ms = srv.sig.latency_ms.max(50_000.0 * k as f64 / rate);
                    srv.sig.avg_ms = srv.sig.latency_ms;
                    srv.sig.limit = srv.sig.limit.map(|l| l.max(5_000.0));
                }
            });
            (sim, expect, format!("k={k} rate={rate:.0}"))
        }
        "conn_errors" => {
            let refuse = 0.1 + 0.5 * rng.uniform();
            let sim = sim
                .at(start, move |s| s.p("app").servers[0].sig.refuse = refuse)
                .at(end, |s| s.p("app").servers[0].sig.refuse = 0.0);
            // Longer when fewer than ten would show in three intervals.
            let per_s = rate / k as f64 * refuse / (1.0 - refuse);
            let max = at_least(3.0, 15.0).max(10.0 / per_s.max(1e-9) + 2.0 * interval);
            let expect = vec![(vec![AlertName::ErrorSpike], app, start, max)];
            (
                sim,
                expect,
                format!("k={k} rate={rate:.0} refuse={refuse:.2}"),
            )
        }
        "route_404" => {
            // Another pool's route lands here and answers 404.
            let share = 0.3 + 0.6 * rng.uniform();
            let before = sim.clone_c4xx("app");
            let sim = sim
                .at(start, move |s| {
                    for srv in &mut s.p("app").servers {
                        srv.sig.c4xx_ratio = share;
                    }
                })
                .at(end, move |s| {
                    for srv in &mut s.p("app").servers {
                        srv.sig.c4xx_ratio = before;
                    }
                });
            let expect = vec![(
                vec![AlertName::ClientErrorSpike],
                app,
                start,
                at_least(3.0, 15.0),
            )];
            (sim, expect, format!("k={k} rate={rate:.0} 4xx={share:.2}"))
        }
        "flapping" => {
            let downs = range(rng, 4, 8);
            let period = (1.2 * interval).max(5.0) + 20.0 * rng.uniform();
            let mut sim = sim;
            let mut t = start;
            let mut fourth = start;
            for i in 0..downs {
                sim = sim
                    .at(t, |s| s.p("app").servers[0].up = false)
                    .at(t + period, |s| s.p("app").servers[0].up = true);
                if i == 3 {
                    fourth = t;
                }
                t += 2.0 * period;
            }
            let max = fourth - start + 3.0 * interval;
            let expect = vec![(vec![AlertName::ServerFlapping], app, start, max)];
            (
                sim,
                expect,
                format!("k={k} downs={downs} period={period:.0}"),
            )
        }
        "denied_all" => {
            let deny = 0.9 + 0.1 * rng.uniform();
            let sim = sim
                .at(start, move |s| {
                    s.target_rate = 1.0 - deny;
                    if let Some(f) = s.signals.as_mut() {
                        f.deny = deny;
                    }
                })
                .at(end, |s| {
                    s.target_rate = 1.0;
                    if let Some(f) = s.signals.as_mut() {
                        f.deny = 0.0;
                    }
                });
            let names = vec![AlertName::RequestsDenied, AlertName::TrafficDrop];
            let expect = vec![(names, None, start, at_least(3.0, 15.0))];
            (sim, expect, format!("k={k} rate={rate:.0} deny={deny:.2}"))
        }
        _ => unreachable!("unknown kind {kind}"),
    }
}

/// Returns (misses, false alarms), described.
#[allow(clippy::print_stderr)] // LBWATCH_SWEEP_SHOW prints a case for a human
fn run(mut c: Case) -> (Vec<String>, Vec<String>) {
    c.sim.snap_to_mid = true;
    let samples = c.sim.samples(c.end + 900.0);
    let run = detect(&samples);
    // Faults land half-way between scrapes: score against when they did.
    c.start = c.sim.applied_at(c.start);
    c.end = c.sim.applied_at(c.end);
    for e in &mut c.expect {
        e.2 = c.sim.applied_at(e.2);
    }
    let t = |e: &lbwatch::model::AlertEvent| e.ts.micros() as f64 / 1e6 - START as f64;
    let mut misses = Vec::new();
    for (names, pool, at, max) in &c.expect {
        let hit = run.events.iter().any(|e| {
            e.state == AlertState::Firing
                && names.contains(&e.alert)
                && (pool.is_none() || e.pool == *pool)
                && (*at..=at + max).contains(&t(e))
        });
        if !hit {
            misses.push(format!(
                "{}: no {names:?} within {max:.0} s of {at:.0}\n{}",
                c.what,
                run.describe()
            ));
        }
    }
    if std::env::var("LBWATCH_SWEEP_SHOW").is_ok_and(|v| c.what.starts_with(&v)) {
        eprintln!("{}\n{}", c.what, run.describe());
    }
    let false_alarms = run
        .events
        .iter()
        .filter(|e| e.state == AlertState::Firing && e.severity != Severity::Info)
        .filter(|e| !(c.start..=c.end + 300.0).contains(&t(e)))
        .map(|e| {
            format!(
                "{} (interval {}): false alarm at {:.0}: {}",
                c.what,
                c.interval,
                t(e),
                serde_json::to_string(e).unwrap()
            )
        })
        .collect();
    (misses, false_alarms)
}

fn check(kind: &str) {
    let real = Series::traffic();
    let mut problems = Vec::new();
    let mut on_real = RealTraffic::default();
    for seed in seeds(kind) {
        let (m, f) = run(case(kind, seed, Backdrop::Synthetic));
        problems.extend(m);
        problems.extend(f);
        let c = case(kind, seed, Backdrop::Real(&real));
        let hours = (c.end + 900.0) / 3600.0;
        let (m, f) = run(c);
        problems.extend(m);
        on_real.add(hours, f);
    }
    problems.extend(on_real.over_budget());
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// False alarms on real traffic, against a budget per simulated day: the
/// series' own dips sometimes fall as steeply and as deep as a blocked LB
/// for a few seconds, and at 1 s scrapes nothing tells the two apart but
/// time. lbwatch aims at none and accepts a tenth of what an on-call
/// engineer would tolerate (one a day): measured with 200 cases of each
/// kind, none in about 2,400 simulated hours of healthy real traffic and
/// none in the fault cases. The default run covers less than ten simulated
/// days per test, so it allows none.
#[derive(Default)]
struct RealTraffic {
    hours: f64,
    false_alarms: Vec<String>,
}

impl RealTraffic {
    const PER_DAY: f64 = 0.1;

    fn add(&mut self, hours: f64, false_alarms: Vec<String>) {
        self.hours += hours;
        self.false_alarms.extend(false_alarms);
    }

    fn over_budget(self) -> Vec<String> {
        let allowed = (Self::PER_DAY * self.hours / 24.0).floor() as usize;
        if self.false_alarms.len() <= allowed {
            return vec![];
        }
        let mut out = vec![format!(
            "{} false alarms in {:.0} simulated hours of real traffic, {allowed} allowed:",
            self.false_alarms.len(),
            self.hours
        )];
        out.extend(self.false_alarms);
        out
    }
}

#[test]
fn vanish_after_reload() {
    check("vanish");
}
#[test]
fn down_typo_addresses() {
    check("down");
}
#[test]
fn hash_constant_key() {
    check("hash");
}
#[test]
fn hash_on_a_pool_balanced_by_hash() {
    check("hash_on_algo_pool");
}
#[test]
fn uneven_first() {
    check("uneven_first");
}
#[test]
fn starved_server() {
    check("starved");
}
#[test]
fn weight_typo() {
    check("weight_typo");
}
#[test]
fn blocked_all() {
    check("blocked");
}
#[test]
fn lb_unreachable() {
    check("unreachable");
}
#[test]
fn error_spike_pool() {
    check("error_spike_pool");
}
#[test]
fn error_spike_subtle() {
    check("error_spike_subtle");
}
#[test]
fn slow_skew() {
    check("slow_skew");
}
#[test]
fn low_traffic_skew() {
    check("low_traffic_skew");
}

#[test]
fn latency_server() {
    check("latency_server");
}

#[test]
fn saturation_limit_typo() {
    check("saturation");
}

#[test]
fn connection_errors_hidden_by_retries() {
    check("conn_errors");
}

#[test]
fn route_sent_to_the_wrong_pool() {
    check("route_404");
}

#[test]
fn flapping_health_check() {
    check("flapping");
}

#[test]
fn frontend_denies_everyone() {
    check("denied_all");
}

/// Pools from 0.5 req/s to 20k req/s, one balanced by hash: healthy, for
/// hours, on `backdrop`.
fn healthy_case(seed: u64, backdrop: Backdrop) -> Case {
    let mut rng = Rng::new(seed);
    let interval = pick(&mut rng, &[1.0, 5.0, 10.0, 15.0]);
    let mut sim = Sim::new(seed, interval)
        .pool(
            "edge",
            range(&mut rng, 20, 40),
            log_uniform(&mut rng, 5000.0, 20000.0),
        )
        .pool(
            "web",
            range(&mut rng, 3, 12),
            log_uniform(&mut rng, 50.0, 3000.0),
        )
        .pool("admin", 2, 0.5)
        .pool(
            "cron",
            range(&mut rng, 2, 4),
            log_uniform(&mut rng, 1.0, 5.0),
        )
        .pool(
            "sessions",
            range(&mut rng, 3, 10),
            log_uniform(&mut rng, 20.0, 3000.0),
        );
    // Balanced by hash or least connections: uneven shares are normal.
    sim.p("sessions").algo =
        Some(pick(&mut rng, &["source", "leastconn", "hdr(host)"]).to_string());
    for srv in &mut sim.p("sessions").servers {
        srv.share = 0.5 + 1.2 * rng.uniform();
    }
    for p in &mut sim.pools {
        let e = log_uniform(&mut rng, 1e-4, 5e-3);
        for s in &mut p.servers {
            s.error_ratio = e;
        }
    }
    let sim = benign_signals(sim.with_signals(seed), seed);
    let never = (f64::MAX, f64::MAX);
    let (secs, sim, what) = match backdrop {
        Backdrop::Synthetic => {
            let secs = if interval < 5.0 { 3600.0 } else { 7200.0 };
            (secs, background(sim, seed, secs, never), String::new())
        }
        Backdrop::Real(all) => {
            // Half a day of a real series: its surges, dips and lulls.
            let secs = 12.0 * 3600.0;
            let series = &all[(rng.next_u64() % all.len() as u64) as usize];
            let offset = 3600.0 + (series.span() - secs - 3600.0) * rng.uniform();
            let sim = real_background(sim, seed, series, offset, secs, never);
            (secs, sim, format!(" on {} from {offset:.0}s", series.name))
        }
    };
    Case {
        sim,
        interval,
        start: f64::MAX,
        end: secs - 900.0,
        expect: vec![],
        what: format!("healthy seed={seed} interval={interval}{what}"),
    }
}

/// The optional signals' benign cousins, every few minutes from their own
/// random stream: a slow burst on one server for about an interval, and a
/// client scanning a busy pool for paths that answer 404. (A single flap
/// raises ServerDown, a warning this sweep would count; the recorded
/// scenarios allow it and check that ServerFlapping stays quiet.)
fn benign_signals(mut sim: Sim, seed: u64) -> Sim {
    let mut rng = Rng::new(seed ^ 0xbe41_9e00);
    let interval = sim.interval;
    let mut t = 300.0;
    while t < 12.0 * 3600.0 {
        let at = t;
        sim = if rng.next_u64().is_multiple_of(2) {
            let factor = 5.0 + 5.0 * rng.uniform();
            let server = (rng.next_u64() % 3) as usize;
            sim.at(at, move |s| {
                s.p("web").servers[server].sig.latency_ms *= factor
            })
            .at(at + interval, move |s| {
                s.p("web").servers[server].sig.latency_ms /= factor;
            })
        } else {
            // 0.3-0.8 req/s of 404s on a pool of thousands per second.
            let extra = (0.3 + 0.5 * rng.uniform()) / 5000.0;
            sim.at(at, move |s| {
                for srv in &mut s.p("edge").servers {
                    srv.sig.c4xx_ratio += extra;
                }
            })
            .at(at + 300.0, move |s| {
                for srv in &mut s.p("edge").servers {
                    srv.sig.c4xx_ratio -= extra;
                }
            })
        };
        t += 240.0 + 600.0 * rng.uniform();
    }
    sim
}

#[test]
fn healthy_for_hours_at_every_volume() {
    let mut problems = Vec::new();
    for seed in seeds("healthy") {
        let (_, f) = run(healthy_case(seed, Backdrop::Synthetic));
        problems.extend(f);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn healthy_for_half_a_day_of_real_traffic() {
    let real = Series::traffic();
    let mut on_real = RealTraffic::default();
    for seed in seeds("healthy_real") {
        let c = healthy_case(seed, Backdrop::Real(&real));
        let hours = (c.end + 900.0) / 3600.0;
        on_real.add(hours, run(c).1);
    }
    let problems = on_real.over_budget();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
