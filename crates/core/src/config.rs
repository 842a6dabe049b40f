//! Tunables, each with its unit, default and tuning advice. Validated once by `validate`.

use std::time::Duration;

/// Tunables of a chat [`crate::Node`].
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Peers each node pushes a new group message to. Higher: faster and more robust spread,
    /// more redundant traffic (about `fanout` copies per node). 3-6 suits 10-10,000 nodes.
    pub fanout: usize,
    /// With at most this many members online, an author sends a new group message straight to
    /// all of them and nobody forwards it (one hop, one copy each; anti-entropy repairs any
    /// loss). Above it, push gossip with `fanout`. 0 disables. 64: measured faster and
    /// cheaper than the ring up to there (`docs/PERFORMANCE.md`), and an author's copies of a
    /// chat message (63 of about 250 bytes) are little for any uplink.
    pub flood_below: usize,
    /// Above `flood_below`: push along a Plumtree-style eager tree (links that deliver a
    /// duplicate are pruned, links that deliver only through repair are grafted) instead of
    /// to `fanout` random members per hop.
    pub plumtree: bool,
    /// Above `flood_below`, while every member knows every other (no partial views): ring
    /// broadcast, a per-author tree over the ring of member ids with acknowledged pushes (see
    /// `docs/PROTOCOL.md`, Ring broadcast). Takes precedence over `plumtree` there.
    pub ring: bool,
    /// A ring push not acknowledged in time is sent again; after a second silence the member
    /// is skipped and its share of the ring goes to the next member. "In time" follows the
    /// measured round trip (as TCP's retransmission timeout, 20 ms to 2 s); this is the wait
    /// before any round trip was measured. A member heard from since the first push is only
    /// slow: it gets a third try instead, and its part is not handed on.
    pub ring_ack_timeout: Duration,
    /// First retry delay for signup/signin; doubles per attempt up to `auth_retry_max`.
    pub auth_retry_initial: Duration,
    /// Largest delay between signup/signin retries.
    pub auth_retry_max: Duration,
    /// Attempts before a node that has never joined gives up on an unreachable auth server.
    pub auth_attempts: u32,
    /// After admission, how long to wait for a bootstrap (`Connect`) before signing in again.
    pub bootstrap_timeout: Duration,
    /// How often a member polls the auth server for newcomers (and renews its liveness lease).
    pub fetch_interval: Duration,
    /// Without any server reply for this long, the server is reported unreachable.
    pub auth_unreachable_after: Duration,
    /// How often a node starts an anti-entropy exchange with a random peer. Lower: faster
    /// repair under loss and after partitions; more digest traffic (O(authors) bytes per round).
    pub anti_entropy_interval: Duration,
    /// Most repair datagrams sent in answer to one digest (the rest follow on request).
    pub repair_max_datagrams: usize,
    /// Failure detector period: one peer is probed per period.
    pub probe_interval: Duration,
    /// Offline members are not probed in the failure detector's round (so the time to notice
    /// a crash does not grow with them); one of them, in turn, is pinged this often instead,
    /// and an answer shows it online again (a healed partition, a missed Hello).
    pub offline_probe_interval: Duration,
    /// Wait for a direct Ack before asking others to probe indirectly (< `probe_interval`).
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly when a direct probe goes unanswered.
    pub indirect_probes: usize,
    /// A suspect peer not heard from for this long is declared offline.
    pub suspect_timeout: Duration,
    /// Delay between Hello retransmissions to peers that have not answered.
    pub hello_retry: Duration,
    /// Hello attempts per peer (membership gossip covers the rest).
    pub hello_attempts: u32,
    /// First retransmission timeout of a private message; doubles up to `private_rto_max`.
    pub private_rto_initial: Duration,
    /// Largest private retransmission interval (also the retry pace while a peer is offline).
    pub private_rto_max: Duration,
    /// Most group messages held back waiting for their causal dependencies.
    pub holdback_limit: usize,
    /// With an archive (the node's store), only the newest this many delivered group messages
    /// keep their bodies in memory; older ones are read back when a peer or `/history` needs
    /// them.
    pub history_in_memory: usize,
    /// Most out-of-order private messages buffered per conversation.
    pub private_buffer_limit: usize,
    /// Mailboxes a private message is handed to when its recipient does not answer (the
    /// members that are up with the highest rendezvous scores for the recipient). 0: none,
    /// messages wait in the sender's outbox only.
    pub mailboxes: usize,
    /// How long a mailbox keeps a message its recipient has not come back for.
    pub mailbox_ttl: Duration,
    /// Messages a mailbox keeps from one sender (so one member cannot fill it).
    pub mailbox_per_sender: usize,
    /// Messages a mailbox keeps for one recipient.
    pub mailbox_per_recipient: usize,
    /// Member records piggybacked on each Ping/Ack (membership gossip).
    pub gossip_members: usize,
    /// Most members a node keeps in its view. Up to this size every node knows every member
    /// (full presence); in a larger network each keeps a random partial view of this size,
    /// kept symmetric by `Forget`, and gossip, anti-entropy and probing run over the views.
    /// Memory and join traffic per node grow with this, not with the network.
    pub view_max: usize,
    /// Keep the full vector clock of every delivered group message (for display). Costs
    /// O(authors) memory per message: the simulator turns it off for large clusters.
    pub full_clocks: bool,
    /// Remember the gossip hop count of every delivered message (a simulator metric; costs a
    /// map entry per message).
    pub record_hops: bool,
    /// NAT traversal: a member that cannot reach another (its Hellos go unanswered) asks the
    /// auth server to have both send to each other at once (`PunchAsk`, `Punch`). The
    /// simulator models no NAT and turns it off. With it, Hellos that stay unanswered and
    /// probes answered only by a helper also try a relay (see `relay`).
    pub rendezvous: bool,
    /// Pass datagrams on for members that cannot reach each other directly (a relay, within
    /// a budget per sender; it sees only ciphertext).
    pub relay: bool,
    /// Behind a NAT: how often to ping the members we talk with that were silent, to keep
    /// the NAT's bindings open (≤ 25 s: many home routers drop an idle UDP binding at 30 s).
    pub keepalive_interval: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            fanout: 4,
            flood_below: 64,
            plumtree: true,
            ring: true,
            ring_ack_timeout: Duration::from_millis(100),
            auth_retry_initial: Duration::from_millis(300),
            auth_retry_max: Duration::from_secs(2),
            auth_attempts: 12,
            bootstrap_timeout: Duration::from_secs(3),
            fetch_interval: Duration::from_millis(500),
            auth_unreachable_after: Duration::from_secs(3),
            anti_entropy_interval: Duration::from_millis(500),
            repair_max_datagrams: 8,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(300),
            offline_probe_interval: Duration::from_secs(1),
            indirect_probes: 2,
            suspect_timeout: Duration::from_secs(4),
            hello_retry: Duration::from_millis(500),
            hello_attempts: 6,
            private_rto_initial: Duration::from_millis(300),
            private_rto_max: Duration::from_secs(4),
            holdback_limit: 20_000,
            history_in_memory: 1024,
            private_buffer_limit: 1024,
            mailboxes: 3,
            mailbox_ttl: Duration::from_secs(14 * 24 * 3600),
            mailbox_per_sender: 256,
            mailbox_per_recipient: 1024,
            gossip_members: 2,
            view_max: 1024,
            full_clocks: true,
            record_hops: false,
            rendezvous: true,
            relay: true,
            keepalive_interval: Duration::from_secs(20),
        }
    }
}

impl NodeConfig {
    /// Checks the relations between fields; returns a description of the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.fanout == 0 {
            return Err("fanout must be at least 1".into());
        }
        if self.probe_timeout >= self.probe_interval {
            return Err("probe_timeout must be shorter than probe_interval".into());
        }
        if self.view_max < 8 {
            return Err("view_max must be at least 8".into());
        }
        if self.auth_attempts == 0 || self.hello_attempts == 0 {
            return Err("attempt counts must be at least 1".into());
        }
        for (name, d) in [
            ("fetch_interval", self.fetch_interval),
            ("anti_entropy_interval", self.anti_entropy_interval),
            ("probe_interval", self.probe_interval),
            ("offline_probe_interval", self.offline_probe_interval),
            ("mailbox_ttl", self.mailbox_ttl),
            ("private_rto_initial", self.private_rto_initial),
            ("auth_retry_initial", self.auth_retry_initial),
            ("hello_retry", self.hello_retry),
            ("keepalive_interval", self.keepalive_interval),
            ("ring_ack_timeout", self.ring_ack_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        Ok(())
    }
}

/// Tunables of the [`crate::AuthServer`].
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Cap on live nodes (members holding a lease plus newcomers waiting in the queue).
    pub max_nodes: usize,
    /// A member is live while its last Fetch is younger than this (several fetch intervals).
    pub lease: Duration,
    /// Most newcomers waiting to be bootstrapped.
    pub queue_limit: usize,
    /// A newcomer handed to a member but still waiting after this long is offered again.
    pub reoffer_after: Duration,
    /// A newcomer waiting longer than this without signing in again is dropped.
    pub pending_ttl: Duration,
    /// Most newcomers handed out per Fetch.
    pub fetch_batch: usize,
    /// How long answers are cached so that a retried request gets the same answer.
    pub reply_cache_ttl: Duration,
    /// How long a membership certificate is valid. Members renew at half-life while the
    /// server is up; while it is down, peers keep accepting certificates until they expire.
    pub cert_lifetime: Duration,
    /// Failed signins an account may have before each further one locks it.
    pub free_failures: u32,
    /// First lock after `free_failures`; it doubles with every further failure.
    pub lock_base: Duration,
    /// Longest account lock.
    pub lock_max: Duration,
    /// Failures from one IP address within `source_window` before that address is locked
    /// for `source_window`.
    pub source_failures: u32,
    /// Window and lock time of the per-address limit.
    pub source_window: Duration,
    /// Signups one IP address may make per `source_window` (0: unlimited).
    pub source_signups: u32,
    /// Most devices (data dirs with their own keys) per account, revoked ones not counted.
    pub max_devices: usize,
    /// NAT traversal: a newcomer handed to a member is told to send to it (so a NAT in front
    /// of the newcomer lets the member's answer in), and `PunchAsk`s are answered. The
    /// simulator models no NAT and turns it off.
    pub rendezvous: bool,
    /// The server relays for two nodes no member relays for (every member behind a NAT):
    /// at most this many datagrams a second per node, twice that in a burst (0: never).
    pub relay_rate: u32,
    /// Datagrams a second the server relays for everyone together (twice that in a burst):
    /// what bounds the bandwidth it lends.
    pub relay_total: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            max_nodes: 10_000,
            lease: Duration::from_secs(3),
            queue_limit: 1024,
            reoffer_after: Duration::from_secs(2),
            pending_ttl: Duration::from_secs(30),
            fetch_batch: 4,
            reply_cache_ttl: Duration::from_secs(60),
            cert_lifetime: Duration::from_secs(24 * 3600),
            free_failures: 5,
            lock_base: Duration::from_secs(5),
            lock_max: Duration::from_secs(300),
            source_failures: 30,
            source_window: Duration::from_secs(60),
            source_signups: 100,
            max_devices: 8,
            rendezvous: true,
            relay_rate: 100,
            relay_total: 20_000,
        }
    }
}
