//! What this device keeps about its account's other devices and its users' devices: the
//! private messages it wrote as people see them (one per recipient *user*, sent as a copy to
//! each of that user's devices), the account's private history learned from its other
//! devices ([`Mirror`]), what was shown already, and the devices the server revoked.

use super::mirror::{Mirror, Shown};
use crate::HashMap;
use foldhash::HashMapExt;
use p2pchat_proto::wire::Revocation;
use p2pchat_proto::NodeId;

/// Our private messages to one user, in writing order: each with its copies (one per device
/// of the user, each in its own conversation) and whether some device acknowledged it.
#[derive(Default)]
struct ToUser {
    msgs: Vec<(Vec<(NodeId, u64)>, bool)>,
    /// How many, from the first on, are acknowledged.
    acked_upto: u64,
}

#[derive(Default)]
pub(super) struct Account {
    /// The account's conversations between its other devices and anyone.
    pub(super) mirror: Mirror,
    /// Private messages shown (a copy of one is not shown again).
    pub(super) shown: Shown,
    /// Revoked devices, with the server's signed statement (passed on to members).
    pub(super) revoked: HashMap<NodeId, Revocation>,
    /// The writing time of our last private message: the next one is later (copies and
    /// messages are told apart by sender and time).
    pub(super) last_private_ms: u64,
    /// Our private messages, per user.
    sent: HashMap<String, ToUser>,
    /// The user of each device we wrote to.
    device_user: HashMap<NodeId, String>,
    /// The user of the last message restored (copies of one message are consecutive).
    last_user: Option<String>,
    /// Private-history exchanges asked so far (which device and range is next).
    pub(super) mirror_round: usize,
    /// The last private message restored, to join copies of one message.
    pub(super) last_restored: Option<super::mirror::Logical>,
}

impl Account {
    /// The time to write our next private message with, given the wall clock.
    pub(super) fn private_time(&mut self, wall_ms: u64) -> u64 {
        self.last_private_ms = wall_ms.max(self.last_private_ms + 1);
        self.last_private_ms
    }

    /// We wrote a message to `user` as `copies` (device, counter in that conversation);
    /// returns its number among our messages to `user` (1, 2, ...).
    pub(super) fn wrote(&mut self, user: &str, copies: Vec<(NodeId, u64)>) -> u64 {
        for &(d, _) in &copies {
            self.device_user
                .entry(d)
                .or_insert_with(|| user.to_string());
        }
        let to = self.sent.entry(user.to_string()).or_default();
        to.msgs.push((copies, false));
        to.msgs.len() as u64
    }

    /// A restored copy: part of the last message when it is another device's copy of it.
    pub(super) fn restore_copy(&mut self, user: &str, copy: (NodeId, u64), same_as_last: bool) {
        let joined = same_as_last && self.last_user.as_deref() == Some(user);
        match self.sent.get_mut(user).and_then(|t| t.msgs.last_mut()) {
            Some(last) if joined => {
                last.0.push(copy);
                self.device_user.insert(copy.0, user.to_string());
            }
            _ => {
                self.wrote(user, vec![copy]);
            }
        }
        self.last_user = Some(user.to_string());
    }

    /// `device` acknowledged its conversation up to `upto`: its user and the new length of
    /// the acknowledged prefix of our messages to it, if that grew.
    pub(super) fn acked(&mut self, device: NodeId, upto: u64) -> Option<(String, u64)> {
        let user = self.device_user.get(&device)?;
        let to = self.sent.get_mut(user)?;
        let start = to.acked_upto as usize;
        for (copies, acked) in to.msgs.iter_mut().skip(start) {
            if !*acked && copies.iter().any(|&(d, seq)| d == device && seq <= upto) {
                *acked = true;
            }
        }
        let n = start + to.msgs[start..].iter().take_while(|m| m.1).count();
        (n > start).then(|| {
            to.acked_upto = n as u64;
            (user.clone(), n as u64)
        })
    }

    /// Our messages to `user`, and how many of them are acknowledged from the first on.
    pub(super) fn counts(&self, user: &str) -> (u64, u64) {
        self.sent
            .get(user)
            .map_or((0, 0), |t| (t.msgs.len() as u64, t.acked_upto))
    }

    /// The number of the message whose copy to `device` has counter `seq`, and its user.
    pub(super) fn number_of(&self, device: NodeId, seq: u64) -> Option<(String, u64)> {
        let user = self.device_user.get(&device)?;
        let i = self
            .sent
            .get(user)?
            .msgs
            .iter()
            .rposition(|(copies, _)| copies.contains(&(device, seq)))?;
        Some((user.clone(), i as u64 + 1))
    }

    /// Whether `id` was revoked.
    pub(super) fn is_revoked(&self, id: NodeId) -> bool {
        !self.revoked.is_empty() && self.revoked.contains_key(&id)
    }

    /// Keeps a revocation; false if it was known.
    pub(super) fn revoke(&mut self, r: Revocation) -> bool {
        if self.revoked.contains_key(&r.node_id) {
            return false;
        }
        if self.revoked.is_empty() {
            self.revoked = HashMap::with_capacity(4);
        }
        self.revoked.insert(r.node_id, r);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_to_a_user_counts_once_and_is_acknowledged_by_any_device() {
        let mut a = Account::default();
        let (b1, b2, c1) = (NodeId(2), NodeId(3), NodeId(4));
        assert_eq!(a.wrote("bob", vec![(b1, 1), (b2, 1)]), 1);
        assert_eq!(a.wrote("cid", vec![(c1, 1)]), 1);
        assert_eq!(a.wrote("bob", vec![(b1, 2), (b2, 2)]), 2);
        assert_eq!(a.counts("bob"), (2, 0));
        // The second device acknowledges the second message only: nothing from the first on.
        assert_eq!(a.acked(b2, 0), None);
        let mut late = Account::default();
        late.wrote("bob", vec![(b1, 1)]);
        late.wrote("bob", vec![(b1, 2), (b2, 1)]);
        assert_eq!(late.acked(b2, 1), None, "the first is not acknowledged yet");
        assert_eq!(late.acked(b1, 1), Some(("bob".to_string(), 2)));
        // Either device's acknowledgement counts.
        assert_eq!(a.acked(b1, 1), Some(("bob".to_string(), 1)));
        assert_eq!(a.acked(b2, 2), Some(("bob".to_string(), 2)));
        assert_eq!(a.acked(b1, 2), None, "nothing new");
        assert_eq!(a.acked(NodeId(99), 2), None, "a device we never wrote to");
        assert_eq!(a.counts("bob"), (2, 2));
        assert_eq!(a.number_of(b2, 2), Some(("bob".to_string(), 2)));
        assert_eq!(a.number_of(c1, 1), Some(("cid".to_string(), 1)));
        assert_eq!(a.number_of(c1, 9), None);
    }

    #[test]
    fn restored_copies_of_one_message_are_one_message() {
        let mut a = Account::default();
        a.restore_copy("bob", (NodeId(2), 1), false);
        a.restore_copy("bob", (NodeId(3), 1), true);
        a.restore_copy("bob", (NodeId(2), 2), false);
        assert_eq!(a.counts("bob"), (2, 0));
    }

    #[test]
    fn private_times_only_grow() {
        let mut a = Account::default();
        assert_eq!(a.private_time(100), 100);
        assert_eq!(a.private_time(100), 101);
        assert_eq!(a.private_time(50), 102, "a clock stepping back");
        assert_eq!(a.private_time(500), 500);
    }

    #[test]
    fn a_revocation_is_kept_once() {
        let mut a = Account::default();
        assert!(!a.is_revoked(NodeId(5)));
        let r = Revocation {
            node_id: NodeId(5),
            user: "ann".into(),
            sig: [0; 64],
        };
        assert!(a.revoke(r.clone()));
        assert!(!a.revoke(r));
        assert!(a.is_revoked(NodeId(5)));
    }
}
