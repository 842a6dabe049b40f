//! What a simulation is asked to do ([`SimConfig`]) and what it measured ([`Report`]).

use p2pchat_core::NodeConfig;
use serde::Serialize;
use thiserror::Error;

/// What to simulate. Times are virtual milliseconds.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Cluster size.
    pub nodes: usize,
    /// Group messages sent during the talk phase.
    pub messages: usize,
    /// Private messages sent during the talk phase.
    pub private: usize,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub dup: f64,
    /// Smallest one-way latency.
    pub min_latency_ms: u64,
    /// Largest one-way latency (latency is uniform between the two: datagrams reorder).
    pub max_latency_ms: u64,
    /// Split the cluster in two halves for this long, starting as the talk phase starts.
    pub partition_ms: u64,
    /// Nodes crashed a third into the talk phase and restarted later.
    pub crash: usize,
    /// Also crash the auth server during the talk phase, and restart it later.
    pub crash_auth: bool,
    /// Gossip fanout.
    pub fanout: usize,
    /// Plumtree above the flooding threshold (else push gossip with `fanout`).
    pub plumtree: bool,
    /// Ring broadcast while every node knows every other (see `NodeConfig::ring`).
    pub ring: bool,
    /// The seed of everything.
    pub seed: u64,
    /// Only this many nodes (the first ones) send group messages; 0 means everyone.
    pub talkers: usize,
    /// Each node's view size (`NodeConfig::view_max`); 0 picks the default: a real node's
    /// 1,024 up to 1,024 nodes, else 32, so that 10,000 nodes fit one process.
    pub view: usize,
    /// Gap between two consecutive sends in the talk phase.
    pub send_interval_ms: u64,
    /// Gap between two node starts in the join phase, in microseconds; 0 picks 10 ms, or
    /// less in networks above 2,000 nodes so that all start within 20 s.
    pub join_interval_us: u64,
    /// Give up this long after the last send.
    pub settle_deadline_ms: u64,
    /// Pairs (sender, recipient) where the recipient goes away, the sender writes to it and
    /// leaves, and the recipient comes back while the sender is still away: the message must
    /// reach it through mailboxes.
    pub offline_private: usize,
    /// Every node sends at the same virtual instant (the k-th message by node
    /// `k mod nodes + 1`), in waves 0.5 s apart when there are more messages than nodes: a
    /// big group all talking at once.
    pub burst: bool,
    /// Users with a second device: node `nodes + j` is a second device of user `u{j}`
    /// (own keys and node id). Mid-talk every second device goes away; the odd ones come
    /// back from their data dir, the even ones without it (a reinstall: a new device).
    pub devices: usize,
    /// Share of the nodes behind a NAT (see `nat.rs`): the auth server then acts as
    /// rendezvous.
    pub natted: f64,
    /// Share of those NATs that are symmetric (see `nat.rs`): their nodes need relays.
    pub symmetric: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 20,
            messages: 100,
            private: 0,
            loss: 0.0,
            dup: 0.0,
            min_latency_ms: 1,
            max_latency_ms: 20,
            partition_ms: 0,
            devices: 0,
            natted: 0.0,
            symmetric: 0.0,
            crash: 0,
            crash_auth: false,
            fanout: NodeConfig::default().fanout,
            plumtree: NodeConfig::default().plumtree,
            ring: NodeConfig::default().ring,
            seed: 1,
            talkers: 0,
            view: 0,
            send_interval_ms: 10,
            join_interval_us: 0,
            offline_private: 0,
            burst: false,
            settle_deadline_ms: 300_000,
        }
    }
}

/// Invalid simulation parameters.
#[derive(Debug, Error, PartialEq)]
pub enum SimError {
    /// A parameter is out of range; the text says which and why.
    #[error("{0}")]
    Invalid(String),
}

impl SimConfig {
    /// The view size each node gets.
    pub fn view_size(&self) -> usize {
        match self.view {
            0 if self.nodes > NodeConfig::default().view_max => 32,
            0 => NodeConfig::default().view_max,
            v => v,
        }
    }

    /// The gap between two node starts.
    pub fn join_gap_us(&self) -> u64 {
        match self.join_interval_us {
            0 => (20_000_000 / self.nodes.max(1) as u64).clamp(100, 10_000),
            g => g,
        }
    }

    /// Checks every parameter.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: &str| Err(SimError::Invalid(m.to_string()));
        if self.nodes < 2 || self.nodes > 50_000 {
            return bad("--nodes must be between 2 and 50000");
        }
        if !(0.0..0.9).contains(&self.loss) {
            return bad("--loss must be a fraction in [0, 0.9)");
        }
        if !(0.0..=0.9).contains(&self.dup) {
            return bad("--dup must be a fraction in [0, 0.9]");
        }
        if self.min_latency_ms > self.max_latency_ms {
            return bad("--min-latency-ms must not exceed --max-latency-ms");
        }
        if self.max_latency_ms > 10_000 {
            return bad("--max-latency-ms must be at most 10000");
        }
        if self.crash >= self.nodes {
            return bad("--crash must be smaller than --nodes");
        }
        if self.crash + 2 * self.offline_private + 3 > self.nodes {
            return bad(
                "--offline-private needs two nodes a pair besides --crash, and 3 more (mailboxes)",
            );
        }
        if !(0.0..=1.0).contains(&self.natted) {
            return bad("--natted must be a fraction in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.symmetric) {
            return bad("--symmetric must be a fraction in [0, 1]");
        }
        if self.devices > self.nodes {
            return bad("--devices must be at most --nodes");
        }
        if self.fanout == 0 || self.fanout > 64 {
            return bad("--fanout must be between 1 and 64");
        }
        if self.messages > 1_000_000 || self.private > 1_000_000 {
            return bad("--messages and --private must be at most 1000000");
        }
        if self.view != 0 && self.view < 8 {
            return bad("--view must be 0 (automatic) or at least 8");
        }
        if self.send_interval_ms == 0 || self.send_interval_ms > 60_000 {
            return bad("--interval-ms (the send interval) must be between 1 and 60000");
        }
        Ok(())
    }
}

/// What a run measured. Only simulated quantities: the same config gives the same report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    /// Cluster size.
    pub nodes: usize,
    /// Group messages sent.
    pub messages: usize,
    /// Private messages sent.
    pub private: usize,
    /// Node-message pairs that should be delivered (every node x every group message, plus the
    /// recipient of every private message).
    pub expected: u64,
    /// Distinct node-message pairs delivered.
    pub delivered: u64,
    /// `expected - delivered`.
    pub missing: u64,
    /// Deliveries of a pair already delivered.
    pub duplicates: u64,
    /// Deliveries that came before something their author had delivered when writing.
    pub causal_violations: u64,
    /// Nodes whose final group history differs from node 0's (order or content).
    pub history_mismatches: u64,
    /// From the first send to the last delivery (virtual ms); -1 if never converged.
    pub converged_ms: i64,
    /// Virtual time the join phase took.
    pub join_ms: u64,
    /// Datagrams sent (all phases, all endpoints).
    pub datagrams: u64,
    /// Bytes sent (all phases, all endpoints).
    pub bytes: u64,
    /// Datagrams sent during talk and settle.
    pub talk_datagrams: u64,
    /// Bytes sent during talk and settle.
    pub talk_bytes: u64,
    /// Relative message redundancy: group payload copies received per delivery, minus one.
    pub rmr: f64,
    /// Mean over group messages of the largest gossip hop count at which it was delivered.
    pub last_delivery_hop: f64,
    /// Crashes performed (nodes, plus one if the auth server crashed).
    pub crashes: usize,
    /// The view size each node was given (`NodeConfig::view_max`).
    pub view_max: usize,
    /// Mean and largest number of members in a node's view at the end.
    pub view_mean: f64,
    /// Largest view at the end.
    pub view_largest: usize,
    /// Group messages that waited for their author's record (partial views), all nodes.
    pub parked: u64,
    /// Share of deliveries made by push (not repair) among nodes that never crashed, for
    /// messages sent before the first crash (or all messages, without crashes).
    pub push_share_before: f64,
    /// The same for messages sent while the crashes happen (they are spread over 0.5 s).
    pub push_share_during: f64,
    /// The same for messages sent after the last crash.
    pub push_share_after: f64,
    /// Messages sent after the last crash before the tree healed: from the next one on,
    /// [`RECOVERY_WINDOW`] consecutive broadcasts together reached at least 95% of the nodes
    /// that never crashed by push (`None` without crashes, or if it never did).
    pub recovery_broadcasts: Option<usize>,
    /// Ring pushes sent again for want of an acknowledgement, all nodes.
    pub ring_retries: u64,
    /// Ring shares handed on past a member that did not answer twice, all nodes.
    pub ring_handovers: u64,
    /// Mean encoded size of a group message's causal metadata (Lamport time + deps), bytes.
    pub clock_bytes_mean: f64,
    /// Largest encoded size of a group message's causal metadata, bytes.
    pub clock_bytes_max: u64,
    /// Datagrams the nodes could not decode (none expected without an attacker).
    pub malformed: u64,
    /// Datagrams the nodes dropped as unauthenticated (none expected without an attacker).
    pub unauthenticated: u64,
    /// Link datagrams the nodes dropped as already seen (the network's duplicates).
    pub replayed: u64,
    /// Datagrams from senders whose certificate the receiver did not have yet.
    pub unknown_sender: u64,
    /// Group messages dropped because their author was not known yet (repaired later).
    pub unverifiable: u64,
    /// Certificates or group messages whose signature did not verify.
    pub bad_signature: u64,
    /// Messages the nodes refused to send (an `error` answering a send), all nodes.
    pub refused: u64,
    /// Merge messages written to fold frontiers too large for one message (not counted in
    /// `messages`, `expected` or `delivered`).
    pub merges: u64,
    /// Of those, shared merges (one member's bucket of a large frontier, folded for everyone
    /// to reference), summed over the nodes running at the end.
    #[serde(skip_serializing_if = "is_zero")]
    pub shared_merges: u64,
    /// Datagrams sent while talking, per delivery.
    pub datagrams_per_delivery: f64,
    /// Private messages written to a user who was away by a sender who then left.
    pub offline_private: usize,
    /// Of those, delivered only once their sender was back, or never (mailboxes failed).
    pub offline_private_late: u64,
    /// The seed.
    pub seed: u64,
    /// Second devices (`--devices`).
    #[serde(skip_serializing_if = "is_zero")]
    pub devices: usize,
    /// Group messages whose dot (author, seq) was written twice: must be 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub reused_dots: u64,
    /// Nodes behind a NAT (`--natted`).
    #[serde(skip_serializing_if = "is_zero")]
    pub natted: usize,
    /// Nodes behind a symmetric NAT (`--symmetric`).
    #[serde(skip_serializing_if = "is_zero")]
    pub symmetric: usize,
    /// Datagrams a NAT dropped (unasked).
    #[serde(skip_serializing_if = "is_zero")]
    pub nat_dropped: u64,
    /// Datagrams passed on by relays (nodes up at the end).
    #[serde(skip_serializing_if = "is_zero")]
    pub relayed: u64,
    /// Datagrams the auth server passed on (the relay of last resort; since its last start).
    #[serde(skip_serializing_if = "is_zero")]
    pub server_relayed: u64,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
