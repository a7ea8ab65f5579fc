//! The deployment files, each checked by the real tool that consumes it:
//! the systemd unit by `systemd-analyze` (verify, and a security exposure of
//! at most 2.0), the Prometheus rules by `promtool test rules`, the
//! Alertmanager route by `amtool`, the Kubernetes manifests parsed with their
//! embedded configs checked by `haproxy -c` and `lbwatch check-config`, the
//! Dockerfile's stages and inputs, the Grafana dashboard's shape, and every
//! TOML snippet of the docs parsed as a config.

mod support;

use std::path::{Path, PathBuf};
use support::tools::{run_program, run_tool};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lbwatch-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The unit with lbwatch's path replaced by the binary under test
/// (`systemd-analyze verify` checks that the executables exist).
fn unit_under_test() -> PathBuf {
    let unit = read("deploy/systemd/lbwatch.service")
        .replace("/usr/local/bin/lbwatch", env!("CARGO_BIN_EXE_lbwatch"));
    let dir = scratch("systemd");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lbwatch.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = unit_under_test();
    let unit = unit.to_str().unwrap();
    let (ok, out) = run_tool("systemd-analyze", "systemd", &["verify", unit], None);
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify: {out}");
    let text = read("deploy/systemd/lbwatch.service");
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "StateDirectory=lbwatch",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
    ] {
        assert!(text.contains(line), "{line:?} missing from the unit");
    }
    let (ok, out) = run_tool(
        "systemd-analyze",
        "systemd",
        &["security", "--offline=true", unit],
        None,
    );
    assert!(ok, "systemd-analyze security: {out}");
    let score: f64 = out
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for lbwatch.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {out}"));
    assert!(score <= 2.0, "exposure {score}:\n{out}");
}

#[test]
fn the_prometheus_rules_pass_their_unit_tests() {
    let dir = repo("deploy/prometheus");
    for (check, file) in [
        ("check", "lbwatch-rules.yml"),
        ("test", "lbwatch-rules.test.yml"),
    ] {
        let file = dir.join(file);
        let args = [check, "rules", file.to_str().unwrap()];
        let (ok, out) = run_tool("promtool", "prometheus", &args, None);
        assert!(ok, "promtool {args:?}: {out}");
    }
}

#[test]
fn the_alertmanager_route_is_valid_and_pages_by_severity() {
    let file = repo("deploy/alertmanager/alertmanager.yml");
    let file = file.to_str().unwrap();
    let (ok, out) = run_tool(
        "amtool",
        "prometheus-alertmanager",
        &["check-config", file],
        None,
    );
    assert!(ok, "amtool check-config: {out}");
    for (labels, receiver) in [
        (
            ["severity=critical", "alertname=TrafficSkew"],
            "pagerduty-critical",
        ),
        (
            ["severity=warning", "alertname=ServerDown"],
            "pagerduty-warning",
        ),
        (["severity=info", "alertname=PoolMembershipChanged"], "chat"),
    ] {
        let config = format!("--config.file={file}");
        let mut args = vec!["config", "routes", "test", config.as_str()];
        args.extend(labels);
        let (ok, out) = run_tool("amtool", "prometheus-alertmanager", &args, None);
        let got = out
            .lines()
            .find(|l| !l.starts_with("Warning"))
            .unwrap_or("");
        assert!(ok && got.trim() == receiver, "{labels:?}: {out}");
    }
}

/// Every document of every manifest.
fn manifests() -> Vec<(String, serde_yaml::Value)> {
    manifests_in("deploy/kubernetes")
}

/// Every document of every manifest in `dir`.
fn manifests_in(dir: &str) -> Vec<(String, serde_yaml::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo(dir)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name.clone(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

use serde::Deserialize;

fn kind<'a>(docs: &'a [(String, serde_yaml::Value)], kind: &str) -> &'a serde_yaml::Value {
    &docs
        .iter()
        .find(|(_, d)| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
        .1
}

/// The kustomization lists every manifest of its directory.
fn all_listed_in_the_kustomization(docs: &[(String, serde_yaml::Value)]) {
    let listed: Vec<&str> = kind(docs, "Kustomization")["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for (file, d) in docs {
        if d["kind"] != "Kustomization" {
            assert!(
                listed.contains(&file.as_str()),
                "{file} not in kustomization"
            );
        }
    }
}

#[test]
fn the_kubernetes_manifests_hold_together_and_their_configs_are_valid() {
    let docs = manifests();
    for (file, d) in &docs {
        for field in ["apiVersion", "kind"] {
            assert!(d[field].is_string(), "{file}: no {field}");
        }
        if d["kind"] != "Kustomization" {
            assert!(
                d["metadata"]["name"].is_string(),
                "{file}: no metadata.name"
            );
        }
    }
    all_listed_in_the_kustomization(&docs);

    let cm = &kind(&docs, "ConfigMap")["data"];
    let haproxy_cfg = scratch("haproxy.cfg");
    std::fs::write(&haproxy_cfg, cm["haproxy.cfg"].as_str().unwrap()).unwrap();
    let (ok, out) = run_program(
        &support::haproxy::haproxy_binary(),
        &["-c", "-f", haproxy_cfg.to_str().unwrap()],
        None,
    );
    assert!(ok, "haproxy -c: {out}");
    let lbwatch_toml = scratch("lbwatch.toml");
    std::fs::write(&lbwatch_toml, cm["lbwatch.toml"].as_str().unwrap()).unwrap();
    let (ok, out) = run_program(
        Path::new(env!("CARGO_BIN_EXE_lbwatch")),
        &["check-config", lbwatch_toml.to_str().unwrap()],
        None,
    );
    assert!(ok, "lbwatch check-config: {out}");
    let cfg = lbwatch::config::load_with_env(&lbwatch_toml, []).unwrap();

    // The sidecar reads the socket HAProxy writes, through a shared volume.
    let pod = &kind(&docs, "Deployment")["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().unwrap();
    let container = |name: &str| {
        containers
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} container"))
    };
    let (haproxy, lbwatch) = (container("haproxy"), container("lbwatch"));
    let socket_url = cfg.targets[0].url.expose();
    let socket = socket_url
        .strip_prefix("unix://")
        .expect("a runtime socket");
    assert!(cm["haproxy.cfg"]
        .as_str()
        .unwrap()
        .contains(&format!("stats socket {socket}")));
    let mounts = |c: &serde_yaml::Value| -> Vec<(String, String)> {
        c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    m["mountPath"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let shared = mounts(lbwatch)
        .into_iter()
        .find(|(_, p)| socket.starts_with(p.as_str()))
        .expect("the socket's directory mounted in lbwatch");
    assert!(mounts(haproxy).contains(&shared), "not shared: {shared:?}");
    // Probes on /healthz and /ready, on the port lbwatch listens on.
    let port: u64 = cfg.http.listen.rsplit(':').next().unwrap().parse().unwrap();
    let ports = lbwatch["ports"].as_sequence().unwrap();
    assert!(ports
        .iter()
        .any(|p| p["name"] == "lbwatch" && p["containerPort"].as_u64() == Some(port)));
    assert_eq!(lbwatch["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(lbwatch["livenessProbe"]["httpGet"]["path"], "/healthz");
    for c in [haproxy, lbwatch] {
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    }
    // The state directory is a volume (the root filesystem is read-only).
    let state = cfg.state.dir();
    assert!(mounts(lbwatch)
        .iter()
        .any(|(_, p)| state.starts_with(p.as_str())));
    // Prometheus finds the port by name.
    let monitor = kind(&docs, "PodMonitor");
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], "lbwatch");
    assert_eq!(
        kind(&docs, "Service")["spec"]["ports"][1]["targetPort"],
        "lbwatch"
    );
}

/// The fleet: a StatefulSet of 2 x `[cluster] shards` pods, each taking its
/// shard from its ordinal, so every shard has exactly two replicas; a
/// PodDisruptionBudget that keeps one of them through a drain.
#[test]
fn the_fleet_statefulset_gives_every_shard_two_replicas() {
    let docs = manifests_in("deploy/kubernetes-fleet");
    all_listed_in_the_kustomization(&docs);
    let toml = scratch("fleet.toml");
    let text = kind(&docs, "ConfigMap")["data"]["lbwatch.toml"]
        .as_str()
        .unwrap();
    std::fs::write(&toml, text).unwrap();
    let (ok, out) = run_program(
        Path::new(env!("CARGO_BIN_EXE_lbwatch")),
        &["check-config", toml.to_str().unwrap()],
        None,
    );
    assert!(ok, "lbwatch check-config: {out}");
    let cfg = lbwatch::config::load_with_env(&toml, []).unwrap();
    let shards = cfg.cluster.shards.expect("[cluster] shards");

    let set = kind(&docs, "StatefulSet");
    let replicas = set["spec"]["replicas"].as_u64().unwrap();
    assert_eq!(replicas, 2 * u64::from(shards), "two replicas per shard");
    let pod = &set["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let ordinal = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "LBWATCH_SHARD_ORDINAL")
        .expect("the ordinal in the environment");
    assert_eq!(
        ordinal["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    // The targets come from the file_sd ConfigMap, mounted where the
    // discovery block reads.
    let sd = docs
        .iter()
        .find(|(_, d)| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "lbwatch-fleet-sd")
        .expect("the file_sd ConfigMap");
    let sd_dir = scratch("fleet-sd");
    std::fs::create_dir_all(&sd_dir).unwrap();
    std::fs::write(
        sd_dir.join("lbs.json"),
        sd.1["data"]["lbs.json"].as_str().unwrap(),
    )
    .unwrap();
    let pattern = cfg.discovery[0].files[0].clone();
    let mounted = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| pattern.parent() == Some(Path::new(m["mountPath"].as_str().unwrap())));
    assert!(mounted, "{} not mounted", pattern.display());
    let mut blocks = cfg.discovery.clone();
    blocks[0].files = vec![sd_dir.join("*.json")];
    let mut found = lbwatch::discovery::Discovered::default();
    assert!(found
        .update(lbwatch::discovery::read_files(&blocks))
        .is_empty());
    let names: Vec<String> = found.targets().map(|t| t.name.clone()).collect();
    assert!(names.len() >= 6, "{names:?}");

    let mut per_shard = vec![0; shards as usize];
    let mut watchers: std::collections::BTreeMap<&str, usize> = Default::default();
    for k in 0..replicas {
        let env = |name: &str| (name == "LBWATCH_SHARD_ORDINAL").then(|| k.to_string());
        let shard = lbwatch::cluster::Shard::of(&cfg.cluster, &env)
            .unwrap()
            .unwrap();
        per_shard[shard.index as usize] += 1;
        for n in names.iter().filter(|n| shard.keeps(n)) {
            *watchers.entry(n).or_default() += 1;
        }
    }
    assert!(per_shard.iter().all(|n| *n == 2), "{per_shard:?}");
    assert_eq!(watchers.len(), names.len(), "a target no pod watches");
    assert!(watchers.values().all(|n| *n == 2), "{watchers:?}");

    let labels = &pod["metadata"]["labels"];
    let pdb = kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(&kind(&docs, "Service")["spec"]["selector"], labels);
    assert_eq!(&set["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let state = cfg.state.dir();
    assert!(container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| state.starts_with(m["mountPath"].as_str().unwrap())));
}

#[test]
fn the_dockerfile_builds_from_the_repository_and_runs_as_non_root() {
    let text = read("deploy/docker/Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "not multi-stage: {froms:?}");
    // The build image uses the toolchain the repository pins.
    let pinned = read("rust-toolchain.toml");
    let channel = pinned
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"');
    let minor: String = channel.split('.').take(2).collect::<Vec<_>>().join(".");
    assert!(
        froms[0].contains(&format!("rust:{minor}")),
        "{froms:?} vs {channel}"
    );
    // Everything it copies from the build context exists.
    for l in &lines {
        if let Some(rest) = l.strip_prefix("COPY ") {
            if rest.starts_with("--from") {
                continue;
            }
            let parts: Vec<&str> = rest.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                assert!(repo(src).exists(), "COPY {src}: not in the repository");
            }
        }
    }
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the final stage");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let final_stage = &lines[last_from..];
    assert!(final_stage.iter().any(|l| l.starts_with("USER ")));
    assert!(final_stage
        .iter()
        .any(|l| l.starts_with("ENTRYPOINT [\"/usr/local/bin/lbwatch\"]")));
}

#[test]
fn the_dashboard_has_a_query_per_panel_and_target_and_pool_variables() {
    let d: serde_json::Value = serde_json::from_str(&read("dashboards/lbwatch.json")).unwrap();
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for v in ["datasource", "target", "pool"] {
        assert!(vars.contains(&v), "no ${v} variable: {vars:?}");
    }
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            assert!(t["expr"].as_str().unwrap().contains("lbwatch_"), "{t}");
        }
    }
}

/// ```toml blocks of a Markdown file, with the line each starts at.
fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start().starts_with("```toml") => {
                current = Some((i + 1, String::new()))
            }
            Some(_) if line.trim_start().starts_with("```") => out.push(current.take().unwrap()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_config_snippet_in_the_docs_parses() {
    let mut docs = vec![repo("README.md"), repo("ARCHITECTURE.md")];
    for entry in std::fs::read_dir(repo("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let mut checked = 0;
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (line, block) in toml_blocks(&text) {
            let file = scratch(&format!("snippet-{checked}.toml"));
            std::fs::write(&file, &block).unwrap();
            if let Err(e) = lbwatch::config::load_with_env(&file, []) {
                panic!(
                    "{}:{line}: {}\n{block}",
                    doc.display(),
                    e.lines().join("\n")
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} snippets found");
}
