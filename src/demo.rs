//! `lbwatch demo`: a simulated HAProxy on loopback, watched through the real
//! scrape path, that replays the classic outage: a reload whose typo'd pool
//! sends all traffic to one server, which then starts failing; later the
//! pool is fixed. The alerts print as they fire and resolve.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use crate::app::{run, Output, RunOptions};
use crate::config::{FileConfig, HttpConfig, StateConfig, TargetConfig};
use crate::detect::{DetectConfig, Secs};
use crate::http::Reply;
use crate::source::haproxy_csv::DEFAULT_HEADER;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// When the bad reload happens.
    pub fault_after: Duration,
    /// lbwatch's own HTTP listener during the demo.
    pub listen: String,
}

#[derive(Debug)]
struct Server {
    name: String,
    listed: bool,
    share: f64,
    error_ratio: f64,
    requests: u64,
    errors: u64,
}

#[derive(Debug)]
struct Pool {
    name: &'static str,
    rate: f64,
    servers: Vec<Server>,
}

/// The simulated load balancer: counters that grow with realistic noise.
#[derive(Debug)]
struct Lb {
    pools: Vec<Pool>,
    last: Instant,
    rng: u64,
}

impl Lb {
    fn new(seed: u64) -> Self {
        let pool = |name: &'static str, n: usize, rate: f64| Pool {
            name,
            rate,
            servers: (1..=n)
                .map(|i| Server {
                    name: format!("{name}-{i}"),
                    listed: true,
                    share: 1.0,
                    error_ratio: 0.001,
                    requests: 1_000_000 + 7919 * i as u64,
                    errors: 900 + i as u64,
                })
                .collect(),
        };
        Lb {
            pools: vec![pool("web", 4, 400.0), pool("api", 3, 120.0)],
            last: Instant::now(),
            rng: seed | 1,
        }
    }

    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Adds the traffic since the last call.
    fn advance(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        for p in 0..self.pools.len() {
            let listed: f64 = self.pools[p]
                .servers
                .iter()
                .filter(|s| s.listed)
                .map(|s| s.share)
                .sum();
            for s in 0..self.pools[p].servers.len() {
                let (listed_now, share, ratio) = {
                    let srv = &self.pools[p].servers[s];
                    (srv.listed, srv.share, srv.error_ratio)
                };
                if !listed_now || listed <= 0.0 {
                    continue;
                }
                let mean = self.pools[p].rate * dt * share / listed;
                let n = (mean * (1.0 + 0.05 * self.normal()) + mean.sqrt() * self.normal())
                    .round()
                    .max(0.0);
                let e = (n * ratio + (n * ratio).sqrt() * self.normal())
                    .round()
                    .clamp(0.0, n);
                let srv = &mut self.pools[p].servers[s];
                srv.requests += n as u64;
                srv.errors += e as u64;
            }
        }
    }

    fn reload(&mut self) {
        for p in &mut self.pools {
            for s in &mut p.servers {
                s.requests = 0;
                s.errors = 0;
            }
        }
    }

    /// The stats page, as HAProxy 2.x prints it (`/stats;csv`).
    fn csv(&self) -> String {
        let mut out = format!("# {},\n", DEFAULT_HEADER.join(","));
        for p in &self.pools {
            let listed: Vec<&Server> = p.servers.iter().filter(|s| s.listed).collect();
            let total: u64 = listed.iter().map(|s| s.requests).sum();
            let errors: u64 = listed.iter().map(|s| s.errors).sum();
            for s in &listed {
                out.push_str(&row(p.name, &s.name, "2", "UP", 1, s.requests, s.errors));
            }
            out.push_str(&row(
                p.name,
                "BACKEND",
                "1",
                "UP",
                listed.len(),
                total,
                errors,
            ));
        }
        out
    }
}

/// One CSV row with the columns lbwatch and operators look at filled in.
fn row(
    pool: &str,
    server: &str,
    kind: &str,
    status: &str,
    weight: usize,
    requests: u64,
    errors: u64,
) -> String {
    let mut line = String::new();
    for (i, col) in DEFAULT_HEADER.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let _ = match *col {
            "pxname" => write!(line, "{pool}"),
            "svname" => write!(line, "{server}"),
            "status" => write!(line, "{status}"),
            "weight" => write!(line, "{weight}"),
            "act" => write!(line, "1"),
            "bck" => write!(line, "0"),
            "type" => write!(line, "{kind}"),
            "stot" | "lbtot" | "req_tot" => write!(line, "{requests}"),
            "hrsp_2xx" => write!(line, "{}", requests - errors),
            "hrsp_5xx" => write!(line, "{errors}"),
            "hrsp_1xx" | "hrsp_3xx" | "hrsp_4xx" | "hrsp_other" => write!(line, "0"),
            "check_status" if kind == "2" => write!(line, "L7OK"),
            "mode" => write!(line, "http"),
            "algo" if kind == "1" => write!(line, "roundrobin"),
            _ => Ok(()),
        };
    }
    line.push_str(",\n");
    line
}

#[allow(clippy::print_stdout)]
fn say(text: &str) {
    let (h, m, s) = crate::clock::now().hms();
    println!("{h:02}:{m:02}:{s:02}Z demo     {text}");
}

/// The story, told to the simulated LB at its times.
async fn story(lb: Arc<Mutex<Lb>>, fault_after: Duration) {
    tokio::time::sleep(fault_after).await;
    {
        let mut lb = lb.lock().expect("demo lock");
        lb.advance();
        lb.reload();
        for s in lb.pools[0].servers.iter_mut().filter(|s| s.name != "web-2") {
            s.listed = false;
        }
    }
    say("the LB reloads with a typo in pool web: only web-2 is left, and it takes all of web's traffic");
    tokio::time::sleep(Duration::from_secs(30)).await;
    {
        let mut lb = lb.lock().expect("demo lock");
        lb.advance();
        lb.pools[0].servers[1].error_ratio = 0.2;
    }
    say("web-2 is overloaded by the whole pool's traffic and answers 20% 5xx");
    tokio::time::sleep(Duration::from_secs(90)).await;
    {
        let mut lb = lb.lock().expect("demo lock");
        lb.advance();
        lb.reload();
        for s in &mut lb.pools[0].servers {
            s.listed = true;
            s.error_ratio = 0.001;
        }
    }
    say("the pool is fixed and the LB reloaded: traffic spreads over web-1..web-4 again");
    tokio::time::sleep(Duration::from_secs(100)).await;
    say("that was the outage: the alerts above pointed at the load balancer within seconds. Ctrl-C to stop.");
}

/// Where the demo serves lbwatch's status page and metrics by default (the
/// daemon's default too, so the README's Prometheus config finds it).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9847";

/// Runs the demo until the story is over and its alerts have resolved, or
/// until `shutdown`.
#[allow(clippy::print_stdout)]
pub async fn demo(
    opts: DemoOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let stats = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on loopback for the simulated LB")?;
    let addr = stats.local_addr()?;
    let lb = Arc::new(Mutex::new(Lb::new(crate::clock::now().micros() as u64)));
    let page = lb.clone();
    // Any path: the page a scrape sees now. Served until the demo ends.
    let lb_stop = tokio_util::sync::CancellationToken::new();
    let _lb_stops_with_the_demo = lb_stop.clone().drop_guard();
    tokio::spawn(crate::http::serve(
        stats,
        move |_req: &crate::http::Request| {
            let mut lb = page.lock().expect("demo lock");
            lb.advance();
            Reply::ok("text/plain", lb.csv())
        },
        crate::http::Guard::default(),
        lb_stop,
    ));
    let url = format!("http://{addr}/stats;csv");
    // The README points at the default port; if something else holds it,
    // the demo still runs (and prints where).
    let listen =
        if opts.listen == DEFAULT_LISTEN && std::net::TcpListener::bind(DEFAULT_LISTEN).is_err() {
            say(&format!(
                "{DEFAULT_LISTEN} is busy: lbwatch takes another port"
            ));
            "127.0.0.1:0".to_string()
        } else {
            opts.listen.clone()
        };
    let state_dir = std::env::temp_dir().join(format!("lbwatch-demo-{}", std::process::id()));
    let cfg = FileConfig {
        http: HttpConfig {
            listen,
            external_url: None,
            tls: None,
            basic_auth: None,
        },
        targets: vec![TargetConfig {
            name: "lb-demo".into(),
            format: crate::source::Format::Haproxy {},
            url: crate::secret::SecretUrl::new(&url),
            url_file: None,
            url_env: None,
            interval: Secs(1.0),
            timeout: None,
            max_response_bytes: 1 << 20,
            username: None,
            password_file: None,
            password_env: None,
            tls: None,
        }],
        notifiers: vec![],
        detection: DetectConfig::default(),
        // A story of its own each time: nothing carried over from a previous
        // demo.
        state: StateConfig {
            dir: Some(state_dir.clone()),
            ..StateConfig::default()
        },
        log: Default::default(),
        metrics: Default::default(),
        cluster: Default::default(),
        discovery: Vec::new(),
    };
    say(&format!(
        "a simulated HAProxy serves {url}: pool web (4 servers, ~400 req/s) and pool api (3 servers, ~120 req/s)"
    ));
    say(&format!(
        "lbwatch scrapes it every second; in {} s the LB will be reloaded with a broken pool",
        opts.fault_after.as_secs()
    ));
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let story = story(lb, opts.fault_after);
    let until = async move {
        tokio::select! {
            () = story => {}
            () = shutdown => {}
        }
    };
    let printer = async move {
        if let Ok(addr) = bound_rx.await {
            say(&format!(
                "lbwatch's status page: http://{addr}/ (metrics: http://{addr}/metrics)"
            ));
        }
    };
    let runner = run(
        cfg,
        RunOptions {
            output: Output::Human,
            record: None,
            config_path: None,
            shard: None,
        },
        Some(bound_tx),
        until,
    );
    let (result, ()) = tokio::join!(runner, printer);
    let _ = std::fs::remove_dir_all(&state_dir);
    result
}
