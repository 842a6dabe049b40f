//! Offline delivery: the node's side of mailboxes (the sealing, the choice of mailboxes and
//! the bounded store are in [`crate::mail`]).
//!
//! - **Sender**: a private message not acknowledged in time (its recipient looks away, or
//!   three direct tries went unanswered) is also sealed for the recipient alone and deposited
//!   with the recipient's mailboxes: the `mailboxes` members not offline with the highest
//!   rendezvous scores for it. At each retry until that many have confirmed (`Stored`), it
//!   asks again, passing over those asked before that did not answer (gone, but not noticed
//!   yet). The first `Stored` makes the message *stored* for the user; the recipient's
//!   `PrivateAck` (directly, once both are online) makes it *delivered*. Until then it stays
//!   in the outbox, as before.
//! - **Mailbox**: keeps what it is given once the sender's signature checks (bounded per
//!   sender and per recipient, persisted, dropped at expiry), and hands it to the recipient
//!   as soon as it hears from it, and again every couple of seconds while the recipient is up
//!   and has not acknowledged. When the recipient's mailbox set changes (a mailbox went
//!   away, so the next member in rendezvous order takes its place) it deposits a copy with
//!   the newcomer to the set: what it keeps outlives the mailboxes that leave.
//! - **Recipient**: opens what a mailbox hands over (only it can), delivers it exactly once
//!   and in order like a direct private message, and acknowledges to the mailbox (`MailAck`)
//!   and to the sender.

use super::send::Peer;
use super::Node;
use crate::io::{Event, PeerStatus, Record};
use crate::mail::{self, Limits, Put};
use p2pchat_proto::{MailBlob, Message, NodeId};
use std::time::Duration;

/// Least time between two hand-overs of the same recipient's mail.
const HAND_OVER_EVERY: Duration = Duration::from_secs(2);
/// Blobs handed to one recipient per hand-over (the rest follow on the next).
const HAND_OVER_MAX: usize = 64;

impl Node {
    pub(super) fn mail_limits(&self) -> Limits {
        Limits {
            per_sender: self.cfg.mailbox_per_sender,
            per_recipient: self.cfg.mailbox_per_recipient,
        }
    }

    /// Seals our message `seq` to `to` for its recipient and deposits it with the
    /// recipient's mailboxes that have not confirmed yet, passing over those asked before
    /// that never answered.
    pub(super) fn deposit(&mut self, now: Duration, to: NodeId, seq: u64) {
        if self.cfg.mailboxes == 0 {
            return;
        }
        let Some(to_dh) = self.info_of(to).map(|i| i.cert.dh_pk) else {
            return;
        };
        let Some(o) = self.conversations.outgoing(to, seq) else {
            return;
        };
        let silent: Vec<NodeId> = o
            .boxes_asked
            .iter()
            .copied()
            .filter(|b| !o.boxes_stored.contains(b))
            .collect();
        let stored = o.boxes_stored.clone();
        let msg = o.msg.clone();
        let live = self
            .view
            .live
            .ids()
            .iter()
            .copied()
            .filter(|id| *id != to && !silent.contains(id));
        let boxes: Vec<NodeId> = mail::choose(to, live, self.cfg.mailboxes)
            .into_iter()
            .filter(|b| !stored.contains(b))
            .collect();
        if boxes.is_empty() {
            return;
        }
        if let Some(o) = self.conversations.outgoing_mut(to, seq) {
            for b in &boxes {
                if !o.boxes_asked.contains(b) {
                    o.boxes_asked.push(*b);
                }
            }
        }
        let expires_ms = self
            .wall(now)
            .saturating_add(self.cfg.mailbox_ttl.as_millis() as u64);
        let mut nonce = [0u8; 24];
        rand::RngCore::fill_bytes(&mut self.own.crng, &mut nonce);
        let Some(blob) = mail::seal(&self.own.ident, &msg, &to_dh, expires_ms, nonce) else {
            return;
        };
        let deposit = Message::Deposit(blob);
        for b in boxes {
            if let Some(addr) = self.view.members.get(&b).map(|m| m.info.addr) {
                self.send_to(b, addr, &deposit);
            }
        }
    }

    /// `to`'s mailbox set as a mailbox sees it: the members not offline, ourselves
    /// included, with the highest rendezvous scores.
    fn mailboxes_of(&self, to: NodeId) -> Vec<NodeId> {
        let live = self.view.live.ids().iter().copied().filter(|&id| id != to);
        mail::choose(to, live.chain(self.own.node_id), self.cfg.mailboxes)
    }

    /// Whether the blob carries its sender's signature (whoever passes it on).
    fn mail_signed(&mut self, blob: &MailBlob) -> bool {
        let vk = if Some(blob.from) == self.own.node_id {
            self.own.my_vk
        } else {
            self.signing_key(blob.from)
        };
        let Some(vk) = vk else {
            // A sender we cannot check (outside our view): not kept; others will be.
            self.net.stats.unverifiable += 1;
            return false;
        };
        let ok = mail::authentic(&self.own.ident, blob, &vk);
        if !ok {
            self.net.stats.bad_signature += 1;
        }
        ok
    }

    /// A member (the sender, or a mailbox passing a copy on) asks us to keep a message for
    /// its recipient.
    pub(super) fn handle_deposit(&mut self, now: Duration, from: Peer, blob: MailBlob) {
        if !self.mail_signed(&blob) {
            return;
        }
        let (to, seq) = (blob.to, blob.seq);
        if Some(to) == self.own.node_id {
            // For us after all: it is the message itself.
            return self.receive_mail(None, blob);
        }
        let now_ms = self.wall(now);
        match self
            .mail
            .mailbox
            .put(blob.clone(), self.mail_limits(), now_ms)
        {
            Put::Stored => self.persist(Record::MailboxPut(blob)),
            Put::Duplicate => {}
            Put::Refused => {
                self.net.stats.rejected += 1;
                return;
            }
        }
        // To whoever gave it: the sender shows it stored, a mailbox ignores it.
        self.reply(from, &Message::Stored { to, seq });
        if !self.mail.handover.holders_known(to) {
            // The set as the sender saw it (it deposited with each of them).
            let holders = self.mailboxes_of(to);
            self.mail.handover.set_holders(to, holders);
        }
        // The recipient may be up after all (the sender only failed to reach it).
        self.mail.handover.hand_again(to);
        self.hand_over(now, to);
    }

    /// Mailbox `sender` keeps our message `seq` to `to`.
    pub(super) fn handle_stored(&mut self, sender: NodeId, to: NodeId, seq: u64) {
        let Some(o) = self.conversations.outgoing_mut(to, seq) else {
            // Acknowledged meanwhile, never ours, or a mailbox's copy for another.
            return;
        };
        if !o.boxes_asked.contains(&sender) || o.boxes_stored.contains(&sender) {
            return;
        }
        o.boxes_stored.push(sender);
        if o.boxes_stored.len() == 1 {
            // Numbered among our messages to the user, as the front ends count them.
            let (peer, seq) = self
                .account
                .number_of(to, seq)
                .unwrap_or_else(|| (self.user_name(to), seq));
            self.event(Event::Stored { peer, seq });
        }
    }

    /// What we keep for `to`, at most what one hand-over carries.
    fn mail_for(&self, to: NodeId) -> Vec<MailBlob> {
        self.mail
            .mailbox
            .for_recipient(to)
            .take(HAND_OVER_MAX)
            .cloned()
            .collect()
    }

    /// Hands `to` what we keep for it, if it is up and was not handed it just now.
    pub(super) fn hand_over(&mut self, now: Duration, to: NodeId) {
        if !self.mail.mailbox.has_mail_for(to) {
            return;
        }
        let up = self
            .view
            .members
            .get(&to)
            .is_some_and(|m| m.status == PeerStatus::Online);
        let recent = self.mail.handover.handed_recently(to, now, HAND_OVER_EVERY);
        let Some(addr) = self.view.members.get(&to).map(|m| m.info.addr) else {
            return;
        };
        if !up || recent {
            return;
        }
        self.mail.handover.handed(to, now);
        let blobs = self.mail_for(to);
        for blob in blobs {
            self.send_to(to, addr, &Message::Mail(blob));
        }
    }

    /// Once a probe round: drop what expired, hand over again what is not acknowledged,
    /// and give a copy to members that joined a recipient's mailbox set.
    pub(super) fn mail_tick(&mut self, now: Duration) {
        if self.mail.mailbox.is_empty() {
            self.mail.handover.clear();
            return;
        }
        for (to, from, seq) in self.mail.mailbox.expire(self.wall(now)) {
            self.persist(Record::MailboxDrop {
                to,
                from,
                upto: seq,
            });
        }
        let recipients = self.mail.mailbox.recipients();
        self.mail.handover.retain(&recipients);
        for to in recipients {
            self.hand_over(now, to);
            self.replicate(to);
        }
    }

    /// Deposits our copies of `to`'s mail with members new to its mailbox set (while `to`
    /// is away: once it is up, the hand-over settles it).
    fn replicate(&mut self, to: NodeId) {
        let up = self
            .view
            .members
            .get(&to)
            .is_some_and(|m| m.status == PeerStatus::Online);
        if up {
            return;
        }
        let set = self.mailboxes_of(to);
        let new = self.mail.handover.new_holders(to, &set, self.own.node_id);
        if new.is_empty() {
            return;
        }
        let blobs = self.mail_for(to);
        for id in new {
            if let Some(addr) = self.view.members.get(&id).map(|m| m.info.addr) {
                for blob in &blobs {
                    self.send_to(id, addr, &Message::Deposit(blob.clone()));
                }
            }
        }
    }

    /// A mailbox hands us a message kept for us.
    pub(super) fn handle_mail(&mut self, from: Peer, blob: MailBlob) {
        if Some(blob.to) != self.own.node_id {
            self.net.stats.rejected += 1;
            return;
        }
        self.receive_mail(Some(from), blob);
    }

    /// Opens and delivers a blob for us; acknowledges to the `mailbox` (if it came from one)
    /// and to the sender.
    fn receive_mail(&mut self, mailbox: Option<Peer>, blob: MailBlob) {
        let Some(me) = self.own.node_id else { return };
        let author = blob.from;
        let Some(from_dh) = self.info_of(author).map(|i| i.cert.dh_pk) else {
            // An author we cannot authenticate: the mailbox hands it again later.
            self.net.stats.unverifiable += 1;
            return;
        };
        if !self.mail_signed(&blob) {
            return;
        }
        let Some(msg) = mail::open(&self.own.ident, &blob, &from_dh) else {
            self.net.stats.unauthenticated += 1;
            return;
        };
        let upto = self.accept_private(msg);
        if let Some(mailbox) = mailbox {
            self.reply(mailbox, &Message::MailAck { from: author, upto });
        }
        if let Some(addr) = self.info_of(author).map(|i| i.addr) {
            let ack = Message::PrivateAck {
                from: me,
                to: author,
                upto,
            };
            self.send_to(author, addr, &ack);
        }
    }

    /// The recipient (`sender`, authenticated) has `from`'s messages up to `upto`.
    pub(super) fn handle_mail_ack(&mut self, sender: NodeId, from: NodeId, upto: u64) {
        if self.mail.mailbox.drop_upto(sender, from, upto) {
            self.persist(Record::MailboxDrop {
                to: sender,
                from,
                upto,
            });
        }
    }
}
