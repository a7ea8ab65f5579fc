//! The real Prometheus, promtool, Alertmanager and amtool (Debian's
//! packages), started on loopback with random free ports in directories of
//! the test's own, and stopped (the processes this harness started, by
//! their handle) when dropped.

#![allow(dead_code)]
#![allow(clippy::disallowed_methods)] // real processes in real time

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::haproxy::free_port;

/// The path of `name`, or a loud failure with the package to install.
pub fn binary(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: `apt-get install {package}` (scripts/test installs it)");
}

/// A GET on loopback: status and body.
pub fn get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let path = if path.is_empty() { "/" } else { path };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    // Chunked bodies (Prometheus, Alertmanager) are de-chunked.
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Some((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `f` until it returns `Some`, at most `limit`.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// A server process this harness started; killed when dropped.
pub struct Server {
    pub port: u16,
    child: Child,
    pub dir: PathBuf,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGKILL to the child this harness started).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self, path: &str) {
        let url = format!("{}{path}", self.url());
        let ok = eventually(Duration::from_secs(30), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{url}: the server exited with {status}");
            }
            get(&url).filter(|(s, _)| *s == 200)
        });
        assert!(ok.is_some(), "{url} did not become ready");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(bin: PathBuf, args: &[String], dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("log")).unwrap();
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// An Alertmanager with `config` (YAML), optionally in a cluster: it
/// listens for gossip on `cluster_port` and joins `peers`.
pub fn alertmanager(dir: &Path, config: &str, port: u16, cluster: Option<(u16, &[u16])>) -> Server {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("am.yml"), config).unwrap();
    let mut args = vec![
        format!("--config.file={}", dir.join("am.yml").display()),
        format!("--storage.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    match cluster {
        None => args.push("--cluster.listen-address=".into()),
        Some((gossip, peers)) => {
            args.push(format!("--cluster.listen-address=127.0.0.1:{gossip}"));
            args.push(format!("--cluster.advertise-address=127.0.0.1:{gossip}"));
            args.push("--cluster.peer-timeout=2s".into());
            args.push("--cluster.gossip-interval=100ms".into());
            args.push("--cluster.pushpull-interval=1s".into());
            args.push("--cluster.settle-timeout=2s".into());
            for p in peers {
                args.push(format!("--cluster.peer=127.0.0.1:{p}"));
            }
        }
    }
    let child = spawn(
        binary("prometheus-alertmanager", "prometheus-alertmanager"),
        &args,
        dir,
    );
    let mut s = Server {
        port,
        child,
        dir: dir.to_path_buf(),
    };
    s.wait_ready("/-/ready");
    s
}

/// Waits until each Alertmanager of a cluster sees all `peers` ready.
pub fn wait_cluster(ams: &[&Server], peers: usize) {
    for am in ams {
        let status = eventually(Duration::from_secs(20), || {
            let (_, body) = get(&format!("{}/api/v2/status", am.url()))?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let seen = v["cluster"]["peers"].as_array().map_or(0, Vec::len);
            (v["cluster"]["status"] == "ready" && seen == peers).then_some(v)
        });
        assert!(status.is_some(), "the Alertmanager cluster did not form");
    }
}

/// A Prometheus scraping `targets` (host:port) every second.
pub fn prometheus(dir: &Path, targets: &[String]) -> Server {
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    prometheus_with(
        dir,
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: lbwatch\n    static_configs:\n      - targets: [{list}]\n"
        ),
        &[],
    )
}

/// A Prometheus with `config` (YAML), `files` (name, text) beside it.
pub fn prometheus_with(dir: &Path, config: &str, files: &[(&str, &str)]) -> Server {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let port = free_port();
    let args = vec![
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    let child = spawn(binary("prometheus", "prometheus"), &args, dir);
    let mut s = Server {
        port,
        child,
        dir: dir.to_path_buf(),
    };
    s.wait_ready("/-/ready");
    s
}

/// Runs a tool to completion: (success, stdout + stderr).
pub fn run_tool(name: &str, package: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    run_program(&binary(name, package), args, stdin)
}

/// Runs the program at `bin` to completion: (success, stdout + stderr).
pub fn run_program(bin: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Headless Chromium (Debian's `chromium`): the page at `url` after its
/// scripts ran for a few seconds, as HTML, and a screenshot of it written to
/// `screenshot`. Started with a profile of its own and no background
/// networking (it must not reach anything but loopback).
pub fn chromium(url: &str, screenshot: &Path, profile: &Path) -> String {
    let bin = binary("chromium", "chromium");
    let _ = std::fs::remove_dir_all(profile);
    let common = |extra: &[String]| {
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
            "--window-size=1280,1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend_from_slice(extra);
        args.push(url.to_string());
        let out = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    if let Some(dir) = screenshot.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    common(&[format!("--screenshot={}", screenshot.display())]);
    common(&["--dump-dom".to_string()])
}
