//! An incident on a real HAProxy, with the tests' own loopback traffic
//! counted by status: a reload that leaves one server of three in the pool
//! (a typo'd pool), then that server overloaded into 5xx, then an ACL typo
//! (`0.0.0.0/0` added to a block list on the runtime API) that denies
//! everyone, then the fix. One incident: its start and end within one
//! scrape interval (plus half of one for timing) of when the test made them, its timeline holding the
//! reload and the pool change in order, and its failed and missing
//! requests within 10% of what the traffic generator counted.

use super::*;
use serde_json::Value;
use std::sync::atomic::Ordering;
use support::haproxy::{Backend, Haproxy, LbSpec, PoolSpec, Tally, Traffic};

fn api(port: u16, path: &str) -> Value {
    let text = http_get(port, path);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn wall() -> lbwatch::model::Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    lbwatch::model::Timestamp::from_micros(since.as_micros() as i64)
}

fn at(v: &Value) -> lbwatch::model::Timestamp {
    lbwatch::model::Timestamp::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("{v}"))).unwrap()
}

#[test]
fn a_real_haproxy_incident_is_timed_and_counted_against_the_traffic() {
    let web: Vec<Backend> = (0..3).map(|_| Backend::start()).collect();
    let dir = scratch("incident-haproxy");
    std::fs::create_dir_all(&dir).unwrap();
    let acl = dir.join("blocked.acl");
    std::fs::write(&acl, "").unwrap();
    let spec = |n: usize| LbSpec {
        pools: vec![PoolSpec::of("web", &web[..n], &[1, 1, 1][..n])],
        frontend_lines: vec![
            format!("acl blocked src -f {}", acl.display()),
            "http-request deny if blocked".to_string(),
        ],
        ..LbSpec::default()
    };
    let mut lb = Haproxy::start(dir.join("lb"), &spec(3));
    let (_traffic, tally) = Traffic::counted(lb.frontend_port, "/web", 40, 4);
    let port = free_port();
    let cfg = write_config(
        "incident-haproxy.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{}",
            target("lb1", &lb.stats_url(), "")
        ),
    );
    let run = Running::start_in(&["run", "--config", cfg.to_str().unwrap()], &fresh_state());
    // The pool's usual rate and shares are learnt 30 s late.
    std::thread::sleep(Duration::from_secs(45));
    assert_eq!(Tally::get(&tally.server_errors), 0, "a clean baseline");

    lb.reload_and_wait(&spec(1));
    let typo = wall();
    std::thread::sleep(Duration::from_secs(12));
    web[0].fail_permille.store(300, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(15));
    web[0].fail_permille.store(0, Ordering::Relaxed);
    let added = lb.command(&format!("add acl {} 0.0.0.0/0", acl.display()));
    assert!(added.trim().is_empty(), "add acl: {added}");
    std::thread::sleep(Duration::from_secs(20));
    lb.command(&format!("clear acl {}", acl.display()));
    lb.reload_and_wait(&spec(3));
    let fixed = wall();
    let (failed_sent, denied_sent) = (Tally::get(&tally.server_errors), Tally::get(&tally.denied));

    let ended = support::tools::eventually(Duration::from_secs(150), || {
        let list = api(port, "/api/v1/incidents");
        let open = list["incidents"]
            .as_array()?
            .iter()
            .any(|i| i["end"].is_null());
        (!open).then_some(list)
    });
    let list =
        ended.unwrap_or_else(|| panic!("never ended: {}", http_get(port, "/api/v1/incidents")));
    let id = list["incidents"][0]["id"].as_str().unwrap().to_string();
    let i = api(port, &format!("/api/v1/incidents/{id}"));
    let report = http_get(port, &format!("/api/v1/incidents/{id}?format=markdown"));
    std::fs::create_dir_all(artifact("")).unwrap();
    std::fs::write(artifact("incident-haproxy.md"), &report).unwrap();
    run.stop();
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1, "{list:#}");

    let (start, detected, end) = (at(&i["start"]), at(&i["detected"]), at(&i["end"]));
    // One scrape interval (1 s), plus half of one for the scrape's own
    // timing when the machine is busy (the end is the first scrape after
    // the fixing reload: up to an interval after it).
    let within = |got: lbwatch::model::Timestamp, want: lbwatch::model::Timestamp| {
        got.secs_since(want).abs() <= 1.5
    };
    assert!(
        within(start, typo),
        "start {start} against the reload at {typo}"
    );
    assert!(within(end, fixed), "end {end} against the fix at {fixed}");
    assert!(
        detected >= start && detected.secs_since(typo) <= 30.0,
        "detected {detected}"
    );

    let impact = &i["impact"][0];
    assert_eq!(impact["pool"], "web");
    let failed = impact["failed_net"].as_f64().unwrap();
    let missing = impact["missing"].as_f64().unwrap();
    // The figures, for a person to read (the test asserts them below).
    let figures = format!(
        "start {:+.2}s, end {:+.2}s, detected {:.1}s after the start; failed {failed:.0} against {failed_sent} 5xx, missing {missing:.0} against {denied_sent} denied",
        start.secs_since(typo),
        end.secs_since(fixed),
        detected.secs_since(start)
    );
    std::fs::write(artifact("incident-haproxy.txt"), figures).unwrap();
    let near = |got: f64, want: u64| (got - want as f64).abs() <= 0.1 * want as f64;
    assert!(
        failed_sent > 100 && denied_sent > 300,
        "{failed_sent} {denied_sent}"
    );
    assert!(
        near(failed, failed_sent),
        "failed {failed:.0} against {failed_sent} 5xx answers"
    );
    assert!(
        near(missing, denied_sent),
        "missing {missing:.0} against {denied_sent} denied"
    );

    let kinds: Vec<&str> = i["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let reload = kinds
        .iter()
        .position(|k| *k == "reload")
        .expect("the reload");
    let left = kinds
        .iter()
        .position(|k| *k == "servers_left")
        .expect("the pool change");
    assert!(reload < left, "{kinds:?}");
    let timeline: Vec<&str> = i["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let pos = |needle: &str| {
        timeline
            .iter()
            .position(|t| t.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not on the timeline: {timeline:#?}"))
    };
    assert!(
        pos("the LB reloaded") < pos("2 of 3 servers left"),
        "{timeline:#?}"
    );
}
