//! Sources: load balancer stats in, `ServerStat`s out. Each format is a pure
//! parser over bytes (no I/O, so every fixture is a unit test); fetching the
//! bytes is the transports' business.

pub mod envoy;
pub mod haproxy_csv;
pub mod nginx;
pub mod prometheus;

use crate::model::ServerStat;

/// A parser: bytes of one stats page to its servers.
pub type Parser = fn(&[u8]) -> Result<Parsed, SourceError>;

/// Every `kind` of target this version reads with a fixed parser.
pub const KINDS: &[(&str, Parser)] = &[
    ("haproxy", haproxy_csv::parse),
    ("haproxy-prometheus", prometheus::parse_haproxy),
    ("envoy", envoy::parse),
    ("nginx-plus", nginx::parse_plus),
    ("nginx-vts", nginx::parse_vts),
];

/// Any Prometheus endpoint, read through the target's `mapping`.
pub const PROMETHEUS: &str = "prometheus";

/// The parser of a target `kind`.
pub fn parser(kind: &str) -> Option<Parser> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, p)| *p)
}

/// Every kind's name, for messages.
pub fn kind_names() -> Vec<&'static str> {
    KINDS.iter().map(|(k, _)| *k).chain([PROMETHEUS]).collect()
}

/// A target's parser, with its mapping where the kind needs one.
pub type BoxedParser = Box<dyn Fn(&[u8]) -> Result<Parsed, SourceError> + Send + Sync>;

pub fn build(kind: &str, mapping: Option<&prometheus::Mapping>) -> Result<BoxedParser, String> {
    match (kind, mapping) {
        (PROMETHEUS, Some(m)) => {
            let m = m.clone();
            Ok(Box::new(move |bytes| prometheus::parse_mapped(bytes, &m)))
        }
        (PROMETHEUS, None) => Err("a prometheus target needs a [targets.mapping]".into()),
        (k, None) => parser(k)
            .map(|p| Box::new(p) as BoxedParser)
            .ok_or_else(|| format!("supported kinds are {}", kind_names().join(", "))),
        (_, Some(_)) => Err("only a prometheus target takes a mapping".into()),
    }
}

/// The servers of one scrape, and the rows that could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
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

/// A page as text, and its first non-empty line (to tell formats apart and
/// to name what arrived when it is not a stats page).
pub fn text_and_first_line(bytes: &[u8]) -> Result<(&str, &str), SourceError> {
    let text = std::str::from_utf8(bytes).map_err(|e| SourceError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    Ok((text, first))
}

/// A JSON page; an HTML page (a login or error page) is named as such.
pub fn json(bytes: &[u8], expected: &'static str) -> Result<serde_json::Value, SourceError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).to_string();
        let first = head.trim_start().lines().next().unwrap_or("");
        if first.starts_with('<') {
            SourceError::NotThisFormat {
                expected,
                found: excerpt(first),
            }
        } else {
            SourceError::NotJson(e.to_string())
        }
    })
}

/// The start of a line, for error messages (never the whole of a huge body).
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}
