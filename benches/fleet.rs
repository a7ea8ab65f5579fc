//! Fleet benchmark: the real `lbwatch run` watching 1,000 HAProxy targets of
//! 100 servers each, every second, all served from loopback by this process.
//! Reports lbwatch's CPU use (% of one core, from /proc) and its peak RSS
//! over 60 s of steady state.
//!
//! `cargo bench --bench fleet`; `cargo test --bench fleet` runs a short
//! version (50 targets, 5 s) that only shows it works. To see where the
//! bytes go, `LBWATCH_FLEET_WRAP="heaptrack -o /tmp/fleet"` runs lbwatch
//! under that command, `LBWATCH_FLEET_TARGETS=N` watches N targets, and
//! `LBWATCH_FLEET_SECONDS=S` measures for S seconds (incident tracking
//! keeps two minutes of each pool's intervals: its memory is all there
//! past 130 s).

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)] // a benchmark reports, and reads the clock

use std::convert::Infallible;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;

/// One page per target: 100 servers, counters growing with time.
fn page(target: usize, servers: usize, elapsed: f64) -> String {
    let mut out = String::with_capacity(servers * 120);
    out.push_str("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,\n");
    for s in 0..servers {
        let n = (elapsed * (10.0 + (s % 7) as f64)) as u64 + 1000 * target as u64;
        let e = n / 1000;
        let _ = writeln!(
            out,
            "pool{},srv{s},0,0,0,0,,{n},0,0,,0,,0,0,0,0,UP,1,1,0,0,0,1,0,,1,2,{s},,{n},,2,0,,0,L7OK,200,1,0,{},0,0,{e},0,,0,0,{n},",
            s % 4,
            n - e
        );
    }
    out
}

fn proc_stat(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, hwm)
}

/// The PIDs of `pid`'s children, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether `pid` runs the lbwatch binary (not yet, between fork and exec).
fn is_lbwatch(pid: u32) -> bool {
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_lbwatch")).ok();
    exe.is_some() && std::fs::read_link(format!("/proc/{pid}/exe")).ok() == exe
}

/// lbwatch's PID: the child itself, or under a wrapper (heaptrack, whose
/// other children are its own recorder) the wrapper's child that runs it.
fn find_lbwatch(child: u32) -> Option<u32> {
    for _ in 0..100 {
        if is_lbwatch(child) {
            return Some(child);
        }
        if let Some(pid) = children(child).into_iter().find(|&c| is_lbwatch(c)) {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Running, as opposed to gone or a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Stops lbwatch by its PID as a service manager would (SIGTERM, then
/// SIGKILL after 30 s), so that it saves its state and exits before its
/// state directory is removed; a wrapper is then left to finish its own
/// work (heaptrack writes out its recording) for up to 30 s.
fn stop(lbwatch: Option<u32>, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    if let Some(pid) = lbwatch {
        let _ = Command::new("kill").arg(pid.to_string()).status();
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive(pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (targets, servers, measure) = if quick { (50, 100, 5) } else { (1000, 100, 60) };
    let targets = std::env::var("LBWATCH_FLEET_TARGETS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(targets);
    let measure = std::env::var("LBWATCH_FLEET_SECONDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(measure);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Arc::new(Instant::now());
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let started = started.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let target: usize = req
                            .uri()
                            .path()
                            .split('/')
                            .nth(2)
                            .and_then(|t| t.parse().ok())
                            .unwrap_or(0);
                        let body = page(target, servers, started.elapsed().as_secs_f64());
                        async move {
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    // A state directory of its own: one left by an earlier run would be
    // restored, with its incidents, and measured along.
    let state = std::env::temp_dir().join(format!("lbwatch-fleet-state-{}", std::process::id()));
    let mut cfg = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = '{}'\n",
        state.display()
    );
    for t in 0..targets {
        let _ = write!(cfg, "[[targets]]\nname = \"lb{t}\"\nkind = \"haproxy\"\nurl = \"http://{addr}/t/{t}/stats;csv\"\ninterval = \"1s\"\n");
    }
    let path = std::env::temp_dir().join(format!("lbwatch-fleet-{}.toml", std::process::id()));
    std::fs::write(&path, cfg).unwrap();
    let wrap = std::env::var("LBWATCH_FLEET_WRAP").unwrap_or_default();
    let mut command: Vec<&str> = wrap.split_whitespace().collect();
    command.push(env!("CARGO_BIN_EXE_lbwatch"));
    let mut child = Command::new(command[0])
        .args(&command[1..])
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(if quick { 2 } else { 10 }));
    // Measured on lbwatch itself, not on a wrapper around it.
    let lbwatch = find_lbwatch(child.id());
    let pid = lbwatch.unwrap_or_else(|| {
        eprintln!("fleet: no lbwatch process found under the wrapper; measuring the wrapper");
        child.id()
    });
    let (cpu0, _) = proc_stat(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(measure));
    let (cpu1, hwm) = proc_stat(pid);
    let wall = t0.elapsed().as_secs_f64();
    stop(lbwatch, &mut child);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(&state);
    println!(
        "fleet: {targets} targets x {servers} servers every 1 s for {measure} s: lbwatch used {:.1}% of one core, peak RSS {:.1} MiB",
        100.0 * (cpu1 - cpu0) / wall,
        hwm as f64 / 1024.0
    );
}
