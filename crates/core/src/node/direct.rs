//! Private chat: messages sent directly to the recipient, retransmitted until acknowledged
//! (or kept by mailboxes), delivered in order and exactly once.

use super::private::Acked;
use super::send::Peer;
use super::timers::Timer;
use super::Node;
use crate::io::{Event, HistoryEntry, PeerStatus, Record, Scope};
use p2pchat_proto::{Message, NodeId, PrivateMsg, VectorClock};
use std::time::Duration;

impl Node {
    pub(super) fn member_by_name(&self, user: &str) -> Option<NodeId> {
        self.devices_of(user).first().copied()
    }

    /// The devices of `user` we know (members, then strangers), revoked ones left out.
    pub(super) fn devices_of(&self, user: &str) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .view
            .members
            .values()
            .map(|m| &m.info)
            .chain(self.view.strangers.records())
            .filter(|i| i.user == user && !self.account.is_revoked(i.node_id))
            .map(|i| i.node_id)
            .collect();
        ids.dedup();
        ids
    }

    pub(super) fn send_private(&mut self, now: Duration, to: &str, text: String) {
        let Some(me) = self.own.node_id else {
            self.error("not signed in yet");
            return;
        };
        if to == self.params.user {
            self.error("cannot send a private message to yourself");
            return;
        }
        let devices = self.devices_of(to);
        if devices.is_empty() {
            // Outside our view in a large network: the server knows where online users are.
            if self.partial() && self.lookup(now, to, &text) {
                return;
            }
            self.error(format!("unknown user: {to}"));
            return;
        }
        if !self.text_ok(&text) {
            return;
        }
        // One copy per device of the user, each in its own conversation; shown once.
        let time_ms = self.account.private_time(self.wall(now));
        let rto = self.cfg.private_rto_initial;
        let mut copies = Vec::with_capacity(devices.len());
        for &peer in &devices {
            let msg = self
                .conversations
                .write(me, peer, text.clone(), time_ms, now, rto);
            self.persist(Record::PrivateOut(msg.clone()));
            copies.push(msg);
        }
        let number = self
            .account
            .wrote(to, copies.iter().map(|m| (m.to, m.seq)).collect());
        if let Some(first) = copies.first() {
            self.account.shown.first(first);
            let mut entry = self.private_entry(first);
            entry.seq = number;
            self.event(Event::Message(Box::new(entry)));
        }
        for msg in copies {
            let peer = msg.to;
            self.mirror_push(&msg);
            let away = self
                .view
                .members
                .get(&peer)
                .is_some_and(|m| m.status == PeerStatus::Offline);
            if away {
                // Known to be gone: straight to its mailboxes as well.
                self.deposit(now, peer, msg.seq);
            }
            if let Some(addr) = self.info_of(peer).map(|i| i.addr) {
                self.send_to(peer, addr, &Message::Private(msg));
            }
        }
        self.set_timer(Timer::Private, now + self.cfg.private_rto_initial);
    }

    pub(super) fn private_timer(&mut self, now: Duration) {
        let (resend, next) =
            self.conversations
                .due(now, self.cfg.private_rto_max, self.cfg.mailboxes);
        for r in resend {
            // Not acknowledged in time: to the mailboxes too once the recipient looks away,
            // or after three tries whatever it looks like (a crash takes seconds to notice).
            let away = self
                .view
                .members
                .get(&r.peer)
                .is_none_or(|m| m.status != PeerStatus::Online);
            if r.unanswered && (away || r.tries >= 3) {
                self.deposit(now, r.peer, r.msg.seq);
            }
            match self.info_of(r.peer).map(|i| i.addr) {
                Some(addr) => {
                    self.net.stats.private_retransmits += 1;
                    self.send_to(r.peer, addr, &Message::Private(r.msg));
                }
                None => self.ask_record(now, r.peer),
            }
        }
        if let Some(at) = next {
            self.set_timer(Timer::Private, at);
        }
    }

    pub(super) fn handle_private(&mut self, _now: Duration, from: Peer, msg: PrivateMsg) {
        if Some(msg.to) != self.own.node_id || from.id != msg.from {
            self.net.stats.rejected += 1;
            return;
        }
        let (me, peer) = (msg.to, msg.from);
        let upto = self.accept_private(msg);
        self.reply(
            from,
            &Message::PrivateAck {
                from: me,
                to: peer,
                upto,
            },
        );
    }

    /// Delivers an authentic private message to us exactly once and in its conversation's
    /// order (buffering one that is early); returns how far the conversation is delivered.
    pub(super) fn accept_private(&mut self, msg: PrivateMsg) -> u64 {
        let (ready, upto, duplicate) = self
            .conversations
            .accept(msg, self.cfg.private_buffer_limit);
        if duplicate {
            self.net.stats.private_duplicates += 1;
        }
        for m in ready {
            self.net.stats.private_delivered += 1;
            self.persist(Record::PrivateIn(m.clone()));
            self.mirror_push(&m);
            // (A copy for another device of ours may have come first, from that device.)
            if self.account.shown.first(&m) {
                let entry = self.private_entry(&m);
                self.event(Event::Message(Box::new(entry)));
            }
        }
        upto
    }

    pub(super) fn handle_private_ack(&mut self, peer: NodeId, to: NodeId, upto: u64) {
        if Some(to) != self.own.node_id {
            self.net.stats.rejected += 1;
            return;
        }
        match self.conversations.ack(peer, upto) {
            Acked::Unknown => self.net.stats.rejected += 1,
            Acked::Old => {}
            Acked::Upto(upto) => {
                self.persist(Record::PrivateAcked { peer, upto });
                // Acknowledged by one device of the user: delivered to the user.
                if let Some((user, upto)) = self.account.acked(peer, upto) {
                    self.event(Event::Acked { peer: user, upto });
                }
            }
        }
    }

    pub(super) fn private_entry(&self, m: &PrivateMsg) -> HistoryEntry {
        let clock: VectorClock = [(m.from, m.seq), (m.to, m.seen)].into_iter().collect();
        HistoryEntry {
            scope: Scope::Private,
            id: format!("{}>{}.{}", m.from, m.to, m.seq),
            from_id: m.from,
            from: self.user_name(m.from),
            to: Some(self.user_name(m.to)),
            text: m.text.clone(),
            clock: Some(clock),
            order: m.seq + m.seen,
            seq: m.seq,
            time_ms: m.time_ms,
        }
    }
}
