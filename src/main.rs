//! # p2pchat
//!
//! The command line: `auth-server`, `node`, `demo`, `sim`. See `p2pchat --help`.

#![forbid(unsafe_code)]

mod bench;
mod bench_auth;
mod cli;
mod commands;
mod demo;
mod json;
mod node_cmd;
mod tui;

fn main() -> std::process::ExitCode {
    cli::main()
}
