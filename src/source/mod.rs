//! Sources: load balancer stats in, `ServerStat`s out. Each format is a pure
//! parser over bytes (no I/O, so every fixture is a unit test); fetching the
//! bytes is the transports' business.

pub mod envoy;
pub mod haproxy_csv;
pub mod nginx;

use crate::model::ServerStat;

/// A parser: bytes of one stats page to its servers.
pub type Parser = fn(&[u8]) -> Result<Parsed, SourceError>;

/// Every `kind` of target this version reads, with its parser.
pub const KINDS: &[(&str, Parser)] = &[
    ("haproxy", haproxy_csv::parse),
    ("envoy", envoy::parse),
    ("nginx-plus", nginx::parse_plus),
    ("nginx-vts", nginx::parse_vts),
];

/// The parser of a target `kind`.
pub fn parser(kind: &str) -> Option<Parser> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, p)| *p)
}

/// The servers of one scrape, and the rows that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub servers: Vec<ServerStat<'static>>,
    /// Counted and skipped: one bad row never costs the rest of the scrape.
    pub bad_rows: Vec<RowError>,
}

/// A row that was skipped, where it was (`line 5`, `upstreams.web.peers[2]`)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub at: String,
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
    #[error("not JSON: {0}")]
    NotJson(String),
}

/// The start of a line, for error messages (never the whole of a huge body).
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}
