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
//! - `budget`: token buckets per sender, for whoever relays.
//! - [`mail`]: store-and-forward of private messages for absent recipients (mailboxes).
//! - [`io`]: the shared vocabulary of drivers: [`Output`], [`Event`], [`Record`], [`Command`].
//!
//! Driving a machine: feed it with `handle_datagram`, `handle_timeout` (when the deadline from
//! `poll_timeout` passes) and `handle_command`; after every call drain `poll_output` until it
//! returns `None`, carrying out each output in order (a `Persist` must be durable before the
//! `Send`s that follow it are sent).

#![forbid(unsafe_code)]

/// Hash maps with a fixed hasher: the same iteration order in every process, so a simulation
/// is reproducible byte for byte from its seed. Their keys are ids and keys of authenticated
/// parties, and the maps are bounded, so a seeded hasher would buy little.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
/// See [`HashMap`].
pub(crate) type HashSet<T> = std::collections::HashSet<T, foldhash::fast::FixedState>;

pub mod auth;
mod budget;
pub mod config;
pub mod io;
pub mod mail;
pub mod node;
pub mod secure;

pub use auth::{AuthServer, Credentials, InsecurePlainCredentials};
pub use config::{AuthConfig, NodeConfig};
pub use io::{
    Archive, Command, ConversationSummary, Event, HistoryEntry, Output, PeerPath, PeerStatus,
    Record, Scope, Stats, StatusReport, HISTORY_PAGE_MAX, SEARCH_DEFAULT, SEARCH_MAX,
};
pub use node::{GroupSummary, Host, Node, NodeParams, SummaryError};
