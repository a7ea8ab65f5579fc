//! Every stats fixture through its parser, compared with a golden expected
//! output (`LBWATCH_BLESS=1` rewrites them), plus the facts each fixture is
//! known for (see tests/fixtures/*/README.md).

use std::path::{Path, PathBuf};

use lbwatch::source::prometheus::{self, Mapping};
use lbwatch::source::{envoy, haproxy_csv, nginx, Parsed};
use serde_json::{json, Value};

fn fixture(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name)
}

fn as_json(p: &Parsed) -> Value {
    let mut v = json!({
        "servers": p.servers,
        "bad_rows": p.bad_rows.iter().map(|r| json!({"at": r.at, "reason": r.reason})).collect::<Vec<_>>(),
    });
    if !p.frontends.is_empty() {
        v["frontends"] = json!(p.frontends);
    }
    v
}

/// Parses one fixture and compares it with its golden file.
fn check(
    dir: &str,
    name: &str,
    parse: impl Fn(&[u8]) -> Result<Parsed<'_>, lbwatch::source::SourceError>,
) -> Parsed<'static> {
    let path = fixture(dir, name);
    let page = std::fs::read(&path).unwrap();
    let parsed = parse(&page).unwrap_or_else(|e| panic!("{name}: {e}"));
    let golden = path.with_extension("golden.json");
    let got = serde_json::to_string_pretty(&as_json(&parsed)).unwrap() + "\n";
    if std::env::var_os("LBWATCH_BLESS").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
        panic!(
            "{}: no golden file; run with LBWATCH_BLESS=1",
            golden.display()
        )
    });
    assert_eq!(got, want, "{name} differs from {}", golden.display());
    parsed.into_owned()
}

fn haproxy(name: &str) -> Parsed<'static> {
    check("haproxy", name, haproxy_csv::parse)
}

fn names(p: &Parsed) -> Vec<String> {
    p.servers
        .iter()
        .map(|s| format!("{}/{}", s.pool, s.server))
        .collect()
}

#[test]
fn every_haproxy_fixture_matches_its_golden_output() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixture("haproxy", "")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".csv") {
            haproxy(&name);
            seen += 1;
        }
    }
    assert_eq!(seen, 20);
}

#[test]
fn haproxy_1_4_balanced_pool_reads_eight_even_servers_and_skips_frontends() {
    let p = haproxy("csv-1.4-diamond-8srv-balanced.csv");
    let app: Vec<_> = p
        .servers
        .iter()
        .filter(|s| s.pool == "app-domain-com")
        .collect();
    assert_eq!(app.len(), 8);
    // 1.4 has no req_tot for servers: requests are the sum of hrsp_*.
    assert!(app
        .iter()
        .all(|s| s.up && s.weight == 1.0 && s.requests_total > 400_000));
    assert!(!names(&p)
        .iter()
        .any(|n| n.ends_with("FRONTEND") || n.ends_with("BACKEND")));
    assert!(p.bad_rows.is_empty());
}

#[test]
fn haproxy_statuses_map_to_up_down_and_out_of_rotation() {
    let p = haproxy("csv-1.4-datadog-mock-data-statuses-quoted.csv");
    assert!(p.bad_rows.is_empty(), "{:?}", p.bad_rows);
    for s in &p.servers {
        let status_down = !s.up;
        let out_of_rotation = s.up && s.weight == 0.0;
        assert!(!(status_down && out_of_rotation));
    }
    assert!(p.servers.iter().any(|s| !s.up), "DOWN servers expected");
    assert!(
        p.servers.iter().any(|s| s.up && s.weight == 0.0),
        "MAINT servers expected"
    );
}

#[test]
fn haproxy_two_concatenated_dumps_and_backups() {
    let p = haproxy("csv-1.5-marathon-lb-two-dumps-maint.csv");
    assert!(p.servers.iter().any(|s| s.server == "bck" && s.backup));
    // MAINT listeners in the frontend proxy are not servers.
    assert!(!names(&p).iter().any(|n| n.starts_with("http-in/")));
}

#[test]
fn haproxy_the_pool_algorithm_comes_from_the_backend_row() {
    let p = haproxy("csv-2.0-openshift-router-seq1-baseline.csv");
    let algos: std::collections::BTreeSet<_> =
        p.servers.iter().filter_map(|s| s.algo.as_deref()).collect();
    assert!(
        algos.contains("leastconn") && algos.contains("roundrobin"),
        "{algos:?}"
    );
    // Colons in proxy and server names survive.
    assert!(names(&p)
        .iter()
        .any(|n| n.starts_with("be_secure:openshift-console:console/pod:")));
}

#[test]
fn haproxy_tcp_pools_count_sessions_where_there_are_no_http_responses() {
    let p = haproxy("csv-2.5.5-haproxy-rs-show-stat.csv");
    assert!(p.servers.iter().any(|s| s.pool == "tcp-backend"));
    assert!(p.bad_rows.is_empty(), "{:?}", p.bad_rows);
}

#[test]
fn haproxy_2_8_reads_req_tot() {
    let p = haproxy("csv-2.8-otel-stats.csv");
    let s1 = p.servers.iter().find(|s| s.server == "s1").unwrap();
    assert_eq!((s1.requests_total, s1.pool.as_ref()), (45, "webservers"));
    assert_eq!(p.servers.len(), 3);
}

#[test]
fn haproxy_one_garbled_row_is_counted_and_the_rest_survives() {
    let p = haproxy("csv-2.8-otel-issue30252-malformed-row.csv");
    assert_eq!(names(&p), ["webservers/s1", "webservers/s3"]);
    assert_eq!(p.bad_rows.len(), 1);
    assert_eq!(p.bad_rows[0].at, "line 5");
}

#[test]
fn haproxy_a_missing_comma_is_a_bad_row_not_a_shifted_one() {
    let p = haproxy("csv-edge-haproxy_exporter-broken-missing-comma.csv");
    assert_eq!(names(&p), ["foo/foo-instance-0"]);
    assert_eq!(p.bad_rows.len(), 1);
    assert!(
        p.bad_rows[0]
            .reason
            .starts_with("61 fields where the other rows have 62"),
        "{:?}",
        p.bad_rows
    );
}

#[test]
fn haproxy_rows_of_older_versions_and_without_header_are_read() {
    let p = haproxy("csv-edge-haproxy_exporter-older-33col.csv");
    assert_eq!(names(&p), ["foo/foo-instance-0"]);
    let p = haproxy("csv-edge-haproxy_exporter-server-no-check.csv");
    assert_eq!(names(&p), ["test/127.0.0.1:8080"]);
    let p = haproxy("csv-synthetic-haproxy_exporter-2735rows.csv");
    assert!(p.servers.len() > 2000 && p.bad_rows.is_empty());
}

#[test]
fn haproxy_2_6_captured_from_the_real_haproxy() {
    for name in [
        "csv-2.6.12-lbwatch-e2e.csv",
        "csv-2.6.12-lbwatch-e2e-runtime-socket.csv",
    ] {
        let p = haproxy(name);
        assert!(p.bad_rows.is_empty(), "{name}: {:?}", p.bad_rows);
        let get = |pool: &str, server: &str| {
            p.servers
                .iter()
                .find(|s| s.pool == pool && s.server == server)
                .unwrap_or_else(|| panic!("{name}: no {pool}/{server}"))
        };
        assert!(!get("web", "web1").up && !get("web", "web2").up);
        let fe = p.frontends.iter().find(|f| f.frontend == "fe").unwrap();
        assert_eq!(
            (fe.requests_total, fe.denied_total, fe.responses_5xx_total),
            (Some(3), Some(0), Some(3)),
            "the exporter's frontend series"
        );
        assert_eq!(get("web", "web2").weight, 2.0);
        // Its port refuses connections too: three attempts, no HTTP response
        // (econ 3), so HAProxy counts no request (req_tot 0) and neither do we.
        let backup = get("web", "web3");
        assert!(
            backup.up && backup.backup && backup.requests_total == 0,
            "{backup:?}"
        );
        let maint = get("api", "api2");
        assert!(maint.up && maint.weight == 0.0, "{maint:?}");
        // The runtime socket gives the balancing algorithm; the HTTP page of
        // 2.6 leaves `algo` empty unless `stats show-legends` is set.
        let want = name.contains("socket").then_some("leastconn");
        assert_eq!(get("api", "api1").algo.as_deref(), want, "{name}");
    }
}

fn every_fixture(
    dir: &str,
    ext: &str,
    parse: fn(&[u8]) -> Result<Parsed, lbwatch::source::SourceError>,
) -> usize {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixture(dir, "")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(ext) && !name.ends_with(".golden.json") {
            check(dir, &name, parse);
            seen += 1;
        }
    }
    seen
}

#[test]
fn every_nginx_plus_and_vts_fixture_matches_its_golden_output() {
    assert_eq!(every_fixture("nginx-plus", ".json", nginx::parse_plus), 4);
    assert_eq!(every_fixture("nginx-vts", ".json", nginx::parse_vts), 2);
}

#[test]
fn nginx_plus_api_7_peers_backups_and_real_skew() {
    let p = check(
        "nginx-plus",
        "api7-http-upstreams-datadog.json",
        nginx::parse_plus,
    );
    let demo: Vec<_> = p
        .servers
        .iter()
        .filter(|s| s.pool == "demo-backend")
        .collect();
    let primaries: Vec<u64> = demo
        .iter()
        .filter(|s| !s.backup)
        .map(|s| s.requests_total)
        .collect();
    assert_eq!(primaries.len(), 2);
    assert!(primaries.iter().all(|&r| r > 18_000_000), "{primaries:?}");
    let trac_backup = p
        .servers
        .iter()
        .find(|s| s.pool == "trac-backend" && s.backup)
        .unwrap();
    assert_eq!(trac_backup.requests_total, 0);
    assert!(p.bad_rows.is_empty(), "{:?}", p.bad_rows);
}

#[test]
fn nginx_plus_unhealthy_backups_are_down() {
    let p = check(
        "nginx-plus",
        "api-http-upstreams-telegraf.json",
        nginx::parse_plus,
    );
    let backup = p
        .servers
        .iter()
        .find(|s| s.pool == "trac-backend" && s.backup)
        .unwrap();
    assert!(!backup.up);
    let primary = p
        .servers
        .iter()
        .find(|s| s.pool == "trac-backend" && !s.backup)
        .unwrap();
    assert_eq!(primary.responses_5xx_total, 6);
}

#[test]
fn nginx_plus_legacy_status_and_stream_upstreams() {
    let p = check(
        "nginx-plus",
        "status-legacy-v6-telegraf-nginx_plus.json",
        nginx::parse_plus,
    );
    assert!(p
        .servers
        .iter()
        .any(|s| s.pool == "first_upstream" && s.requests_total == 9876));
    // Same address twice (a backup of the same host): both kept, apart.
    let names: Vec<_> = p
        .servers
        .iter()
        .filter(|s| s.pool == "first_upstream")
        .map(|s| s.server.to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_ne!(names[0], names[1]);
    // Stream upstreams count connections; this test payload misspells
    // `connecions` on one peer: no counter, counted and skipped.
    let p = check(
        "nginx-plus",
        "api-stream-upstreams-telegraf.json",
        nginx::parse_plus,
    );
    assert_eq!(p.servers.len(), 3, "{p:?}");
    assert_eq!(p.bad_rows.len(), 1);
    assert_eq!(p.bad_rows[0].at, "upstreams.mysql_backends.peers[0]");
}

#[test]
fn nginx_vts_upstream_zones_without_nogroups() {
    let p = check(
        "nginx-vts",
        "vts-nginx1.12.2-telegraf.json",
        nginx::parse_vts,
    );
    assert_eq!(p.servers.len(), 1);
    let s = &p.servers[0];
    assert_eq!(
        (s.pool.as_ref(), s.requests_total, s.responses_5xx_total),
        ("backend_cluster", 2103849, 503)
    );
    // A truncated peer (only responseMsec) is a counted bad row; u64::MAX elsewhere is fine.
    let p = check(
        "nginx-vts",
        "vts-nginx1.13.12-datadog-truncated-upstream.json",
        nginx::parse_vts,
    );
    assert_eq!(p.bad_rows.len(), 1, "{p:?}");
}

#[test]
fn every_envoy_fixture_matches_its_golden_output() {
    assert_eq!(every_fixture("envoy", ".json", envoy::parse), 2);
    check("envoy", "clusters-text-envoy-admin-test.txt", envoy::parse);
}

#[test]
fn envoy_admin_test_cluster_in_both_forms() {
    // Envoy's own test mock: a host with invented counters and no rq_total.
    let json = check("envoy", "clusters-json-envoy-admin-test.json", envoy::parse);
    assert_eq!(json.servers.len(), 1);
    let j = &json.servers[0];
    assert_eq!(
        (j.pool.as_ref(), j.server.as_ref()),
        ("fake_cluster", "1.2.3.4:80")
    );
    // JSON leaves zero-valued stats out: no rq_total means 0. Failed active
    // health check and outlier ejection: down.
    assert_eq!((j.requests_total, j.up, j.weight), (0, false, 5.0));
    // The text form reads the same: an absent counter is zero there too,
    // and the host still counts, with its health flags.
    let text = check("envoy", "clusters-text-envoy-admin-test.txt", envoy::parse);
    assert_eq!(text.bad_rows, vec![]);
    assert_eq!(text.servers, json.servers);
}

#[test]
fn envoy_port_spellings_duplicate_clusters_and_draining_hosts() {
    let json = br#"{"cluster_statuses":[
        {"name":"web","host_statuses":[{"address":{"socket_address":{"address":"10.0.0.1","port":8080}},
            "stats":[{"name":"rq_total","value":"7"}]}]},
        {"name":"web","host_statuses":[{"address":{"socket_address":{"address":"10.0.0.2","port_value":8080}},
            "stats":[{"name":"rq_total","value":"9"},{"name":"rq_error","value":"-1"}]}]}]}"#;
    let p = envoy::parse(json).unwrap();
    let got: Vec<(&str, &str)> = p
        .servers
        .iter()
        .map(|s| (s.pool.as_ref(), s.server.as_ref()))
        .collect();
    assert_eq!(got, [("web", "10.0.0.1:8080")]);
    assert_eq!(p.bad_rows.len(), 1, "{p:?}");
    assert_eq!(p.bad_rows[0].at, "cluster_statuses[1].host_statuses[0]");
    assert!(
        p.bad_rows[0].reason.contains("`rq_error` is \"-1\""),
        "{p:?}"
    );
    let json = String::from_utf8_lossy(json).replace("\"-1\"", "\"1\"");
    let pools: Vec<String> = envoy::parse(json.as_bytes())
        .unwrap()
        .servers
        .iter()
        .map(|s| s.pool.to_string())
        .collect();
    assert_eq!(pools, ["web", "web#2"]);
    let text = "web::10.0.0.1:80::rq_total::5\nweb::10.0.0.1:80::health_flags::/eds_status_draining\nweb::10.0.0.2:80::weight::nan\n";
    let t = envoy::parse(text.as_bytes()).unwrap();
    assert_eq!((t.servers[0].up, t.servers[0].weight), (true, 0.0));
    assert_eq!(t.bad_rows.len(), 1, "{t:?}");
}

#[test]
fn nginx_failed_attempts_are_errors_and_a_vts_page_without_upstreams_is_empty() {
    let plus = br#"{"web":{"peers":[{"id":0,"server":"a:80","state":"up","requests":26,"fails":26,"responses":{"5xx":0}},
        {"id":1,"server":"b:80","state":"up","requests":-4},
        {"id":2,"server":"c:80","state":"up","requests":4,"weight":-1}]}}"#;
    let p = nginx::parse_plus(plus).unwrap();
    assert_eq!(p.servers.len(), 1);
    assert_eq!(p.servers[0].responses_5xx_total, 26);
    let at: Vec<&str> = p.bad_rows.iter().map(|r| r.at.as_str()).collect();
    assert_eq!(at, ["upstreams.web.peers[1]", "upstreams.web.peers[2]"]);
    assert!(p.bad_rows[0].reason.contains("`requests` is -4"), "{p:?}");
    let vts =
        br#"{"hostName":"x","nginxVersion":"1.25.3","serverZones":{"*":{"requestCounter":5}}}"#;
    assert_eq!(nginx::parse_vts(vts), Ok(Default::default()));
    assert!(nginx::parse_vts(br#"{"something":"else"}"#).is_err());
}

#[test]
fn prometheus_nan_infinite_and_negative_values_are_bad_rows_named_by_their_series() {
    let page = "haproxy_server_http_responses_total{proxy=\"web\",server=\"a\",code=\"2xx\"} NaN\n\
        haproxy_server_http_responses_total{proxy=\"web\",server=\"b\",code=\"2xx\"} +Inf\n\
        haproxy_server_http_responses_total{proxy=\"web\",server=\"c\",code=\"2xx\"} -3\n\
        haproxy_server_http_responses_total{proxy=\"web\",server=\"d\",code=\"2xx\"} 12\n\
        haproxy_server_weight{proxy=\"web\",server=\"d\"} NaN\n\
        haproxy_server_http_responses_total{proxy=\"web\",server=\"e\",code=\"2xx\"} 12\n";
    let p = prometheus::parse_haproxy(page.as_bytes()).unwrap();
    let names: Vec<&str> = p.servers.iter().map(|s| s.server.as_ref()).collect();
    assert_eq!(names, ["e"]);
    let bad: Vec<(&str, &str)> = p
        .bad_rows
        .iter()
        .map(|r| (r.at.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        bad,
        [
            ("web/a", "`requests` is NaN, not a count"),
            ("web/b", "`requests` is inf, not a count"),
            ("web/c", "`requests` is -3, not a count"),
            ("web/d", "`weight` is NaN, not a weight"),
        ]
    );
}

#[test]
fn envoy_istio_mixed_casing_omitted_zeros_and_pipes() {
    let p = check(
        "envoy",
        "clusters-json-istioctl-testdata-mixedcase.json",
        envoy::parse,
    );
    let reviews: Vec<_> = p
        .servers
        .iter()
        .filter(|s| s.pool.contains("reviews"))
        .collect();
    assert_eq!(reviews.len(), 3);
    assert!(
        reviews.iter().all(|s| s.requests_total == 0),
        "zero stats are omitted"
    );
    let inbound = p.servers.iter().find(|s| s.pool == "inbound_9092").unwrap();
    assert_eq!(
        (
            inbound.server.as_ref(),
            inbound.requests_total,
            inbound.responses_5xx_total
        ),
        ("unix:/sock/mixer.socket", 300076, 78)
    );
    assert!(p.servers.iter().any(|s| !s.up), "the UNHEALTHY host");
}

#[test]
fn haproxy_exporters_both_label_schemes_and_status_shapes() {
    // The built-in exporter of HAProxy 2.6 (state label), captured here.
    let p = check(
        "haproxy-prometheus",
        "haproxy-2.6.12-builtin-exporter.metrics",
        prometheus::parse_haproxy,
    );
    let get = |pool: &str, server: &str| {
        p.servers
            .iter()
            .find(|s| s.pool == pool && s.server == server)
            .unwrap()
    };
    assert!(!get("web", "web1").up && !get("web", "web2").up);
    let fe = p.frontends.iter().find(|f| f.frontend == "fe").unwrap();
    assert_eq!(
        (fe.requests_total, fe.denied_total, fe.responses_5xx_total),
        (Some(3), Some(0), Some(3)),
        "the exporter's frontend series"
    );
    assert_eq!(get("web", "web2").weight, 2.0);
    assert!(
        get("api", "api2").up && get("api", "api2").weight == 0.0,
        "MAINT is out of rotation"
    );
    // The same instance's CSV agrees on every server's health, and on the
    // optional signals both publish.
    let csv = haproxy("csv-2.6.12-lbwatch-e2e-runtime-socket.csv");
    for s in &csv.servers {
        let m = get(&s.pool, &s.server);
        assert_eq!(
            (
                m.connection_errors_total,
                m.response_errors_total,
                m.queue_current,
                m.sessions_current,
                m.session_limit
            ),
            (
                s.connection_errors_total,
                s.response_errors_total,
                s.queue_current,
                s.sessions_current,
                s.session_limit
            ),
            "signals of {}/{}",
            s.pool,
            s.server
        );
        assert_eq!(
            (m.up, m.weight, m.backup || s.backup),
            (s.up, s.weight, s.backup),
            "{}/{}",
            s.pool,
            s.server
        );
    }
    // The standalone haproxy_exporter (backend label, haproxy_server_up).
    for name in [
        "haproxy_exporter-unix_domain.metrics",
        "haproxy_exporter-server_broken_csv.metrics",
        "haproxy_exporter-older_haproxy_versions.metrics",
    ] {
        let p = check("haproxy-prometheus", name, prometheus::parse_haproxy);
        assert!(!p.servers.is_empty() || !p.bad_rows.is_empty(), "{name}");
    }
    let p = check(
        "haproxy-prometheus",
        "haproxy_exporter-unix_domain.metrics",
        prometheus::parse_haproxy,
    );
    assert_eq!(p.servers.len(), 1);
    assert_eq!(
        (p.servers[0].pool.as_ref(), p.servers[0].server.as_ref()),
        ("test", "127.0.0.1:8080")
    );
}

fn mapping(toml_text: &str) -> Mapping {
    #[derive(serde::Deserialize)]
    struct Wrap {
        mapping: Mapping,
    }
    let w: Wrap = config::Config::builder()
        .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    w.mapping
}

#[test]
fn prometheus_mappings_watch_traefik_caddy_and_envoy_pools_whole() {
    let traefik = mapping(
        "[mapping]\npool_label = \"service\"\nrequests = { metric = \"traefik_service_requests_total\" }\nerrors = { metric = \"traefik_service_requests_total\", labels = { code = \"5*\" } }\n",
    );
    for name in [
        "metrics-v2-datadog-traefik_mesh-proxy.txt",
        "metrics-v3-datadog-traefik_mesh-proxy.txt",
    ] {
        let p = check("traefik", name, |b| prometheus::parse_mapped(b, &traefik));
        assert!(
            p.servers.iter().any(|s| s.pool == "readiness@http"
                && s.server == prometheus::WHOLE_POOL
                && s.requests_total > 0),
            "{name}: {p:?}"
        );
    }
    let traefik_1 = mapping(
        "[mapping]\npool_label = \"service\"\nrequests = { metric = \"traefik_requests_total\" }\nerrors = { metric = \"traefik_requests_total\", labels = { code = \"5*\" } }\n",
    );
    let p = check("traefik", "metrics-1.3-datadog-extras.txt", |b| {
        prometheus::parse_mapped(b, &traefik_1)
    });
    assert!(!p.servers.is_empty(), "{p:?}");

    let caddy = mapping(
        "[mapping]\npool_label = \"handler\"\nrequests = { metric = \"caddy_http_request_duration_seconds_count\" }\nerrors = { metric = \"caddy_http_request_duration_seconds_count\", labels = { code = \"5*\" } }\n",
    );
    for name in [
        "metrics-caddy_http-test-expected-TestMetricsInstrumentedHandler.txt",
        "metrics-caddy_http-test-expected-TestMetricsInstrumentedHandlerPerHost.txt",
    ] {
        let p = check("caddy", name, |b| prometheus::parse_mapped(b, &caddy));
        assert!(p.servers.iter().any(|s| s.pool == "foo"), "{name}: {p:?}");
    }

    let envoy = mapping(
        "[mapping]\npool_label = \"envoy_cluster_name\"\nrequests = { metric = \"envoy_cluster_external_upstream_rq\" }\nerrors = { metric = \"envoy_cluster_external_upstream_rq\", labels = { envoy_response_code = \"5*\" } }\n",
    );
    let p = check(
        "envoy",
        "stats-prometheus-kuma-counter-status-codes.txt",
        |b| prometheus::parse_mapped(b, &envoy),
    );
    let total: u64 = p
        .servers
        .iter()
        .filter(|s| s.pool.starts_with("backend_kuma-demo_svc_3001"))
        .map(|s| s.requests_total)
        .sum();
    assert_eq!(total, 14 + 2 + 24 + 12);
}

#[test]
fn prometheus_histograms_are_read_whole() {
    // Kuma's Envoy histogram: 12 clusters x (20 buckets + +Inf, _sum, _count).
    let bytes = std::fs::read(fixture(
        "envoy",
        "stats-prometheus-kuma-histogram-connect-ms.txt",
    ))
    .unwrap();
    let (series, bad) = prometheus::exposition(&bytes).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let counts: Vec<_> = series
        .iter()
        .filter(|s| s.name == "envoy_cluster_upstream_cx_connect_ms_count")
        .collect();
    assert_eq!(counts.len(), 12);
    assert!(series.iter().any(|s| s.label("le") == Some("+Inf")));
    // Connections opened per cluster, watched whole through a mapping.
    let m = mapping("[mapping]\npool_label = \"envoy_cluster_name\"\nrequests = { metric = \"envoy_cluster_upstream_cx_connect_ms_count\" }\n");
    let p = check(
        "envoy",
        "stats-prometheus-kuma-histogram-connect-ms.txt",
        |b| prometheus::parse_mapped(b, &m),
    );
    assert_eq!(p.servers.len(), 12);
}

#[test]
fn haproxy_rows_carry_the_optional_signals_and_frontends_their_denials() {
    let p = haproxy("csv-1.7-telegraf-2016.csv");
    let host0 = p
        .servers
        .iter()
        .find(|s| s.pool == "be_app" && s.server == "host0")
        .unwrap();
    assert_eq!(host0.response_time_ms, Some(312.0), "rtime");
    assert_eq!(host0.session_limit, Some(32.0), "slim");
    assert_eq!(host0.sessions_current, Some(1.0), "scur");
    assert_eq!(host0.responses_4xx_total, Some(2345), "hrsp_4xx");
    assert_eq!(host0.response_errors_total, Some(1), "eresp");
    assert_eq!(host0.connection_errors_total, Some(0), "econ");
    let fe = p.frontends.iter().find(|f| f.frontend == "fe_app").unwrap();
    assert_eq!(fe.requests_total, Some(1_987_928));
    assert_eq!(fe.denied_total, Some(1102), "dreq + dcon + dses");
    assert_eq!(fe.responses_4xx_total, Some(123_452));
    // No frontend is taken for a server.
    assert!(p.servers.iter().all(|s| s.server != "FRONTEND"));
}

#[test]
fn nginx_and_envoy_peers_carry_the_optional_signals_their_format_publishes() {
    let plus = check(
        "nginx-plus",
        "api7-http-upstreams-datadog.json",
        nginx::parse_plus,
    );
    let peer = plus
        .servers
        .iter()
        .find(|s| s.pool == "demo-backend" && s.server == "10.0.0.42:8084")
        .unwrap();
    assert_eq!(peer.responses_4xx_total, Some(297_357), "responses.4xx");
    assert_eq!(peer.connection_errors_total, Some(4_865_455), "fails");
    assert_eq!(peer.response_time_ms, Some(10.0), "response_time");
    assert_eq!(peer.sessions_current, Some(0.0), "active");
    let legacy = check(
        "nginx-plus",
        "status-legacy-v6-telegraf-nginx_plus.json",
        nginx::parse_plus,
    );
    let zone = legacy
        .frontends
        .iter()
        .find(|f| f.frontend == "zone.a_80")
        .unwrap();
    assert_eq!(
        (
            zone.requests_total,
            zone.denied_total,
            zone.responses_4xx_total
        ),
        (Some(34), None, Some(444)),
        "server zones are frontends, with no deny counter"
    );
    let vts = check(
        "nginx-vts",
        "vts-nginx1.12.2-telegraf.json",
        nginx::parse_vts,
    );
    let s = &vts.servers[0];
    assert_eq!(
        (s.response_time_ms, s.responses_4xx_total, s.session_limit),
        (Some(31.0), Some(403), None),
        "responseMsec and 4xx; vts has no session limit"
    );
    let envoy = check(
        "envoy",
        "clusters-json-istioctl-testdata-mixedcase.json",
        envoy::parse,
    );
    let host = envoy
        .servers
        .iter()
        .find(|s| s.pool == "inbound_9092" && s.server == "unix:/sock/mixer.socket")
        .unwrap();
    assert_eq!(host.connection_errors_total, Some(64), "cx_connect_fail");
    assert_eq!(
        host.response_errors_total,
        Some(0),
        "rq_timeout, omitted as zero"
    );
    assert_eq!(
        host.responses_4xx_total, None,
        "Envoy's /clusters has no 4xx per host"
    );
}
