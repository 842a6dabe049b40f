//! What the state machines say to their drivers: outputs, app events, persist records, and
//! the commands a user gives.

use p2pchat_proto::wire::{DeviceInfo, Revocation};
use p2pchat_proto::{
    Cert, Dot, GroupMsg, Key, MailBlob, NodeId, PeerInfo, PrivateMsg, VectorClock,
};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One effect for the driver to carry out, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send one datagram.
    Send {
        /// Destination.
        to: SocketAddr,
        /// Encoded datagram (at most `MAX_DATAGRAM` bytes).
        bytes: Vec<u8>,
    },
    /// Tell the user (or the server log) something.
    Event(Event),
    /// Make this record durable before carrying out the outputs that follow it.
    Persist(Record),
}

/// A durable fact. Replaying a machine's records in order restores its durable state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// Node: who this node is.
    Identity {
        /// Its node id.
        node_id: NodeId,
        /// Its username.
        user: String,
    },
    /// Node: a group message was delivered (own messages before they are sent).
    Group(GroupMsg),
    /// Node: a private message was written (before it is sent; in the outbox until acked).
    PrivateOut(PrivateMsg),
    /// Node: a private message was delivered.
    PrivateIn(PrivateMsg),
    /// Node: `peer` acknowledged our private messages up to `upto`.
    PrivateAcked {
        /// The recipient.
        peer: NodeId,
        /// Cumulative counter.
        upto: u64,
    },
    /// Node: a member and where it listens.
    Peer(PeerInfo),
    /// Node or server: its long-term secret keys (the data dir is the identity).
    Keys {
        /// Ed25519 secret key.
        sign_sk: [u8; 32],
        /// X25519 secret key.
        dh_sk: [u8; 32],
    },
    /// Node or server: a start. Link counters restart in a new epoch on every boot.
    Boot {
        /// The boot counter.
        epoch: u32,
    },
    /// Node: the auth server's keys, pinned at the first signin (trust on first use).
    AuthKey {
        /// X25519 key (the Noise NK responder key).
        dh_pk: Key,
        /// Ed25519 key that signs certificates.
        sign_pk: Key,
    },
    /// Node: its current membership certificate.
    OwnCert(Cert),
    /// Auth server: an account.
    User {
        /// Username.
        user: String,
        /// Its stable node id.
        node_id: NodeId,
        /// The password verifier (a PHC string; never the password).
        password_hash: String,
    },
    // New variants go last: a record's variant index is part of the store format.
    /// Node as a mailbox: a private message kept for an absent recipient.
    MailboxPut(MailBlob),
    /// Node as a mailbox: what it kept for `to` from `from`, up to `upto`, is gone
    /// (acknowledged by the recipient, or expired).
    MailboxDrop {
        /// The recipient.
        to: NodeId,
        /// The sender.
        from: NodeId,
        /// Counters up to this one.
        upto: u64,
    },
    /// Auth server: a device of an account (its signing key), or its revocation. A later
    /// record of the same node id replaces an earlier one.
    Device {
        /// Username.
        user: String,
        /// The device's node id.
        node_id: NodeId,
        /// Its Ed25519 key: the same key always gets the same node id.
        key: Key,
        /// Revoked: refused from now on.
        revoked: bool,
    },
    /// Node: a device revoked by the auth server (its datagrams are refused).
    Revoked(Revocation),
    /// Node: a private message of this account between two other devices (one of them
    /// ours), learned from another device of the account.
    PrivateCopy {
        /// The message.
        msg: PrivateMsg,
        /// Its sender's username.
        from_user: String,
        /// Its recipient's username.
        to_user: String,
    },
}

/// Where a node reads back the group messages it no longer keeps in memory: its store. Reads
/// happen inside a call into the node, only for messages delivered in earlier calls (whose
/// records the driver has committed). Without an archive a node keeps every message in memory
/// (the simulator and unit tests).
pub trait Archive: Send {
    /// The delivered group message with this dot.
    fn group(&self, dot: Dot) -> Option<GroupMsg>;

    /// The stored group and private messages (`Record::Group`, `PrivateIn`, `PrivateOut`)
    /// whose text has every word of `query` (as a word or the start of one), oldest first,
    /// the newest `limit`; only the conversation with `peer` when given. `None` when this
    /// archive cannot search (the node then searches what it holds in memory).
    fn search(&self, _query: &str, _peer: Option<NodeId>, _limit: usize) -> Option<Vec<Record>> {
        None
    }
}

/// Presence of a member as seen by this node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerStatus {
    /// Known (from a bootstrap list, gossip or our own records) but not heard from yet: never
    /// shown as online until it answers.
    Unknown,
    /// Heard from recently.
    Online,
    /// A probe went unanswered; not yet declared offline.
    Suspect,
    /// Not heard from for a while, or said goodbye.
    Offline,
}

/// How this node reaches a member.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerPath {
    /// Datagrams go straight to it.
    Direct,
    /// Through a relay (both sides behind NATs that defeat a punch): the relay's node id
    /// when it is a member we know.
    Relayed {
        /// The relay.
        via: Option<NodeId>,
    },
    /// Through the auth server, the last resort when no member reaches both sides.
    Server,
}

/// Group chat or a private conversation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The group conversation.
    Group,
    /// A two-party conversation.
    Private,
}

/// One message as shown to the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// Group or private.
    pub scope: Scope,
    /// Stable id: `author.seq` for group messages, `from>to.seq` for private ones.
    pub id: String,
    /// Author node id.
    pub from_id: NodeId,
    /// Author username (`#id` if unknown).
    pub from: String,
    /// Recipient username (private only).
    pub to: Option<String>,
    /// The text.
    pub text: String,
    /// The vector clock of the message (group: the author's delivered clock at send time;
    /// private: the two-party clock). `None` when full clocks are turned off.
    pub clock: Option<VectorClock>,
    /// Lamport timestamp (group) or clock sum (private): the first display sort key.
    pub order: u64,
    /// Author sequence number.
    pub seq: u64,
    /// When the author wrote it, Unix ms by the author's clock (0: unknown).
    pub time_ms: u64,
}

impl HistoryEntry {
    /// A group message without text: a merge, written only to fold a large causal frontier
    /// (many authors talking at once) into references a message can carry. Front ends do not
    /// show it; it is delivered and counted like any other.
    pub fn is_merge(&self) -> bool {
        self.scope == Scope::Group && self.text.is_empty()
    }
}

/// Counters a node or server keeps about its traffic and the faults it dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Datagrams that failed to decode (peer fault).
    pub malformed: u64,
    /// Well-formed datagrams that made no sense here (wrong recipient, unknown sender...).
    pub rejected: u64,
    /// Group message payloads received (gossip and repair), duplicates included.
    pub group_payloads: u64,
    /// Group payloads that were already delivered or held back.
    pub group_duplicates: u64,
    /// Group messages delivered (own included).
    pub group_delivered: u64,
    /// Group messages that waited for their author's record (`WhoIs`; partial views).
    pub parked: u64,
    /// Ring broadcast: pushes sent again for want of an acknowledgement.
    pub ring_retries: u64,
    /// Ring broadcast: shares handed to the next member after two unanswered pushes.
    pub ring_handovers: u64,
    /// Group messages dropped because the hold-back queue was full.
    pub holdback_dropped: u64,
    /// Private messages delivered to this node.
    pub private_delivered: u64,
    /// Private retransmissions sent.
    pub private_retransmits: u64,
    /// Private duplicates received.
    pub private_duplicates: u64,
    /// Datagrams that failed authentication (forged, corrupted, wrong key) or were not
    /// expected unauthenticated.
    pub unauthenticated: u64,
    /// Link datagrams already seen (replays and network duplicates).
    pub replayed: u64,
    /// Link datagrams from a sender without a known certificate.
    pub unknown_sender: u64,
    /// Certificates and group messages whose signature did not verify.
    pub bad_signature: u64,
    /// Link datagrams from a sender whose certificate expired.
    pub expired: u64,
    /// Authenticated messages claiming another identity.
    pub impersonation: u64,
    /// Group messages by authors whose record never came (the waiting room was full, or
    /// 30 s passed): dropped, and repaired later.
    pub unverifiable: u64,
    /// Messages not sent because the destination is no certified member.
    pub unsendable: u64,
    /// Auth server answers with a key other than the pinned one.
    pub bad_server_key: u64,
    /// Auth requests refused by throttling (server).
    pub throttled: u64,
    /// Times the node turned to another auth server because the current one was silent.
    pub auth_failovers: u64,
    /// Datagrams from a revoked device, refused.
    pub revoked: u64,
    /// Hellos sent because the auth server said to (NAT traversal).
    pub punches: u64,
    /// Datagrams this node passed on as a relay.
    pub relayed: u64,
    /// Datagrams this node was asked to pass on and did not: the receiver is not reached
    /// directly, or the sender's budget is spent.
    pub relay_refused: u64,
    /// Datagrams that reached this node through a relay.
    pub via_relay: u64,
    /// Hellos sent through a relay to a member not reached directly.
    pub relay_tries: u64,
    /// Pings sent to keep NAT bindings open.
    pub keepalives: u64,
    /// Merge messages written (see [`HistoryEntry::is_merge`]): before an own message whose
    /// causal frontier was too large, and shared ones.
    pub merges: u64,
    /// Of those, shared merges: this node's bucket of a large frontier, folded once for
    /// everyone to reference.
    pub shared_merges: u64,
}

impl Stats {
    /// Every kind of input that was rejected, with its name for people: the one list that
    /// `/status`, the runtime's fault log and the totals read.
    pub fn rejections(&self) -> [(&'static str, u64); 12] {
        [
            ("malformed", self.malformed),
            ("unauthenticated", self.unauthenticated),
            ("replayed", self.replayed),
            ("unknown sender", self.unknown_sender),
            ("bad signature", self.bad_signature),
            ("expired certificate", self.expired),
            ("impersonation", self.impersonation),
            ("unknown author", self.unverifiable),
            ("bad server key", self.bad_server_key),
            ("throttled", self.throttled),
            ("revoked device", self.revoked),
            ("other", self.rejected),
        ]
    }

    /// All rejected input.
    pub fn rejected_total(&self) -> u64 {
        self.rejections().iter().map(|(_, n)| n).sum()
    }
}

/// What `/status` reports: who we are, where we stand, and the counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// Username.
    pub user: String,
    /// Node id, once signed in.
    pub node_id: Option<NodeId>,
    /// `signing_in`, `awaiting_bootstrap`, `member` or `stopped`.
    pub phase: &'static str,
    /// Members heard from recently.
    pub online: usize,
    /// Members known.
    pub members: usize,
    /// Behind a NAT: the auth server sees another address than our socket's.
    pub natted: bool,
    /// Members reached through a relay.
    pub relayed_peers: usize,
    /// Private messages written but not yet acknowledged by their recipients.
    pub pending_private: usize,
    /// Of those, kept by a mailbox for a recipient who is away.
    pub stored_private: usize,
    /// Private messages this node keeps, as a mailbox, for others.
    pub mailbox: usize,
    /// Commands waiting for the sign-in.
    pub queued_commands: usize,
    /// Whether the auth server answers.
    pub auth_server_reachable: bool,
    /// The auth server asked now (of those given with `--auth`).
    pub auth_server: SocketAddr,
    /// Traffic and rejection counters.
    pub stats: Stats,
}

/// One private conversation, as a front end lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConversationSummary {
    /// The other party's username.
    pub with: String,
    /// Private messages we wrote to them.
    pub sent: u64,
    /// Of those, acknowledged.
    pub acked: u64,
    /// Private messages we received from them.
    pub received: u64,
}

/// Something for the user interface or log.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Signed in and accepting commands.
    Ready {
        /// Username.
        user: String,
        /// Node id.
        node_id: NodeId,
        /// Address peers reach us at.
        addr: SocketAddr,
        /// This node started the network.
        first: bool,
    },
    /// A delivered message (own messages included, as local echo). Boxed: it is the largest
    /// event, and outputs are moved through queues on every step.
    Message(Box<HistoryEntry>),
    /// A membership or presence change.
    Peer {
        /// The member.
        info: PeerInfo,
        /// Its new status.
        status: PeerStatus,
        /// It just joined the network for the first time.
        joined: bool,
    },
    /// Reply to [`Command::Peers`]: every member, its presence and how it is reached.
    Peers(Vec<(PeerInfo, PeerStatus, PeerPath)>),
    /// Reply to [`Command::History`].
    History {
        /// Group or private.
        scope: Scope,
        /// The other party for private history.
        with: Option<String>,
        /// Messages in display order.
        messages: Vec<HistoryEntry>,
        /// How many older messages were left out (page with `--before` the first id shown).
        earlier: usize,
    },
    /// Reply to [`Command::Search`]: the matching messages, group and private, oldest first.
    Search {
        /// What was searched for.
        query: String,
        /// The matches (the newest ones when there are more than asked for).
        messages: Vec<HistoryEntry>,
    },
    /// A mailbox keeps our private message `seq` to `peer`, who is away: it will be
    /// handed over when `peer` comes back, even if we are gone by then.
    Stored {
        /// The recipient's username.
        peer: String,
        /// The message's counter in the conversation.
        seq: u64,
    },
    /// A peer acknowledged our private messages up to `upto`.
    Acked {
        /// The peer's username.
        peer: String,
        /// Cumulative counter.
        upto: u64,
    },
    /// The auth server became reachable or unreachable.
    AuthServer {
        /// Whether it answers.
        reachable: bool,
    },
    /// Reply to [`Command::Status`]. Boxed: it is large and rare.
    Status(Box<StatusReport>),
    /// Reply to [`Command::Overview`]: what a front end draws at start.
    Overview {
        /// Every member we know, with its presence.
        peers: Vec<(PeerInfo, PeerStatus)>,
        /// Private conversations we have, by the other party's username.
        conversations: Vec<ConversationSummary>,
    },
    /// Everything asked before [`Command::Settle`] is done: signed in, a member, commands
    /// carried out, private messages acknowledged, group messages handed to peers.
    Settled,
    /// A reply to a command given with a tag (see `Node::handle_tagged`): the tag echoed.
    Reply {
        /// The tag the command came with.
        tag: String,
        /// The reply.
        event: Box<Event>,
    },
    /// A problem. `fatal` means the machine stopped and the process should exit non-zero.
    Error {
        /// What went wrong, for a human.
        message: String,
        /// The machine cannot continue.
        fatal: bool,
    },
    /// Auth server log: a node was admitted.
    Admitted {
        /// Username.
        user: String,
        /// Node id.
        node_id: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// It was told it is first.
        first: bool,
    },
    /// Reply to [`Command::Devices`]: the account's devices, as the auth server knows them.
    Devices {
        /// This device's node id.
        me: NodeId,
        /// Every device of the account, by node id.
        devices: Vec<DeviceInfo>,
    },
}

/// Most messages one `/history` returns when no `--last` is given: a longer history is paged
/// (`earlier` says how many were left out).
pub const HISTORY_PAGE_MAX: usize = 1_000;
/// Matches one `/search` returns without `--last`.
pub const SEARCH_DEFAULT: usize = 50;
/// Most matches one `/search` returns.
pub const SEARCH_MAX: usize = 1_000;

/// What a user asks a node to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send a group message.
    Say(String),
    /// Send a private message to a user.
    Msg {
        /// Recipient username.
        to: String,
        /// Text.
        text: String,
    },
    /// List known members.
    Peers,
    /// Show history: the group's, or the conversation with `with`; the newest `last` only
    /// (at most [`HISTORY_PAGE_MAX`] without it), older than message `before` when given.
    History {
        /// Private peer, or `None` for the group.
        with: Option<String>,
        /// Only the newest N.
        last: Option<usize>,
        /// Only messages shown before this id (a page further back).
        before: Option<String>,
    },
    /// Search the group and private history for messages with every word of `query`; in the
    /// conversation with `with` only when given; the newest `last` matches (default
    /// [`SEARCH_DEFAULT`]). Local: nothing leaves the node.
    Search {
        /// The words to find (as words or word starts; case and accents ignored).
        query: String,
        /// Only the private conversation with this user.
        with: Option<String>,
        /// Only the newest N matches.
        last: Option<usize>,
    },
    /// Report who we are, where we stand, and the counters.
    Status,
    /// Report members and conversations (what a front end draws at start).
    Overview,
    /// List the account's devices ([`Event::Devices`]), after revoking `revoke` when given
    /// (another device of the account: its sign-ins and datagrams are refused from then on).
    Devices {
        /// The device to revoke.
        revoke: Option<NodeId>,
    },
    /// Emit [`Event::Settled`] once nothing asked so far is in flight.
    Settle,
    /// Say goodbye and stop.
    Quit,
}

/// Wraps in [`Event::Reply`] with `tag` the events among `outputs` that answer a command of
/// user `me`: errors (not fatal ones), listings, status, and the echo of own messages.
pub fn tag_replies<'a>(outputs: impl Iterator<Item = &'a mut Output>, tag: &str, me: &str) {
    for out in outputs {
        let Output::Event(e) = out else { continue };
        let reply = match e {
            Event::Error { fatal, .. } => !*fatal,
            Event::Peers(_)
            | Event::History { .. }
            | Event::Search { .. }
            | Event::Status(_)
            | Event::Devices { .. }
            | Event::Overview { .. } => true,
            Event::Message(m) => m.from == me && !m.is_merge(),
            _ => false,
        };
        if reply {
            let event = std::mem::replace(e, Event::Settled);
            *e = Event::Reply {
                tag: tag.to_string(),
                event: Box::new(event),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_tagged_and_other_events_are_not() {
        let error = |fatal| {
            Output::Event(Event::Error {
                message: "x".into(),
                fatal,
            })
        };
        let mut outs = [
            error(false),
            error(true),
            Output::Event(Event::Peers(Vec::new())),
            Output::Event(Event::Settled),
            Output::Persist(Record::Boot { epoch: 1 }),
        ];
        tag_replies(outs.iter_mut(), "t1", "ann");
        let tagged: Vec<bool> = outs
            .iter()
            .map(|o| matches!(o, Output::Event(Event::Reply { tag, .. }) if tag == "t1"))
            .collect();
        assert_eq!(tagged, [true, false, true, false, false]);
    }

    #[test]
    fn every_rejection_counter_is_listed_once_and_summed() {
        let s = Stats {
            malformed: 1,
            unauthenticated: 2,
            replayed: 4,
            unknown_sender: 8,
            bad_signature: 16,
            expired: 32,
            impersonation: 64,
            unverifiable: 128,
            bad_server_key: 256,
            throttled: 512,
            rejected: 1024,
            ..Stats::default()
        };
        assert_eq!(s.rejected_total(), 2047, "each counter exactly once");
        let mut names: Vec<&str> = s.rejections().iter().map(|(k, _)| *k).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), s.rejections().len());
    }
}
