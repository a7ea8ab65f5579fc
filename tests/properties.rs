//! Properties that must hold for any traffic, checked on generated inputs.

mod support;

use lbwatch::model::{AlertName, SampleBody};
use proptest::prelude::*;
use support::sim::{detect, Rng, Sim};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// The order of rows within a sample never changes the output.
    #[test]
    fn server_order_never_changes_the_output(seed in 0u64..1_000, shuffle in 0u64..1_000, interval in 1.0f64..15.0) {
        let mut sim = Sim::new(seed, interval)
            .pool("web", 5, 300.0)
            .pool("api", 3, 40.0)
            .at(600.0, |s| s.reload())
            .at(900.0, |s| s.p("web").servers[1].share = 0.0);
        let samples = sim.samples(1200.0);
        let mut shuffled = samples.clone();
        let mut rng = Rng::new(shuffle);
        for s in &mut shuffled {
            if let SampleBody::Servers(rows) = &mut s.body {
                for i in (1..rows.len()).rev() {
                    rows.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
                }
            }
        }
        prop_assert_eq!(detect(&samples).events, detect(&shuffled).events);
    }

    /// Traffic drawn in proportion to the weights never raises TrafficSkew,
    /// at any volume, pool size, weights and interval.
    #[test]
    fn proportional_traffic_never_raises_skew(
        seed in 0u64..1_000,
        rate in prop_oneof![0.1f64..5.0, 5.0f64..500.0, 500.0f64..50_000.0],
        weights in prop::collection::vec(1u32..10, 2..40),
        interval in prop_oneof![Just(1.0f64), Just(5.0), Just(10.0), Just(15.0)],
    ) {
        let mut sim = Sim::new(seed, interval).pool("p", weights.len(), rate);
        sim.noise = 0.0;
        for (s, w) in sim.p("p").servers.iter_mut().zip(&weights) {
            s.weight = f64::from(*w);
        }
        for s in &mut sim.p("p").servers {
            // Pure multinomial traffic: no persistent bias either.
            s.share = 1.0;
        }
        sim.unbias();
        let run = detect(&sim.samples(1800.0_f64.min(600.0 * interval)));
        prop_assert!(
            run.fired_after(AlertName::TrafficSkew, None, 0.0).is_none(),
            "{}", run.describe()
        );
    }

    /// A counter reset (an LB reload or restart) never raises ErrorSpike or
    /// TrafficDrop, however many and whenever they come.
    #[test]
    fn counter_resets_never_raise_errors_or_drops(
        seed in 0u64..1_000,
        resets in prop::collection::vec(200.0f64..1700.0, 1..6),
        interval in prop_oneof![Just(1.0f64), Just(5.0), Just(15.0)],
    ) {
        let mut sim = Sim::new(seed, interval).pool("web", 6, 800.0).pool("api", 3, 20.0);
        for t in resets {
            sim = sim.at(t, |s| s.reload());
        }
        let run = detect(&sim.samples(1800.0));
        for alert in [AlertName::ErrorSpike, AlertName::TrafficDrop] {
            prop_assert!(run.fired_after(alert, None, 0.0).is_none(), "{}", run.describe());
        }
    }
}

/// Any sequence of samples, however hostile, is answered without a panic
/// (the tests build with overflow checks on) and with events that make
/// sense: long gaps, the clock stepping back, counters jumping up and down
/// and near 2^64, servers churning, weights of every size including NaN and
/// infinite ones, failed scrapes, several targets.
mod hostile {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use lbwatch::detect::{DetectConfig, Detector};
    use lbwatch::model::{AlertState, Sample, SampleBody, ServerStat, Timestamp};
    use proptest::prelude::*;

    /// pool, server, requests, 5xx, up, weight, backup
    type Row = (u8, u8, u64, u64, bool, f64, bool);

    fn row() -> impl Strategy<Value = Row> {
        (
            0u8..3,
            0u8..6,
            prop_oneof![0u64..10, 0u64..1_000_000, (u64::MAX - 1_000)..=u64::MAX],
            prop_oneof![0u64..10, 0u64..1_000_000, (u64::MAX - 1_000)..=u64::MAX],
            any::<bool>(),
            prop_oneof![
                Just(0.0),
                Just(1.0),
                0.0f64..1e6,
                Just(-1.0),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(f64::MAX)
            ],
            any::<bool>(),
        )
    }

    /// target, microseconds since the previous sample, rows (or a failure)
    fn sample() -> impl Strategy<Value = (u8, i64, Option<Vec<Row>>)> {
        (
            0u8..2,
            // The wall clock steps back too (an NTP correction on the live
            // path): such samples are set aside, never judged.
            prop_oneof![
                Just(0i64),
                1i64..2_000_000,
                1i64..1_000_000_000_000,
                -60_000_000i64..0
            ],
            prop::option::weighted(0.9, prop::collection::vec(row(), 0..12)),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn the_detector_never_panics(samples in prop::collection::vec(sample(), 1..200)) {
            let mut d = Detector::new(DetectConfig::default());
            let mut state = BTreeMap::new();
            let mut now = 1_700_000_000_000_000i64;
            for (target, gap, rows) in samples {
                now = now.saturating_add(gap);
                let body = match rows {
                    None => SampleBody::Error("refused".into()),
                    Some(rows) => SampleBody::Servers(
                        rows.into_iter()
                            .map(|(p, s, req, err, up, weight, backup)| ServerStat {
                                pool: Cow::Owned(format!("p{p}")),
                                server: Cow::Owned(format!("s{s}")),
                                requests_total: req,
                                responses_5xx_total: err,
                                up,
                                weight,
                                backup,
                                algo: (p == 2).then_some(Cow::Borrowed("leastconn")),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                };
                let s = Sample { ts: Timestamp::from_micros(now), target: Cow::Owned(format!("t{target}")), body, frontends: Vec::new() };
                for e in d.observe(&s) {
                    prop_assert!(e.value.is_none_or(f64::is_finite), "{e:?}");
                    // Summaries carry numbers people can read.
                    if let Some(text) = &e.summary {
                        prop_assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
                    }
                    // One firing, then one resolve, per alert: never two
                    // firings in a row, never a resolve of what is not firing.
                    let key = (e.target.clone(), e.alert, e.pool.clone(), e.server.clone());
                    let firing = e.state == AlertState::Firing;
                    let was = state.insert(key, firing).unwrap_or(false);
                    prop_assert!(was != firing, "{e:?} twice");
                }
            }
        }
    }
}
