//! A summary of the delivered group history: what a restart starts from instead of
//! replaying every stored message through causal delivery.
//!
//! Replaying a million messages means reading and decoding a million rows (about a second);
//! the summary is one blob of a few bytes per message (who wrote it, its Lamport time as a
//! difference, whether it is a merge; sequence numbers follow from the order), the causal
//! frontier and the stored vector clocks. The driver saves it with the record id it covers
//! and replays only the records after that. It is a cache: one that does not decode or fit
//! is ignored, and the history is replayed whole as before.

use p2pchat_proto::{NodeId, VectorClock};
use serde::{Deserialize, Serialize};

/// The layout version; a summary of another version is not used (the history is replayed).
const VERSION: u32 = 1;

/// Why a summary cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// Not a summary this version wrote.
    #[error("the history summary does not decode ({0})")]
    Undecodable(String),
    /// Written by another version.
    #[error("the history summary is of version {0}, not {VERSION}")]
    Version(u32),
    /// It does not fit the node or contradicts itself.
    #[error("the history summary does not fit: {0}")]
    Inconsistent(&'static str),
}

/// One author's stored clocks: author, each message's encoded clock length, the clocks.
pub(super) type ClockArena = (NodeId, Vec<u32>, Vec<u8>);

/// The delivered group history of a node, without bodies (see the module doc).
#[derive(Serialize, Deserialize)]
pub struct GroupSummary {
    version: u32,
    /// In delivery order: author, Lamport time minus the previous entry's, merge.
    entries: Vec<(NodeId, i64, bool)>,
    frontier: Vec<(NodeId, u64)>,
    /// Per author: each message's encoded clock length, and the clocks.
    clocks: Option<Vec<ClockArena>>,
}

/// What a summary is made of: entries, frontier, clock arenas.
pub(super) type Parts = (
    Vec<(NodeId, i64, bool)>,
    Vec<(NodeId, u64)>,
    Option<Vec<ClockArena>>,
);

impl GroupSummary {
    pub(super) fn new(
        entries: Vec<(NodeId, i64, bool)>,
        frontier: Vec<(NodeId, u64)>,
        clocks: Option<Vec<ClockArena>>,
    ) -> Self {
        GroupSummary {
            version: VERSION,
            entries,
            frontier,
            clocks,
        }
    }

    pub(super) fn into_parts(self) -> Parts {
        (self.entries, self.frontier, self.clocks)
    }

    /// The bytes to save.
    pub fn encode(&self) -> Vec<u8> {
        // A Vec of plain values always serialises.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// A summary from saved bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, SummaryError> {
        // The version leads: read it first so that another layout says so.
        let (version, _) = postcard::take_from_bytes::<u32>(bytes)
            .map_err(|e| SummaryError::Undecodable(e.to_string()))?;
        if version != VERSION {
            return Err(SummaryError::Version(version));
        }
        postcard::from_bytes(bytes).map_err(|e| SummaryError::Undecodable(e.to_string()))
    }

    /// How many messages it covers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it covers no message.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Messages per author (what the driver checks against its own index).
    pub fn delivered(&self) -> VectorClock {
        let mut counts: crate::HashMap<NodeId, u64> = Default::default();
        for &(a, _, _) in &self.entries {
            *counts.entry(a).or_default() += 1;
        }
        let mut c = VectorClock::new();
        for (a, n) in counts {
            c.set(a, n);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_round_trips_and_counts_per_author() {
        let s = GroupSummary::new(
            vec![
                (NodeId(1), 1, false),
                (NodeId(2), 1, true),
                (NodeId(1), 5, false),
            ],
            vec![(NodeId(1), 2)],
            None,
        );
        let back = GroupSummary::decode(&s.encode()).expect("decodes");
        assert_eq!(back.len(), 3);
        let d = back.delivered();
        assert_eq!((d.get(NodeId(1)), d.get(NodeId(2))), (2, 1));
        assert_eq!(back.into_parts().1, vec![(NodeId(1), 2)]);
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let mut bytes = GroupSummary::new(vec![], vec![], None).encode();
        bytes[0] = 9;
        assert!(matches!(
            GroupSummary::decode(&bytes),
            Err(SummaryError::Version(9))
        ));
        assert!(matches!(
            GroupSummary::decode(&[1, 0xff, 0xff]),
            Err(SummaryError::Undecodable(_))
        ));
        assert!(GroupSummary::decode(&[]).is_err());
    }
}
