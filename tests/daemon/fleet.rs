//! A fleet through the real binary: targets split by shard between
//! processes (`--shard`, and a StatefulSet pod's ordinal), and
//! `[metrics] per_server` bounding the series `/metrics` exports.

use super::*;
use serde_json::Value;

/// `None` until lbwatch answers.
fn api(port: u16, path: &str) -> Option<Value> {
    let (_, body) = support::tools::get(&format!("http://127.0.0.1:{port}{path}"))?;
    serde_json::from_str(&body).ok()
}

pub(super) fn watched(port: u16) -> Vec<String> {
    api(port, "/api/v1/pools").map_or_else(Vec::new, |v| {
        let mut names: Vec<String> = v["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["target"].as_str().unwrap_or("").to_string())
            .collect();
        names.sort();
        names
    })
}

/// Six processes, three shards of two replicas, watch twelve targets: each
/// target is watched by exactly the two replicas of the shard its name
/// hashes to. The first replicas take `--shard`, the second their shard
/// from the pod ordinal in `$HOSTNAME` (`lbwatch-3` is shard 0 of 3).
#[test]
fn three_shards_of_two_replicas_watch_every_target_exactly_twice() {
    let lb = fake_lb::start(Behaviour::Csv);
    let names: Vec<String> = (0..12).map(|i| format!("lb-{i:02}")).collect();
    let targets: String = names.iter().map(|n| target(n, &lb.url, "")).collect();
    let mut runs = Vec::new();
    for replica in 0..2 {
        for shard in 0..3u32 {
            let port = free_port();
            let cfg = write_config(
                &format!("shard-{shard}-{replica}.toml"),
                &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n[cluster]\nshards = 3\n{targets}"),
            );
            let cfg = cfg.to_str().unwrap().to_string();
            let run = if replica == 0 {
                let shard = format!("{shard}/3");
                Running::start_in(
                    &["run", "--config", &cfg, "--shard", &shard],
                    &fresh_state(),
                )
            } else {
                let host = format!("lbwatch-{}", shard + 3);
                Running::start_with(
                    &["run", "--config", &cfg],
                    &fresh_state(),
                    &[("HOSTNAME", &host), ("LBWATCH_SHARD_ORDINAL", "")],
                )
            };
            runs.push((shard, port, run));
        }
    }
    let mut watchers: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for (shard, port, _) in &runs {
        let mine = lbwatch::cluster::Shard {
            index: *shard,
            count: 3,
        };
        let expected: Vec<String> = names.iter().filter(|n| mine.keeps(n)).cloned().collect();
        let got = support::tools::eventually(Duration::from_secs(20), || {
            let w = watched(*port);
            (w.len() >= expected.len()).then_some(w)
        })
        .unwrap_or_else(|| watched(*port));
        assert_eq!(got, expected, "shard {shard}");
        for n in got {
            watchers.entry(n).or_default().push(*shard);
        }
    }
    for (_, _, run) in runs {
        run.stop();
    }
    assert_eq!(watchers.len(), names.len(), "{watchers:?}");
    for (name, shards) in &watchers {
        assert_eq!(shards.len(), 2, "{name} watched by {shards:?}");
        assert_eq!(shards[0], shards[1], "{name}: two replicas of one shard");
    }
    let sizes: Vec<usize> = (0..3u32)
        .map(|s| watchers.values().filter(|w| w[0] == s).count())
        .collect();
    assert!(
        sizes.iter().all(|n| *n > 0),
        "every shard has targets: {sizes:?}"
    );
}

/// `per_server = "alerting"`: no server series while the pool is quiet,
/// its servers' series once it alerts; a reload to `"none"` drops them
/// even while it alerts. The pools' series are there throughout.
#[test]
fn per_server_alerting_exports_a_pools_servers_only_while_it_alerts() {
    let lb = fake_lb::start(Behaviour::Csv);
    let port = free_port();
    let config = |per_server: &str| {
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[metrics]\nper_server = \"{per_server}\"\n{}",
            target("lb1", &lb.url, "")
        )
    };
    let cfg = write_config("per-server.toml", &config("alerting"));
    let mut run = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    lb.wait_scraped(4);
    let series = |name: &str| {
        http_get(port, "/metrics")
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .count()
    };
    assert_eq!(series("lbwatch_pool_requests_per_second"), 1);
    assert_eq!(
        series("lbwatch_server_share_ratio"),
        0,
        "a quiet pool's servers"
    );
    lb.skew();
    let fired = run.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"TrafficSkew\"") && l.contains("firing")
    });
    assert!(fired, "no TrafficSkew: {:?}", run.seen);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        series("lbwatch_server_share_ratio"),
        4,
        "an alerting pool's servers"
    );
    assert_eq!(series("lbwatch_server_up"), 4);
    std::fs::write(&cfg, config("none")).unwrap();
    hup(&run);
    let dropped = support::tools::eventually(Duration::from_secs(10), || {
        (series("lbwatch_server_share_ratio") == 0).then_some(())
    });
    let pools = series("lbwatch_pool_requests_per_second");
    run.stop();
    assert!(dropped.is_some(), "per_server = none still exports servers");
    assert_eq!(pools, 1);
}

/// `[[discovery]]` of kind `file`: a Prometheus file_sd file rewritten
/// under a running lbwatch. A target added is watched within the refresh;
/// a target removed in the middle of its alert has it resolved and is no
/// longer watched; a file half-written keeps its targets and counts an
/// error.
#[test]
fn file_sd_targets_come_and_go_with_the_file() {
    let (lb1, lb2, lb3) = (
        fake_lb::start(Behaviour::Csv),
        fake_lb::start(Behaviour::Csv),
        fake_lb::start(Behaviour::Csv),
    );
    let dir = empty_dir("file-sd");
    let sd = dir.join("lbs.json");
    // Written whole, then renamed, as discovery tools do.
    let write = |groups: &str| {
        let tmp = dir.join("lbs.tmp");
        std::fs::write(&tmp, groups).unwrap();
        std::fs::rename(&tmp, &sd).unwrap();
    };
    write(&format!("[{}]", group(&lb1, "eu-1")));
    let hook = support::receiver::Sink::start(200);
    let port = free_port();
    let notifier = format!(
        "[[notifiers]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/hook")
    );
    let cfg = write_config(
        "file-sd.toml",
        &file_sd_config(port, &dir.join("*.json"), "1s", &notifier),
    );
    let mut run = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    let watching = |want: &[&str]| watching(port, want, Duration::from_secs(15));
    assert!(watching(&["eu-1"]), "{:?}", watched(port));
    write(&format!(
        "[{}, {}]",
        group(&lb1, "eu-1"),
        group(&lb2, "eu-2")
    ));
    assert!(watching(&["eu-1", "eu-2"]), "{:?}", watched(port));
    // eu-1's scrape went on: one task started for it, one for eu-2.
    assert_eq!(started(port), Some(2.0));
    lb1.wait_scraped(6);
    lb1.skew();
    let fired = run.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"TrafficSkew\"") && l.contains("firing") && l.contains("eu-1")
    });
    assert!(fired, "no TrafficSkew on eu-1: {:?}", run.seen);
    write(&format!("[{}]", group(&lb2, "eu-2")));
    assert!(watching(&["eu-2"]), "{:?}", watched(port));
    assert_eq!(started(port), Some(2.0), "eu-2's scrape restarted");
    let alerts = http_get(port, "/api/v1/alerts");
    assert!(!alerts.contains("eu-1"), "eu-1 still alerting: {alerts}");
    let resolved = |e: &Value| {
        e["target"] == "eu-1" && e["alert"] == "TrafficSkew" && e["state"] == "resolved"
    };
    assert!(
        hook.wait(Duration::from_secs(10), |_| hook
            .webhook_events()
            .iter()
            .any(|(_, e)| resolved(e))),
        "eu-1's alert not resolved at the receiver: {:?}",
        hook.webhook_events()
    );
    // eu-2 moves while its alert fires (both addresses skewed alike): its
    // scrape restarts at the new address, and the detector keeps what it
    // learnt of it. A target forgotten would have its alert resolved.
    lb2.skew();
    lb3.skew();
    let fired = run.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"TrafficSkew\"") && l.contains("firing") && l.contains("eu-2")
    });
    assert!(fired, "no TrafficSkew on eu-2: {:?}", run.seen);
    write(&format!("[{}]", group(&lb3, "eu-2")));
    lb3.wait_scraped(3);
    assert_eq!(started(port), Some(3.0), "eu-2 not restarted once");
    let alerts = http_get(port, "/api/v1/alerts");
    assert!(
        alerts.contains("eu-2"),
        "eu-2's alert gone after the move: {alerts}"
    );
    let resolved_eu2 = |e: &Value| e["target"] == "eu-2" && e["state"] == "resolved";
    assert!(
        !hook.webhook_events().iter().any(|(_, e)| resolved_eu2(e)),
        "eu-2's alert resolved by the move: {:?}",
        hook.webhook_events()
    );
    std::fs::write(&sd, "[{\"targets\": [").unwrap();
    let counted = support::tools::eventually(Duration::from_secs(10), || {
        http_get(port, "/metrics")
            .lines()
            .find(|l| l.starts_with("lbwatch_discovery_errors_total "))
            .filter(|l| !l.ends_with(" 0"))
            .map(str::to_string)
    });
    // Two refreshes later, the file still half-written: still watched.
    std::thread::sleep(Duration::from_millis(2500));
    let still = watched(port);
    let stderr = run.stderr.lock().unwrap().clone();
    run.stop();
    assert!(counted.is_some(), "no discovery error counted");
    assert_eq!(still, ["eu-2"], "a half-written file keeps its targets");
    assert!(
        stderr.contains("lbs.json") && stderr.contains("discovery[0]"),
        "the error names the file: {stderr}"
    );
    for change in [
        "1 -> 2 target(s): 1 started, 0 stopped, 1 unchanged",
        "2 -> 1 target(s): 0 started, 1 stopped, 1 unchanged",
        "1 -> 1 target(s): 1 started, 1 stopped, 0 unchanged",
    ] {
        assert!(stderr.contains(change), "no {change:?} in {stderr}");
    }
}

/// The directory of a file_sd file is watched: a change applies within
/// seconds though the next refresh is an hour away, whether a new file is
/// renamed over it or it is written in place.
#[test]
fn file_sd_changes_apply_without_waiting_for_the_refresh() {
    let (lb1, lb2) = (
        fake_lb::start(Behaviour::Csv),
        fake_lb::start(Behaviour::Csv),
    );
    let dir = empty_dir("file-sd-watched");
    let sd = dir.join("lbs.json");
    std::fs::write(&sd, format!("[{}]", group(&lb1, "eu-1"))).unwrap();
    let port = free_port();
    let cfg = write_config("file-sd-watched.toml", &file_sd_config(port, &sd, "1h", ""));
    let run = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    let soon = Duration::from_secs(10);
    assert!(watching(port, &["eu-1"], soon), "{:?}", watched(port));
    // Written beside the directory, then renamed in: only the rename
    // shows in it.
    let staging = scratch("file-sd-staging");
    std::fs::create_dir_all(&staging).unwrap();
    let tmp = staging.join("lbs.json");
    let both = format!("[{}, {}]", group(&lb1, "eu-1"), group(&lb2, "eu-2"));
    std::fs::write(&tmp, both).unwrap();
    std::fs::rename(&tmp, &sd).unwrap();
    let renamed = watching(port, &["eu-1", "eu-2"], soon);
    std::fs::write(&sd, format!("[{}]", group(&lb2, "eu-2"))).unwrap();
    let written = watching(port, &["eu-2"], soon);
    let stderr = run.stderr.lock().unwrap().clone();
    run.stop();
    assert!(renamed, "a file renamed over it not applied: {stderr}");
    assert!(written, "a file written in place not applied: {stderr}");
}

/// A config whose targets are the file_sd `files`, read every `refresh`,
/// with `extra` after.
fn file_sd_config(port: u16, files: &std::path::Path, refresh: &str, extra: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n\
         [[discovery]]\nkind = \"file\"\nfiles = [\"{}\"]\nrefresh = \"{refresh}\"\n\
         path = \"/stats;csv\"\nname_label = \"lb\"\n\
         [discovery.template]\nkind = \"haproxy\"\ninterval = \"1s\"\n{extra}",
        files.display()
    )
}

/// A scratch directory, emptied.
fn empty_dir(name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether lbwatch watches exactly `want` within `wait`.
fn watching(port: u16, want: &[&str], wait: Duration) -> bool {
    support::tools::eventually(wait, || (watched(port) == want).then_some(())).is_some()
}

/// A fake LB's `host:port`.
fn address(lb: &fake_lb::FakeLb) -> String {
    lb.url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// A file_sd group of one target, named by its label `lb`.
fn group(lb: &fake_lb::FakeLb, name: &str) -> String {
    format!(
        "{{\"targets\": [\"{}\"], \"labels\": {{\"lb\": \"{name}\"}}}}",
        address(lb)
    )
}

/// `lbwatch_scrape_tasks_started_total`, as `/metrics` says now.
fn started(port: u16) -> Option<f64> {
    http_get(port, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix("lbwatch_scrape_tasks_started_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// `[[discovery]]` of kind `dns`, asking a real DNS server (dnsmasq) on
/// loopback: SRV records (host and port) and A records (with the block's
/// port). Records added are watched; a record removed in the middle of its
/// target's alert has the alert resolved and the target no longer watched;
/// a name without records drops its targets; a server that answers
/// SERVFAIL, or does not answer, keeps them, and the error is counted and
/// names the name.
#[test]
fn dns_sd_targets_follow_srv_and_a_records() {
    use support::dns::{Dnsmasq, DOMAIN};
    let lbs: Vec<fake_lb::FakeLb> = (0..3).map(|_| fake_lb::start(Behaviour::Csv)).collect();
    let port_of = |lb: &fake_lb::FakeLb| -> u16 {
        let rest = lb.url.trim_start_matches("http://127.0.0.1:");
        rest.split('/').next().unwrap().parse().unwrap()
    };
    let (p1, p2, p3) = (port_of(&lbs[0]), port_of(&lbs[1]), port_of(&lbs[2]));
    let srv = format!("_stats._tcp.{DOMAIN}");
    let a = format!("lbs.{DOMAIN}");
    let srv_to = |port: u16| format!("--srv-host={srv},localhost,{port}");
    let a_to = || format!("--host-record={a},127.0.0.1");
    let mut dns = Dnsmasq::start(&scratch("dnsmasq"), free_port(), &[srv_to(p1), a_to()]);
    let hook = support::receiver::Sink::start(200);
    let port = free_port();
    let block = |name: &str, extra: &str| {
        format!(
            "[[discovery]]\nkind = \"dns\"\nnames = [\"{name}\"]\n{extra}refresh = \"1s\"\n\
             nameservers = [\"127.0.0.1:{}\"]\npath = \"/stats;csv\"\n\
             [discovery.template]\nkind = \"haproxy\"\ninterval = \"1s\"\n",
            dns.port
        )
    };
    let cfg = write_config(
        "dns-sd.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{}{}\
             [[notifiers]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            block(&srv, ""),
            block(&a, &format!("type = \"A\"\nport = {p3}\n")),
            hook.url("/hook")
        ),
    );
    let mut run = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    let (t1, t2, t3) = (
        format!("localhost:{p1}"),
        format!("localhost:{p2}"),
        format!("127.0.0.1:{p3}"),
    );
    let watching = |want: &[&String]| {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        support::tools::eventually(Duration::from_secs(15), || {
            (watched(port) == want).then_some(())
        })
        .is_some()
    };
    assert!(watching(&[&t1, &t3]), "{:?}", watched(port));
    dns.restart(&[srv_to(p1), srv_to(p2), a_to()]);
    assert!(watching(&[&t1, &t2, &t3]), "{:?}", watched(port));
    lbs[0].wait_scraped(6);
    lbs[0].skew();
    let fired = run.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"TrafficSkew\"") && l.contains("firing") && l.contains(&t1)
    });
    assert!(fired, "no TrafficSkew on {t1}: {:?}", run.seen);
    // The first SRV record and the A record go.
    dns.restart(&[srv_to(p2)]);
    assert!(watching(&[&t2]), "{:?}", watched(port));
    let resolved = |e: &Value| {
        e["target"] == t1.as_str() && e["alert"] == "TrafficSkew" && e["state"] == "resolved"
    };
    assert!(
        hook.wait(Duration::from_secs(10), |_| hook
            .webhook_events()
            .iter()
            .any(|(_, e)| resolved(e))),
        "{t1}'s alert not resolved at the receiver: {:?}",
        hook.webhook_events()
    );
    // SERVFAIL (a resolver whose upstream is down): says nothing of the
    // name, so its targets stay.
    let before = run.stderr.lock().unwrap().len();
    dns.stop();
    let servfail = support::dns::ServFail::start(dns.port);
    // The first line of stderr past `from` about `srv` that `is`, within
    // `wait`.
    let logged = |from: usize, is: &dyn Fn(&str) -> bool, wait: u64| {
        let about = format!("discovery[0]: {srv}: ");
        support::tools::eventually(Duration::from_secs(wait), || {
            let stderr = run.stderr.lock().unwrap().clone();
            stderr[from..]
                .lines()
                .find(|l| l.contains(&about) && is(l))
                .map(str::to_string)
        })
    };
    // (A lookup under way as dnsmasq stops may time out first.)
    let failed = logged(before, &|l| l.contains("the server answered"), 15);
    std::thread::sleep(Duration::from_millis(2500));
    let kept = watched(port);
    let servfail_stderr = run.stderr.lock().unwrap()[before..].to_string();
    drop(servfail);
    // No answer at all (a server that takes the question and stays
    // silent, as a hung one does): the targets stay.
    let before = run.stderr.lock().unwrap().len();
    let _silent = std::net::UdpSocket::bind(("127.0.0.1", dns.port)).unwrap();
    // (A SERVFAIL answered as the responder stopped may come first.)
    let silent = |l: &str| l.contains("timed out") || l.contains("no answer in 3s");
    let counted = logged(before, &silent, 30);
    // Two refreshes more, to see the targets kept.
    std::thread::sleep(Duration::from_millis(2500));
    let still = watched(port);
    let errors = http_get(port, "/metrics")
        .lines()
        .find(|l| l.starts_with("lbwatch_discovery_errors_total "))
        .map(str::to_string);
    let stderr = run.stderr.lock().unwrap().clone();
    run.stop();
    let failed = failed.unwrap_or_else(|| panic!("SERVFAIL is not logged: {stderr}"));
    assert!(failed.contains("answered ServFail"), "{failed}");
    assert!(
        !servfail_stderr.contains(&format!("discovery[0]: {srv}: no records")),
        "SERVFAIL taken for no records: {servfail_stderr}"
    );
    assert_eq!(
        kept,
        std::slice::from_ref(&t2),
        "a server that answers SERVFAIL keeps its targets"
    );
    assert_eq!(
        still,
        std::slice::from_ref(&t2),
        "a server that does not answer keeps its targets"
    );
    // Found only as a time-out or "no answer in 3s".
    counted.unwrap_or_else(|| panic!("the lookup's failure is not logged: {stderr}"));
    assert!(
        errors.is_some_and(|l| !l.ends_with(" 0")),
        "no discovery error counted"
    );
    assert!(
        stderr.contains(&format!("discovery[1]: {a}: no records")),
        "{stderr}"
    );
}
