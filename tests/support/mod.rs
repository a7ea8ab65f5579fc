//! Test helpers, one per layer.

pub mod sim;
