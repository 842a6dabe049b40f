//! The chat node state machine.
//!
//! Subsystems, each a section of this file:
//! - **join**: signup/signin with retries, waiting for a bootstrap, Hello/HelloAck, Fetch polling
//!   and bootstrapping newcomers with `Connect`.
//! - **group**: push gossip with `fanout`, causal delivery through a hold-back queue indexed by
//!   the first missing dependency, per-author watermarks for exactly-once, anti-entropy digests
//!   and repairs.
//! - **private**: per-conversation counters, cumulative acks, retransmission with backoff,
//!   in-order delivery.
//! - **membership**: member table, SWIM-style probing (direct, then indirect), suspicion,
//!   offline; a few member records piggybacked on every probe.
//!
//! - **security** (see `docs/SECURITY.md`): every datagram goes through an [`Envelope`]; peer
//!   traffic is sealed per link ([`Link`]) and accepted only from holders of a server-signed,
//!   unexpired certificate; group messages carry their author's signature, checked once per
//!   new dot; signup/signin run inside Noise NK to the pinned server key.
//!
//! Timers are a fixed deadline table ([`Timer`]); `poll_timeout` is the earliest of them.

use crate::config::NodeConfig;
use crate::io::{
    Archive, Command, Event, HistoryEntry, Output, PeerStatus, Record, Scope, Stats, StatusReport,
};
use crate::secure::{self, Identity, SERVER_ID};
use crate::{HashMap, HashSet};
use ed25519_dalek::VerifyingKey;
use group::GroupLog;
use handover::Mail;
use join::AuthClient;
use life::{Lifecycle, Phase};
use members::{Member, View};
use net::Net;
use own::Own;
use p2pchat_proto::wire::{
    encode_envelope, from_payload, to_payload, Cert, Envelope, Key, SenderCert, MAX_PASSWORD,
    MIN_AUTH_HELLO, MIN_KEY_REQUEST,
};
use p2pchat_proto::wire::{pack_batches, BATCH_BUDGET, MAX_DEPS};
use p2pchat_proto::{
    decode, decode_envelope, encode, AuthError, AuthReply, AuthRequest, Dot, GroupMsg, MailBlob,
    Message, NodeId, PeerInfo, PrivateMsg, VectorClock, MAX_TEXT_BYTES,
};
use parking::{Park, Parked};
use private::{Acked, Conversations};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spread::Spread;
use std::net::SocketAddr;
use std::time::Duration;
use swim::{Probe, Prober};
use timers::{Timer, Timers};
use views::Admit;

/// Digest entries per datagram (each at most ~14 bytes).
const DIGEST_CHUNK: usize = 70;
/// Recently learned members passed on in each HelloAck.
const RECENT_IN_ACK: usize = 4;
/// How long a cookie is reused for retries (the server accepts it for 30 to 60 s).
const COOKIE_REUSE: Duration = Duration::from_secs(20);
/// Least time between two full member lists sent to the same peer by membership repair.
const FULL_LIST_COOLDOWN: Duration = Duration::from_secs(10);

/// How a group message reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// Anti-entropy repair: not passed on.
    Repair,
    /// Gossip or Plumtree push: passed on to our own push targets.
    Push,
    /// Ring push: passed on to our fingers up to this limit (see [`ring`]).
    Ring(NodeId),
}

/// Who the node is, as its user says: the account and the auth servers.
#[derive(Clone, Debug)]
pub struct NodeParams {
    /// Username.
    pub user: String,
    /// Password (sent to the auth server only).
    pub password: String,
    /// Create the account instead of signing in.
    pub signup: bool,
    /// The auth server.
    pub auth_addr: SocketAddr,
    /// More auth servers sharing its database (and keys): asked in turn when the current
    /// one stops answering.
    pub auth_fallbacks: Vec<SocketAddr>,
    /// The auth server's X25519 key, pinned explicitly (`--auth-key`). Without it the key
    /// remembered from the first signin is pinned (trust on first use).
    pub auth_key: Option<Key>,
}

/// Where a node runs, as its driver says: its address and its sources of randomness and
/// time (from the OS in the runtime, derived from the seed in the simulator).
#[derive(Clone, Debug)]
pub struct Host {
    /// Where this node's socket is bound.
    pub local_addr: SocketAddr,
    /// Seed for the node's RNG (peer selection, nonces).
    pub seed: u64,
    /// Seed for key generation and handshakes.
    pub crypto_seed: [u8; 32],
    /// Unix time in milliseconds at `now == 0` (certificate expiry is wall-clock time).
    pub wall_ms: u64,
}

/// A chat peer. See the module docs for its parts and `docs/PROTOCOL.md` for the protocol.
pub struct Node {
    cfg: NodeConfig,
    /// Who the node is, as its user says.
    params: NodeParams,
    /// Peer selection, nonces, jitter.
    rng: ChaCha8Rng,
    /// Who the node is on the network: id, keys, certificate, address (see [`own`]).
    own: Own,
    /// Where the node is in its life: signing in, member, stopped; commands waiting.
    life: Lifecycle,
    /// Sign-in and polls: which server, attempts, handshakes, pinned keys (see [`join`]).
    auth: AuthClient,
    /// The members we know, the strangers we can authenticate, records asked for (see
    /// [`view`]).
    view: View,
    /// How group messages travel: Plumtree eager peers, ring broadcast (see [`spread`]).
    spread: Spread,
    /// Delivered and held-back group messages (see [`group`]).
    group: GroupLog,
    /// Private conversations (see [`private`]).
    conversations: Conversations,
    /// Failure detection: whom to probe, the probe in flight, relayed pings (see [`swim`]).
    prober: Prober,
    /// What we keep, as a mailbox, for absent recipients, and its hand-overs (see
    /// [`mailbox`]).
    mail: Mail,
    timers: Timers,
    /// The links to peers and what goes out: datagrams, events, records (see [`net`]).
    net: Net,
}

impl Node {
    /// A node with no history: it will sign up or sign in at the first timeout.
    pub fn new(cfg: NodeConfig, params: NodeParams, host: Host, now: Duration) -> Self {
        Self::restore(cfg, params, host, &[], now)
    }

    /// A node restored from the records it persisted. With an identity among them it is ready
    /// at once and rejoins through the peers it remembers, signing in in the background.
    pub fn restore(
        cfg: NodeConfig,
        params: NodeParams,
        host: Host,
        records: &[Record],
        now: Duration,
    ) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(host.seed);
        let auth = AuthClient::new(params.auth_addr, &params.auth_fallbacks);
        let group = GroupLog::new(cfg.full_clocks, cfg.record_hops);
        let mut crng = secure::crypto_rng(host.crypto_seed);
        let ident = Identity::from_secrets([0; 32], [0; 32]);
        let crng_seed = secure::seed_from(&mut crng);
        let mut node = Node {
            cfg,
            params,
            rng,
            own: Own::new(
                host.local_addr,
                host.wall_ms,
                ident,
                secure::crypto_rng(crng_seed),
            ),
            life: Lifecycle::default(),
            auth,
            view: View::new(),
            spread: Spread::default(),
            group,
            conversations: Conversations::default(),
            prober: Prober::new(),
            mail: Mail::default(),
            timers: Timers::default(),
            net: Net::default(),
        };
        let mut have_keys = false;
        for record in records {
            if let Record::Keys { sign_sk, dh_sk } = record {
                node.own.ident = Identity::from_secrets(*sign_sk, *dh_sk);
                have_keys = true;
            }
        }
        // The view comes back as the newest `view_max` member records; older ones return as
        // strangers (enough to authenticate a peer that still counts on us knowing it).
        let mut newest = HashSet::default();
        for r in records.iter().rev() {
            if let Record::Peer(info) = r {
                if newest.len() < node.cfg.view_max {
                    newest.insert(info.node_id);
                }
            }
        }
        for record in records {
            node.replay(now, record, &newest);
        }
        node.net.replaying = false;
        if !have_keys {
            node.own.ident = Identity::generate(&mut node.own.crng);
            let (sign_sk, dh_sk) = node.own.ident.secrets();
            node.persist(Record::Keys { sign_sk, dh_sk });
        }
        node.own.my_vk = secure::verifying_key(&node.own.ident.sign_pk);
        // A new counter space for every link: persisted before anything is sent.
        node.own.epoch = node.own.epoch.saturating_add(1);
        node.persist(Record::Boot {
            epoch: node.own.epoch,
        });
        if let Some(pin) = node.params.auth_key {
            if node.auth.server_dh != Some(pin) {
                node.auth.server_dh = Some(pin);
                node.auth.server_sign = None;
            }
        }
        node.auth.req = node.rng.random();
        node.set_timer(Timer::Auth, now);
        if node.own.node_id.is_some() {
            node.life.restored = true;
            node.life.phase = Phase::AwaitingBootstrap;
            node.emit_ready();
            // Rejoin through remembered peers, whether or not the server answers.
            let ids: Vec<NodeId> = node.view.members.keys().copied().collect();
            for id in ids {
                node.queue_hello(id, now);
            }
        }
        node
    }

    fn replay(&mut self, now: Duration, record: &Record, view: &HashSet<NodeId>) {
        match record {
            Record::Identity { node_id, .. } => self.own.node_id = Some(*node_id),
            Record::Group(msg) => {
                let dot = msg.dot();
                if !self.group.seen(dot) {
                    self.hold(now, msg.clone());
                }
            }
            Record::PrivateOut(msg) => {
                let rto = self.cfg.private_rto_initial;
                self.conversations.restore_out(msg, now, rto);
            }
            Record::PrivateIn(msg) => self.conversations.restore_in(msg),
            Record::PrivateAcked { peer, upto } => self.conversations.restore_acked(*peer, *upto),
            Record::Peer(info) if view.contains(&info.node_id) => {
                self.learn_member(now, info.clone(), false, Admit::IfRoom);
            }
            Record::Peer(info) => {
                self.stranger_insert(info.clone());
            }
            Record::Boot { epoch } => self.own.epoch = self.own.epoch.max(*epoch),
            Record::AuthKey { dh_pk, sign_pk } => {
                self.auth.server_dh = Some(*dh_pk);
                self.auth.server_sign = secure::verifying_key(sign_pk).map(|vk| (*sign_pk, vk));
            }
            Record::OwnCert(cert) => self.own.cert = Some(cert.clone()),
            Record::MailboxPut(blob) => {
                // Kept as it was kept (expiry runs on the next tick).
                self.mail.mailbox.put(blob.clone(), self.mail_limits(), 0);
            }
            Record::MailboxDrop { to, from, upto } => {
                self.mail.mailbox.drop_upto(*to, *from, *upto);
            }
            Record::Keys { .. } | Record::User { .. } => {}
        }
        if self.conversations.pending() > 0 {
            self.set_timer(Timer::Private, now);
        }
    }

    // ----- driver interface -------------------------------------------------------------

    /// The next output to carry out, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.net.out.is_empty() && self.life.settle_asked && self.settled() {
            self.life.settle_asked = false;
            return Some(Output::Event(Event::Settled));
        }
        self.net.out.pop_front()
    }

    /// Nothing asked of this node is in flight: signed in (a restored node's sign-in in
    /// the background included, so a wrong password is still reported) and a member, every
    /// queued command carried out, every private message acknowledged, every own group
    /// message handed to a peer (and, in ring broadcast, acknowledged).
    pub fn settled(&self) -> bool {
        self.own.node_id.is_some()
            && !self.auth.pending
            && self.life.phase == Phase::Member
            && self.life.queued_len() == 0
            && self.conversations.safe()
            && self.view.lookups.is_empty()
            && self.spread.ring.idle()
            && !self.spread.own_unspread
    }

    /// The earliest timer deadline; call [`Node::handle_timeout`] once it has passed.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.life.phase == Phase::Stopped {
            return None;
        }
        self.timers.next()
    }

    /// This node's id once admitted.
    pub fn node_id(&self) -> Option<NodeId> {
        self.own.node_id
    }

    /// The username.
    pub fn user(&self) -> &str {
        &self.params.user
    }

    /// True once signed in and bootstrapped (or first).
    pub fn is_member(&self) -> bool {
        self.life.phase == Phase::Member
    }

    /// True after `/quit` or a fatal error.
    pub fn is_stopped(&self) -> bool {
        self.life.phase == Phase::Stopped
    }

    /// Number of known members (others).
    pub fn member_count(&self) -> usize {
        self.view.members.len()
    }

    /// Shares a memo of pure crypto results with other nodes of this process (the
    /// simulator's speed-up: thousands of nodes verify the same signatures).
    pub fn set_crypto_memo(&mut self, memo: std::sync::Arc<secure::CryptoMemo>) {
        let ident = std::mem::replace(
            &mut self.own.ident,
            Identity::from_secrets([0; 32], [0; 32]),
        );
        self.own.ident = ident.with_memo(Some(memo));
    }

    /// Gives the node its archive: from now on only the newest `history_in_memory` group
    /// messages keep their bodies in memory.
    pub fn set_archive(&mut self, archive: Box<dyn Archive>) {
        self.group.set_archive(archive, self.cfg.history_in_memory);
    }

    /// This node's public keys: (Ed25519, X25519).
    pub fn public_keys(&self) -> (Key, Key) {
        (self.own.ident.sign_pk, self.own.ident.dh_pk)
    }

    /// The pinned auth server key, if any.
    pub fn server_key(&self) -> Option<Key> {
        self.auth.server_dh
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.net.stats
    }

    /// Group messages delivered per author.
    pub fn delivered_clock(&self) -> &VectorClock {
        self.group.delivered()
    }

    /// Group messages waiting for their causal dependencies.
    pub fn holdback_len(&self) -> usize {
        self.group.held_len()
    }

    /// Private messages written but not yet acknowledged.
    pub fn outbox_len(&self) -> usize {
        self.conversations.pending()
    }

    /// Hops travelled by the copy of `dot` that was delivered here (0 for own messages;
    /// recorded only with [`NodeConfig::record_hops`]).
    pub fn delivery_hop(&self, dot: Dot) -> Option<u16> {
        self.group.hop(dot)
    }

    /// The group history in display order (a linear extension of causality, identical on
    /// every node that has the same messages).
    pub fn group_history(&self) -> Vec<HistoryEntry> {
        self.group
            .in_order()
            .into_iter()
            .map(|(msg, clock)| self.group_entry(msg, clock))
            .collect()
    }

    /// The private conversation with `peer` in display order.
    pub fn private_history(&self, peer: NodeId) -> Vec<HistoryEntry> {
        self.conversations
            .history(peer)
            .into_iter()
            .map(|m| self.private_entry(m))
            .collect()
    }

    /// Feeds one received datagram. Malformed, unauthenticated, replayed or unexpected input
    /// is counted and dropped; it never gets an answer.
    pub fn handle_datagram(&mut self, now: Duration, from: SocketAddr, bytes: &[u8]) {
        if self.life.phase == Phase::Stopped {
            return;
        }
        self.group.trim(self.cfg.history_in_memory);
        self.net.stats.datagrams_in += 1;
        self.net.stats.bytes_in += bytes.len() as u64;
        let env = match decode_envelope(bytes) {
            Ok(e) => e,
            Err(_) => {
                self.net.stats.malformed += 1;
                return;
            }
        };
        let auth = from == self.auth.addr();
        match env {
            Envelope::KeyReply { dh_pk, cookie, .. } if auth => self.key_reply(now, dh_pk, cookie),
            Envelope::AuthAnswer { to, noise } if auth => self.auth_answer(now, to, noise),
            Envelope::Link { .. } if self.own.node_id.is_none() => {
                self.net.keep_early(from, bytes);
            }
            Envelope::Link {
                from: id,
                epoch,
                counter,
                cert,
                sealed,
            } => {
                let Some((payload, fresh)) =
                    self.open_link(now, from, id, epoch, counter, cert, sealed)
                else {
                    return;
                };
                let msg = match decode(&payload) {
                    Ok(m) => m,
                    Err(_) => {
                        self.net.stats.malformed += 1;
                        return;
                    }
                };
                if id == SERVER_ID {
                    self.handle_server(now, msg);
                    return;
                }
                if let Some(info) = fresh {
                    // A certificate we did not have: Hello, HelloAck and Connect learn it
                    // themselves (with the right announcement); anything else learns it here.
                    let known = self.view.members.contains_key(&id);
                    match &msg {
                        Message::Hello { .. }
                        | Message::HelloAck { .. }
                        | Message::Connect { .. }
                            if !known => {}
                        _ if known => {
                            self.learn_member(now, info, true, Admit::IfRoom);
                        }
                        _ => {
                            self.net.replying_to = Some((from, id));
                            self.learn_and_announce(now, info, true, Admit::Contact);
                        }
                    }
                }
                self.net.replying_to = Some((from, id));
                self.handle_peer(now, from, id, msg);
                self.net.replying_to = None;
            }
            _ => self.net.stats.unauthenticated += 1,
        }
    }

    fn handle_peer(&mut self, now: Duration, from: SocketAddr, sender: NodeId, msg: Message) {
        // Every claim of identity inside a message must match the authenticated sender.
        let claimed = match &msg {
            Message::Connect { from: info, .. }
            | Message::Hello { info, .. }
            | Message::HelloAck { info, .. } => Some(info.node_id),
            Message::Bye { node_id } => Some(*node_id),
            Message::Private(p) => Some(p.from),
            Message::PrivateAck { from: f, .. } => Some(*f),
            Message::Fetch { .. } | Message::Pending { .. } | Message::Lookup { .. } => {
                self.net.stats.rejected += 1;
                return;
            }
            _ => None,
        };
        if claimed.is_some_and(|c| c != sender) {
            self.net.stats.impersonation += 1;
            return;
        }
        if !matches!(msg, Message::Bye { .. }) {
            // (A goodbye is no sign of life: it must not show the member online first.)
            self.mark_heard(now, from);
        }
        match msg {
            Message::Connect { from: info, peers } => self.handle_connect(now, info, peers),
            Message::Hello { info, joined } => self.handle_hello(now, from, info, joined),
            Message::HelloAck { info, recent } => {
                self.learn_gossip(now, recent);
                self.handle_hello_ack(now, info);
            }
            // (The claim was checked above: `node_id` is the sender.)
            Message::Bye { node_id } => self.set_status(now, node_id, PeerStatus::Offline),
            Message::Group { hop, msg } => {
                self.receive_group(now, msg, hop, Some(from), Some(sender), Via::Push)
            }
            Message::Ring { hop, limit, msg } => {
                // Acknowledged even when a duplicate: the sender need not retry either way.
                self.ring_ack_later(now, sender, msg.dot());
                self.receive_group(now, msg, hop, Some(from), Some(sender), Via::Ring(limit))
            }
            Message::RingAck { dots } => {
                for dot in dots {
                    self.handle_ring_ack(now, sender, dot);
                }
            }
            Message::RingDown { ids } => self.handle_ring_down(now, sender, &ids),
            Message::GroupFrom { hop, msg, author } => {
                // Its sender knows the network is larger than a view: so do we now.
                self.view.partial = true;
                if author.node_id == msg.author {
                    self.learn_record(author);
                } else {
                    self.net.stats.rejected += 1;
                }
                self.receive_group(now, msg, hop, Some(from), Some(sender), Via::Push)
            }
            Message::Forget => {
                self.view.partial = true;
                if self.view.members.contains_key(&sender) {
                    self.drop_member(sender);
                }
            }
            Message::WhoIs { ids } => self.handle_whois(from, &ids),
            Message::Certs { peers } => self.handle_certs(now, peers),
            Message::Deposit(blob) => self.handle_deposit(now, from, blob),
            Message::Stored { to, seq } => self.handle_stored(sender, to, seq),
            Message::Mail(blob) => self.handle_mail(from, blob),
            Message::MailAck { from: f, upto } => self.handle_mail_ack(sender, f, upto),
            Message::Repair { msgs, more } => self.handle_repair(now, from, sender, msgs, more),
            Message::RepairFrom {
                msgs,
                more,
                authors,
            } => {
                for a in authors {
                    self.learn_record(a);
                }
                self.handle_repair(now, from, sender, msgs, more);
            }
            Message::Digest {
                lo,
                hi,
                entries,
                reply,
                members,
            } => {
                // Membership anti-entropy rides on the first digest chunk.
                let known = self.view.members.len() + 1;
                // (Not between partial views: their sizes say nothing about what is missing.)
                if lo == NodeId(0) && (members as usize) < known && !self.partial() {
                    self.repair_members(now, from, known - members as usize);
                }
                self.handle_digest(from, lo, hi, entries, reply);
            }
            Message::Private(msg) => self.handle_private(now, from, sender, msg),
            Message::PrivateAck {
                from: peer,
                to,
                upto,
            } => self.handle_private_ack(peer, to, upto),
            Message::Ping { nonce, gossip } => {
                self.learn_gossip(now, gossip);
                let gossip = self.gossip_sample();
                self.send(from, &Message::Ack { nonce, gossip });
            }
            Message::Ack { nonce, gossip } => {
                self.learn_gossip(now, gossip);
                self.handle_ack(now, nonce);
            }
            Message::PingReq { nonce, target } => {
                let local: u64 = self.rng.random();
                if self
                    .prober
                    .relay(local, from, nonce, now + self.cfg.probe_interval)
                {
                    self.send(
                        target,
                        &Message::Ping {
                            nonce: local,
                            gossip: Vec::new(),
                        },
                    );
                }
            }
            Message::Prune => self.spread.eager.remove(sender),
            Message::Graft => self.eager_add(sender),
            Message::Fetch { .. } | Message::Pending { .. } | Message::Lookup { .. } => {}
        }
    }

    fn wall(&self, now: Duration) -> u64 {
        self.own.wall(now)
    }

    fn cert_valid(&self, id: NodeId, user: &str, cert: &Cert) -> bool {
        self.auth
            .server_sign
            .as_ref()
            .is_some_and(|(_, vk)| self.own.ident.check_cert(vk, id, user, cert))
    }

    /// Authenticates a link datagram. Returns its payload and, when it carried a certificate
    /// we did not have, the sender's member record.
    #[allow(clippy::too_many_arguments)]
    fn open_link(
        &mut self,
        now: Duration,
        from: SocketAddr,
        id: NodeId,
        epoch: u32,
        counter: u64,
        attached: Option<SenderCert>,
        sealed: &[u8],
    ) -> Option<(Vec<u8>, Option<PeerInfo>)> {
        let Some(me) = self.own.node_id else {
            self.net.stats.unauthenticated += 1;
            return None;
        };
        if id == SERVER_ID {
            let (Some(dh), true) = (self.auth.server_dh, from == self.auth.addr()) else {
                self.net.stats.unauthenticated += 1;
                return None;
            };
            let opened =
                self.net
                    .links
                    .open(&self.own.ident, me, SERVER_ID, dh, epoch, counter, sealed);
            return opened
                .map_err(|r| r.count(&mut self.net.stats))
                .ok()
                .map(|p| (p, None));
        }
        if id == me {
            self.net.stats.impersonation += 1;
            return None;
        }
        let known = self.info_of(id).map(|i| (i.user.clone(), i.cert.clone()));
        let wall = self.wall(now);
        let (user, cert, fresh) =
            secure::pick_cert(attached, known, wall, |u, c| self.cert_valid(id, u, c))
                .map_err(|r| r.count(&mut self.net.stats))
                .ok()?;
        let opened =
            self.net
                .links
                .open(&self.own.ident, me, id, cert.dh_pk, epoch, counter, sealed);
        let payload = opened.map_err(|r| r.count(&mut self.net.stats)).ok()?;
        let info = fresh.then_some(PeerInfo {
            node_id: id,
            user,
            addr: from,
            cert,
        });
        Some((payload, info))
    }

    /// Runs every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.group.trim(self.cfg.history_in_memory);
        for timer in Timers::all() {
            if self.life.phase == Phase::Stopped {
                return;
            }
            if self.timers.take_due(timer, now) {
                self.on_timer(now, timer);
            }
        }
    }

    /// Carries out a user command.
    pub fn handle_command(&mut self, now: Duration, cmd: Command) {
        self.handle_tagged(now, None, cmd);
    }

    /// Carries out a user command; with a tag, every reply to it (an error, a listing, the
    /// echo of the message it sent) comes as [`Event::Reply`] carrying the tag. Commands
    /// given before the sign-in wait for it and then run in order; `Status`, `Settle` and
    /// `Quit` are answered at once.
    pub fn handle_tagged(&mut self, now: Duration, tag: Option<String>, cmd: Command) {
        if self.life.phase == Phase::Stopped {
            return;
        }
        self.group.trim(self.cfg.history_in_memory);
        if self.life.must_wait(&cmd) {
            if !self.life.queue(tag.clone(), cmd) {
                let start = self.net.out.len();
                self.error("too many commands waiting for the sign-in; this one is dropped");
                self.tag_replies(start, tag);
            }
            return;
        }
        let start = self.net.out.len();
        self.run_command(now, cmd);
        self.tag_replies(start, tag);
    }

    /// Wraps the replies among the outputs from `start` on in [`Event::Reply`].
    fn tag_replies(&mut self, start: usize, tag: Option<String>) {
        if let Some(tag) = tag {
            crate::io::tag_replies(self.net.out.range_mut(start..), &tag, &self.params.user);
        }
    }

    /// Runs the commands given before the sign-in, in order.
    fn run_queued(&mut self, now: Duration) {
        while let Some((tag, cmd)) = self.life.next_queued() {
            let start = self.net.out.len();
            self.run_command(now, cmd);
            self.tag_replies(start, tag);
        }
    }

    fn status_report(&self) -> StatusReport {
        StatusReport {
            user: self.params.user.clone(),
            node_id: self.own.node_id,
            phase: self.life.phase.name(),
            online: self
                .view
                .members
                .values()
                .filter(|m| m.status == PeerStatus::Online)
                .count(),
            members: self.view.members.len(),
            pending_private: self.outbox_len(),
            stored_private: self.conversations.stored(),
            mailbox: self.mail.mailbox.len(),
            queued_commands: self.life.queued_len(),
            auth_server_reachable: self.auth.reachable,
            auth_server: self.auth.addr(),
            stats: self.net.stats.clone(),
        }
    }

    fn overview(&self) -> Event {
        let peers = self
            .view
            .members
            .values()
            .map(|m| (m.info.clone(), m.status))
            .collect();
        let conversations = self.conversations.summaries(|id| self.user_name(id));
        Event::Overview {
            peers,
            conversations,
        }
    }

    fn run_command(&mut self, now: Duration, cmd: Command) {
        match cmd {
            Command::Say(text) => self.say(now, text),
            Command::Msg { to, text } => self.send_private(now, &to, text),
            Command::Peers => {
                let list = self
                    .view
                    .members
                    .values()
                    .map(|m| (m.info.clone(), m.status))
                    .collect();
                self.event(Event::Peers(list));
            }
            Command::History { with, last } => self.show_history(with, last),
            Command::Status => self.event(Event::Status(Box::new(self.status_report()))),
            Command::Overview => self.event(self.overview()),
            Command::Settle => self.life.settle_asked = true,
            Command::Quit => {
                let ids: Vec<NodeId> = self.view.live.ids().to_vec();
                if let Some(me) = self.own.node_id {
                    for id in ids {
                        if let Some(addr) = self.view.members.get(&id).map(|m| m.info.addr) {
                            self.send(addr, &Message::Bye { node_id: me });
                        }
                    }
                }
                self.life.phase = Phase::Stopped;
            }
        }
    }

    // ----- plumbing ---------------------------------------------------------------------

    fn set_timer(&mut self, timer: Timer, at: Duration) {
        self.timers.set(timer, at);
    }

    /// Seals `msg` for the member (or server) at `to` and queues the datagram.
    fn send(&mut self, to: SocketAddr, msg: &Message) {
        match encode(msg) {
            Ok(p) => self.send_payload(to, &p),
            Err(e) => debug_assert!(false, "the node built an unencodable message: {e}"),
        }
    }

    /// Seals an encoded message for the member (or server) at `to`.
    fn send_payload(&mut self, to: SocketAddr, payload: &[u8]) {
        let Some(me) = self.own.node_id else { return };
        let sealed = if to == self.auth.addr() {
            let Some(dh) = self.auth.server_dh else {
                return;
            };
            // Always with the certificate: a restarted server keeps no state about us.
            let cert = self.attachment(false);
            let epoch = self.own.epoch;
            self.net
                .links
                .to(&self.own.ident, me, SERVER_ID, dh)
                .seal(me, epoch, payload, cert)
        } else {
            let Some(id) = self.id_at(to) else {
                self.net.stats.unsendable += 1;
                return;
            };
            return self.send_payload_to(id, to, payload);
        };
        match sealed {
            Some(bytes) => self.push_datagram(to, bytes),
            None => debug_assert!(false, "a sealed message must fit a datagram"),
        }
    }

    /// Who is at `addr`: a member, or the sender of the datagram being handled.
    fn id_at(&self, addr: SocketAddr) -> Option<NodeId> {
        match (self.view.members.id_at(addr), self.net.replying_to) {
            (Some(id), _) => Some(id),
            (None, Some((at, id))) if at == addr => Some(id),
            _ => None,
        }
    }

    /// Seals `msg` for the member or stranger `id` at `to`.
    fn send_to(&mut self, id: NodeId, to: SocketAddr, msg: &Message) {
        match encode(msg) {
            Ok(p) => self.send_payload_to(id, to, &p),
            Err(e) => debug_assert!(false, "the node built an unencodable message: {e}"),
        }
    }

    /// Seals an encoded message for the member or stranger `id` at `to`.
    fn send_payload_to(&mut self, id: NodeId, to: SocketAddr, payload: &[u8]) {
        let Some(me) = self.own.node_id else { return };
        let Some(dh) = self.info_of(id).map(|i| i.cert.dh_pk) else {
            self.net.stats.unsendable += 1;
            return;
        };
        let has = self
            .net
            .links
            .get(id)
            .is_some_and(|l| l.peer_dh == dh && l.peer_has_cert);
        let cert = self.attachment(has);
        let epoch = self.own.epoch;
        let sealed = self
            .net
            .links
            .to(&self.own.ident, me, id, dh)
            .seal(me, epoch, payload, cert);
        match sealed {
            Some(bytes) => self.push_datagram(to, bytes),
            None => debug_assert!(false, "a sealed message must fit a datagram"),
        }
    }

    fn push_datagram(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        self.net.push_datagram(to, bytes);
    }

    /// Our certificate, to attach when the receiver may not have it.
    fn attachment(&self, peer_has: bool) -> Option<SenderCert> {
        self.own.attachment(&self.params.user, peer_has)
    }

    /// Adopts a (new or renewed) certificate; peers get it attached to our next datagrams.
    fn set_cert(&mut self, cert: Cert) {
        if self.own.adopt_cert(&cert) {
            self.persist(Record::OwnCert(cert));
            self.net.links.resend_certs();
        }
    }

    fn event(&mut self, e: Event) {
        self.net.event(e);
    }

    fn persist(&mut self, r: Record) {
        self.net.persist(r);
    }

    fn error(&mut self, message: impl Into<String>) {
        self.event(Event::Error {
            message: message.into(),
            fatal: false,
        });
    }

    fn fatal(&mut self, message: impl Into<String>) {
        self.event(Event::Error {
            message: message.into(),
            fatal: true,
        });
        self.life.phase = Phase::Stopped;
    }

    fn my_info(&self) -> Option<PeerInfo> {
        self.own.info(&self.params.user)
    }

    fn user_name(&self, id: NodeId) -> String {
        if Some(id) == self.own.node_id {
            return self.params.user.clone();
        }
        self.info_of(id)
            .map_or_else(|| format!("#{id}"), |i| i.user.clone())
    }

    /// Says "ready" once; commands queued before it run once the node is a member (see
    /// [`Node::become_member`]).
    fn emit_ready(&mut self) {
        if self.life.ready_sent {
            return;
        }
        if let Some(node_id) = self.own.node_id {
            self.life.ready_sent = true;
            self.event(Event::Ready {
                user: self.params.user.clone(),
                node_id,
                addr: self.own.advertised,
                first: self.life.first,
            });
        }
    }

    fn on_timer(&mut self, now: Duration, timer: Timer) {
        match timer {
            Timer::Auth => self.auth_timer(now),
            Timer::Bootstrap => {
                if self.life.phase == Phase::AwaitingBootstrap && !self.auth.pending {
                    // Nobody bootstrapped us: ask again (we may be first by now).
                    self.auth.pending = true;
                    self.auth.req = self.rng.random();
                    self.auth.attempts = 0;
                    self.set_timer(Timer::Auth, now);
                }
            }
            Timer::Fetch => self.fetch_timer(now),
            Timer::AntiEntropy => {
                if let Some(peer) = self.random_live(&[]) {
                    if let Some(addr) = self.view.members.get(&peer).map(|m| m.info.addr) {
                        self.send_digest(addr, NodeId(0), NodeId(u32::MAX), true);
                    }
                }
                self.set_timer(Timer::AntiEntropy, now + self.cfg.anti_entropy_interval);
            }
            Timer::Probe => self.probe_timer(now),
            Timer::ProbeTimeout => self.probe_timeout(),
            Timer::Hello => self.hello_timer(now),
            Timer::Private => self.private_timer(now),
            Timer::Ring => self.ring_timer(now),
        }
    }

    // ----- join -------------------------------------------------------------------------

    fn auth_timer(&mut self, now: Duration) {
        if !self.auth.pending {
            return;
        }
        if self.params.password.len() > MAX_PASSWORD {
            self.fatal(format!(
                "the password is too long: {} bytes (at most {MAX_PASSWORD})",
                self.params.password.len()
            ));
            return;
        }
        if self.auth.attempts >= self.cfg.auth_attempts && self.own.node_id.is_none() {
            let servers: Vec<String> = self.auth.servers().iter().map(|a| a.to_string()).collect();
            self.fatal(format!(
                "auth server {} unreachable after {} attempts",
                servers.join(", "),
                self.auth.attempts
            ));
            return;
        }
        // The last attempt went unanswered: ask the next server, if there is one.
        if self.auth.attempt(now) {
            self.next_auth_server(now);
        }
        // An attempt starts with the server's key and a fresh cookie; the password is only
        // sent once the key matches the pinned one. A retry with a recent cookie goes
        // straight to the hello (one round trip instead of two).
        self.auth.hello_sent = false;
        if let Some((cookie, key, at)) = self.auth.cookie {
            if now.saturating_sub(at) < COOKIE_REUSE && self.auth.server_dh.is_none_or(|k| k == key)
            {
                self.send_hello(key, cookie);
            }
        }
        self.send_key_request();
        let backoff = self
            .cfg
            .auth_retry_initial
            .saturating_mul(1u32 << self.auth.attempts.min(16))
            .min(self.cfg.auth_retry_max);
        self.auth.attempts = self.auth.attempts.saturating_add(1);
        self.set_timer(Timer::Auth, now + backoff);
    }

    /// Turns to the next configured auth server, if there is one.
    fn next_auth_server(&mut self, now: Duration) {
        if self.auth.switch(now) {
            self.net.links.forget(SERVER_ID);
            self.net.stats.auth_failovers += 1;
        }
    }

    fn send_key_request(&mut self) {
        let pad = [0u8; MIN_KEY_REQUEST];
        if let Ok(bytes) = encode_envelope(&Envelope::KeyRequest { pad: &pad }) {
            let auth = self.auth.addr();
            self.push_datagram(auth, bytes);
        }
    }

    fn server_heard(&mut self, now: Duration) {
        self.auth.last_reply = Some(now);
        if !self.auth.reachable {
            self.auth.reachable = true;
            self.event(Event::AuthServer { reachable: true });
        }
    }

    /// The server's key and a cookie: check the pin, then send the request inside Noise NK.
    fn key_reply(&mut self, now: Duration, dh_pk: Key, cookie: [u8; 16]) {
        let changed = self.auth.server_dh.is_some_and(|pinned| pinned != dh_pk);
        if !changed && (!self.auth.pending || self.auth.hello_sent) {
            return;
        }
        if let Some(pinned) = self.auth.server_dh {
            if pinned != dh_pk {
                self.net.stats.bad_server_key += 1;
                if self.auth.key_change_reported {
                    return;
                }
                self.auth.key_change_reported = true;
                let msg = format!(
                    "the auth server's key changed: pinned {}, the server at {} offers {}; \
                     refusing to sign in (no password was sent). If the server was re-keyed \
                     on purpose, pass --auth-key with its new key",
                    secure::fingerprint(&pinned),
                    self.auth.addr(),
                    secure::fingerprint(&dh_pk)
                );
                if self.own.node_id.is_none() {
                    self.fatal(msg);
                } else {
                    // Already a member: keep chatting with peers, but stop asking this server
                    // (it could not read our polls anyway: they are sealed to the old key).
                    self.error(msg);
                    self.auth.pending = false;
                    self.timers.cancel(Timer::Auth);
                }
                return;
            }
        }
        self.server_heard(now);
        self.auth.cookie = Some((cookie, dh_pk, now));
        self.send_hello(dh_pk, cookie);
    }

    /// Sends the signup/signin request inside a new Noise NK handshake to `dh_pk`.
    fn send_hello(&mut self, dh_pk: Key, cookie: [u8; 16]) {
        let mut req = AuthRequest {
            req: self.auth.req,
            signup: self.params.signup && !self.life.restored,
            user: self.params.user.clone(),
            password: self.params.password.clone(),
            sign_pk: self.own.ident.sign_pk,
            dh_pk: self.own.ident.dh_pk,
            cookie,
            pad: Vec::new(),
        };
        let len = to_payload(&req).map_or(0, |p| p.len());
        // Noise adds an ephemeral key and a tag (48 bytes); pad so the answer is never larger.
        req.pad = vec![0; MIN_AUTH_HELLO.saturating_sub(len + 48)];
        let Ok(payload) = to_payload(&req) else {
            return;
        };
        let seed = secure::seed_from(&mut self.own.crng);
        match secure::nk_initiate(&dh_pk, seed, &payload) {
            Ok((hs, m1)) => {
                let mut tag = [0u8; 8];
                tag.copy_from_slice(&m1[..8]);
                if self.auth.hs.len() >= 4 {
                    self.auth.hs.remove(0);
                }
                self.auth.hs.push((tag, hs, dh_pk));
                self.auth.hello_sent = true;
                if let Ok(bytes) = encode_envelope(&Envelope::AuthHello { noise: &m1 }) {
                    let auth = self.auth.addr();
                    self.push_datagram(auth, bytes);
                }
            }
            Err(e) => self.error(format!("handshake failed: {e}")),
        }
    }

    /// The server's Noise answer: admission (with our certificate) or a refusal.
    fn auth_answer(&mut self, now: Duration, tag: [u8; 8], noise: &[u8]) {
        let Some(i) = self.auth.hs.iter().position(|(t, _, _)| *t == tag) else {
            // An answer to an attempt we gave up on (or already read).
            self.net.stats.rejected += 1;
            return;
        };
        let (_, mut hs, dh) = self.auth.hs.remove(i);
        let reply = secure::nk_finish(&mut hs, noise)
            .ok()
            .and_then(|p| from_payload::<AuthReply>(&p).ok());
        let Some(reply) = reply else {
            self.net.stats.unauthenticated += 1;
            return;
        };
        if reply.req != self.auth.req || !self.auth.pending {
            return;
        }
        self.server_heard(now);
        match reply.result {
            Ok(adm) => {
                let vk = secure::verifying_key(&adm.server_sign_pk);
                let valid = vk.as_ref().is_some_and(|vk| {
                    secure::cert_ok(vk, adm.node_id, &self.params.user, &adm.cert)
                }) && adm.cert.sign_pk == self.own.ident.sign_pk
                    && adm.cert.dh_pk == self.own.ident.dh_pk;
                let (true, Some(vk)) = (valid, vk) else {
                    self.fatal("the auth server issued an invalid certificate");
                    return;
                };
                if self.auth.server_dh != Some(dh)
                    || self.auth.server_sign.as_ref().map(|s| s.0) != Some(adm.server_sign_pk)
                {
                    self.auth.server_dh = Some(dh);
                    self.auth.server_sign = Some((adm.server_sign_pk, vk));
                    self.persist(Record::AuthKey {
                        dh_pk: dh,
                        sign_pk: adm.server_sign_pk,
                    });
                }
                self.auth.hs.clear();
                self.set_cert(adm.cert.clone());
                self.admitted(now, adm);
                // What peers sent before we knew who we are.
                for (from, bytes) in self.net.take_early() {
                    self.handle_datagram(now, from, &bytes);
                }
            }
            Err(AuthError::StaleCookie) => {
                self.auth.cookie = None;
                self.set_timer(Timer::Auth, now);
            }
            Err(e @ (AuthError::QueueFull | AuthError::RateLimited(_))) => {
                // Transient (many newcomers at once, or a signup rate limit): ask again later,
                // as a new request (the server caches its answer to this one).
                let wait = match e {
                    AuthError::RateLimited(secs) => {
                        let jitter = self.rng.random_range(0..1_000);
                        Duration::from_millis(u64::from(secs) * 1_000 + jitter)
                    }
                    _ => Duration::from_millis(self.rng.random_range(1_000..4_000)),
                };
                let why = match e {
                    AuthError::RateLimited(_) => {
                        "the auth server limits signups from this address".to_string()
                    }
                    other => other.to_string(),
                };
                self.error(format!(
                    "{why}; asking again in {} s",
                    wait.as_secs().max(1)
                ));
                self.auth.req = self.rng.random();
                self.auth.attempts = 0;
                self.timers.reschedule(Timer::Auth, now + wait);
            }
            Err(e) => self.fatal(e.to_string()),
        }
    }

    fn handle_server(&mut self, now: Duration, msg: Message) {
        self.server_heard(now);
        match msg {
            Message::Pending { newcomers, renewed } => {
                if let (Some(cert), Some(me)) = (renewed, self.own.node_id) {
                    let mine = cert.sign_pk == self.own.ident.sign_pk
                        && cert.dh_pk == self.own.ident.dh_pk;
                    let newer = self
                        .own
                        .cert
                        .as_ref()
                        .is_none_or(|c| c.expires_ms < cert.expires_ms);
                    if mine && newer && self.cert_valid(me, &self.params.user.clone(), &cert) {
                        self.set_cert(cert);
                    } else {
                        self.net.stats.bad_signature += 1;
                    }
                }
                for newcomer in newcomers {
                    self.bootstrap(now, newcomer);
                }
            }
            Message::Certs { peers } => self.lookup_answer(now, peers),
            _ => self.net.stats.rejected += 1,
        }
    }

    fn admitted(&mut self, now: Duration, adm: p2pchat_proto::Admission) {
        if let Some(id) = self.own.node_id {
            if id != adm.node_id {
                self.fatal(format!(
                    "the auth server gave node id {} but this data dir belongs to node {}",
                    adm.node_id, id
                ));
                return;
            }
        }
        self.timers.cancel(Timer::Auth);
        self.auth.pending = false;
        // The account exists now: any later request (re-signin after a bootstrap timeout) signs in.
        self.params.signup = false;
        self.own.node_id = Some(adm.node_id);
        self.own.advertised = adm.observed;
        if !self.life.restored {
            self.persist(Record::Identity {
                node_id: adm.node_id,
                user: self.params.user.clone(),
            });
        }
        if self.life.phase == Phase::Member {
            // Already back in through a remembered peer.
        } else if adm.first {
            self.life.first = !self.life.restored;
            self.become_member(now);
        } else {
            self.life.phase = Phase::AwaitingBootstrap;
            self.set_timer(Timer::Bootstrap, now + self.cfg.bootstrap_timeout);
        }
    }

    fn become_member(&mut self, now: Duration) {
        if self.life.phase == Phase::Member {
            return;
        }
        self.life.phase = Phase::Member;
        self.timers.cancel(Timer::Bootstrap);
        self.emit_ready();
        let jitter = |rng: &mut ChaCha8Rng, d: Duration| {
            Duration::from_micros(rng.random_range(0..=d.as_micros().max(1) as u64))
        };
        let f = jitter(&mut self.rng, self.cfg.fetch_interval);
        let a = jitter(&mut self.rng, self.cfg.anti_entropy_interval);
        let p = jitter(&mut self.rng, self.cfg.probe_interval);
        self.set_timer(Timer::Fetch, now + f);
        self.set_timer(Timer::AntiEntropy, now + a);
        self.set_timer(Timer::Probe, now + p);
        // Now that the members are known, what was asked before goes to them.
        self.run_queued(now);
    }

    fn fetch_timer(&mut self, now: Duration) {
        if let Some(node_id) = self.own.node_id {
            let auth = self.auth.addr();
            self.send(auth, &Message::Fetch { node_id });
        }
        // In a network larger than a view, thousands of members poll: each polls a third as
        // often (still twice per lease), and newcomers are still picked up at once.
        let every = if self.partial() {
            self.cfg.fetch_interval * 3
        } else {
            self.cfg.fetch_interval
        };
        let unreachable = self.cfg.auth_unreachable_after.max(every * 3);
        let silent = self.auth.silent(now, unreachable);
        if silent && self.auth.reachable {
            self.auth.reachable = false;
            self.event(Event::AuthServer { reachable: false });
        }
        // Another server shares the accounts and the queue: poll it instead.
        if silent && self.auth.may_switch(now, unreachable) {
            self.next_auth_server(now);
        }
        if silent && !self.auth.key_change_reported && self.auth.server_dh.is_some() {
            // A server that answers nothing may be gone, or back with another key (it cannot
            // open polls sealed to the old one): its key reply tells which.
            self.send_key_request();
        }
        self.set_timer(Timer::Fetch, now + every);
    }

    /// An existing member hands a newcomer the member list.
    fn bootstrap(&mut self, now: Duration, newcomer: PeerInfo) {
        if Some(newcomer.node_id) == self.own.node_id {
            return;
        }
        let addr = newcomer.addr;
        // Silent: the newcomer's own Hello announces it.
        self.learn_member(now, newcomer, false, Admit::Force);
        self.send_members(addr);
    }

    /// A peer knows fewer members than we do: send it the members we learned last, or the
    /// whole list when it lacks more than those (at most every `FULL_LIST_COOLDOWN`).
    fn repair_members(&mut self, now: Duration, to: SocketAddr, lacking: usize) {
        // Now and then the whole list, in case what it lacks is older than `recent`.
        if lacking <= self.view.members.recent().len() && !self.rng.random_ratio(1, 16) {
            // What it lacks is most likely among the newest: send a few times as many.
            let take = (4 * lacking + 8).min(self.view.members.recent().len());
            let peers: Vec<PeerInfo> = self
                .view
                .members
                .recent()
                .iter()
                .rev()
                .take(take)
                .filter_map(|id| self.view.members.get(id))
                .filter(|m| m.info.addr != to)
                .map(|m| m.info.clone())
                .collect();
            self.send_connect(to, peers);
            return;
        }
        let recently = self
            .view
            .full_lists_sent
            .get(&to)
            .is_some_and(|&at| now.saturating_sub(at) < FULL_LIST_COOLDOWN);
        if !recently {
            if self.view.full_lists_sent.len() >= 1024 {
                self.view
                    .full_lists_sent
                    .retain(|_, at| now.saturating_sub(*at) < FULL_LIST_COOLDOWN);
            }
            self.view.full_lists_sent.insert(to, now);
            self.send_members(to);
        }
    }

    /// Sends our member list (and ourselves) as `Connect` chunks: all of it, or a random
    /// half view once the network is larger than a view (the newcomer greets each).
    fn send_members(&mut self, to: SocketAddr) {
        let peers: Vec<PeerInfo> = if self.view_full() {
            self.sample_live(self.cfg.view_max / 2, &[])
                .into_iter()
                .filter_map(|id| self.view.members.get(&id))
                .filter(|m| m.info.addr != to)
                .map(|m| m.info.clone())
                .collect()
        } else {
            self.view
                .members
                .values()
                .filter(|m| m.info.addr != to)
                .map(|m| m.info.clone())
                .collect()
        };
        self.send_connect(to, peers);
    }

    fn send_connect(&mut self, to: SocketAddr, peers: Vec<PeerInfo>) {
        let Some(me) = self.my_info() else { return };
        let budget = BATCH_BUDGET.saturating_sub(p2pchat_proto::wire::encoded_len(&me));
        let mut batches = pack_batches(&peers, budget);
        if batches.is_empty() {
            batches.push(Vec::new());
        }
        for peers in batches {
            self.send(
                to,
                &Message::Connect {
                    from: me.clone(),
                    peers,
                },
            );
        }
    }

    fn handle_connect(&mut self, now: Duration, from: PeerInfo, peers: Vec<PeerInfo>) {
        if self.own.node_id.is_none() {
            self.net.stats.rejected += 1;
            return;
        }
        // "ready" before the members it brings (commands wait for the membership).
        self.emit_ready();
        let mut ids = vec![from.node_id];
        self.learn_and_announce(now, from, true, Admit::Force);
        for p in peers {
            ids.push(p.node_id);
            self.learn_and_announce(now, p, false, Admit::IfRoom);
        }
        for id in ids {
            self.queue_hello(id, now);
        }
        self.become_member(now);
        self.set_timer(Timer::Hello, now);
    }

    fn queue_hello(&mut self, id: NodeId, now: Duration) {
        if let Some(m) = self.view.members.get_mut(&id) {
            if m.hello.is_none() {
                m.hello = Some((self.cfg.hello_attempts, now));
                self.set_timer(Timer::Hello, now);
            }
        }
    }

    fn hello_timer(&mut self, now: Duration) {
        let Some(me) = self.my_info() else { return };
        let joined = !self.life.restored;
        let mut due = Vec::new();
        let mut next: Option<Duration> = None;
        for m in self.view.members.values_mut() {
            if let Some((left, at)) = m.hello {
                if at <= now {
                    due.push(m.info.addr);
                    m.hello = if left > 1 {
                        Some((left - 1, now + self.cfg.hello_retry))
                    } else {
                        // Give up; keep it "pending" so it is not re-queued. Gossip covers it.
                        Some((0, Duration::MAX))
                    };
                }
                if let Some((l, at)) = m.hello {
                    if l > 0 {
                        next = Some(next.map_or(at, |n: Duration| n.min(at)));
                    }
                }
            }
        }
        for addr in due {
            self.send(
                addr,
                &Message::Hello {
                    info: me.clone(),
                    joined,
                },
            );
        }
        if let Some(at) = next {
            self.set_timer(Timer::Hello, at);
        }
    }

    fn handle_hello(&mut self, now: Duration, from: SocketAddr, info: PeerInfo, joined: bool) {
        if Some(info.node_id) == self.own.node_id {
            return;
        }
        let was_online = self
            .view
            .members
            .get(&info.node_id)
            .is_some_and(|m| m.status == PeerStatus::Online && m.info == info);
        let id = info.node_id;
        let new = self.learn_member(now, info.clone(), true, Admit::Force);
        let first_join = joined
            && self
                .view
                .members
                .get_mut(&id)
                .is_some_and(|m| !std::mem::replace(&mut m.join_announced, true));
        if new || !was_online || first_join {
            self.event(Event::Peer {
                info,
                status: PeerStatus::Online,
                joined: first_join,
            });
        }
        if let Some(me) = self.my_info() {
            let recent: Vec<PeerInfo> = self
                .view
                .members
                .recent()
                .iter()
                .rev()
                .take(RECENT_IN_ACK)
                .filter(|&&r| r != id)
                .filter_map(|id| self.view.members.get(id).map(|m| m.info.clone()))
                .collect();
            self.send(from, &Message::HelloAck { info: me, recent });
        }
    }

    fn handle_hello_ack(&mut self, now: Duration, info: PeerInfo) {
        let id = info.node_id;
        self.learn_and_announce(now, info, true, Admit::Force);
        if let Some(m) = self.view.members.get_mut(&id) {
            m.hello = Some((0, Duration::MAX));
        }
        // A restored node may be back before (or without) the server answering.
        if self.own.node_id.is_some() {
            self.become_member(now);
        }
    }

    // ----- membership -------------------------------------------------------------------

    /// Learns a member and shows it if it is new: online if heard from, else unknown.
    fn learn_and_announce(&mut self, now: Duration, info: PeerInfo, heard: bool, how: Admit) {
        let id = info.node_id;
        if self.learn_member(now, info.clone(), heard, how) {
            let status = self
                .view
                .members
                .get(&id)
                .map_or(PeerStatus::Unknown, |m| m.status);
            self.event(Event::Peer {
                info,
                status,
                joined: false,
            });
        }
    }

    /// Adds or updates a member; true if it was not known before (and entered the view:
    /// see `how`). Emits no event.
    fn learn_member(&mut self, now: Duration, info: PeerInfo, heard: bool, how: Admit) -> bool {
        if Some(info.node_id) == self.own.node_id {
            return false;
        }
        if !self.net.replaying && !self.cert_acceptable(&info) {
            return false;
        }
        let id = info.node_id;
        if self.view.members.contains_key(&id) {
            if self.view.members.update(&info) {
                self.persist(Record::Peer(info));
            }
            if heard {
                self.mark_heard_id(now, id);
            }
            return false;
        }
        if !self.net.replaying && !self.admit(&info, how) {
            return false;
        }
        if self.net.replaying && self.view_full() {
            return false;
        }
        self.view.strangers.remove(id);
        self.view.members.add(Member::new(info.clone(), heard, now));
        self.live_insert(id);
        self.prober.add(id);
        self.persist(Record::Peer(info));
        true
    }

    /// A member record from the wire: its certificate must be the server's, and not older
    /// than the one we have.
    fn cert_acceptable(&mut self, info: &PeerInfo) -> bool {
        if let Some(m) = self.view.members.get(&info.node_id) {
            if m.info.cert == info.cert && m.info.user == info.user {
                return true;
            }
            if m.info.cert.expires_ms > info.cert.expires_ms {
                return false;
            }
        }
        if self.cert_valid(info.node_id, &info.user, &info.cert) {
            true
        } else {
            self.net.stats.bad_signature += 1;
            false
        }
    }

    /// Checks a group message's signature (once per new dot): `None` if the author is
    /// unknown here.
    fn group_sig_ok(&mut self, msg: &GroupMsg) -> Option<bool> {
        let vk = if Some(msg.author) == self.own.node_id {
            self.own.my_vk
        } else {
            self.signing_key(msg.author)
        };
        let vk = vk?;
        if self.own.ident.check(&vk, &msg.signed_bytes(), &msg.sig) {
            Some(true)
        } else {
            self.net.stats.bad_signature += 1;
            Some(false)
        }
    }

    fn learn_gossip(&mut self, now: Duration, gossip: Vec<PeerInfo>) {
        for info in gossip {
            if !self.view.members.contains_key(&info.node_id) {
                self.learn_and_announce(now, info, false, Admit::IfRoom);
            }
        }
    }

    fn gossip_sample(&mut self) -> Vec<PeerInfo> {
        let mut out = Vec::new();
        for _ in 0..self.cfg.gossip_members {
            if let Some(id) = self.random_live(&[]) {
                if let Some(m) = self.view.members.get(&id) {
                    if !out.contains(&m.info) {
                        out.push(m.info.clone());
                    }
                }
            }
        }
        out
    }

    fn mark_heard(&mut self, now: Duration, from: SocketAddr) {
        if let Some(id) = self.view.members.id_at(from) {
            self.mark_heard_id(now, id);
        }
    }

    fn mark_heard_id(&mut self, now: Duration, id: NodeId) {
        self.ring_heard(id);
        if let Some(m) = self.view.members.get_mut(&id) {
            m.last_heard = now;
            if m.status != PeerStatus::Online {
                self.set_status(now, id, PeerStatus::Online);
            }
        }
    }

    fn set_status(&mut self, now: Duration, id: NodeId, status: PeerStatus) {
        let Some(m) = self.view.members.get_mut(&id) else {
            return;
        };
        if m.status == status {
            return;
        }
        let was_offline = m.status == PeerStatus::Offline;
        m.status = status;
        if status == PeerStatus::Suspect {
            self.prober.set_suspect(id, true);
        } else {
            self.prober.set_suspect(id, false);
        }
        m.suspect_since = (status == PeerStatus::Suspect).then_some(now);
        let info = m.info.clone();
        match status {
            PeerStatus::Offline => self.live_remove(id),
            _ => self.live_insert(id),
        }
        if status == PeerStatus::Online {
            // Back, or heard for the first time: what we keep for it goes out now.
            self.hand_over(now, id);
        }
        if status == PeerStatus::Online && was_offline {
            // It is back: flush what we owe it now rather than at the next backoff.
            if self
                .conversations
                .flush(id, now, self.cfg.private_rto_initial)
            {
                self.set_timer(Timer::Private, now);
            }
        }
        self.event(Event::Peer {
            info,
            status,
            joined: false,
        });
    }

    fn live_insert(&mut self, id: NodeId) {
        if self.view.live.insert(id) {
            self.ring_join(id);
        }
    }

    fn live_remove(&mut self, id: NodeId) {
        if self.view.live.contains(id) {
            self.ring_forget(id);
            self.view.live.remove(id);
        }
    }

    fn random_live(&mut self, exclude: &[NodeId]) -> Option<NodeId> {
        self.sample_live(1, exclude).pop()
    }

    /// Up to `k` distinct random members that are not offline, skipping `exclude`.
    fn sample_live(&mut self, k: usize, exclude: &[NodeId]) -> Vec<NodeId> {
        self.view.live.sample(&mut self.rng, k, exclude)
    }

    fn probe_timer(&mut self, now: Duration) {
        // Finish the previous probe.
        if let Some(p) = self.prober.probe.take() {
            // Anything heard since the ping left also proves it alive (a member that just
            // came back must not flap to suspect on a probe of its previous run).
            let silent = self.view.members.get(&p.target).is_some_and(|m| {
                matches!(m.status, PeerStatus::Online | PeerStatus::Unknown)
                    && m.last_heard < p.sent
            });
            if !p.acked && silent {
                self.set_status(now, p.target, PeerStatus::Suspect);
            }
        }
        if self
            .prober
            .offline_due(now, self.cfg.offline_probe_interval)
        {
            self.ping_offline();
        }
        // Suspects not heard from in time are declared offline.
        let expired: Vec<NodeId> = self
            .prober
            .suspects()
            .filter(|id| {
                self.view.members.get(id).is_some_and(|m| {
                    m.suspect_since
                        .is_some_and(|s| now.saturating_sub(s) >= self.cfg.suspect_timeout)
                        && now.saturating_sub(m.last_heard) >= self.cfg.suspect_timeout
                })
            })
            .collect();
        for id in expired {
            self.set_status(now, id, PeerStatus::Offline);
        }
        self.prober.expire_relays(now);
        // Peers we owe messages but cannot reach: ask for their records every round, not
        // only when a retry falls due (the backoff grows to seconds).
        let lost: Vec<NodeId> = self
            .conversations
            .owed()
            .filter(|&id| self.info_of(id).is_none())
            .collect();
        for id in lost {
            self.ask_record(now, id);
        }
        self.mail_tick(now);
        self.expire_parked(now);
        self.expire_lookups(now);
        // Next target: suspects first (to confirm or clear them quickly), then round-robin.
        let suspect = self.prober.pick_suspect(&mut self.rng);
        let target = suspect.or_else(|| {
            // A member heard from within the last round is alive: no need to ask.
            let live = &self.view.live;
            let next = self
                .prober
                .next_round_robin(&mut self.rng, |id| live.contains(id));
            next.filter(|id| {
                self.view.members.get(id).is_none_or(|m| {
                    m.status != PeerStatus::Online
                        || now.saturating_sub(m.last_heard) >= self.cfg.probe_interval
                })
            })
        });
        if let Some(target) = target {
            if let Some(addr) = self.view.members.get(&target).map(|m| m.info.addr) {
                let nonce: u64 = self.rng.random();
                let gossip = self.gossip_sample();
                self.send(addr, &Message::Ping { nonce, gossip });
                self.prober.probe = Some(Probe {
                    target,
                    nonce,
                    acked: false,
                    sent: now,
                });
                self.set_timer(Timer::ProbeTimeout, now + self.cfg.probe_timeout);
            }
        }
        self.set_timer(Timer::Probe, now + self.cfg.probe_interval);
    }

    /// Pings the next offline member in turn: any answer shows it online again.
    fn ping_offline(&mut self) {
        let live = &self.view.live;
        if let Some(id) = self.prober.next_offline(|id| live.contains(id)) {
            self.ring_ping(id);
        }
    }

    fn probe_timeout(&mut self) {
        let Some((target, nonce)) = self
            .prober
            .probe
            .as_ref()
            .filter(|p| !p.acked)
            .map(|p| (p.target, p.nonce))
        else {
            return;
        };
        let Some(target_addr) = self.view.members.get(&target).map(|m| m.info.addr) else {
            return;
        };
        let helpers = self.sample_live(self.cfg.indirect_probes, &[target]);
        for h in helpers {
            if let Some(addr) = self.view.members.get(&h).map(|m| m.info.addr) {
                self.send(
                    addr,
                    &Message::PingReq {
                        nonce,
                        target: target_addr,
                    },
                );
            }
        }
    }

    fn handle_ack(&mut self, now: Duration, nonce: u64) {
        if let Some((requester, orig)) = self.prober.relayed(nonce) {
            self.send(
                requester,
                &Message::Ack {
                    nonce: orig,
                    gossip: Vec::new(),
                },
            );
            return;
        }
        if let Some(p) = self.prober.probe.as_mut() {
            if p.nonce == nonce {
                p.acked = true;
                let target = p.target;
                self.mark_heard_id(now, target);
            }
        }
    }

    // ----- group chat -------------------------------------------------------------------

    fn say(&mut self, now: Duration, text: String) {
        let Some(me) = self.own.node_id else {
            self.error("not signed in yet");
            return;
        };
        if !self.text_ok(&text) {
            return;
        }
        // Causal metadata never refuses a message: a frontier too large for one message (many
        // authors talking at once) is first folded into merge messages, own messages without
        // text that reference up to MAX_DEPS of it each; the message then references the last
        // merge (implied: it is our previous message) and the rest.
        loop {
            let deps = self.group.frontier_deps(me);
            let msg = self.own_group(now, me, deps.clone(), text.clone());
            let fits = encode(&Message::Group {
                hop: 0,
                msg: msg.clone(),
            })
            .is_ok();
            if deps.len() <= MAX_DEPS && fits {
                let mut msg = msg;
                msg.sig = self.own.ident.sign(&msg.signed_bytes());
                return self.publish(now, me, msg);
            }
            if deps.is_empty() {
                self.error(format!(
                    "message too long: {} bytes do not fit a datagram",
                    text.len()
                ));
                return;
            }
            let chunk = deps[..deps.len().min(MAX_DEPS)].to_vec();
            let mut merge = self.own_group(now, me, chunk, String::new());
            merge.sig = self.own.ident.sign(&merge.signed_bytes());
            self.publish(now, me, merge);
        }
    }

    /// Our next group message (unsigned).
    fn own_group(&self, now: Duration, me: NodeId, deps: Vec<Dot>, text: String) -> GroupMsg {
        let (seq, lamport) = self.group.next_own(me);
        GroupMsg {
            author: me,
            seq,
            lamport,
            deps,
            text,
            time_ms: self.wall(now),
            sig: [0; 64],
        }
    }

    /// Delivers our own signed message (which persists it) and sends it on its way.
    fn publish(&mut self, now: Duration, me: NodeId, msg: GroupMsg) {
        let dot = msg.dot();
        self.hold(now, msg.clone());
        self.group.record_hop(dot, 0);
        if self.view.live.is_empty() {
            // Nobody to hand it to: anti-entropy will, once someone is reachable.
            self.spread.own_unspread = true;
        }
        if self.ring_mode() {
            self.ring_push(now, msg, 0, me);
        } else {
            self.gossip(msg, 0, &[me]);
        }
    }

    fn flooding(&self) -> bool {
        self.view.live.len() <= self.cfg.flood_below && !self.partial()
    }

    /// Refuses (with a clear error) empty texts and texts over the limit.
    fn text_ok(&mut self, text: &str) -> bool {
        if text.trim().is_empty() {
            self.error("empty message");
            false
        } else if text.len() > MAX_TEXT_BYTES {
            self.error(format!(
                "message too long: {} bytes (limit {MAX_TEXT_BYTES})",
                text.len()
            ));
            false
        } else {
            true
        }
    }

    fn plumtree(&self) -> bool {
        self.cfg.plumtree && !self.flooding()
    }

    /// The eager-push peers: started as `fanout` random members, shaped by prunes and grafts;
    /// members that went offline leave it, and it is never left empty.
    fn eager_targets(&mut self, exclude: &[NodeId]) -> Vec<NodeId> {
        let fanout = self.cfg.fanout;
        self.spread
            .eager
            .targets(&self.view.live, &mut self.rng, fanout, exclude)
    }

    fn eager_add(&mut self, id: NodeId) {
        self.spread.eager.add(id, &self.view.live);
    }

    fn gossip(&mut self, msg: GroupMsg, hop: u16, exclude: &[NodeId]) {
        let targets = if hop == 0 && self.flooding() {
            // A small group: straight to everyone.
            self.view
                .live
                .ids()
                .iter()
                .copied()
                .filter(|id| !exclude.contains(id))
                .collect()
        } else if self.plumtree() {
            self.eager_targets(exclude)
        } else {
            self.sample_live(self.cfg.fanout, exclude)
        };
        if targets.is_empty() {
            return;
        }
        // Encoded once; sealed per link. In a network larger than a view, receivers rarely
        // know the author: its record rides along (when it fits).
        let author = self.partial().then(|| self.record_of(msg.author)).flatten();
        let wire = match author {
            Some(author) => Message::GroupFrom { hop, msg, author },
            None => Message::Group { hop, msg },
        };
        let payload = match encode(&wire) {
            Ok(p) => Ok(p),
            Err(_) => match wire {
                Message::GroupFrom { hop, msg, .. } => encode(&Message::Group { hop, msg }),
                other => encode(&other),
            },
        };
        if let Ok(payload) = payload {
            for t in targets {
                if let Some(addr) = self.view.members.get(&t).map(|m| m.info.addr) {
                    self.send_payload(addr, &payload);
                }
            }
        }
    }

    /// A group message, from the authenticated `sender` at `from` (either may be unknown for
    /// a message that waited for its author's record).
    fn receive_group(
        &mut self,
        now: Duration,
        msg: GroupMsg,
        hop: u16,
        from: Option<SocketAddr>,
        sender: Option<NodeId>,
        via: Via,
    ) {
        self.net.stats.group_payloads += 1;
        let dot = msg.dot();
        if self.group.seen(dot) {
            self.net.stats.group_duplicates += 1;
            // Plumtree: an eager link that brings a copy we already had is redundant.
            if via == Via::Push && self.plumtree() {
                if let Some(s) = sender {
                    if self.spread.eager.cut(s) {
                        if let Some(addr) = from {
                            self.send(addr, &Message::Prune);
                        }
                    }
                }
            }
            return;
        }
        if self.group.held_len() >= self.cfg.holdback_limit {
            // Anti-entropy brings it back once the backlog drains.
            self.net.stats.holdback_dropped += 1;
            return;
        }
        // Verified once per new dot, after the duplicate check: copies cost nothing. A copy
        // straight from its author needs no check: the link already authenticated the author.
        let from_author = sender == Some(msg.author);
        if !from_author {
            match self.group_sig_ok(&msg) {
                Some(true) => {}
                Some(false) => return,
                // Unknown author: wait for its record (see `views`).
                None => return self.park(now, msg, hop, from, sender, via),
            }
        }
        if self.plumtree() && !self.ring_mode() {
            if let Some(s) = sender {
                if via == Via::Push {
                    // The link that delivered first is a tree link, both ways.
                    self.eager_add(s);
                } else if !self.spread.eager.contains(s) {
                    // Only repair brought it: the tree misses us here. Graft the link.
                    self.eager_add(s);
                    if let Some(addr) = from {
                        self.send(addr, &Message::Graft);
                    }
                }
            }
        }
        let sender = sender.or_else(|| from.and_then(|a| self.view.members.id_at(a)));
        // The author of a small group sent everyone a copy: no need to forward.
        let flooded = hop == 0 && sender == Some(msg.author) && self.flooding();
        if let (Via::Ring(limit), false) = (via, self.partial()) {
            self.ring_push(now, msg.clone(), hop.saturating_add(1), limit);
        } else if via != Via::Repair && !flooded {
            let mut exclude = vec![msg.author];
            if let Some(sender) = sender {
                exclude.push(sender);
            }
            if let Some(me) = self.own.node_id {
                exclude.push(me);
            }
            self.gossip(msg.clone(), hop.saturating_add(1), &exclude);
        }
        let hop = if hop == u16::MAX {
            hop
        } else {
            hop.saturating_add(1)
        };
        // Only the simulator asks; a long-running node must not grow a map per message.
        self.group.record_hop(dot, hop);
        self.hold(now, msg);
    }

    /// Holds `msg` back until its dependencies are delivered, and delivers what it can.
    fn hold(&mut self, _now: Duration, msg: GroupMsg) {
        for (msg, clock) in self.group.hold(msg) {
            self.net.stats.group_delivered += 1;
            self.persist(Record::Group(msg.clone()));
            if !self.net.replaying {
                let entry = self.group_entry(msg, clock);
                self.event(Event::Message(Box::new(entry)));
            }
        }
    }

    fn group_entry(&self, msg: GroupMsg, clock: Option<VectorClock>) -> HistoryEntry {
        HistoryEntry {
            scope: Scope::Group,
            id: msg.dot().to_string(),
            from_id: msg.author,
            from: self.user_name(msg.author),
            to: None,
            text: msg.text,
            clock,
            order: msg.lamport,
            seq: msg.seq,
            time_ms: msg.time_ms,
        }
    }

    /// Digest chunks of our delivered counters over `lo..=hi`.
    fn send_digest(&mut self, to: SocketAddr, lo: NodeId, hi: NodeId, reply: bool) {
        let entries: Vec<(NodeId, u64)> = self.group.delivered().range(lo, hi).collect();
        let members = u32::try_from(self.view.members.len() + 1).unwrap_or(u32::MAX);
        if entries.is_empty() {
            self.send(
                to,
                &Message::Digest {
                    lo,
                    hi,
                    entries,
                    reply,
                    members,
                },
            );
            return;
        }
        let chunks: Vec<&[(NodeId, u64)]> = entries.chunks(DIGEST_CHUNK).collect();
        let mut start = lo;
        for (i, chunk) in chunks.iter().enumerate() {
            let end = if i + 1 == chunks.len() {
                hi
            } else {
                chunk.last().map_or(hi, |(id, _)| *id)
            };
            self.send(
                to,
                &Message::Digest {
                    lo: start,
                    hi: end,
                    entries: chunk.to_vec(),
                    reply,
                    members,
                },
            );
            start = NodeId(end.0.saturating_add(1));
        }
    }

    fn handle_repair(
        &mut self,
        now: Duration,
        from: SocketAddr,
        sender: NodeId,
        msgs: Vec<GroupMsg>,
        more: bool,
    ) {
        for msg in msgs {
            self.receive_group(now, msg, u16::MAX, Some(from), Some(sender), Via::Repair);
        }
        if more {
            self.send_digest(from, NodeId(0), NodeId(u32::MAX), false);
        }
    }

    /// Sends one repair datagram; in a network larger than a view it carries the records of
    /// the messages' authors (the receiver rarely knows them).
    fn send_repair(&mut self, to: SocketAddr, msgs: Vec<GroupMsg>, more: bool) {
        if !self.partial() {
            return self.send(to, &Message::Repair { msgs, more });
        }
        let mut authors: Vec<PeerInfo> = Vec::new();
        for m in &msgs {
            if authors.iter().all(|a| a.node_id != m.author) {
                authors.extend(self.record_of(m.author));
            }
        }
        let with = Message::RepairFrom {
            msgs,
            more,
            authors,
        };
        match encode(&with) {
            Ok(p) => self.send_payload(to, &p),
            // One long message and its author's record may not fit: the receiver asks.
            Err(_) => {
                if let Message::RepairFrom { msgs, more, .. } = with {
                    self.send(to, &Message::Repair { msgs, more });
                }
            }
        }
    }

    /// The bytes a message adds to a repair datagram: with its author's record, in a network
    /// larger than a view, when it is the first of that author in the batch.
    fn repair_cost(&self, msg: &GroupMsg, batch: &[GroupMsg]) -> usize {
        let mut len = p2pchat_proto::wire::encoded_len(msg);
        if self.partial() && batch.iter().all(|b| b.author != msg.author) {
            len += self
                .record_of(msg.author)
                .map_or(0, |i| p2pchat_proto::wire::encoded_len(&i));
        }
        len
    }

    fn handle_digest(
        &mut self,
        from: SocketAddr,
        lo: NodeId,
        hi: NodeId,
        entries: Vec<(NodeId, u64)>,
        reply: bool,
    ) {
        if let Some(me) = self.own.node_id.filter(|_| self.spread.own_unspread) {
            let mine = self.group.delivered().get(me);
            if entries.iter().any(|&(a, s)| a == me && s >= mine) {
                self.spread.own_unspread = false;
            }
        }
        let (missing, they_are_ahead) = self.group.compare(lo, hi, &entries);
        if !missing.is_empty() {
            // Oldest first, and only as many as the datagram budget holds: a peer far behind
            // gets the rest when it asks again, and we never copy the whole backlog.
            let mut batch: Vec<GroupMsg> = Vec::new();
            let mut size = 0usize;
            let mut sent = 0usize;
            let mut iter = missing.iter().peekable();
            while let Some(&(_, a, s)) = iter.next() {
                let Some(msg) = self.group.delivered_msg(Dot::new(a, s)) else {
                    continue;
                };
                let mut len = self.repair_cost(&msg, &batch);
                // (Two length prefixes more in a RepairFrom.)
                if !batch.is_empty() && size + len + 4 > BATCH_BUDGET {
                    sent += 1;
                    let last = sent == self.cfg.repair_max_datagrams;
                    self.send_repair(from, std::mem::take(&mut batch), last);
                    size = 0;
                    len = self.repair_cost(&msg, &batch);
                    if last {
                        break;
                    }
                }
                size += len;
                batch.push(msg);
                if iter.peek().is_none() {
                    self.send_repair(from, std::mem::take(&mut batch), false);
                }
            }
        }
        if reply && they_are_ahead {
            self.send_digest(from, lo, hi, false);
        }
    }

    // ----- private chat -----------------------------------------------------------------

    fn member_by_name(&self, user: &str) -> Option<NodeId> {
        self.view
            .members
            .values()
            .map(|m| &m.info)
            .chain(self.view.strangers.records())
            .find(|i| i.user == user)
            .map(|i| i.node_id)
    }

    fn send_private(&mut self, now: Duration, to: &str, text: String) {
        let Some(me) = self.own.node_id else {
            self.error("not signed in yet");
            return;
        };
        if to == self.params.user {
            self.error("cannot send a private message to yourself");
            return;
        }
        let Some(peer) = self.member_by_name(to) else {
            // Outside our view in a large network: the server knows where online users are.
            if self.partial() && self.lookup(now, to, &text) {
                return;
            }
            self.error(format!("unknown user: {to}"));
            return;
        };
        if !self.text_ok(&text) {
            return;
        }
        let time_ms = self.wall(now);
        let rto = self.cfg.private_rto_initial;
        let msg = self.conversations.write(me, peer, text, time_ms, now, rto);
        self.persist(Record::PrivateOut(msg.clone()));
        let entry = self.private_entry(&msg);
        self.event(Event::Message(Box::new(entry)));
        let away = self
            .view
            .members
            .get(&peer)
            .is_some_and(|m| m.status == PeerStatus::Offline);
        if away {
            // Known to be gone: straight to its mailboxes as well.
            self.deposit(now, peer, msg.seq);
        }
        if let Some(addr) = self.info_of(peer).map(|i| i.addr) {
            self.send_to(peer, addr, &Message::Private(msg));
        }
        self.set_timer(Timer::Private, now + self.cfg.private_rto_initial);
    }

    fn private_timer(&mut self, now: Duration) {
        let (resend, next) =
            self.conversations
                .due(now, self.cfg.private_rto_max, self.cfg.mailboxes);
        for r in resend {
            // Not acknowledged in time: to the mailboxes too once the recipient looks away,
            // or after three tries whatever it looks like (a crash takes seconds to notice).
            let away = self
                .view
                .members
                .get(&r.peer)
                .is_none_or(|m| m.status != PeerStatus::Online);
            if r.unanswered && (away || r.tries >= 3) {
                self.deposit(now, r.peer, r.msg.seq);
            }
            match self.info_of(r.peer).map(|i| i.addr) {
                Some(addr) => {
                    self.net.stats.private_retransmits += 1;
                    self.send_to(r.peer, addr, &Message::Private(r.msg));
                }
                None => self.ask_record(now, r.peer),
            }
        }
        if let Some(at) = next {
            self.set_timer(Timer::Private, at);
        }
    }

    fn handle_private(
        &mut self,
        _now: Duration,
        from: SocketAddr,
        sender: NodeId,
        msg: PrivateMsg,
    ) {
        if Some(msg.to) != self.own.node_id || sender != msg.from {
            self.net.stats.rejected += 1;
            return;
        }
        let (me, peer) = (msg.to, msg.from);
        let upto = self.accept_private(msg);
        self.send(
            from,
            &Message::PrivateAck {
                from: me,
                to: peer,
                upto,
            },
        );
    }

    /// Delivers an authentic private message to us exactly once and in its conversation's
    /// order (buffering one that is early); returns how far the conversation is delivered.
    fn accept_private(&mut self, msg: PrivateMsg) -> u64 {
        let (ready, upto, duplicate) = self
            .conversations
            .accept(msg, self.cfg.private_buffer_limit);
        if duplicate {
            self.net.stats.private_duplicates += 1;
        }
        for m in ready {
            self.net.stats.private_delivered += 1;
            self.persist(Record::PrivateIn(m.clone()));
            let entry = self.private_entry(&m);
            self.event(Event::Message(Box::new(entry)));
        }
        upto
    }

    fn handle_private_ack(&mut self, peer: NodeId, to: NodeId, upto: u64) {
        if Some(to) != self.own.node_id {
            self.net.stats.rejected += 1;
            return;
        }
        match self.conversations.ack(peer, upto) {
            Acked::Unknown => self.net.stats.rejected += 1,
            Acked::Old => {}
            Acked::Upto(upto) => {
                self.persist(Record::PrivateAcked { peer, upto });
                let name = self.user_name(peer);
                self.event(Event::Acked { peer: name, upto });
            }
        }
    }

    fn private_entry(&self, m: &PrivateMsg) -> HistoryEntry {
        let clock: VectorClock = [(m.from, m.seq), (m.to, m.seen)].into_iter().collect();
        HistoryEntry {
            scope: Scope::Private,
            id: format!("{}>{}.{}", m.from, m.to, m.seq),
            from_id: m.from,
            from: self.user_name(m.from),
            to: Some(self.user_name(m.to)),
            text: m.text.clone(),
            clock: Some(clock),
            order: m.seq + m.seen,
            seq: m.seq,
            time_ms: m.time_ms,
        }
    }

    fn show_history(&mut self, with: Option<String>, last: Option<usize>) {
        let (scope, mut messages) = match &with {
            None => (Scope::Group, self.group_history()),
            Some(user) => match self.member_by_name(user) {
                Some(id) => (Scope::Private, self.private_history(id)),
                None => {
                    self.error(format!("unknown user: {user}"));
                    return;
                }
            },
        };
        // Merge messages (no text) carry only causal metadata: not shown.
        messages.retain(|m| !m.is_merge());
        if let Some(n) = last {
            let skip = messages.len().saturating_sub(n);
            messages.drain(..skip);
        }
        self.event(Event::History {
            scope,
            with,
            messages,
        });
    }

    /// All held-back dots (for tests and diagnostics).
    pub fn held_back(&self) -> HashSet<Dot> {
        self.group.held_back()
    }
}

mod clocks;
mod group;
mod handover;
mod join;
mod life;
mod mailbox;
mod members;
mod net;
mod own;
mod parking;
mod plumtree;
mod private;
mod ring;
mod spread;
mod strangers;
mod swim;
#[cfg(test)]
mod tests;
mod timers;
mod views;
