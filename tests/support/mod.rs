//! Test helpers, one per layer.

pub mod fake_lb;
pub mod sim;
