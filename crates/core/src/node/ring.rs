//! Ring broadcast: in a group where every member knows every other (full membership, above
//! `flood_below`), a group message travels a spanning tree that the ring of members defines
//! for its author, so each member gets one copy, within about log2(n) hops.
//!
//! The members, ordered by [`pos`] (their scrambled ids), form a ring. A node's finger j is
//! the first member at least 2^j past it clockwise, as in Chord. A node that must cover the
//! part of the ring strictly between itself and `limit` (the author: the whole ring) sends the
//! message to each of its fingers inside that part, and gives each finger the part up to the
//! next finger (the farthest gets the rest, up to `limit`): the broadcast of El-Ansary et al.
//! over Chord ("Efficient broadcast in structured P2P networks", 2003). Every author has its
//! own tree, for free, so concurrent authors do not disturb each other, which is what undid a
//! shared Plumtree here (see `docs/PERFORMANCE.md`); and nothing has to learn the tree, so it
//! is right from the first message after a change of membership.
//!
//! The tree needs each node's view of the ring to be right near it: a member that crashed but
//! is still counted would swallow its part. So each push is acknowledged (`RingAck`, one for
//! the pushes of a batch); without an answer in time (a TCP-style timeout over measured round
//! trips) the sender pushes once more (a lost datagram). A member heard from meanwhile is
//! only slow: one more try, then anti-entropy (handing its part on would feed an overload).
//! A member silent all along is left out until heard from again, and is pinged; if it stays
//! silent for three acknowledgement timeouts (at least [`HANDOVER_SILENCE`]), its part goes to
//! the next member on the ring. The pushes
//! to each member are paced by a window (see [`super::flow`]). The sender also tells the members that
//! have the silent one as a finger (`RingDown`), so that the next broadcasts avoid it at once;
//! each of them leaves it out and pings it too, so a false report (a lost datagram) costs a
//! round trip, not a member. A node told that it is down pings the members that push to it.
//! Members that join the ring late, or views that differ, can still leave a node without a
//! copy: anti-entropy repairs it, as it repairs everything.

use super::flow::{Flow, Queued};
use super::timers::Timer;
use super::Node;
use crate::{HashMap, HashSet};
use p2pchat_proto::wire::MAX_RING_ACK;
use p2pchat_proto::{encode, Dot, GroupMsg, Message, NodeId};
use rand::Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Most members told at once that one of their fingers is silent (about log2 n have it).
const PUSHING_MAX: usize = 64;
/// Pushes awaiting an acknowledgement at once (a bound; beyond it, pushes are not retried).
const PENDING_MAX: usize = 1 << 16;
/// The shortest acknowledgement timeout, however short the round trip: a busy receiver
/// answers late, and a needless retry costs a copy.
const RTO_MIN: Duration = Duration::from_millis(100);
/// The longest: an overloaded receiver answers late, and handing its part on then would only
/// add copies to the load (congestion collapse).
const RTO_MAX: Duration = Duration::from_secs(2);
/// How long a member must at least have been silent (nothing at all from it since the push)
/// before its share is handed on; three acknowledgement timeouts (before back-off) if longer:
/// a member on a loaded machine answers late but answers.
const HANDOVER_SILENCE: Duration = Duration::from_millis(300);
/// The most doublings of the timeout (it is capped by [`RTO_MAX`] anyway).
const BACKOFF_MAX: u8 = 7;
/// A push awaiting its `RingAck` (or a ping awaiting any answer, under [`check_dot`]).
#[derive(Clone, Copy)]
struct Pending {
    /// When the first attempt went out.
    sent: Duration,
    /// When the current attempt times out (older entries of `Ring::due` are stale).
    due: Duration,
    limit: NodeId,
    hop: u16,
    /// Pushes sent so far (the retry comes after the first timeout).
    tries: u8,
    /// The target was silent through every try and is left out of the ring; this share
    /// waits for the member's silence to last (see [`HANDOVER_SILENCE`]) before it is handed
    /// on.
    doubted: bool,
}

/// A node's ring broadcast state.
#[derive(Default)]
pub(super) struct Ring {
    /// Live members not skipped, ourselves included, sorted by [`pos`].
    ids: Vec<NodeId>,
    /// Members found or reported unresponsive: left out of the ring until heard from.
    skip: HashSet<NodeId>,
    /// When we last told the members that push to us that we are alive.
    refuted: Option<Duration>,
    /// Smoothed round trip of acknowledged pushes, and its mean deviation.
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Timeouts since the last sample (the timeout doubles with each), and when the last
    /// one counted.
    backoff: u8,
    backed_off: Option<Duration>,
    pending: HashMap<(NodeId, Dot), Pending>,
    /// Per member, how many pushes may await its acknowledgement, and those that wait.
    pub(super) flow: Flow,
    /// Pushes that waited for members that left the view, to hand on (with the member).
    orphans: Vec<(NodeId, Queued)>,
    /// Acknowledgements to send once the datagrams at hand are handled, per sender.
    acks: Vec<(NodeId, Vec<Dot>)>,
    due: BinaryHeap<Reverse<(Duration, NodeId, Dot)>>,
}

impl Ring {
    /// No push is waiting for its acknowledgement.
    pub(super) fn idle(&self) -> bool {
        self.pending.is_empty()
    }

    fn insert(&mut self, id: NodeId) {
        if let Err(at) = self.ids.binary_search_by_key(&pos(id), |&x| pos(x)) {
            self.ids.insert(at, id);
        }
    }

    fn remove(&mut self, id: NodeId) {
        if let Ok(at) = self.ids.binary_search_by_key(&pos(id), |&x| pos(x)) {
            self.ids.remove(at);
        }
    }

    /// Leaves `id` out of the ring; false if it was already out.
    fn skip(&mut self, id: NodeId) -> bool {
        self.remove(id);
        self.skip.insert(id)
    }

    /// How long to wait for an acknowledgement: the smoothed round trip plus four mean
    /// deviations (as TCP; `initial` before any sample), doubled for each timeout since the
    /// last sample, within [`RTO_MIN`, `RTO_MAX`].
    ///
    /// The doubling is Karn's: only a push acknowledged on its first attempt gives a sample,
    /// so when the round trip grows past the timeout (a loaded machine), every push is retried,
    /// no sample ever comes, and without it the timeout would stay short for good: measured,
    /// 100 nodes on 2 cores retried 1.6 pushes per delivery for a single message per node.
    /// It is the node's, not the push's: a crashed member backs off only until another
    /// member's acknowledgement resets it, so it is not kept in the ring longer.
    pub(super) fn rto(&self, initial: Duration) -> Duration {
        let base = match self.srtt {
            Some(srtt) => srtt + 4 * self.rttvar,
            None => initial,
        };
        (base.max(RTO_MIN) * (1 << self.backoff)).min(RTO_MAX)
    }

    /// The acknowledgement timeout without the back-off: what a member's silence is measured
    /// against (the back-off grows with the very timeouts of a crashed member).
    fn base_rto(&self, initial: Duration) -> Duration {
        self.srtt
            .map_or(initial, |srtt| srtt + 4 * self.rttvar)
            .clamp(RTO_MIN, RTO_MAX)
    }

    /// A push went unanswered in time: the timeout doubles, once per timeout period.
    fn back_off(&mut self, now: Duration, initial: Duration) {
        if self.backed_off.is_none_or(|t| now >= t + self.rto(initial)) {
            self.backoff = (self.backoff + 1).min(BACKOFF_MAX);
            self.backed_off = Some(now);
        }
    }

    /// A round-trip sample: an acknowledgement of a push sent once (Karn), or the answer to
    /// a probe (so that a node has an estimate before its first push is answered: a burst
    /// at internet latency would otherwise retry everything at `ring_ack_timeout`).
    pub(super) fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let dev = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + dev) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        self.backoff = 0;
    }

    /// The smoothed round trip, once there is a sample.
    pub(super) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    fn next_deadline(&self) -> Option<Duration> {
        self.due.peek().map(|Reverse((at, _, _))| *at)
    }
}

/// The key under which a check of `id` (a ping after it went silent) waits for an
/// answer among the pushes: no message has sequence number 0.
fn check_dot(id: NodeId) -> Dot {
    Dot::new(id, 0)
}

/// Where a member sits on the ring: its id scrambled by a bijection of `u32` (an odd
/// multiplier), so that the dense ids the server hands out spread evenly around the ring and
/// the lowest ids are not where every finger wraps to.
pub(super) fn pos(id: NodeId) -> u32 {
    id.0.wrapping_mul(0x9E37_79B1)
}

/// Clockwise distance from `a` to `b` on the ring; a full turn when they are equal.
fn dist(a: NodeId, b: NodeId) -> u64 {
    match pos(b).wrapping_sub(pos(a)) {
        0 => 1 << 32,
        d => u64::from(d),
    }
}

/// The first member of `ring` (sorted by [`pos`]) at least `d` (< 2^32) clockwise past
/// `from`, other than `from`.
fn at_least(ring: &[NodeId], from: NodeId, d: u64) -> Option<NodeId> {
    let target = pos(from).wrapping_add(d as u32);
    let i = ring.partition_point(|&x| pos(x) < target);
    let x = *ring.get(i).or(ring.first())?;
    (x != from).then_some(x)
}

/// The fingers of `me` on `ring` (sorted by [`pos`]) strictly inside its share up to `limit`,
/// nearest first, each with the limit of its own share. Finger j is the first member at least
/// 2^j past `me`, as in Chord: a member leaving the ring moves only the fingers that pointed
/// to it, to its successor.
pub(super) fn shares(ring: &[NodeId], me: NodeId, limit: NodeId) -> Vec<(NodeId, NodeId)> {
    let span = dist(me, limit);
    let mut fingers: Vec<NodeId> = Vec::new();
    for j in 0..32 {
        let d = 1u64 << j;
        if d >= span {
            break;
        }
        let Some(f) = at_least(ring, me, d) else {
            break;
        };
        if dist(me, f) >= span {
            break;
        }
        if fingers.last() != Some(&f) {
            fingers.push(f);
        }
    }
    let limits = fingers.iter().skip(1).copied().chain([limit]);
    fingers.iter().copied().zip(limits).collect()
}

/// The members of `ring` (sorted by [`pos`]) that have `id` as a finger: those whose finger
/// j falls between `id`'s predecessor and `id` (at most [`PUSHING_MAX`]), but `id` itself.
pub(super) fn pushing_to(ring: &[NodeId], id: NodeId) -> Vec<NodeId> {
    let n = ring.len();
    let at = ring.partition_point(|&x| pos(x) < pos(id));
    let Some(pred) = (1..=n)
        .map(|back| ring[(at + n - back) % n])
        .find(|&x| x != id)
    else {
        return Vec::new();
    };
    let gap = pos(id).wrapping_sub(pos(pred));
    let mut out = Vec::new();
    for j in 0..32 {
        // Members x with pos(pred) - 2^j < pos(x) <= pos(id) - 2^j.
        let lo = pos(pred).wrapping_sub(1 << j);
        let start = ring.partition_point(|&x| pos(x) <= lo);
        for k in 0..n {
            let x = ring[(start + k) % n];
            let off = pos(x).wrapping_sub(lo);
            if off == 0 || off > gap || out.len() >= PUSHING_MAX {
                break;
            }
            if x != id && !out.contains(&x) {
                out.push(x);
            }
        }
    }
    out
}

impl Node {
    /// The ring, ourselves included.
    fn ring_ids(&mut self) -> &[NodeId] {
        if let Some(me) = self.own.node_id {
            self.spread.ring.insert(me);
        }
        &self.spread.ring.ids
    }

    /// A member came online (or back into the view).
    pub(super) fn ring_join(&mut self, id: NodeId) {
        if !self.spread.ring.skip.contains(&id) {
            self.spread.ring.insert(id);
        }
    }

    /// Pushes `msg` (received at `hop` hops, or ours at hop 0) to our fingers inside our
    /// share of the ring, up to `limit`.
    pub(super) fn ring_push(&mut self, now: Duration, msg: GroupMsg, hop: u16, limit: NodeId) {
        let Some(me) = self.own.node_id else { return };
        let targets = shares(self.ring_ids(), me, limit);
        let dot = msg.dot();
        let mut wire = Message::Ring { hop, limit, msg };
        for (target, share) in targets {
            if let Message::Ring { limit, .. } = &mut wire {
                *limit = share;
            }
            self.ring_send(now, target, &wire, dot, 1);
        }
    }

    /// Sends attempt `tries` of a ring push and waits for its acknowledgement; a first
    /// attempt waits its turn if the target's window is full (see [`Flow`]).
    fn ring_send(&mut self, now: Duration, target: NodeId, wire: &Message, dot: Dot, tries: u8) {
        let Message::Ring { hop, limit, .. } = *wire else {
            return;
        };
        let first = tries == 1 && !self.spread.ring.pending.contains_key(&(target, dot));
        if first && !self.spread.ring.flow.admit(target, (dot, limit, hop)) {
            return;
        }
        self.ring_transmit(now, target, wire, dot, tries);
    }

    /// Sends attempt `tries` of a ring push (the first went out at `first`) and waits for
    /// its acknowledgement.
    fn ring_transmit(
        &mut self,
        now: Duration,
        target: NodeId,
        wire: &Message,
        dot: Dot,
        tries: u8,
    ) {
        let first = match self.spread.ring.pending.get(&(target, dot)) {
            Some(p) if tries > 1 => p.sent,
            _ => now,
        };
        let Message::Ring { hop, limit, .. } = *wire else {
            return;
        };
        let Some(addr) = self.view.members.get(&target).map(|m| m.info.addr) else {
            return;
        };
        match encode(wire) {
            Ok(p) => self.send_payload_to(target, addr, &p),
            Err(e) => debug_assert!(false, "the node built an unencodable message: {e}"),
        }
        if self.spread.ring.pending.len() < PENDING_MAX || tries > 1 {
            let at = now + self.spread.ring.rto(self.cfg.ring_ack_timeout);
            let new = self.spread.ring.pending.insert(
                (target, dot),
                Pending {
                    sent: first,
                    due: at,
                    limit,
                    hop,
                    tries,
                    doubted: false,
                },
            );
            if new.is_none() {
                self.spread.ring.flow.sent(target);
            }
            self.spread.ring.due.push(Reverse((at, target, dot)));
            self.set_timer(Timer::Ring, at);
        }
    }

    /// Sends the pushes that wait for room in `target`'s window, as far as it allows.
    fn ring_release(&mut self, now: Duration, target: NodeId) {
        while let Some((dot, limit, hop)) = self.spread.ring.flow.next(target) {
            if let Some(msg) = self.group.message(dot) {
                let wire = Message::Ring { hop, limit, msg };
                self.ring_transmit(now, target, &wire, dot, 1);
            }
        }
    }

    /// `gone` will not get its share of `dot`'s broadcast (up to `limit`): the next member
    /// on the ring after it gets it instead, if that one is inside our own share.
    fn ring_hand_on(
        &mut self,
        now: Duration,
        gone: NodeId,
        wire: &Message,
        dot: Dot,
        limit: NodeId,
    ) {
        let Some(me) = self.own.node_id else { return };
        let ring = self.ring_ids();
        let after = ring.partition_point(|&id| pos(id) <= pos(gone));
        let Some(&next) = ring.get(after).or_else(|| ring.first()) else {
            return;
        };
        if next != me && dist(me, next) < dist(me, limit) {
            self.ring_send(now, next, wire, dot, 1);
        }
    }

    /// `gone` left the ring: the pushes that waited for room in its window are to go to the
    /// next members instead.
    fn ring_orphan(&mut self, gone: NodeId) {
        let queued = self.spread.ring.flow.forget(gone);
        let orphans = &mut self.spread.ring.orphans;
        orphans.extend(queued.into_iter().map(|q| (gone, q)));
    }

    /// Hands on the pushes that waited for members that left the ring.
    fn ring_hand_on_orphans(&mut self, now: Duration) {
        for (gone, (dot, limit, hop)) in std::mem::take(&mut self.spread.ring.orphans) {
            if let Some(msg) = self.group.message(dot) {
                let wire = Message::Ring { hop, limit, msg };
                self.ring_hand_on(now, gone, &wire, dot, limit);
            }
        }
    }

    /// Queues the acknowledgement of a push from `sender`: the pushes that arrive together
    /// (the driver hands over a batch of datagrams before the timers) share one `RingAck`.
    pub(super) fn ring_ack_later(&mut self, now: Duration, sender: NodeId, dot: Dot) {
        match self
            .spread
            .ring
            .acks
            .iter_mut()
            .find(|(id, _)| *id == sender)
        {
            Some((_, dots)) => dots.push(dot),
            None => self.spread.ring.acks.push((sender, vec![dot])),
        }
        self.set_timer(Timer::Ring, now);
    }

    fn ring_flush_acks(&mut self) {
        for (id, dots) in std::mem::take(&mut self.spread.ring.acks) {
            let Some(addr) = self.view.members.get(&id).map(|m| m.info.addr) else {
                continue;
            };
            for chunk in dots.chunks(MAX_RING_ACK) {
                self.send_to(
                    id,
                    addr,
                    &Message::RingAck {
                        dots: chunk.to_vec(),
                    },
                );
            }
        }
    }

    /// `RingAck` from `sender`.
    pub(super) fn handle_ring_ack(&mut self, now: Duration, sender: NodeId, dot: Dot) {
        if let Some(p) = self.spread.ring.pending.remove(&(sender, dot)) {
            if p.tries == 1 {
                self.spread.ring.sample(now.saturating_sub(p.sent));
            }
            self.spread.ring.flow.done(sender, true);
            self.ring_release(now, sender);
        }
    }

    /// A member we heard from is back in the ring if we had skipped it.
    pub(super) fn ring_heard(&mut self, id: NodeId) {
        if !self.spread.ring.pending.is_empty() {
            self.spread.ring.pending.remove(&(id, check_dot(id)));
        }
        if self.spread.ring.skip.remove(&id) && self.view.live.contains(id) {
            self.spread.ring.insert(id);
        }
    }

    /// A member left the view or went offline.
    pub(super) fn ring_forget(&mut self, id: NodeId) {
        self.spread.ring.skip.remove(&id);
        self.spread.ring.remove(id);
        // Its queued pushes are handed on when its pending ones time out (a full window
        // means some are pending).
        self.ring_orphan(id);
    }

    /// `RingDown` from `sender`: these members did not answer it. Leave them out and ping
    /// them (an answer puts them back); told that we are down, tell those that push to us.
    pub(super) fn handle_ring_down(&mut self, now: Duration, sender: NodeId, ids: &[NodeId]) {
        let Some(me) = self.own.node_id else { return };
        for &id in ids {
            if id == me {
                self.ring_refute(now);
            } else if id != sender
                && self.view.live.contains(id)
                && !self.spread.ring.skip.contains(&id)
            {
                self.ring_doubt(now, id);
            }
        }
    }

    /// The members that have `id` as a finger on our ring, but us.
    fn others_pushing_to(&mut self, id: NodeId) -> Vec<NodeId> {
        let me = self.own.node_id;
        let mut out = pushing_to(self.ring_ids(), id);
        out.retain(|&x| Some(x) != me);
        out
    }

    /// Leaves `id` out of the ring at once, and pings it: an answer puts it back.
    fn ring_doubt(&mut self, now: Duration, id: NodeId) {
        self.spread.ring.skip(id);
        self.ring_check(now, id, 1);
    }

    /// Pings `id` and waits for any answer like for a push (see [`check_dot`]).
    fn ring_check(&mut self, now: Duration, id: NodeId, tries: u8) {
        let key = (id, check_dot(id));
        if tries == 1 && self.spread.ring.pending.contains_key(&key) {
            return;
        }
        self.ring_ping(id);
        let at = now + self.spread.ring.rto(self.cfg.ring_ack_timeout);
        self.spread.ring.pending.insert(
            key,
            Pending {
                sent: now,
                due: at,
                limit: id,
                hop: 0,
                tries,
                doubted: false,
            },
        );
        self.spread.ring.due.push(Reverse((at, id, key.1)));
        self.set_timer(Timer::Ring, at);
    }

    /// Pings the members that have us as a finger (they skip us by mistake), at most once
    /// per `ring_ack_timeout`.
    fn ring_refute(&mut self, now: Duration) {
        if self
            .spread
            .ring
            .refuted
            .is_some_and(|t| now.saturating_sub(t) < self.cfg.ring_ack_timeout)
        {
            return;
        }
        self.spread.ring.refuted = Some(now);
        let Some(me) = self.own.node_id else { return };
        for id in self.others_pushing_to(me) {
            self.ring_ping(id);
        }
    }

    /// A plain ping to a member (any answer marks it heard): used for ring members reported
    /// down, and for offline members on their slow schedule.
    pub(super) fn ring_ping(&mut self, id: NodeId) {
        if let Some(addr) = self.view.members.get(&id).map(|m| m.info.addr) {
            let nonce: u64 = self.rng.random();
            self.send_to(
                id,
                addr,
                &Message::Ping {
                    nonce,
                    gossip: Vec::new(),
                },
            );
        }
    }

    /// Sends the queued acknowledgements; then, for pushes not acknowledged in time: retry,
    /// then (a member silent since the first attempt) hand its part on and tell the members
    /// that push to it, or (a member heard from meanwhile) one more try; for pings not
    /// answered: ping once more.
    pub(super) fn ring_timer(&mut self, now: Duration) {
        self.ring_flush_acks();
        self.ring_hand_on_orphans(now);
        while let Some(&Reverse((at, target, dot))) = self.spread.ring.due.peek() {
            if at > now {
                break;
            }
            self.spread.ring.due.pop();
            let Some(&p) = self.spread.ring.pending.get(&(target, dot)) else {
                continue;
            };
            if p.due != at {
                continue;
            }
            if dot == check_dot(target) {
                self.spread.ring.pending.remove(&(target, dot));
                // Still silent after the second ping: it stays out until heard from.
                if p.tries < 2 {
                    self.ring_check(now, target, p.tries + 1);
                }
                continue;
            }
            let msg = self.group.message(dot);
            let Some(msg) = msg else {
                self.spread.ring.pending.remove(&(target, dot));
                self.spread.ring.flow.done(target, false);
                self.ring_release(now, target);
                continue;
            };
            let wire = Message::Ring {
                hop: p.hop,
                limit: p.limit,
                msg,
            };
            // A member heard from since the first attempt is alive, only slow or unlucky:
            // handing its part on would add copies to a load it is already behind with
            // (congestion collapse). One more try, then anti-entropy.
            let heard = self
                .view
                .members
                .get(&target)
                .is_some_and(|m| m.last_heard > p.sent);
            if !p.doubted {
                // (A share waiting for its member's silence to last is no new timeout.)
                self.spread.ring.back_off(now, self.cfg.ring_ack_timeout);
            }
            if p.tries < 2 || (heard && p.tries < 3) {
                self.net.stats.ring_retries += 1;
                if !heard {
                    self.spread.ring.flow.lost(target);
                }
                self.ring_transmit(now, target, &wire, dot, p.tries + 1);
                continue;
            }
            if !heard && !p.doubted {
                // Silent since the first attempt: crashed, cut off, or only loaded. It is left
                // out of the ring until a ping shows it alive, and so it is by the members
                // that push to it, which check for themselves: the next broadcasts avoid it.
                self.ring_doubt(now, target);
                let down = Message::RingDown { ids: vec![target] };
                for id in self.others_pushing_to(target) {
                    self.send_member(id, &down);
                }
            }
            let base = self.spread.ring.base_rto(self.cfg.ring_ack_timeout);
            let silence = HANDOVER_SILENCE.max(3 * base);
            if !heard && now < p.sent + silence {
                // This share waits, without sending: a loaded member answers late, and
                // handing its share on would send the whole subtree twice.
                let at = p.sent + silence;
                if let Some(q) = self.spread.ring.pending.get_mut(&(target, dot)) {
                    q.due = at;
                    q.doubted = true;
                }
                self.spread.ring.due.push(Reverse((at, target, dot)));
                continue;
            }
            self.spread.ring.pending.remove(&(target, dot));
            self.spread.ring.flow.done(target, false);
            if heard {
                self.ring_release(now, target);
                continue;
            }
            // Silent all that time: its part goes to the next member.
            self.net.stats.ring_handovers += 1;
            self.ring_hand_on(now, target, &wire, dot, p.limit);
            self.ring_orphan(target);
            self.ring_hand_on_orphans(now);
        }
        if let Some(at) = self.spread.ring.next_deadline() {
            self.set_timer(Timer::Ring, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foldhash::HashMapExt;
    use proptest::prelude::*;

    #[test]
    fn the_timeout_follows_the_round_trip_once_there_is_a_sample() {
        let ms = Duration::from_millis;
        let mut r = Ring::default();
        assert_eq!(
            r.rto(ms(100)),
            ms(100),
            "no sample yet: the configured timeout"
        );
        assert_eq!(r.srtt(), None);
        // A probe answered after 400 ms (internet latency): no retry at 100 ms any more.
        r.sample(ms(400));
        assert_eq!(r.srtt(), Some(ms(400)));
        assert_eq!(r.rto(ms(100)), RTO_MAX.min(ms(400 + 4 * 200)));
        for _ in 0..50 {
            r.sample(ms(400));
        }
        assert!(r.rto(ms(100)) < ms(500) && r.rto(ms(100)) >= ms(400));
        // Bounded both ways.
        r.sample(ms(60_000));
        assert!(r.rto(ms(100)) <= RTO_MAX);
        let mut fast = Ring::default();
        fast.sample(Duration::from_micros(50));
        assert_eq!(fast.rto(ms(100)), RTO_MIN);
    }

    /// Delivers a broadcast from `author` over `ring` by shares; returns receipt counts.
    fn broadcast(ring: &[NodeId], author: NodeId) -> (HashMap<NodeId, u32>, u16) {
        let mut got: HashMap<NodeId, u32> = HashMap::new();
        let mut queue = vec![(author, author, 0u16)];
        let mut depth = 0;
        while let Some((node, limit, hop)) = queue.pop() {
            depth = depth.max(hop);
            for (t, l) in shares(ring, node, limit) {
                *got.entry(t).or_default() += 1;
                queue.push((t, l, hop + 1));
            }
        }
        (got, depth)
    }

    fn ring_of(ids: impl IntoIterator<Item = u32>) -> Vec<NodeId> {
        let mut ring: Vec<NodeId> = ids.into_iter().map(NodeId).collect();
        ring.sort_unstable_by_key(|&x| pos(x));
        ring.dedup();
        ring
    }

    proptest! {
        /// With one view of the ring, every member but the author gets exactly one copy,
        /// within about log2(n) hops.
        #[test]
        fn one_copy_each(ids in proptest::collection::btree_set(any::<u32>(), 1..300),
                         pick in any::<proptest::sample::Index>()) {
            let ring = ring_of(ids);
            let author = ring[pick.index(ring.len())];
            let (got, depth) = broadcast(&ring, author);
            prop_assert_eq!(got.len(), ring.len() - 1);
            prop_assert!(got.values().all(|&c| c == 1));
            prop_assert!(!got.contains_key(&author));
            let log2 = usize::BITS - (ring.len().max(2) - 1).leading_zeros();
            prop_assert!(u32::from(depth) <= 2 * log2 + 2, "depth {depth}, n {}", ring.len());
        }

        /// `pushing_to` finds every member that has a given member as a finger.
        #[test]
        fn pushing_to_finds_every_finger_owner(
            ids in proptest::collection::btree_set(any::<u32>(), 2..200)
        ) {
            let ring = ring_of(ids);
            for &x in &ring {
                for (f, _) in shares(&ring, x, x) {
                    prop_assert!(pushing_to(&ring, f).contains(&x), "{x:?} -> {f:?}");
                }
            }
        }
    }

    #[test]
    fn shares_stay_inside_the_limit_and_the_nearest_comes_first() {
        let ring = ring_of(1..=1000);
        let me = NodeId(500);
        let all = shares(&ring, me, me);
        // Dense ids spread over the ring: about log2(1000) fingers.
        assert!((8..=14).contains(&all.len()), "{}", all.len());
        // The first finger is our successor.
        let at = ring.iter().position(|&x| x == me).expect("in ring");
        assert_eq!(all[0].0, ring[(at + 1) % ring.len()]);
        // Each share ends where the next begins; the last ends at the limit.
        for w in all.windows(2) {
            assert_eq!(w[0].1, w[1].0);
            assert!(dist(me, w[0].0) < dist(me, w[1].0));
        }
        assert_eq!(all.last().map(|s| s.1), Some(me));
        // A narrower share keeps only the fingers inside it.
        let limit = all[3].0;
        let part = shares(&ring, me, limit);
        assert_eq!(part.len(), 3);
        assert_eq!(part[2], (all[2].0, limit));
        assert!(shares(&ring, me, all[0].0).is_empty());
    }
}
