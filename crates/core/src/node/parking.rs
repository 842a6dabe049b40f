//! Group messages waiting for their author's record (networks larger than a view: a node
//! rarely knows every author), and when each record was last asked for. Bounded in count
//! and in time: a message whose author's record never comes is dropped after `TTL`, and
//! anti-entropy brings it again.

use super::send::Peer;
use super::Via;
use crate::HashMap;
use foldhash::HashMapExt;
use p2pchat_proto::{GroupMsg, NodeId};
use std::time::Duration;

/// Group messages that may wait for their author's record, in all.
const PARKED_MAX: usize = 1024;
/// Least time between two `WhoIs` for the same record.
const ASK_EVERY: Duration = Duration::from_secs(1);
/// How long a message waits for its author's record.
const TTL: Duration = Duration::from_secs(30);

/// A group message waiting for its author's record, with how it came.
pub(super) struct Parked {
    pub(super) msg: GroupMsg,
    pub(super) hop: u16,
    pub(super) from: Option<Peer>,
    pub(super) via: Via,
    pub(super) since: Duration,
}

/// What [`Parking::park`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Park {
    /// It waits now.
    Waiting,
    /// The same message already waits.
    Duplicate,
    /// Too many wait: dropped (anti-entropy brings it back).
    Full,
}

/// The waiting messages, by author, and the records asked for.
pub(super) struct Parking {
    by_author: HashMap<NodeId, Vec<Parked>>,
    len: usize,
    asked: HashMap<NodeId, Duration>,
}

impl Parking {
    pub(super) fn new() -> Self {
        Parking {
            by_author: HashMap::new(),
            len: 0,
            asked: HashMap::new(),
        }
    }

    /// Keeps `p` until its author's record comes.
    pub(super) fn park(&mut self, p: Parked) -> Park {
        let author = p.msg.author;
        let dot = p.msg.dot();
        let list = self.by_author.entry(author).or_default();
        let result = if list.iter().any(|q| q.msg.dot() == dot) {
            Park::Duplicate
        } else if self.len >= PARKED_MAX {
            Park::Full
        } else {
            self.len += 1;
            list.push(p);
            Park::Waiting
        };
        if list.is_empty() {
            self.by_author.remove(&author);
        }
        result
    }

    /// The messages that waited for `author`, in arrival order.
    pub(super) fn take(&mut self, author: NodeId) -> Vec<Parked> {
        let list = self.by_author.remove(&author).unwrap_or_default();
        self.len = self.len.saturating_sub(list.len());
        list
    }

    /// Whether to ask for `id`'s record now (not asked within `ASK_EVERY`); if so it is
    /// marked asked.
    pub(super) fn may_ask(&mut self, id: NodeId, now: Duration) -> bool {
        let recently = self
            .asked
            .get(&id)
            .is_some_and(|&t| now.saturating_sub(t) < ASK_EVERY);
        if recently {
            return false;
        }
        self.asked.insert(id, now);
        true
    }

    /// `id`'s record came.
    pub(super) fn answered(&mut self, id: NodeId) {
        self.asked.remove(&id);
    }

    /// Drops messages that waited longer than `TTL` (returns how many) and old asks.
    pub(super) fn expire(&mut self, now: Duration) -> usize {
        let mut dropped = 0;
        if self.len > 0 {
            self.by_author.retain(|_, list| {
                let before = list.len();
                list.retain(|p| now.saturating_sub(p.since) < TTL);
                dropped += before - list.len();
                !list.is_empty()
            });
            self.len -= dropped;
        }
        self.asked.retain(|_, t| now.saturating_sub(*t) < TTL);
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pchat_proto::Dot;

    fn parked(author: u32, seq: u64, since: u64) -> Parked {
        Parked {
            msg: GroupMsg {
                author: NodeId(author),
                seq,
                lamport: seq,
                deps: Vec::<Dot>::new(),
                text: String::new(),
                time_ms: 0,
                sig: [0; 64],
            },
            hop: 1,
            from: None,
            via: Via::Push,
            since: Duration::from_secs(since),
        }
    }

    #[test]
    fn messages_wait_once_are_taken_in_order_and_expire() {
        let mut p = Parking::new();
        assert_eq!(p.park(parked(1, 1, 0)), Park::Waiting);
        assert_eq!(p.park(parked(1, 2, 0)), Park::Waiting);
        assert_eq!(p.park(parked(1, 1, 0)), Park::Duplicate);
        assert_eq!(p.park(parked(2, 1, 20)), Park::Waiting);
        let seqs: Vec<u64> = p.take(NodeId(1)).iter().map(|q| q.msg.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert!(p.take(NodeId(1)).is_empty());
        assert_eq!(p.expire(Duration::from_secs(40)), 0, "2.1 waited 20 s");
        assert_eq!(p.expire(Duration::from_secs(51)), 1);
        for i in 0..PARKED_MAX as u64 {
            p.park(parked(3, i + 1, 0));
        }
        assert_eq!(p.park(parked(4, 1, 0)), Park::Full);
    }

    #[test]
    fn records_are_asked_for_at_most_once_a_second() {
        let mut p = Parking::new();
        let s = Duration::from_millis;
        assert!(p.may_ask(NodeId(1), s(0)));
        assert!(!p.may_ask(NodeId(1), s(500)));
        assert!(p.may_ask(NodeId(1), s(1_000)));
        p.answered(NodeId(1));
        assert!(p.may_ask(NodeId(1), s(1_001)));
    }
}
