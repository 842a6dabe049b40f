//! The codec: payloads and envelopes to bytes and back, with every bound checked on the way
//! in (a decoder never panics and never accepts what an encoder would refuse).

use super::{
    AuthRequest, Envelope, GroupMsg, Message, PeerInfo, HEADER_LEN, MAGIC, MAX_DATAGRAM, MAX_DEPS,
    MAX_DEVICES_LISTED, MAX_MAIL_SEALED, MAX_MIRROR, MAX_MIRROR_ASK, MAX_PASSWORD, MAX_PAYLOAD,
    MAX_RELAY_DATAGRAM, MAX_RING_ACK, MAX_RING_DOWN, MAX_TEXT_BYTES, MAX_USERNAME, MAX_WHOIS,
    TAG_LEN, VERSION,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// Why bytes could not be decoded. Every variant is a peer fault: count and drop.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Shorter than the header, or longer than [`MAX_RELAY_DATAGRAM`].
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

/// Encodes a message into a link payload of at most [`MAX_PAYLOAD`] bytes.
pub fn encode(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let out = postcard::to_allocvec(msg).map_err(|_| EncodeError::Serialize)?;
    if out.len() > MAX_PAYLOAD {
        return Err(EncodeError::TooLarge(out.len()));
    }
    Ok(out)
}

/// The encoded size of any serializable value (used to pack batches).
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

/// Decodes one link payload and checks every bound.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(DecodeError::Length(bytes.len()));
    }
    let msg: Message = from_payload(bytes)?;
    validate(&msg)?;
    Ok(msg)
}

/// Encodes a value that travels inside a Noise message (auth request and reply).
pub fn to_payload<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    postcard::to_allocvec(value).map_err(|_| EncodeError::Serialize)
}

/// Decodes a value with no trailing bytes allowed.
pub fn from_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|_| DecodeError::Body)?;
    if !rest.is_empty() {
        return Err(DecodeError::Body);
    }
    Ok(value)
}

/// Decodes and bounds-checks an auth request (after Noise decryption).
pub fn decode_auth_request(bytes: &[u8]) -> Result<AuthRequest, DecodeError> {
    let req: AuthRequest = from_payload(bytes)?;
    check(req.user.len() <= MAX_USERNAME, "username")?;
    check(req.password.len() <= MAX_PASSWORD, "password")?;
    Ok(req)
}

/// Encodes an envelope into one datagram of at most [`MAX_DATAGRAM`] bytes
/// ([`MAX_RELAY_DATAGRAM`] for the two relay envelopes, whose inner datagram is at most
/// [`MAX_DATAGRAM`]).
pub fn encode_envelope(env: &Envelope<'_>) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    let limit = match env {
        Envelope::Relay { inner, .. } | Envelope::Relayed { inner } => {
            if inner.len() > MAX_DATAGRAM {
                return Err(EncodeError::TooLarge(inner.len()));
            }
            MAX_RELAY_DATAGRAM
        }
        _ => MAX_DATAGRAM,
    };
    let out = postcard::to_extend(env, out).map_err(|_| EncodeError::Serialize)?;
    if out.len() > limit {
        return Err(EncodeError::TooLarge(out.len()));
    }
    Ok(out)
}

/// Decodes the envelope of one datagram (borrowing its sealed bytes). A relay envelope's
/// inner datagram must itself be a well-formed [`Envelope::Link`] (never another relay).
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let env = decode_one(bytes)?;
    match &env {
        Envelope::Relay { inner, .. } | Envelope::Relayed { inner } => {
            check(inner.len() <= MAX_DATAGRAM, "relayed datagram")?;
            check(
                matches!(decode_one(inner)?, Envelope::Link { .. }),
                "relayed datagram",
            )?;
        }
        _ if bytes.len() > MAX_DATAGRAM => return Err(DecodeError::Length(bytes.len())),
        _ => {}
    }
    Ok(env)
}

/// The node whose link datagram `inner` is (what a relay checks against the address the
/// relay came from); `None` when `inner` is not a link datagram.
pub fn link_sender(inner: &[u8]) -> Option<crate::NodeId> {
    match decode_one(inner) {
        Ok(Envelope::Link { from, .. }) => Some(from),
        _ => None,
    }
}

fn decode_one(bytes: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    if bytes.len() < HEADER_LEN || bytes.len() > MAX_RELAY_DATAGRAM {
        return Err(DecodeError::Length(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(DecodeError::Magic);
    }
    if bytes[2] != VERSION {
        return Err(DecodeError::Version(bytes[2]));
    }
    let (env, rest) = postcard::take_from_bytes::<Envelope<'_>>(&bytes[HEADER_LEN..])
        .map_err(|_| DecodeError::Body)?;
    if !rest.is_empty() {
        return Err(DecodeError::Body);
    }
    if let Envelope::Link {
        cert: Some(c),
        sealed,
        ..
    } = &env
    {
        check(valid_username(&c.user), "username")?;
        check(sealed.len() >= TAG_LEN, "sealed")?;
    }
    Ok(env)
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
        Message::Pending {
            newcomers: peers, ..
        }
        | Message::Connect { peers, .. } => {
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
        Message::Ring { msg, .. } => check_group(msg),
        Message::RingDown { ids } => check(ids.len() <= MAX_RING_DOWN, "ring down"),
        Message::GroupFrom { msg, author, .. } => {
            check_group(msg)?;
            check_peer(author)
        }
        Message::Repair { msgs, .. } => msgs.iter().try_for_each(check_group),
        Message::RepairFrom { msgs, authors, .. } => {
            msgs.iter().try_for_each(check_group)?;
            authors.iter().try_for_each(check_peer)
        }
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
        Message::Ping { gossip, .. }
        | Message::Ack { gossip, .. }
        | Message::Certs { peers: gossip } => gossip.iter().try_for_each(check_peer),
        Message::WhoIs { ids } => check(ids.len() <= MAX_WHOIS, "whois"),
        Message::Lookup { user } => check(valid_username(user), "username"),
        Message::Fetch { .. }
        | Message::Bye { .. }
        | Message::PrivateAck { .. }
        | Message::PingReq { .. }
        | Message::Prune
        | Message::Graft
        | Message::Forget => Ok(()),
        Message::RingAck { dots } => {
            check(dots.len() <= MAX_RING_ACK, "ring ack")?;
            check(dots.iter().all(|d| d.seq >= 1), "seq")
        }
        Message::Deposit(b) | Message::Mail(b) => {
            check(b.seq >= 1, "seq")?;
            check(b.sealed.len() <= MAX_MAIL_SEALED, "sealed")
        }
        Message::Stored { seq, .. } => check(*seq >= 1, "seq"),
        Message::MailAck { .. }
        | Message::Devices
        | Message::Revoke { .. }
        | Message::PunchAsk { .. } => Ok(()),
        Message::Punch { peer } => check_peer(peer),
        Message::DeviceList { devices } => check(devices.len() <= MAX_DEVICES_LISTED, "devices"),
        Message::Revoked(r) => check(valid_username(&r.user), "username"),
        Message::MirrorAsk { have, .. } => check(have.len() <= MAX_MIRROR_ASK, "mirror ask"),
        Message::Mirror { msgs, names, .. } => {
            check(msgs.len() <= MAX_MIRROR, "mirror")?;
            check(names.len() <= 2 * MAX_MIRROR, "names")?;
            check(names.iter().all(|(_, n)| valid_username(n)), "username")?;
            msgs.iter().try_for_each(|p| {
                check(p.seq >= 1, "seq")?;
                check(p.text.len() <= MAX_TEXT_BYTES, "text")
            })
        }
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
pub const BATCH_BUDGET: usize = MAX_PAYLOAD - 16;
