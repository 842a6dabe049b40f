//! Member records and the set of members that are up.
//!
//! [`LiveSet`] keeps the members not offline in a vector with a position index, so that a
//! random peer is picked in O(1) and membership changes are O(1) (swap-remove), with the
//! node's seeded RNG: peer choice is reproducible in the simulator.

use super::parking::Parking;
use super::strangers::Strangers;
use crate::io::PeerStatus;
use crate::HashMap;
use ed25519_dalek::VerifyingKey;
use foldhash::HashMapExt;
use p2pchat_proto::{NodeId, PeerInfo};
use rand::Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// Recently learned members remembered for membership repair.
const RECENT_MEMBERS: usize = 128;

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

impl Member {
    /// A member just learned: online if heard from, else unknown until it answers.
    pub(super) fn new(info: PeerInfo, heard: bool, now: Duration) -> Self {
        Member {
            info,
            // Second-hand (a bootstrap list, gossip, our own records): not shown online until
            // it answers. It is still tried as if alive.
            status: if heard {
                PeerStatus::Online
            } else {
                PeerStatus::Unknown
            },
            last_heard: now,
            suspect_since: None,
            hello: None,
            join_announced: false,
            vk: None,
        }
    }
}

/// The members in our view, by id and by address, and the most recently learned ones.
#[derive(Default)]
pub(super) struct MemberTable {
    members: BTreeMap<NodeId, Member>,
    by_addr: HashMap<SocketAddr, NodeId>,
    /// Newest last.
    recent: VecDeque<NodeId>,
}

impl MemberTable {
    pub(super) fn get(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &NodeId) -> Option<&mut Member> {
        self.members.get_mut(id)
    }

    pub(super) fn contains_key(&self, id: &NodeId) -> bool {
        self.members.contains_key(id)
    }

    pub(super) fn len(&self) -> usize {
        self.members.len()
    }

    /// Members by id.
    pub(super) fn values(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Member> {
        self.members.values_mut()
    }

    /// Members by id, with their ids.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&NodeId, &Member)> {
        self.members.iter()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &NodeId> {
        self.members.keys()
    }

    /// The member at `addr`.
    pub(super) fn id_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.by_addr.get(&addr).copied()
    }

    /// The members learned last, newest last.
    pub(super) fn recent(&self) -> &VecDeque<NodeId> {
        &self.recent
    }

    /// Adds a member (not already one).
    pub(super) fn add(&mut self, member: Member) {
        let id = member.info.node_id;
        self.by_addr.insert(member.info.addr, id);
        self.members.insert(id, member);
        if self.recent.len() >= RECENT_MEMBERS {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
    }

    /// A member's record changed (address, keys, certificate); false if it is the same or
    /// not a member.
    pub(super) fn update(&mut self, info: &PeerInfo) -> bool {
        let id = info.node_id;
        let Some(m) = self.members.get_mut(&id) else {
            return false;
        };
        if m.info == *info {
            return false;
        }
        self.by_addr.remove(&m.info.addr);
        if m.info.cert.sign_pk != info.cert.sign_pk {
            m.vk = None;
        }
        m.info = info.clone();
        self.by_addr.insert(info.addr, id);
        true
    }

    /// Removes a member.
    pub(super) fn remove(&mut self, id: NodeId) -> Option<Member> {
        let m = self.members.remove(&id)?;
        if self.by_addr.get(&m.info.addr) == Some(&id) {
            self.by_addr.remove(&m.info.addr);
        }
        self.recent.retain(|&p| p != id);
        Some(m)
    }
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

/// The node's picture of the group: the members in its view, the live ones among them, the
/// strangers it can still authenticate, the group messages parked for a record and the
/// records asked of the server.
pub(super) struct View {
    /// Members by id and address, the newest ones.
    pub(super) members: MemberTable,
    /// Members not offline, for O(1) random peer choice.
    pub(super) live: LiveSet,
    /// When we last sent each peer our whole member list.
    pub(super) full_lists_sent: HashMap<SocketAddr, Duration>,
    /// Certified nodes outside the view (see [`super::views`]), with their parsed keys.
    pub(super) strangers: Strangers,
    /// Group messages waiting for their author's record, and the records asked for.
    pub(super) parking: Parking,
    /// The network is larger than our view.
    pub(super) partial: bool,
    /// Private texts waiting for the server to say where their recipient is, by username,
    /// with when we asked.
    pub(super) lookups: HashMap<String, (Vec<String>, Duration)>,
}

impl View {
    pub(super) fn new() -> Self {
        View {
            members: MemberTable::default(),
            live: LiveSet::new(),
            full_lists_sent: HashMap::new(),
            strangers: Strangers::new(),
            parking: Parking::new(),
            partial: false,
            lookups: HashMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pchat_proto::wire::Cert;
    use rand::SeedableRng;

    fn info(id: u32, port: u16, key: u8) -> PeerInfo {
        PeerInfo {
            node_id: NodeId(id),
            user: format!("u{id}"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            cert: Cert {
                sign_pk: [key; 32],
                dh_pk: [key; 32],
                expires_ms: 0,
                sig: [0; 64],
            },
        }
    }

    #[test]
    fn the_address_index_and_recent_list_follow_the_members() {
        let mut t = MemberTable::default();
        for i in 1..=3 {
            t.add(Member::new(
                info(i, 9000 + i as u16, 1),
                false,
                Duration::ZERO,
            ));
        }
        assert_eq!(
            t.get(&NodeId(1)).map(|m| m.status),
            Some(PeerStatus::Unknown)
        );
        assert_eq!(
            t.id_at(SocketAddr::from(([127, 0, 0, 1], 9002))),
            Some(NodeId(2))
        );
        // A new address and key: the old address is free, the parsed key is dropped.
        assert!(t.update(&info(2, 9100, 2)));
        assert!(!t.update(&info(2, 9100, 2)), "same record");
        assert_eq!(t.id_at(SocketAddr::from(([127, 0, 0, 1], 9002))), None);
        assert_eq!(
            t.id_at(SocketAddr::from(([127, 0, 0, 1], 9100))),
            Some(NodeId(2))
        );
        assert!(t.remove(NodeId(2)).is_some());
        assert_eq!(t.id_at(SocketAddr::from(([127, 0, 0, 1], 9100))), None);
        assert_eq!(t.recent().iter().map(|n| n.0).collect::<Vec<_>>(), [1, 3]);
        for i in 10..(10 + RECENT_MEMBERS as u32) {
            t.add(Member::new(info(i, 0, 1), true, Duration::ZERO));
        }
        assert_eq!(t.recent().len(), RECENT_MEMBERS, "bounded");
        assert_eq!(t.len(), 2 + RECENT_MEMBERS);
    }

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
