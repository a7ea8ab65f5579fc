//! Sources: load balancer stats in, `ServerStat`s out. Each format is a pure
//! parser over bytes (no I/O, so every fixture is a unit test); fetching the
//! bytes is the transports' business.

pub mod haproxy_csv;

use crate::model::ServerStat;

/// The servers of one scrape, and the rows that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub servers: Vec<ServerStat<'static>>,
    /// Counted and skipped: one bad row never costs the rest of the scrape.
    pub bad_rows: Vec<RowError>,
}

/// A row that was skipped, with its line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    pub reason: String,
}

/// A response that is not a stats page at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("expected {expected}, got {found:?}")]
    NotThisFormat {
        expected: &'static str,
        found: String,
    },
    #[error("line {line}: bad header: {reason}")]
    BadHeader { line: usize, reason: String },
}

/// The start of a line, for error messages (never the whole of a huge body).
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}
