//! Running lbwatch for real: systemd's readiness protocol and reloads on
//! SIGHUP, the Grafana dashboard's queries through a real Prometheus, and the
//! status page in a real (headless) Chromium.

use super::*;
use std::os::unix::net::UnixDatagram;
use support::receiver::Sink;
use support::tools::{self, eventually, get};

/// What lbwatch told "systemd", until `want` arrived (at most `limit`).
fn until(sock: &UnixDatagram, want: &str, limit: Duration) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = msg == want;
            got.push(msg);
            if done {
                return got;
            }
        }
    }
    panic!("{want:?} never came; got {got:?}");
}

#[test]
fn systemd_hears_ready_reloading_and_the_watchdog_and_a_bad_reload_changes_nothing() {
    let lb1 = fake_lb::start(Behaviour::Csv);
    let lb2 = fake_lb::start(Behaviour::Csv);
    let port = free_port();
    let text = |targets: &str| format!("[http]\nlisten = \"127.0.0.1:{port}\"\n{targets}");
    let cfg = write_config("notify.toml", &text(&target("lb1", &lb1.url, "")));
    let sock_path = scratch("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut run = Running::start_with(
        &["run", "--config", cfg.to_str().unwrap()],
        &fresh_state(),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    until(&sock, "READY=1", Duration::from_secs(10));
    // Ready means the listener is up.
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));
    until(&sock, "WATCHDOG=1", Duration::from_secs(3));

    // A good new config: a second target, picked up without a restart.
    std::fs::write(
        &cfg,
        text(&format!(
            "{}{}",
            target("lb1", &lb1.url, ""),
            target("lb2", &lb2.url, "")
        )),
    )
    .unwrap();
    hup(&run);
    let said = until(&sock, "READY=1", Duration::from_secs(10));
    assert!(said.contains(&"RELOADING=1".to_string()), "{said:?}");
    let both = eventually(Duration::from_secs(10), || {
        let ready = http_get(port, "/ready");
        ready.contains("2 of 2 targets scraped").then_some(())
    });
    assert!(both.is_some(), "the new target is not scraped");

    // A bad one is refused with its errors, and the running one goes on.
    std::fs::write(
        &cfg,
        text("[[targets]]\nname = \"x\"\nkind = \"f5\"\nurl = \"http://127.0.0.1:1/\"\n"),
    )
    .unwrap();
    hup(&run);
    let said = until(&sock, "READY=1", Duration::from_secs(10));
    assert!(said.contains(&"RELOADING=1".to_string()), "{said:?}");
    let scrapes = |m: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with("lbwatch_scrapes_total{target=\"lb2\",result=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let before = scrapes(&http_get(port, "/metrics"));
    run.wait_for(Duration::from_secs(3), |_| false);
    let metrics = http_get(port, "/metrics");
    let logs = run.stderr.lock().unwrap().clone();
    run.stop();
    assert!(scrapes(&metrics) > before, "lb2 is no longer scraped");
    assert!(
        logs.contains("config reload rejected")
            && logs.contains("targets[0]: unknown variant `f5`"),
        "{logs}"
    );
    assert!(metrics.contains("lbwatch_config_reloads_total{result=\"rejected\"} 1"));
    assert!(metrics.contains("lbwatch_config_reloads_total{result=\"ok\"} 1"));
    until(&sock, "STOPPING=1", Duration::from_secs(5));
}

#[test]
fn every_dashboard_query_returns_data_and_the_status_page_shows_the_alert() {
    let lb = fake_lb::start(Behaviour::Csv);
    let hook = Sink::start(200);
    let port = free_port();
    let cfg = write_config(
        "dashboard.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{}[[notifiers]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            target("lb1", &lb.url, ""),
            hook.url("/hook")
        ),
    );
    let run = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    let prom = tools::prometheus(&scratch("dash-prom"), &[format!("127.0.0.1:{port}")]);
    lb.wait_scraped(4);
    // A reload once Prometheus has seen the counters before it (the
    // reloads annotation), then the fault (the incidents annotation).
    std::thread::sleep(Duration::from_secs(3));
    lb.reload();
    lb.wait_scraped(8);
    lb.skew();
    assert!(hook.wait(Duration::from_secs(30), |_| !hook
        .webhook_events()
        .is_empty()));

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/lbwatch.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // Grafana's variables as a user picks them: this target, this pool.
    let expand = |q: &str| {
        q.replace("$__rate_interval", "1m")
            .replace("$target", "lb1")
            .replace("$pool", "web")
    };
    let query = |q: &str| -> Option<serde_json::Value> {
        let encoded: String = q
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let (status, body) = get(&format!("{}/api/v1/query?query={encoded}", prom.url()))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        assert_eq!(status, 200, "{q}: {body}");
        v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
            .then_some(v)
    };
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    // The annotations' queries: the LB's reloads and its incidents.
    let annotations = dashboard["annotations"]["list"].as_array().unwrap();
    assert_eq!(annotations.len(), 2);
    exprs.extend(
        annotations
            .iter()
            .map(|a| a["expr"].as_str().unwrap().to_string()),
    );
    // The variables' own queries: label_values(SELECTOR, LABEL).
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(def) = v["definition"].as_str() {
            let inner = def
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap();
            let (selector, label) = inner.rsplit_once(',').unwrap();
            exprs.push(format!("count by ({}) ({})", label.trim(), selector));
        }
    }
    let mut missing = Vec::new();
    for e in &exprs {
        if eventually(Duration::from_secs(20), || query(&expand(e))).is_none() {
            missing.push(e.clone());
        }
    }
    let page = tools::chromium(
        &format!("http://127.0.0.1:{port}/"),
        &artifact("status-page.png"),
        &scratch("chromium-dash"),
    );
    let metrics = http_get(port, "/metrics");
    run.stop();
    let ours: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("reloads") || l.contains("incidents"))
        .collect();
    assert!(
        missing.is_empty(),
        "no data for {missing:?}; /metrics says {ours:#?}"
    );
    assert!(page.contains("data-alert=\"TrafficSkew\""), "{page}");
    assert!(page.contains("web-1 takes 100%"), "{page}");
    for s in ["web-1", "web-2", "web-3", "web-4"] {
        assert!(page.contains(s), "{s} not shown");
    }
    let shot = std::fs::metadata(artifact("status-page.png")).unwrap();
    assert!(shot.len() > 10_000, "an empty screenshot");
}
