//! `p2pchat sim`: a whole cluster in virtual time.

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct SimArgs {
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
    /// Users with a second device (its own keys and node id). Mid-talk each goes away; half
    /// come back from their data dir, half without it (a reinstall: a new device).
    #[arg(long, default_value_t = 0)]
    devices: usize,
    /// Share of the nodes behind a NAT that lets in only whom they sent to in the last 30 s
    /// (the auth server acts as rendezvous).
    #[arg(long, default_value_t = 0.0)]
    natted: f64,
    /// Share of those NATs that give each destination its own port (symmetric): a node
    /// behind one reaches other nodes behind NATs only through a relay (a member that
    /// reaches both, else the auth server).
    #[arg(long, default_value_t = 0.0)]
    symmetric: f64,
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
pub fn sim(mut a: SimArgs) -> ExitCode {
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
        devices: a.devices,
        natted: a.natted,
        symmetric: a.symmetric,
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
        if report.natted > 0 {
            println!(
                "  NATs        {} nodes behind a NAT ({} symmetric); {} datagrams dropped by them; {} passed on by member relays, {} by the auth server",
                report.natted, report.symmetric, report.nat_dropped, report.relayed, report.server_relayed
            );
        }
        if report.devices > 0 {
            println!(
                "  devices     {} users with a second device (half come back without their data dir); {} dots written twice",
                report.devices, report.reused_dots
            );
        }
        println!(
            "  sent        {} group + {} private messages ({} refused; {} merges folded large frontiers, {} of them shared)",
            report.messages, report.private, report.refused, report.merges, report.shared_merges
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
        && report.reused_dots == 0
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
