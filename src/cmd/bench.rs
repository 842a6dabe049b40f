//! `p2pchat bench`: N real nodes (runtime, codec, UDP on 127.0.0.1) and an auth server in one
//! process, after every node has joined. Two workloads with 100-byte texts:
//! - `latency`: one node sends `--messages` at `--rate`; per message, the time until the last
//!   other node delivered it; then a 5 s drain and the missing count.
//! - `throughput`: every node sends its share as fast as it is accepted; the time until every
//!   node has every message.
//!
//! Wire bytes are read from the loopback interface counters (as the gossipsub anchor does), so
//! they include IP/UDP headers and all protocol traffic in the phase. The JSON also sums the
//! nodes' own counters at the end (`ring_retries`, `ring_handovers`, `duplicates`, `merges`,
//! `shared_merges`), which say where extra datagrams went. Nodes use in-memory
//! stores: this measures the network path; persistence cost is measured separately.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use p2pchat_core::{
    AuthConfig, Command, Event, InsecurePlainCredentials, NodeConfig, NodeParams, PeerStatus, Scope,
};
use p2pchat_runtime::{spawn_auth_server, spawn_node_with_sink, EventSink, NodeControl};
use p2pchat_store::Store;
use serde_json::json;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Which workload.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// One sender at a fixed rate; time until the last node has each message.
    Latency,
    /// Everyone sends as fast as possible; deliveries per second cluster-wide.
    Throughput,
}

/// Arguments of `p2pchat bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 10)]
    pub nodes: usize,
    /// Workload.
    #[arg(long, value_enum, default_value_t = Workload::Latency)]
    pub workload: Workload,
    /// Messages in total (default: 200 for latency, 20000 for throughput).
    #[arg(long)]
    pub messages: Option<usize>,
    /// Send rate of the latency workload, messages per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Give up on the throughput workload after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    pub timeout_s: f64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Where the nodes keep their SQLite files, as real nodes do (default: a fresh temporary
    /// dir on /dev/shm when it exists, else in the system temp dir; removed afterwards).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

const TEXT_BYTES: usize = 100;

/// Tags each event with its node and the time the node task emitted it.
struct Stamp(usize, mpsc::UnboundedSender<(usize, Event, Instant)>);

impl EventSink for Stamp {
    fn emit(&self, e: Event) {
        let _ = self.1.send((self.0, e, Instant::now()));
    }
}

fn text(k: usize) -> String {
    let mut t = format!("bench {k:08} ");
    while t.len() < TEXT_BYTES {
        t.push('x');
    }
    t
}

fn parse_k(text: &str) -> Option<usize> {
    text.strip_prefix("bench ")?.get(..8)?.parse().ok()
}

fn lo_tx_bytes() -> u64 {
    std::fs::read_to_string("/sys/class/net/lo/statistics/tx_bytes")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    // utime + stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 per second).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs the benchmark.
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.nodes < 2 || args.nodes > 200 {
        bail!("--nodes must be between 2 and 200");
    }
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!("--rate must be in (0, 100000]");
    }
    if args.timeout_s.is_nan() || args.timeout_s <= 0.0 {
        bail!("--timeout-s must be positive");
    }
    let messages = args.messages.unwrap_or(match args.workload {
        Workload::Latency => 200,
        Workload::Throughput => 20_000,
    });
    if messages == 0 || messages > 10_000_000 {
        bail!("--messages must be between 1 and 10000000");
    }
    crate::process::init_logging("error");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = rt.block_on(run(&args, messages))?;
    rt.shutdown_timeout(Duration::from_secs(1));
    if args.json {
        println!("{out}");
    } else {
        println!("p2pchat bench: {}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

async fn run(args: &BenchArgs, messages: usize) -> anyhow::Result<serde_json::Value> {
    let n = args.nodes;
    // Real files, as for real nodes: the history lives in each node's store, not in memory.
    // On tmpfs the fsyncs cost nothing; the durable-disk rate is measured apart (PERFORMANCE.md).
    let tmp = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::Builder::new()
                .prefix("p2pchat-bench")
                .tempdir_in(d)?
        }
        None if std::path::Path::new("/dev/shm").is_dir() => tempfile::Builder::new()
            .prefix("p2pchat-bench")
            .tempdir_in("/dev/shm")?,
        None => tempfile::Builder::new().prefix("p2pchat-bench").tempdir()?,
    };
    let auth = spawn_auth_server(
        AuthConfig::default(),
        Box::new(InsecurePlainCredentials),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Store::open(&tmp.path().join("auth-server.db"))?,
    )
    .await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Event, Instant)>();
    let mut controls: Vec<NodeControl> = Vec::new();
    for i in 0..n {
        let params = NodeParams {
            user: format!("b{i}"),
            password: "bench".into(),
            signup: true,
            auth_addr: auth.local_addr,
            auth_fallbacks: Vec::new(),
            auth_key: Some(auth.key),
        };
        // Deliveries are timestamped in the node task as it emits them, as the anchor does
        // in its swarm loop.
        let control = spawn_node_with_sink(
            NodeConfig::default(),
            params,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Store::open(&tmp.path().join(format!("node-b{i}.db")))?,
            Stamp(i, tx.clone()),
        )
        .await?;
        controls.push(control);
    }
    // Wait until every node is ready and sees every other one online.
    let mut online: Vec<HashSet<String>> = vec![HashSet::new(); n];
    let mut ready = vec![false; n];
    // A minute, and a second more per node above 40: in one process on two cores the
    // join of 100 nodes takes longer than a minute.
    let join_s = 60 + n.saturating_sub(40) as u64;
    let deadline = Instant::now() + Duration::from_secs(join_s);
    while !(ready.iter().all(|r| *r) && online.iter().all(|o| o.len() + 1 >= n)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((i, Event::Ready { .. }, _))) => ready[i] = true,
            Ok(Some((i, Event::Peer { info, status, .. }, _))) => {
                if status == PeerStatus::Online {
                    online[i].insert(info.user);
                } else {
                    online[i].remove(&info.user);
                }
            }
            Ok(Some(_)) => {}
            _ => bail!(
                "the cluster did not form within {join_s} s: {} of {n} ready; each sees {} to {} others online",
                ready.iter().filter(|r| **r).count(),
                online.iter().map(HashSet::len).min().unwrap_or(0),
                online.iter().map(HashSet::len).max().unwrap_or(0)
            ),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while rx.try_recv().is_ok() {}

    let bytes0 = lo_tx_bytes();
    let cpu0 = cpu_seconds();
    let expected = messages * (n - 1);
    let mut got = vec![0usize; messages];
    let mut last = vec![None::<Instant>; messages];
    let mut sent_at = vec![None::<Instant>; messages];
    let mut delivered = 0usize;
    let start = Instant::now();
    let record = |i: usize,
                  e: Event,
                  at: Instant,
                  got: &mut Vec<usize>,
                  last: &mut Vec<Option<Instant>>,
                  delivered: &mut usize,
                  senders: &dyn Fn(usize) -> usize| {
        if let Event::Message(m) = e {
            if m.scope != Scope::Group {
                return;
            }
            if let Some(k) = parse_k(&m.text) {
                if k < got.len() && senders(k) != i {
                    got[k] += 1;
                    *delivered += 1;
                    last[k] = Some(at);
                }
            }
        }
    };
    let mut out = json!({"nodes": n, "messages": messages, "text_bytes": TEXT_BYTES});
    match args.workload {
        Workload::Latency => {
            let sender = n / 2;
            let gap = Duration::from_secs_f64(1.0 / args.rate);
            let who = |_k: usize| sender;
            for (k, slot) in sent_at.iter_mut().enumerate() {
                let at = start + gap * k as u32;
                loop {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    if let Ok(Some((i, e, t))) = tokio::time::timeout(left, rx.recv()).await {
                        record(i, e, t, &mut got, &mut last, &mut delivered, &who);
                    }
                }
                *slot = Some(Instant::now());
                controls[sender].command(Command::Say(text(k)));
            }
            let drain_until = Instant::now() + Duration::from_secs(5);
            while delivered < expected {
                let left = drain_until.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, rx.recv()).await {
                    Ok(Some((i, e, t))) => {
                        record(i, e, t, &mut got, &mut last, &mut delivered, &who)
                    }
                    _ => break,
                }
            }
            let mut lat: Vec<f64> = (0..messages)
                .filter(|&k| got[k] == n - 1)
                .filter_map(|k| Some((last[k]? - sent_at[k]?).as_secs_f64() * 1000.0))
                .collect();
            lat.sort_by(|a, b| a.total_cmp(b));
            let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
            let o = out.as_object_mut().context("object")?;
            o.insert("workload".into(), json!("latency"));
            o.insert("rate".into(), json!(args.rate));
            o.insert("p50_ms".into(), json!(r3(percentile(&lat, 0.5))));
            o.insert("p90_ms".into(), json!(r3(percentile(&lat, 0.9))));
            o.insert("p99_ms".into(), json!(r3(percentile(&lat, 0.99))));
            o.insert(
                "max_ms".into(),
                json!(r3(lat.last().copied().unwrap_or(f64::NAN))),
            );
        }
        Workload::Throughput => {
            let who = |k: usize| k % n;
            for k in 0..messages {
                controls[k % n].command(Command::Say(text(k)));
            }
            let until = start + Duration::from_secs_f64(args.timeout_s);
            let mut done_at = None;
            while delivered < expected {
                let left = until.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, rx.recv()).await {
                    Ok(Some((i, e, t))) => {
                        record(i, e, t, &mut got, &mut last, &mut delivered, &who);
                        done_at = Some(t);
                    }
                    _ => break,
                }
            }
            let secs = if delivered >= expected {
                done_at.map_or(args.timeout_s, |t| (t - start).as_secs_f64())
            } else {
                args.timeout_s
            };
            let o = out.as_object_mut().context("object")?;
            o.insert("workload".into(), json!("throughput"));
            o.insert("seconds".into(), json!((secs * 1000.0).round() / 1000.0));
            o.insert(
                "delivered_per_sec".into(),
                json!((delivered as f64 / secs).round()),
            );
        }
    }
    let bytes = lo_tx_bytes().saturating_sub(bytes0);
    let cpu = cpu_seconds() - cpu0;
    let mut datagrams = 0u64;
    for c in &controls {
        c.command(Command::Status);
    }
    let mut statuses = 0;
    // Where the datagrams went, summed over the nodes: ring retries and hand-overs, group
    // payloads received twice, merges written.
    let mut counters = [0u64; 5];
    let until = Instant::now() + Duration::from_secs(5);
    while statuses < n {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((_, Event::Status(s), _))) => {
                datagrams += s.stats.datagrams_out;
                let st = &s.stats;
                let now = [
                    st.ring_retries,
                    st.ring_handovers,
                    st.group_duplicates,
                    st.merges,
                    st.shared_merges,
                ];
                for (c, v) in counters.iter_mut().zip(now) {
                    *c += v;
                }
                statuses += 1;
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let d = delivered.max(1) as f64;
    let o = out.as_object_mut().context("object")?;
    o.insert("expected".into(), json!(expected));
    o.insert("delivered".into(), json!(delivered));
    o.insert("missing".into(), json!(expected - delivered.min(expected)));
    o.insert(
        "bytes_per_delivery".into(),
        json!((bytes as f64 / d).round()),
    );
    o.insert(
        "datagrams_per_delivery_all_phases".into(),
        json!((datagrams as f64 / d * 100.0).round() / 100.0),
    );
    let names = [
        "ring_retries",
        "ring_handovers",
        "duplicates",
        "merges",
        "shared_merges",
    ];
    for (name, v) in names.into_iter().zip(counters) {
        o.insert(name.into(), json!(v));
    }
    o.insert("cpu_s".into(), json!((cpu * 100.0).round() / 100.0));
    o.insert("peak_rss_bytes".into(), json!(peak_rss_bytes()));
    o.insert(
        "peak_rss_per_node_bytes".into(),
        json!(peak_rss_bytes() / n as u64),
    );
    for c in &controls {
        c.command(Command::Quit);
    }
    let _ = auth.stop().await;
    Ok(out)
}
