//! Argument parsing and dispatch to the commands (`crate::cmd`).

use crate::cmd;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// p2pchat: a decentralized, fault-tolerant peer-to-peer chat over UDP.
#[derive(Parser, Debug)]
#[command(name = "p2pchat", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Cmd,
}
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the auth server (signup/signin, node ids, node cap, newcomer queue).
    AuthServer(cmd::auth::AuthArgs),
    /// Run a chat node. On a terminal: a full-screen chat client. Otherwise: script mode (one command
    /// per stdin line, one JSON event per stdout line, logs on stderr).
    Node(cmd::node::NodeArgs),
    /// The whole story in one process: auth server, alice, bob and carol chat; carol crashes
    /// and catches up; the server goes down and the chat goes on; dave joins.
    Demo(cmd::demo::DemoArgs),
    /// Simulate a whole cluster in virtual time (deterministic for a given seed).
    Sim(cmd::sim::SimArgs),
    /// Measure real nodes on 127.0.0.1 (real runtime, codec and UDP sockets) in one process.
    Bench(cmd::bench::BenchArgs),
    /// Measure signups per second through running auth servers (argon2 dominates).
    BenchAuth(cmd::bench_auth::BenchAuthArgs),
}
/// Parses the command line and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Sim(args) => cmd::sim::sim(args),
        Cmd::AuthServer(args) => report(cmd::auth::auth_server(args)),
        Cmd::Node(args) => cmd::node::node(args),
        Cmd::Demo(args) => report(cmd::demo::demo(args)),
        Cmd::Bench(args) => report(cmd::bench::bench(args)),
        Cmd::BenchAuth(args) => report(cmd::bench_auth::bench_auth(args)),
    }
}
fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("p2pchat: {e:#}");
            ExitCode::FAILURE
        }
    }
}
