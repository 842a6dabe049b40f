//! Strangers: certified nodes outside our view (networks larger than a view), kept so that
//! their messages can be verified and answered. Bounded: the oldest is forgotten first.

use crate::HashMap;
use ed25519_dalek::VerifyingKey;
use foldhash::HashMapExt;
use p2pchat_proto::{NodeId, PeerInfo};
use std::collections::VecDeque;

/// Most strangers remembered.
pub(super) const STRANGERS_MAX: usize = 1024;

/// Records of certified nodes outside the view, with their parsed signing keys.
pub(super) struct Strangers {
    map: HashMap<NodeId, (PeerInfo, Option<VerifyingKey>)>,
    /// Oldest first.
    fifo: VecDeque<NodeId>,
}

impl Strangers {
    pub(super) fn new() -> Self {
        Strangers {
            map: HashMap::new(),
            fifo: VecDeque::new(),
        }
    }

    /// Remembers `info` (a changed record replaces the old one and its parsed key); true if
    /// the node was not known. The oldest stranger makes room.
    pub(super) fn insert(&mut self, info: PeerInfo) -> bool {
        let id = info.node_id;
        if let Some(e) = self.map.get_mut(&id) {
            if e.0 != info {
                *e = (info, None);
            }
            return false;
        }
        while self.map.len() >= STRANGERS_MAX {
            let Some(old) = self.fifo.pop_front() else {
                break;
            };
            self.map.remove(&old);
        }
        self.fifo.push_back(id);
        self.map.insert(id, (info, None));
        true
    }

    /// Forgets `id` (it became a member).
    pub(super) fn remove(&mut self, id: NodeId) {
        if self.map.remove(&id).is_some() {
            self.fifo.retain(|&s| s != id);
        }
    }

    /// Its record.
    pub(super) fn get(&self, id: NodeId) -> Option<&PeerInfo> {
        self.map.get(&id).map(|s| &s.0)
    }

    /// Its signing key, parsed once with `parse`.
    pub(super) fn signing_key(
        &mut self,
        id: NodeId,
        parse: impl FnOnce(&PeerInfo) -> Option<VerifyingKey>,
    ) -> Option<VerifyingKey> {
        let s = self.map.get_mut(&id)?;
        if s.1.is_none() {
            s.1 = parse(&s.0);
        }
        s.1
    }

    /// All records.
    pub(super) fn records(&self) -> impl Iterator<Item = &PeerInfo> {
        self.map.values().map(|s| &s.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pchat_proto::wire::Cert;
    use std::net::SocketAddr;

    fn info(id: u32, port: u16) -> PeerInfo {
        PeerInfo {
            node_id: NodeId(id),
            user: format!("u{id}"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            cert: Cert {
                sign_pk: [1; 32],
                dh_pk: [2; 32],
                expires_ms: 0,
                sig: [0; 64],
            },
        }
    }

    #[test]
    fn the_oldest_stranger_makes_room_and_a_changed_record_replaces_the_old() {
        let mut s = Strangers::new();
        for i in 0..STRANGERS_MAX as u32 {
            assert!(s.insert(info(i, 1)));
        }
        assert!(!s.insert(info(5, 2)), "known: its record is replaced");
        assert_eq!(s.get(NodeId(5)).map(|i| i.addr.port()), Some(2));
        assert!(s.insert(info(9999, 1)));
        assert_eq!(s.get(NodeId(0)), None, "the oldest went");
        assert_eq!(s.records().count(), STRANGERS_MAX);
        s.remove(NodeId(7));
        assert_eq!(s.get(NodeId(7)), None);
        let mut parsed = 0;
        for _ in 0..2 {
            s.signing_key(NodeId(8), |_| {
                parsed += 1;
                None
            });
        }
        assert_eq!(parsed, 2, "an unparsable key is tried again");
    }
}
