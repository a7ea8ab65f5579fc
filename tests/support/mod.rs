//! Test helpers, one per layer.

pub mod fake_lb;
pub mod haproxy;
pub mod sim;
