//! # p2pchat-sim
//!
//! A deterministic, virtual-time network for whole p2pchat clusters. One seed drives
//! everything: the network's loss, duplication and latency (hence reordering), every node's RNG,
//! who talks when, and which nodes crash. Every datagram goes through the real codec, because
//! the nodes only ever see bytes.
//!
//! A run has three phases:
//! 1. **join**: the auth server starts, then the nodes one by one, each signing up and being
//!    bootstrapped through the pending queue exactly as in the seed design;
//! 2. **talk**: group messages from random senders and private messages between random pairs,
//!    during which the cluster may be partitioned in two halves, some nodes may crash (and
//!    restart later from the records they persisted), and the auth server may crash;
//! 3. **settle**: until every node has every group message and every recipient every private
//!    message, or a virtual deadline passes.
//!
//! Layout: `config` (what to run, what it measured), `queue` (events in virtual time),
//! `checkers` (what every delivery is checked against), `endpoints` (who each endpoint is,
//! and second devices of users that come and go, some without their data dir); the driver
//! is here.
//!
//! Checkers: completeness (`missing`), exactly-once (`duplicates`), causal order
//! (`causal_violations`: a delivery before something its author had delivered), identical
//! histories (`history_mismatches`). Metrics: datagrams, bytes, relative message redundancy,
//! last delivery hop, convergence time.

#![forbid(unsafe_code)]

use foldhash::HashSetExt;
use p2pchat_core::{
    AuthConfig, AuthServer, Command, Event, InsecurePlainCredentials, Node, NodeConfig, Output,
    Record,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Maps with a fixed hasher: the report is the same, byte for byte, in every run of a seed.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
type HashSet<T> = std::collections::HashSet<T, foldhash::fast::FixedState>;
use std::net::SocketAddr;
use std::time::Duration;

mod checkers;
mod config;
mod endpoints;
mod nat;
mod queue;
mod report;

use checkers::{At, Checker};
pub use config::{Report, SimConfig, SimError};
use queue::{Ev, EventQueue};

/// Broadcasts over which the push share is taken to decide that the tree has healed.
pub const RECOVERY_WINDOW: usize = 10;

/// A group message's send time, and among nodes that never crash: deliveries, and those by push.
type TreeStat = (u64, u32, u32);

const AUTH: usize = 0;
/// Unix time (ms) at simulated time zero: certificates expire in wall-clock time.
const WALL_MS: u64 = 1_700_000_000_000;

struct Endpoint {
    node: Option<Node>,
    records: Vec<Record>,
    wake_at: Option<u64>,
    started: bool,
    checked: bool,
    fatal: Option<String>,
}

struct Sim {
    cfg: SimConfig,
    rng: ChaCha8Rng,
    now: u64,
    queue: EventQueue,
    auth: Option<AuthServer>,
    auth_records: Vec<Record>,
    auth_wake: Option<u64>,
    eps: Vec<Endpoint>,
    /// Completeness, exactly-once, causal order, and the tree statistics.
    checker: Checker,
    port_base: u16,
    /// Pure crypto results shared by all simulated nodes (see `CryptoMemo`).
    memo: std::sync::Arc<p2pchat_core::secure::CryptoMemo>,
    node_cfg: NodeConfig,
    partition_until: u64,
    partitioned: bool,
    persist: bool,
    talk_started: Option<u64>,
    sends_left: usize,
    privates_left: usize,
    datagrams: u64,
    bytes: u64,
    talk_mark: (u64, u64),
    /// Nodes chosen to crash, and when the first crash happens.
    crash_set: HashSet<usize>,
    first_crash: Option<u64>,
    /// When the last of those crashes happens.
    last_crash: Option<u64>,
    /// Counters of crashed node incarnations (a restart starts from zero): group payloads
    /// received, ring retries, ring handovers.
    carried: [u64; 3],
    /// Per group message: when it was sent, and among nodes that never crash, how many
    /// delivered it and how many of those got it by push (the tree) rather than repair.
    crashes: usize,
    clock_bytes: Vec<u64>,
    /// Offline scenario: the node whose private message is being written now, the messages
    /// written that way (by (author, seq), with their author's index), and how many of them
    /// arrived while their author was still away.
    offline_sending: Option<usize>,
    /// The node whose group message is being written now.
    saying: Option<usize>,
    done: bool,
    /// Endpoints: the nodes, then the second devices.
    total: usize,
    /// Endpoints per username.
    endpoints_of: HashMap<String, u64>,
    /// NATs in front of some endpoints (`--natted`).
    nats: nat::Nats,
}

fn addr_of(port_base: u16, idx: usize) -> SocketAddr {
    // Virtual addresses: nothing is ever sent to them.
    SocketAddr::from(([127, 0, 0, 1], port_base.wrapping_add(idx as u16)))
}

/// Runs one simulation.
pub fn run(cfg: &SimConfig) -> Result<Report, SimError> {
    cfg.validate()?;
    let mut sim = Sim::new(cfg.clone());
    sim.run();
    Ok(sim.report())
}

impl Sim {
    fn new(cfg: SimConfig) -> Self {
        let node_cfg = NodeConfig {
            fanout: cfg.fanout,
            plumtree: cfg.plumtree,
            ring: cfg.ring,
            full_clocks: cfg.nodes <= 100,
            view_max: cfg.view_size(),
            record_hops: true,
            // Simulated users are patient: a lossy network must not make them give up.
            auth_attempts: 100,
            // Only with NATs (`PunchAsk` would only add traffic).
            rendezvous: cfg.natted > 0.0,
            ..NodeConfig::default()
        };
        let check_every = (cfg.nodes / 100).max(1);
        let total = cfg.nodes + cfg.devices;
        let nats = nat::Nats::new(total, cfg.natted, cfg.symmetric, cfg.seed);
        let endpoints_of = (1..=cfg.nodes)
            .map(|i| (format!("u{i}"), 1 + u64::from(i <= cfg.devices)))
            .collect();
        let eps = (0..=total)
            .map(|i| Endpoint {
                node: None,
                records: Vec::new(),
                wake_at: None,
                started: false,
                checked: i > 0 && (i - 1) % check_every == 0,
                fatal: None,
            })
            .collect();
        Sim {
            checker: Checker::new(total + 1),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            persist: cfg.crash > 0 || cfg.offline_private > 0 || cfg.devices > 0,
            sends_left: cfg.messages,
            privates_left: cfg.private,
            node_cfg,
            cfg,
            now: 0,
            queue: EventQueue::default(),
            auth: None,
            auth_records: Vec::new(),
            auth_wake: None,
            eps,
            port_base: 10_000,
            memo: Default::default(),
            partition_until: 0,
            partitioned: false,
            talk_started: None,
            datagrams: 0,
            bytes: 0,
            talk_mark: (0, 0),
            crash_set: HashSet::new(),
            first_crash: None,
            last_crash: None,
            carried: [0; 3],
            crashes: 0,
            clock_bytes: Vec::new(),
            offline_sending: None,
            saying: None,
            done: false,
            endpoints_of,
            nats,
            total,
        }
    }

    fn at(&mut self, at: u64, ev: Ev) {
        self.queue.at(at, ev);
    }

    fn dur(t: u64) -> Duration {
        Duration::from_micros(t)
    }

    fn ms(ms: u64) -> u64 {
        ms * 1000
    }

    fn run(&mut self) {
        self.auth = Some(AuthServer::new(
            self.auth_cfg(),
            Box::new(InsecurePlainCredentials),
            &[],
            self.crypto_seed(0),
            WALL_MS,
        ));
        self.drain_auth();
        for i in 1..=self.cfg.nodes {
            let t = self.cfg.join_gap_us() * (i as u64 - 1);
            self.at(t, Ev::Start(i));
        }
        self.schedule_devices();
        self.at(Self::ms(100), Ev::Check);
        while let Some((at, ev)) = self.queue.pop() {
            self.now = at;
            self.step(ev);
            if self.done {
                break;
            }
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, from, bytes } => {
                let src = from.port().wrapping_sub(self.port_base) as usize;
                if !self.nats.admits(src, to, self.now) {
                    return;
                }
                if to == AUTH {
                    if let Some(a) = self.auth.as_mut() {
                        a.handle_datagram(Self::dur(self.now), from, &bytes);
                        self.drain_auth();
                    }
                } else if let Some(n) = self.eps[to].node.as_mut() {
                    n.handle_datagram(Self::dur(self.now), from, &bytes);
                    self.drain(to);
                }
            }
            Ev::Wake(i) => {
                if self.eps[i].wake_at != Some(self.now) {
                    return;
                }
                self.eps[i].wake_at = None;
                if let Some(n) = self.eps[i].node.as_mut() {
                    n.handle_timeout(Self::dur(self.now));
                    self.drain(i);
                }
            }
            Ev::Start(i) => {
                let params = self.params(i, true);
                let mut node = Node::new(
                    self.node_cfg.clone(),
                    params,
                    self.host(i, 0),
                    Self::dur(self.now),
                );
                node.set_crypto_memo(self.memo.clone());
                self.eps[i].node = Some(node);
                self.eps[i].started = true;
                self.drain(i);
            }
            Ev::Say => self.say(),
            Ev::SayFrom(i) => {
                self.sends_left = self.sends_left.saturating_sub(1);
                let text = format!("all at once, from u{i}");
                self.say_as(i, text);
            }
            Ev::Private => self.private(),
            Ev::PrivateTo(a, b) => {
                let to = format!("u{b}");
                if let Some(n) = self.eps[a].node.as_mut() {
                    let text = format!("while you were away, u{b}: from u{a}");
                    n.handle_command(Self::dur(self.now), Command::Msg { to, text });
                }
                self.offline_sending = Some(a);
                self.drain(a);
                self.offline_sending = None;
            }
            Ev::Crash(i) => {
                if let Some(n) = &self.eps[i].node {
                    let st = n.stats();
                    for (c, v) in self.carried.iter_mut().zip([
                        st.group_payloads,
                        st.ring_retries,
                        st.ring_handovers,
                    ]) {
                        *c += v;
                    }
                }
                self.eps[i].node = None;
                self.eps[i].wake_at = None;
                self.crashes += 1;
            }
            Ev::Restart(i) => {
                let params = self.params(i, false);
                let host = self.host(i, self.crashes as u64);
                let mut node = Node::restore(
                    self.node_cfg.clone(),
                    params,
                    host,
                    &self.eps[i].records,
                    Self::dur(self.now),
                );
                node.set_crypto_memo(self.memo.clone());
                self.eps[i].node = Some(node);
                self.drain(i);
            }
            Ev::StartDevice(i) => self.start_device(i),
            Ev::Reinstall(i) => self.reinstall(i),
            Ev::CrashAuth => {
                self.auth = None;
                self.auth_wake = None;
                self.crashes += 1;
            }
            Ev::RestartAuth => {
                self.auth = Some(AuthServer::new(
                    self.auth_cfg(),
                    Box::new(InsecurePlainCredentials),
                    &self.auth_records,
                    self.crypto_seed(u64::MAX - self.crashes as u64),
                    WALL_MS,
                ));
                self.drain_auth();
            }
            Ev::Check => self.check(),
        }
    }

    /// The server's config: every simulated node signs up from one address, so the
    /// per-address signup limit is off.
    fn auth_cfg(&self) -> AuthConfig {
        AuthConfig {
            source_signups: 0,
            rendezvous: self.cfg.natted > 0.0,
            ..AuthConfig::default()
        }
    }

    fn check(&mut self) {
        match self.talk_started {
            None => {
                // Everyone knows everyone, or (partial views) has at least half a view.
                let want = (self.total - 1).min(self.cfg.view_size() / 2);
                let all_in = self.eps[1..].iter().all(|e| {
                    e.node
                        .as_ref()
                        .is_some_and(|n| n.is_member() && n.member_count() >= want)
                });
                let join_deadline =
                    self.cfg.join_gap_us() * self.cfg.nodes as u64 + Self::ms(120_000);
                if all_in || self.now > join_deadline {
                    self.start_talk();
                }
            }
            Some(_) => {
                let all_up = self.eps[1..].iter().all(|e| e.node.is_some()) && self.auth.is_some();
                // (A message may still wait in its author's node for shared merges.)
                let waiting = self.eps[1..]
                    .iter()
                    .any(|e| e.node.as_ref().is_some_and(|n| n.commands_waiting() > 0));
                let finished_sending =
                    self.sends_left == 0 && self.privates_left == 0 && all_up && !waiting;
                if finished_sending && self.checker.delivered >= self.checker.expected {
                    self.done = true;
                    return;
                }
                if finished_sending
                    && self.now > self.last_send_time() + Self::ms(self.cfg.settle_deadline_ms)
                {
                    self.done = true;
                    return;
                }
            }
        }
        self.at(self.now + Self::ms(100), Ev::Check);
    }

    fn last_send_time(&self) -> u64 {
        let start = self.talk_started.unwrap_or(0);
        start + self.talk_window()
    }

    fn talk_window(&self) -> u64 {
        let sends = self.cfg.messages.max(self.cfg.private) as u64;
        Self::ms(self.cfg.send_interval_ms) * sends
    }

    fn start_talk(&mut self) {
        let t0 = self.now;
        self.talk_started = Some(t0);
        self.talk_mark = (self.datagrams, self.bytes);
        let gap = Self::ms(self.cfg.send_interval_ms);
        for k in 0..self.cfg.messages {
            if self.cfg.burst {
                // Waves: everyone at once, then everyone again once the first wave is in
                // (so each message of the next wave follows the whole previous wave).
                let wave = (k / self.cfg.nodes) as u64;
                self.at(
                    t0 + 1 + wave * Self::ms(500),
                    Ev::SayFrom(k % self.cfg.nodes + 1),
                );
            } else {
                self.at(t0 + gap * k as u64 + 1, Ev::Say);
            }
        }
        for k in 0..self.cfg.private {
            self.at(t0 + gap * k as u64 + gap / 2 + 1, Ev::Private);
        }
        let window = self.talk_window();
        if self.cfg.partition_ms > 0 {
            self.partitioned = true;
            self.partition_until = t0 + Self::ms(self.cfg.partition_ms);
        }
        if self.cfg.crash > 0 {
            let crash_at = t0 + window / 3;
            let down_for = (window / 3).max(Self::ms(3_000));
            let mut ids: Vec<usize> = (1..=self.cfg.nodes).collect();
            for i in (1..ids.len()).rev() {
                let j = self.rng.random_range(0..=i);
                ids.swap(i, j);
            }
            self.first_crash = Some(crash_at);
            for &i in ids.iter().take(self.cfg.crash) {
                self.crash_set.insert(i);
                let jitter = self.rng.random_range(0..Self::ms(500));
                self.at(crash_at + jitter, Ev::Crash(i));
                self.last_crash = self.last_crash.max(Some(crash_at + jitter));
                self.at(crash_at + jitter + down_for, Ev::Restart(i));
            }
        }
        if self.cfg.offline_private > 0 {
            // (Drawn after the crash set: runs without this option keep their numbers.)
            let mut ids: Vec<usize> = (1..=self.cfg.nodes)
                .filter(|i| !self.crash_set.contains(i))
                .collect();
            for i in (1..ids.len()).rev() {
                let j = self.rng.random_range(0..=i);
                ids.swap(i, j);
            }
            let s = Self::ms(1_000);
            for (k, pair) in ids.chunks(2).take(self.cfg.offline_private).enumerate() {
                let (a, b) = (pair[0], pair[1]);
                let t = t0 + Self::ms(50) * k as u64;
                self.at(t, Ev::Crash(b));
                self.at(t + 2 * s, Ev::PrivateTo(a, b));
                self.at(t + 8 * s, Ev::Crash(a));
                self.at(t + 14 * s, Ev::Restart(b));
                self.at(t + 40 * s, Ev::Restart(a));
            }
        }
        self.devices_come_and_go(t0, window);
        if self.cfg.crash_auth {
            self.at(t0 + window / 4, Ev::CrashAuth);
            self.at(
                t0 + window / 4 + (window / 2).max(Self::ms(3_000)),
                Ev::RestartAuth,
            );
        }
    }

    fn live_members(&self) -> Vec<usize> {
        (1..=self.total)
            .filter(|&i| self.eps[i].node.as_ref().is_some_and(|n| n.is_member()))
            .collect()
    }

    fn say(&mut self) {
        self.sends_left = self.sends_left.saturating_sub(1);
        let mut live = self.live_members();
        if self.cfg.talkers > 0 {
            let talkers: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| i <= self.cfg.talkers)
                .collect();
            if !talkers.is_empty() {
                live = talkers;
            }
        }
        if live.is_empty() {
            return;
        }
        let i = live[self.rng.random_range(0..live.len())];
        let text = format!("hello from u{i} #{}", self.cfg.messages - self.sends_left);
        self.say_as(i, text);
    }

    fn say_as(&mut self, i: usize, text: String) {
        if let Some(n) = self.eps[i].node.as_mut() {
            n.handle_command(Self::dur(self.now), Command::Say(text));
        }
        self.saying = Some(i);
        self.drain(i);
        self.saying = None;
    }

    fn private(&mut self) {
        self.privates_left = self.privates_left.saturating_sub(1);
        let live = self.live_members();
        if live.len() < 2 {
            return;
        }
        let a = live[self.rng.random_range(0..live.len())];
        let mut b = a;
        while b == a {
            b = 1 + self.rng.random_range(0..self.cfg.nodes);
        }
        let text = format!("psst u{b}, from u{a}");
        if let Some(n) = self.eps[a].node.as_mut() {
            n.handle_command(
                Self::dur(self.now),
                Command::Msg {
                    to: format!("u{b}"),
                    text,
                },
            );
        }
        self.drain(a);
    }

    fn drain_auth(&mut self) {
        let mut outs = Vec::new();
        if let Some(a) = self.auth.as_mut() {
            while let Some(o) = a.poll_output() {
                outs.push(o);
            }
        }
        for o in outs {
            match o {
                Output::Send { to, bytes } => self.transmit(AUTH, to, bytes),
                Output::Persist(r) => self.auth_records.push(r),
                Output::Event(_) => {}
            }
        }
    }

    fn drain(&mut self, i: usize) {
        let mut outs = Vec::new();
        let mut deadline = None;
        if let Some(n) = self.eps[i].node.as_mut() {
            while let Some(o) = n.poll_output() {
                outs.push(o);
            }
            deadline = n.poll_timeout();
        }
        for o in outs {
            match o {
                Output::Send { to, bytes } => self.transmit(i, to, bytes),
                Output::Persist(r) => {
                    if let Record::Group(m) = &r {
                        let me = self.eps[i].node.as_ref().and_then(|n| n.node_id());
                        if me == Some(m.author) {
                            let len = p2pchat_proto::wire::encoded_len(&(m.lamport, &m.deps));
                            self.clock_bytes.push(len as u64);
                        }
                    }
                    if self.persist {
                        self.eps[i].records.push(r);
                    }
                }
                Output::Event(e) => self.observe(i, e),
            }
        }
        if let Some(d) = deadline {
            // Rounded up: a deadline between two microseconds must not wake the node early
            // (it would do nothing and ask for the same wake-up again, forever).
            let t = (d.as_nanos().div_ceil(1000) as u64).max(self.now);
            let ep = &mut self.eps[i];
            if ep.wake_at.is_none_or(|w| t < w || w < self.now) {
                ep.wake_at = Some(t);
                self.at(t, Ev::Wake(i));
            }
        }
    }

    fn side(&self, idx: usize) -> Option<bool> {
        (idx != AUTH).then_some(idx * 2 <= self.cfg.nodes)
    }

    fn transmit(&mut self, from: usize, to: SocketAddr, bytes: Vec<u8>) {
        self.datagrams += 1;
        self.bytes += bytes.len() as u64;
        let port = to.port().wrapping_sub(self.port_base) as usize;
        if port > self.total {
            return;
        }
        self.nats.sent(from, port, self.now);
        if self.partitioned && self.now >= self.partition_until {
            self.partitioned = false;
        }
        if self.partitioned {
            if let (Some(a), Some(b)) = (self.side(from), self.side(port)) {
                if a != b {
                    return;
                }
            }
        }
        if self.rng.random_bool(self.cfg.loss) {
            return;
        }
        let copies = if self.cfg.dup > 0.0 && self.rng.random_bool(self.cfg.dup) {
            2
        } else {
            1
        };
        let src = addr_of(self.port_base, from);
        let mut bytes = Some(bytes);
        for copy in 0..copies {
            let lat = self.rng.random_range(
                Self::ms(self.cfg.min_latency_ms)..=Self::ms(self.cfg.max_latency_ms),
            );
            let payload = if copy + 1 == copies {
                bytes.take().unwrap_or_default()
            } else {
                bytes.clone().unwrap_or_default()
            };
            self.at(
                self.now + lat,
                Ev::Deliver {
                    to: port,
                    from: src,
                    bytes: payload,
                },
            );
        }
    }

    fn observe(&mut self, i: usize, e: Event) {
        let ep = &self.eps[i];
        let at = At {
            now: self.now,
            nodes: self.total as u64,
            node: ep.node.as_ref(),
            checked: ep.checked,
            crashes: self.crash_set.contains(&i),
            saying: self.saying == Some(i),
            offline_sending: self.offline_sending == Some(i),
            endpoints_of: &self.endpoints_of,
        };
        let eps = &self.eps;
        let down = |author: usize| eps[author].node.is_none();
        if let Some(fatal) = self.checker.observe(&at, i, e, down) {
            self.eps[i].fatal = Some(fatal);
        }
    }
}

#[cfg(test)]
mod tests;
