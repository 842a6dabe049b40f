//! Vector clocks: one counter per node, absent entries are zero.
//!
//! The laws (checked by property tests): `merge` is commutative, associative and idempotent;
//! `compare` is antisymmetric; `a.merge(b)` dominates both; incrementing makes a clock strictly
//! after its old value.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

/// How two clocks relate causally.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Causality {
    /// Every counter of `self` is <= the other's, and they differ.
    Before,
    /// Every counter of `self` is >= the other's, and they differ.
    After,
    /// Identical clocks.
    Equal,
    /// Neither dominates: the events are concurrent.
    Concurrent,
}

/// A vector clock. Zero counters are never stored, so equal clocks compare equal structurally.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VectorClock(BTreeMap<NodeId, u64>);

impl VectorClock {
    /// The zero clock.
    pub fn new() -> Self {
        VectorClock(BTreeMap::new())
    }

    /// The counter of `node` (0 when absent).
    pub fn get(&self, node: NodeId) -> u64 {
        self.0.get(&node).copied().unwrap_or(0)
    }

    /// Sets the counter of `node`; 0 removes the entry.
    pub fn set(&mut self, node: NodeId, value: u64) {
        if value == 0 {
            self.0.remove(&node);
        } else {
            self.0.insert(node, value);
        }
    }

    /// Adds one to `node`'s counter and returns the new value.
    pub fn increment(&mut self, node: NodeId) -> u64 {
        let entry = self.0.entry(node).or_insert(0);
        *entry = entry.saturating_add(1);
        *entry
    }

    /// Pointwise maximum with `other`.
    pub fn merge(&mut self, other: &VectorClock) {
        for (&node, &value) in &other.0 {
            let entry = self.0.entry(node).or_insert(0);
            if value > *entry {
                *entry = value;
            }
        }
    }

    /// True when every counter of `self` is >= the matching counter of `other`.
    pub fn dominates(&self, other: &VectorClock) -> bool {
        other.0.iter().all(|(&node, &value)| self.get(node) >= value)
    }

    /// The causal relation of `self` to `other`.
    pub fn compare(&self, other: &VectorClock) -> Causality {
        let ge = self.dominates(other);
        let le = other.dominates(self);
        match (ge, le) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (false, false) => Causality::Concurrent,
        }
    }

    /// `Some(ordering)` when the clocks are causally comparable, `None` when concurrent.
    pub fn partial_cmp_causal(&self, other: &VectorClock) -> Option<Ordering> {
        match self.compare(other) {
            Causality::Before => Some(Ordering::Less),
            Causality::After => Some(Ordering::Greater),
            Causality::Equal => Some(Ordering::Equal),
            Causality::Concurrent => None,
        }
    }

    /// Sum of all counters (the number of events the clock has seen).
    pub fn sum(&self) -> u64 {
        self.0.values().fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// Number of non-zero entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the zero clock.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The non-zero entries in node order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.0.iter().map(|(&n, &v)| (n, v))
    }

    /// The non-zero entries whose node id lies in `lo..=hi`.
    pub fn range(&self, lo: NodeId, hi: NodeId) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.0.range(lo..=hi).map(|(&n, &v)| (n, v))
    }
}

impl FromIterator<(NodeId, u64)> for VectorClock {
    fn from_iter<T: IntoIterator<Item = (NodeId, u64)>>(iter: T) -> Self {
        let mut clock = VectorClock::new();
        for (node, value) in iter {
            clock.set(node, value);
        }
        clock
    }
}

impl fmt::Display for VectorClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        for (i, (node, value)) in self.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{node}: {value}")?;
        }
        write!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clock() -> impl Strategy<Value = VectorClock> {
        proptest::collection::btree_map(0u32..6, 0u64..5, 0..6)
            .prop_map(|m| m.into_iter().map(|(k, v)| (NodeId(k), v)).collect())
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in clock(), b in clock()) {
            let mut ab = a.clone(); ab.merge(&b);
            let mut ba = b.clone(); ba.merge(&a);
            prop_assert_eq!(ab, ba);
        }

        #[test]
        fn merge_is_associative(a in clock(), b in clock(), c in clock()) {
            let mut l = a.clone(); l.merge(&b); l.merge(&c);
            let mut bc = b.clone(); bc.merge(&c);
            let mut r = a.clone(); r.merge(&bc);
            prop_assert_eq!(l, r);
        }

        #[test]
        fn merge_is_idempotent_and_dominates(a in clock(), b in clock()) {
            let mut m = a.clone(); m.merge(&b);
            prop_assert!(m.dominates(&a) && m.dominates(&b));
            let mut mm = m.clone(); mm.merge(&b);
            prop_assert_eq!(mm, m);
        }

        #[test]
        fn compare_is_antisymmetric(a in clock(), b in clock()) {
            let flipped = match a.compare(&b) {
                Causality::Before => Causality::After,
                Causality::After => Causality::Before,
                other => other,
            };
            prop_assert_eq!(b.compare(&a), flipped);
            prop_assert_eq!(a.compare(&b) == Causality::Equal, a == b);
        }

        #[test]
        fn increment_moves_strictly_after(a in clock(), n in 0u32..6) {
            let mut b = a.clone();
            b.increment(NodeId(n));
            prop_assert_eq!(b.compare(&a), Causality::After);
            prop_assert_eq!(b.sum(), a.sum() + 1);
        }

        #[test]
        fn before_implies_smaller_sum(a in clock(), b in clock()) {
            if a.compare(&b) == Causality::Before {
                prop_assert!(a.sum() < b.sum());
            }
        }
    }

    #[test]
    fn zero_entries_are_not_stored() {
        let mut c = VectorClock::new();
        c.set(NodeId(1), 0);
        assert!(c.is_empty());
        assert_eq!(c, VectorClock::new());
    }
}
