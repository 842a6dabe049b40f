//! Partial views: how a node stays useful when the network outgrows `view_max`.
//!
//! Up to `view_max` members every node knows every member. Beyond it a node keeps a random
//! partial view of that size (HyParView's idea, with one table instead of active and passive
//! views):
//! - a node that contacts us directly (Hello, HelloAck, the Connect of a bootstrapper, a
//!   newcomer we bootstrap) is always admitted; a random member (an offline one first) makes
//!   room and is told `Forget`, so it drops us too and views stay symmetric;
//! - members learned by gossip join only while there is room;
//! - any other certified node that contacts us is kept as a *stranger* (enough to
//!   authenticate its datagrams and answer) and told `Forget`;
//! - group messages whose author we do not know wait (see `parking`) while `WhoIs` asks the
//!   peer that sent them for the author's record; pushes in a large network carry it
//!   (`GroupFrom`, `RepairFrom`), so only a record too long to ride along needs asking;
//! - a private message to a user outside the view waits while the server (`Lookup`) says
//!   where that user is, if online.
//!
//! Gossip, Plumtree, anti-entropy and probing all run over the view, so memory and join
//! traffic per node depend on `view_max`, not on the size of the network.

use super::parking::{Park, Parked};
use super::send::Peer;
use super::timers::Timer;
use super::{Node, Via};
use crate::io::PeerStatus;
use ed25519_dalek::VerifyingKey;
use p2pchat_proto::wire::{pack_batches, BATCH_BUDGET};
use p2pchat_proto::{GroupMsg, Message, NodeId, PeerInfo};
use std::time::Duration;

/// Users whose record we may be asking the server for at once.
const LOOKUPS_MAX: usize = 16;
/// Private texts that may wait for one lookup.
const LOOKUP_TEXTS_MAX: usize = 64;
/// How long a lookup may take before its texts are reported unsent; it is asked again every
/// second until then (the request or its answer may be lost).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(4);

/// How a newly learned member may enter a full view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Admit {
    /// It contacted us to be in our view: make room.
    Force,
    /// Learned second hand: only if there is room.
    IfRoom,
    /// It contacted us with something else: if there is no room, keep it as a stranger
    /// and tell it to forget us.
    Contact,
}

impl Node {
    /// True while the view holds `view_max` members.
    pub(super) fn view_full(&self) -> bool {
        self.view.members.len() >= self.cfg.view_max
    }

    /// True once the network was seen to be larger than a view (the view filled up, or a
    /// peer dropped us from its own): from then on the node behaves as one among many.
    pub(super) fn partial(&self) -> bool {
        self.view.partial
    }

    /// Decides whether the new member `info` enters the view, making room if `how` says so.
    pub(super) fn admit(&mut self, info: &PeerInfo, how: Admit) -> bool {
        // Second-hand records fill a partial view only up to three quarters: every view is
        // about full in a large network, so the node they name would most likely answer
        // `Forget`, and each such try costs a key agreement.
        if how == Admit::IfRoom && self.partial() {
            return self.view.members.len() < self.cfg.view_max * 3 / 4;
        }
        if !self.view_full() {
            return true;
        }
        self.view.partial = true;
        match how {
            Admit::IfRoom => false,
            Admit::Contact => {
                let id = info.node_id;
                if self.stranger_insert(info.clone()) {
                    self.send_to(id, info.addr, &Message::Forget);
                }
                false
            }
            Admit::Force => {
                self.evict_one(info.node_id);
                true
            }
        }
    }

    /// Drops one member from the view (an offline one first, else a random one) and tells
    /// it to forget us.
    fn evict_one(&mut self, keep: NodeId) {
        let offline = self
            .view
            .members
            .iter()
            .find(|(id, m)| m.status == PeerStatus::Offline && **id != keep)
            .map(|(id, _)| *id);
        let victim = offline
            .or_else(|| self.random_live(&[keep]))
            .or_else(|| self.view.members.keys().find(|&&id| id != keep).copied());
        if let Some(v) = victim {
            self.send_member(v, &Message::Forget);
            self.drop_member(v);
        }
    }

    /// Moves a member out of the view into the strangers. It forgets us too (we told it, or
    /// it told us), so our next datagram to it carries our certificate again.
    pub(super) fn drop_member(&mut self, id: NodeId) {
        let Some(m) = self.view.members.remove(id) else {
            return;
        };
        self.view.partial = true;
        self.live_remove(id);
        self.paths.forget(id);
        self.prober.remove(id);
        self.spread.eager.remove(id);
        self.view.full_lists_sent.remove(&m.info.addr);
        if let Some(link) = self.net.links.get_mut(id) {
            link.peer_has_cert = false;
        }
        self.stranger_insert(m.info);
    }

    /// Remembers a certified node outside the view; true if it was not known.
    pub(super) fn stranger_insert(&mut self, info: PeerInfo) -> bool {
        self.view.strangers.insert(info)
    }

    /// The record of a member or stranger.
    pub(super) fn info_of(&self, id: NodeId) -> Option<&PeerInfo> {
        self.view
            .members
            .get(&id)
            .map(|m| &m.info)
            .or_else(|| self.view.strangers.get(id))
    }

    /// The record of a member, a stranger or ourselves (what rides along with a message).
    pub(super) fn record_of(&self, id: NodeId) -> Option<PeerInfo> {
        if Some(id) == self.own.node_id {
            self.my_info()
        } else {
            self.info_of(id).cloned()
        }
    }

    /// The parsed signing key of a member or stranger (cached).
    pub(super) fn signing_key(&mut self, id: NodeId) -> Option<VerifyingKey> {
        if let Some(m) = self.view.members.get_mut(&id) {
            if m.vk.is_none() {
                m.vk = self.own.ident.parse_key(&m.info.cert.sign_pk);
            }
            return m.vk;
        }
        let ident = &self.own.ident;
        self.view
            .strangers
            .signing_key(id, |info| ident.parse_key(&info.cert.sign_pk))
    }

    /// A record carried by a `GroupFrom` or `Certs`: kept (as a stranger unless it is a
    /// member) if the server signed it. True if we now know the node.
    pub(super) fn learn_record(&mut self, info: PeerInfo) -> bool {
        let id = info.node_id;
        if Some(id) == self.own.node_id {
            return true;
        }
        if self.view.members.contains_key(&id) {
            return true;
        }
        if self
            .view
            .strangers
            .get(id)
            .is_some_and(|s| s.cert == info.cert && s.user == info.user)
        {
            return true;
        }
        if !self.cert_acceptable(&info) {
            return false;
        }
        self.stranger_insert(info);
        true
    }

    /// Keeps a group message whose author we do not know, and asks the peer that sent it.
    pub(super) fn park(
        &mut self,
        now: Duration,
        msg: GroupMsg,
        hop: u16,
        from: Option<Peer>,
        via: Via,
    ) {
        let author = msg.author;
        let p = Parked {
            msg,
            hop,
            from,
            via,
            since: now,
        };
        match self.view.parking.park(p) {
            Park::Waiting => self.net.stats.parked += 1,
            Park::Duplicate => self.net.stats.group_duplicates += 1,
            // Anti-entropy brings it back later.
            Park::Full => self.net.stats.unverifiable += 1,
        }
        if let Some(peer) = from {
            if self.view.parking.may_ask(author, now) {
                self.reply(peer, &Message::WhoIs { ids: vec![author] });
            }
        }
    }

    /// We owe `peer` private messages but no longer know where it is (its record left our
    /// view and our strangers, or we restarted): ask a few members that are up for it, at
    /// most once a second. Their `Certs` answer makes it a stranger again.
    pub(super) fn ask_record(&mut self, now: Duration, peer: NodeId) {
        if !self.view.parking.may_ask(peer, now) {
            return;
        }
        for id in self.sample_live(3, &[peer]) {
            self.send_member(id, &Message::WhoIs { ids: vec![peer] });
        }
    }

    /// Answers a `WhoIs` with the records we know.
    pub(super) fn handle_whois(&mut self, from: Peer, ids: &[NodeId]) {
        let peers: Vec<PeerInfo> = ids
            .iter()
            .take(p2pchat_proto::wire::MAX_WHOIS)
            .filter_map(|&id| self.record_of(id))
            .collect();
        for batch in pack_batches(&peers, BATCH_BUDGET) {
            self.reply(from, &Message::Certs { peers: batch });
        }
    }

    /// Takes the records of a `Certs` answer and delivers what waited for them.
    pub(super) fn handle_certs(&mut self, now: Duration, peers: Vec<PeerInfo>) {
        for info in peers {
            let id = info.node_id;
            if self.learn_record(info) {
                self.view.parking.answered(id);
                self.unpark(now, id);
                // What we owe it goes out now rather than at the next backoff.
                if self
                    .conversations
                    .flush(id, now, self.cfg.private_rto_initial)
                {
                    self.set_timer(Timer::Private, now);
                }
            }
        }
    }

    /// Feeds the messages that waited for `author`'s record through the usual path.
    pub(super) fn unpark(&mut self, now: Duration, author: NodeId) {
        let list = self.view.parking.take(author);
        if list.is_empty() {
            return;
        }
        // Replies go to each message's sender, as if it had just arrived.
        for p in list {
            // Counted as a payload when it arrived.
            self.net.stats.group_payloads = self.net.stats.group_payloads.saturating_sub(1);
            self.receive_group(now, p.msg, p.hop, p.from, p.via);
        }
    }

    /// Drops parked messages whose author's record never came, and old `WhoIs` marks.
    pub(super) fn expire_parked(&mut self, now: Duration) {
        let dropped = self.view.parking.expire(now);
        self.net.stats.unverifiable += dropped as u64;
    }

    /// Keeps a private text for `user`, who is outside our view, and asks the server where
    /// it is. False if too many texts already wait (the caller reports "unknown user").
    pub(super) fn lookup(&mut self, now: Duration, user: &str, text: &str) -> bool {
        if !self.view.lookups.contains_key(user) && self.view.lookups.len() >= LOOKUPS_MAX {
            return false;
        }
        let (texts, _) = self
            .view
            .lookups
            .entry(user.to_string())
            .or_insert_with(|| (Vec::new(), now));
        if texts.len() >= LOOKUP_TEXTS_MAX {
            return false;
        }
        texts.push(text.to_string());
        if texts.len() == 1 {
            self.send_lookup(user.to_string());
        }
        true
    }

    fn send_lookup(&mut self, user: String) {
        self.send_server(&Message::Lookup { user });
    }

    /// The server's answer to `Lookup`: the record of an online user, or nothing.
    pub(super) fn lookup_answer(&mut self, now: Duration, peers: Vec<PeerInfo>) {
        // Every device of the user first, then the texts: one copy for each.
        let mut learned: Vec<String> = Vec::new();
        for info in peers {
            let user = info.user.clone();
            if self.learn_record(info) && !learned.contains(&user) {
                learned.push(user);
            }
        }
        for user in learned {
            if let Some((texts, _)) = self.view.lookups.remove(&user) {
                for text in texts {
                    self.send_private(now, &user, text);
                }
            }
        }
    }

    /// Lookups the server did not answer in time: their texts were for nobody online.
    pub(super) fn expire_lookups(&mut self, now: Duration) {
        let expired: Vec<String> = self
            .view
            .lookups
            .iter()
            .filter(|(_, (_, at))| now.saturating_sub(*at) >= LOOKUP_TIMEOUT)
            .map(|(u, _)| u.clone())
            .collect();
        let waiting: Vec<String> = self
            .view
            .lookups
            .keys()
            .filter(|u| !expired.contains(u))
            .cloned()
            .collect();
        for user in waiting {
            self.send_lookup(user);
        }
        for user in expired {
            if let Some((texts, _)) = self.view.lookups.remove(&user) {
                self.error(format!(
                    "unknown user: {user} (not online, or the auth server did not answer); {} message(s) not sent",
                    texts.len()
                ));
            }
        }
    }
}
