//! Argument parsing and dispatch to the subcommands.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    AuthServer(AuthArgs),
    /// Run a chat node. On a terminal: a full-screen chat client. Otherwise: script mode (one command
    /// per stdin line, one JSON event per stdout line, logs on stderr).
    Node(NodeArgs),
    /// The whole story in one process: auth server, alice, bob and carol chat; carol crashes
    /// and catches up; the server goes down and the chat goes on; dave joins.
    Demo(DemoArgs),
    /// Simulate a whole cluster in virtual time (deterministic for a given seed).
    Sim(SimArgs),
    /// Measure real nodes on 127.0.0.1 (real runtime, codec and UDP sockets) in one process.
    Bench(crate::bench::BenchArgs),
    /// Measure signups per second through running auth servers (argon2 dominates).
    BenchAuth(crate::bench_auth::BenchAuthArgs),
}

/// Arguments of `p2pchat auth-server`.
#[derive(Args, Debug)]
pub struct AuthArgs {
    /// UDP address to listen on (HOST:PORT; a hostname is resolved).
    #[arg(long, default_value = "127.0.0.1:12345", value_parser = resolve)]
    pub listen: SocketAddr,
    /// Where the account database lives (default: the platform data dir, e.g. ~/.local/share/p2pchat).
    #[arg(long, conflicts_with = "db")]
    pub data_dir: Option<PathBuf>,
    /// Keep accounts, keys, leases and the newcomer queue in PostgreSQL
    /// (postgresql://USER[:PASSWORD]@HOST:PORT/DB) instead of SQLite in the data dir: several
    /// auth servers on one database are one service with one key.
    #[arg(long, env = "P2PCHAT_DATABASE_URL", hide_env_values = true)]
    pub db: Option<String>,
    /// Cap on live nodes (members polling plus newcomers waiting).
    #[arg(long, default_value_t = 10_000)]
    pub max_nodes: usize,
    /// Signups one IP address may make per minute (0: unlimited). A node over the limit is
    /// told so and asks again when the minute is over.
    #[arg(long, default_value_t = p2pchat_core::AuthConfig::default().source_signups)]
    pub signup_rate: u32,
}

/// Arguments of `p2pchat node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// UDP port on 127.0.0.1 (0 picks a free one, reported in the ready event).
    #[arg(long, conflicts_with = "listen")]
    pub port: Option<u16>,
    /// UDP address to listen on (instead of --port; HOST:PORT, a hostname is resolved).
    #[arg(long, value_parser = resolve)]
    pub listen: Option<SocketAddr>,
    /// Username (1-32 characters from A-Z a-z 0-9 _ . -).
    #[arg(long)]
    pub user: String,
    /// Create the account (a taken username is an error); without it, sign in.
    #[arg(long)]
    pub signup: bool,
    /// The auth server's address (HOST:PORT; a hostname is resolved, IPv4 first). Repeat it
    /// for several auth servers sharing one database: the node asks them in turn and turns
    /// to the next when one stops answering.
    #[arg(long, default_value = "127.0.0.1:12345", value_parser = resolve)]
    pub auth: Vec<SocketAddr>,
    /// Where this node keeps its identity and history (default: the platform data dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Read the password from the first line of this file (else P2PCHAT_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Signup/signin attempts before giving up on an unreachable auth server (backoff grows
    /// from 0.3 s to 2 s between attempts).
    #[arg(long, default_value_t = p2pchat_core::NodeConfig::default().auth_attempts)]
    pub auth_attempts: u32,
    /// Pin the auth server's key (64 hex characters, printed by `p2pchat auth-server`).
    /// Without it the key seen at the first signin is remembered and pinned (trust on first
    /// use); either way a server with another key is refused before any password is sent.
    #[arg(long, value_name = "HEX")]
    pub auth_key: Option<String>,
    /// How many days private messages for absent users are kept: the expiry this node puts
    /// on what it hands to mailboxes (1 to 365).
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u64).range(1..=365))]
    pub mailbox_days: u64,
    /// Script mode, at the end of input: after signing in and carrying out every command,
    /// wait at most this many seconds for private messages to be acknowledged and group
    /// messages to reach a peer, then say goodbye. What is still unacknowledged stays in the
    /// outbox for the next start.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS", value_parser = linger)]
    pub linger: f64,
}

/// `HOST:PORT` to a socket address: an IP address as is, a hostname through the resolver
/// (IPv4 addresses first: the loopback and most home networks are IPv4).
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !s.contains(':') {
        return Err(format!("{s:?} is not HOST:PORT"));
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(s)
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn linger(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: expected seconds from 0 to 3600")),
    }
}

/// Arguments of `p2pchat demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Also print every protocol event (joins, presence) as it happens.
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Args, Debug)]
struct SimArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Group messages sent from random members.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Private messages sent between random pairs.
    #[arg(long, default_value_t = 0)]
    private: usize,
    /// Probability that a datagram is lost (0 to 0.9).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability that a datagram is duplicated (0 to 0.9).
    #[arg(long, default_value_t = 0.0)]
    dup: f64,
    /// Smallest one-way latency in ms.
    #[arg(long, default_value_t = 1)]
    min_latency_ms: u64,
    /// Largest one-way latency in ms (uniform in between, so datagrams reorder).
    #[arg(long, default_value_t = 20)]
    max_latency_ms: u64,
    /// Split the nodes into two halves for this many ms while they talk.
    #[arg(long, default_value_t = 0)]
    partition_ms: u64,
    /// Crash this many nodes mid-run and restart them later from their records.
    #[arg(long, default_value_t = 0)]
    crash: usize,
    /// Also crash the auth server mid-run and restart it later.
    #[arg(long)]
    crash_auth: bool,
    /// Burst workload: every node sends at the same instant, in waves 0.5 s apart when
    /// there are more messages than nodes (a big group all talking at once).
    #[arg(long)]
    burst: bool,
    /// Latency and loss of a typical network, instead of --min/--max-latency-ms and --loss:
    /// lan (1-20 ms), wan (20-200 ms), mobile (50-300 ms, 2% loss).
    #[arg(long, value_enum)]
    profile: Option<Profile>,
    /// Offline delivery: this many pairs where the recipient goes away, the sender writes to
    /// it and leaves, and the recipient returns while the sender is away (mailboxes).
    #[arg(long, default_value_t = 0)]
    offline_private: usize,
    /// Gossip fanout.
    #[arg(long, default_value_t = p2pchat_core::NodeConfig::default().fanout)]
    fanout: usize,
    /// Plain push gossip (fanout random members per hop) instead of Plumtree above 32 members.
    #[arg(long)]
    no_plumtree: bool,
    /// No ring broadcast: Plumtree (or push gossip) above 32 members even with full membership.
    #[arg(long)]
    no_ring: bool,
    /// Time between two consecutive group messages in the talk phase, ms.
    #[arg(long, default_value_t = p2pchat_sim::SimConfig::default().send_interval_ms)]
    interval_ms: u64,
    /// Seed of the whole run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only the first K nodes send group messages (0: everyone).
    #[arg(long, default_value_t = 0)]
    talkers: usize,
    /// Members each node keeps in its view (0: all up to 1024 nodes, else 32 so that 10,000
    /// nodes fit one process).
    #[arg(long, default_value_t = 0)]
    view: usize,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
}

/// Parses the command line and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Sim(args) => sim(args),
        Cmd::AuthServer(args) => report(crate::node_cmd::auth_server(args)),
        Cmd::Node(args) => crate::node_cmd::node(args),
        Cmd::Demo(args) => report(crate::demo::demo(args)),
        Cmd::Bench(args) => report(crate::bench::bench(args)),
        Cmd::BenchAuth(args) => report(crate::bench_auth::bench_auth(args)),
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

/// Named network conditions for `sim --profile`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Profile {
    /// A local network: 1-20 ms one way, no loss.
    Lan,
    /// The internet: 20-200 ms one way.
    Wan,
    /// Phones: 50-300 ms one way and 2% loss.
    Mobile,
}

fn sim(mut a: SimArgs) -> ExitCode {
    match a.profile {
        Some(Profile::Lan) => (a.min_latency_ms, a.max_latency_ms) = (1, 20),
        Some(Profile::Wan) => (a.min_latency_ms, a.max_latency_ms) = (20, 200),
        Some(Profile::Mobile) => {
            (a.min_latency_ms, a.max_latency_ms) = (50, 300);
            a.loss = a.loss.max(0.02);
        }
        None => {}
    }
    let cfg = p2pchat_sim::SimConfig {
        nodes: a.nodes,
        messages: a.messages,
        private: a.private,
        loss: a.loss,
        dup: a.dup,
        min_latency_ms: a.min_latency_ms,
        max_latency_ms: a.max_latency_ms,
        partition_ms: a.partition_ms,
        crash: a.crash,
        crash_auth: a.crash_auth,
        fanout: a.fanout,
        plumtree: !a.no_plumtree,
        ring: !a.no_ring,
        seed: a.seed,
        send_interval_ms: a.interval_ms,
        talkers: a.talkers,
        view: a.view,
        offline_private: a.offline_private,
        burst: a.burst,
        ..p2pchat_sim::SimConfig::default()
    };
    let started = std::time::Instant::now();
    let report = match p2pchat_sim::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("p2pchat sim: {e}");
            return ExitCode::from(2);
        }
    };
    let wall = started.elapsed();
    if a.json {
        match serde_json::to_string(&report) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("p2pchat sim: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("p2pchat sim: {} nodes, seed {}", report.nodes, report.seed);
        println!(
            "  sent        {} group + {} private messages ({} refused; {} merges folded large frontiers)",
            report.messages, report.private, report.refused, report.merges
        );
        println!(
            "  delivered   {} of {} node-message pairs ({} missing, {} duplicates, {} causal violations, {} history mismatches)",
            report.delivered,
            report.expected,
            report.missing,
            report.duplicates,
            report.causal_violations,
            report.history_mismatches
        );
        println!(
            "  converged   {}",
            if report.converged_ms >= 0 {
                format!("{} ms after the first send", report.converged_ms)
            } else {
                "never (virtual deadline passed)".to_string()
            }
        );
        println!("  join phase  {} ms", report.join_ms);
        println!(
            "  traffic     {} datagrams, {} bytes ({} datagrams while talking, {:.2} per delivery)",
            report.datagrams, report.bytes, report.talk_datagrams, report.datagrams_per_delivery
        );
        println!(
            "  gossip      RMR {:.2}, last delivery hop {:.2}, {} crashes; ring pushes retried {}, shares handed on {}",
            report.rmr,
            report.last_delivery_hop,
            report.crashes,
            report.ring_retries,
            report.ring_handovers
        );
        println!(
            "  clocks      causal metadata per message: mean {:.1} bytes, max {} bytes",
            report.clock_bytes_mean, report.clock_bytes_max
        );
        if report.crashes > 0 {
            println!(
                "  recovery    by push (not repair), among nodes that never crashed: {:.1}% of deliveries before the crashes, {:.1}% while they happen, {:.1}% after; {}",
                report.push_share_before * 100.0,
                report.push_share_during * 100.0,
                report.push_share_after * 100.0,
                match report.recovery_broadcasts {
                    Some(k) => format!(
                        "healed {k} broadcasts after the last crash (the {} from there reached 95% of them by push)",
                        p2pchat_sim::RECOVERY_WINDOW
                    ),
                    None => "never healed (no run of broadcasts reached 95% of them by push)".to_string(),
                }
            );
        }
        println!(
            "  views       {:.1} members on average, largest {} (view_max {}); {} messages waited for their author's record",
            report.view_mean, report.view_largest, report.view_max, report.parked
        );
        if report.offline_private > 0 {
            println!(
                "  offline     {} private messages to users away, senders gone when they returned: {} delivered through mailboxes, {} late",
                report.offline_private,
                report.offline_private as u64 - report.offline_private_late,
                report.offline_private_late
            );
        }
    }
    eprintln!("wall time: {:.2} s", wall.as_secs_f64());
    let clean = report.missing == 0
        && report.refused == 0
        && report.offline_private_late == 0
        && report.duplicates == 0
        && report.causal_violations == 0
        && report.history_mismatches == 0;
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
