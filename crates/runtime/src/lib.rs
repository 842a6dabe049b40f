//! # p2pchat-runtime
//!
//! The thin tokio shell around the sans-IO state machines. Each driver task owns one machine
//! and one UDP socket, and only moves things between the world and the machine:
//! datagrams in, timer deadlines, user commands in; datagrams out, events out, records to the
//! store. No protocol decision is taken here.
//!
//! - [`spawn_node`] / [`NodeHandle`]: a chat node.
//! - [`spawn_auth_server`] / [`AuthHandle`]: the auth server; [`spawn_auth_server_on`] with
//!   an [`AuthBackend`]: SQLite, or [`PgDirectory`] for several servers on one PostgreSQL.
//! - [`Argon2Credentials`]: argon2id password verifiers for the auth server.
//!
//! Ordering guarantee: the outputs of one call into the machine are carried out in order, and
//! records are committed to the store before any datagram or event that follows them, so a
//! message shown as sent is durable.

#![forbid(unsafe_code)]

mod credentials;
mod driver;
mod postgres;

pub use credentials::Argon2Credentials;
pub use driver::{
    os_seed, spawn_auth_server, spawn_auth_server_on, spawn_node, spawn_node_with_sink, unix_ms,
    AuthBackend, AuthHandle, EventSink, NodeControl, NodeHandle, RuntimeError,
};
pub use postgres::{PgDirectory, PG_SCHEMA_VERSION};
