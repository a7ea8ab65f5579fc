//! Where lbwatch says what went wrong: one line per problem on stderr
//! (journald and container runtimes stamp and keep it). Secrets never reach
//! here: they are `Secret`s, and URLs go through `fetch::redact`.

use std::fmt::Arguments;
use std::io::Write as _;

/// Writes `lbwatch: <message>` to stderr.
pub fn warn(message: Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "lbwatch: {message}");
}
