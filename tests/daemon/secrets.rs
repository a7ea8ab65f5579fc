//! Secrets never show, through the real binary: tokens inside URLs (a
//! Slack-shaped webhook, `?token=`), header values, secrets from the
//! environment, a target's scrape password; in the logs, /metrics and the
//! API while receivers fail and echo what they were sent, in
//! `check-config` output, and in a rejected reload. (Broken stats
//! endpoints whose URL holds secrets: `broken_endpoints_…` in daemon.rs
//! and the TLS failures in tls.rs.)

use super::*;
use support::receiver::Sink;
use support::tools::eventually;

const SLACK_TOKEN: &str = "XoXbSl4ckT0kenInThePath";
const QUERY_TOKEN: &str = "QueryT0kenPagerDuty";
const HEADER_VALUE: &str = "Bearer Auth0rizationHeaderValue";
const HMAC_KEY: &str = "HmacKeyFromTheEnvironment";
const ROUTING_KEY: &str = "R0utingKeyFromTheEnvironment";
const SCRAPE_PASSWORD: &str = "Scr4pePasswordFromAFile";
const URL_PASSWORD: &str = "Passw0rdInAUrl";

fn leaks(shown: &str) -> Vec<&'static str> {
    [
        SLACK_TOKEN,
        QUERY_TOKEN,
        HEADER_VALUE,
        "Auth0rizationHeaderValue",
        HMAC_KEY,
        ROUTING_KEY,
        SCRAPE_PASSWORD,
        URL_PASSWORD,
    ]
    .into_iter()
    .filter(|s| shown.contains(s))
    .collect()
}

#[test]
fn tokens_in_urls_header_values_and_secrets_from_the_environment_never_show() {
    // Both receivers answer 500: every delivery fails and is logged.
    let slack = Sink::start(500);
    let pd = Sink::start(500);
    let lb = fake_lb::start(Behaviour::Csv);
    let port = free_port();
    let password = scratch("scrape.password");
    std::fs::write(&password, format!("{SCRAPE_PASSWORD}\n")).unwrap();
    let pd_url = scratch("pd.url");
    std::fs::write(&pd_url, pd.url(&format!("/v2/enqueue?token={QUERY_TOKEN}"))).unwrap();
    let slack_url = slack.url(&format!("/services/T0AAAA/B0BBBB/{SLACK_TOKEN}"));
    // A stats endpoint that refuses, its URL carrying a password and a
    // token: its scrape errors and its ScrapeFailed must show neither.
    let dead_url = format!("http://lbwatch:{URL_PASSWORD}@127.0.0.1:1/stats?token={QUERY_TOKEN}");
    let cfg = write_config(
        "secrets.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{}\
             [[notifiers]]\nname = \"slack\"\nkind = \"webhook\"\nurl_env = \"LBWATCH_TEST_SLACK_URL\"\n\
             secret_env = \"LBWATCH_TEST_HMAC\"\nheaders = {{ Authorization = \"{HEADER_VALUE}\" }}\n\
             [[notifiers]]\nname = \"pd\"\nkind = \"pagerduty\"\nurl_file = \"{}\"\nrouting_key_env = \"LBWATCH_TEST_ROUTING_KEY\"\n\
             [[targets]]\nname = \"dead\"\nkind = \"haproxy\"\nurl_env = \"LBWATCH_TEST_DEAD_URL\"\ninterval = \"1s\"\n\
             [detection.skew]\nwindow = \"5s\"\n",
            target(
                "lb1",
                &lb.url,
                &format!(
                    "username = \"lbwatch\"\npassword_file = \"{}\"",
                    password.display()
                )
            ),
            pd_url.display()
        ),
    );
    let run = Running::start_with(
        &["run", "--config", cfg.to_str().unwrap()],
        &fresh_state(),
        &[
            ("LBWATCH_TEST_SLACK_URL", slack_url.as_str()),
            ("LBWATCH_TEST_HMAC", HMAC_KEY),
            ("LBWATCH_TEST_ROUTING_KEY", ROUTING_KEY),
            ("LBWATCH_TEST_DEAD_URL", dead_url.as_str()),
        ],
    );
    lb.wait_scraped(4);
    lb.skew();
    let both_tried = |s: &Sink| s.wait(Duration::from_secs(30), |r| !r.is_empty());
    assert!(both_tried(&slack) && both_tried(&pd), "nothing was sent");
    let stderr = || run.stderr.lock().unwrap().clone();
    let logged = eventually(Duration::from_secs(10), || {
        let e = stderr();
        (e.contains("deliver{notifier=slack}:") && e.contains("deliver{notifier=pd}:")).then_some(e)
    })
    .expect("the failures were not logged");
    let scrape_failed = eventually(Duration::from_secs(15), || {
        let alerts = http_get(port, "/api/v1/alerts");
        alerts.contains("ScrapeFailed").then_some(alerts)
    })
    .expect("no ScrapeFailed for the dead target");
    assert!(
        scrape_failed.contains("http://127.0.0.1:1/…"),
        "{scrape_failed}"
    );
    let mut shown = logged.clone();
    for path in [
        "/metrics",
        "/api/v1/alerts",
        "/api/v1/pools?target=lb1",
        "/",
    ] {
        shown.push_str(&http_get(port, path));
    }
    shown.push_str(&run.stop().join("\n"));

    // The secrets were used: the receivers got them.
    let hook = &slack.received()[0];
    assert_eq!(hook.path, format!("/services/T0AAAA/B0BBBB/{SLACK_TOKEN}"));
    assert_eq!(hook.header("authorization"), Some(HEADER_VALUE));
    assert!(hook.header("x-lbwatch-signature").is_some());
    assert_eq!(pd.received()[0].json()["routing_key"], ROUTING_KEY);
    // A notifier is logged as its name and the receiver's scheme and host.
    let slack_host = slack.url("");
    let slack_host = slack_host.trim_end_matches('/');
    assert!(
        logged.contains(&format!(
            "deliver{{notifier=slack}}: {slack_host}/… answered 500"
        )),
        "{logged}"
    );
    // The receivers echoed the path, the header and the routing key in
    // their answers (tests/support/receiver.rs): the log has the echo, cut.
    for echo in [
        r#""authorization":"***""#,
        r#""path":"***""#,
        r#""routing_key":"***""#,
    ] {
        assert!(logged.contains(echo), "no {echo} in {logged}");
    }
    assert_eq!(leaks(&shown), Vec::<&str>::new(), "{shown}");
}

#[test]
fn check_config_and_a_rejected_reload_never_show_secrets() {
    let bad = format!(
        "[[targets]]\nname = \"lb1\"\nkind = \"haproxy\"\nurl = \"ftp://admin:{URL_PASSWORD}@lb/stats?token={QUERY_TOKEN}\"\n\
         [[notifiers]]\nkind = \"webhook\"\nurl = \"https://hooks.example/services/T0/B0/{SLACK_TOKEN}\"\n\
         headers = {{ \"Bad Header\" = \"{HEADER_VALUE}\" }}\n"
    );
    let path = write_config("secrets-bad.toml", &bad);
    let out = lbwatch()
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("targets[0].url: \"ftp://lb/…\" is invalid"),
        "{text}"
    );
    assert!(
        text.contains("notifiers[0].headers: \"Bad Header\""),
        "{text}"
    );
    assert_eq!(leaks(&text), Vec::<&str>::new(), "{text}");

    // A syntax error on a line holding a token, a type error on a header
    // value: the errors say where, not what was written there.
    for (name, text) in [
        (
            "secrets-syntax.toml",
            format!("[[notifiers]]\nkind = \"webhook\"\nurl = \"https://hooks.example/services/T0/B0/{SLACK_TOKEN}\n"),
        ),
        (
            "secrets-type.toml",
            format!("[[notifiers]]\nkind = \"webhook\"\nurl = \"https://x/\"\nheaders = \"{HEADER_VALUE}\"\n"),
        ),
    ] {
        let path = write_config(name, &text);
        let out = lbwatch()
            .args(["check-config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(said.contains(name), "{said}");
        assert_eq!(leaks(&said), Vec::<&str>::new(), "{said}");
    }

    // A running lbwatch given that file, then one whose URL variable is
    // unset: both reloads are rejected, naming keys and never values.
    let lb = fake_lb::start(Behaviour::Csv);
    let port = free_port();
    let good = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n{}",
        target("lb1", &lb.url, "")
    );
    let cfg = write_config("secrets-reload.toml", &good);
    let mut run = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    run.wait_for(Duration::from_secs(3), |_| false);
    std::fs::write(
        &cfg,
        format!("[http]\nlisten = \"127.0.0.1:{port}\"\n{bad}"),
    )
    .unwrap();
    hup(&run);
    let rejected = |what: &str| {
        eventually(Duration::from_secs(10), || {
            let e = run.stderr.lock().unwrap().clone();
            e.contains(what).then_some(e)
        })
        .unwrap_or_else(|| panic!("no {what:?} in {}", run.stderr.lock().unwrap()))
    };
    rejected("targets[0].url");
    std::fs::write(
        &cfg,
        format!(
            "{good}[[notifiers]]\nkind = \"webhook\"\nurl_env = \"LBWATCH_TEST_UNSET_URL\"\nheaders = {{ Authorization = \"{HEADER_VALUE}\" }}\n"
        ),
    )
    .unwrap();
    hup(&run);
    let logged = rejected("environment variable LBWATCH_TEST_UNSET_URL is not set");
    let metrics = http_get(port, "/metrics");
    run.stop();
    assert!(
        metrics.contains("lbwatch_config_reloads_total{result=\"rejected\"} 2"),
        "{metrics}"
    );
    assert_eq!(
        leaks(&(logged.clone() + &metrics)),
        Vec::<&str>::new(),
        "{logged}"
    );
}
