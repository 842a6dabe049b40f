//! Private conversations: per peer, our counter and outbox (retransmitted with exponential
//! backoff until acknowledged, or kept by mailboxes), the peer's counter and a small buffer
//! for early arrivals, and the history. Delivery is exactly once and in order per
//! conversation; acknowledgements are cumulative.

use crate::io::ConversationSummary;
use p2pchat_proto::{NodeId, PrivateMsg};
use std::collections::BTreeMap;
use std::time::Duration;

/// One of our private messages not yet acknowledged.
pub(super) struct Outgoing {
    pub(super) msg: PrivateMsg,
    next_try: Duration,
    rto: Duration,
    /// Times it was sent directly.
    pub(super) tries: u32,
    /// Mailboxes asked to keep it, and those that confirmed (see `node/mailbox.rs`).
    pub(super) boxes_asked: Vec<NodeId>,
    pub(super) boxes_stored: Vec<NodeId>,
}

impl Outgoing {
    fn new(msg: PrivateMsg, next_try: Duration, rto: Duration, tries: u32) -> Self {
        Outgoing {
            msg,
            next_try,
            rto,
            tries,
            boxes_asked: Vec::new(),
            boxes_stored: Vec::new(),
        }
    }

    /// A mailbox keeps it.
    pub(super) fn stored(&self) -> bool {
        !self.boxes_stored.is_empty()
    }
}

#[derive(Default)]
struct Conversation {
    sent: u64,
    delivered: u64,
    acked: u64,
    outbox: BTreeMap<u64, Outgoing>,
    inbox: BTreeMap<u64, PrivateMsg>,
    history: Vec<PrivateMsg>,
}

/// What an acknowledgement did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Acked {
    /// No conversation with that peer.
    Unknown,
    /// Nothing new.
    Old,
    /// Everything up to this is acknowledged now.
    Upto(u64),
}

/// A message to send again, and whether it went unanswered twice while no mailbox has it.
pub(super) struct Resend {
    pub(super) peer: NodeId,
    pub(super) msg: PrivateMsg,
    pub(super) unanswered: bool,
    pub(super) tries: u32,
}

/// All private conversations.
#[derive(Default)]
pub(super) struct Conversations(BTreeMap<NodeId, Conversation>);

impl Conversations {
    /// Restores one of our messages from the store (queued again unless acknowledged).
    pub(super) fn restore_out(&mut self, msg: &PrivateMsg, now: Duration, rto: Duration) {
        let conv = self.0.entry(msg.to).or_default();
        if msg.seq > conv.sent {
            conv.sent = msg.seq;
            conv.history.push(msg.clone());
            if msg.seq > conv.acked {
                conv.outbox
                    .insert(msg.seq, Outgoing::new(msg.clone(), now, rto, 0));
            }
        }
    }

    /// Restores a message delivered to us.
    pub(super) fn restore_in(&mut self, msg: &PrivateMsg) {
        let conv = self.0.entry(msg.from).or_default();
        if msg.seq == conv.delivered + 1 {
            conv.delivered = msg.seq;
            conv.history.push(msg.clone());
        }
    }

    /// Restores an acknowledgement.
    pub(super) fn restore_acked(&mut self, peer: NodeId, upto: u64) {
        let conv = self.0.entry(peer).or_default();
        conv.acked = conv.acked.max(upto);
        let upto = conv.acked;
        conv.outbox.retain(|&seq, _| seq > upto);
    }

    /// Our next message to `peer`, queued for sending (first retry after `rto`).
    pub(super) fn write(
        &mut self,
        me: NodeId,
        peer: NodeId,
        text: String,
        time_ms: u64,
        now: Duration,
        rto: Duration,
    ) -> PrivateMsg {
        let conv = self.0.entry(peer).or_default();
        let msg = PrivateMsg {
            from: me,
            to: peer,
            seq: conv.sent + 1,
            seen: conv.delivered,
            text,
            time_ms,
        };
        conv.sent = msg.seq;
        conv.history.push(msg.clone());
        conv.outbox
            .insert(msg.seq, Outgoing::new(msg.clone(), now + rto, rto, 1));
        msg
    }

    /// Messages due for another try at `now` (their backoff doubles, up to `rto_max`), and
    /// when the next one is due. `mailboxes`: how many confirmations make a message safe.
    pub(super) fn due(
        &mut self,
        now: Duration,
        rto_max: Duration,
        mailboxes: usize,
    ) -> (Vec<Resend>, Option<Duration>) {
        let mut resend = Vec::new();
        let mut next: Option<Duration> = None;
        for (peer, conv) in self.0.iter_mut() {
            for o in conv.outbox.values_mut() {
                if o.next_try <= now {
                    o.tries = o.tries.saturating_add(1);
                    let unstored = o.boxes_stored.len() < mailboxes;
                    resend.push(Resend {
                        peer: *peer,
                        msg: o.msg.clone(),
                        unanswered: unstored && o.tries >= 2,
                        tries: o.tries,
                    });
                    o.rto = (o.rto * 2).min(rto_max);
                    o.next_try = now + o.rto;
                }
                next = Some(next.map_or(o.next_try, |n: Duration| n.min(o.next_try)));
            }
        }
        (resend, next)
    }

    /// The peer is back: everything we owe it is due now, backoff reset. Returns whether
    /// there is anything.
    pub(super) fn flush(&mut self, peer: NodeId, now: Duration, rto: Duration) -> bool {
        let Some(conv) = self.0.get_mut(&peer) else {
            return false;
        };
        for o in conv.outbox.values_mut() {
            o.next_try = now;
            o.rto = rto;
        }
        !conv.outbox.is_empty()
    }

    /// Takes a message addressed to us: returns the messages now deliverable, in order
    /// (an early one is buffered, up to `limit`), how far the conversation is delivered,
    /// and whether it was a duplicate.
    pub(super) fn accept(&mut self, msg: PrivateMsg, limit: usize) -> (Vec<PrivateMsg>, u64, bool) {
        let conv = self.0.entry(msg.from).or_default();
        let mut ready = Vec::new();
        let mut duplicate = false;
        if msg.seq <= conv.delivered {
            duplicate = true;
        } else if msg.seq == conv.delivered + 1 {
            conv.delivered = msg.seq;
            ready.push(msg);
            while let Some(next) = conv.inbox.remove(&(conv.delivered + 1)) {
                conv.delivered = next.seq;
                ready.push(next);
            }
        } else if conv.inbox.len() < limit {
            conv.inbox.insert(msg.seq, msg);
        }
        conv.history.extend(ready.iter().cloned());
        (ready, conv.delivered, duplicate)
    }

    /// The peer acknowledged everything up to `upto`.
    pub(super) fn ack(&mut self, peer: NodeId, upto: u64) -> Acked {
        let Some(conv) = self.0.get_mut(&peer) else {
            return Acked::Unknown;
        };
        let upto = upto.min(conv.sent);
        if upto <= conv.acked {
            return Acked::Old;
        }
        conv.acked = upto;
        conv.outbox.retain(|&seq, _| seq > upto);
        Acked::Upto(upto)
    }

    /// One of our unacknowledged messages.
    pub(super) fn outgoing(&self, peer: NodeId, seq: u64) -> Option<&Outgoing> {
        self.0.get(&peer)?.outbox.get(&seq)
    }

    /// See [`Conversations::outgoing`].
    pub(super) fn outgoing_mut(&mut self, peer: NodeId, seq: u64) -> Option<&mut Outgoing> {
        self.0.get_mut(&peer)?.outbox.get_mut(&seq)
    }

    /// Peers we owe unacknowledged messages.
    pub(super) fn owed(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.0
            .iter()
            .filter(|(_, c)| !c.outbox.is_empty())
            .map(|(&id, _)| id)
    }

    /// Unacknowledged messages in all.
    pub(super) fn pending(&self) -> usize {
        self.0.values().map(|c| c.outbox.len()).sum()
    }

    /// Of those, kept by a mailbox.
    pub(super) fn stored(&self) -> usize {
        self.0
            .values()
            .map(|c| c.outbox.values().filter(|o| o.stored()).count())
            .sum()
    }

    /// Every message acknowledged or kept by a mailbox.
    pub(super) fn safe(&self) -> bool {
        self.0
            .values()
            .all(|c| c.outbox.values().all(Outgoing::stored))
    }

    /// The conversation with `peer` in display order (a message after what its author had
    /// seen of the other side).
    pub(super) fn history(&self, peer: NodeId) -> Vec<&PrivateMsg> {
        let Some(conv) = self.0.get(&peer) else {
            return Vec::new();
        };
        let mut msgs: Vec<&PrivateMsg> = conv.history.iter().collect();
        msgs.sort_by_key(|m| (m.seq + m.seen, m.from, m.seq));
        msgs
    }

    /// Each direction of each conversation as `(from, to, upto)`: ours to the peer as far
    /// as written, the peer's to us as far as delivered (both contiguous from 1).
    pub(super) fn streams(&self, me: NodeId) -> Vec<(NodeId, NodeId, u64)> {
        let mut out = Vec::with_capacity(self.0.len() * 2);
        for (&peer, c) in &self.0 {
            if c.sent > 0 {
                out.push((me, peer, c.sent));
            }
            if c.delivered > 0 {
                out.push((peer, me, c.delivered));
            }
        }
        out
    }

    /// The messages of one direction, `from` to `to`, after counter `upto`, in order.
    pub(super) fn stream_after(
        &self,
        me: NodeId,
        from: NodeId,
        to: NodeId,
        upto: u64,
    ) -> impl Iterator<Item = &PrivateMsg> {
        let peer = if from == me { to } else { from };
        self.0
            .get(&peer)
            .into_iter()
            .flat_map(|c| c.history.iter())
            .filter(move |m| m.from == from && m.to == to && m.seq > upto)
    }

    /// The peers we have a conversation with.
    pub(super) fn peers(&self) -> Vec<NodeId> {
        self.0.keys().copied().collect()
    }

    /// Conversations with any message, for an overview; `name` gives a peer's username.
    pub(super) fn summaries(&self, name: impl Fn(NodeId) -> String) -> Vec<ConversationSummary> {
        self.0
            .iter()
            .filter(|(_, c)| c.sent > 0 || c.delivered > 0)
            .map(|(&id, c)| ConversationSummary {
                with: name(id),
                sent: c.sent,
                acked: c.acked.min(c.sent),
                received: c.delivered,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn incoming(seq: u64) -> PrivateMsg {
        PrivateMsg {
            from: NodeId(2),
            to: NodeId(1),
            seq,
            seen: 0,
            text: format!("m{seq}"),
            time_ms: 0,
        }
    }

    #[test]
    fn early_messages_wait_and_duplicates_are_noticed() {
        let mut c = Conversations::default();
        let (ready, upto, dup) = c.accept(incoming(2), 8);
        assert!(
            (ready.is_empty(), upto, dup) == (true, 0, false),
            "2 waits for 1"
        );
        let (ready, upto, _) = c.accept(incoming(1), 8);
        assert_eq!(ready.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(upto, 2);
        assert!(c.accept(incoming(1), 8).2, "a duplicate");
        assert_eq!(c.history(NodeId(2)).len(), 2);
        // The early-arrival buffer is bounded.
        let (_, _, _) = c.accept(incoming(5), 0);
        assert_eq!(c.accept(incoming(3), 8).1, 3, "5 was not kept");
    }

    #[test]
    fn unacknowledged_messages_back_off_until_acknowledged() {
        let mut c = Conversations::default();
        let m1 = c.write(NodeId(1), NodeId(2), "a".into(), 0, ms(0), ms(100));
        c.write(NodeId(1), NodeId(2), "b".into(), 0, ms(0), ms(100));
        assert_eq!((m1.seq, c.pending()), (1, 2));
        let (due, next) = c.due(ms(50), ms(1_000), 3);
        assert!(due.is_empty());
        assert_eq!(next, Some(ms(100)));
        let (due, next) = c.due(ms(100), ms(1_000), 3);
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|r| r.unanswered && r.tries == 2));
        assert_eq!(next, Some(ms(300)), "the backoff doubled");
        assert_eq!(c.ack(NodeId(2), 1), Acked::Upto(1));
        assert_eq!(c.ack(NodeId(2), 1), Acked::Old);
        assert_eq!(c.ack(NodeId(3), 1), Acked::Unknown);
        assert_eq!(
            c.ack(NodeId(2), 9),
            Acked::Upto(2),
            "never past what was sent"
        );
        assert!(c.safe() && c.pending() == 0);
        let s = c.summaries(|id| format!("n{}", id.0));
        assert_eq!((s[0].sent, s[0].acked, s[0].received), (2, 2, 0));
    }

    #[test]
    fn each_direction_is_a_stream_contiguous_from_one() {
        let mut c = Conversations::default();
        let (me, peer) = (NodeId(1), NodeId(2));
        c.write(me, peer, "a".into(), 0, ms(0), ms(100));
        c.write(me, peer, "b".into(), 0, ms(0), ms(100));
        c.accept(incoming(1), 8);
        assert_eq!(c.streams(me), [(me, peer, 2), (peer, me, 1)]);
        let texts = |from, to, upto| {
            c.stream_after(me, from, to, upto)
                .map(|m| m.text.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(me, peer, 1), ["b"]);
        assert_eq!(texts(peer, me, 0), ["m1"]);
        assert!(texts(me, NodeId(9), 0).is_empty());
    }

    #[test]
    fn a_restored_outbox_is_due_at_once_and_flushes_when_the_peer_returns() {
        let mut c = Conversations::default();
        let msg = PrivateMsg {
            from: NodeId(1),
            to: NodeId(2),
            seq: 1,
            seen: 0,
            text: "x".into(),
            time_ms: 0,
        };
        c.restore_out(&msg, ms(10), ms(100));
        assert_eq!(c.due(ms(10), ms(1_000), 3).0.len(), 1);
        assert!(c.flush(NodeId(2), ms(20), ms(100)));
        assert_eq!(c.due(ms(20), ms(1_000), 3).0.len(), 1, "due again at once");
        c.restore_acked(NodeId(2), 1);
        assert!(!c.flush(NodeId(2), ms(30), ms(100)));
    }
}
