//! lbwatch's core: the data model (samples and alert events) and the
//! detector, a pure state machine from samples to alert events.
//!
//! Pure by construction: this crate depends on no async runtime, network
//! client or other I/O crate (its Cargo.toml, checked by `tests/purity.rs`),
//! and `clippy.toml` beside it bans the standard library's files, sockets,
//! environment, processes, threads and clocks. Time is the sample's `ts`.

pub mod detect;
pub mod model;
