//! The chat node state machine: a plain struct fed `(now, input)` that queues outputs.
//!
//! `Node` is a facade over owned parts; each part keeps its own fields and has its own
//! unit tests:
//! - `own` who we are (id, keys, certificate), `life` where we are (phase, queued
//!   commands), `net` what goes out (outputs, counters, links), `timers` the deadline
//!   table (`poll_timeout` is the earliest);
//! - `join` the auth-server client; `members` the view (members, live set, strangers,
//!   parked messages); `swim` the prober; `spread` how group messages travel
//!   (`plumtree`, `ring`); `group` and `clocks` delivery and hold-back;
//!   `private` conversations; `handover` and `crate::mail` mailboxes; `account` our
//!   messages per user, revoked devices and (`mirror`) the account's private history from
//!   its other devices.
//!
//! The flows that coordinate parts are `impl Node` blocks, one file each, that reach the
//! parts only through the parts' own methods and fields they declare: `signin`,
//! `membership`, `probing`, `broadcast`, `direct`, `devices`, `views`, `ring`,
//! `mailbox`, `commands`, and `send` (the one send path). This file holds the
//! facade: construction and restore, the driver interface, datagram and timer dispatch.
//!
//! Security (see `docs/SECURITY.md`): every datagram goes through an [`Envelope`]; peer
//! traffic is sealed per link and accepted only from holders of a server-signed, unexpired
//! certificate; group messages carry their author's signature, checked once per new dot;
//! signup/signin run inside Noise NK to the pinned server key.

use crate::config::NodeConfig;
use crate::io::{Archive, Event, HistoryEntry, Output, PeerStatus, Record, Stats};
use crate::secure::{self, Identity};
use crate::HashSet;
use account::Account;
use group::GroupLog;
use handover::Mail;
use join::AuthClient;
use life::{Lifecycle, Phase};
use members::View;
use net::Net;
use own::Own;
use p2pchat_proto::wire::{Cert, Envelope, Key, SenderCert};
use p2pchat_proto::{decode_envelope, Dot, GroupMsg, Message, NodeId, PeerInfo, VectorClock};
use paths::Paths;
use private::Conversations;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use send::Peer;
use spread::Spread;
use std::net::SocketAddr;
use std::time::Duration;
pub use summary::{GroupSummary, SummaryError};
use swim::Prober;
use timers::{Timer, Timers};

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
    /// Our messages per user, the account's history from our other devices, revoked
    /// devices (see [`account`]).
    account: Account,
    /// Members reached at another address than their record's, or through a relay (see
    /// [`paths`] and [`relay`]).
    paths: Paths,
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
            account: Account::default(),
            paths: Paths::default(),
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

    /// Replays persisted group messages, oldest first, after [`Node::restore`] (given records
    /// without them) and [`Node::set_archive`]: a long history is fed in chunks and only its
    /// newest `history_in_memory` bodies stay in memory, so it never has to fit whole.
    pub fn restore_group(&mut self, now: Duration, msgs: Vec<GroupMsg>) {
        let was = std::mem::replace(&mut self.net.replaying, true);
        self.group.set_restoring(true);
        for msg in msgs {
            if !self.group.seen(msg.dot()) {
                self.hold(now, msg);
            }
        }
        self.group.set_restoring(false);
        self.net.replaying = was;
        self.group.trim(self.cfg.history_in_memory);
    }

    /// The delivered group history, summarised for the next start (see [`GroupSummary`]):
    /// valid for exactly the group records persisted so far. `None` when hop counts are
    /// recorded (the simulator).
    pub fn group_summary(&self) -> Option<GroupSummary> {
        self.group.summary()
    }

    /// Starts the group history from a saved summary instead of replaying it: after the
    /// archive is set, before [`Node::restore_group`] replays the records it does not cover.
    /// On an error nothing changed (replay the whole history instead).
    pub fn restore_summary(&mut self, summary: GroupSummary) -> Result<usize, SummaryError> {
        let n = self.group.restore_summary(summary)?;
        self.net.stats.group_delivered += n as u64;
        Ok(n)
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

    /// Commands not carried out yet: given before the sign-in, or behind a message that
    /// waits for shared merges.
    pub fn commands_waiting(&self) -> usize {
        self.life.queued_len()
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
            } => self.receive_link(now, from, None, id, epoch, counter, cert, sealed),
            Envelope::Relay { to, inner } => self.handle_relay(now, from, to, inner),
            Envelope::Relayed { inner } => self.handle_relayed(now, from, inner),
            _ => self.net.stats.unauthenticated += 1,
        }
    }

    fn handle_peer(&mut self, now: Duration, peer: Peer, msg: Message) {
        let sender = peer.id;
        // Every claim of identity inside a message must match the authenticated sender.
        let claimed = match &msg {
            Message::Connect { from: info, .. }
            | Message::Hello { info, .. }
            | Message::HelloAck { info, .. } => Some(info.node_id),
            Message::Bye { node_id } => Some(*node_id),
            Message::Private(p) => Some(p.from),
            Message::PrivateAck { from: f, .. } => Some(*f),
            Message::Fetch { .. }
            | Message::Pending { .. }
            | Message::Lookup { .. }
            | Message::Devices
            | Message::DeviceList { .. }
            | Message::Revoke { .. }
            | Message::Punch { .. }
            | Message::PunchAsk { .. } => {
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
            self.mark_heard_id(now, sender);
        }
        match msg {
            Message::Connect { from: info, peers } => self.handle_connect(now, info, peers),
            Message::Hello { info, joined } => self.handle_hello(now, peer, info, joined),
            Message::HelloAck { info, recent } => {
                self.learn_gossip(now, recent);
                self.handle_hello_ack(now, info);
            }
            // (The claim was checked above: `node_id` is the sender.)
            Message::Bye { node_id } => self.set_status(now, node_id, PeerStatus::Offline),
            Message::Group { hop, msg } => self.receive_group(now, msg, hop, Some(peer), Via::Push),
            Message::Ring { hop, limit, msg } => {
                // Acknowledged even when a duplicate: the sender need not retry either way.
                self.ring_ack_later(now, sender, msg.dot());
                self.receive_group(now, msg, hop, Some(peer), Via::Ring(limit))
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
                self.receive_group(now, msg, hop, Some(peer), Via::Push)
            }
            Message::Forget => {
                self.view.partial = true;
                if self.view.members.contains_key(&sender) {
                    self.drop_member(sender);
                }
            }
            Message::WhoIs { ids } => self.handle_whois(peer, &ids),
            Message::Certs { peers } => self.handle_certs(now, peers),
            Message::Deposit(blob) => self.handle_deposit(now, peer, blob),
            Message::Stored { to, seq } => self.handle_stored(sender, to, seq),
            Message::Mail(blob) => self.handle_mail(peer, blob),
            Message::MailAck { from: f, upto } => self.handle_mail_ack(sender, f, upto),
            Message::Repair { msgs, more } => self.handle_repair(now, peer, msgs, more),
            Message::RepairFrom {
                msgs,
                more,
                authors,
            } => {
                for a in authors {
                    self.learn_record(a);
                }
                self.handle_repair(now, peer, msgs, more);
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
                    self.repair_members(now, peer, known - members as usize);
                }
                self.handle_digest(now, peer, lo, hi, entries, reply);
            }
            Message::Private(msg) => self.handle_private(now, peer, msg),
            Message::Revoked(r) => self.handle_revocation(now, Some(sender), r),
            Message::MirrorAsk { have, lo, hi } => self.handle_mirror_ask(peer, have, lo, hi),
            Message::Mirror { msgs, names, more } => self.handle_mirror(peer, msgs, names, more),
            Message::PrivateAck {
                from: peer,
                to,
                upto,
            } => self.handle_private_ack(peer, to, upto),
            Message::Ping { nonce, gossip } => {
                self.learn_gossip(now, gossip);
                let gossip = self.gossip_sample();
                self.reply(peer, &Message::Ack { nonce, gossip });
            }
            Message::Ack { nonce, gossip } => {
                self.learn_gossip(now, gossip);
                self.handle_ack(now, peer, nonce);
            }
            Message::PingReq { nonce, target } => {
                let local: u64 = self.rng.random();
                if self
                    .prober
                    .relay(local, peer, nonce, now + self.cfg.probe_interval)
                {
                    self.send_at(
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
            Message::Fetch { .. }
            | Message::Pending { .. }
            | Message::Lookup { .. }
            | Message::Devices
            | Message::DeviceList { .. }
            | Message::Revoke { .. }
            | Message::Punch { .. }
            | Message::PunchAsk { .. } => {}
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

    fn set_timer(&mut self, timer: Timer, at: Duration) {
        self.timers.set(timer, at);
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
        match self.info_of(id) {
            Some(i) => i.user.clone(),
            None => self
                .account
                .mirror
                .name(id)
                .map_or_else(|| format!("#{id}"), str::to_string),
        }
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
                if let Some(id) = self.random_live(&[]) {
                    if let Some(addr) = self.view.members.get(&id).map(|m| m.info.addr) {
                        self.send_digest(Peer { id, addr }, NodeId(0), NodeId(u32::MAX), true);
                    }
                }
                self.mirror_round();
                self.set_timer(Timer::AntiEntropy, now + self.cfg.anti_entropy_interval);
            }
            Timer::Probe => self.probe_timer(now),
            Timer::ProbeTimeout => self.probe_timeout(),
            Timer::Hello => self.hello_timer(now),
            Timer::Private => self.private_timer(now),
            Timer::Ring => self.ring_timer(now),
            Timer::Merge => self.merge_timer(now),
            Timer::Folding => self.release_folding(now, false),
        }
    }

    /// All held-back dots (for tests and diagnostics).
    pub fn held_back(&self) -> HashSet<Dot> {
        self.group.held_back()
    }
}

mod account;
mod broadcast;
mod clocks;
mod commands;
mod devices;
mod direct;
mod flow;
mod group;
mod handover;
mod join;
mod life;
mod mailbox;
mod members;
mod membership;
mod merges;
mod mirror;
mod net;
mod own;
mod parking;
mod paths;
mod plumtree;
mod private;
mod probing;
mod relay;
mod rendezvous;
mod restore;
mod ring;
mod send;
mod signin;
mod spread;
mod strangers;
mod summary;
mod swim;
#[cfg(test)]
mod tests;
mod timers;
mod views;
