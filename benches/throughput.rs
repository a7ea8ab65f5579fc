//! Throughput benchmarks (criterion: warm-up, many samples, the spread, and
//! a comparison with the previous run or a saved baseline):
//!
//! * `detector`: `Detector::observe` over samples already in memory, in
//!   server-samples per second;
//! * `replay`: `lbwatch replay`'s pipeline end to end (JSON parsing,
//!   detection, event output) on the largest recorded scenario, from memory
//!   and from the gzip'd file;
//! * `detector/first_scrapes_of_a_10000_server_pool`: the first two
//!   scrapes of one pool of 10,000 servers, all joining in the first;
//! * `haproxy_csv`: parsing a 10,000-server stats page built from rows of
//!   the real HAProxy 2.6;
//! * `metrics`: rendering `/metrics` for a fleet of 100,000 servers (1,000
//!   targets of 100), and detection with and without a reader rendering
//!   `/metrics` in a loop on another thread: reads take a published
//!   snapshot, so detection's throughput must not change.
//!
//! `cargo bench --bench throughput`; `-- --save-baseline before` then
//! `-- --baseline before` compares a change with what came before it.
//! `cargo test --bench throughput` runs each once, as a check.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lbwatch::cardinality::PerServer;
use lbwatch::detect::{DetectConfig, Detector};
use lbwatch::model::{Sample, SampleBody, ServerStat, Timestamp};
use lbwatch::pipeline::{EventWriter, Output, Pipeline};
use lbwatch::views::{Fleet, Publisher};

fn scenario() -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios/healthy_edge_1s.samples.jsonl.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    (path, text)
}

fn server_samples(samples: &[Sample]) -> u64 {
    samples
        .iter()
        .map(|s| match &s.body {
            SampleBody::Servers(v) => v.len() as u64,
            SampleBody::Error(_) => 0,
        })
        .sum()
}

/// What `lbwatch replay` runs: the detector, its events as JSON lines
/// (thrown away here).
fn replay_pipeline() -> Pipeline {
    Pipeline::new(Detector::new(DetectConfig::default())).with(EventWriter::new(
        io::sink(),
        Output::Json,
        false,
    ))
}

/// A new detector observing every one of `samples`, each iteration.
fn observe_all(b: &mut criterion::Bencher, samples: &[Sample]) {
    b.iter_batched(
        || Detector::new(DetectConfig::default()),
        |mut d| {
            let mut events = Vec::new();
            for s in samples {
                d.observe_into(s, &mut events);
            }
            events.len()
        },
        BatchSize::LargeInput,
    )
}

fn detector_and_replay(c: &mut Criterion) {
    let (path, text) = scenario();
    let samples: Vec<Sample> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let n = server_samples(&samples);
    let mut g = c.benchmark_group("detector");
    g.throughput(Throughput::Elements(n));
    g.sample_size(20);
    g.bench_function("observe", |b| observe_all(b, &samples));
    g.finish();
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("from_memory", |b| {
        b.iter_batched(
            replay_pipeline,
            |mut p| lbwatch::replay::replay(&path, text.as_bytes(), &mut p).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("from_gzip_file", |b| {
        b.iter_batched(
            replay_pipeline,
            |mut p| {
                let input = lbwatch::replay::open(&path).unwrap();
                lbwatch::replay::replay(&path, input, &mut p).unwrap()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// One pool of 10,000 servers, each scrape listing them in the LB's order
/// (not sorted by name).
fn big_pool_sample(i: u64) -> Sample<'static> {
    let servers = (0..10_000u64)
        .map(|s| ServerStat {
            pool: "web".into(),
            server: format!("srv{s}").into(),
            requests_total: i * 20 + s % 7,
            ..Default::default()
        })
        .collect();
    Sample {
        ts: Timestamp::from_micros(1_700_000_000_000_000 + i as i64 * 1_000_000),
        target: "lb".into(),
        body: SampleBody::Servers(servers),
        frontends: Vec::new(),
    }
}

/// A large pool's first scrapes: every server joins in the first, in an
/// order that is not the name's.
fn big_pool(c: &mut Criterion) {
    let samples: Vec<Sample> = (0..2).map(big_pool_sample).collect();
    let mut g = c.benchmark_group("detector");
    g.throughput(Throughput::Elements(20_000));
    g.sample_size(10);
    g.bench_function("first_scrapes_of_a_10000_server_pool", |b| {
        observe_all(b, &samples)
    });
    g.finish();
}

/// A 10,000-server stats page (100 backends of 100 servers, rows of the
/// real HAProxy 2.6 capture).
fn haproxy_csv(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/haproxy/csv-2.6.12-lbwatch-e2e.csv");
    let capture = std::fs::read_to_string(path).unwrap();
    let header = capture.lines().next().unwrap();
    let server = capture
        .lines()
        .find(|l| l.starts_with("web,web1,"))
        .unwrap();
    let backend = capture
        .lines()
        .find(|l| l.starts_with("web,BACKEND,"))
        .unwrap();
    let mut page = format!("{header}\n");
    for p in 0..100 {
        for s in 0..100 {
            let row = server.replacen("web,web1,", &format!("pool{p},srv{s},"), 1);
            page.push_str(&row.replacen(",1,1,0,", &format!(",{},1,0,", 1 + s % 3), 1));
            page.push('\n');
        }
        page.push_str(&backend.replacen("web,", &format!("pool{p},"), 1));
        page.push('\n');
    }
    let mut g = c.benchmark_group("haproxy_csv");
    g.throughput(Throughput::Bytes(page.len() as u64));
    g.bench_function("parse_10000_servers", |b| {
        b.iter(|| {
            let parsed = lbwatch::source::haproxy_csv::parse(page.as_bytes()).unwrap();
            assert_eq!(parsed.servers.len(), 10_000);
        })
    });
    g.finish();
}

const TARGETS: usize = 1000;
const SERVERS: usize = 100;

/// Target `t`'s sample at second `i`: 100 servers in 4 pools, evenly fed.
fn fleet_sample(t: usize, i: u64) -> Sample<'static> {
    let servers = (0..SERVERS)
        .map(|s| ServerStat {
            pool: format!("pool{}", s % 4).into(),
            server: format!("srv{s}").into(),
            requests_total: i * 50 + s as u64,
            responses_5xx_total: i / 10,
            up: true,
            weight: 1.0,
            backup: false,
            algo: None,
            ..Default::default()
        })
        .collect();
    Sample {
        ts: Timestamp::from_micros(1_700_000_000_000_000 + i as i64 * 1_000_000),
        target: format!("lb{t}").into(),
        body: SampleBody::Servers(servers),
        frontends: Vec::new(),
    }
}

/// A fleet of 100,000 servers, each target past a few samples; the
/// pipeline that watched it and the snapshot readers see.
fn watched_fleet() -> (Pipeline, tokio::sync::watch::Receiver<Fleet>) {
    let (publisher, fleet) = Publisher::new(Fleet::default());
    let mut p = Pipeline::new(Detector::new(DetectConfig::default())).with(publisher);
    for i in 0..3 {
        for t in 0..TARGETS {
            p.step(&fleet_sample(t, i)).unwrap();
        }
    }
    (p, fleet)
}

/// `/metrics` as the daemon renders it: the published fleet, and the full
/// views of the targets whose servers it exports, from the detector.
fn render(
    metrics: &lbwatch::metrics::Metrics,
    fleet: &tokio::sync::watch::Receiver<Fleet>,
    detector: &Detector,
) -> String {
    let fleet = fleet.borrow().clone();
    let servers = lbwatch::views::full_views(detector, &metrics.server_targets(&fleet));
    metrics.render(&fleet, &servers, false)
}

fn metrics(c: &mut Criterion) {
    let (mut p, fleet) = watched_fleet();
    let metrics = lbwatch::metrics::Metrics::new();
    let mut g = c.benchmark_group("metrics");
    g.sample_size(10);
    g.throughput(Throughput::Elements((TARGETS * SERVERS) as u64));
    g.bench_function("render_100k_servers", |b| {
        b.iter(|| render(&metrics, &fleet, p.detector()).len())
    });
    // What the detector's loop spends of a scrape exporting every server:
    // the full views it gives the reader.
    g.bench_function("views_100k_servers", |b| {
        b.iter(|| p.detector().view().len())
    });
    // `[metrics] per_server`: no pool alerting here, so "alerting" renders
    // what "none" does plus the check of each pool. The sizes of each
    // render go to target/criterion/metrics-sizes.txt.
    let mut sizes = String::new();
    for per_server in [PerServer::Alerting, PerServer::None, PerServer::All] {
        metrics.set_per_server(per_server);
        let text = render(&metrics, &fleet, p.detector());
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        sizes.push_str(&format!(
            "{per_server:?}: {} bytes, {series} series\n",
            text.len()
        ));
        if per_server == PerServer::All {
            break;
        }
        g.bench_function(
            format!("render_100k_servers_per_server_{per_server:?}"),
            |b| b.iter(|| render(&metrics, &fleet, p.detector()).len()),
        );
    }
    let _ = std::fs::create_dir_all("target/criterion");
    let _ = std::fs::write("target/criterion/metrics-sizes.txt", sizes);
    // Detection of one target's sample (100 servers), published, while
    // nothing reads, then while another thread renders /metrics non-stop.
    g.throughput(Throughput::Elements(SERVERS as u64));
    let next: Vec<Sample> = (0..TARGETS).map(|t| fleet_sample(t, 3)).collect();
    let mut i = 0;
    let mut step = |p: &mut Pipeline| {
        let s = &next[i % TARGETS];
        i += 1;
        p.step(s).unwrap().len()
    };
    g.bench_function("detect_while_idle", |b| b.iter(|| step(&mut p)));
    // The readers render every server, with the views the detector gave
    // once (another thread cannot ask this one's detector meanwhile).
    let servers = Arc::new(p.detector().view());
    let reader = Renderer::start(&metrics, &servers, {
        let fleet = fleet.clone();
        move || fleet.borrow().clone()
    });
    g.bench_function("detect_while_rendering_metrics", |b| {
        b.iter(|| step(&mut p))
    });
    reader.stop();
    // The control: another thread as busy, rendering a copy of the fleet
    // taken once, so it never touches the published snapshot. What both
    // cost detection is the machine's (a shared core, cache, allocator),
    // not a wait on the readers.
    let copy = fleet.borrow().clone();
    let busy = Renderer::start(&metrics, &servers, move || copy.clone());
    g.bench_function("detect_while_rendering_a_private_copy", |b| {
        b.iter(|| step(&mut p))
    });
    busy.stop();
    g.finish();
}

/// A thread rendering `/metrics` for the fleet `source` gives, non-stop
/// from its start until stopped (at least once, however short the run).
struct Renderer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Renderer {
    fn start(
        metrics: &Arc<lbwatch::metrics::Metrics>,
        servers: &Arc<Vec<lbwatch::detect::TargetView>>,
        source: impl Fn() -> Fleet + Send + 'static,
    ) -> Renderer {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, metrics, servers) = (stop.clone(), metrics.clone(), servers.clone());
        let thread = std::thread::spawn(move || loop {
            criterion::black_box(metrics.render(&source(), &servers, false));
            if flag.load(Ordering::Relaxed) {
                return;
            }
        });
        Renderer { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the renderer panicked");
    }
}

criterion_group!(benches, detector_and_replay, big_pool, haproxy_csv, metrics);
criterion_main!(benches);
