//! # p2pchat-core
//!
//! The protocol brain of p2pchat as sans-IO state machines. Nothing here opens a socket, reads
//! a clock, touches a file or asks the OS for randomness: every call takes `now`, randomness is
//! a seeded RNG owned by the machine, and effects come out as [`Output`]s for a driver (the tokio
//! runtime, the simulator, or a unit test) to carry out.
//!
//! - [`node`]: [`Node`], a chat peer: join flow, gossip + anti-entropy group chat with causal
//!   delivery, private messages with acknowledgements and retransmission, failure detection.
//! - [`auth`]: [`AuthServer`]: signup/signin, stable node ids, node cap, newcomer queue.
//! - [`config`]: every tunable, documented, with defaults.
//! - [`mail`]: store-and-forward of private messages for absent recipients (mailboxes).
//! - [`io`]: the shared vocabulary of drivers: [`Output`], [`Event`], [`Record`], [`Command`].
//!
//! Driving a machine: feed it with `handle_datagram`, `handle_timeout` (when the deadline from
//! `poll_timeout` passes) and `handle_command`; after every call drain `poll_output` until it
//! returns `None`, carrying out each output in order (a `Persist` must be durable before the
//! `Send`s that follow it are sent).

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod io;
pub mod mail;
pub mod node;
pub mod secure;

pub use auth::{AuthServer, Credentials, InsecurePlainCredentials};
pub use config::{AuthConfig, NodeConfig};
pub use io::{
    Archive, Command, ConversationSummary, Event, HistoryEntry, Output, PeerStatus, Record, Scope,
    Stats, StatusReport,
};
pub use node::{Node, NodeParams};
