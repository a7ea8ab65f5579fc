//! The real HAProxy for end-to-end tests: started on loopback with random
//! free ports in master-worker mode, reloaded with new configs (SIGUSR2 to
//! the master this harness started), killed at the end. Backends, the
//! traffic generator and a webhook receiver are plain threads here.

#![allow(dead_code)]
#![allow(clippy::disallowed_methods)] // real processes in real time

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Fails loudly, with the install hint, when HAProxy is missing.
pub fn haproxy_binary() -> PathBuf {
    for p in [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("haproxy is not installed: `apt-get install haproxy` (scripts/test installs it)");
}

/// `haproxy -v`'s version, e.g. "2.6.12-1+deb12u1".
pub fn version() -> String {
    let out = Command::new(haproxy_binary()).arg("-v").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or_else(|| panic!("no version in {text:?}"))
        .to_string()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP backend on loopback: each connection answered on its own
/// thread, so a slow answer does not hold the others up.
#[derive(Debug)]
pub struct Backend {
    pub port: u16,
    /// Share of requests answered 503.
    pub fail_permille: Arc<AtomicU64>,
    /// Milliseconds each answer waits.
    pub delay_ms: Arc<AtomicU64>,
    /// While set, `/health` answers 503 (an HTTP health check fails).
    pub sick: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
}

/// How a backend answers one request line.
#[derive(Debug, Clone)]
struct Answers {
    fail_permille: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
    sick: Arc<AtomicBool>,
    /// Paths it serves (`None`: all); others are 404.
    serves: Option<String>,
}

impl Answers {
    fn status(&self, n: u64, path: &str) -> &'static str {
        if path == "/health" {
            return if self.sick.load(Ordering::Relaxed) {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
        }
        if self
            .serves
            .as_ref()
            .is_some_and(|p| !path.starts_with(p.as_str()))
        {
            return "404 Not Found";
        }
        if (n * 7919) % 1000 < self.fail_permille.load(Ordering::Relaxed) {
            "503 Service Unavailable"
        } else {
            "200 OK"
        }
    }

    fn answer(&self, mut s: TcpStream, n: u64) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 2048];
        let len = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..len]);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let status = self.status(n, &path);
        if path != "/health" {
            let delay = self.delay_ms.load(Ordering::Relaxed);
            thread::sleep(Duration::from_millis(delay));
        }
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        );
    }
}

impl Backend {
    pub fn start() -> Backend {
        Backend::serving(None)
    }

    /// A backend that answers 404 outside `prefix` (a pool serving one
    /// route), or serves everything.
    pub fn serving(prefix: Option<&str>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let answers = Answers {
            fail_permille: Arc::new(AtomicU64::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            sick: Arc::new(AtomicBool::new(false)),
            serves: prefix.map(str::to_string),
        };
        let stopped = Arc::new(AtomicBool::new(false));
        let (a, st) = (answers.clone(), stopped.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        n += 1;
                        let a = a.clone();
                        thread::spawn(move || a.answer(s, n));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
            // The listener is dropped: connections are refused, checks fail.
        });
        Backend {
            port,
            fail_permille: answers.fail_permille,
            delay_ms: answers.delay_ms,
            sick: answers.sick,
            stopped,
        }
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// One pool of the test LB.
#[derive(Debug, Clone, Default)]
pub struct PoolSpec {
    pub name: &'static str,
    /// (server name, backend port, weight)
    pub servers: Vec<(String, u16, u32)>,
    /// `balance` (default roundrobin).
    pub balance: Option<&'static str>,
    /// More lines of the backend section (`retries 2`, `option httpchk`).
    pub lines: Vec<String>,
    /// More words of a server's line, by server name (`maxconn 2`).
    pub server_words: Vec<(String, String)>,
}

impl PoolSpec {
    /// Pool `name` of `backends`, its servers named `{name}1`, `{name}2`…
    /// with these weights.
    pub fn of(name: &'static str, backends: &[Backend], weights: &[u32]) -> PoolSpec {
        PoolSpec {
            name,
            servers: backends
                .iter()
                .zip(weights)
                .enumerate()
                .map(|(i, (b, w))| (format!("{name}{}", i + 1), b.port, *w))
                .collect(),
            ..PoolSpec::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct LbSpec {
    pub pools: Vec<PoolSpec>,
    /// `http-request deny` for everything.
    pub deny_all: bool,
    /// `use_backend POOL if { path_beg PATH }`, before each pool's own
    /// route: a route sent to another pool.
    pub routes: Vec<(&'static str, &'static str)>,
    /// More lines of the frontend (`acl …`, `http-request …`).
    pub frontend_lines: Vec<String>,
}

/// A running HAProxy.
pub struct Haproxy {
    child: Child,
    dir: PathBuf,
    pub frontend_port: u16,
    pub stats_port: u16,
    pub socket: PathBuf,
}

impl Haproxy {
    /// The config this HAProxy runs for `spec`.
    pub fn config(&self, spec: &LbSpec) -> String {
        let mut c = format!(
            "global\n    stats socket {} mode 600 level admin\n\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\nfrontend stats\n    bind 127.0.0.1:{}\n    stats enable\n    stats uri /stats\n\nfrontend fe\n    bind 127.0.0.1:{}\n",
            self.socket.display(),
            self.stats_port,
            self.frontend_port
        );
        if spec.deny_all {
            c.push_str("    http-request deny\n");
        }
        for line in &spec.frontend_lines {
            c.push_str(&format!("    {line}\n"));
        }
        for (path, pool) in &spec.routes {
            c.push_str(&format!(
                "    use_backend {pool} if {{ path_beg {path} }}\n"
            ));
        }
        for p in &spec.pools {
            c.push_str(&format!(
                "    use_backend {0} if {{ path_beg /{0} }}\n",
                p.name
            ));
        }
        for p in &spec.pools {
            let balance = p.balance.unwrap_or("roundrobin");
            c.push_str(&format!("\nbackend {}\n    balance {balance}\n", p.name));
            for line in &p.lines {
                c.push_str(&format!("    {line}\n"));
            }
            for (name, port, weight) in &p.servers {
                let words = p
                    .server_words
                    .iter()
                    .filter(|(s, _)| s == name)
                    .map(|(_, w)| format!(" {w}"))
                    .collect::<String>();
                c.push_str(&format!(
                    "    server {name} 127.0.0.1:{port} check inter 300ms fall 2 rise 1 weight {weight}{words}\n"
                ));
            }
        }
        c
    }

    pub fn start(dir: PathBuf, spec: &LbSpec) -> Haproxy {
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("haproxy.cfg");
        let mut h = Haproxy {
            child: Command::new("true").spawn().unwrap(),
            socket: dir.join("admin.sock"),
            dir,
            frontend_port: free_port(),
            stats_port: free_port(),
        };
        std::fs::write(&cfg, h.config(spec)).unwrap();
        let check = Command::new(haproxy_binary())
            .args(["-c", "-q", "-f"])
            .arg(&cfg)
            .status()
            .unwrap();
        assert!(check.success(), "haproxy rejected:\n{}", h.config(spec));
        let _ = h.child.wait();
        h.child = Command::new(haproxy_binary())
            .args(["-W", "-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", h.stats_port)).is_err() {
            assert!(Instant::now() < end, "haproxy did not start");
            thread::sleep(Duration::from_millis(50));
        }
        h
    }

    /// Writes a new config and reloads (counters restart, as in production).
    pub fn reload(&mut self, spec: &LbSpec) {
        let cfg = self.dir.join("haproxy.cfg");
        std::fs::write(&cfg, self.config(spec)).unwrap();
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-USR2", &pid])
            .status()
            .unwrap()
            .success());
    }

    pub fn stats_url(&self) -> String {
        format!("http://127.0.0.1:{}/stats;csv", self.stats_port)
    }

    /// The stats CSV as HAProxy prints it now (runtime API, `show stat`).
    pub fn stats_csv(&self) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).unwrap();
        s.write_all(b"show stat\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Requests HAProxy has counted over all servers (runtime API).
    /// One command on the runtime API; its answer.
    pub fn command(&self, cmd: &str) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    pub fn total_requests(&self) -> Option<u64> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).ok()?;
        s.write_all(b"show stat\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let parsed = lbwatch::source::haproxy_csv::parse(out.as_bytes()).ok()?;
        Some(parsed.servers.iter().map(|s| s.requests_total).sum())
    }

    /// Reloads and returns when the new worker serves: its counters restart,
    /// which is when a fault the new config carries starts to show (or,
    /// after a config that passed nothing, when they start to count).
    pub fn reload_and_wait(&mut self, spec: &LbSpec) -> Instant {
        let before = self.total_requests().unwrap_or(0);
        self.reload(spec);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.total_requests();
            if now.is_some_and(|n| if before == 0 { n > 0 } else { n < before }) {
                return Instant::now();
            }
            assert!(Instant::now() < end, "haproxy did not reload");
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One request to the LB, its answer read and dropped: a client that waits
/// for a slow server (up to 2 s).
fn get(port: u16, path: &str) {
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
        );
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
    }
}

/// Steady loopback traffic to every pool's path, round robin.
/// The status line's code of one GET, if any answer came.
fn status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// What a traffic generator got back: its own count of the outcome, to
/// hold lbwatch's estimates against.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: AtomicU64,
    pub server_errors: AtomicU64,
    pub denied: AtomicU64,
    pub unanswered: AtomicU64,
}

impl Tally {
    fn add(&self, status: Option<u16>) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let counter = match status {
            Some(500..=599) => &self.server_errors,
            Some(403) => &self.denied,
            Some(_) => return,
            None => &self.unanswered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub struct Traffic {
    stop: Arc<AtomicBool>,
}

impl Traffic {
    /// `per_second` requests to each path, each path with its own workers,
    /// so a pool whose servers hang does not slow the others' traffic.
    pub fn start(port: u16, paths: Vec<String>, per_second: u32) -> Traffic {
        const WORKERS: u32 = 3;
        let stop = Arc::new(AtomicBool::new(false));
        for path in paths
            .iter()
            .flat_map(|p| (0..WORKERS).map(move |_| p.clone()))
        {
            let st = stop.clone();
            thread::spawn(move || {
                let gap = Duration::from_secs_f64(f64::from(WORKERS) / f64::from(per_second));
                let mut next = Instant::now();
                while !st.load(Ordering::Relaxed) {
                    get(port, &path);
                    next += gap;
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        thread::sleep(d);
                    } else {
                        next = Instant::now();
                    }
                }
            });
        }
        Traffic { stop }
    }
}

impl Traffic {
    /// One client at `per_second` (below one a second too) to `path`.
    pub fn one(port: u16, path: &str, per_second: f64) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (st, path) = (stop.clone(), path.to_string());
        thread::spawn(move || {
            let gap = Duration::from_secs_f64(1.0 / per_second);
            while !st.load(Ordering::Relaxed) {
                get(port, &path);
                thread::sleep(gap);
            }
        });
        Traffic { stop }
    }
}

impl Traffic {
    /// `per_second` GETs of `path` from `workers` threads, each answer
    /// counted by its status.
    pub fn counted(port: u16, path: &str, per_second: u32, workers: u32) -> (Traffic, Arc<Tally>) {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        for _ in 0..workers {
            let (st, path, tally) = (stop.clone(), path.to_string(), tally.clone());
            thread::spawn(move || {
                let gap = Duration::from_secs_f64(f64::from(workers) / f64::from(per_second));
                let mut next = Instant::now();
                while !st.load(Ordering::Relaxed) {
                    tally.add(status(port, &path));
                    next += gap;
                    match next.checked_duration_since(Instant::now()) {
                        Some(d) => thread::sleep(d),
                        None => next = Instant::now(),
                    }
                }
            });
        }
        (Traffic { stop }, tally)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
