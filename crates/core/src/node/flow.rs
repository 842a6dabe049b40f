//! Ring broadcast's congestion control: per member, at most a *window* of pushes awaits its
//! acknowledgement; further first attempts wait in order until an acknowledgement makes room.
//!
//! Without it, a burst (every member writing dozens of messages at once) put hundreds of
//! pushes per member on the wire at once: on a saturated machine the receivers' socket
//! buffers overflowed (4 million datagrams dropped by the kernel in one `bench --nodes 100`
//! run), every drop became a retry or a hand-over, and those became more load. The window
//! grows by one per acknowledgement (up to [`WINDOW_MAX`]) and halves when a push goes
//! unanswered (down to [`WINDOW_MIN`]): TCP's additive increase, multiplicative decrease,
//! per member. A window that is never full changes nothing: at chat rates a member has one or
//! two pushes in flight.

use crate::HashMap;
use p2pchat_proto::{Dot, NodeId};
use std::collections::VecDeque;

/// The window a member starts with.
pub(super) const WINDOW_INITIAL: u32 = 32;
/// The smallest window: a member that lost everything still gets pushes, a few at a time.
pub(super) const WINDOW_MIN: u32 = 4;
/// The largest window.
pub(super) const WINDOW_MAX: u32 = 512;
/// First attempts kept waiting per member; beyond, a push is left to anti-entropy.
const QUEUED_MAX: usize = 8192;

/// A push that waits for room in a member's window: the message, the end of the share the
/// member is given, and the hops the message has travelled.
pub(super) type Queued = (Dot, NodeId, u16);

/// One member's window.
struct Window {
    inflight: u32,
    size: u32,
    queued: VecDeque<Queued>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            inflight: 0,
            size: WINDOW_INITIAL,
            queued: VecDeque::new(),
        }
    }
}

/// Every member's window.
#[derive(Default)]
pub(super) struct Flow {
    windows: HashMap<NodeId, Window>,
    /// Pushes left to anti-entropy because too many waited.
    pub(super) overflow: u64,
}

impl Flow {
    /// Whether a first attempt to `id` may go now; if not, it is queued.
    pub(super) fn admit(&mut self, id: NodeId, push: Queued) -> bool {
        let w = self.windows.entry(id).or_default();
        if w.inflight < w.size && w.queued.is_empty() {
            return true;
        }
        if w.queued.len() < QUEUED_MAX {
            w.queued.push_back(push);
        } else {
            self.overflow += 1;
        }
        false
    }

    /// A push to `id` now awaits its acknowledgement.
    pub(super) fn sent(&mut self, id: NodeId) {
        self.windows.entry(id).or_default().inflight += 1;
    }

    /// A push to `id` was acknowledged (`acked`: the window grows by one) or given up (it
    /// shrank already, when its retry went out).
    pub(super) fn done(&mut self, id: NodeId, acked: bool) {
        if let Some(w) = self.windows.get_mut(&id) {
            w.inflight = w.inflight.saturating_sub(1);
            if acked {
                w.size = (w.size + 1).min(WINDOW_MAX);
            }
        }
    }

    /// A push to `id` went unanswered and is tried again, and nothing at all came from `id`
    /// since it was sent: the window halves. (A member heard from meanwhile is keeping up;
    /// the timeout was only short, as often at internet latency, and shrinking its window
    /// would only slow a burst down.)
    pub(super) fn lost(&mut self, id: NodeId) {
        if let Some(w) = self.windows.get_mut(&id) {
            w.size = (w.size / 2).max(WINDOW_MIN);
        }
    }

    /// The next queued push to `id` that fits its window now.
    pub(super) fn next(&mut self, id: NodeId) -> Option<Queued> {
        let w = self.windows.get_mut(&id)?;
        if w.inflight >= w.size {
            return None;
        }
        w.queued.pop_front()
    }

    /// `id` is gone or silent: its queued pushes, to hand on to others.
    pub(super) fn forget(&mut self, id: NodeId) -> Vec<Queued> {
        self.windows
            .remove(&id)
            .map(|w| w.queued.into())
            .unwrap_or_default()
    }

    /// Pushes waiting for room, all members.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.windows.values().map(|w| w.queued.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(seq: u64) -> Queued {
        (Dot::new(NodeId(9), seq), NodeId(9), 1)
    }

    #[test]
    fn a_full_window_queues_in_order_and_an_acknowledgement_makes_room() {
        let mut f = Flow::default();
        let id = NodeId(5);
        for s in 1..=u64::from(WINDOW_INITIAL) {
            assert!(f.admit(id, push(s)));
            f.sent(id);
        }
        assert!(!f.admit(id, push(100)));
        assert!(!f.admit(id, push(101)));
        assert_eq!(f.next(id), None, "no room yet");
        f.done(id, true);
        assert_eq!(f.next(id), Some(push(100)), "oldest first");
        f.sent(id);
        // The window grew by one with the acknowledgement: room for one more.
        assert_eq!(f.next(id), Some(push(101)));
        assert_eq!(f.queued(), 0);
    }

    #[test]
    fn losses_halve_the_window_down_to_its_minimum_and_acks_grow_it_back() {
        let mut f = Flow::default();
        let id = NodeId(5);
        assert!(f.admit(id, push(1)));
        f.sent(id);
        for _ in 0..10 {
            f.lost(id);
        }
        assert_eq!(f.windows[&id].size, WINDOW_MIN);
        for _ in 0..1000 {
            f.sent(id);
            f.done(id, true);
        }
        assert_eq!(f.windows[&id].size, WINDOW_MAX);
        f.lost(id);
        assert_eq!(f.windows[&id].size, WINDOW_MAX / 2);
        f.done(id, false);
        assert_eq!(
            f.windows[&id].size,
            WINDOW_MAX / 2,
            "halved once, at the retry"
        );
    }

    #[test]
    fn a_forgotten_member_hands_back_what_waited_for_it() {
        let mut f = Flow::default();
        let id = NodeId(5);
        for s in 1..=u64::from(WINDOW_INITIAL) {
            f.admit(id, push(s));
            f.sent(id);
        }
        f.admit(id, push(100));
        assert_eq!(f.forget(id), vec![push(100)]);
        assert_eq!(f.queued(), 0);
        assert!(f.admit(id, push(101)), "a fresh window");
    }
}
