//! # p2pchat-proto
//!
//! The pure, fuzzable bottom layer of p2pchat: everything that crosses the wire and nothing
//! that does I/O.
//!
//! - [`ids`]: node ids and message dots (author + sequence number).
//! - [`clock`]: [`VectorClock`] with increment, merge and causal comparison.
//! - [`wire`]: every datagram of the protocol and the versioned binary codec: an envelope
//!   (magic + version header, postcard body, never above [`wire::MAX_DATAGRAM`] bytes) around
//!   sealed link payloads or the Noise auth exchange.
//!
//! Decoding arbitrary bytes never panics: it returns a [`wire::DecodeError`].

#![forbid(unsafe_code)]

pub mod clock;
pub mod ids;
pub mod wire;

pub use clock::{Causality, VectorClock};
pub use ids::{Dot, NodeId};
pub use wire::{
    decode, decode_envelope, encode, encode_envelope, link_sender, Admission, AuthError, AuthReply,
    AuthRequest, Cert, DecodeError, EncodeError, Envelope, GroupMsg, Key, MailBlob, Message,
    PeerInfo, PrivateMsg, SenderCert, Sig, MAX_DATAGRAM, MAX_PAYLOAD, MAX_RELAY_DATAGRAM,
    MAX_TEXT_BYTES,
};
