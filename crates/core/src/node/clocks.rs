//! Vector clocks of delivered group messages, kept small: messages do not carry full clocks
//! (only their direct dependencies), so a node that shows clocks (`full_clocks`) rebuilds
//! each one as the join of its predecessors' and stores it compactly.
//!
//! Per author, one byte arena holds every message's clock: in full every `CHECKPOINT`
//! messages, otherwise as the increments since the author's previous message (about 2 bytes
//! per changed entry instead of 16 per member). The clocks of the most recent `CACHE`
//! messages, the usual predecessors of new ones, stay decoded.

use super::summary::ClockArena;
use crate::HashMap;
use foldhash::HashMapExt;
use p2pchat_proto::{Dot, GroupMsg, NodeId, VectorClock};
use std::collections::VecDeque;

/// Delivered messages whose vector clocks stay cached.
pub(super) const CACHE: usize = 512;
/// Every this many messages of an author, its clock is stored in full (else as a delta).
const CHECKPOINT: u64 = 32;

/// How one clock is stored in an author's arena.
#[derive(serde::Serialize, serde::Deserialize)]
enum Stored {
    Full(Vec<(NodeId, u64)>),
    Delta(Vec<(NodeId, u64)>),
}

/// One author's stored clocks: `offsets[seq - 1]` is where message `seq`'s clock starts.
#[derive(Default)]
struct Arena {
    offsets: Vec<u32>,
    bytes: Vec<u8>,
}

/// The clocks of delivered messages.
pub(super) struct ClockStore {
    arenas: HashMap<NodeId, Arena>,
    cache: HashMap<Dot, VectorClock>,
    fifo: VecDeque<Dot>,
}

impl ClockStore {
    pub(super) fn new() -> Self {
        ClockStore {
            arenas: HashMap::new(),
            cache: HashMap::new(),
            fifo: VecDeque::new(),
        }
    }

    /// Computes, stores and caches the clock of `msg`, delivered now (after all its
    /// predecessors): the join of the author's previous clock and its dependencies' clocks.
    pub(super) fn deliver(&mut self, msg: &GroupMsg) -> VectorClock {
        let mut c = VectorClock::new();
        let mut prev = None;
        if msg.seq > 1 {
            prev = self.get(Dot::new(msg.author, msg.seq - 1));
            if let Some(pc) = &prev {
                c.merge(pc);
            }
        }
        for d in &msg.deps {
            match self.cache.get(d) {
                Some(dc) => c.merge(dc),
                None => {
                    if let Some(dc) = self.get(*d) {
                        c.merge(&dc);
                    }
                }
            }
        }
        c.set(msg.author, msg.seq);
        let stored = match prev.filter(|_| msg.seq % CHECKPOINT != 1) {
            Some(p) => Stored::Delta(
                c.iter()
                    .filter(|&(n, v)| p.get(n) != v)
                    .map(|(n, v)| (n, v - p.get(n).min(v)))
                    .collect(),
            ),
            None => Stored::Full(c.iter().collect()),
        };
        let arena = self.arenas.entry(msg.author).or_default();
        // Only in order: the arena is indexed by sequence number.
        if arena.offsets.len() as u64 + 1 == msg.seq {
            arena.offsets.push(arena.bytes.len() as u32);
            arena.bytes =
                postcard::to_extend(&stored, std::mem::take(&mut arena.bytes)).unwrap_or_default();
        }
        if self.fifo.len() >= CACHE {
            if let Some(old) = self.fifo.pop_front() {
                self.cache.remove(&old);
            }
        }
        self.fifo.push_back(msg.dot());
        self.cache.insert(msg.dot(), c.clone());
        c
    }

    /// The stored clocks, per author: each message's encoded length and the arena (what a
    /// summary keeps; the cache is not needed to read them back).
    pub(super) fn arenas(&self) -> Vec<ClockArena> {
        let mut out: Vec<_> = self
            .arenas
            .iter()
            .map(|(&author, a)| {
                let ends = a
                    .offsets
                    .iter()
                    .skip(1)
                    .copied()
                    .chain([a.bytes.len() as u32]);
                let lengths = ends.zip(&a.offsets).map(|(e, &o)| e - o).collect();
                (author, lengths, a.bytes.clone())
            })
            .collect();
        out.sort_unstable_by_key(|a| a.0);
        out
    }

    /// A store of the clocks [`ClockStore::arenas`] gave, if they fit: `count(author)`
    /// messages each, lengths that add up. `None` otherwise. (Clocks are decoded when read:
    /// one that does not decode is missing, never a panic.)
    pub(super) fn from_arenas(
        arenas: Vec<ClockArena>,
        count: impl Fn(NodeId) -> u64,
    ) -> Option<ClockStore> {
        let mut store = ClockStore::new();
        for (author, lengths, bytes) in arenas {
            if lengths.len() as u64 != count(author) || store.arenas.contains_key(&author) {
                return None;
            }
            let mut offsets = Vec::with_capacity(lengths.len());
            let mut at = 0usize;
            for len in lengths {
                offsets.push(u32::try_from(at).ok()?);
                at = at.checked_add(len as usize).filter(|_| len > 0)?;
            }
            if at != bytes.len() {
                return None;
            }
            store.arenas.insert(author, Arena { offsets, bytes });
        }
        Some(store)
    }

    /// The clock of a delivered message: from the cache of recent ones, or rebuilt from the
    /// author's chain of deltas back to the nearest checkpoint (at most `CHECKPOINT - 1`
    /// steps, all in memory).
    pub(super) fn get(&self, dot: Dot) -> Option<VectorClock> {
        if let Some(c) = self.cache.get(&dot) {
            return Some(c.clone());
        }
        let mut deltas: Vec<Vec<(NodeId, u64)>> = Vec::new();
        let mut seq = dot.seq;
        let mut base = loop {
            let here = Dot::new(dot.author, seq);
            if here != dot {
                if let Some(c) = self.cache.get(&here) {
                    break c.clone();
                }
            }
            let arena = self.arenas.get(&dot.author)?;
            let at = *arena
                .offsets
                .get(usize::try_from(seq).ok()?.checked_sub(1)?)? as usize;
            let (stored, _) = postcard::take_from_bytes::<Stored>(arena.bytes.get(at..)?).ok()?;
            match stored {
                Stored::Full(entries) => break entries.into_iter().collect(),
                Stored::Delta(entries) => deltas.push(entries),
            }
            seq = seq.checked_sub(1).filter(|&s| s >= 1)?;
        };
        for d in deltas.into_iter().rev() {
            for (n, inc) in d {
                let v = base.get(n).saturating_add(inc);
                base.set(n, v);
            }
        }
        Some(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(author: u32, seq: u64, deps: &[(u32, u64)]) -> GroupMsg {
        GroupMsg {
            author: NodeId(author),
            seq,
            lamport: seq,
            deps: deps.iter().map(|&(a, s)| Dot::new(NodeId(a), s)).collect(),
            text: String::new(),
            time_ms: 0,
            sig: [0; 64],
        }
    }

    #[test]
    fn clocks_are_the_join_of_predecessors_and_survive_the_cache() {
        let mut s = ClockStore::new();
        // Author 1 writes many messages; author 2 answers the first one at the end.
        let total = CACHE as u64 + 2 * CHECKPOINT + 5;
        for seq in 1..=total {
            s.deliver(&msg(1, seq, &[]));
        }
        let c = s.deliver(&msg(2, 1, &[(1, 3)]));
        assert_eq!((c.get(NodeId(1)), c.get(NodeId(2))), (3, 1));
        // Every clock of author 1, cached or rebuilt from deltas and checkpoints.
        for seq in 1..=total {
            let c = s.get(Dot::new(NodeId(1), seq)).expect("stored");
            assert_eq!(c.get(NodeId(1)), seq);
            assert_eq!(c.get(NodeId(2)), 0);
        }
        assert_eq!(s.get(Dot::new(NodeId(1), total + 1)), None, "not delivered");
        let c = s.deliver(&msg(1, total + 1, &[(2, 1)]));
        assert_eq!((c.get(NodeId(1)), c.get(NodeId(2))), (total + 1, 1));
    }
}
