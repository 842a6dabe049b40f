//! A mailbox's duties towards the recipients it keeps mail for: when it last handed each
//! its mail (a hand-over at most every few seconds while unacknowledged), and which members
//! it knows hold copies (the recipient's mailbox set when it last looked), so that a member
//! joining the set while the recipient is away gets a copy.

use crate::mail::Mailbox;
use crate::HashMap;
use foldhash::HashMapExt;
use p2pchat_proto::NodeId;
use std::time::Duration;

/// Hand-over and replication bookkeeping, per recipient.
pub(super) struct HandOver {
    handed: HashMap<NodeId, Duration>,
    holders: HashMap<NodeId, Vec<NodeId>>,
}

impl Default for HandOver {
    fn default() -> Self {
        Self::new()
    }
}

impl HandOver {
    pub(super) fn new() -> Self {
        HandOver {
            handed: HashMap::new(),
            holders: HashMap::new(),
        }
    }

    /// Whether `to` was handed its mail less than `every` ago.
    pub(super) fn handed_recently(&self, to: NodeId, now: Duration, every: Duration) -> bool {
        self.handed
            .get(&to)
            .is_some_and(|&t| now.saturating_sub(t) < every)
    }

    /// `to` is handed its mail now.
    pub(super) fn handed(&mut self, to: NodeId, now: Duration) {
        self.handed.insert(to, now);
    }

    /// Hand `to` its mail at the next chance (it may be up after all).
    pub(super) fn hand_again(&mut self, to: NodeId) {
        self.handed.remove(&to);
    }

    /// Whether the holders of `to`'s mail are known.
    pub(super) fn holders_known(&self, to: NodeId) -> bool {
        self.holders.contains_key(&to)
    }

    /// Remembers `set` as the holders of `to`'s mail.
    pub(super) fn set_holders(&mut self, to: NodeId, set: Vec<NodeId>) {
        self.holders.insert(to, set);
    }

    /// Members of `set` (the mailbox set now) not yet known to hold `to`'s mail, other than
    /// `me`; they are known from now on.
    pub(super) fn new_holders(
        &mut self,
        to: NodeId,
        set: &[NodeId],
        me: Option<NodeId>,
    ) -> Vec<NodeId> {
        let known = self.holders.entry(to).or_insert_with(|| set.to_vec());
        let new: Vec<NodeId> = set
            .iter()
            .copied()
            .filter(|id| !known.contains(id) && Some(*id) != me)
            .collect();
        known.extend(new.iter().copied());
        new
    }

    /// Keeps only the recipients we still keep mail for.
    pub(super) fn retain(&mut self, recipients: &[NodeId]) {
        self.holders.retain(|to, _| recipients.contains(to));
    }

    /// We keep no mail: nothing to remember.
    pub(super) fn clear(&mut self) {
        self.holders.clear();
    }
}

/// What the node keeps for others as a mailbox, and the hand-overs and copies of it.
#[derive(Default)]
pub(super) struct Mail {
    /// Sealed private messages for absent recipients (see [`crate::mail`]).
    pub(super) mailbox: Mailbox,
    /// Hand-overs and copies of what we keep.
    pub(super) handover: HandOver,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_overs_are_spaced_and_new_holders_found_once() {
        let mut h = HandOver::new();
        let (to, s) = (NodeId(9), Duration::from_secs);
        assert!(!h.handed_recently(to, s(0), s(2)));
        h.handed(to, s(1));
        assert!(h.handed_recently(to, s(2), s(2)));
        assert!(!h.handed_recently(to, s(3), s(2)));
        h.hand_again(to);
        assert!(!h.handed_recently(to, s(1), s(2)));
        assert!(!h.holders_known(to));
        h.set_holders(to, vec![NodeId(1), NodeId(2)]);
        assert!(h.holders_known(to));
        let set = [NodeId(2), NodeId(3), NodeId(4)];
        assert_eq!(h.new_holders(to, &set, Some(NodeId(4))), [NodeId(3)]);
        assert!(h.new_holders(to, &set, Some(NodeId(4))).is_empty(), "once");
        h.retain(&[]);
        assert_eq!(
            h.new_holders(to, &set, None),
            Vec::<NodeId>::new(),
            "a fresh set is all known"
        );
    }
}
