//! `lbwatch replay`: recorded samples (JSON Lines, optionally gzip'd) through
//! the detector, alert events out. Streams the file line by line with one
//! reused buffer, so memory stays constant however long the recording.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::model::Sample;
use crate::pipeline::{Pipeline, SinkError};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}:{line}: cannot read: {source}")]
    Read {
        path: PathBuf,
        line: u64,
        source: io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Invalid {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl ReplayError {
    /// Bad input (exit status 2) rather than a failure of lbwatch itself.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ReplayError::Sink(_))
    }
}

/// What a replay went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub samples: u64,
    pub server_samples: u64,
    pub events: u64,
    pub bytes: u64,
}

/// Opens a recording, gzip'd or not (recognised by its magic bytes, so the
/// file name does not matter).
pub fn open(path: &Path) -> Result<Box<dyn BufRead>, ReplayError> {
    let open_err = |source| ReplayError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(open_err)?;
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut file, &mut magic).map_err(open_err)?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let reader = head.chain(file);
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            MultiGzDecoder::new(reader),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, reader)))
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Replays `input` (named `path` in errors) through `pipeline`, the same
/// step a live run takes (its sinks write the events out). Stops at the
/// first bad line with its line number: nothing after it is silently
/// dropped.
pub fn replay(
    path: &Path,
    input: impl BufRead,
    pipeline: &mut Pipeline,
) -> Result<ReplayStats, ReplayError> {
    let stats = for_each_sample(
        path,
        input,
        |sample| Ok(pipeline.step(sample)?.len() as u64),
    )?;
    pipeline.finish()?;
    Ok(stats)
}

/// Reads `input` (named `path` in errors) sample by sample into `take`,
/// which says how many events each gave. Stops at the first bad line.
pub fn for_each_sample(
    path: &Path,
    mut input: impl BufRead,
    mut take: impl FnMut(&Sample<'_>) -> Result<u64, SinkError>,
) -> Result<ReplayStats, ReplayError> {
    let mut stats = ReplayStats::default();
    let mut line = String::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        line_no += 1;
        let n = input
            .read_line(&mut line)
            .map_err(|source| ReplayError::Read {
                path: path.to_path_buf(),
                line: line_no,
                source,
            })?;
        if n == 0 {
            break;
        }
        stats.bytes += n as u64;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let sample: Sample = serde_json::from_str(text).map_err(|e| ReplayError::Invalid {
            path: path.to_path_buf(),
            line: line_no,
            reason: e.to_string(),
        })?;
        stats.samples += 1;
        if let crate::model::SampleBody::Servers(v) = &sample.body {
            stats.server_samples += v.len() as u64;
        }
        stats.events += take(&sample)?;
    }
    Ok(stats)
}
