//! Incidents through the real binary: built live from a fake LB's fault,
//! kept in the history across `kill -9`, ended once, served by
//! `/api/v1/incidents` and written out by `lbwatch incidents` / `report`.

use super::*;
use serde_json::Value;
use support::tools;

fn history(state: &Path) -> Vec<lbwatch::incident::Incident> {
    lbwatch::incident::store::load(state)
        .unwrap()
        .into_values()
        .collect()
}

#[test]
fn an_incident_survives_kill_9_ends_once_and_is_served() {
    let lb = fake_lb::start(Behaviour::Csv);
    let state = fresh_state();
    let port = free_port();
    let cfg = write_config(
        "incidents.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{}",
            target("lb1", &lb.url, "")
        ),
    );
    let args = ["run", "--config", cfg.to_str().unwrap()];
    let mut run = Running::start_in(&args, &state);
    lb.wait_scraped(4);
    lb.skew();
    let fired = run.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"TrafficSkew\"") && l.contains("firing")
    });
    assert!(fired, "no TrafficSkew: {:?}", run.seen);
    // On disk before anyone is paged: the incident, open.
    let open = history(&state);
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].end.is_none() && open[0].alerts[0].alert == AlertName::TrafficSkew);
    let api = http_get(port, "/api/v1/incidents");
    assert!(
        api.contains(&format!("\"id\": \"{}\"", open[0].id)),
        "{api}"
    );
    let one = http_get(
        port,
        &format!("/api/v1/incidents/{}?format=markdown", open[0].id),
    );
    assert!(
        one.contains("## Timeline (UTC)") && one.contains("| End | still open |"),
        "{one}"
    );

    run.kill_9();
    let mut run = Running::start_in(&args, &state);
    run.wait_for(Duration::from_secs(3), |_| false);
    let alerts = http_get(port, "/api/v1/alerts");
    assert!(
        alerts.contains("TrafficSkew"),
        "still firing after the restart: {alerts}"
    );
    lb.heal();
    // TrafficSkew resolves about a minute after the fake LB heals.
    let resolved = run.wait_for(Duration::from_secs(120), |l| {
        l.contains("\"TrafficSkew\"") && l.contains("resolved")
    });
    assert!(
        resolved,
        "no resolve: {:?} {}",
        run.seen,
        run.stderr.lock().unwrap()
    );
    std::thread::sleep(Duration::from_millis(500));
    let done = history(&state);
    assert_eq!(done.len(), 1, "one incident, across the restart: {done:?}");
    let incident = &done[0];
    assert_eq!(incident.id, open[0].id);
    let end = incident.end.expect("ended");
    assert!(end >= incident.detected, "{incident:?}");
    assert_eq!(
        incident.alerts.len(),
        1,
        "the restart raised nothing again: {:?}",
        incident.alerts
    );

    // The commands read the same history.
    let list = lbwatch()
        .env("STATE_DIRECTORY", &state)
        .args(["incidents", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert_eq!(list.matches(&incident.id).count(), 1, "{list}");
    let report = lbwatch()
        .env("STATE_DIRECTORY", &state)
        .args(["report", &incident.id, "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.starts_with(&format!("# Incident {}: TrafficSkew on lb1/", incident.id)),
        "{report}"
    );
    for section in [
        "## Summary",
        "## Impact",
        "## Detection",
        "## Timeline (UTC)",
        "## Root cause",
        "## Resolution",
        "## Corrective and preventive measures",
    ] {
        assert!(report.contains(section), "{section} missing: {report}");
    }
    run.kill_9();
}

/// 8 of 20 servers of a pool go down in the same second (one host serving
/// 8 server lines): PagerDuty gets one page naming all 8 and the webhook one
/// request, both linking to the incident; when they come back, one resolve
/// each, the webhook's and Alertmanager's saying how long it lasted and
/// what it cost.
#[test]
fn servers_down_together_are_one_page_with_links_and_the_resolve_says_what_it_cost() {
    use support::receiver::Sink;
    let lb = fake_lb::start_pool(Behaviour::Csv, 20, 400.0);
    let sink = Sink::start(202);
    let key = scratch("grouped-pd.key");
    std::fs::write(&key, "R0UT1NGKEY0123456789abcdef012345\n").unwrap();
    let port = free_port();
    let cfg = write_config(
        "grouped.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{}\
             [[notifiers]]\nkind = \"webhook\"\nurl = \"{}\"\n\
             [[notifiers]]\nkind = \"pagerduty\"\nurl = \"{}\"\nrouting_key_file = \"{}\"\n\
             [[notifiers]]\nkind = \"alertmanager\"\nurl = \"{}\"\n",
            target("lb1", &lb.url, ""),
            sink.url("/hook"),
            sink.url("/pd"),
            key.display(),
            sink.url("/am"),
        ),
    );
    let run = Running::start_in(&["run", "--config", cfg.to_str().unwrap()], &fresh_state());
    lb.wait_scraped(5);
    let down = [3, 5, 7, 9, 11, 13, 15, 17];
    lb.set_down(&down);
    let on = |path: &'static str| {
        move |r: &support::receiver::Received| r.path.starts_with(path) && r.status == 202
    };
    let pd_is = |r: &support::receiver::Received, action: &str| {
        on("/pd")(r) && r.json()["event_action"] == action
    };
    assert!(
        sink.wait(Duration::from_secs(30), |r| r
            .iter()
            .any(|r| pd_is(r, "trigger"))),
        "no page: {:?}",
        sink.received()
    );
    // Room for a second page, were the alerts paged one by one.
    std::thread::sleep(Duration::from_secs(3));
    lb.set_down(&[]);
    assert!(
        sink.wait(Duration::from_secs(30), |r| r
            .iter()
            .any(|r| pd_is(r, "resolve"))),
        "no resolve: {:?}",
        sink.received()
    );
    std::thread::sleep(Duration::from_secs(2));
    let incidents = http_get(port, "/api/v1/incidents");
    run.stop();
    let received = sink.accepted();
    let pd: Vec<Value> = received
        .iter()
        .filter(|r| on("/pd")(r))
        .map(|r| r.json())
        .collect();
    let actions: Vec<&str> = pd
        .iter()
        .map(|b| b["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["trigger", "resolve"],
        "one page per incident: {pd:#?}"
    );
    let (trigger, resolve) = (&pd[0], &pd[1]);
    let summary = trigger["payload"]["summary"].as_str().unwrap();
    let names: Vec<String> = down.iter().map(|s| format!("web-{s}")).collect();
    assert!(
        summary.starts_with("ServerDown on lb1: 8 of 20 servers of pool web down: "),
        "{summary}"
    );
    for n in &names {
        assert!(summary.contains(n.as_str()), "{n} not named: {summary}");
    }
    assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
    let id = trigger["payload"]["custom_details"]["incident"]
        .as_str()
        .unwrap();
    assert!(incidents.contains(id), "{incidents}");
    let page = format!("http://127.0.0.1:{port}/#incident={id}");
    assert_eq!(trigger["links"][0]["href"], page.as_str());
    assert_eq!(
        trigger["links"][1]["href"],
        format!("http://127.0.0.1:{port}/api/v1/incidents/{id}?format=markdown").as_str()
    );

    let hooks: Vec<Value> = received
        .iter()
        .filter(|r| on("/hook")(r))
        .map(|r| r.json())
        .collect();
    let firing: Vec<&Value> = hooks
        .iter()
        .filter(|h| h["incident"]["firing"].as_u64() > Some(0))
        .collect();
    assert_eq!(firing.len(), 1, "one webhook request for the 8: {hooks:#?}");
    assert_eq!(firing[0]["events"].as_array().unwrap().len(), 8);
    assert_eq!(firing[0]["incident"]["url"], page.as_str());
    let over = hooks.last().unwrap();
    assert_eq!(over["incident"]["firing"], 0, "{over:#}");
    assert_eq!(over["incident"]["id"], id);
    assert!(
        over["incident"]["duration_seconds"].as_f64().unwrap() >= 3.0,
        "{over:#}"
    );
    let headline = over["incident"]["headline"].as_str().unwrap();
    assert!(headline.starts_with("over after "), "{headline}");
    assert!(!over["incident"]["impact"].as_str().unwrap().is_empty());

    // Alertmanager keeps its own grouping: each alert, linking to the
    // incident, and resolved with the incident's duration and impact.
    let am = received.iter().rfind(|r| on("/am")(r)).unwrap().json();
    let alerts = am.as_array().unwrap();
    assert_eq!(alerts.len(), 8, "{am:#}");
    for a in alerts {
        assert_eq!(a["generatorURL"], page.as_str());
        assert_eq!(a["annotations"]["incident"], id);
        assert!(
            a["annotations"]["incident_duration_seconds"].is_string(),
            "{a:#}"
        );
        assert!(a["annotations"]["incident_impact"].is_string(), "{a:#}");
    }
}

/// A reload that leaves one server of six in the pool: while the incident
/// is open the status page keeps the five that left as greyed rows with
/// their usual share, and the incident's view draws its chart and timeline
/// (headless Chromium, with a screenshot).
#[test]
fn the_status_page_shows_an_incident_its_chart_and_the_servers_that_left() {
    let lb = fake_lb::start_pool(Behaviour::Csv, 6, 600.0);
    let port = free_port();
    let cfg = write_config(
        "incident-page.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{}",
            target("lb1", &lb.url, "")
        ),
    );
    let mut run = Running::start_in(&["run", "--config", cfg.to_str().unwrap()], &fresh_state());
    // The usual shares are learnt 30 s late: a baseline of 40 scrapes.
    lb.wait_scraped(40);
    lb.reload_listing(1);
    let fired = run.wait_for(Duration::from_secs(30), |l| {
        l.contains("\"TrafficSkew\"") && l.contains("firing")
    });
    assert!(fired, "no TrafficSkew: {:?}", run.seen);
    std::thread::sleep(Duration::from_secs(3));
    let list = http_get(port, "/api/v1/incidents");
    let body = list.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let list: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {list}"));
    let id = list["incidents"][0]["id"].as_str().unwrap().to_string();
    let page = tools::chromium(
        &format!("http://127.0.0.1:{port}/#incident={id}"),
        &artifact("incident-page.png"),
        &scratch("chromium-incident"),
    );
    run.stop();
    for n in 2..=6 {
        let row = format!("data-left=\"web-{n}\"");
        assert!(
            page.contains(&row),
            "web-{n} not kept as a greyed row: {page}"
        );
    }
    assert!(page.contains("left at "), "{page}");
    assert!(
        page.contains(", usually 16%") || page.contains(", usually 17%"),
        "usual share of about a sixth: {page}"
    );
    assert!(page.contains(&format!("Incident {id}")), "{page}");
    assert!(page.contains("data-pool=\"web\""), "no chart: {page}");
    let lines = page.matches("data-series=").count();
    assert!(lines >= 3, "shares, rate and 5xx drawn: {lines}");
    assert!(
        page.contains("the LB reloaded"),
        "the reload on the timeline: {page}"
    );
    assert!(
        page.contains("5 of 6 servers left"),
        "the pool change on the timeline: {page}"
    );
    let shot = std::fs::metadata(artifact("incident-page.png")).unwrap();
    assert!(shot.len() > 10_000, "an empty screenshot");
}

/// A target removed from the configuration in the middle of its incident:
/// its alert resolves through the pipeline, so the incident closes (with
/// an end) instead of staying open with nobody to end it, and the webhook
/// hears that it is over.
#[test]
fn a_target_removed_mid_incident_closes_it_and_its_resolve_is_sent() {
    use support::receiver::Sink;
    let (lb1, lb2) = (
        fake_lb::start(Behaviour::Csv),
        fake_lb::start(Behaviour::Csv),
    );
    let hook = Sink::start(200);
    let state = fresh_state();
    let notifier = format!(
        "[[notifiers]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/hook")
    );
    let both = format!(
        "{}{}{notifier}",
        target("lb1", &lb1.url, ""),
        target("lb2", &lb2.url, "")
    );
    let cfg = write_config("removed.toml", &both);
    let mut run = Running::start_in(&["run", "--config", cfg.to_str().unwrap()], &state);
    lb1.wait_scraped(4);
    lb1.skew();
    let fired = run.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"TrafficSkew\"") && l.contains("firing")
    });
    assert!(fired, "no TrafficSkew: {:?}", run.seen);
    std::fs::write(&cfg, format!("{}{notifier}", target("lb2", &lb2.url, ""))).unwrap();
    hup(&run);
    let closed = support::tools::eventually(Duration::from_secs(20), || {
        let all = history(&state);
        all.iter().any(|i| i.closed).then_some(all)
    });
    let over =
        |r: &[support::receiver::Received]| r.iter().any(|r| r.json()["incident"]["firing"] == 0);
    let heard = hook.wait(Duration::from_secs(20), over);
    run.stop();
    let all = closed.unwrap_or_else(|| panic!("still open: {:?}", history(&state)));
    assert_eq!(all.len(), 1, "{all:?}");
    let i = &all[0];
    assert!(i.end.is_some_and(|e| e >= i.detected), "{i:?}");
    assert!(i.alerts.iter().all(|a| a.resolved.is_some()), "{i:?}");
    assert!(heard, "no resolve with its incident: {:?}", hook.received());
}
