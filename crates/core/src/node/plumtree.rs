//! Plumtree's eager set (above `flood_below`, with partial views): the peers a node pushes
//! new messages to. It starts as `fanout` random members; a push that brings a copy we had
//! prunes its link (the sender is told `Prune`), a message that only repair brought grafts
//! one (`Graft`), and the first link a message arrives on joins the tree. Members that went
//! offline leave it, and it is never left empty.

use super::members::LiveSet;
use p2pchat_proto::NodeId;
use rand::Rng;

/// The eager-push peers.
#[derive(Default)]
pub(super) struct EagerSet {
    peers: Vec<NodeId>,
    started: bool,
}

impl EagerSet {
    /// Where to push a new message, skipping `exclude`.
    pub(super) fn targets(
        &mut self,
        live: &LiveSet,
        rng: &mut impl Rng,
        fanout: usize,
        exclude: &[NodeId],
    ) -> Vec<NodeId> {
        if !self.started {
            self.started = true;
            self.peers = live.sample(rng, fanout, &[]);
        }
        self.peers.retain(|&id| live.contains(id));
        if self.peers.is_empty() {
            self.peers = live.sample(rng, 1, &[]);
        }
        self.peers
            .iter()
            .copied()
            .filter(|id| !exclude.contains(id))
            .collect()
    }

    /// `id` joins the tree (if it is up).
    pub(super) fn add(&mut self, id: NodeId, live: &LiveSet) {
        if !self.peers.contains(&id) && live.contains(id) {
            self.peers.push(id);
        }
    }

    pub(super) fn contains(&self, id: NodeId) -> bool {
        self.peers.contains(&id)
    }

    /// Our link to `id` brought a copy we had: it leaves the tree. True if it was in it
    /// (then tell it `Prune`).
    pub(super) fn cut(&mut self, id: NodeId) -> bool {
        match self.peers.iter().position(|&e| e == id) {
            Some(pos) => {
                self.peers.swap_remove(pos);
                true
            }
            None => false,
        }
    }

    /// `id` pruned its link to us, or left the view.
    pub(super) fn remove(&mut self, id: NodeId) {
        self.peers.retain(|&p| p != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_tree_starts_at_fanout_loses_the_offline_and_is_never_empty() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut live = LiveSet::new();
        for i in 1..=20 {
            live.insert(NodeId(i));
        }
        let mut e = EagerSet::default();
        let t = e.targets(&live, &mut rng, 4, &[]);
        assert_eq!(t.len(), 4);
        // A link that brought a duplicate is cut once; a pruned one is removed.
        assert!(e.cut(t[0]));
        assert!(!e.cut(t[0]));
        e.remove(t[1]);
        assert_eq!(
            e.targets(&live, &mut rng, 4, &[]).len(),
            2,
            "no re-sampling"
        );
        // Everyone in it goes offline: a new random member, never an empty tree.
        for id in e.targets(&live, &mut rng, 4, &[]) {
            live.remove(id);
        }
        assert_eq!(e.targets(&live, &mut rng, 4, &[]).len(), 1);
        let outside = NodeId(99);
        e.add(outside, &live);
        assert!(!e.contains(outside), "only members that are up join");
        e.add(NodeId(20), &live);
        assert!(e.contains(NodeId(20)) || !live.contains(NodeId(20)));
    }
}
