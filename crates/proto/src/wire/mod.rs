//! The wire format, in two layers (see `docs/PROTOCOL.md` and `docs/SECURITY.md`):
//!
//! - the **envelope**: every datagram is `MAGIC (2 bytes) | VERSION (1 byte) | postcard(Envelope)`.
//!   An [`Envelope`] is either link traffic between two certified parties (an AEAD-sealed
//!   [`Message`], with the sender's id, boot epoch and per-link counter in clear) or one of the
//!   four steps of the auth exchange (key request/reply, Noise NK handshake messages).
//! - the **payload**: `postcard(Message)` ([`encode`]/[`decode`]), at most [`MAX_PAYLOAD`]
//!   bytes so that it fits a datagram with the largest envelope around it.
//!
//! Limits are enforced on both sides: encoders refuse anything above their bound, and decoders
//! refuse oversized input, a wrong magic or version, trailing bytes, and fields above their
//! bounds (texts, names, lists).

use crate::ids::{Dot, NodeId};
use serde::{Deserialize, Serialize};
use serde_big_array::BigArray;
use std::net::SocketAddr;
use thiserror::Error;

/// First two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"pC";
/// Protocol version carried in the third byte (2: everything sealed or inside Noise; 3: ring
/// broadcast, `Ring` and `RingAck`; 4: group and private messages carry their writing time;
/// 5: devices: several node ids per account, device lists, revocations, private-history sync).
pub const VERSION: u8 = 5;
/// Largest datagram we send or accept: safe under common path MTUs.
pub const MAX_DATAGRAM: usize = 1200;
/// Largest relay datagram: a whole datagram of up to [`MAX_DATAGRAM`] bytes wrapped in
/// [`Envelope::Relay`] or [`Envelope::Relayed`]. 1232 = the IPv6 minimum MTU (1280) minus the
/// IPv6 and UDP headers: still never fragmented.
pub const MAX_RELAY_DATAGRAM: usize = 1232;
/// Largest envelope overhead: header, link fields, an attached certificate, AEAD tag.
pub const MAX_ENVELOPE_OVERHEAD: usize = 224;
/// Largest encoded [`Message`]: what is left of a datagram after the envelope.
pub const MAX_PAYLOAD: usize = MAX_DATAGRAM - MAX_ENVELOPE_OVERHEAD;
/// Longest chat text, in UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 600;
/// Longest username, in bytes.
pub const MAX_USERNAME: usize = 32;
/// Longest password, in bytes.
pub const MAX_PASSWORD: usize = 256;
/// Most causal dependencies a group message may name.
pub const MAX_DEPS: usize = 48;
/// Header length (magic + version).
pub const HEADER_LEN: usize = 3;
/// AEAD tag length (ChaCha20-Poly1305).
pub const TAG_LEN: usize = 16;
/// A key request is padded to at least this many bytes, so the reply is never larger.
pub const MIN_KEY_REQUEST: usize = 160;
/// A Noise auth hello is padded to at least this many bytes, so the answer is never larger.
pub const MIN_AUTH_HELLO: usize = 640;

/// A 32-byte public key (X25519 or Ed25519).
pub type Key = [u8; 32];
/// An Ed25519 signature.
pub type Sig = [u8; 64];

/// A membership certificate: the auth server's signature binding a node id and username
/// (carried beside it in [`PeerInfo`]) to the node's public keys, until `expires_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cert {
    /// The node's Ed25519 key: signs its group messages.
    pub sign_pk: Key,
    /// The node's X25519 key: link keys are derived from it.
    pub dh_pk: Key,
    /// Unix time in milliseconds after which peers stop accepting the node's traffic.
    pub expires_ms: u64,
    /// The server's Ed25519 signature over [`Cert::signed_bytes`].
    #[serde(with = "BigArray")]
    pub sig: Sig,
}

impl Cert {
    /// The canonical bytes the server signs: domain, node id, username, keys, expiry.
    pub fn signed_bytes(
        node_id: NodeId,
        user: &str,
        sign_pk: &Key,
        dh_pk: &Key,
        expires_ms: u64,
    ) -> Vec<u8> {
        let mut b = Vec::with_capacity(16 + 4 + 1 + user.len() + 64 + 8);
        b.extend_from_slice(b"p2pchat-cert-v1\0");
        b.extend_from_slice(&node_id.0.to_le_bytes());
        b.push(user.len() as u8);
        b.extend_from_slice(user.as_bytes());
        b.extend_from_slice(sign_pk);
        b.extend_from_slice(dh_pk);
        b.extend_from_slice(&expires_ms.to_le_bytes());
        b
    }
}

/// What a node needs to know to reach a member, with the member's certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The member's node id.
    pub node_id: NodeId,
    /// The member's username.
    pub user: String,
    /// Where the member listens (not signed: a wrong address only makes traffic undeliverable).
    pub addr: SocketAddr,
    /// The server-signed certificate for `node_id` and `user`.
    pub cert: Cert,
}

/// Why the auth server refused a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum AuthError {
    /// Signup with a username that already exists.
    #[error("username is already taken")]
    UsernameTaken,
    /// Signin with an unknown user or a wrong password (deliberately indistinguishable).
    #[error("wrong username or password")]
    BadCredentials,
    /// The cap on live nodes is reached.
    #[error("the network is full (node cap reached); try again later")]
    NetworkFull,
    /// The username is empty, too long or has characters outside [A-Za-z0-9_.-].
    #[error("invalid username (1-32 characters from A-Z a-z 0-9 _ . -)")]
    InvalidUsername,
    /// The password is empty or too long.
    #[error("invalid password (1-256 bytes)")]
    InvalidPassword,
    /// Too many newcomers are waiting to be bootstrapped.
    #[error("too many newcomers waiting; try again later")]
    QueueFull,
    /// Too many failed attempts for this account or from this address.
    #[error("too many failed attempts; try again in {0} s")]
    Throttled(u32),
    /// The request's cookie is stale or was issued to another address: ask for a new one.
    #[error("stale request cookie")]
    StaleCookie,
    /// Too many signups from this address in the server's window (a rate limit, not a
    /// fault): the node waits this many seconds and asks again.
    #[error("too many signups from this address; try again in {0} s")]
    RateLimited(u32),
    /// A signin from a new device (a data dir the account has not used) while the account
    /// already has this many devices, the most the server allows.
    #[error(
        "this account already has {0} devices, the most this server allows; revoke one \
         (/devices revoke ID on another of its devices) and sign in again"
    )]
    TooManyDevices(u32),
    /// This device (its keys) was revoked from the account.
    #[error("this device was revoked from the account; sign in again from a new data dir")]
    DeviceRevoked,
}

/// A successful signup or signin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// The user's stable node id.
    pub node_id: NodeId,
    /// True when no other node is alive: this node starts the network.
    pub first: bool,
    /// The node's address as the server saw it (what peers should use).
    pub observed: SocketAddr,
    /// The node's membership certificate.
    pub cert: Cert,
    /// The server's Ed25519 key, which signs every certificate.
    pub server_sign_pk: Key,
}

/// Node -> server, inside the first Noise NK message: signup or signin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    /// Request id, echoed in the reply (retries reuse it).
    pub req: u64,
    /// Create the account instead of signing in.
    pub signup: bool,
    /// Username.
    pub user: String,
    /// Password (only ever inside the Noise channel).
    pub password: String,
    /// The node's Ed25519 public key (goes into the certificate).
    pub sign_pk: Key,
    /// The node's X25519 public key (goes into the certificate).
    pub dh_pk: Key,
    /// The cookie from the server's key reply: proves the sender receives at its address.
    pub cookie: [u8; 16],
    /// Zero padding up to [`MIN_AUTH_HELLO`], so the answer is never larger than the request.
    pub pad: Vec<u8>,
}

/// Server -> node, inside the second Noise NK message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthReply {
    /// The request id being answered.
    pub req: u64,
    /// Admission or the reason for refusal.
    pub result: Result<Admission, AuthError>,
}

/// A group (broadcast) message as authored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupMsg {
    /// Author node id.
    pub author: NodeId,
    /// Author sequence number (1, 2, ...). `(author, seq)` is the message's [`Dot`].
    pub seq: u64,
    /// Lamport timestamp: 1 + the largest timestamp the author had delivered. Orders history.
    pub lamport: u64,
    /// The causal frontier at send time: delivered messages not already implied by another
    /// delivered message (the author's own previous message is implied and never listed).
    pub deps: Vec<Dot>,
    /// The text.
    pub text: String,
    /// When the author wrote it: Unix time in milliseconds by the author's clock (shown to
    /// readers; orders nothing). 0: unknown (messages from before wire version 4).
    pub time_ms: u64,
    /// The author's Ed25519 signature over [`GroupMsg::signed_bytes`].
    #[serde(with = "BigArray")]
    pub sig: Sig,
}

impl GroupMsg {
    /// The message's identity.
    pub fn dot(&self) -> Dot {
        Dot::new(self.author, self.seq)
    }

    /// The canonical bytes the author signs: a domain tag and every field but the signature.
    /// A message without a time (written before wire version 4, kept in histories) was signed
    /// under the v1 tag without one; every newer message signs its time under the v2 tag, so
    /// a time can be neither added to an old message nor stripped from a new one.
    pub fn signed_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct SignedV1<'a>(&'a [u8], NodeId, u64, u64, &'a [Dot], &'a str);
        #[derive(Serialize)]
        struct SignedV2<'a>(&'a [u8], NodeId, u64, u64, &'a [Dot], &'a str, u64);
        let bytes = if self.time_ms == 0 {
            postcard::to_allocvec(&SignedV1(
                b"p2pchat-group-v1",
                self.author,
                self.seq,
                self.lamport,
                &self.deps,
                &self.text,
            ))
        } else {
            postcard::to_allocvec(&SignedV2(
                b"p2pchat-group-v2",
                self.author,
                self.seq,
                self.lamport,
                &self.deps,
                &self.text,
                self.time_ms,
            ))
        };
        bytes.unwrap_or_default()
    }
}

/// A private (direct) message with its two-party clock.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrivateMsg {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// Sender's per-conversation counter (1, 2, ...): the sender's entry of the clock.
    pub seq: u64,
    /// How many of the recipient's messages the sender had delivered: the other entry.
    pub seen: u64,
    /// The text.
    pub text: String,
    /// When the sender wrote it: Unix time in milliseconds by the sender's clock (shown
    /// only). 0: unknown.
    pub time_ms: u64,
}

/// The sender's certificate, attached to link traffic until the receiver has answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderCert {
    /// The sender's username.
    pub user: String,
    /// The sender's certificate.
    pub cert: Cert,
}

/// The outer layer of every datagram.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope<'a> {
    /// Link traffic: a [`Message`] sealed with the key of the (sender, receiver) link.
    Link {
        /// The sender's node id (0 is the auth server).
        from: NodeId,
        /// The sender's boot counter: a restarted sender starts a new counter space.
        epoch: u32,
        /// Per-link datagram counter (from 1); with `epoch`, the AEAD nonce.
        counter: u64,
        /// The sender's certificate, until the receiver is known to have it.
        cert: Option<SenderCert>,
        /// ChaCha20-Poly1305 ciphertext and tag.
        #[serde(borrow)]
        sealed: &'a [u8],
    },
    /// Node -> server: "what is your key?" (padded to [`MIN_KEY_REQUEST`]).
    KeyRequest {
        /// Zero padding.
        #[serde(borrow)]
        pad: &'a [u8],
    },
    /// Server -> node: its public keys and a short-lived cookie for the sender's address.
    KeyReply {
        /// X25519 static key (the Noise NK responder key, and the server's fingerprint).
        dh_pk: Key,
        /// Ed25519 key that signs certificates (confirmed again inside Noise).
        sign_pk: Key,
        /// Keyed MAC of the sender's address and the current time bucket.
        cookie: [u8; 16],
    },
    /// Node -> server: Noise NK message 1, carrying an [`AuthRequest`].
    AuthHello {
        /// The Noise message.
        #[serde(borrow)]
        noise: &'a [u8],
    },
    /// Server -> node: Noise NK message 2, carrying an [`AuthReply`].
    AuthAnswer {
        /// The first 8 bytes of the hello being answered (its ephemeral key), so a node with
        /// several attempts in flight knows which handshake reads it.
        to: [u8; 8],
        /// The Noise message.
        #[serde(borrow)]
        noise: &'a [u8],
    },
    /// Node -> relay: "pass this datagram on to `to`" (a member this node cannot reach
    /// directly, across NATs). `inner` is a whole [`Envelope::Link`] datagram from the sender
    /// to `to`, sealed end to end: the relay cannot read or change it.
    Relay {
        /// The member the datagram is for.
        to: NodeId,
        /// The datagram (header included), at most [`MAX_DATAGRAM`] bytes.
        #[serde(borrow)]
        inner: &'a [u8],
    },
    /// Relay -> node: a datagram passed on from the member named in its link envelope.
    /// Answers go back through the same relay.
    Relayed {
        /// The datagram (header included), at most [`MAX_DATAGRAM`] bytes.
        #[serde(borrow)]
        inner: &'a [u8],
    },
}

/// Every message exchanged over a link (inside [`Envelope::Link`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Member -> server: "I am alive; who is waiting to join?"
    Fetch {
        /// The polling member.
        node_id: NodeId,
    },
    /// Server -> member: newcomers this member should bootstrap.
    Pending {
        /// Waiting newcomers.
        newcomers: Vec<PeerInfo>,
        /// A renewed certificate for the polling member, when its current one is half-spent.
        renewed: Option<Cert>,
    },
    /// Member -> newcomer: a chunk of the member list.
    Connect {
        /// The bootstrapping member.
        from: PeerInfo,
        /// Known members.
        peers: Vec<PeerInfo>,
    },
    /// Node -> member: announce self (newcomer, or a returning node).
    Hello {
        /// The announcing node.
        info: PeerInfo,
        /// True the first time this node joins the network ("just joined the chat!").
        joined: bool,
    },
    /// Member -> node: answer to Hello.
    HelloAck {
        /// The answering member.
        info: PeerInfo,
        /// Members the answering one learned most recently (newcomers bootstrapped at the
        /// same time learn of each other through this).
        recent: Vec<PeerInfo>,
    },
    /// Node -> members: leaving now, mark me offline.
    Bye {
        /// The leaving node.
        node_id: NodeId,
    },
    /// A group message pushed by gossip.
    Group {
        /// Hops travelled so far (0 from the author).
        hop: u16,
        /// The message.
        msg: GroupMsg,
    },
    /// Anti-entropy: group messages the receiver lacked, oldest first.
    Repair {
        /// Messages in a causally consistent order.
        msgs: Vec<GroupMsg>,
        /// The sender had more to send than fitted: ask again.
        more: bool,
    },
    /// Anti-entropy: the sender's delivered counters for authors in `lo..=hi`.
    Digest {
        /// First author id covered.
        lo: NodeId,
        /// Last author id covered.
        hi: NodeId,
        /// Non-zero delivered counters in the range (absent means 0).
        entries: Vec<(NodeId, u64)>,
        /// The receiver should answer with its own digest if the sender is ahead anywhere.
        reply: bool,
        /// How many members the sender knows, itself included (membership anti-entropy: a
        /// receiver that knows more answers with its member list).
        members: u32,
    },
    /// A private message.
    Private(PrivateMsg),
    /// Cumulative acknowledgement of private messages.
    PrivateAck {
        /// The acknowledging recipient.
        from: NodeId,
        /// The original sender.
        to: NodeId,
        /// Every message up to this counter is delivered.
        upto: u64,
    },
    /// Failure detector probe, with a little membership gossip.
    Ping {
        /// Echoed in the Ack.
        nonce: u64,
        /// A few members the sender knows.
        gossip: Vec<PeerInfo>,
    },
    /// Answer to Ping.
    Ack {
        /// The Ping's nonce.
        nonce: u64,
        /// A few members the sender knows.
        gossip: Vec<PeerInfo>,
    },
    /// Ask the receiver to probe `target` on the sender's behalf (indirect probe).
    PingReq {
        /// Echoed back in an Ack if the target answers.
        nonce: u64,
        /// The node to probe.
        target: SocketAddr,
    },
    /// Plumtree: "your copies reach me another way too; stop pushing eagerly to me".
    Prune,
    /// Plumtree: "I got a message only through repair; push eagerly to me again".
    Graft,
    /// Partial views: "you left my view; forget me too" (keeps views symmetric, so nobody
    /// keeps sending to a node that no longer holds its certificate).
    Forget,
    /// "Send me the member records of these nodes" (authors of group messages this node
    /// must verify but does not know, in a network larger than its view).
    WhoIs {
        /// At most [`MAX_WHOIS`] node ids.
        ids: Vec<NodeId>,
    },
    /// A group message pushed by gossip in a network larger than a view, with its author's
    /// record (receivers rarely know the author there).
    GroupFrom {
        /// Hops travelled so far (0 from the author).
        hop: u16,
        /// The message.
        msg: GroupMsg,
        /// The author's member record.
        author: PeerInfo,
    },
    /// `Repair` in a network larger than a view, with the records of the messages' authors.
    RepairFrom {
        /// Messages in a causally consistent order.
        msgs: Vec<GroupMsg>,
        /// The sender had more to send than fitted: ask again.
        more: bool,
        /// Member records of the authors of `msgs`.
        authors: Vec<PeerInfo>,
    },
    /// Member -> server: "where is this user?" (a private message to someone outside the
    /// view, in a network larger than a view). Answered with `Certs`, empty if not online.
    Lookup {
        /// The username.
        user: String,
    },
    /// Answer to `WhoIs` or `Lookup`: the records the sender knows.
    Certs {
        /// Member records (server-signed certificates inside).
        peers: Vec<PeerInfo>,
    },
    /// Ring broadcast (full membership above the flooding threshold): a group message the
    /// receiver delivers and passes on to the members of the ring between itself and `limit`.
    Ring {
        /// Hops travelled so far (0 from the author).
        hop: u16,
        /// End of the receiver's share of the ring (exclusive; clockwise by node id). The
        /// receiver itself means the whole ring.
        limit: NodeId,
        /// The message.
        msg: GroupMsg,
    },
    /// "Your `Ring` pushes of these messages reached me" (else the sender retries, then
    /// hands the share to the next member of the ring). Pushes that arrive together are
    /// acknowledged together.
    RingAck {
        /// The messages received (at most [`MAX_RING_ACK`]).
        dots: Vec<Dot>,
    },
    /// "These members did not answer my pushes": sent to the members that push to them, which
    /// leave them out of their rings until they hear from them (and ping them to see).
    RingDown {
        /// At most [`MAX_RING_DOWN`] node ids.
        ids: Vec<NodeId>,
    },
    /// Sender -> mailbox: keep this private message for its absent recipient.
    Deposit(MailBlob),
    /// Mailbox -> sender: "I keep your message `seq` to `to`" (the sender shows it stored).
    Stored {
        /// The recipient.
        to: NodeId,
        /// The message's counter in the conversation.
        seq: u64,
    },
    /// Mailbox -> recipient: a private message kept for you.
    Mail(MailBlob),
    /// Recipient -> mailbox: "I have `from`'s messages up to `upto`: drop them".
    MailAck {
        /// The original sender.
        from: NodeId,
        /// Cumulative counter of that conversation.
        upto: u64,
    },
    /// Node -> server: "list my account's devices" (answered with `DeviceList`).
    Devices,
    /// Server -> node: the account's devices.
    DeviceList {
        /// At most [`MAX_DEVICES_LISTED`] devices, by node id.
        devices: Vec<DeviceInfo>,
    },
    /// Node -> server: "revoke this other device of my account" (answered with `Revoked`,
    /// then `DeviceList`).
    Revoke {
        /// The device to revoke.
        node_id: NodeId,
    },
    /// A server-signed revocation: from the server to the device that asked, then from
    /// member to member (each passes on one it did not know).
    Revoked(Revocation),
    /// Between devices of one account: "of the private conversations `(from, to)` from `lo`
    /// up to `hi` (exclusive; `None`: all the rest), these are the ones I hold and how far:
    /// send what I lack" (answered with `Mirror`). Conversations not listed in the range are
    /// ones the asker does not have.
    MirrorAsk {
        /// At most [`MAX_MIRROR_ASK`] conversations, each contiguous from 1 to `upto`.
        have: Vec<(NodeId, NodeId, u64)>,
        /// First conversation of the range.
        lo: (NodeId, NodeId),
        /// End of the range (exclusive).
        hi: Option<(NodeId, NodeId)>,
    },
    /// Between devices of one account: private messages of the account, in each
    /// conversation's order, with the usernames of the devices they name.
    Mirror {
        /// At most [`MAX_MIRROR`] messages.
        msgs: Vec<PrivateMsg>,
        /// Username of each device in `msgs`.
        names: Vec<(NodeId, String)>,
        /// The sender had more to send than fitted: ask again.
        more: bool,
    },
    /// Server -> node (NAT traversal): "send to this node now; it is told the same about
    /// you" (or, for a newcomer, "this member is bootstrapping you"). Sending opens the
    /// mapping in a NAT in front of the receiver of this message, so the other's datagrams
    /// get in.
    Punch {
        /// The node to send to, at the address the server sees it at.
        peer: PeerInfo,
    },
    /// Member -> server (NAT traversal): "I cannot reach this member: have us both send to
    /// each other" (answered with a `Punch` to each, when both hold a lease).
    PunchAsk {
        /// The member that does not answer.
        node_id: NodeId,
    },
}

/// One device of an account, as the auth server lists it (`/devices`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The device's node id.
    pub node_id: NodeId,
    /// Holds a lease now (polls the server).
    pub online: bool,
    /// When it last polled (Unix ms), 0 if not since the server started.
    pub last_seen_ms: u64,
    /// Revoked: its sign-ins and datagrams are refused.
    pub revoked: bool,
}

/// The auth server's signed statement that a device no longer belongs to its account:
/// members refuse its datagrams from then on (its old messages still verify).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked device.
    pub node_id: NodeId,
    /// Its account.
    pub user: String,
    /// The server's Ed25519 signature over [`Revocation::signed_bytes`].
    #[serde(with = "BigArray")]
    pub sig: Sig,
}

impl Revocation {
    /// The canonical bytes the server signs: domain, node id, username.
    pub fn signed_bytes(node_id: NodeId, user: &str) -> Vec<u8> {
        let mut b = Vec::with_capacity(18 + 4 + 1 + user.len());
        b.extend_from_slice(b"p2pchat-revoke-v1\0");
        b.extend_from_slice(&node_id.0.to_le_bytes());
        b.push(user.len() as u8);
        b.extend_from_slice(user.as_bytes());
        b
    }
}

/// Most private messages one `Mirror` carries (the datagram bound decides first).
pub const MAX_MIRROR: usize = 32;
/// Most conversations one `MirrorAsk` names.
pub const MAX_MIRROR_ASK: usize = 64;
/// Most devices one `DeviceList` names.
pub const MAX_DEVICES_LISTED: usize = 32;

/// A private message sealed for its recipient alone, as a mailbox keeps it: the mailbox sees
/// who wrote to whom, the counter, the expiry and the size, and can neither read nor alter
/// the rest (XChaCha20-Poly1305 under a key only the two parties can derive; the clear
/// fields are authenticated as associated data). The sender signs the whole blob, so any
/// member can check it came from `from` before keeping or passing it on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MailBlob {
    /// The sender.
    pub from: NodeId,
    /// The recipient.
    pub to: NodeId,
    /// The message's counter in the conversation (`PrivateMsg::seq`).
    pub seq: u64,
    /// Unix ms after which mailboxes drop it.
    pub expires_ms: u64,
    /// Random per blob.
    pub nonce: [u8; 24],
    /// `postcard(PrivateMsg)`, sealed.
    pub sealed: Vec<u8>,
    /// The sender's Ed25519 signature over [`MailBlob::signed_bytes`].
    #[serde(with = "BigArray")]
    pub sig: Sig,
}

impl MailBlob {
    /// What the sender signs: a domain tag and every field but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Signed<'a>(&'a [u8], NodeId, NodeId, u64, u64, &'a [u8; 24], &'a [u8]);
        postcard::to_allocvec(&Signed(
            b"p2pchat-mail-v1",
            self.from,
            self.to,
            self.seq,
            self.expires_ms,
            &self.nonce,
            &self.sealed,
        ))
        .unwrap_or_default()
    }
}

/// Largest sealed part of a [`MailBlob`]: a whole private message and the tag.
pub const MAX_MAIL_SEALED: usize = MAX_TEXT_BYTES + 64;

/// Most messages one `RingAck` may acknowledge.
pub const MAX_RING_ACK: usize = 64;

/// Most members one `RingDown` may name.
pub const MAX_RING_DOWN: usize = 16;

/// Most ids one `WhoIs` may ask for.
pub const MAX_WHOIS: usize = 16;

mod codec;
#[cfg(test)]
mod tests;

pub use codec::*;
