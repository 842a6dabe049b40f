//! # p2pchat
//!
//! The command line: `auth-server`, `node`, `demo`, `sim`, `bench`, `bench-auth`. See
//! `p2pchat --help`.
//!
//! Layout, with imports flowing one way (`cli` → `cmd` → the rest, never back):
//! - `cli`: parsing and dispatch; `cmd/`: one module per command, with its arguments;
//! - `process`: logging, data dir, runtime, signals, address parsing;
//! - `commands`: the chat command language (`/msg`, `/history`...); `json`: script-mode events;
//!   `format`: human-readable text; `tui/`: the terminal client.

#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod commands;
mod format;
mod json;
mod process;
mod tui;

fn main() -> std::process::ExitCode {
    cli::main()
}
