//! The checkers: every event a node emits is seen here. Completeness (`missing`),
//! exactly-once (`duplicates`), causal order (`causal_violations`: a delivery before
//! something its author had delivered when writing it), and the statistics of the tree
//! (deliveries by push or by repair), hops and offline delivery.

use crate::{HashMap, HashSet, TreeStat, RECOVERY_WINDOW};
use foldhash::HashMapExt;
use p2pchat_core::{Event, Node, Scope};
use p2pchat_proto::{Dot, NodeId};

/// Where and when an event happened.
pub(crate) struct At<'a> {
    pub(crate) now: u64,
    /// Nodes in the run: every group message is expected at each.
    pub(crate) nodes: u64,
    pub(crate) node: Option<&'a Node>,
    /// This node's deliveries are checked for causal order (a sample of the nodes).
    pub(crate) checked: bool,
    /// This node is one that crashes in the run.
    pub(crate) crashes: bool,
    /// This node is writing a group message now.
    pub(crate) saying: bool,
    /// This node is writing a private message for the offline scenario now.
    pub(crate) offline_sending: bool,
    /// Endpoints per username (a user with a second device has two).
    pub(crate) endpoints_of: &'a HashMap<String, u64>,
}

/// What one node delivered, as the checkers saw it.
#[derive(Default)]
pub(crate) struct Seen {
    /// Per author, the last delivered sequence number (for the causal checker).
    by_author: HashMap<NodeId, u64>,
    pub(crate) group: HashSet<Dot>,
    private: HashSet<(NodeId, u64)>,
    /// Private messages this node wrote.
    wrote_private: u64,
}

/// How well the broadcast tree delivered by push (not repair) around the crashes: the share
/// of deliveries by push among nodes that never crash, before, during and after them, and
/// how many broadcasts after the last crash it took to heal.
pub(crate) struct TreeHealth {
    pub(crate) before: f64,
    pub(crate) during: f64,
    pub(crate) after: f64,
    pub(crate) recovery_broadcasts: Option<usize>,
}

/// Everything the checkers count.
pub(crate) struct Checker {
    pub(crate) per: Vec<Seen>,
    /// Per group message, its author's delivered clock when it was written.
    pub(crate) snapshots: HashMap<Dot, Vec<(NodeId, u64)>>,
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) violations: u64,
    pub(crate) last_delivery: u64,
    pub(crate) first_send: Option<u64>,
    pub(crate) max_hop: HashMap<Dot, u16>,
    pub(crate) tree: HashMap<Dot, TreeStat>,
    /// Private messages of the offline scenario (with their author's index), and how many
    /// arrived while their author was still away.
    pub(crate) offline_msgs: HashMap<(NodeId, u64), usize>,
    pub(crate) offline_early: u64,
    pub(crate) refused: u64,
    pub(crate) merges: u64,
    /// Group messages written with a dot already written (by another device): must be 0.
    pub(crate) reused_dots: u64,
}

impl Checker {
    pub(crate) fn new(endpoints: usize) -> Self {
        Checker {
            per: (0..endpoints).map(|_| Seen::default()).collect(),
            snapshots: HashMap::new(),
            expected: 0,
            delivered: 0,
            duplicates: 0,
            violations: 0,
            last_delivery: 0,
            first_send: None,
            max_hop: HashMap::new(),
            tree: HashMap::new(),
            offline_msgs: HashMap::new(),
            offline_early: 0,
            refused: 0,
            merges: 0,
            reused_dots: 0,
        }
    }

    /// The tree's health around crashes from `first_crash` to `last_crash` (µs).
    pub(crate) fn tree_health(
        &self,
        first_crash: Option<u64>,
        last_crash: Option<u64>,
    ) -> TreeHealth {
        // In send order.
        let mut sent: Vec<&TreeStat> = self.tree.values().collect();
        sent.sort_unstable();
        let cut = first_crash.unwrap_or(u64::MAX);
        let end = last_crash.unwrap_or(u64::MAX);
        let before: Vec<&TreeStat> = sent.iter().copied().filter(|t| t.0 < cut).collect();
        let during: Vec<&TreeStat> = sent
            .iter()
            .copied()
            .filter(|t| (cut..=end).contains(&t.0))
            .collect();
        let after: Vec<&TreeStat> = sent.iter().copied().filter(|t| t.0 > end).collect();
        let share = |ts: &[&TreeStat]| {
            let (all, push) = ts.iter().fold((0u64, 0u64), |(a, p), t| {
                (a + u64::from(t.1), p + u64::from(t.2))
            });
            if all == 0 {
                0.0
            } else {
                push as f64 / all as f64
            }
        };
        // Healed: from this broadcast on, the next RECOVERY_WINDOW together reached 95% of
        // the nodes that never crashed by push.
        let recovery_broadcasts = last_crash.and_then(|_| {
            (0..after.len()).find(|&k| {
                let window = &after[k..(k + RECOVERY_WINDOW).min(after.len())];
                share(window) >= 0.95
            })
        });
        TreeHealth {
            before: share(&before),
            during: share(&during),
            after: share(&after),
            recovery_broadcasts,
        }
    }

    /// Node `i` starts over without its data dir: what it delivered no longer counts, and
    /// it must deliver everything again.
    pub(crate) fn forget(&mut self, i: usize) {
        let seen = std::mem::take(&mut self.per[i]);
        self.delivered = self
            .delivered
            .saturating_sub((seen.group.len() + seen.private.len()) as u64);
        // What it wrote itself it gets back too, from its user's other device.
        self.expected += seen.wrote_private;
    }

    /// Takes one event of node `i`; returns a fatal error it reported. `down(j)`: node `j`
    /// is not running now.
    pub(crate) fn observe(
        &mut self,
        at: &At<'_>,
        i: usize,
        e: Event,
        down: impl Fn(usize) -> bool,
    ) -> Option<String> {
        let m = match e {
            Event::Message(m) => *m,
            Event::Error {
                message,
                fatal: true,
            } => return Some(message),
            Event::Error { .. } => {
                // An error in answer to a group send: the message was refused.
                if at.saying {
                    self.refused += 1;
                }
                return None;
            }
            _ => return None,
        };
        let me = at.node.and_then(|n| n.node_id());
        match m.scope {
            Scope::Group if m.is_merge() => {
                if me == Some(m.from_id) {
                    self.merges += 1;
                }
                // A merge (no text: it folds a large frontier) is the author's own business:
                // not a message anyone is expected to see, and it claims only its deps, not
                // the author's whole clock. Receivers still deliver it in causal order, and
                // the message after it follows it in its author's sequence.
                self.per[i].by_author.insert(m.from_id, m.seq);
            }
            Scope::Group => {
                let dot = Dot::new(m.from_id, m.seq);
                if at.saying && me == Some(m.from_id) && self.snapshots.contains_key(&dot) {
                    self.reused_dots += 1;
                }
                if me == Some(m.from_id) && !self.snapshots.contains_key(&dot) {
                    // Local echo of a new message: it is now expected everywhere.
                    let snap: Vec<(NodeId, u64)> = at
                        .node
                        .map(|n| n.delivered_clock().iter().collect())
                        .unwrap_or_default();
                    self.snapshots.insert(dot, snap);
                    self.tree.insert(dot, (at.now, 0, 0));
                    self.expected += at.nodes;
                    self.first_send.get_or_insert(at.now);
                }
                let seen = &mut self.per[i];
                if !seen.group.insert(dot) {
                    self.duplicates += 1;
                    return None;
                }
                self.delivered += 1;
                self.last_delivery = at.now;
                if at.checked {
                    if let Some(snap) = self.snapshots.get(&dot) {
                        let ok = snap.iter().all(|&(k, c)| {
                            let have = seen.by_author.get(&k).copied().unwrap_or(0);
                            if k == dot.author {
                                have + 1 == c
                            } else {
                                have >= c
                            }
                        });
                        if !ok {
                            self.violations += 1;
                        }
                    }
                }
                seen.by_author.insert(dot.author, dot.seq);
                let hop = at.node.and_then(|n| n.delivery_hop(dot));
                if me != Some(dot.author) && !at.crashes {
                    if let Some(t) = self.tree.get_mut(&dot) {
                        t.1 += 1;
                        t.2 += u32::from(hop.is_some_and(|h| h != u16::MAX));
                    }
                }
                if let Some(hop) = hop.filter(|&h| h != u16::MAX) {
                    let h = self.max_hop.entry(dot).or_insert(0);
                    *h = (*h).max(hop);
                }
            }
            Scope::Private => {
                if me == Some(m.from_id) {
                    // Local echo: a private message was written. It is expected at every
                    // device of its recipient and every other device of its sender.
                    let n = |u: &str| at.endpoints_of.get(u).copied().unwrap_or(1);
                    let to = m.to.as_deref().unwrap_or_default();
                    self.expected += n(to) + n(&m.from) - 1;
                    self.per[i].wrote_private += 1;
                    self.first_send.get_or_insert(at.now);
                    if at.offline_sending {
                        self.offline_msgs.insert((m.from_id, m.time_ms), i);
                    }
                    return None;
                }
                // (Keyed by writing time: the copies for several devices share it.)
                if !self.per[i].private.insert((m.from_id, m.time_ms)) {
                    self.duplicates += 1;
                    return None;
                }
                self.delivered += 1;
                self.last_delivery = at.now;
                if let Some(&author) = self.offline_msgs.get(&(m.from_id, m.time_ms)) {
                    if down(author) {
                        self.offline_early += 1;
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pchat_core::HistoryEntry;

    fn group(author: u32, seq: u64) -> Event {
        Event::Message(Box::new(HistoryEntry {
            scope: Scope::Group,
            id: format!("{author}.{seq}"),
            from_id: NodeId(author),
            from: format!("n{author}"),
            to: None,
            text: "hi".into(),
            clock: None,
            order: seq,
            seq,
            time_ms: 0,
        }))
    }

    fn at(now: u64) -> At<'static> {
        static NONE: std::sync::OnceLock<HashMap<String, u64>> = std::sync::OnceLock::new();
        At {
            now,
            nodes: 2,
            node: None,
            checked: true,
            crashes: false,
            saying: false,
            offline_sending: false,
            endpoints_of: NONE.get_or_init(HashMap::default),
        }
    }

    #[test]
    fn duplicates_and_causal_violations_are_counted() {
        let mut c = Checker::new(3);
        // 2.1 was written after its author had delivered 1.1.
        c.snapshots
            .insert(Dot::new(NodeId(2), 1), vec![(NodeId(1), 1), (NodeId(2), 1)]);
        c.snapshots
            .insert(Dot::new(NodeId(1), 1), vec![(NodeId(1), 1)]);
        // Node 1 delivers 2.1 first: a violation; node 2 in order: none.
        c.observe(&at(1), 1, group(2, 1), |_| false);
        c.observe(&at(2), 1, group(1, 1), |_| false);
        c.observe(&at(3), 2, group(1, 1), |_| false);
        c.observe(&at(4), 2, group(2, 1), |_| false);
        assert_eq!(c.violations, 1);
        c.observe(&at(5), 2, group(2, 1), |_| false);
        assert_eq!((c.delivered, c.duplicates, c.last_delivery), (4, 1, 4));
        let fatal = Event::Error {
            message: "boom".into(),
            fatal: true,
        };
        assert_eq!(
            c.observe(&at(6), 1, fatal, |_| false).as_deref(),
            Some("boom")
        );
    }

    #[test]
    fn tree_health_splits_push_shares_around_the_crashes() {
        let mut c = Checker::new(1);
        // Sent at 1, 5 and 9..=20 µs; crashes between 4 and 6.
        c.tree.insert(Dot::new(NodeId(1), 1), (1, 10, 10));
        c.tree.insert(Dot::new(NodeId(1), 2), (5, 10, 2));
        for t in 9..=20u64 {
            let push = if t < 12 { 5 } else { 10 };
            c.tree.insert(Dot::new(NodeId(2), t), (t, 10, push));
        }
        let h = c.tree_health(Some(4), Some(6));
        assert_eq!((h.before, h.during), (1.0, 0.2));
        assert!(h.after > 0.8 && h.after < 1.0);
        // Windows of 10 after the crashes reach 95% by push from the 3rd broadcast on.
        assert_eq!(h.recovery_broadcasts, Some(2));
        assert_eq!(c.tree_health(None, None).recovery_broadcasts, None);
    }
}
