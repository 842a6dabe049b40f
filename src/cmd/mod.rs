//! The commands, one module each: its arguments and what it runs.

pub mod auth;
pub mod bench;
pub mod bench_auth;
pub mod demo;
pub mod node;
pub mod sim;
