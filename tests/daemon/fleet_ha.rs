//! High availability over a fleet, through the real binary: 300 targets
//! split between 3 shards of 2 replicas, each replica notifying a real,
//! clustered pair of Alertmanagers, a webhook and PagerDuty's API. A
//! replica killed in the middle of a fault loses no page and duplicates
//! none.

use super::*;
use serde_json::Value;
use support::receiver::{Received, Sink};
use support::tools;

const TARGETS: usize = 300;
const ROUTING_KEY: &str = "HAR0UT1NGKEY0123456789abcdef0123";

/// One replica's config: the whole fleet (`--shard` picks its part), both
/// Alertmanagers, and a webhook and PagerDuty path of its own.
fn replica_config(name: &str, port: u16, targets: &str, notifiers: &str) -> PathBuf {
    write_config(
        name,
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{targets}{notifiers}\n\
             [detection]\nresolve_after = \"3s\"\n[detection.skew]\nwindow = \"5s\"\n"
        ),
    )
}

/// How many Alertmanager notifications reached the receiver for `target`
/// with `status` (`firing` or `resolved`).
fn paged(received: &[Received], target: &str, status: &str) -> usize {
    received
        .iter()
        .filter(|r| r.path == "/am")
        .map(Received::json)
        .filter(|b| b["status"] == status)
        .filter(|b| {
            b["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["labels"]["target"] == target)
        })
        .count()
}

/// The webhook events of `target`'s TrafficSkew in the order they
/// arrived, from every replica: (path, id, state, dedup_key).
fn hooked(received: &[Received], target: &str) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for r in received.iter().filter(|r| r.path.starts_with("/hook/")) {
        for e in r.json()["events"].as_array().into_iter().flatten() {
            if e["target"] == target && e["alert"] == "TrafficSkew" {
                let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
                out.push((r.path.clone(), s("id"), s("state"), s("dedup_key")));
            }
        }
    }
    out
}

/// 300 targets, 3 shards × 2 replicas, one faulty LB per shard. In shard 0
/// a replica is killed (SIGKILL) as the fault starts, before it pages; in
/// shard 1 a replica is killed once the page went out, before the fault
/// ends; shard 2 keeps both. The Alertmanager pair pages each fault exactly
/// once and resolves it exactly once; the webhook events of both replicas
/// carry the same ids, so a receiver keeping the last id per key sees each
/// transition once; every PagerDuty event of a target has one dedup_key.
#[test]
fn killing_a_replica_mid_fault_loses_no_page_and_duplicates_none() {
    let healthy = fake_lb::start(Behaviour::Csv);
    let names: Vec<String> = (0..TARGETS).map(|i| format!("lb-{i:03}")).collect();
    let shards: Vec<lbwatch::cluster::Shard> =
        (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
    let faulty: Vec<String> = shards
        .iter()
        .map(|s| names.iter().find(|n| s.keeps(n)).unwrap().clone())
        .collect();
    let broken: Vec<fake_lb::FakeLb> = faulty
        .iter()
        .map(|_| fake_lb::start(Behaviour::Csv))
        .collect();
    let targets: String = names
        .iter()
        .map(|n| {
            let lb = faulty
                .iter()
                .position(|f| f == n)
                .map_or(&healthy, |i| &broken[i]);
            // Six processes scrape one fake LB about 600 times a second:
            // on a loaded machine its answers can take more than the
            // interval, which is no fault of the fleet under test.
            target(n, &lb.url, "timeout = \"5s\"")
        })
        .collect();
    let hook = Sink::start(200);
    let am_config = format!(
        "route:\n  receiver: hook\n  group_by: [alertname, target, pool]\n  group_wait: 1s\n  group_interval: 5s\n  repeat_interval: 4h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: '{}'\n",
        hook.url("/am")
    );
    let (g1, g2) = (free_port(), free_port());
    let (p1, p2) = (free_port(), free_port());
    let am1 = tools::alertmanager(&scratch("ha-am1"), &am_config, p1, Some((g1, &[g2])));
    let am2 = tools::alertmanager(&scratch("ha-am2"), &am_config, p2, Some((g2, &[g1])));
    tools::wait_cluster(&[&am1, &am2], 2);
    let key = scratch("ha-pd.key");
    std::fs::write(&key, ROUTING_KEY).unwrap();

    // replicas[shard][replica]: (its HTTP port, the process).
    let mut replicas: Vec<Vec<(u16, Option<Running>)>> = Vec::new();
    for shard in 0..3 {
        let mut two = Vec::new();
        for replica in 0..2 {
            let notifiers = format!(
                "[[notifiers]]\nkind = \"alertmanager\"\nurls = [\"{}\", \"{}\"]\nresend_interval = \"2s\"\n\
                 [[notifiers]]\nkind = \"webhook\"\nurl = \"{}\"\n\
                 [[notifiers]]\nkind = \"pagerduty\"\nurl = \"{}\"\nrouting_key_file = \"{}\"\n",
                am1.url(),
                am2.url(),
                hook.url(&format!("/hook/{shard}/{replica}")),
                hook.url(&format!("/pd/{shard}/{replica}")),
                key.display()
            );
            let port = free_port();
            let cfg = replica_config(
                &format!("ha-{shard}-{replica}.toml"),
                port,
                &targets,
                &notifiers,
            );
            let arg = format!("{shard}/3");
            let cfg = cfg.to_str().unwrap().to_string();
            let run =
                Running::start_in(&["run", "--config", &cfg, "--shard", &arg], &fresh_state());
            two.push((port, Some(run)));
        }
        replicas.push(two);
    }

    // Every target is watched by exactly the two replicas of its shard.
    let mut watchers: std::collections::BTreeMap<String, usize> = Default::default();
    for (shard, two) in replicas.iter().enumerate() {
        let want: Vec<String> = names
            .iter()
            .filter(|n| shards[shard].keeps(n))
            .cloned()
            .collect();
        for (port, _) in two {
            let got = tools::eventually(Duration::from_secs(30), || {
                let w = super::fleet::watched(*port);
                (w == want).then_some(w)
            });
            let got = got.unwrap_or_else(|| {
                panic!(
                    "shard {shard} on port {port} watches {:?}",
                    super::fleet::watched(*port)
                )
            });
            for n in got {
                *watchers.entry(n).or_default() += 1;
            }
        }
    }
    assert_eq!(watchers.len(), TARGETS, "a target no process watches");
    assert!(watchers.values().all(|n| *n == 2), "{watchers:?}");

    for lb in &broken {
        lb.wait_scraped(12);
    }
    for lb in &broken {
        lb.skew();
    }
    // Shard 0 loses a replica as its fault starts.
    replicas[0][0].1.take().unwrap().kill_9();
    let paged_all = |status: &str| {
        hook.wait(Duration::from_secs(60), |r| {
            faulty.iter().all(|f| paged(r, f, status) >= 1)
        })
    };
    let firing = hook.wait(Duration::from_secs(60), |r| {
        paged(r, &faulty[1], "firing") >= 1
    });
    assert!(
        firing,
        "shard 1's fault was not paged: {:?}",
        hook.received()
    );
    // Shard 1 loses a replica after its page, before the fault ends.
    replicas[1][1].1.take().unwrap().kill_9();
    assert!(
        paged_all("firing"),
        "not every fault was paged: {:?}",
        hook.received()
    );
    // Long enough for a second page to arrive, had the cluster or the
    // replicas sent one (peer timeout 2 s, resends every 2 s).
    std::thread::sleep(Duration::from_secs(10));
    for lb in &broken {
        lb.heal();
    }
    let resolved = paged_all("resolved");
    std::thread::sleep(Duration::from_secs(10));
    for two in &mut replicas {
        for (_, run) in two.iter_mut() {
            if let Some(r) = run.take() {
                r.stop();
            }
        }
    }
    let received = hook.received();
    let log: Vec<String> = received
        .iter()
        .map(|r| format!("{} {}", r.path, r.body))
        .collect();
    std::fs::write(artifact("fleet-ha-received.txt"), log.join("\n")).unwrap();
    assert!(resolved, "not every fault was resolved: {received:?}");

    for f in &faulty {
        assert_eq!(paged(&received, f, "firing"), 1, "{f} paged more than once");
        assert_eq!(
            paged(&received, f, "resolved"),
            1,
            "{f} resolved more than once"
        );
    }
    let others: Vec<String> = received
        .iter()
        .filter(|r| r.path == "/am")
        .flat_map(|r| r.json()["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| a["labels"]["target"].as_str().unwrap_or("").to_string())
        .filter(|t| !faulty.contains(t))
        .collect();
    assert!(others.is_empty(), "healthy targets paged: {others:?}");

    webhook_ids_dedupe_the_replicas(&received, &faulty);
    pagerduty_keys_are_the_targets(&received, &faulty);
}

/// Both replicas' webhook events of a transition carry one id: keeping the
/// last id per dedup_key leaves each fault's firing and resolve once.
fn webhook_ids_dedupe_the_replicas(received: &[Received], faulty: &[String]) {
    for (shard, f) in faulty.iter().enumerate() {
        let events = hooked(received, f);
        let mut last: std::collections::BTreeMap<&str, &str> = Default::default();
        let mut kept = Vec::new();
        for (_, id, state, key) in &events {
            if last.insert(key, id) != Some(id.as_str()) {
                kept.push(state.as_str());
            }
        }
        assert_eq!(kept, ["firing", "resolved"], "{f}: {events:?}");
        if shard == 2 {
            // Both replicas lived: each sent both transitions, same ids.
            for replica in 0..2 {
                let path = format!("/hook/2/{replica}");
                let ids: Vec<&str> = events
                    .iter()
                    .filter(|e| e.0 == path)
                    .map(|e| e.1.as_str())
                    .collect();
                let all: std::collections::BTreeSet<&str> =
                    events.iter().map(|e| e.1.as_str()).collect();
                assert_eq!(ids.len(), 2, "{path}: {events:?}");
                assert_eq!(all.len(), 2, "{events:?}");
            }
        }
    }
}

/// Every PagerDuty event of a fault, from any replica, is under the one
/// key of the target's incident: PagerDuty opens one page for it.
fn pagerduty_keys_are_the_targets(received: &[Received], faulty: &[String]) {
    for (shard, f) in faulty.iter().enumerate() {
        let bodies: Vec<Value> = received
            .iter()
            .filter(|r| r.path.starts_with(&format!("/pd/{shard}/")))
            .map(Received::json)
            .collect();
        let keys: std::collections::BTreeSet<&str> = bodies
            .iter()
            .map(|b| b["dedup_key"].as_str().unwrap_or(""))
            .collect();
        let want = format!("lbwatch/incident/{f}");
        assert_eq!(
            keys.into_iter().collect::<Vec<_>>(),
            [want.as_str()],
            "{bodies:?}"
        );
        let actions: std::collections::BTreeSet<&str> = bodies
            .iter()
            .map(|b| b["event_action"].as_str().unwrap_or(""))
            .collect();
        assert!(
            actions.contains("trigger") && actions.contains("resolve"),
            "{bodies:?}"
        );
    }
}
