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
/// A line whole in the reader's buffer is parsed where it lies; only one
/// that straddles the buffer's end is copied out first.
pub fn for_each_sample(
    path: &Path,
    mut input: impl BufRead,
    mut take: impl FnMut(&Sample<'_>) -> Result<u64, SinkError>,
) -> Result<ReplayStats, ReplayError> {
    let mut stats = ReplayStats::default();
    let mut straddling = Vec::new();
    let mut line_no = 0u64;
    loop {
        line_no += 1;
        let read_err = |source| ReplayError::Read {
            path: path.to_path_buf(),
            line: line_no,
            source,
        };
        let buf = loop {
            match input.fill_buf() {
                // A signal during the read: read again, as `read_until` does.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r.map_err(read_err)?,
            }
        };
        if buf.is_empty() {
            break;
        }
        let n = match memchr::memchr(b'\n', buf) {
            Some(i) => {
                let n = i + 1;
                one_line(path, line_no, &buf[..n], &mut stats, &mut take)?;
                input.consume(n);
                n
            }
            None => {
                straddling.clear();
                let n = input.read_until(b'\n', &mut straddling).map_err(read_err)?;
                one_line(path, line_no, &straddling, &mut stats, &mut take)?;
                n
            }
        };
        stats.bytes += n as u64;
    }
    Ok(stats)
}

/// One line's sample into `take`, counted in `stats` (a blank line is
/// none).
fn one_line(
    path: &Path,
    line_no: u64,
    line: &[u8],
    stats: &mut ReplayStats,
    take: &mut impl FnMut(&Sample<'_>) -> Result<u64, SinkError>,
) -> Result<(), ReplayError> {
    let text = line.trim_ascii();
    if text.is_empty() {
        return Ok(());
    }
    let invalid = |reason: String| ReplayError::Invalid {
        path: path.to_path_buf(),
        line: line_no,
        reason,
    };
    // Checked whole, then parsed as text: serde_json's byte reader, which
    // checks each string as it goes, measured slower (one run each).
    let text = std::str::from_utf8(text).map_err(|e| invalid(e.to_string()))?;
    let sample: Sample = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    stats.samples += 1;
    if let crate::model::SampleBody::Servers(v) = &sample.body {
        stats.server_samples += v.len() as u64;
    }
    stats.events += take(&sample)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"ts":"2024-06-05T14:00:00Z","target":"lb","servers":[{"pool":"p","server":"a","requests_total":1,"responses_5xx_total":0}]}"#;

    /// What `for_each_sample` reads of `text` through a buffer of `cap`
    /// bytes (each sample gives one event): its stats and the samples
    /// taken, or the error.
    fn read(text: &str, cap: usize) -> Result<(ReplayStats, usize), String> {
        let mut seen = 0;
        let input = BufReader::with_capacity(cap, text.as_bytes());
        for_each_sample(Path::new("f"), input, |s| {
            assert_eq!(&*s.target, "lb");
            seen += 1;
            Ok(1)
        })
        .map(|stats| (stats, seen))
        .map_err(|e| e.to_string())
    }

    /// Lines that straddle the buffer's end (a 7-byte buffer: all of
    /// them), blank lines and a last line with no newline read as they do
    /// whole in the buffer, and a bad line is named by its number either way.
    #[test]
    fn lines_across_the_buffers_end_read_as_whole_ones() {
        let text = format!("{LINE}\n\n  {LINE}\r\n{LINE}");
        let whole = read(&text, 1 << 16).unwrap();
        assert_eq!(whole, (read(&text, 7).unwrap()));
        assert_eq!(whole.1, 3);
        assert_eq!(whole.0.samples, 3);
        assert_eq!(whole.0.events, 3);
        assert_eq!(whole.0.server_samples, 3);
        assert_eq!(whole.0.bytes, text.len() as u64);
        let bad = format!("{LINE}\n\n{{\"ts\":1}}\n{LINE}\n");
        for cap in [7, 1 << 16] {
            let e = read(&bad, cap).unwrap_err();
            assert!(e.starts_with("f:3: "), "{cap}: {e}");
        }
    }
}
