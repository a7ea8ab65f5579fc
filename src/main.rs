//! The `lbwatch` command line: argument parsing and exit statuses only; the
//! work is in the library.

use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use lbwatch::detect::{DetectConfig, Detector};

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
    /// Runs the detector over recorded samples (JSON Lines, optionally
    /// gzip'd); prints alert events as JSON Lines on stdout.
    Replay {
        /// The recording (`-` for standard input).
        file: PathBuf,
        /// Take detection settings from this config file's [detection].
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Exit statuses of the stable surface.
const INVALID_INPUT: u8 = 2;
const FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay { file, config } => replay(file, config),
    }
}

#[allow(clippy::print_stderr)]
fn replay(file: PathBuf, config: Option<PathBuf>) -> ExitCode {
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
    let mut detector = Detector::new(cfg);
    let stdout = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let result = if file.as_os_str() == "-" {
        lbwatch::replay::replay(&file, io::stdin().lock(), &mut detector, stdout)
    } else {
        lbwatch::replay::open(&file)
            .and_then(|input| lbwatch::replay::replay(&file, input, &mut detector, stdout))
    };
    match result {
        Ok(_) => {
            // Nothing is dropped silently: say what the detector set aside.
            let set_aside = detector.input_stats();
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
            eprintln!("lbwatch: {e}");
            ExitCode::from(if e.is_bad_input() {
                INVALID_INPUT
            } else {
                FAILURE
            })
        }
    }
}
