//! The one place lbwatch reads the wall clock: stamping a live sample at the
//! start of its scrape. Everything downstream takes time from the sample, so
//! replaying a recording gives exactly the alerts the live run gave.

use crate::model::Timestamp;

/// Now, as a sample timestamp.
#[allow(clippy::disallowed_methods)] // the single sanctioned clock read
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A monotonic instant, for measuring how long lbwatch itself takes.
#[allow(clippy::disallowed_methods)] // measuring, never deciding
pub fn monotonic() -> std::time::Instant {
    std::time::Instant::now()
}
