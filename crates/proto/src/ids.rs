//! Identifiers: [`NodeId`] names a member for life; [`Dot`] names one group message.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A member's stable identity, allocated by the auth server once per username.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The identity of a group message: its author and the author's sequence number (from 1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// Who wrote the message.
    pub author: NodeId,
    /// The author's counter: 1 for its first group message, then 2, 3, ...
    pub seq: u64,
}

impl Dot {
    /// A dot from its parts.
    pub fn new(author: NodeId, seq: u64) -> Self {
        Dot { author, seq }
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.author, self.seq)
    }
}
