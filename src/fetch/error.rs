//! Why a fetch failed, as a sample's `error` says it.

use std::time::Duration;

/// Why a scrape failed; becomes the `error` of a sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connecting to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("HTTP {status} from {endpoint}")]
    Status { status: u16, endpoint: String },
    #[error("response larger than {limit} bytes from {endpoint}")]
    TooLarge { limit: u64, endpoint: String },
    #[error("reading from {endpoint}: {reason}")]
    Read { endpoint: String, reason: String },
}

/// An error with its causes, as one line ("error sending request: connection
/// refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}
