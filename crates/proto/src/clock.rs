//! Vector clocks: one counter per node, absent entries are zero.
//!
//! The laws (checked by property tests): `merge` is commutative, associative and idempotent;
//! `compare` is antisymmetric; `a.merge(b)` dominates both; incrementing makes a clock strictly
//! after its old value.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
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
///
/// Stored as a vector sorted by node id: lookups are a binary search over contiguous memory,
/// merges a linear walk; only the first counter of a new node pays an insertion.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VectorClock(Vec<(NodeId, u64)>);

impl VectorClock {
    /// The zero clock.
    pub fn new() -> Self {
        VectorClock(Vec::new())
    }

    /// The counter of `node` (0 when absent).
    pub fn get(&self, node: NodeId) -> u64 {
        match self.0.binary_search_by_key(&node, |&(n, _)| n) {
            Ok(i) => self.0[i].1,
            Err(_) => 0,
        }
    }

    /// Sets the counter of `node`; 0 removes the entry.
    pub fn set(&mut self, node: NodeId, value: u64) {
        match (self.0.binary_search_by_key(&node, |&(n, _)| n), value) {
            (Ok(i), 0) => {
                self.0.remove(i);
            }
            (Ok(i), v) => self.0[i].1 = v,
            (Err(_), 0) => {}
            (Err(i), v) => self.0.insert(i, (node, v)),
        }
    }

    /// Adds one to `node`'s counter and returns the new value.
    pub fn increment(&mut self, node: NodeId) -> u64 {
        let value = self.get(node).saturating_add(1);
        self.set(node, value);
        value
    }

    /// Pointwise maximum with `other`.
    pub fn merge(&mut self, other: &VectorClock) {
        let mut out = Vec::with_capacity(self.0.len().max(other.0.len()));
        let (mut a, mut b) = (self.0.iter().peekable(), other.0.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(na, va)), Some(&&(nb, vb))) => match na.cmp(&nb) {
                    Ordering::Less => {
                        out.push((na, va));
                        a.next();
                    }
                    Ordering::Greater => {
                        out.push((nb, vb));
                        b.next();
                    }
                    Ordering::Equal => {
                        out.push((na, va.max(vb)));
                        a.next();
                        b.next();
                    }
                },
                (Some(&&e), None) => {
                    out.push(e);
                    a.next();
                }
                (None, Some(&&e)) => {
                    out.push(e);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.0 = out;
    }

    /// True when every counter of `self` is >= the matching counter of `other`.
    pub fn dominates(&self, other: &VectorClock) -> bool {
        other.0.iter().all(|&(node, value)| self.get(node) >= value)
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
        self.0.iter().fold(0u64, |a, &(_, b)| a.saturating_add(b))
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
        self.0.iter().copied()
    }

    /// The non-zero entries whose node id lies in `lo..=hi`.
    pub fn range(&self, lo: NodeId, hi: NodeId) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        let start = self.0.partition_point(|&(n, _)| n < lo);
        let end = self.0.partition_point(|&(n, _)| n <= hi).max(start);
        self.0[start..end].iter().copied()
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

    #[test]
    fn set_get_and_range_agree_with_a_map() {
        let mut c = VectorClock::new();
        for (n, v) in [(5, 1), (2, 3), (9, 2), (2, 0), (7, 4)] {
            c.set(NodeId(n), v);
        }
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            vec![(NodeId(5), 1), (NodeId(7), 4), (NodeId(9), 2)]
        );
        assert_eq!(c.range(NodeId(6), NodeId(9)).count(), 2);
        assert_eq!(c.range(NodeId(10), NodeId(3)).count(), 0);
        assert_eq!(c.get(NodeId(2)), 0);
    }

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
