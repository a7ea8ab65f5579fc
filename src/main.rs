//! The `lbwatch` command line: argument parsing and exit statuses only; the
//! work is in the library.

use lbwatch::log::LogFormat;
use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use lbwatch::detect::{DetectConfig, Detector};
use lbwatch::pipeline::{EventWriter, Output, Pipeline};

#[derive(Parser)]
#[command(
    name = "lbwatch",
    version,
    about = "Watches load balancers and raises an alert when traffic stops being spread the way you believe"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watches a simulated load balancer on this machine through the real
    /// scrape path and replays a classic outage: the first thing to run.
    Demo {
        /// Seconds until the bad reload.
        #[arg(long, default_value_t = 75)]
        fault_after: u64,
        /// lbwatch's own HTTP listener during the demo (another free port
        /// when the default is busy).
        #[arg(long, default_value = lbwatch::demo::DEFAULT_LISTEN)]
        listen: String,
    },
    /// The daemon: scrapes every target, detects, notifies, serves /metrics
    /// and /healthz. Alert events go to stdout as JSON Lines.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Log lines as text (default) or JSON (overrides `[log] format`).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
        /// Watch only shard I of N (from 0) of the configured targets, by a
        /// hash of their names (overrides `[cluster]`).
        #[arg(long, value_name = "I/N")]
        shard: Option<lbwatch::cluster::Shard>,
    },
    /// Scrapes like `run` and appends every sample to a file in the replay
    /// format, so a live situation can be replayed.
    Record {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Validates a config file without starting anything: exit 0 when valid,
    /// 2 with every error listed.
    CheckConfig { file: PathBuf },
    /// Reads an HAProxy or NGINX config for what the stats cannot show (every
    /// server at one address, a deny that matches everyone, a route to no
    /// pool) and, with --against, for a risky change from the deployed one.
    /// Exit 0 when nothing is at or above --fail-on, 1 otherwise, 2 when an
    /// input cannot be read or parsed.
    Lint {
        /// The config: an HAProxy file or directory (several are read in
        /// order, like `haproxy -f`), or an NGINX main file.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The deployed version of the same config, to lint the change.
        #[arg(long)]
        against: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = LintFormat::Text)]
        format: LintFormat,
        #[arg(long, value_enum, default_value_t = FailOn::Error)]
        fail_on: FailOn,
        /// The grammar, when detection from the content is not wanted.
        #[arg(long, value_enum)]
        kind: Option<lbwatch::lint::KindArg>,
    },
    /// The staging gate: scrapes the targets for --for (or reads --after),
    /// runs the detector, and compares each pool's spread, rate and 5xx,
    /// and each frontend's denials, with before the change (--before, or
    /// the run's start up to --change-at). Exit 0 when the LB does what it
    /// did, 1 on a warning or critical alert or a significant and large
    /// change not declared with --allow, 2 on bad input.
    Verify {
        #[arg(long)]
        config: PathBuf,
        /// How long to scrape the targets (`2m`).
        #[arg(long = "for", value_parser = parse_secs)]
        duration: Option<f64>,
        /// A recording of the run under test, instead of scraping.
        #[arg(long)]
        after: Option<PathBuf>,
        /// A recording of the LB before the change.
        #[arg(long)]
        before: Option<PathBuf>,
        /// When the change happens within the run: an RFC 3339 time, or a
        /// duration from the run's first sample (`30s`).
        #[arg(long)]
        change_at: Option<String>,
        /// An expected change: 'POOL/SERVER removed', 'POOL/SERVER added',
        /// 'POOL weights' or 'POOL balance' (repeatable).
        #[arg(long)]
        allow: Vec<String>,
        /// Also write the samples scraped to this file (replay format).
        #[arg(long)]
        record: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Runs the detector over recorded samples (JSON Lines, optionally
    /// gzip'd); prints alert events as JSON Lines on stdout.
    Replay {
        /// The recording (`-` for standard input).
        file: PathBuf,
        /// Take detection settings from this config file's [detection].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write each incident's postmortem draft here (ID.md, ID.json).
        #[arg(long)]
        incidents: Option<PathBuf>,
    },
    /// Lists the incidents of the history (the config's state directory).
    Incidents {
        #[arg(long)]
        config: PathBuf,
        /// Only those that started this long ago or less (`24h`).
        #[arg(long, value_parser = parse_secs)]
        since: Option<f64>,
        #[arg(long)]
        target: Option<String>,
    },
    /// Writes the postmortem draft of one incident of the history.
    Report {
        id: String,
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = DraftFormat::Markdown)]
        format: DraftFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LintFormat {
    Text,
    Json,
    Sarif,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DraftFormat {
    Markdown,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

fn parse_secs(text: &str) -> Result<f64, String> {
    lbwatch::detect::Secs::parse(text)
        .map(|s| s.0)
        .map_err(|e| e.to_string())
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FailOn {
    Error,
    Warning,
}

/// Says why a command failed; exit 2 for bad input, 1 otherwise.
#[allow(clippy::print_stderr)]
fn failed(e: impl std::fmt::Display, bad_input: bool) -> ExitCode {
    eprintln!("lbwatch: {e}");
    ExitCode::from(if bad_input { INVALID_INPUT } else { FAILURE })
}

/// Exit statuses of the stable surface.
const INVALID_INPUT: u8 = 2;
const FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay {
            file,
            config,
            incidents,
        } => replay(file, config, incidents),
        Command::Incidents {
            config,
            since,
            target,
        } => incidents(&config, since, target.as_deref()),
        Command::Report { id, config, format } => report(&config, &id, format),
        Command::CheckConfig { file } => check_config(file),
        Command::Lint {
            paths,
            against,
            format,
            fail_on,
            kind,
        } => lint(&paths, against, format, fail_on, kind),
        Command::Verify {
            config,
            duration,
            after,
            before,
            change_at,
            allow,
            record,
            format,
        } => {
            let options =
                verify_options(config, duration, after, before, change_at, &allow, record);
            verify(options, format)
        }
        Command::Run {
            config,
            log_format,
            shard,
        } => daemon(config, None, log_format, shard),
        Command::Demo {
            fault_after,
            listen,
        } => demo(fault_after, listen),
        Command::Record {
            config,
            out,
            log_format,
        } => daemon(config, Some(out), log_format, None),
    }
}

/// Loads a config, printing every error; `None` when invalid.
#[allow(clippy::print_stderr)]
fn load(path: &std::path::Path) -> Option<lbwatch::config::FileConfig> {
    match lbwatch::config::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            for line in e.lines() {
                eprintln!("lbwatch: {line}");
            }
            None
        }
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn lint(
    paths: &[PathBuf],
    against: Option<PathBuf>,
    format: LintFormat,
    fail_on: FailOn,
    kind: Option<lbwatch::lint::KindArg>,
) -> ExitCode {
    use lbwatch::lint::{self, render, Severity};
    let loaded = lint::load(paths, kind).and_then(|new| {
        let old = against.map(|p| lint::load(&[p], kind)).transpose()?;
        Ok((new, old))
    });
    let (new, old) = match loaded {
        Ok(c) => c,
        Err(e) => return failed(e, true),
    };
    let findings = lint::lint(&new, old.as_ref());
    match format {
        LintFormat::Text => print!("{}", render::text(&findings)),
        LintFormat::Json => println!("{}", render::json(&findings)),
        LintFormat::Sarif => println!("{:#}", render::sarif(&findings)),
    }
    let bar = match fail_on {
        FailOn::Error => Severity::Error,
        FailOn::Warning => Severity::Warning,
    };
    if findings.iter().any(|f| f.severity() >= bar) {
        ExitCode::from(FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// The options of `verify`, or why they are wrong.
fn verify_options(
    config: PathBuf,
    duration: Option<f64>,
    after: Option<PathBuf>,
    before: Option<PathBuf>,
    change_at: Option<String>,
    allow: &[String],
    record: Option<PathBuf>,
) -> Result<lbwatch::verify::session::Options, String> {
    use lbwatch::verify::{Allow, ChangeAt};
    Ok(lbwatch::verify::session::Options {
        config,
        duration: duration.map(std::time::Duration::from_secs_f64),
        after,
        before,
        change_at: change_at.as_deref().map(ChangeAt::parse).transpose()?,
        allow: allow
            .iter()
            .map(|a| Allow::parse(a))
            .collect::<Result<_, _>>()?,
        record,
    })
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn verify(
    options: Result<lbwatch::verify::session::Options, String>,
    format: ReportFormat,
) -> ExitCode {
    use lbwatch::verify::{render, session};
    let report = options.map_err(session::VerifyError::Usage).and_then(|o| {
        lbwatch::log::init(&lbwatch::log::LogConfig::default(), None);
        session::run(&o)
    });
    match report {
        Ok(r) => {
            match format {
                ReportFormat::Text => print!("{}", render::text(&r)),
                ReportFormat::Json => println!("{}", render::json(&r)),
            }
            if r.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(FAILURE)
            }
        }
        Err(e) => {
            let bad_input = e.is_bad_input();
            failed(e, bad_input)
        }
    }
}

#[allow(clippy::print_stdout)]
fn check_config(file: PathBuf) -> ExitCode {
    match load(&file) {
        Some(c) => {
            println!(
                "{}: valid ({} target(s), {} notifier(s))",
                file.display(),
                c.targets.len(),
                c.notifiers.len()
            );
            ExitCode::SUCCESS
        }
        None => ExitCode::from(INVALID_INPUT),
    }
}

#[allow(clippy::print_stderr)]
fn daemon(
    config: PathBuf,
    record: Option<PathBuf>,
    log_format: Option<LogFormat>,
    shard: Option<lbwatch::cluster::Shard>,
) -> ExitCode {
    let Some(cfg) = load(&config) else {
        return ExitCode::from(INVALID_INPUT);
    };
    lbwatch::log::init(&cfg.log, log_format);
    let runtime = match lbwatch::runtime::build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lbwatch: cannot start the runtime: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    let opts = lbwatch::app::RunOptions {
        output: lbwatch::app::Output::Json,
        record,
        config_path: Some(config),
        shard,
    };
    match runtime.block_on(lbwatch::app::run(cfg, opts, None, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lbwatch: {e:#}");
            ExitCode::from(FAILURE)
        }
    }
}

#[allow(clippy::print_stderr)]
fn demo(fault_after: u64, listen: String) -> ExitCode {
    lbwatch::log::init(&lbwatch::log::LogConfig::default(), None);
    let opts = lbwatch::demo::DemoOptions {
        fault_after: std::time::Duration::from_secs(fault_after),
        listen,
    };
    let result = lbwatch::runtime::build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(lbwatch::demo::demo(opts, shutdown_signal())));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lbwatch: {e:#}");
            ExitCode::from(FAILURE)
        }
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The incident history of the config's state directory.
fn history(
    config: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, lbwatch::incident::Incident>, ExitCode> {
    let cfg = load(config).ok_or(ExitCode::from(INVALID_INPUT))?;
    lbwatch::incident::store::load(&cfg.state.dir()).map_err(|e| failed(e, true))
}

#[allow(clippy::print_stdout)]
fn incidents(config: &std::path::Path, since: Option<f64>, target: Option<&str>) -> ExitCode {
    let list = match history(config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let now = lbwatch::clock::now();
    let mut shown: Vec<_> = list
        .values()
        .filter(|i| target.is_none_or(|t| i.target == t))
        .filter(|i| since.is_none_or(|s| now.secs_since(i.start) <= s))
        .collect();
    shown.sort_by_key(|i| std::cmp::Reverse(i.start));
    print!("{}", lbwatch::incident::report::list(&shown, now));
    ExitCode::SUCCESS
}

#[allow(clippy::print_stdout)]
fn report(config: &std::path::Path, id: &str, format: DraftFormat) -> ExitCode {
    let list = match history(config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let Some(i) = list.get(id) else {
        return failed(
            format!("no incident {id} in the history (`lbwatch incidents` lists them)"),
            true,
        );
    };
    match format {
        DraftFormat::Markdown => print!(
            "{}",
            lbwatch::incident::report::markdown(i, lbwatch::clock::now())
        ),
        DraftFormat::Json => println!("{:#}", lbwatch::incident::report::json(i)),
    }
    ExitCode::SUCCESS
}

#[allow(clippy::print_stderr)]
fn replay(file: PathBuf, config: Option<PathBuf>, incidents: Option<PathBuf>) -> ExitCode {
    let cfg = match config {
        None => DetectConfig::default(),
        Some(path) => match lbwatch::config::load(&path) {
            Ok(c) => c.detection,
            Err(e) => {
                for line in e.lines() {
                    eprintln!("lbwatch: {line}");
                }
                return ExitCode::from(INVALID_INPUT);
            }
        },
    };
    // Not locked: a sink may move between threads; the buffer makes the
    // lock a once-per-64-KiB cost.
    let stdout = BufWriter::with_capacity(1 << 16, io::stdout());
    let mut pipeline =
        Pipeline::new(Detector::new(cfg)).with(EventWriter::new(stdout, Output::Json, false));
    if let Some(dir) = incidents {
        pipeline = pipeline.with(lbwatch::sinks::Incidents::new(None, Some(dir)));
    }
    let result = if file.as_os_str() == "-" {
        lbwatch::replay::replay(
            &file,
            io::BufReader::with_capacity(1 << 16, io::stdin().lock()),
            &mut pipeline,
        )
    } else {
        lbwatch::replay::open(&file)
            .and_then(|input| lbwatch::replay::replay(&file, input, &mut pipeline))
    };
    match result {
        Ok(_) => {
            // Nothing is dropped silently: say what the detector set aside.
            let set_aside = pipeline.detector().input_stats();
            if set_aside.out_of_order > 0 || set_aside.duplicate_rows > 0 {
                eprintln!(
                    "lbwatch: {}: set aside {} sample(s) not newer than their target's previous one and {} duplicate server row(s)",
                    file.display(),
                    set_aside.out_of_order,
                    set_aside.duplicate_rows
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let bad_input = e.is_bad_input();
            failed(e, bad_input)
        }
    }
}
