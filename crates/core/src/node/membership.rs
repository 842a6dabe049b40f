//! Joining the group and keeping the member list: bootstrapping newcomers (`Connect`),
//! greeting (`Hello`/`HelloAck`), learning and announcing members, membership repair,
//! member status, and the live set that peer choice draws from.

use super::members::Member;
use super::send::Peer;
use super::timers::Timer;
use super::views::Admit;
use super::Node;
use crate::io::{Event, PeerStatus, Record};
use p2pchat_proto::wire::{pack_batches, BATCH_BUDGET};
use p2pchat_proto::{GroupMsg, Message, NodeId, PeerInfo};
use rand::Rng;
use std::time::Duration;

/// Recently learned members passed on in each HelloAck.
const RECENT_IN_ACK: usize = 4;
/// Least time between two full member lists sent to the same peer by membership repair.
const FULL_LIST_COOLDOWN: Duration = Duration::from_secs(10);

impl Node {
    /// An existing member hands a newcomer the member list.
    pub(super) fn bootstrap(&mut self, now: Duration, newcomer: PeerInfo) {
        if Some(newcomer.node_id) == self.own.node_id {
            return;
        }
        let to = Peer {
            id: newcomer.node_id,
            addr: newcomer.addr,
        };
        // Silent: the newcomer's own Hello announces it.
        self.learn_member(now, newcomer, false, Admit::Force);
        self.send_members(to);
    }

    /// A peer knows fewer members than we do: send it the members we learned last, or the
    /// whole list when it lacks more than those (at most every `FULL_LIST_COOLDOWN`).
    pub(super) fn repair_members(&mut self, now: Duration, to: Peer, lacking: usize) {
        // Now and then the whole list, in case what it lacks is older than `recent`.
        if lacking <= self.view.members.recent().len() && !self.rng.random_ratio(1, 16) {
            // What it lacks is most likely among the newest: send a few times as many.
            let take = (4 * lacking + 8).min(self.view.members.recent().len());
            let peers: Vec<PeerInfo> = self
                .view
                .members
                .recent()
                .iter()
                .rev()
                .take(take)
                .filter_map(|id| self.view.members.get(id))
                .filter(|m| m.info.addr != to.addr)
                .map(|m| m.info.clone())
                .collect();
            self.send_connect(to, peers);
            return;
        }
        let recently = self
            .view
            .full_lists_sent
            .get(&to.addr)
            .is_some_and(|&at| now.saturating_sub(at) < FULL_LIST_COOLDOWN);
        if !recently {
            if self.view.full_lists_sent.len() >= 1024 {
                self.view
                    .full_lists_sent
                    .retain(|_, at| now.saturating_sub(*at) < FULL_LIST_COOLDOWN);
            }
            self.view.full_lists_sent.insert(to.addr, now);
            self.send_members(to);
        }
    }

    /// Sends our member list (and ourselves) as `Connect` chunks: all of it, or a random
    /// half view once the network is larger than a view (the newcomer greets each).
    pub(super) fn send_members(&mut self, to: Peer) {
        let peers: Vec<PeerInfo> = if self.view_full() {
            self.sample_live(self.cfg.view_max / 2, &[])
                .into_iter()
                .filter_map(|id| self.view.members.get(&id))
                .filter(|m| m.info.addr != to.addr)
                .map(|m| m.info.clone())
                .collect()
        } else {
            self.view
                .members
                .values()
                .filter(|m| m.info.addr != to.addr)
                .map(|m| m.info.clone())
                .collect()
        };
        self.send_connect(to, peers);
    }

    pub(super) fn send_connect(&mut self, to: Peer, peers: Vec<PeerInfo>) {
        let Some(me) = self.my_info() else { return };
        let budget = BATCH_BUDGET.saturating_sub(p2pchat_proto::wire::encoded_len(&me));
        let mut batches = pack_batches(&peers, budget);
        if batches.is_empty() {
            batches.push(Vec::new());
        }
        for peers in batches {
            self.reply(
                to,
                &Message::Connect {
                    from: me.clone(),
                    peers,
                },
            );
        }
    }

    pub(super) fn handle_connect(&mut self, now: Duration, from: PeerInfo, peers: Vec<PeerInfo>) {
        if self.own.node_id.is_none() {
            self.net.stats.rejected += 1;
            return;
        }
        // "ready" before the members it brings (commands wait for the membership).
        self.emit_ready();
        let mut ids = vec![from.node_id];
        self.learn_and_announce(now, from, true, Admit::Force);
        for p in peers {
            ids.push(p.node_id);
            self.learn_and_announce(now, p, false, Admit::IfRoom);
        }
        for id in ids {
            self.queue_hello(id, now);
        }
        self.become_member(now);
        self.set_timer(Timer::Hello, now);
    }

    pub(super) fn queue_hello(&mut self, id: NodeId, now: Duration) {
        if let Some(m) = self.view.members.get_mut(&id) {
            if m.hello.is_none() {
                m.hello = Some((super::rendezvous::hello_tries(&self.cfg), now));
                self.set_timer(Timer::Hello, now);
            }
        }
    }

    pub(super) fn hello_timer(&mut self, now: Duration) {
        let Some(me) = self.my_info() else { return };
        let joined = !self.life.restored;
        let mut due = Vec::new();
        let mut next: Option<Duration> = None;
        let mut punch = Vec::new();
        let mut relay = Vec::new();
        let mut server = Vec::new();
        let tries = super::rendezvous::hello_tries(&self.cfg);
        for m in self.view.members.values_mut() {
            if let Some((left, at)) = m.hello {
                if at <= now {
                    due.push((m.info.node_id, m.info.addr));
                    let k = tries.saturating_sub(left) + 1;
                    let plan = super::rendezvous::hello_plan(&self.cfg, k);
                    if plan.punch {
                        // Unanswered for a while: perhaps a NAT on either side.
                        punch.push(m.info.node_id);
                    }
                    if plan.relay {
                        relay.push(m.info.node_id);
                    }
                    if plan.server {
                        server.push(m.info.node_id);
                    }
                    m.hello = if left > 1 {
                        Some((left - 1, now + self.cfg.hello_retry))
                    } else {
                        // Give up; keep it "pending" so it is not re-queued. Gossip covers it.
                        Some((0, Duration::MAX))
                    };
                }
                if let Some((l, at)) = m.hello {
                    if l > 0 {
                        next = Some(next.map_or(at, |n: Duration| n.min(at)));
                    }
                }
            }
        }
        for (id, addr) in due {
            self.send_to(
                id,
                addr,
                &Message::Hello {
                    info: me.clone(),
                    joined,
                },
            );
        }
        for id in punch {
            self.ask_punch(id);
        }
        for id in relay {
            self.try_relay(now, id, None);
        }
        for id in server {
            self.try_server_relay(id);
        }
        if let Some(at) = next {
            self.set_timer(Timer::Hello, at);
        }
    }

    pub(super) fn handle_hello(&mut self, now: Duration, from: Peer, info: PeerInfo, joined: bool) {
        if Some(info.node_id) == self.own.node_id {
            return;
        }
        let was_online = self
            .view
            .members
            .get(&info.node_id)
            .is_some_and(|m| m.status == PeerStatus::Online && m.info == info);
        let id = info.node_id;
        let new = self.learn_member(now, info.clone(), true, Admit::Force);
        let first_join = joined
            && self
                .view
                .members
                .get_mut(&id)
                .is_some_and(|m| !std::mem::replace(&mut m.join_announced, true));
        if new || !was_online || first_join {
            self.event(Event::Peer {
                info,
                status: PeerStatus::Online,
                joined: first_join,
            });
        }
        if let Some(me) = self.my_info() {
            let recent: Vec<PeerInfo> = self
                .view
                .members
                .recent()
                .iter()
                .rev()
                .take(RECENT_IN_ACK)
                .filter(|&&r| r != id)
                .filter_map(|id| self.view.members.get(id).map(|m| m.info.clone()))
                .collect();
            self.reply(from, &Message::HelloAck { info: me, recent });
        }
    }

    pub(super) fn handle_hello_ack(&mut self, now: Duration, info: PeerInfo) {
        let id = info.node_id;
        self.learn_and_announce(now, info, true, Admit::Force);
        if let Some(m) = self.view.members.get_mut(&id) {
            m.hello = Some((0, Duration::MAX));
        }
        // A restored node may be back before (or without) the server answering.
        if self.own.node_id.is_some() {
            self.become_member(now);
        }
    }

    // ----- membership -------------------------------------------------------------------

    /// Learns a member and shows it if it is new: online if heard from, else unknown.
    pub(super) fn learn_and_announce(
        &mut self,
        now: Duration,
        info: PeerInfo,
        heard: bool,
        how: Admit,
    ) {
        let id = info.node_id;
        if self.learn_member(now, info.clone(), heard, how) {
            let status = self
                .view
                .members
                .get(&id)
                .map_or(PeerStatus::Unknown, |m| m.status);
            self.event(Event::Peer {
                info,
                status,
                joined: false,
            });
        }
    }

    /// Adds or updates a member; true if it was not known before (and entered the view:
    /// see `how`). Emits no event.
    pub(super) fn learn_member(
        &mut self,
        now: Duration,
        info: PeerInfo,
        heard: bool,
        how: Admit,
    ) -> bool {
        if Some(info.node_id) == self.own.node_id {
            return false;
        }
        if !self.net.replaying && !self.cert_acceptable(&info) {
            return false;
        }
        let id = info.node_id;
        if self.view.members.contains_key(&id) {
            let moved = self
                .view
                .members
                .get(&id)
                .is_some_and(|m| m.info.addr != info.addr);
            if self.view.members.update(&info) {
                if moved {
                    // Somewhere else now: what we learned of its old place is void.
                    self.paths.forget(id);
                }
                self.persist(Record::Peer(info));
            }
            if heard {
                self.mark_heard_id(now, id);
            }
            return false;
        }
        if !self.net.replaying && !self.admit(&info, how) {
            return false;
        }
        if self.net.replaying && self.view_full() {
            return false;
        }
        self.view.strangers.remove(id);
        self.view.members.add(Member::new(info.clone(), heard, now));
        self.live_insert(id);
        self.prober.add(id);
        self.persist(Record::Peer(info));
        true
    }

    /// A member record from the wire: its certificate must be the server's, and not older
    /// than the one we have.
    pub(super) fn cert_acceptable(&mut self, info: &PeerInfo) -> bool {
        if let Some(m) = self.view.members.get(&info.node_id) {
            if m.info.cert == info.cert && m.info.user == info.user {
                return true;
            }
            if m.info.cert.expires_ms > info.cert.expires_ms {
                return false;
            }
        }
        if self.cert_valid(info.node_id, &info.user, &info.cert) {
            true
        } else {
            self.net.stats.bad_signature += 1;
            false
        }
    }

    /// Checks a group message's signature (once per new dot): `None` if the author is
    /// unknown here.
    pub(super) fn group_sig_ok(&mut self, msg: &GroupMsg) -> Option<bool> {
        let vk = if Some(msg.author) == self.own.node_id {
            self.own.my_vk
        } else {
            self.signing_key(msg.author)
        };
        let vk = vk?;
        if self.own.ident.check(&vk, &msg.signed_bytes(), &msg.sig) {
            Some(true)
        } else {
            self.net.stats.bad_signature += 1;
            Some(false)
        }
    }

    pub(super) fn learn_gossip(&mut self, now: Duration, gossip: Vec<PeerInfo>) {
        for info in gossip {
            if !self.view.members.contains_key(&info.node_id) {
                self.learn_and_announce(now, info, false, Admit::IfRoom);
            }
        }
    }

    pub(super) fn gossip_sample(&mut self) -> Vec<PeerInfo> {
        let mut out = Vec::new();
        for _ in 0..self.cfg.gossip_members {
            if let Some(id) = self.random_live(&[]) {
                if let Some(m) = self.view.members.get(&id) {
                    if !out.contains(&m.info) {
                        out.push(m.info.clone());
                    }
                }
            }
        }
        out
    }

    pub(super) fn mark_heard_id(&mut self, now: Duration, id: NodeId) {
        self.ring_heard(id);
        if let Some(m) = self.view.members.get_mut(&id) {
            m.last_heard = now;
            if m.status != PeerStatus::Online {
                self.set_status(now, id, PeerStatus::Online);
            }
        }
    }

    pub(super) fn set_status(&mut self, now: Duration, id: NodeId, status: PeerStatus) {
        let Some(m) = self.view.members.get_mut(&id) else {
            return;
        };
        if m.status == status {
            return;
        }
        let was_offline = m.status == PeerStatus::Offline;
        m.status = status;
        if status == PeerStatus::Suspect {
            self.prober.set_suspect(id, true);
        } else {
            self.prober.set_suspect(id, false);
        }
        m.suspect_since = (status == PeerStatus::Suspect).then_some(now);
        let info = m.info.clone();
        match status {
            PeerStatus::Offline => self.live_remove(id),
            _ => self.live_insert(id),
        }
        if status == PeerStatus::Suspect {
            // Perhaps a NAT that never let it in: have both sides send at once, and try a
            // relay.
            self.ask_punch(id);
            self.try_relay(now, id, None);
        }
        if matches!(status, PeerStatus::Suspect | PeerStatus::Offline) {
            self.relay_gone(now, super::paths::Via::Member(Some(id)));
        }
        if status == PeerStatus::Online {
            // Back, or heard for the first time: what we keep for it goes out now.
            self.hand_over(now, id);
        }
        if status == PeerStatus::Online && was_offline {
            // It is back: flush what we owe it now rather than at the next backoff.
            if self
                .conversations
                .flush(id, now, self.cfg.private_rto_initial)
            {
                self.set_timer(Timer::Private, now);
            }
        }
        self.event(Event::Peer {
            info,
            status,
            joined: false,
        });
    }

    pub(super) fn live_insert(&mut self, id: NodeId) {
        // A revoked device keeps its record (its old messages verify) but is never tried.
        if self.account.is_revoked(id) {
            return;
        }
        if self.view.live.insert(id) {
            self.ring_join(id);
        }
    }

    pub(super) fn live_remove(&mut self, id: NodeId) {
        if self.view.live.contains(id) {
            self.ring_forget(id);
            self.view.live.remove(id);
        }
    }

    pub(super) fn random_live(&mut self, exclude: &[NodeId]) -> Option<NodeId> {
        self.sample_live(1, exclude).pop()
    }

    /// Up to `k` distinct random members that are not offline, skipping `exclude`.
    pub(super) fn sample_live(&mut self, k: usize, exclude: &[NodeId]) -> Vec<NodeId> {
        self.view.live.sample(&mut self.rng, k, exclude)
    }
}
