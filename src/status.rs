//! The status page at `/`: every target and pool at a glance, each server's
//! share drawn against its expected share, the firing alerts on top with
//! their summaries, refreshed every two seconds from `/api/v1/alerts`,
//! `/api/v1/pools` and `/api/v1/incidents`. Servers that left a pool during
//! an open incident stay as greyed rows. `#incident=ID` opens an incident:
//! its facts, a chart of each pool's shares, rate and 5xx around it (inline
//! SVG), and its timeline. One self-contained HTML file: no external
//! script, font or stylesheet, so it works in an air-gapped network.

pub const PAGE: &str = include_str!("status.html");
