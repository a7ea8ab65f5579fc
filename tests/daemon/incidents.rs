//! Incidents through the real binary: built live from a fake LB's fault,
//! kept in the history across `kill -9`, ended once, served by
//! `/api/v1/incidents` and written out by `lbwatch incidents` / `report`.

use super::*;

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
