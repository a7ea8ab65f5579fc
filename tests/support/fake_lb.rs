//! Fake stats endpoints on loopback for the daemon tests: a load balancer
//! whose counters grow with real time (and whose traffic can be skewed on
//! demand), and the broken endpoints a daemon meets in production. Plain
//! threads and sockets: nothing here depends on lbwatch's own code.

#![allow(dead_code)]
// A fake endpoint lives in real time; the clock ban is for lbwatch itself.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// HAProxy stats CSV with counters growing at `rate` req/s.
    Csv,
    /// Accepts the connection and never answers.
    Hang,
    /// 50 MB of garbage.
    Huge,
    /// A login page whose form echoes the request's path and query.
    Html,
    /// 500 Internal Server Error, echoing the request's path and query.
    ServerError,
    /// 401 Unauthorized.
    Unauthorized,
    /// A valid stats page with no server: the header and a frontend.
    Empty,
    /// Servers whose names are hostile to whatever shows them: HTML, quotes,
    /// a backslash and a line break (a quoted CSV field).
    Hostile,
}

/// The names `Behaviour::Hostile` serves, as lbwatch should read them.
pub const HOSTILE_NAMES: [&str; 3] = [
    "<script>alert(1)</script>",
    "web \"quoted\" \\back",
    "two\nlines",
];

/// A simulated pool: servers' counters are a function of time.
#[derive(Debug)]
pub struct Pool {
    started: Instant,
    rate: f64,
    servers: usize,
    /// From this moment on, every request goes to server 1.
    skewed_since: Option<f64>,
    /// Servers (0-based) the health check finds down: they take nothing.
    down: Vec<usize>,
    /// Servers listed (the first ones); the others left the pool.
    listed: usize,
    counts: Vec<f64>,
    last: f64,
    /// Stats pages served so far.
    served: usize,
}

impl Pool {
    fn advance(&mut self) {
        let now = self.started.elapsed().as_secs_f64();
        let dt = now - self.last;
        self.last = now;
        let serving = |i: usize| i < self.listed && !self.down.contains(&i);
        let n = (0..self.servers).filter(|i| serving(*i)).count().max(1) as f64;
        for (i, c) in self.counts.iter_mut().enumerate() {
            let share = match self.skewed_since {
                Some(t) if now >= t => {
                    if i == 0 {
                        1.0
                    } else {
                        0.0
                    }
                }
                _ if !serving(i) => 0.0,
                _ => 1.0 / n,
            };
            // Slightly uneven, deterministic "noise".
            let wobble = 1.0 + 0.02 * ((now * 7.0 + i as f64).sin());
            *c += self.rate * dt * share * wobble;
        }
    }

    fn csv(&mut self) -> String {
        self.advance();
        self.served += 1;
        let mut out = String::from(
            "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,qtime,ctime,rtime,\n",
        );
        for (i, c) in self.counts.iter().enumerate().take(self.listed) {
            let n = *c as u64;
            let status = if self.down.contains(&i) { "DOWN" } else { "UP" };
            out.push_str(&format!(
                "web,web-{},0,0,{},0,100,{n},0,0,,0,,0,0,0,0,{status},1,1,0,0,0,1,0,,1,2,{},,{n},,2,0,,0,L7OK,200,1,0,{n},0,0,0,0,,0,0,{n},0,1,{},\n",
                i + 1,
                3 + i,
                i + 1,
                20 + 2 * i
            ));
        }
        out
    }
}

/// A fake stats endpoint; stops when dropped.
#[derive(Debug)]
pub struct FakeLb {
    pub url: String,
    pub pool: Arc<Mutex<Pool>>,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeLb {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl FakeLb {
    /// Skews the pool from now on: one server takes everything.
    pub fn skew(&self) {
        let mut p = self.pool.lock().unwrap();
        let now = p.started.elapsed().as_secs_f64();
        p.skewed_since = Some(now);
    }

    /// Waits until it has served `n` stats pages in all: a baseline that
    /// holds however slowly the machine runs. Panics after a minute.
    pub fn wait_scraped(&self, n: usize) {
        let target = n;
        let end = Instant::now() + Duration::from_secs(60);
        while self.pool.lock().unwrap().served < target {
            assert!(
                Instant::now() < end,
                "{}: fewer than {n} scrapes in 60 s",
                self.url
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A reload: every counter restarts from zero.
    pub fn reload(&self) {
        let mut p = self.pool.lock().unwrap();
        p.counts.iter_mut().for_each(|c| *c = 0.0);
    }

    /// Spreads the pool evenly again.
    pub fn heal(&self) {
        self.pool.lock().unwrap().skewed_since = None;
    }

    /// The health check finds these servers (1-based, as named) down, and
    /// the others up.
    pub fn set_down(&self, servers: &[usize]) {
        let mut p = self.pool.lock().unwrap();
        p.advance();
        p.down = servers.iter().map(|s| s - 1).collect();
    }

    /// A reload with a typo'd pool: counters restart and only the first
    /// `n` servers are listed.
    pub fn reload_listing(&self, n: usize) {
        let mut p = self.pool.lock().unwrap();
        p.advance();
        p.counts.iter_mut().for_each(|c| *c = 0.0);
        p.listed = n;
    }
}

fn new_pool(servers: usize, rate: f64) -> Arc<Mutex<Pool>> {
    Arc::new(Mutex::new(Pool {
        started: Instant::now(),
        rate,
        servers,
        skewed_since: None,
        down: Vec::new(),
        listed: servers,
        counts: vec![1000.0; servers],
        last: 0.0,
        served: 0,
    }))
}

/// Reads the request head; returns its path (and query).
fn read_request(s: &mut TcpStream) -> String {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&seen);
    head.split(' ').nth(1).unwrap_or("").to_string()
}

fn answer(mut s: TcpStream, how: Behaviour, pool: &Arc<Mutex<Pool>>, stop: &AtomicBool) {
    let path = read_request(&mut s);
    let reply = |s: &mut TcpStream, status: &str, ctype: &str, body: &str| {
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    match how {
        Behaviour::Csv => {
            let body = pool.lock().unwrap().csv();
            reply(&mut s, "200 OK", "text/plain", &body);
        }
        Behaviour::Html => reply(
            &mut s,
            "200 OK",
            "text/html",
            &format!("<!DOCTYPE html><html><head><title>Sign in</title></head><body><form action=\"/login?next={path}\">login</form></body></html>"),
        ),
        Behaviour::ServerError => reply(
            &mut s,
            "500 Internal Server Error",
            "text/plain",
            &format!("no backend for {path}"),
        ),
        Behaviour::Unauthorized => reply(&mut s, "401 Unauthorized", "text/plain", ""),
        Behaviour::Hostile => {
            let mut body = String::from("# pxname,svname,stot,hrsp_5xx,status,weight,type,\n");
            for (i, name) in HOSTILE_NAMES.iter().enumerate() {
                let csv = format!("\"{}\"", name.replace('"', "\"\""));
                body.push_str(&format!("web,{csv},{},0,UP,1,2,\n", 1000 + 10 * i));
            }
            reply(&mut s, "200 OK", "text/plain", &body);
        }
        Behaviour::Empty => reply(
            &mut s,
            "200 OK",
            "text/plain",
            "# pxname,svname,stot,hrsp_5xx,status,weight,type,\nhttp-in,FRONTEND,12,0,OPEN,,0,\n",
        ),
        Behaviour::Hang => {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
            }
        }
        Behaviour::Huge => {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                50 << 20
            );
            let chunk = vec![b'x'; 1 << 16];
            for _ in 0..(50 << 20) / chunk.len() {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
    }
}

/// Starts an endpoint on 127.0.0.1 (a random free port).
pub fn start(how: Behaviour) -> FakeLb {
    start_pool(how, 4, 400.0)
}

/// The same with a pool of `servers` servers taking `rate` requests/s.
pub fn start_pool(how: Behaviour, servers: usize, rate: f64) -> FakeLb {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let pool = new_pool(servers, rate);
    let stop = Arc::new(AtomicBool::new(false));
    let (p, st) = (pool.clone(), stop.clone());
    thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let (p, st) = (p.clone(), st.clone());
                    thread::spawn(move || answer(s, how, &p, &st));
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    FakeLb {
        url: format!("http://{addr}/stats;csv"),
        pool,
        stop,
    }
}

/// HAProxy's runtime API on a unix socket: answers `show stat` with CSV.
pub fn start_socket(path: &Path) -> FakeLb {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let pool = new_pool(3, 200.0);
    let stop = Arc::new(AtomicBool::new(false));
    let (p, st) = (pool.clone(), stop.clone());
    thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let mut line = Vec::new();
                    let mut b = [0u8; 1];
                    while let Ok(1) = s.read(&mut b) {
                        if b[0] == b'\n' {
                            break;
                        }
                        line.push(b[0]);
                    }
                    if line == b"show stat" {
                        let body = p.lock().unwrap().csv();
                        let _ = s.write_all(body.as_bytes());
                    }
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    FakeLb {
        url: format!("unix://{}", path.display()),
        pool,
        stop,
    }
}
