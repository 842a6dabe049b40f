//! The group log: what was delivered (per-author counters, the history, the causal frontier)
//! and what waits (the hold-back queue, indexed by the first missing dependency).
//!
//! A message is delivered once everything it depends on was: its author's previous message
//! and each of its `deps`. Held-back messages wait under the dot they miss first; delivering
//! that dot wakes exactly them (no scan of the queue). The frontier is the set of messages no
//! delivered message depends on yet: what a new own message must reference.
//!
//! Delivered messages are kept encoded (about 200 bytes instead of about 300 decoded, and no
//! vector clock); with an [`Archive`], only the newest bodies stay in memory and older ones
//! are read back from the store.

use super::clocks::ClockStore;
use super::summary::{GroupSummary, SummaryError};
use crate::io::Archive;
use crate::{HashMap, HashSet};
use foldhash::HashMapExt;
use p2pchat_proto::wire::{from_payload, to_payload};
use p2pchat_proto::{Dot, GroupMsg, NodeId, VectorClock};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// A delivered group message.
struct Delivered {
    lamport: u64,
    author: NodeId,
    seq: u64,
    /// A merge message (no text, only causal metadata): never shown in a history.
    merge: bool,
}

impl Delivered {
    /// Where it stands in display order.
    fn key(&self) -> (u64, NodeId, u64) {
        (self.lamport, self.author, self.seq)
    }
}

/// A message that was just delivered, with its vector clock when clocks are kept.
pub(super) type Delivery = (GroupMsg, Option<VectorClock>);

/// Delivered and held-back group messages.
pub(super) struct GroupLog {
    delivered: VectorClock,
    history: Vec<Delivered>,
    /// Index into `history` by author, then `seq - 1`.
    by_author: HashMap<NodeId, Vec<u32>>,
    holdback: HashMap<Dot, GroupMsg>,
    /// Held-back dots by the dot they miss first.
    waiting: HashMap<Dot, Vec<Dot>>,
    frontier: BTreeMap<NodeId, u64>,
    max_lamport: u64,
    /// Hops of the delivered copy, per dot (only when asked: the simulator's statistics).
    hops: Option<HashMap<Dot, u16>>,
    /// Every delivered message's clock (only with full clocks).
    clocks: Option<ClockStore>,
    /// Where old bodies are read back from.
    archive: Option<Box<dyn Archive>>,
    /// History entries before this index have had their bodies dropped from memory.
    trimmed: usize,
    /// The encoded bodies of `history[trimmed..]` (about 200 bytes each instead of about 300
    /// decoded); older ones are read from the archive. Apart from `history` so that an old
    /// entry costs 24 bytes, not 40.
    bodies: VecDeque<Option<Box<[u8]>>>,
    /// Restoring from the archive: see [`GroupLog::set_restoring`].
    restoring: bool,
    /// Indices into `history` of the messages a history shows (merges left out), in
    /// display order: a page is a slice of it.
    shown: Vec<u32>,
    /// When recent messages were delivered: `(first index, at)` per step that delivered
    /// some, oldest first, kept for [`FRESH_MAX`] (see [`GroupLog::fresh_from`]).
    stamps: VecDeque<(u32, Duration)>,
}

/// How long delivery times are kept: the longest a message counts as still spreading.
pub(super) const FRESH_MAX: Duration = Duration::from_secs(4);
/// Most delivery stamps kept (older ones count as settled).
const STAMPS_MAX: usize = 8192;

impl GroupLog {
    pub(super) fn new(full_clocks: bool, record_hops: bool) -> Self {
        GroupLog {
            delivered: VectorClock::new(),
            history: Vec::new(),
            by_author: HashMap::new(),
            holdback: HashMap::new(),
            waiting: HashMap::new(),
            frontier: BTreeMap::new(),
            max_lamport: 0,
            hops: record_hops.then(HashMap::new),
            clocks: full_clocks.then(ClockStore::new),
            archive: None,
            trimmed: 0,
            bodies: VecDeque::new(),
            restoring: false,
            shown: Vec::new(),
            stamps: VecDeque::new(),
        }
    }

    /// Messages delivered per author.
    pub(super) fn delivered(&self) -> &VectorClock {
        &self.delivered
    }

    /// Whether `dot` was delivered or is held back (a copy of it is a duplicate).
    pub(super) fn seen(&self, dot: Dot) -> bool {
        self.delivered.get(dot.author) >= dot.seq || self.holdback.contains_key(&dot)
    }

    /// Messages delivered.
    pub(super) fn len(&self) -> usize {
        self.history.len()
    }

    /// Messages waiting for their dependencies.
    pub(super) fn held_len(&self) -> usize {
        self.holdback.len()
    }

    /// The dots waiting for their dependencies.
    pub(super) fn held_back(&self) -> HashSet<Dot> {
        self.holdback.keys().copied().collect()
    }

    /// The sequence number and Lamport time of our next own message.
    pub(super) fn next_own(&self, me: NodeId) -> (u64, u64) {
        (self.delivered.get(me) + 1, self.max_lamport + 1)
    }

    /// What a new message of `me` must reference: the frontier, less our own (implied).
    pub(super) fn frontier_deps(&self, me: NodeId) -> Vec<Dot> {
        self.frontier
            .iter()
            .filter(|(&a, _)| a != me)
            .map(|(&a, &s)| Dot::new(a, s))
            .collect()
    }

    /// How many dots a new message of `me` must reference (the frontier, less our own).
    pub(super) fn frontier_len(&self, me: NodeId) -> usize {
        self.frontier.len() - usize::from(self.frontier.contains_key(&me))
    }

    /// The frontier's dots by authors in `lo..=hi`, less our own.
    pub(super) fn frontier_range(&self, me: NodeId, lo: NodeId, hi: NodeId) -> Vec<Dot> {
        self.frontier
            .range(lo..=hi)
            .filter(|(&a, _)| a != me)
            .map(|(&a, &s)| Dot::new(a, s))
            .collect()
    }

    /// Records the hops the delivered copy of `dot` travelled (when hops are recorded).
    pub(super) fn record_hop(&mut self, dot: Dot, hop: u16) {
        if let Some(h) = &mut self.hops {
            h.insert(dot, hop);
        }
    }

    /// Hops of the delivered copy of `dot`, if recorded.
    pub(super) fn hop(&self, dot: Dot) -> Option<u16> {
        self.hops.as_ref()?.get(&dot).copied()
    }

    /// Holds `msg` back and delivers everything that became deliverable, in causal order.
    /// The caller has checked it is not [`GroupLog::seen`].
    pub(super) fn hold(&mut self, msg: GroupMsg) -> Vec<Delivery> {
        let dot = msg.dot();
        let mut out = Vec::new();
        let mut stack = Vec::new();
        if self.first_missing(&msg).is_none() {
            // The usual case: deliverable at once, without a detour through the hold-back
            // maps (a held copy of the same dot cannot exist: it would have been delivered).
            out.push(self.deliver(msg));
            if let Some(waiters) = self.waiting.remove(&dot) {
                stack.extend(waiters);
            }
        } else {
            self.holdback.insert(dot, msg);
            stack.push(dot);
        }
        while let Some(dot) = stack.pop() {
            let Some(msg) = self.holdback.get(&dot) else {
                continue;
            };
            match self.first_missing(msg) {
                Some(missing) => self.waiting.entry(missing).or_default().push(dot),
                None => {
                    if let Some(msg) = self.holdback.remove(&dot) {
                        out.push(self.deliver(msg));
                        if let Some(waiters) = self.waiting.remove(&dot) {
                            stack.extend(waiters);
                        }
                    }
                }
            }
        }
        out
    }

    /// The first causal dependency of `msg` not yet delivered, if any.
    fn first_missing(&self, msg: &GroupMsg) -> Option<Dot> {
        if self.delivered.get(msg.author) + 1 != msg.seq {
            return Some(Dot::new(msg.author, msg.seq.saturating_sub(1)));
        }
        msg.deps
            .iter()
            .find(|d| self.delivered.get(d.author) < d.seq)
            .copied()
    }

    fn deliver(&mut self, msg: GroupMsg) -> Delivery {
        let author = msg.author;
        for d in &msg.deps {
            if self.frontier.get(&d.author).is_some_and(|&s| s <= d.seq) {
                self.frontier.remove(&d.author);
            }
        }
        self.frontier.insert(author, msg.seq);
        let clock = self.clocks.as_mut().map(|c| c.deliver(&msg));
        self.record(Delivered {
            lamport: msg.lamport,
            author: msg.author,
            seq: msg.seq,
            merge: msg.text.is_empty(),
        });
        let body = if self.restoring {
            None
        } else {
            to_payload(&msg).ok().map(Vec::into_boxed_slice)
        };
        self.bodies.push_back(body);
        (msg, clock)
    }

    /// Enters a delivered message in the history and its indexes (not its body).
    fn record(&mut self, entry: Delivered) {
        self.delivered.set(entry.author, entry.seq);
        self.max_lamport = self.max_lamport.max(entry.lamport);
        let idx = self.history.len() as u32;
        self.by_author.entry(entry.author).or_default().push(idx);
        if !entry.merge {
            // In display order; messages mostly come in it, so this is mostly an append.
            let key = entry.key();
            let at = self.shown.len()
                - self
                    .shown
                    .iter()
                    .rev()
                    .take_while(|&&j| self.history[j as usize].key() > key)
                    .count();
            self.shown.insert(at, idx);
        }
        self.history.push(entry);
    }

    /// What a restart can start from instead of replaying the history (see
    /// [`GroupSummary`]); `None` when hop counts are recorded (they are not summarised).
    pub(super) fn summary(&self) -> Option<GroupSummary> {
        if self.hops.is_some() {
            return None;
        }
        let mut prev = 0u64;
        let entries = self
            .history
            .iter()
            .map(|d| {
                let delta = d.lamport.wrapping_sub(prev) as i64;
                prev = d.lamport;
                (d.author, delta, d.merge)
            })
            .collect();
        Some(GroupSummary::new(
            entries,
            self.frontier.iter().map(|(&a, &s)| (a, s)).collect(),
            self.clocks.as_ref().map(ClockStore::arenas),
        ))
    }

    /// Starts from `summary` (an empty log with an archive only: bodies are read from it).
    /// Nothing changes when it does not fit. Returns how many messages it holds.
    pub(super) fn restore_summary(&mut self, summary: GroupSummary) -> Result<usize, SummaryError> {
        if !self.history.is_empty() || self.archive.is_none() || self.hops.is_some() {
            return Err(SummaryError::Inconsistent("the log is not empty"));
        }
        let delivered = summary.delivered();
        let (entries, frontier, arenas) = summary.into_parts();
        for &(a, s) in &frontier {
            if s == 0 || s > delivered.get(a) {
                return Err(SummaryError::Inconsistent("a frontier past the history"));
            }
        }
        let clocks = match (&self.clocks, arenas) {
            (None, _) => None,
            (Some(_), None) => return Err(SummaryError::Inconsistent("no clocks")),
            (Some(_), Some(arenas)) => Some(
                ClockStore::from_arenas(arenas, |a| delivered.get(a))
                    .ok_or(SummaryError::Inconsistent("clocks unlike the history"))?,
            ),
        };
        let n = entries.len();
        self.history.reserve_exact(n);
        let mut lamport = 0u64;
        for (author, delta, merge) in entries {
            lamport = lamport.wrapping_add(delta as u64);
            let seq = self.delivered.get(author) + 1;
            self.record(Delivered {
                lamport,
                author,
                seq,
                merge,
            });
        }
        self.frontier = frontier.into_iter().collect();
        if clocks.is_some() {
            self.clocks = clocks;
        }
        // Every body is in the archive.
        self.bodies.clear();
        self.trimmed = self.history.len();
        Ok(n)
    }

    /// Where a delivered message is in `history`.
    fn find(&self, dot: Dot) -> Option<usize> {
        let idx = *self
            .by_author
            .get(&dot.author)?
            .get(usize::try_from(dot.seq).ok()?.checked_sub(1)?)?;
        Some(idx as usize).filter(|&i| i < self.history.len())
    }

    /// The body of `history[i]`: from memory, or else from the archive.
    fn body(&self, i: usize) -> Option<GroupMsg> {
        let kept = i
            .checked_sub(self.trimmed)
            .and_then(|j| self.bodies.get(j)?.as_ref());
        match kept {
            Some(bytes) => from_payload(bytes).ok(),
            None => {
                let d = self.history.get(i)?;
                self.archive.as_ref()?.group(Dot::new(d.author, d.seq))
            }
        }
    }

    /// While restoring from an archive, bodies are not kept: the archive has them all (a
    /// restart does not encode a long history again only to drop it).
    pub(super) fn set_restoring(&mut self, on: bool) {
        self.restoring = on && self.archive.is_some();
    }

    /// The Lamport time of a delivered message.
    #[cfg(test)]
    pub(super) fn lamport(&self, dot: Dot) -> Option<u64> {
        self.find(dot).map(|i| self.history[i].lamport)
    }

    /// A delivered message.
    pub(super) fn delivered_msg(&self, dot: Dot) -> Option<GroupMsg> {
        self.find(dot).and_then(|i| self.body(i))
    }

    /// A held-back or delivered message.
    pub(super) fn message(&self, dot: Dot) -> Option<GroupMsg> {
        match self.holdback.get(&dot) {
            Some(m) => Some(m.clone()),
            None => self.delivered_msg(dot),
        }
    }

    /// Notes that the messages from history index `first` on were delivered `now`.
    pub(super) fn stamp(&mut self, first: usize, now: Duration) {
        if first >= self.history.len() {
            return;
        }
        while self.stamps.len() >= STAMPS_MAX
            || self
                .stamps
                .front()
                .is_some_and(|&(_, at)| at + FRESH_MAX <= now)
        {
            self.stamps.pop_front();
        }
        self.stamps.push_back((first as u32, now));
    }

    /// How many messages were delivered before the last `grace`
    /// (at most [`FRESH_MAX`]): the ones after are still spreading by push, and a digest
    /// that lacks them is only behind, not missing them.
    pub(super) fn fresh_from(&self, now: Duration, grace: Duration) -> usize {
        let cutoff = now.saturating_sub(grace.min(FRESH_MAX));
        self.stamps
            .iter()
            .find(|&&(_, at)| at > cutoff)
            .map_or(self.history.len(), |&(first, _)| first as usize)
    }

    /// Anti-entropy: compares a peer's digest of delivered counters for authors in
    /// `lo..=hi` (sorted by author) with ours. Returns what it lacks, oldest first (by
    /// Lamport time, then author and seq), at most `limit` of them, and whether it has
    /// anything we lack.
    /// Messages from history index `fresh` on are left out of what they lack (still
    /// spreading: see [`GroupLog::fresh_from`]).
    pub(super) fn compare(
        &self,
        lo: NodeId,
        hi: NodeId,
        theirs: &[(NodeId, u64)],
        limit: usize,
        fresh: usize,
    ) -> (Vec<(u64, NodeId, u64)>, bool) {
        // Both sides are sorted by author: walk them together, no allocation but `missing`.
        let mut missing: Vec<(u64, NodeId, u64)> = Vec::new();
        let mut they_are_ahead = false;
        let mut theirs = theirs.iter().copied().peekable();
        for (author, mine) in self.delivered.range(lo, hi) {
            while let Some(&(a, s)) = theirs.peek() {
                if a >= author {
                    break;
                }
                // They have an author we have never heard of.
                they_are_ahead |= s > 0;
                theirs.next();
            }
            let have = match theirs.peek() {
                Some(&(a, s)) if a == author => {
                    theirs.next();
                    s
                }
                _ => 0,
            };
            they_are_ahead |= have > mine;
            // An author's Lamport times grow with its seq: the oldest `limit` overall are
            // among each author's first `limit` (a peer far behind costs a page, not all).
            for seq in (have + 1..=mine).take(limit) {
                match self.find(Dot::new(author, seq)) {
                    // An author's later messages were delivered later still.
                    Some(i) if i >= fresh => break,
                    Some(i) => missing.push((self.history[i].lamport, author, seq)),
                    None => {}
                }
            }
        }
        they_are_ahead |= theirs.any(|(_, s)| s > 0);
        missing.sort_unstable();
        missing.truncate(limit);
        (missing, they_are_ahead)
    }

    /// The clock of a delivered message (with full clocks).
    pub(super) fn clock(&self, dot: Dot) -> Option<VectorClock> {
        self.clocks.as_ref()?.get(dot)
    }

    /// Every delivered message in display order (by Lamport time, then author and seq: a
    /// linear extension of causality, the same on every node with the same messages).
    pub(super) fn in_order(&self) -> Vec<Delivery> {
        let mut entries: Vec<(u64, NodeId, u64, Delivery)> = Vec::new();
        for (i, d) in self.history.iter().enumerate() {
            let Some(msg) = self.body(i) else { continue };
            let clock = self.clock(msg.dot());
            entries.push((d.lamport, d.author, d.seq, (msg, clock)));
        }
        entries.sort_by_key(|e| (e.0, e.1, e.2));
        entries.into_iter().map(|e| e.3).collect()
    }

    /// How many bodies are in memory (for tests).
    #[cfg(test)]
    pub(super) fn bodies_in_memory(&self) -> usize {
        self.bodies.iter().filter(|b| b.is_some()).count()
    }

    /// One page of the history in display order, merges left out: the newest `last` messages
    /// before `before` (before the end without it), and how many shown messages are older.
    /// Only the page's bodies are read (old ones from the archive). `None`: no such message.
    pub(super) fn page(&self, before: Option<Dot>, last: usize) -> Option<(Vec<Delivery>, usize)> {
        let end = match before {
            None => self.shown.len(),
            Some(dot) => {
                let i = self.find(dot)?;
                let key = self.history[i].key();
                let at = self
                    .shown
                    .partition_point(|&j| self.history[j as usize].key() < key);
                (self.shown.get(at) == Some(&(i as u32))).then_some(at)?
            }
        };
        let start = end.saturating_sub(last);
        let page = self.shown[start..end]
            .iter()
            .filter_map(|&i| {
                let msg = self.body(i as usize)?;
                let clock = self.clock(msg.dot());
                Some((msg, clock))
            })
            .collect();
        Some((page, start))
    }

    /// The archive, once the driver gave one.
    pub(super) fn archive(&self) -> Option<&dyn Archive> {
        self.archive.as_deref()
    }

    /// From now on only the newest `keep` bodies stay in memory.
    pub(super) fn set_archive(&mut self, archive: Box<dyn Archive>, keep: usize) {
        self.archive = Some(archive);
        self.trim(keep);
    }

    /// Drops the bodies that left the in-memory window of `keep` (with an archive only).
    pub(super) fn trim(&mut self, keep: usize) {
        if self.archive.is_none() {
            return;
        }
        let keep_from = self.history.len().saturating_sub(keep);
        while self.trimmed < keep_from {
            self.bodies.pop_front();
            self.trimmed += 1;
        }
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
