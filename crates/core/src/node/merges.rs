//! Shared merges: folding a large causal frontier once for everyone.
//!
//! After a burst (many authors writing at once) every member's frontier holds a dot per
//! author, more than one message may reference ([`MAX_DEPS`]). An author who writes then must
//! first fold the frontier into merges of its own (see `say`); if every author does so, a
//! burst of 1,000 is followed by 21,000 merges, each delivered everywhere.
//!
//! Instead, node ids are cut into buckets of [`BUCKET`] consecutive ids, and in each bucket
//! the live member with the lowest id (its *designee*, by the view of whoever looks) folds the
//! bucket's part of its frontier into one merge, [`SETTLE`] after its frontier grew past
//! [`MAX_DEPS`]. Everyone who delivers that merge drops those dots from its own frontier
//! (the merge references them), so one merge per bucket serves every later writer: the
//! frontier shrinks to about one dot per bucket, 32 at 1,000 members. The others never write
//! a shared merge; where views disagree two members of a bucket may both write one, which
//! costs a message and nothing else.
//!
//! A message written while the frontier is too large (the burst is still coming in, and the
//! shared merges with it) waits for them, up to [`FOLD_WAIT`], and the user's later commands
//! wait behind it, in order; then, if the frontier still does not fit, its author folds the
//! rest into merges of its own. `/quit` sends waiting messages at once.

use super::life::Phase;
use super::timers::Timer;
use super::Node;
use p2pchat_proto::wire::MAX_DEPS;
use p2pchat_proto::{Dot, NodeId};
use std::time::Duration;

/// Node ids per bucket: a bucket's merge references at most `BUCKET - 1` dots (its author's
/// own is implied), within [`MAX_DEPS`]; and the frontier after the shared merges of a
/// network of `n` dense ids is about `n / BUCKET` dots, within [`MAX_DEPS`] up to 1,536.
pub(super) const BUCKET: u32 = 32;

/// How long a designee lets a burst come in before it folds its bucket; then at most one
/// shared merge per `SETTLE` while more of the burst arrives.
pub(super) const SETTLE: Duration = Duration::from_millis(100);

/// The longest a message waits for shared merges before its author folds the frontier itself.
pub(super) const FOLD_WAIT: Duration = Duration::from_secs(2);

impl Node {
    /// Whether a message about to be written should wait for shared merges: its frontier is
    /// too large to reference. From then until the frontier shrinks (or [`FOLD_WAIT`]
    /// passes), it and the commands after it wait, in order.
    pub(super) fn fold_first(&mut self, now: Duration) -> bool {
        let Some(me) = self.own.node_id else {
            return false;
        };
        if self.life.phase != Phase::Member || self.group.frontier_len(me) <= MAX_DEPS {
            return false;
        }
        let until = now + FOLD_WAIT;
        self.life.folding_until = Some(until);
        self.set_timer(Timer::Folding, until);
        true
    }

    /// Runs the commands that wait for shared merges once the frontier fits a message, once
    /// they waited [`FOLD_WAIT`], or at once with `now_anyway` (we are leaving).
    pub(super) fn release_folding(&mut self, now: Duration, now_anyway: bool) {
        let Some(until) = self.life.folding_until else {
            return;
        };
        let fits = self
            .own
            .node_id
            .is_some_and(|me| self.group.frontier_len(me) <= MAX_DEPS);
        if !(fits || now_anyway || now >= until) {
            self.set_timer(Timer::Folding, until);
            return;
        }
        self.life.folding_until = None;
        self.run_queued(now);
    }

    /// After deliveries: a designee whose frontier outgrew a message folds its bucket soon.
    pub(super) fn check_shared_merge(&mut self, now: Duration) {
        if self.shared_merge_deps().is_some() {
            self.set_timer(Timer::Merge, now + SETTLE);
        }
        if self.life.folding_until.is_some() {
            let me = self.own.node_id;
            if me.is_some_and(|me| self.group.frontier_len(me) <= MAX_DEPS) {
                // Released from the timer, not from within this delivery.
                self.set_timer(Timer::Folding, now);
            }
        }
    }

    /// Writes the shared merge of our bucket, if it is still needed.
    pub(super) fn merge_timer(&mut self, now: Duration) {
        let (Some(me), Some(deps)) = (self.own.node_id, self.shared_merge_deps()) else {
            return;
        };
        self.net.stats.shared_merges += 1;
        self.write_merge(now, me, deps);
    }

    /// Signs, delivers and spreads a merge of `deps` (at most [`MAX_DEPS`]).
    pub(super) fn write_merge(&mut self, now: Duration, me: NodeId, deps: Vec<Dot>) {
        let mut merge = self.own_group(now, me, deps, String::new());
        merge.sig = self.own.ident.sign(&merge.signed_bytes());
        self.net.stats.merges += 1;
        self.publish(now, me, merge);
    }

    /// What our shared merge would reference: our bucket's part of the frontier, when the
    /// frontier is larger than a message may reference, that part holds at least two dots
    /// (one is as good as a merge), and no live member of our bucket has a lower id.
    fn shared_merge_deps(&self) -> Option<Vec<Dot>> {
        let me = self.own.node_id?;
        if self.net.replaying || self.group.frontier_len(me) <= MAX_DEPS {
            return None;
        }
        let lo = me.0 - me.0 % BUCKET;
        let hi = lo.saturating_add(BUCKET - 1);
        if (lo..me.0).any(|id| self.view.live.contains(NodeId(id))) {
            return None;
        }
        let deps = self.group.frontier_range(me, NodeId(lo), NodeId(hi));
        (deps.len() >= 2).then_some(deps)
    }
}
