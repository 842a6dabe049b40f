//! Restore: each persisted record puts back what it recorded (identity, keys, member
//! records, group and private messages, acknowledgements, mailbox contents, revocations,
//! the account's private history from other devices).

use super::mirror::Logical;
use super::timers::Timer;
use super::views::Admit;
use super::Node;
use crate::io::Record;
use crate::secure;
use crate::HashSet;
use p2pchat_proto::NodeId;
use std::time::Duration;

impl Node {
    /// Replays one record; `view`: the member records that come back as members (the
    /// newest `view_max`), the others as strangers.
    pub(super) fn replay(&mut self, now: Duration, record: &Record, view: &HashSet<NodeId>) {
        match record {
            Record::Identity { node_id, .. } => self.own.node_id = Some(*node_id),
            Record::Group(msg) => {
                let dot = msg.dot();
                if !self.group.seen(dot) {
                    self.hold(now, msg.clone());
                }
            }
            Record::PrivateOut(msg) => {
                let rto = self.cfg.private_rto_initial;
                self.conversations.restore_out(msg, now, rto);
                // Consecutive copies of one message (one per device of its user) are one.
                let key = Logical::of(msg);
                let same = self.account.last_restored == Some(key);
                self.account.last_restored = Some(key);
                let user = self.user_name(msg.to);
                self.account.restore_copy(&user, (msg.to, msg.seq), same);
                self.account.last_private_ms = self.account.last_private_ms.max(msg.time_ms);
                self.account.shown.first(msg);
            }
            Record::PrivateIn(msg) => {
                self.conversations.restore_in(msg);
                self.account.shown.first(msg);
            }
            Record::PrivateAcked { peer, upto } => {
                self.conversations.restore_acked(*peer, *upto);
                self.account.acked(*peer, *upto);
            }
            Record::PrivateCopy {
                msg,
                from_user,
                to_user,
            } => {
                if self.account.mirror.accept(msg, from_user, to_user) {
                    self.account.shown.first(msg);
                }
            }
            Record::Revoked(r) => {
                self.account.revoke(r.clone());
            }
            Record::Peer(info) if view.contains(&info.node_id) => {
                self.learn_member(now, info.clone(), false, Admit::IfRoom);
            }
            Record::Peer(info) => {
                self.stranger_insert(info.clone());
            }
            Record::Boot { epoch } => self.own.epoch = self.own.epoch.max(*epoch),
            Record::AuthKey { dh_pk, sign_pk } => {
                self.auth.server_dh = Some(*dh_pk);
                self.auth.server_sign = secure::verifying_key(sign_pk).map(|vk| (*sign_pk, vk));
            }
            Record::OwnCert(cert) => self.own.cert = Some(cert.clone()),
            Record::MailboxPut(blob) => {
                // Kept as it was kept (expiry runs on the next tick).
                self.mail.mailbox.put(blob.clone(), self.mail_limits(), 0);
            }
            Record::MailboxDrop { to, from, upto } => {
                self.mail.mailbox.drop_upto(*to, *from, *upto);
            }
            Record::Keys { .. } | Record::User { .. } | Record::Device { .. } => {}
        }
        if self.conversations.pending() > 0 {
            self.set_timer(Timer::Private, now);
        }
    }
}
