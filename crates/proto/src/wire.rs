//! The wire format: every datagram is `MAGIC (2 bytes) | VERSION (1 byte) | postcard(Message)`.
//!
//! Limits are enforced on both sides: [`encode`] refuses anything above [`MAX_DATAGRAM`], and
//! [`decode`] refuses oversized input, a wrong magic or version, trailing bytes, and fields above
//! their bounds (texts, names, lists). See `docs/PROTOCOL.md` for the meaning of each message.

use crate::ids::{Dot, NodeId};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use thiserror::Error;

/// First two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"pC";
/// Protocol version carried in the third byte.
pub const VERSION: u8 = 1;
/// Largest datagram we send or accept: safe under common path MTUs.
pub const MAX_DATAGRAM: usize = 1200;
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

/// What a node needs to know to reach a member.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The member's node id.
    pub node_id: NodeId,
    /// The member's username.
    pub user: String,
    /// Where the member listens.
    pub addr: SocketAddr,
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
}

impl GroupMsg {
    /// The message's identity.
    pub fn dot(&self) -> Dot {
        Dot::new(self.author, self.seq)
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
}

/// Every datagram the protocol sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Node -> server: create an account.
    Signup {
        /// Request id, echoed in the reply (retries reuse it).
        req: u64,
        /// Username.
        user: String,
        /// Password.
        password: String,
    },
    /// Node -> server: sign in to an existing account.
    Signin {
        /// Request id, echoed in the reply.
        req: u64,
        /// Username.
        user: String,
        /// Password.
        password: String,
    },
    /// Server -> node: the answer to signup or signin.
    AuthReply {
        /// The request id being answered.
        req: u64,
        /// Admission or the reason for refusal.
        result: Result<Admission, AuthError>,
    },
    /// Member -> server: "I am alive; who is waiting to join?"
    Fetch {
        /// The polling member.
        node_id: NodeId,
    },
    /// Server -> member: newcomers this member should bootstrap.
    Pending {
        /// Waiting newcomers.
        newcomers: Vec<PeerInfo>,
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
}

/// Why bytes could not be decoded. Every variant is a peer fault: count and drop.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Shorter than the header, or longer than [`MAX_DATAGRAM`].
    #[error("datagram length {0} out of bounds")]
    Length(usize),
    /// Not a p2pchat datagram.
    #[error("bad magic")]
    Magic,
    /// A p2pchat datagram of another protocol version.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// The body is not a valid message.
    #[error("malformed body")]
    Body,
    /// A field exceeds its bound.
    #[error("field out of bounds: {0}")]
    Bounds(&'static str),
}

/// Why a message could not be encoded. These are local faults (the caller built it).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The encoded datagram would exceed [`MAX_DATAGRAM`].
    #[error("message of {0} bytes exceeds the {MAX_DATAGRAM}-byte datagram limit")]
    TooLarge(usize),
    /// Serialization failed.
    #[error("serialization failed")]
    Serialize,
}

/// Encodes a message into one datagram.
pub fn encode(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    let out = postcard::to_extend(msg, out).map_err(|_| EncodeError::Serialize)?;
    if out.len() > MAX_DATAGRAM {
        return Err(EncodeError::TooLarge(out.len()));
    }
    Ok(out)
}

/// The encoded size of any serializable value (used to pack batches).
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

/// Decodes one datagram and checks every bound.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    if bytes.len() < HEADER_LEN || bytes.len() > MAX_DATAGRAM {
        return Err(DecodeError::Length(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(DecodeError::Magic);
    }
    if bytes[2] != VERSION {
        return Err(DecodeError::Version(bytes[2]));
    }
    let msg: Message = postcard::from_bytes(&bytes[HEADER_LEN..]).map_err(|_| DecodeError::Body)?;
    // postcard::from_bytes ignores trailing bytes; a canonical datagram has none.
    if encoded_len(&msg) != bytes.len() - HEADER_LEN {
        return Err(DecodeError::Body);
    }
    validate(&msg)?;
    Ok(msg)
}

fn check(ok: bool, what: &'static str) -> Result<(), DecodeError> {
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Bounds(what))
    }
}

fn check_peer(p: &PeerInfo) -> Result<(), DecodeError> {
    check(valid_username(&p.user), "username")
}

fn check_group(m: &GroupMsg) -> Result<(), DecodeError> {
    check(m.seq >= 1, "seq")?;
    check(m.lamport >= 1, "lamport")?;
    check(m.deps.len() <= MAX_DEPS, "deps")?;
    check(m.deps.iter().all(|d| d.seq >= 1), "dep seq")?;
    check(m.text.len() <= MAX_TEXT_BYTES, "text")
}

fn validate(msg: &Message) -> Result<(), DecodeError> {
    match msg {
        Message::Signup { user, password, .. } | Message::Signin { user, password, .. } => {
            check(user.len() <= MAX_USERNAME, "username")?;
            check(password.len() <= MAX_PASSWORD, "password")
        }
        Message::Pending { newcomers: peers } | Message::Connect { peers, .. } => {
            peers.iter().try_for_each(check_peer)?;
            if let Message::Connect { from, .. } = msg {
                check_peer(from)?;
            }
            Ok(())
        }
        Message::Hello { info, .. } => check_peer(info),
        Message::HelloAck { info, recent } => {
            check_peer(info)?;
            recent.iter().try_for_each(check_peer)
        }
        Message::Group { msg, .. } => check_group(msg),
        Message::Repair { msgs, .. } => msgs.iter().try_for_each(check_group),
        Message::Digest {
            lo, hi, entries, ..
        } => {
            check(lo <= hi, "digest range")?;
            check(
                entries.iter().all(|(n, _)| n >= lo && n <= hi)
                    && entries.windows(2).all(|w| w[0].0 < w[1].0),
                "digest entry",
            )
        }
        Message::Private(p) => {
            check(p.seq >= 1, "seq")?;
            check(p.text.len() <= MAX_TEXT_BYTES, "text")
        }
        Message::Ping { gossip, .. } | Message::Ack { gossip, .. } => {
            gossip.iter().try_for_each(check_peer)
        }
        Message::AuthReply { .. }
        | Message::Fetch { .. }
        | Message::Bye { .. }
        | Message::PrivateAck { .. }
        | Message::PingReq { .. } => Ok(()),
    }
}

/// True for 1-32 characters from `A-Z a-z 0-9 _ . -`.
pub fn valid_username(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USERNAME
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Packs items into batches whose encoded size stays within `budget` bytes each.
/// An item larger than the budget on its own gets a batch of its own.
pub fn pack_batches<T: Serialize + Clone>(items: &[T], budget: usize) -> Vec<Vec<T>> {
    let mut batches = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut size = 0usize;
    for item in items {
        let len = encoded_len(item);
        if !current.is_empty() && size + len > budget {
            batches.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(item.clone());
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// The room left for the items of a batch message, after header, tag, flags and length prefix.
pub const BATCH_BUDGET: usize = MAX_DATAGRAM - HEADER_LEN - 16;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr() -> impl Strategy<Value = SocketAddr> {
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::from((std::net::Ipv4Addr::from(ip), port)))
    }

    fn user() -> impl Strategy<Value = String> {
        "[a-z0-9_.-]{1,32}"
    }

    fn peer() -> impl Strategy<Value = PeerInfo> {
        (any::<u32>(), user(), addr()).prop_map(|(id, user, addr)| PeerInfo {
            node_id: NodeId(id),
            user,
            addr,
        })
    }

    fn group() -> impl Strategy<Value = GroupMsg> {
        (
            any::<u32>(),
            1u64..u64::MAX,
            1u64..1_000_000,
            proptest::collection::vec((any::<u32>(), 1u64..1000), 0..8),
            ".{0,100}",
        )
            .prop_map(|(a, seq, lamport, deps, text)| GroupMsg {
                author: NodeId(a),
                seq,
                lamport,
                deps: deps
                    .into_iter()
                    .map(|(n, s)| Dot::new(NodeId(n), s))
                    .collect(),
                text,
            })
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (any::<u64>(), user(), ".{1,40}").prop_map(|(req, user, password)| Message::Signup {
                req,
                user,
                password
            }),
            (any::<u64>(), user(), ".{1,40}").prop_map(|(req, user, password)| Message::Signin {
                req,
                user,
                password
            }),
            (any::<u64>(), any::<u32>(), any::<bool>(), addr()).prop_map(
                |(req, id, first, observed)| Message::AuthReply {
                    req,
                    result: Ok(Admission {
                        node_id: NodeId(id),
                        first,
                        observed
                    })
                }
            ),
            any::<u64>().prop_map(|req| Message::AuthReply {
                req,
                result: Err(AuthError::NetworkFull)
            }),
            any::<u32>().prop_map(|n| Message::Fetch { node_id: NodeId(n) }),
            proptest::collection::vec(peer(), 0..5)
                .prop_map(|newcomers| Message::Pending { newcomers }),
            (peer(), proptest::collection::vec(peer(), 0..5))
                .prop_map(|(from, peers)| Message::Connect { from, peers }),
            (peer(), any::<bool>()).prop_map(|(info, joined)| Message::Hello { info, joined }),
            (peer(), proptest::collection::vec(peer(), 0..3))
                .prop_map(|(info, recent)| Message::HelloAck { info, recent }),
            (any::<u16>(), group()).prop_map(|(hop, msg)| Message::Group { hop, msg }),
            (proptest::collection::vec(group(), 0..4), any::<bool>())
                .prop_map(|(msgs, more)| Message::Repair { msgs, more }),
            (
                proptest::collection::btree_map(10u32..20, 1u64..100, 0..10),
                any::<bool>()
            )
                .prop_map(|(m, reply)| Message::Digest {
                    lo: NodeId(10),
                    hi: NodeId(20),
                    entries: m.into_iter().map(|(k, v)| (NodeId(k), v)).collect(),
                    reply,
                    members: 3,
                }),
            (
                any::<u32>(),
                any::<u32>(),
                1u64..1000,
                any::<u64>(),
                ".{0,100}"
            )
                .prop_map(|(f, t, seq, seen, text)| Message::Private(PrivateMsg {
                    from: NodeId(f),
                    to: NodeId(t),
                    seq,
                    seen,
                    text
                })),
            (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(f, t, upto)| {
                Message::PrivateAck {
                    from: NodeId(f),
                    to: NodeId(t),
                    upto,
                }
            }),
            (any::<u64>(), proptest::collection::vec(peer(), 0..3))
                .prop_map(|(nonce, gossip)| Message::Ping { nonce, gossip }),
            (any::<u64>(), addr()).prop_map(|(nonce, target)| Message::PingReq { nonce, target }),
            any::<u32>().prop_map(|n| Message::Bye { node_id: NodeId(n) }),
        ]
    }

    proptest! {
        #[test]
        fn codec_round_trips(msg in message()) {
            let bytes = encode(&msg).expect("generated messages fit");
            prop_assert!(bytes.len() <= MAX_DATAGRAM);
            prop_assert_eq!(decode(&bytes), Ok(msg));
        }

        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decoding_random_bodies_after_a_valid_header_never_panics(
            body in proptest::collection::vec(any::<u8>(), 0..1300)
        ) {
            let mut bytes = vec![MAGIC[0], MAGIC[1], VERSION];
            bytes.extend(body);
            let _ = decode(&bytes);
        }

        #[test]
        fn flipped_bytes_never_panic(msg in message(), idx in any::<usize>(), flip in 1u8..=255) {
            let mut bytes = encode(&msg).expect("fits");
            let i = idx % bytes.len();
            bytes[i] ^= flip;
            let _ = decode(&bytes);
        }

        #[test]
        fn batches_fit_the_budget(msgs in proptest::collection::vec(group(), 0..40)) {
            for batch in pack_batches(&msgs, BATCH_BUDGET) {
                let m = Message::Repair { msgs: batch, more: true };
                prop_assert!(encode(&m).is_ok());
            }
        }
    }

    #[test]
    fn oversized_text_is_refused_by_encode_and_decode() {
        let msg = Message::Group {
            hop: 0,
            msg: GroupMsg {
                author: NodeId(1),
                seq: 1,
                lamport: 1,
                deps: vec![],
                text: "x".repeat(MAX_DATAGRAM),
            },
        };
        assert!(matches!(encode(&msg), Err(EncodeError::TooLarge(_))));
        let msg = Message::Group {
            hop: 0,
            msg: GroupMsg {
                author: NodeId(1),
                seq: 1,
                lamport: 1,
                deps: vec![],
                text: "x".repeat(MAX_TEXT_BYTES + 1),
            },
        };
        let bytes = encode(&msg).expect("fits in a datagram");
        assert_eq!(decode(&bytes), Err(DecodeError::Bounds("text")));
    }

    #[test]
    fn wrong_magic_version_and_trailing_bytes_are_refused() {
        let mut bytes = encode(&Message::Bye { node_id: NodeId(3) }).expect("fits");
        bytes.push(0);
        assert_eq!(decode(&bytes), Err(DecodeError::Body));
        assert_eq!(decode(b"signup?user1|password123"), Err(DecodeError::Magic));
        assert_eq!(decode(&[b'p', b'C', 9, 0]), Err(DecodeError::Version(9)));
        assert_eq!(decode(&[]), Err(DecodeError::Length(0)));
    }

    #[test]
    fn usernames_are_validated() {
        assert!(valid_username("alice_01.x-y"));
        assert!(!valid_username(""));
        assert!(!valid_username("a b"));
        assert!(!valid_username(&"a".repeat(33)));
    }
}
