//! The account's private history as this device learned it from its other devices: every
//! conversation between another device of the account and anyone, kept contiguous from its
//! first message (a conversation is `(from, to)` devices; its counter is the sender's `seq`).
//!
//! Devices of one account exchange what they hold (`MirrorAsk` with `(from, to, upto)` per
//! conversation, answered by `Mirror`), so what a user sent or received on one device shows
//! on the others, and a new device catches up the account's private history. Only the next
//! message of a conversation is taken: the exchange needs no more state than the counters.
//!
//! The same message sent to several devices of a user is several conversations' messages; a
//! [`Logical`] key (sender device, writing time, text) shows it once.

use crate::HashMap;
use foldhash::{HashMapExt, HashSetExt};
use p2pchat_proto::{NodeId, PrivateMsg};
use std::collections::BTreeMap;
use std::hash::BuildHasher;

/// One message as people see it, whichever devices' conversations carried it: a sender
/// device writes its private messages with strictly increasing times, and copies for the
/// recipient's devices share sender, time and text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Logical {
    from: NodeId,
    time_ms: u64,
    text: u64,
}

impl Logical {
    pub(super) fn of(m: &PrivateMsg) -> Self {
        Logical {
            from: m.from,
            time_ms: m.time_ms,
            text: foldhash::fast::FixedState::default().hash_one(m.text.as_bytes()),
        }
    }
}

/// Messages shown so far, by [`Logical`] key: a copy of one already shown is not shown again.
#[derive(Default)]
pub(super) struct Shown(crate::HashSet<Logical>);

impl Shown {
    /// True the first time `m` (or a copy of it) is seen.
    pub(super) fn first(&mut self, m: &PrivateMsg) -> bool {
        if self.0.is_empty() {
            self.0 = crate::HashSet::with_capacity(64);
        }
        self.0.insert(Logical::of(m))
    }
}

/// Conversations of the account that this device is not part of.
#[derive(Default)]
pub(super) struct Mirror {
    streams: BTreeMap<(NodeId, NodeId), Vec<PrivateMsg>>,
    /// Usernames of the devices named in `streams`.
    names: HashMap<NodeId, String>,
}

impl Mirror {
    /// Takes `m` if it is the next message of its conversation; true if taken.
    pub(super) fn accept(&mut self, m: &PrivateMsg, from_user: &str, to_user: &str) -> bool {
        let stream = self.streams.entry((m.from, m.to)).or_default();
        if m.seq != stream.len() as u64 + 1 {
            return false;
        }
        stream.push(m.clone());
        if self.names.is_empty() {
            self.names = HashMap::with_capacity(8);
        }
        self.names.insert(m.from, from_user.to_string());
        self.names.insert(m.to, to_user.to_string());
        true
    }

    /// How far each conversation is held.
    pub(super) fn have(&self) -> impl Iterator<Item = (NodeId, NodeId, u64)> + '_ {
        self.streams
            .iter()
            .map(|(&(f, t), v)| (f, t, v.len() as u64))
    }

    /// The messages of conversation `(from, to)` after `upto`.
    pub(super) fn after(&self, from: NodeId, to: NodeId, upto: u64) -> &[PrivateMsg] {
        self.streams
            .get(&(from, to))
            .and_then(|v| v.get(upto as usize..))
            .unwrap_or(&[])
    }

    /// The username of a device named here.
    pub(super) fn name(&self, id: NodeId) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// Every message held, with the usernames of sender and recipient.
    pub(super) fn messages(&self) -> impl Iterator<Item = (&PrivateMsg, &str, &str)> {
        self.streams.values().flatten().map(|m| {
            let name = |id| self.names.get(&id).map_or("", String::as_str);
            (m, name(m.from), name(m.to))
        })
    }

    /// The users our account (`me`) talked with, as far as held here, by name.
    pub(super) fn users(&self, me: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .messages()
            .map(|(_, f, t)| if f == me { t } else { f })
            .filter(|u| *u != me && !u.is_empty())
            .map(str::to_string)
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: u32, to: u32, seq: u64, time_ms: u64, text: &str) -> PrivateMsg {
        PrivateMsg {
            from: NodeId(from),
            to: NodeId(to),
            seq,
            seen: 0,
            text: text.into(),
            time_ms,
        }
    }

    #[test]
    fn only_the_next_message_of_a_conversation_is_taken() {
        let mut m = Mirror::default();
        assert!(!m.accept(&msg(1, 2, 2, 10, "b"), "ann", "bob"), "1 first");
        assert!(m.accept(&msg(1, 2, 1, 5, "a"), "ann", "bob"));
        assert!(
            !m.accept(&msg(1, 2, 1, 5, "a"), "ann", "bob"),
            "a duplicate"
        );
        assert!(m.accept(&msg(1, 2, 2, 10, "b"), "ann", "bob"));
        assert!(m.accept(&msg(3, 1, 1, 7, "c"), "cid", "ann"));
        assert_eq!(
            m.have().collect::<Vec<_>>(),
            [(NodeId(1), NodeId(2), 2), (NodeId(3), NodeId(1), 1)]
        );
        assert_eq!(m.after(NodeId(1), NodeId(2), 1).len(), 1);
        assert!(m.after(NodeId(1), NodeId(2), 5).is_empty());
        assert!(m.after(NodeId(9), NodeId(2), 0).is_empty());
        assert_eq!(m.name(NodeId(3)), Some("cid"));
        assert_eq!(m.users("ann"), ["bob", "cid"]);
        let all: Vec<(&str, &str)> = m.messages().map(|(_, f, t)| (f, t)).collect();
        assert_eq!(all, [("ann", "bob"), ("ann", "bob"), ("cid", "ann")]);
    }

    #[test]
    fn copies_for_several_devices_are_shown_once() {
        let mut shown = Shown::default();
        // One message to a user with two devices: two conversations, one text and time.
        assert!(shown.first(&msg(1, 2, 4, 100, "hi")));
        assert!(!shown.first(&msg(1, 3, 1, 100, "hi")));
        // Another message at the same time or with the same text is another message.
        assert!(shown.first(&msg(1, 2, 5, 101, "hi")));
        assert!(shown.first(&msg(1, 2, 6, 100, "ho")));
        assert!(shown.first(&msg(4, 2, 1, 100, "hi")));
    }
}
