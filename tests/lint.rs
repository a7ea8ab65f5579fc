//! `lbwatch lint` through the real binary, on a corpus of real HAProxy and
//! NGINX configs (tests/lint/corpus, with PROVENANCE.md): each is accepted
//! by the real `haproxy -c` / `nginx -t` and gives no error; each is then
//! mutated in every way the checks describe, and every mutant must be
//! caught with the right check, pool and line, while still passing
//! `haproxy -c` / `nginx -t` where the LB accepts such a config (that is
//! the point: the LB's own check lets them through). Benign changes linted
//! `--against` the original give no error.

mod support;

#[path = "lint/mutate.rs"]
mod mutate;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::tools::binary;

use mutate::{Dialect, Expect, Mutant};

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/lint/corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "cfg" || e == "conf"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "the {dir} corpus is too small: {}",
        files.len()
    );
    files
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lbwatch-lint-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `lbwatch lint ARGS`: exit code and stdout, stderr.
fn lint(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lbwatch"))
        .arg("lint")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn findings(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = lint(&all);
    assert!(code == 0 || code == 1, "lint {args:?} exited {code}: {err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["version"], "1");
    v["findings"].as_array().unwrap().clone()
}

/// What the LB's own checker says of a config.
fn accepted_by_lb(dialect: Dialect, main: &Path) -> Result<(), String> {
    let out = match dialect {
        Dialect::Haproxy => Command::new(binary("haproxy", "haproxy"))
            // For the configs that name a backend by a variable.
            .env("LBWATCH_BACKEND", "app")
            .args(["-c", "-f"])
            .arg(main)
            .output()
            .unwrap(),
        Dialect::Nginx => {
            let prefix = main.parent().unwrap().join("prefix");
            std::fs::create_dir_all(&prefix).unwrap();
            Command::new(binary("nginx", "nginx"))
                .args(["-t", "-q", "-e", "stderr", "-p"])
                .arg(format!("{}/", prefix.display()))
                .arg("-c")
                .arg(main)
                .output()
                .unwrap()
        }
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The corpus config's directory copied to `dir`, so that includes follow.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Errors the corpus holds as published, each checked by hand (see
/// tests/lint/corpus/PROVENANCE.md): file, check, pool.
const KNOWN: &[(&str, &str, &str)] = &[
    // dataplaneapi's test data: server_02 and server_03 are both
    // 10.1.1.2:8080, so that machine takes two shares of three.
    (
        "14-dataplaneapi-servers.cfg",
        "duplicate-address",
        "test_backend",
    ),
];

fn corpus_is_clean(dialect: Dialect, dir: &str) {
    let mut problems = Vec::new();
    let mut known = 0;
    for file in corpus(dir) {
        if let Err(e) = accepted_by_lb(dialect, &file) {
            problems.push(format!("{}: the LB refuses it: {e}", file.display()));
        }
        let name = file.file_name().unwrap().to_str().unwrap();
        for f in findings(&[file.to_str().unwrap()])
            .iter()
            .filter(|f| f["severity"] == "error")
        {
            if KNOWN.contains(&(
                name,
                f["check"].as_str().unwrap(),
                f["pool"].as_str().unwrap_or(""),
            )) {
                known += 1;
            } else {
                problems.push(format!("{name}:{} {}", f["line"], f["message"]));
            }
        }
    }
    let expected = KNOWN
        .iter()
        .filter(|(f, _, _)| corpus(dir).iter().any(|p| p.ends_with(f)))
        .count();
    assert_eq!(
        known, expected,
        "a known finding of the {dir} corpus is no longer found"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_haproxy_corpus_passes_haproxy_c_and_gives_no_error() {
    corpus_is_clean(Dialect::Haproxy, "haproxy");
}

#[test]
fn the_nginx_corpus_passes_nginx_t_and_gives_no_error() {
    corpus_is_clean(Dialect::Nginx, "nginx");
}

/// Writes a mutant into a copy of its corpus directory and lints it
/// (against the original for the `--against` kinds); the description of
/// what went wrong, if anything did.
fn check_mutant(dialect: Dialect, original: &Path, m: &Mutant, dir: &Path) -> Option<String> {
    let root = original.parent().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    copy_tree(root, dir);
    for (file, text) in &m.files {
        let rel = Path::new(file).strip_prefix(root).unwrap();
        std::fs::write(dir.join(rel), text).unwrap();
    }
    let main = dir.join(original.file_name().unwrap());
    let what = format!(
        "{} / {}",
        original.file_name().unwrap().to_string_lossy(),
        m.name
    );
    if m.lb_accepts {
        // A config with `zero-warning` makes HAProxy's own warnings fatal:
        // there HAProxy catches the mutant too, and lint must still.
        match accepted_by_lb(dialect, &main) {
            Err(e) if !e.contains("'zero-warning' is set") => {
                return Some(format!(
                    "{what}: the LB refuses the mutant, so it proves nothing: {e}"
                ));
            }
            _ => {}
        }
    }
    let mut args = vec![main.to_str().unwrap().to_string()];
    if m.against {
        args.extend([
            "--against".to_string(),
            original.to_str().unwrap().to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let found = findings(&args);
    match &m.expect {
        Expect::Clean => {
            // No error the original does not have (the corpus' known
            // findings stay, on their pool and server).
            let before = findings(&[original.to_str().unwrap()]);
            let key = |f: &Value| (f["check"].clone(), f["pool"].clone());
            let known: Vec<_> = before
                .iter()
                .filter(|f| f["severity"] == "error")
                .map(key)
                .collect();
            let new: Vec<_> = found
                .iter()
                .filter(|f| f["severity"] == "error" && !known.contains(&key(f)))
                .map(|f| format!("{}:{} {}", f["file"], f["line"], f["message"]))
                .collect();
            (!new.is_empty()).then(|| format!("{what}: a benign change gave errors: {new:?}"))
        }
        Expect::Finding {
            check,
            pool,
            file,
            line,
        } => {
            let hit = found.iter().any(|f| {
                f["check"] == check.as_str()
                    && f["line"] == *line
                    && f["file"]
                        .as_str()
                        .is_some_and(|p| p.ends_with(file.as_str()))
                    && pool.as_ref().is_none_or(|p| f["pool"] == p.as_str())
            });
            (!hit).then(|| {
                format!(
                    "{what}: expected {check} on pool {pool:?} at {file}:{line}, got {:?}",
                    found
                        .iter()
                        .map(|f| format!(
                            "{} {} {}:{}",
                            f["check"], f["pool"], f["file"], f["line"]
                        ))
                        .collect::<Vec<_>>()
                )
            })
        }
    }
}

fn every_mutant_is_caught(dialect: Dialect, dir: &str) {
    let scratch = scratch(dir);
    let mut problems = Vec::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for file in corpus(dir) {
        let config = lbwatch::lint::load(std::slice::from_ref(&file), None).unwrap();
        for (i, m) in mutate::mutants(dialect, &config).iter().enumerate() {
            *counts.entry(m.kind.to_string()).or_default() += 1;
            if let Some(p) = check_mutant(dialect, &file, m, &scratch.join(format!("m{i}"))) {
                problems.push(p);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    #[allow(clippy::print_stderr)] // the counts, for whoever runs with --nocapture
    {
        eprintln!("{dir} mutants by kind: {counts:?}");
    }
    // Every kind of mutation found configs to apply to.
    for kind in mutate::kinds(dialect) {
        assert!(
            counts.get(*kind).copied().unwrap_or(0) > 0,
            "no {dir} mutant of kind {kind}"
        );
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_haproxy_mutant_is_caught_and_every_benign_change_passes() {
    every_mutant_is_caught(Dialect::Haproxy, "haproxy");
}

#[test]
fn every_nginx_mutant_is_caught_and_every_benign_change_passes() {
    every_mutant_is_caught(Dialect::Nginx, "nginx");
}

const TYPO: &str = "defaults\n  mode http\n  timeout client 5s\n  timeout server 5s\n  timeout connect 5s\nfrontend fe\n  bind 127.0.0.1:8080\n  default_backend web\nbackend web\n  server web1 10.0.0.1:80 check\n  server web2 10.0.0.1:80 check\n";

#[test]
fn the_text_report_points_at_the_line_with_a_caret_and_the_fix() {
    let dir = scratch("text");
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, TYPO).unwrap();
    let (code, out, _) = lint(&[file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let expected = format!(
        "error[pool-one-address]: all 2 servers of pool `web` are at 10.0.0.1:80 (web1, web2): every request lands on one machine, while the stats show 2 servers sharing the traffic\n  --> {}:11\n   |\n11 |   server web2 10.0.0.1:80 check\n   |   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n   = in: pool `web`, server `web2`\n   = fix: give each server line its own address (a copy-paste left them equal)\n",
        file.display()
    );
    assert!(out.starts_with(&expected), "{out}");
    assert!(out.ends_with("1 error(s), 0 warning(s), 0 info\n"), "{out}");
}

#[test]
fn exit_codes_follow_fail_on_and_unreadable_input_exits_2_naming_file_and_line() {
    let dir = scratch("exit");
    let warn = dir.join("warn.cfg");
    // One server routed to: a warning, no error.
    std::fs::write(
        &warn,
        "frontend fe\n  bind :80\n  default_backend one\nbackend one\n  server a 10.0.0.1:80\n",
    )
    .unwrap();
    assert_eq!(lint(&[warn.to_str().unwrap()]).0, 0);
    assert_eq!(lint(&["--fail-on", "warning", warn.to_str().unwrap()]).0, 1);

    let bad = dir.join("bad.cfg");
    std::fs::write(&bad, "  server a 10.0.0.1:80\nbackend b\n").unwrap();
    let (code, out, err) = lint(&[bad.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "lbwatch: {}:1: `server` is outside any section",
            bad.display()
        )
    );

    let nginx = dir.join("nginx.conf");
    std::fs::write(&nginx, "events {}\nhttp {\n  upstream u { server 127.0.0.1:1; }\n  server {\n    location / { proxy_pass http://u; }\n").unwrap();
    let (code, _, err) = lint(&[nginx.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{}:5: unexpected end of file, expecting `}}`",
            nginx.display()
        )),
        "{err}"
    );

    let (code, _, err) = lint(&[dir.join("absent.cfg").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("absent.cfg: No such file"), "{err}");
}

#[test]
fn a_directory_is_read_like_haproxy_f_and_unknown_directives_are_reported() {
    let dir = scratch("dir");
    std::fs::write(
        dir.join("10-front.cfg"),
        "frontend fe\n  bind :80\n  mode http\n  default_backend web\n  optoin forwardfor\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("20-back.cfg"),
        "backend web\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n",
    )
    .unwrap();
    // Not a .cfg: haproxy -f DIR skips it, and so does lint.
    std::fs::write(dir.join("README"), "backend web\n  server a 10.0.0.1:80\n").unwrap();
    assert!(
        accepted_by_lb(Dialect::Haproxy, &dir).is_err(),
        "haproxy -c refuses the misspelt keyword"
    );
    let found = findings(&[dir.to_str().unwrap()]);
    let ids: Vec<_> = found
        .iter()
        .map(|f| (f["check"].as_str().unwrap(), f["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(ids, [("unknown-directive", 5)], "{found:?}");
    assert!(found[0]["file"].as_str().unwrap().ends_with("10-front.cfg"));

    // --kind forces the grammar.
    let (code, _, err) = lint(&["--kind", "nginx", dir.join("20-back.cfg").to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn sarif_output_is_sarif_2_1_0_with_every_check_a_rule() {
    let dir = scratch("sarif");
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, TYPO).unwrap();
    let (code, out, _) = lint(&["--format", "sarif", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "lbwatch");
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for id in [
        "pool-one-address",
        "denies-everything",
        "missing-pool",
        "pool-shrunk",
        "weights-skewed",
        "balance-changed",
    ] {
        assert!(rules.contains(&id), "{id} missing from {rules:?}");
    }
    let result = &run["results"][0];
    assert_eq!(result["ruleId"], "pool-one-address");
    assert_eq!(result["level"], "error");
    assert_eq!(
        rules[result["ruleIndex"].as_u64().unwrap() as usize],
        "pool-one-address"
    );
    let loc = &result["locations"][0]["physicalLocation"];
    assert_eq!(loc["region"]["startLine"], 11);
    assert!(loc["artifactLocation"]["uri"]
        .as_str()
        .unwrap()
        .ends_with("haproxy.cfg"));
}

/// docs/lint.md: each check's examples, linted as shown (a `before`
/// block is the `--against` config), give the output shown.
#[test]
fn every_check_in_the_docs_gives_the_output_shown() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/lint.md"))
        .unwrap();
    let dir = scratch("docs");
    let mut checked = std::collections::BTreeSet::new();
    let (mut check, mut config, mut before) = (
        String::new(),
        None::<(String, String)>,
        None::<(String, String)>,
    );
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("### `") {
            check = h.split('`').next().unwrap().to_string();
            continue;
        }
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let body: String = lines
            .by_ref()
            .take_while(|l| *l != "```")
            .map(|l| format!("{l}\n"))
            .collect();
        let mut words = info.split_whitespace();
        match (words.next(), words.next()) {
            (Some(kind @ ("haproxy" | "nginx")), Some("before")) => {
                before = Some((kind.to_string(), body))
            }
            (Some(kind @ ("haproxy" | "nginx")), None) => config = Some((kind.to_string(), body)),
            (Some("text"), _) if !check.is_empty() => {
                let (kind, text) = config.take().expect("a config before its output");
                let ext = if kind == "nginx" { "conf" } else { "cfg" };
                let name = format!("{kind}.{ext}");
                std::fs::write(dir.join(&name), text).unwrap();
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_lbwatch"));
                cmd.current_dir(&dir).args(["lint", "--kind", &kind, &name]);
                if let Some((_, old)) = before.take() {
                    std::fs::write(dir.join(format!("deployed.{ext}")), old).unwrap();
                    cmd.args(["--against", &format!("deployed.{ext}")]);
                }
                let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
                assert!(
                    out.contains(&body),
                    "{check}: docs/lint.md shows\n{body}\nlint says\n{out}"
                );
                checked.insert(check.clone());
            }
            _ => {}
        }
    }
    let all: std::collections::BTreeSet<String> = lbwatch::lint::Check::ALL
        .iter()
        .map(|c| c.id().to_string())
        .collect();
    assert_eq!(checked, all, "every check has an example in docs/lint.md");
}

/// deploy/ci/lbwatch-lint-change, which the GitHub Actions, GitLab CI and
/// pre-commit examples call, in a git repository of its own: a change is
/// linted against the deployed ref (the weight typo is only an error
/// against it), a benign change passes, options pass through.
#[test]
fn the_ci_script_lints_the_working_tree_against_the_deployed_ref() {
    let repo = scratch("ci-repo");
    let git = |args: &[&str]| {
        let out = Command::new(binary("git", "git"))
            .current_dir(&repo)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let deployed = "frontend fe\n    bind :80\n    default_backend web\nbackend web\n    server web1 10.0.0.1:80 weight 1\n    server web2 10.0.0.2:80 weight 1\n    server web3 10.0.0.3:80 weight 1\n";
    std::fs::create_dir_all(repo.join("haproxy")).unwrap();
    std::fs::write(repo.join("haproxy/haproxy.cfg"), deployed).unwrap();
    git(&["init", "-q"]);
    git(&["add", "haproxy"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@localhost",
        "commit",
        "-qm",
        "deployed",
    ]);
    git(&["branch", "deployed"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ci/lbwatch-lint-change");
    let run = |text: &str, extra: &[&str]| {
        std::fs::write(repo.join("haproxy/haproxy.cfg"), text).unwrap();
        let out = Command::new(&script)
            .current_dir(&repo)
            .env("LBWATCH", env!("CARGO_BIN_EXE_lbwatch"))
            .args(["haproxy/haproxy.cfg", "deployed"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(
        &deployed.replace("weight 1\n    server web2", "weight 100\n    server web2"),
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error[weights-skewed]") && out.contains("--> haproxy/haproxy.cfg:5"),
        "{out}"
    );
    let (code, out) = run(
        &deployed.replace("bind :80\n", "bind :80\n    timeout client 30s\n"),
        &["--format", "json"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["findings"],
        serde_json::json!([])
    );
    let (code, out) = run(
        &deployed
            .replace("10.0.0.2", "10.0.0.1")
            .replace("10.0.0.3", "10.0.0.1"),
        &["--format", "sarif"],
    );
    assert_eq!(code, 1);
    let sarif: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "pool-one-address");

    // The pipeline examples call the script on the same config.
    for file in [
        "github-actions.yml",
        "gitlab-ci.yml",
        "pre-commit-config.yaml",
    ] {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("deploy/ci")
                .join(file),
        )
        .unwrap();
        let _: serde_yaml::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            text.contains("deploy/ci/lbwatch-lint-change haproxy/haproxy.cfg"),
            "{file}"
        );
    }
}

const HTTP: &str =
    "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n";
const APP: &str = "backend app\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n";

/// Styles of real configs, each with the errors lint must give (none for
/// the healthy ones) and, for the healthy ones, the LB's own word that the
/// config is valid.
#[test]
fn real_world_styles_give_the_right_errors() {
    let nginx_app = "upstream app { server 127.0.0.1:8001; server 127.0.0.1:8002; }";
    // (what, grammar, config, the errors as (check, line))
    type Case = (&'static str, Dialect, String, Vec<(&'static str, u64)>);
    let cases: Vec<Case> = vec![
        ("a bot trap and a maintenance backend, reached on a condition", Dialect::Haproxy,
         format!("{HTTP}frontend fe\n  bind :8080\n  acl bad_bot hdr_sub(user-agent) -i sqlmap\n  use_backend be_blocked if bad_bot\n  use_backend be_maint if {{ nbsrv(app) lt 1 }}\n  default_backend app\nbackend be_blocked\n  http-request deny deny_status 403\nbackend be_maint\n  http-request return status 503\n{APP}"), vec![]),
        ("alternatives in .if/.else, and a maintenance switch", Dialect::Haproxy,
         format!("{HTTP}frontend fe\n  bind :8080\n.if defined(MAINTENANCE)\n  http-request return status 503\n.endif\n  default_backend app\nbackend app\n.if defined(USE_TLS)\n  server a 10.0.0.1:443 ssl verify none\n  server b 10.0.0.2:443 ssl verify none\n.else\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n.endif\n"), vec![]),
        ("servers of one name resolved by resolvers, and the source-port workaround", Dialect::Haproxy,
         format!("{HTTP}resolvers dns\n  nameserver ns1 127.0.0.1:53\nfrontend fe\n  bind :8080\n  default_backend app\nbackend app\n  default-server resolvers dns init-addr none\n  server web1 tasks.web:80\n  server web2 tasks.web:80\nbackend egress\n  server e1 10.0.0.9:80 source 10.1.0.1\n  server e2 10.0.0.9:80 source 10.1.0.2\n"), vec![]),
        ("a backend named by an environment variable", Dialect::Haproxy,
         format!("{HTTP}frontend fe\n  bind :8080\n  default_backend \"${{LBWATCH_BACKEND}}\"\n{APP}"), vec![]),
        ("a disabled frontend", Dialect::Haproxy,
         format!("{HTTP}frontend old\n  bind :8081\n  disabled\n  http-request deny\n  default_backend app\nfrontend fe\n  bind :8080\n  default_backend app\n{APP}"), vec![]),
        ("a backslash inside single quotes", Dialect::Haproxy,
         format!("{HTTP}frontend fe\n  bind :8080\n  http-request set-header X-Path 'C:\\'\n  default_backend app\n{APP}"), vec![]),
        ("a deny after a redirect: every redirected request comes back and is denied", Dialect::Haproxy,
         format!("{HTTP}frontend fe\n  bind :8080\n  http-request redirect scheme https unless {{ ssl_fc }}\n  http-request deny\n  default_backend app\n{APP}"), vec![("denies-everything", 9)]),
        ("a deny after an allow: a whitelist", Dialect::Haproxy,
         format!("{HTTP}frontend fe\n  bind :8080\n  http-request allow if {{ src 10.0.0.0/8 }}\n  http-request deny\n  default_backend app\n{APP}"), vec![]),
        ("a backend with servers that denies everything", Dialect::Haproxy,
         format!("{HTTP}frontend fe\n  bind :8080\n  default_backend app\nbackend app\n  http-request deny if {{ always_true }}\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n"), vec![("denies-everything", 10)]),
        ("IPv6 and socket addresses written two ways", Dialect::Haproxy,
         format!("{HTTP}backend v6\n  server a [2001:db8::1]:80\n  server b ipv6@2001:db8::1:80\nbackend sock\n  server a /run/app.sock\n  server b unix@/run/app.sock\n"), vec![("pool-one-address", 8), ("pool-one-address", 11)]),
        ("satisfy any: authenticated clients get through the deny", Dialect::Nginx,
         format!("events {{}}\nhttp {{\n  {nginx_app}\n  server {{\n    listen 8080;\n    location / {{\n      satisfy any;\n      deny all;\n      auth_basic \"staff\";\n      auth_basic_user_file /dev/null;\n      proxy_pass http://app;\n    }}\n  }}\n}}\n"), vec![]),
        ("a server-level deny with no catch-all location", Dialect::Nginx,
         format!("events {{}}\nhttp {{\n  {nginx_app}\n  server {{\n    listen 8080;\n    deny all;\n    location /api/ {{ proxy_pass http://app; }}\n  }}\n}}\n"), vec![("denies-everything", 6)]),
        ("the catch-all denies before try_files hands over to a named location", Dialect::Nginx,
         format!("events {{}}\nhttp {{\n  {nginx_app}\n  server {{\n    listen 8080;\n    root /tmp;\n    location / {{\n      deny all;\n      try_files $uri @app;\n    }}\n    location @app {{ proxy_pass http://app; }}\n  }}\n}}\n"), vec![("denies-everything", 8)]),
        ("only /api exposed, the rest refused", Dialect::Nginx,
         format!("events {{}}\nhttp {{\n  {nginx_app}\n  server {{\n    listen 8080;\n    location / {{ return 403; }}\n    location /api/ {{ proxy_pass http://app; }}\n  }}\n}}\n"), vec![]),
        ("the catch-all server that drops unknown hosts", Dialect::Nginx,
         format!("events {{}}\nhttp {{\n  {nginx_app}\n  server {{ listen 8080 default_server; return 444; }}\n  server {{ listen 8080; server_name example.org; location / {{ proxy_pass http://app; }} }}\n}}\n"), vec![]),
    ];
    let dir = scratch("styles");
    let mut problems = Vec::new();
    for (i, (name, dialect, text, expected)) in cases.iter().enumerate() {
        let file = dir.join(format!(
            "{i}.{}",
            if *dialect == Dialect::Nginx {
                "conf"
            } else {
                "cfg"
            }
        ));
        std::fs::write(&file, text).unwrap();
        if expected.is_empty() {
            if let Err(e) = accepted_by_lb(*dialect, &file) {
                problems.push(format!("{name}: the LB refuses it: {e}"));
            }
        }
        let got: Vec<(String, u64)> = findings(&[file.to_str().unwrap()])
            .iter()
            .filter(|f| f["severity"] == "error")
            .map(|f| {
                (
                    f["check"].as_str().unwrap().to_string(),
                    f["line"].as_u64().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, u64)> = expected.iter().map(|(c, l)| (c.to_string(), *l)).collect();
        if got != want {
            problems.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
