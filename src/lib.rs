//! lbwatch: watches load balancers and raises an alert within seconds when
//! traffic stops being spread the way the operators believe.
//!
//! The parts (see ARCHITECTURE.md): `model` (samples and alert events),
//! `detect` (the pure detector), `replay` (recorded samples in),
//! `config` (the configuration file).

pub mod app;
pub mod cardinality;
pub use lbwatch_core::{detect, model};
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod endpoint;
pub mod fetch;
pub mod fleet;
pub mod glob;
pub mod http;
pub mod incident;
pub mod lint;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod replay;
pub mod runtime;
mod scrape;
pub mod secret;
pub mod sinks;
pub mod source;
pub mod state;
pub mod status;
pub mod systemd;
pub mod verify;
pub mod views;
mod workers;
