//! A `verify` run from the command line: the config, the samples (scraped
//! now, or read from recordings), the verdict.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::judge::Report;
use super::{Allow, ChangeAt, Verifier};
use crate::replay::ReplayError;

#[derive(Debug)]
pub struct Options {
    pub config: PathBuf,
    /// Scrape the targets this long (the run under test) …
    pub duration: Option<Duration>,
    /// … or read it from this recording.
    pub after: Option<PathBuf>,
    pub before: Option<PathBuf>,
    pub change_at: Option<ChangeAt>,
    pub allow: Vec<Allow>,
    /// Also write the samples scraped here, in the replay format.
    pub record: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The command line or the config (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// A recording that cannot be read (exit status 2).
    #[error(transparent)]
    Input(#[from] ReplayError),
    /// Scraping or recording failed (exit status 1).
    #[error("{0}")]
    Run(String),
}

impl VerifyError {
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, VerifyError::Run(_))
    }
}

fn read(
    path: &Path,
    mut take: impl FnMut(&crate::model::Sample<'_>) -> u64,
) -> Result<(), VerifyError> {
    let input = crate::replay::open(path)?;
    crate::replay::for_each_sample(path, input, |s| Ok(take(s)))?;
    Ok(())
}

pub fn run(opts: &Options) -> Result<Report, VerifyError> {
    let cfg =
        crate::config::load(&opts.config).map_err(|e| VerifyError::Usage(e.lines().join("\n")))?;
    if opts.duration.is_some() == opts.after.is_some() {
        return Err(VerifyError::Usage(
            "verify: give either --for DURATION (scrape the targets now) or --after FILE (a recording)".into(),
        ));
    }
    let mut v = Verifier::new(cfg.detection.clone(), opts.change_at);
    if let Some(before) = &opts.before {
        read(before, |s| v.before(s))?;
    }
    match (&opts.after, opts.duration) {
        (Some(after), _) => read(after, |s| v.after(s))?,
        (None, Some(duration)) => scrape(&cfg, duration, opts.record.as_deref(), &mut v)?,
        (None, None) => unreachable!("checked above"),
    }
    Ok(v.report(&opts.allow))
}

fn scrape(
    cfg: &crate::config::FileConfig,
    duration: Duration,
    record: Option<&Path>,
    v: &mut Verifier,
) -> Result<(), VerifyError> {
    let run_err = |what: &str, e: &dyn std::fmt::Display| VerifyError::Run(format!("{what}: {e}"));
    let mut out = match record {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| run_err(&p.display().to_string(), &e))?,
        )),
        None => None,
    };
    let mut write_err = None;
    let runtime = crate::runtime::build().map_err(|e| run_err("cannot start the runtime", &e))?;
    runtime
        .block_on(crate::workers::scrape_for(cfg, duration, |sample| {
            v.after(sample);
            if let Some(w) = out.as_mut() {
                let line = serde_json::to_writer(&mut *w, sample)
                    .map_err(std::io::Error::from)
                    .and_then(|()| w.write_all(b"\n"));
                if let Err(e) = line {
                    write_err.get_or_insert(e);
                }
            }
        }))
        .map_err(|e| run_err("scraping", &format!("{e:#}")))?;
    if let Some(mut w) = out {
        if let Some(e) = write_err.or_else(|| w.flush().err()) {
            return Err(run_err("recording the samples", &e));
        }
    }
    Ok(())
}
