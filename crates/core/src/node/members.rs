//! Member records and the set of members that are up.
//!
//! [`LiveSet`] keeps the members not offline in a vector with a position index, so that a
//! random peer is picked in O(1) and membership changes are O(1) (swap-remove), with the
//! node's seeded RNG: peer choice is reproducible in the simulator.

use crate::io::PeerStatus;
use crate::HashMap;
use ed25519_dalek::VerifyingKey;
use foldhash::HashMapExt;
use p2pchat_proto::{NodeId, PeerInfo};
use rand::Rng;
use std::time::Duration;

/// What a node knows about another member.
pub(super) struct Member {
    pub(super) info: PeerInfo,
    pub(super) status: PeerStatus,
    pub(super) last_heard: Duration,
    pub(super) suspect_since: Option<Duration>,
    /// Hello attempts left and when to send the next one.
    pub(super) hello: Option<(u32, Duration)>,
    /// Its "just joined" was already shown (retried Hellos must not show it again).
    pub(super) join_announced: bool,
    /// Its parsed signing key, once needed.
    pub(super) vk: Option<VerifyingKey>,
}

/// Members that are not offline.
#[derive(Default)]
pub(super) struct LiveSet {
    ids: Vec<NodeId>,
    pos: HashMap<NodeId, usize>,
}

impl LiveSet {
    pub(super) fn new() -> Self {
        LiveSet {
            ids: Vec::new(),
            pos: HashMap::new(),
        }
    }

    /// Adds `id`; false if it was there.
    pub(super) fn insert(&mut self, id: NodeId) -> bool {
        if self.pos.contains_key(&id) {
            return false;
        }
        self.pos.insert(id, self.ids.len());
        self.ids.push(id);
        true
    }

    /// Removes `id`; false if it was not there.
    pub(super) fn remove(&mut self, id: NodeId) -> bool {
        let Some(pos) = self.pos.remove(&id) else {
            return false;
        };
        self.ids.swap_remove(pos);
        if let Some(&moved) = self.ids.get(pos) {
            self.pos.insert(moved, pos);
        }
        true
    }

    pub(super) fn contains(&self, id: NodeId) -> bool {
        self.pos.contains_key(&id)
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The members, in no meaningful order.
    pub(super) fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// Up to `k` distinct random members, skipping `exclude`.
    pub(super) fn sample(&self, rng: &mut impl Rng, k: usize, exclude: &[NodeId]) -> Vec<NodeId> {
        let n = self.ids.len();
        if n <= k + exclude.len() {
            return self
                .ids
                .iter()
                .copied()
                .filter(|id| !exclude.contains(id))
                .take(k)
                .collect();
        }
        let mut out = Vec::with_capacity(k);
        let mut tries = 0;
        while out.len() < k && tries < 8 * k + 16 {
            tries += 1;
            let id = self.ids[rng.random_range(0..n)];
            if !exclude.contains(&id) && !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn inserts_and_removes_keep_the_index_true() {
        let mut s = LiveSet::new();
        for i in 1..=5 {
            assert!(s.insert(NodeId(i)));
        }
        assert!(!s.insert(NodeId(3)), "already there");
        assert!(s.remove(NodeId(2)));
        assert!(!s.remove(NodeId(2)));
        assert!(s.remove(NodeId(5)));
        assert_eq!(s.len(), 3);
        for id in [1, 3, 4] {
            assert!(s.contains(NodeId(id)));
            // The moved entries are still found where they are.
            assert!(s.remove(NodeId(id)));
        }
        assert!(s.is_empty());
    }

    #[test]
    fn samples_are_distinct_and_skip_the_excluded() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut s = LiveSet::new();
        for i in 1..=50 {
            s.insert(NodeId(i));
        }
        for _ in 0..100 {
            let got = s.sample(&mut rng, 5, &[NodeId(1), NodeId(2)]);
            assert_eq!(got.len(), 5);
            assert!(!got.contains(&NodeId(1)) && !got.contains(&NodeId(2)));
            let mut d = got.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 5, "distinct");
        }
        // Fewer than asked: all that are not excluded.
        let mut small = LiveSet::new();
        small.insert(NodeId(1));
        small.insert(NodeId(2));
        assert_eq!(small.sample(&mut rng, 3, &[NodeId(2)]), [NodeId(1)]);
    }
}
