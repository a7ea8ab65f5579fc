//! Alerts that reach people, through the real binary: the webhook and
//! PagerDuty against loopback receivers that check the payloads, retries,
//! outages, `kill -9` and restarts; the real Alertmanager (alone and in a
//! cluster) and the real Prometheus and promtool.

use super::*;
use std::collections::BTreeSet;
use support::receiver::Sink;
use support::tools::{self, eventually, get};

const SECRET: &str = "s3cr3t-hmac-key-do-not-log";
const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdef012345";
const AM_PASSWORD: &str = "hunter2-in-a-url";

/// A config watching `lb` as `lb1` every second, serving HTTP on `port`,
/// with `notifiers` appended. Alerts resolve after 3 s clear (60 s by
/// default), so a test sees a fault end without waiting minutes.
fn config(name: &str, lb: &fake_lb::FakeLb, port: u16, notifiers: &str) -> PathBuf {
    write_config(
        name,
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{}{notifiers}\n[detection]\nresolve_after = \"3s\"\n[detection.skew]\nwindow = \"5s\"\n",
            target("lb1", &lb.url, "")
        ),
    )
}

/// A fake LB watched by lbwatch (config `name`, `notifiers` appended).
struct Watched {
    lb: fake_lb::FakeLb,
    port: u16,
    cfg: PathBuf,
    state: PathBuf,
}

impl Watched {
    /// Starts both; returns once lbwatch is past its first few samples, so a
    /// fault can be injected.
    fn start(name: &str, notifiers: &str) -> (Watched, Running) {
        let lb = fake_lb::start(Behaviour::Csv);
        let port = free_port();
        let w = Watched {
            cfg: config(name, &lb, port, notifiers),
            lb,
            port,
            state: fresh_state(),
        };
        let run = w.restart();
        w.lb.wait_scraped(4);
        (w, run)
    }

    /// An lbwatch on this config and state directory (the previous one
    /// stopped or killed).
    fn restart(&self) -> Running {
        Running::start_in(
            &["run", "--config", self.cfg.to_str().unwrap()],
            &self.state,
        )
    }
}

/// A `[[notifiers]]` webhook entry for `sink`, with `extra` lines.
fn webhook(sink: &Sink, extra: &str) -> String {
    format!(
        "[[notifiers]]\nkind = \"webhook\"\nurl = \"{}\"\n{extra}",
        sink.url("/hook")
    )
}

fn secret_file(name: &str, value: &str) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path
}

/// Everything lbwatch shows of itself: its logs, /metrics and its API.
fn everything_shown(run: &Running, port: u16) -> String {
    let mut all = run.stderr.lock().unwrap().clone();
    for path in ["/metrics", "/api/v1/alerts", "/api/v1/pools"] {
        all.push_str(&http_get(port, path));
    }
    all
}

/// The (alert, state) of each webhook event received, in order.
fn states(sink: &Sink) -> Vec<(String, String)> {
    sink.webhook_events()
        .iter()
        .map(|(_, e)| {
            (
                e["alert"].as_str().unwrap_or("").to_string(),
                e["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn skew_events(sink: &Sink) -> Vec<(String, String)> {
    states(sink)
        .into_iter()
        .filter(|(a, _)| a == "TrafficSkew")
        .collect()
}

fn pair(state: &str) -> (String, String) {
    ("TrafficSkew".to_string(), state.to_string())
}

#[test]
fn a_webhook_answering_429_is_retried_and_gets_each_event_once_signed() {
    let sink = Sink::start(202);
    sink.script(&[429]);
    let key = secret_file("hook.secret", SECRET);
    let (Watched { lb, port, .. }, mut run) = Watched::start(
        "hook.toml",
        &webhook(
            &sink,
            &format!(
                "secret_file = \"{}\"\nheaders = {{ X-Team = \"sre\" }}\n",
                key.display()
            ),
        ),
    );
    lb.skew();
    assert!(
        sink.wait(Duration::from_secs(30), |_| skew_events(&sink)
            .contains(&pair("firing"))),
        "no TrafficSkew delivered: {:?}",
        sink.received()
    );
    run.wait_for(Duration::from_secs(2), |_| false);
    let shown = everything_shown(&run, port);
    run.stop();
    let received = sink.received();
    assert_eq!(received[0].status, 429, "{received:?}");
    assert_eq!(
        received[1].body, received[0].body,
        "the retry carries the same events"
    );
    assert_eq!(skew_events(&sink), vec![pair("firing")], "delivered once");
    for r in &received {
        assert_eq!(r.path, "/hook");
        assert_eq!(r.header("x-team"), Some("sre"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("x-lbwatch-signature").map(str::to_string),
            Some(lbwatch::notify::payload::signature(
                SECRET.as_bytes(),
                r.body.as_bytes()
            )),
        );
        let body = r.json();
        assert_eq!(body["version"], "1");
        for e in body["events"].as_array().unwrap() {
            let parsed: AlertEvent = serde_json::from_value(e.clone()).unwrap();
            assert_eq!(parsed.target, "lb1");
        }
    }
    assert!(shown.contains("lbwatch_notifications_total"), "{shown}");
    assert!(!shown.contains(SECRET), "the webhook secret leaked");
}

#[test]
fn a_notification_refused_with_a_4xx_is_logged_with_the_answer_and_not_retried() {
    let sink = Sink::start(200);
    sink.script(&[400]);
    let (Watched { lb, port, .. }, run) =
        Watched::start("refused.toml", &webhook(&sink, "name = \"picky\"\n"));
    lb.skew();
    assert!(sink.wait(Duration::from_secs(30), |r| !r.is_empty()));
    lb.heal();
    // The next event goes through: one refusal does not block the queue.
    assert!(
        sink.wait(Duration::from_secs(60), |_| skew_events(&sink)
            .contains(&pair("resolved"))),
        "{:?}",
        sink.received()
    );
    let metrics = http_get(port, "/metrics");
    let logs = run.stderr.lock().unwrap().clone();
    run.stop();
    let received = sink.received();
    assert_eq!(received[0].status, 400);
    let firing_sent = received
        .iter()
        .filter(|r| r.body.contains("\"state\":\"firing\""))
        .count();
    assert_eq!(firing_sent, 1, "a refused notification was retried");
    assert!(
        logs.contains("deliver{notifier=picky}: gave up on 1 notification(s)")
            && logs.contains(
                "answered 400 Bad Request: {\"authorization\":null,\"error\":\"scripted\""
            ),
        "{logs}"
    );
    assert!(
        metrics.contains("lbwatch_notifications_total{notifier=\"picky\",result=\"failed\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_receiver_down_for_30s_then_kill_9_still_gets_every_event_once_in_order() {
    let sink = Sink::start(200);
    sink.set_down(true);
    let down_since = Instant::now();
    let (w, mut run) = Watched::start("down.toml", &webhook(&sink, ""));
    let lb = &w.lb;
    lb.skew();
    assert!(
        run.wait_for(Duration::from_secs(30), |l| l.contains("TrafficSkew")
            && l.contains("firing"))
    );
    lb.heal();
    assert!(
        run.wait_for(Duration::from_secs(60), |l| l.contains("TrafficSkew")
            && l.contains("resolved"))
    );
    // Both events wait in the outbox; lbwatch dies without warning.
    run.kill_9();
    let mut run = w.restart();
    let up_at = down_since + Duration::from_secs(30);
    std::thread::sleep(up_at.saturating_duration_since(Instant::now()));
    sink.set_down(false);
    assert!(
        sink.wait(Duration::from_secs(20), |_| skew_events(&sink).len() >= 2),
        "the backlog did not arrive: {:?}",
        sink.received()
    );
    run.wait_for(Duration::from_secs(4), |_| false);
    run.stop();
    assert_eq!(
        skew_events(&sink),
        vec![pair("firing"), pair("resolved")],
        "every event once, in order"
    );
    let all = sink.webhook_events();
    let mut keys: Vec<String> = all.iter().map(|(_, e)| e.to_string()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), all.len(), "an event arrived twice: {all:?}");
}

#[test]
fn pagerduty_gets_a_trigger_and_a_resolve_under_one_dedup_key() {
    let pd = Sink::start(202);
    pd.script(&[429]);
    let key = secret_file("pd.key", ROUTING_KEY);
    let (Watched { lb, port, .. }, run) = Watched::start(
        "pd.toml",
        &format!(
            "[[notifiers]]\nkind = \"pagerduty\"\nurl = \"{}\"\nrouting_key_file = \"{}\"\n[notifiers.route]\nseverities = [\"critical\"]\n",
            pd.url("/v2/enqueue"),
            key.display()
        ),
    );
    lb.skew();
    let triggered = |r: &[support::receiver::Received]| {
        r.iter()
            .any(|r| r.status == 202 && r.json()["event_action"] == "trigger")
    };
    assert!(
        pd.wait(Duration::from_secs(30), triggered),
        "{:?}",
        pd.received()
    );
    let shown = everything_shown(&run, port);
    lb.heal();
    let resolved = |r: &[support::receiver::Received]| {
        r.iter()
            .any(|r| r.status == 202 && r.json()["event_action"] == "resolve")
    };
    assert!(
        pd.wait(Duration::from_secs(60), resolved),
        "{:?}",
        pd.received()
    );
    run.stop();
    let received = pd.received();
    assert_eq!(received[0].status, 429, "429 first, then retried");
    let accepted: Vec<serde_json::Value> = pd.accepted().iter().map(|r| r.json()).collect();
    let actions: Vec<&str> = accepted
        .iter()
        .map(|b| b["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"], "{accepted:?}");
    let (trigger, resolve) = (&accepted[0], &accepted[1]);
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
    assert!(trigger["dedup_key"].as_str().unwrap().len() <= 255);
    let summary = trigger["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("TrafficSkew on lb1/web: web-1 takes 100%") && summary.len() <= 1024,
        "{summary}"
    );
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "lb1");
    assert!(!shown.contains(ROUTING_KEY), "the routing key leaked");
}

/// The receiver has the trigger and has answered it, but lbwatch is killed
/// before it hears the answer: at least once means one repeat, under the
/// same dedup key, and it is the journal that brings it back (the restored
/// detector knows the alert is firing and detects nothing anew).
#[test]
fn kill_9_while_a_delivery_is_in_flight_repeats_it_once_from_the_journal() {
    let pd = Sink::start(202);
    let key = secret_file("pd-inflight.key", ROUTING_KEY);
    let (w, run) = Watched::start(
        "pd-inflight.toml",
        &format!(
            "[[notifiers]]\nkind = \"pagerduty\"\nurl = \"{}\"\nrouting_key_file = \"{}\"\n",
            pd.url("/v2/enqueue"),
            key.display()
        ),
    );
    pd.hold();
    w.lb.skew();
    let triggers = || {
        pd.received()
            .iter()
            .filter(|r| r.json()["event_action"] == "trigger")
            .map(|r| r.json()["dedup_key"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        pd.wait(Duration::from_secs(30), |_| triggers().len() == 1),
        "no trigger: {:?}",
        pd.received()
    );
    // Past the fsync of the detector's state that follows the event.
    std::thread::sleep(Duration::from_millis(500));
    run.kill_9();
    pd.release();
    let mut again = w.restart();
    assert!(
        pd.wait(Duration::from_secs(30), |_| triggers().len() == 2),
        "the journal did not bring the trigger back: {:?}",
        pd.received()
    );
    again.wait_for(Duration::from_secs(3), |_| false);
    let lines = again.stop();
    let keys = triggers();
    assert_eq!(keys.len(), 2, "more than one repeat: {keys:?}");
    assert_eq!(keys[0], keys[1], "the repeat has another dedup key");
    assert!(
        !lines.iter().any(|l| l.contains("\"state\":\"firing\"")),
        "the restarted lbwatch detected the fault anew: {lines:?}"
    );
}

#[test]
fn a_restart_neither_pages_again_nor_forgets_a_resolve() {
    let sink = Sink::start(200);
    let (w, run) = Watched::start("restart.toml", &webhook(&sink, ""));
    let (lb, port) = (&w.lb, w.port);
    lb.skew();
    assert!(sink.wait(Duration::from_secs(30), |_| skew_events(&sink)
        .contains(&pair("firing"))));
    run.stop();
    // Restarted during the fault: the alert is still firing, nobody is
    // paged again.
    let mut run = w.restart();
    run.wait_for(Duration::from_secs(8), |_| false);
    let alerts = http_get(port, "/api/v1/alerts");
    run.stop();
    assert!(alerts.contains("\"TrafficSkew\""), "{alerts}");
    assert_eq!(skew_events(&sink), vec![pair("firing")]);
    // The fault clears while lbwatch is down: the resolve still goes out.
    lb.heal();
    std::thread::sleep(Duration::from_secs(3));
    let mut run = w.restart();
    assert!(
        sink.wait(Duration::from_secs(60), |_| skew_events(&sink).len() >= 2),
        "{:?}",
        states(&sink)
    );
    run.wait_for(Duration::from_secs(2), |_| false);
    run.stop();
    assert_eq!(skew_events(&sink), vec![pair("firing"), pair("resolved")]);
}

const AM_CONFIG: &str = "route:\n  receiver: default\nreceivers:\n  - name: default\n";

/// TrafficSkew alerts Alertmanager holds now (via amtool), as JSON.
fn am_skew(am: &tools::Server) -> Option<serde_json::Value> {
    let url = format!("--alertmanager.url={}", am.url());
    let (ok, out) = tools::run_tool(
        "amtool",
        "prometheus-alertmanager",
        &[
            "alert",
            "query",
            "alertname=TrafficSkew",
            "-o",
            "json",
            &url,
        ],
        None,
    );
    let alerts: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
    alerts.as_array()?.first().cloned()
}

#[test]
fn alerts_reach_a_real_alertmanager_resolve_and_return_after_it_restarts_empty() {
    let am_port = free_port();
    let dir = scratch("am-single");
    let mut am = tools::alertmanager(&dir, AM_CONFIG, am_port, None);
    let (Watched { lb, port, .. }, run) = Watched::start(
        "am.toml",
        &format!(
            "[[notifiers]]\nkind = \"alertmanager\"\nurl = \"{}\"\nresend_interval = \"2s\"\n\n[[notifiers]]\nkind = \"alertmanager\"\nurl = \"http://lbwatch:{AM_PASSWORD}@127.0.0.1:1\"\n",
            am.url()
        ),
    );
    lb.skew();
    let alert =
        eventually(Duration::from_secs(30), || am_skew(&am)).expect("no alert in Alertmanager");
    assert_eq!(alert["labels"]["target"], "lb1");
    assert_eq!(alert["labels"]["pool"], "web");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("web-1 takes 100%"),
        "{alert}"
    );
    // It links to its incident's view on the status page.
    let incident = alert["annotations"]["incident"].as_str().unwrap();
    assert!(incident.starts_with("lb1-"), "{alert}");
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/#incident={incident}")),
        "{alert}"
    );
    // The second Alertmanager is unreachable: its errors name it, without
    // the password in its URL.
    let shown = everything_shown(&run, port);
    assert!(shown.contains("http://127.0.0.1:1/…"), "{shown}");
    assert!(!shown.contains(AM_PASSWORD), "a password in a URL leaked");

    // Alertmanager restarts with nothing: the alert is back within the
    // resend interval (2 s), give or take a request.
    am.kill();
    let am = tools::alertmanager(&dir, AM_CONFIG, am_port, None);
    let back = Instant::now();
    eventually(Duration::from_secs(5), || am_skew(&am)).expect("not re-sent after the restart");
    assert!(
        back.elapsed() <= Duration::from_secs(4),
        "{:?}",
        back.elapsed()
    );

    lb.heal();
    let gone = eventually(Duration::from_secs(60), || {
        am_skew(&am).is_none().then_some(())
    });
    run.stop();
    assert!(gone.is_some(), "the alert did not resolve in Alertmanager");
}

#[test]
fn two_replicas_and_two_clustered_alertmanagers_notify_once() {
    let lb = fake_lb::start(Behaviour::Csv);
    let hook = Sink::start(200);
    // group_interval 5s: the resolve is notified 5 s after it, not 5 min.
    let am_config = format!(
        "route:\n  receiver: hook\n  group_by: [alertname, target, pool]\n  group_wait: 1s\n  group_interval: 5s\n  repeat_interval: 4h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: '{}'\n",
        hook.url("/am")
    );
    let (g1, g2) = (free_port(), free_port());
    let (p1, p2) = (free_port(), free_port());
    let am1 = tools::alertmanager(&scratch("am-c1"), &am_config, p1, Some((g1, &[g2])));
    let am2 = tools::alertmanager(&scratch("am-c2"), &am_config, p2, Some((g2, &[g1])));
    let notifier = format!(
        "[[notifiers]]\nkind = \"alertmanager\"\nurls = [\"{}\", \"{}\"]\nresend_interval = \"2s\"\n",
        am1.url(),
        am2.url()
    );
    let replicas: Vec<Running> = (0..2)
        .map(|i| {
            let cfg = config(&format!("replica{i}.toml"), &lb, free_port(), &notifier);
            Running::start(&["run", "--config", cfg.to_str().unwrap()])
        })
        .collect();
    // The cluster formed: each instance sees two ready peers.
    tools::wait_cluster(&[&am1, &am2], 2);
    lb.wait_scraped(3);
    lb.skew();
    let notified = |status: &str| {
        hook.received()
            .iter()
            .filter(|r| r.body.contains("TrafficSkew") && r.json()["status"] == status)
            .count()
    };
    let skews = || notified("firing");
    assert!(
        hook.wait(Duration::from_secs(40), |_| skews() >= 1),
        "no notification from the cluster"
    );
    // Long enough for the second Alertmanager to have sent its own, had the
    // cluster not told it the first one did (its peer position times the
    // 2 s peer timeout), and for both replicas' re-sends.
    std::thread::sleep(Duration::from_secs(10));
    // Both instances hold the alert (each replica sent it to each).
    let (in1, in2) = (am_skew(&am1), am_skew(&am2));
    // The fault ends: one resolve reaches the receiver, not one per
    // instance or replica.
    lb.heal();
    let resolved = hook.wait(Duration::from_secs(60), |_| notified("resolved") >= 1);
    std::thread::sleep(Duration::from_secs(10));
    for r in replicas {
        r.stop();
    }
    assert!(in1.is_some() && in2.is_some(), "{in1:?} {in2:?}");
    assert!(
        resolved,
        "no resolve from the cluster: {:?}",
        hook.received()
    );
    assert_eq!(notified("resolved"), 1, "{:?}", hook.received());
    assert_eq!(skews(), 1, "{:?}", hook.received());
    let n = hook.received();
    let body = n
        .iter()
        .find(|r| r.body.contains("TrafficSkew"))
        .unwrap()
        .json();
    assert_eq!(body["alerts"].as_array().unwrap().len(), 1, "{body}");
}

#[test]
fn hostile_server_names_stay_data_in_metrics_and_the_api() {
    let lb = fake_lb::start(Behaviour::Hostile);
    let port = free_port();
    let cfg = config("hostile.toml", &lb, port, "");
    let mut run = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    run.wait_for(Duration::from_secs(3), |_| false);
    let metrics = get(&format!("http://127.0.0.1:{port}/metrics")).unwrap().1;
    let api = get(&format!("http://127.0.0.1:{port}/api/v1/pools?target=lb1"))
        .unwrap()
        .1;
    run.stop();
    let (clean, lint) = tools::run_tool(
        "promtool",
        "prometheus",
        &["check", "metrics"],
        Some(&metrics),
    );
    assert!(
        clean && lint.trim().is_empty(),
        "promtool check metrics: {lint}\n{metrics}"
    );
    // Label values escaped as the exposition format says: \\, \" and \n.
    for escaped in [
        r#"server="<script>alert(1)</script>""#,
        r#"server="web \"quoted\" \\back""#,
        r#"server="two\nlines""#,
    ] {
        assert!(
            metrics.contains(escaped),
            "{escaped} missing from\n{metrics}"
        );
    }
    // The API gives each name back exactly, as JSON data (the status page
    // shows it with textContent, never as markup).
    let v: serde_json::Value = serde_json::from_str(&api).expect("JSON");
    let text = v.to_string();
    for name in fake_lb::HOSTILE_NAMES {
        assert!(
            text.contains(&serde_json::to_string(name).unwrap()),
            "{name:?} not in {text}"
        );
    }
}

#[test]
fn prometheus_scrapes_lbwatch_and_promtool_finds_its_metrics_clean() {
    let lb = fake_lb::start(Behaviour::Csv);
    let port = free_port();
    let cfg = config("prom.toml", &lb, port, "");
    let mut run = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    lb.wait_scraped(3);
    lb.skew();
    assert!(run.wait_for(Duration::from_secs(30), |l| l.contains("TrafficSkew")));
    let prom = tools::prometheus(&scratch("prom"), &[format!("127.0.0.1:{port}")]);
    let metrics = get(&format!("http://127.0.0.1:{port}/metrics")).unwrap().1;
    let (clean, lint) = tools::run_tool(
        "promtool",
        "prometheus",
        &["check", "metrics"],
        Some(&metrics),
    );
    let query = |q: &str| {
        get(&format!("{}/api/v1/query?query={q}", prom.url()))
            .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
            .filter(|v| {
                v["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            })
    };
    let up = eventually(Duration::from_secs(20), || {
        query("up%7Bjob%3D%22lbwatch%22%7D%3D%3D1")
    });
    let firing = eventually(Duration::from_secs(10), || {
        query("lbwatch_alert_firing%7Balert%3D%22TrafficSkew%22%7D")
    });
    let share = query("lbwatch_server_share_ratio%7Bserver%3D%22web-1%22%7D");
    run.stop();
    assert!(
        clean && lint.trim().is_empty(),
        "promtool check metrics: {lint}\n{metrics}"
    );
    assert!(up.is_some(), "Prometheus does not see lbwatch up");
    let firing = firing.expect("lbwatch_alert_firing not in Prometheus");
    assert_eq!(firing["data"]["result"][0]["metric"]["pool"], "web");
    assert!(share.is_some(), "no per-server share in Prometheus");
    for name in [
        "lbwatch_server_requests_per_second",
        "lbwatch_server_expected_share_ratio",
        "lbwatch_pool_skew_ratio",
        "lbwatch_pool_effective_servers",
        "lbwatch_scrape_duration_seconds",
        "lbwatch_detection_latency_seconds",
        "lbwatch_build_info",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
}

#[test]
fn ready_waits_for_every_target_and_the_api_shows_pools_and_alerts() {
    let lb = fake_lb::start(Behaviour::Csv);
    let hang = fake_lb::start(Behaviour::Hang);
    let port = free_port();
    let cfg = write_config(
        "ready.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{}{}",
            target("lb1", &lb.url, ""),
            target("slow", &hang.url, "timeout = \"3s\"")
        ),
    );
    let mut run = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    run.wait_for(Duration::from_millis(1500), |_| false);
    let before = http_get(port, "/ready");
    run.wait_for(Duration::from_secs(3), |_| false);
    let after = http_get(port, "/ready");
    let pools = http_get(port, "/api/v1/pools?target=lb1");
    run.stop();
    assert!(before.starts_with("HTTP/1.1 503"), "{before}");
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
    let body: serde_json::Value =
        serde_json::from_str(pools.split_once("\r\n\r\n").unwrap().1).unwrap();
    let targets = body["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "filtered to lb1: {body}");
    let web = &targets[0]["pools"][0];
    assert_eq!(web["pool"], "web");
    let servers = web["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 4);
    for s in servers {
        let share = s["share"].as_f64().unwrap();
        assert!((share - 0.25).abs() < 0.05, "{s}");
        assert_eq!(s["expected_share"], 0.25);
    }
    assert!(
        web["requests_per_second"].as_f64().unwrap() > 300.0,
        "{web}"
    );
}

/// SIGTERM while a burst of alerts is being raised: every event the
/// stopping lbwatch printed reaches the webhook (from the outbox, after a
/// restart: the receiver was down), every target's fault is known to one
/// run or the other, and none is delivered more than twice (at least once,
/// the repeat carrying the same event).
#[test]
fn sigterm_during_a_burst_of_alerts_loses_nothing() {
    const TARGETS: usize = 12;
    let sink = Sink::start(200);
    sink.set_down(true);
    let lbs: Vec<fake_lb::FakeLb> = (0..TARGETS)
        .map(|_| fake_lb::start(Behaviour::Csv))
        .collect();
    let port = free_port();
    let targets: String = lbs
        .iter()
        .enumerate()
        .map(|(i, lb)| target(&format!("lb{i}"), &lb.url, ""))
        .collect();
    let cfg = write_config(
        "burst.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{targets}{}\n[detection.skew]\nwindow = \"5s\"\n",
            webhook(&sink, "")
        ),
    );
    let state = fresh_state();
    let mut run = Running::start_in(&["run", "--config", cfg.to_str().unwrap()], &state);
    for lb in &lbs {
        lb.wait_scraped(4);
    }
    for lb in &lbs {
        lb.skew();
    }
    // Stopped as soon as the burst begins: most targets are mid-way.
    assert!(
        run.wait_for(Duration::from_secs(30), |l| l.contains("TrafficSkew")),
        "no TrafficSkew after skewing {TARGETS} targets"
    );
    let printed: BTreeSet<String> = events(&run.stop())
        .into_iter()
        .filter(|e| e.alert == AlertName::TrafficSkew && e.state == AlertState::Firing)
        .map(|e| e.target)
        .collect();
    sink.set_down(false);
    let mut again = Running::start_in(&["run", "--config", cfg.to_str().unwrap()], &state);
    let delivered = |sink: &Sink| -> Vec<String> {
        sink.webhook_events()
            .iter()
            .filter(|(_, e)| e["alert"] == "TrafficSkew" && e["state"] == "firing")
            .map(|(_, e)| e["target"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let all = sink.wait(Duration::from_secs(60), |_| {
        let got: BTreeSet<String> = delivered(&sink).into_iter().collect();
        got.len() == TARGETS
    });
    again.wait_for(Duration::from_secs(2), |_| false);
    let second = events(&again.stop());
    let got = delivered(&sink);
    assert!(
        all,
        "delivered {got:?}; printed before SIGTERM {printed:?}; then {second:?}"
    );
    for t in &printed {
        let n = got.iter().filter(|g| *g == t).count();
        assert!((1..=2).contains(&n), "{t}: delivered {n} times: {got:?}");
    }
    // What the first run raised, the second knew from its state: it did
    // not raise it again.
    for e in &second {
        assert!(
            !(printed.contains(&e.target) && e.state == AlertState::Firing),
            "raised again after the restart: {e:?}"
        );
    }
}
