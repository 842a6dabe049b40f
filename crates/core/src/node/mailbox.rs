//! Offline delivery: the node's side of mailboxes (the sealing, the choice of mailboxes and
//! the bounded store are in [`crate::mail`]).
//!
//! - **Sender**: a private message not acknowledged in time (its recipient looks away, or
//!   three direct tries went unanswered) is also sealed for the recipient alone and deposited
//!   with the recipient's mailboxes: the `mailboxes` members that are up with the highest
//!   rendezvous scores for it. A mailbox's `Stored` makes the message *stored* for the user;
//!   the recipient's `PrivateAck` (directly, once both are online) makes it *delivered*.
//!   Until then it stays in the outbox, as before.
//! - **Mailbox**: keeps what it is given (bounded per sender and per recipient, persisted,
//!   dropped at expiry), and hands it to the recipient as soon as it hears from it, and again
//!   every couple of seconds while the recipient is up and has not acknowledged.
//! - **Recipient**: opens what a mailbox hands over (only it can), delivers it exactly once
//!   and in order like a direct private message, and acknowledges to the mailbox (`MailAck`)
//!   and to the sender.

use super::*;
use crate::mail::{self, Limits, Put};

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

    /// Seals `msg` for its recipient and deposits it with the recipient's mailboxes.
    pub(super) fn deposit(&mut self, now: Duration, msg: &PrivateMsg) {
        if self.cfg.mailboxes == 0 {
            return;
        }
        let Some(to_dh) = self.info_of(msg.to).map(|i| i.cert.dh_pk) else {
            return;
        };
        let me = msg.from;
        let candidates: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(&id, m)| id != msg.to && m.status == PeerStatus::Online)
            .map(|(&id, _)| id)
            .collect();
        let boxes = mail::choose(msg.to, candidates.into_iter(), self.cfg.mailboxes);
        if boxes.is_empty() {
            return;
        }
        let expires_ms = self
            .wall(now)
            .saturating_add(self.cfg.mailbox_ttl.as_millis() as u64);
        let mut nonce = [0u8; 24];
        rand::RngCore::fill_bytes(&mut self.crng, &mut nonce);
        let Some(blob) = mail::seal(&self.ident, msg, &to_dh, expires_ms, nonce) else {
            return;
        };
        debug_assert_eq!(blob.from, me);
        let deposit = Message::Deposit(blob);
        for b in boxes {
            if let Some(addr) = self.members.get(&b).map(|m| m.info.addr) {
                self.send_to(b, addr, &deposit);
            }
        }
    }

    /// A member asks us to keep a message for its recipient (`blob.from` is the
    /// authenticated sender: checked by the caller).
    pub(super) fn handle_deposit(&mut self, now: Duration, sender: NodeId, blob: MailBlob) {
        let (to, seq) = (blob.to, blob.seq);
        if Some(to) == self.node_id {
            // For us after all: it is the message itself.
            return self.receive_mail(None, blob);
        }
        match self
            .mailbox
            .put(blob.clone(), self.mail_limits(), self.wall(now))
        {
            Put::Stored => self.persist(Record::MailboxPut(blob)),
            Put::Duplicate => {}
            Put::Refused => {
                self.stats.rejected += 1;
                return;
            }
        }
        if let Some(addr) = self.info_of(sender).map(|i| i.addr) {
            self.send_to(sender, addr, &Message::Stored { to, seq });
        }
        // The recipient may be up after all (the sender only failed to reach it).
        self.mail_handed.remove(&to);
        self.hand_over(now, to);
    }

    /// A mailbox keeps our message `seq` to `to`.
    pub(super) fn handle_stored(&mut self, to: NodeId, seq: u64) {
        let Some(o) = self
            .conversations
            .get_mut(&to)
            .and_then(|c| c.outbox.get_mut(&seq))
        else {
            // Acknowledged meanwhile, or never ours.
            return;
        };
        if !std::mem::replace(&mut o.stored, true) {
            let peer = self.user_name(to);
            self.event(Event::Stored { peer, seq });
        }
    }

    /// Hands `to` what we keep for it, if it is up and was not handed it just now.
    pub(super) fn hand_over(&mut self, now: Duration, to: NodeId) {
        if !self.mailbox.has_mail_for(to) {
            return;
        }
        let up = self
            .members
            .get(&to)
            .is_some_and(|m| m.status == PeerStatus::Online);
        let recent = self
            .mail_handed
            .get(&to)
            .is_some_and(|&t| now.saturating_sub(t) < HAND_OVER_EVERY);
        let Some(addr) = self.members.get(&to).map(|m| m.info.addr) else {
            return;
        };
        if !up || recent {
            return;
        }
        self.mail_handed.insert(to, now);
        let blobs: Vec<MailBlob> = self
            .mailbox
            .for_recipient(to)
            .take(HAND_OVER_MAX)
            .cloned()
            .collect();
        for blob in blobs {
            self.send_to(to, addr, &Message::Mail(blob));
        }
    }

    /// Once a probe round: drop what expired, hand over again what is not acknowledged.
    pub(super) fn mail_tick(&mut self, now: Duration) {
        if self.mailbox.is_empty() {
            return;
        }
        for (to, from, seq) in self.mailbox.expire(self.wall(now)) {
            self.persist(Record::MailboxDrop {
                to,
                from,
                upto: seq,
            });
        }
        for to in self.mailbox.recipients() {
            self.hand_over(now, to);
        }
    }

    /// A mailbox hands us a message kept for us.
    pub(super) fn handle_mail(&mut self, from: SocketAddr, blob: MailBlob) {
        if Some(blob.to) != self.node_id {
            self.stats.rejected += 1;
            return;
        }
        self.receive_mail(Some(from), blob);
    }

    /// Opens and delivers a blob for us; acknowledges to the mailbox at `mailbox` (if it
    /// came from one) and to the sender.
    fn receive_mail(&mut self, mailbox: Option<SocketAddr>, blob: MailBlob) {
        let Some(me) = self.node_id else { return };
        let author = blob.from;
        let Some(from_dh) = self.info_of(author).map(|i| i.cert.dh_pk) else {
            // An author we cannot authenticate: the mailbox hands it again later.
            self.stats.unverifiable += 1;
            return;
        };
        let Some(msg) = mail::open(&self.ident, &blob, &from_dh) else {
            self.stats.unauthenticated += 1;
            return;
        };
        let upto = self.accept_private(msg);
        if let Some(mailbox) = mailbox {
            self.send(mailbox, &Message::MailAck { from: author, upto });
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
        if self.mailbox.drop_upto(sender, from, upto) {
            self.persist(Record::MailboxDrop {
                to: sender,
                from,
                upto,
            });
        }
    }
}
