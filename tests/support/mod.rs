//! Test helpers, one per layer.

pub mod dns;
pub mod fake_lb;
pub mod haproxy;
pub mod receiver;
pub mod sim;
pub mod tools;
