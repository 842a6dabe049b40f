//! Several devices per account: the flows that tie a device to the others.
//!
//! - **Devices**: each device is its own node (own id, keys, counters, certificate naming the
//!   account). `/devices` asks the auth server for the account's list; `/devices revoke ID`
//!   revokes another device of the account. The server answers a revocation with a signed
//!   [`Revocation`], which this node passes to its members; each member that did not know it
//!   passes it on, keeps it, and refuses the revoked device's datagrams from then on (its old
//!   messages, relayed by others, still verify: its record stays).
//! - **Private history across devices** (see [`super::mirror`]): what this device writes or
//!   receives privately goes at once to the account's other devices that are up (`Mirror`),
//!   and every anti-entropy round asks one of them for what this device lacks
//!   (`MirrorAsk`), a range of conversations at a time. Only devices of the same account
//!   take part; the links between them are sealed like any other.

use super::send::Peer;
use super::Node;
use crate::io::{Event, PeerStatus, Record};
use p2pchat_proto::wire::{encoded_len, Revocation, MAX_MIRROR, MAX_MIRROR_ASK, MAX_PAYLOAD};
use p2pchat_proto::{Message, NodeId, PrivateMsg};
use std::time::Duration;

impl Node {
    /// `/devices [revoke ID]`.
    pub(super) fn devices_command(&mut self, revoke: Option<NodeId>) {
        let Some(me) = self.own.node_id else {
            self.error("not signed in yet");
            return;
        };
        if revoke == Some(me) {
            self.error("this is the device you are using: revoke it from another device");
            return;
        }
        if let Some(node_id) = revoke {
            self.send_server(&Message::Revoke { node_id });
        }
        self.send_server(&Message::Devices);
    }

    /// The other devices of our account that we know of.
    pub(super) fn own_devices(&self) -> Vec<NodeId> {
        let me = self.own.node_id;
        self.view
            .members
            .values()
            .filter(|m| m.info.user == self.params.user && Some(m.info.node_id) != me)
            .filter(|m| !self.account.is_revoked(m.info.node_id))
            .map(|m| m.info.node_id)
            .collect()
    }

    fn own_devices_up(&self) -> Vec<NodeId> {
        self.own_devices()
            .into_iter()
            .filter(|id| {
                self.view
                    .members
                    .get(id)
                    .is_some_and(|m| m.status != PeerStatus::Offline)
            })
            .collect()
    }

    /// A revocation from the server or a member: checked, kept, passed on once.
    pub(super) fn handle_revocation(&mut self, now: Duration, from: Option<NodeId>, r: Revocation) {
        let Some((_, vk)) = self.auth.server_sign.as_ref() else {
            self.net.stats.unverifiable += 1;
            return;
        };
        let bytes = Revocation::signed_bytes(r.node_id, &r.user);
        if !self.own.ident.check(vk, &bytes, &r.sig) {
            self.net.stats.bad_signature += 1;
            return;
        }
        if Some(r.node_id) == self.own.node_id {
            self.fatal("this device was revoked from the account; sign in from a new data dir");
            return;
        }
        if !self.account.revoke(r.clone()) {
            return;
        }
        self.persist(Record::Revoked(r.clone()));
        let id = r.node_id;
        // Offline for good; its record stays, so what it wrote before still verifies.
        self.set_status(now, id, PeerStatus::Offline);
        let msg = Message::Revoked(r);
        let ids: Vec<NodeId> = self.view.live.ids().to_vec();
        for peer in ids.into_iter().filter(|&p| Some(p) != from && p != id) {
            self.send_member(peer, &msg);
        }
    }

    /// The server's list of our account's devices.
    pub(super) fn handle_device_list(&mut self, devices: Vec<p2pchat_proto::wire::DeviceInfo>) {
        if let Some(me) = self.own.node_id {
            self.event(Event::Devices { me, devices });
        }
    }

    /// Whether `peer` is another device of our account.
    fn own_device(&self, peer: NodeId) -> bool {
        Some(peer) != self.own.node_id
            && !self.account.is_revoked(peer)
            && self
                .info_of(peer)
                .is_some_and(|i| i.user == self.params.user)
    }

    /// A private message written or delivered here goes to our other devices that are up.
    pub(super) fn mirror_push(&mut self, msg: &PrivateMsg) {
        let targets = self.own_devices_up();
        if targets.is_empty() {
            return;
        }
        let names = vec![
            (msg.from, self.user_name(msg.from)),
            (msg.to, self.user_name(msg.to)),
        ];
        let m = Message::Mirror {
            msgs: vec![msg.clone()],
            names,
            more: false,
        };
        for id in targets {
            self.send_member(id, &m);
        }
    }

    /// Every anti-entropy round: ask one of our other devices for a range of conversations.
    pub(super) fn mirror_round(&mut self) {
        let up = self.own_devices_up();
        if up.is_empty() {
            return;
        }
        let round = self.account.mirror_round;
        self.account.mirror_round = round.wrapping_add(1);
        let peer = up[round % up.len()];
        self.mirror_ask(peer, round);
    }

    /// Asks `peer` about chunk `round` (modulo the number of chunks) of what we hold.
    fn mirror_ask(&mut self, peer: NodeId, round: usize) {
        let Some(me) = self.own.node_id else { return };
        let mut have = self.conversations.streams(me);
        have.extend(self.account.mirror.have());
        have.sort_unstable();
        let chunks = have.len().div_ceil(MAX_MIRROR_ASK).max(1);
        let k = round % chunks;
        let start = k * MAX_MIRROR_ASK;
        let end = (start + MAX_MIRROR_ASK).min(have.len());
        let lo = if k == 0 {
            (NodeId(0), NodeId(0))
        } else {
            (have[start].0, have[start].1)
        };
        let hi = have.get(end).map(|h| (h.0, h.1));
        let have = have.get(start..end).unwrap_or(&[]).to_vec();
        self.send_member(peer, &Message::MirrorAsk { have, lo, hi });
    }

    /// One of our devices asks what it lacks of a range of conversations.
    pub(super) fn handle_mirror_ask(
        &mut self,
        peer: Peer,
        have: Vec<(NodeId, NodeId, u64)>,
        lo: (NodeId, NodeId),
        hi: Option<(NodeId, NodeId)>,
    ) {
        let Some(me) = self.own.node_id else { return };
        if !self.own_device(peer.id) {
            self.net.stats.rejected += 1;
            return;
        }
        let mut ours = self.conversations.streams(me);
        ours.extend(self.account.mirror.have());
        ours.sort_unstable();
        let in_range = |k: (NodeId, NodeId)| k >= lo && hi.is_none_or(|h| k < h);
        let mut msgs: Vec<PrivateMsg> = Vec::new();
        let mut size = 64;
        let mut more = false;
        'streams: for (from, to, upto) in ours {
            if !in_range((from, to)) {
                continue;
            }
            let theirs = have
                .iter()
                .find(|h| (h.0, h.1) == (from, to))
                .map_or(0, |h| h.2);
            if theirs >= upto {
                continue;
            }
            let mine: Vec<PrivateMsg> = if from == me || to == me {
                self.conversations
                    .stream_after(me, from, to, theirs)
                    .cloned()
                    .collect()
            } else {
                self.account.mirror.after(from, to, theirs).to_vec()
            };
            for m in mine {
                let len = encoded_len(&m) + 2 * 40;
                if msgs.len() >= MAX_MIRROR || size + len > MAX_PAYLOAD {
                    more = true;
                    break 'streams;
                }
                size += len;
                msgs.push(m);
            }
        }
        if msgs.is_empty() {
            return;
        }
        let mut names: Vec<(NodeId, String)> = Vec::new();
        for m in &msgs {
            for id in [m.from, m.to] {
                if !names.iter().any(|(n, _)| *n == id) {
                    names.push((id, self.user_name(id)));
                }
            }
        }
        self.reply(peer, &Message::Mirror { msgs, names, more });
    }

    /// Private messages of our account from one of our devices.
    pub(super) fn handle_mirror(
        &mut self,
        peer: Peer,
        msgs: Vec<PrivateMsg>,
        names: Vec<(NodeId, String)>,
        more: bool,
    ) {
        let Some(me) = self.own.node_id else { return };
        if !self.own_device(peer.id) {
            self.net.stats.rejected += 1;
            return;
        }
        let name = |id: NodeId| names.iter().find(|(n, _)| *n == id).map(|(_, u)| u.clone());
        for m in msgs {
            // Our own conversations we hold ourselves; the rest must be our account's.
            if m.from == me || m.to == me {
                continue;
            }
            let (Some(from_user), Some(to_user)) = (name(m.from), name(m.to)) else {
                self.net.stats.rejected += 1;
                continue;
            };
            if from_user != self.params.user && to_user != self.params.user {
                self.net.stats.rejected += 1;
                continue;
            }
            if !self.account.mirror.accept(&m, &from_user, &to_user) {
                continue;
            }
            self.persist(Record::PrivateCopy {
                msg: m.clone(),
                from_user: from_user.clone(),
                to_user: to_user.clone(),
            });
            if self.account.shown.first(&m) {
                let mut entry = self.private_entry(&m);
                entry.from = from_user;
                entry.to = Some(to_user);
                self.event(Event::Message(Box::new(entry)));
            }
        }
        if more {
            let round = self.account.mirror_round;
            self.mirror_ask(peer.id, round.wrapping_sub(1));
        }
    }
}
