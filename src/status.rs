//! The status page at `/`: every target and pool at a glance, each server's
//! share drawn against its expected share, the firing alerts on top with
//! their summaries, refreshed every two seconds from `/api/v1/alerts` and
//! `/api/v1/pools`. One self-contained HTML file: no external script, font
//! or stylesheet, so it works in an air-gapped network.

pub const PAGE: &str = include_str!("status.html");
