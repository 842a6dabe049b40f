//! SWIM-style failure detection, the prober's state: one probe at a time, targets in a
//! shuffled round-robin over the members that are up (suspects get every other turn), offline
//! members pinged on a slow schedule of their own, and the pings we relay for others.
//!
//! The node decides what a silence means (suspect, offline) from its member records; this
//! part decides whom to ask next and remembers what is in flight.

use super::send::Peer;
use crate::HashMap;
use foldhash::HashMapExt;
use p2pchat_proto::NodeId;
use rand::Rng;
use std::collections::BTreeSet;
use std::time::Duration;

/// The probe in flight.
pub(super) struct Probe {
    pub(super) target: NodeId,
    pub(super) nonce: u64,
    pub(super) acked: bool,
    /// When the ping left: anything heard from the target since proves it alive.
    pub(super) sent: Duration,
}

/// Most pings relayed for others at once.
const RELAYS_MAX: usize = 1024;

/// The prober.
pub(super) struct Prober {
    /// Members currently suspect (kept apart so each round does not scan everyone).
    suspects: BTreeSet<NodeId>,
    /// Every member, in this cycle's probing order.
    order: Vec<NodeId>,
    next: usize,
    /// The next offline member to ping, and when.
    offline_next: usize,
    offline_at: Duration,
    pub(super) probe: Option<Probe>,
    /// Pings relayed for others, by our nonce: the requester, its nonce, and until when.
    relays: HashMap<u64, (Peer, u64, Duration)>,
}

impl Prober {
    pub(super) fn new() -> Self {
        Prober {
            suspects: BTreeSet::new(),
            order: Vec::new(),
            next: 0,
            offline_next: 0,
            offline_at: Duration::ZERO,
            probe: None,
            relays: HashMap::new(),
        }
    }

    /// A new member joins the probing order.
    pub(super) fn add(&mut self, id: NodeId) {
        self.order.push(id);
    }

    /// A member is gone for good (left the view).
    pub(super) fn remove(&mut self, id: NodeId) {
        self.order.retain(|&p| p != id);
        self.suspects.remove(&id);
    }

    /// Marks `id` suspect or not.
    pub(super) fn set_suspect(&mut self, id: NodeId, suspect: bool) {
        if suspect {
            self.suspects.insert(id);
        } else {
            self.suspects.remove(&id);
        }
    }

    /// The suspects.
    pub(super) fn suspects(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.suspects.iter().copied()
    }

    /// Whether the slow round of offline pings is due; if so it is scheduled `every` later.
    pub(super) fn offline_due(&mut self, now: Duration, every: Duration) -> bool {
        if now < self.offline_at {
            return false;
        }
        self.offline_at = now + every;
        true
    }

    /// A suspect to probe this turn: every other turn, to confirm or clear it quickly.
    pub(super) fn pick_suspect(&self, rng: &mut impl Rng) -> Option<NodeId> {
        self.suspects
            .iter()
            .next()
            .copied()
            .filter(|_| rng.random_bool(0.5))
    }

    /// The next member up, round-robin: offline members are left to
    /// [`Prober::next_offline`], so the time to notice a crash does not grow with them.
    pub(super) fn next_round_robin(
        &mut self,
        rng: &mut impl Rng,
        up: impl Fn(NodeId) -> bool,
    ) -> Option<NodeId> {
        for _ in 0..self.order.len() {
            if self.next >= self.order.len() {
                self.next = 0;
                // Reshuffle each cycle (Fisher-Yates with the node's seeded RNG).
                for i in (1..self.order.len()).rev() {
                    let j = rng.random_range(0..=i);
                    self.order.swap(i, j);
                }
            }
            let id = self.order[self.next];
            self.next += 1;
            if up(id) {
                return Some(id);
            }
        }
        None
    }

    /// The next offline member in turn, to ping (a partition may have healed, a member may
    /// be back without our hearing its Hello).
    pub(super) fn next_offline(&mut self, up: impl Fn(NodeId) -> bool) -> Option<NodeId> {
        let n = self.order.len();
        for k in 0..n {
            let i = (self.offline_next + k) % n;
            let id = self.order[i];
            if up(id) {
                continue;
            }
            self.offline_next = i + 1;
            return Some(id);
        }
        None
    }

    /// Relays a ping for `requester` (its `nonce`) under our `local` nonce, until `until`;
    /// false when too many are in flight.
    pub(super) fn relay(
        &mut self,
        local: u64,
        requester: Peer,
        nonce: u64,
        until: Duration,
    ) -> bool {
        if self.relays.len() >= RELAYS_MAX {
            return false;
        }
        self.relays.insert(local, (requester, nonce, until));
        true
    }

    /// The relayed ping answered by this ack, if it is one: whom to tell, with their nonce.
    pub(super) fn relayed(&mut self, local: u64) -> Option<(Peer, u64)> {
        self.relays.remove(&local).map(|(r, n, _)| (r, n))
    }

    /// Forgets relays that were never answered.
    pub(super) fn expire_relays(&mut self, now: Duration) {
        self.relays.retain(|_, (_, _, until)| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_member_up_is_probed_once_per_cycle_and_offline_ones_in_their_own_turn() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut p = Prober::new();
        for i in 1..=6 {
            p.add(NodeId(i));
        }
        let up = |id: NodeId| id.0 != 3;
        let mut cycle: Vec<u32> = (0..5)
            .filter_map(|_| p.next_round_robin(&mut rng, up))
            .map(|n| n.0)
            .collect();
        cycle.sort();
        assert_eq!(
            cycle,
            [1, 2, 4, 5, 6],
            "each member up once, the offline one never"
        );
        assert_eq!(p.next_offline(up), Some(NodeId(3)));
        assert_eq!(p.next_offline(|_| true), None);
        assert!(p.offline_due(Duration::ZERO, Duration::from_secs(1)));
        assert!(!p.offline_due(Duration::from_millis(500), Duration::from_secs(1)));
        // A suspect gets about every other turn.
        p.set_suspect(NodeId(2), true);
        let turns = (0..100)
            .filter(|_| p.pick_suspect(&mut rng) == Some(NodeId(2)))
            .count();
        assert!(turns > 40, "{turns}");
        p.remove(NodeId(2));
        assert_eq!(p.suspects().count(), 0);
    }

    #[test]
    fn relays_are_bounded_answered_once_and_expire() {
        let mut p = Prober::new();
        let r = Peer {
            id: NodeId(3),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
        };
        assert!(p.relay(1, r, 77, Duration::from_secs(1)));
        assert_eq!(p.relayed(1), Some((r, 77)));
        assert_eq!(p.relayed(1), None);
        p.relay(2, r, 78, Duration::from_secs(1));
        p.expire_relays(Duration::from_secs(2));
        assert_eq!(p.relayed(2), None);
        for i in 0..RELAYS_MAX as u64 {
            p.relay(10 + i, r, i, Duration::from_secs(9));
        }
        assert!(!p.relay(5, r, 5, Duration::from_secs(9)));
    }
}
