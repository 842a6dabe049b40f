//! Relays and keepalives: the fallback when a punch cannot open a path between two
//! members (both behind NATs that give each destination its own port), and the datagrams
//! that keep a NAT's bindings open.
//!
//! - **Choosing a relay.** A member we reach directly and heard from lately. A Hello that
//!   stays unanswered after the punches goes on each later try both directly and through a
//!   new such member; a probe answered only through a helper tries that helper as relay; a
//!   suspect tries one. Whoever answers through a relay is reached through it from then on
//!   (see [`super::paths`]); the other side answers through the relay it heard us through.
//! - **The auth server as the last resort.** When no member reaches both sides (every
//!   member is behind a NAT, or none relays), the later Hello tries also go through the
//!   auth server, which passes on within a small budget per node (see `auth::relay`). So
//!   does a newcomer's Hello to the members it was punched to, once its first admission went
//!   unanswered. A member that relays later takes the route over: a route through the
//!   server is offered to a member candidate as soon as it starts, and every 30 s.
//! - **Passing on.** A relay passes `Relay {to, inner}` on as `Relayed {inner}` only when
//!   the sender is the member it knows at the datagram's source, `inner` is that member's
//!   own link datagram, and `to` is a member it reaches directly and heard from lately; at
//!   most a budget per sender. It cannot read or change `inner` (sealed end to end), and
//!   what it sends is never larger than what it got: no amplification.
//! - **A relay that goes silent** (suspect or offline) loses its routes; each member routed
//!   through it is tried through another relay and punched again.
//! - **Back to direct.** Every 30 s the members reached through a relay are punched again
//!   (`PunchAsk` and a direct ping): a direct answer ends the relay route.
//! - **Keepalives.** A node whose public address differs from its socket's (behind a NAT)
//!   pings, every `keepalive_interval` (20 s), its relays and the members it talked with in
//!   the last two minutes but has not heard from since the last round, so that its NAT
//!   keeps their bindings (Linux keeps an unanswered one 30 s, home routers often less).

use super::paths::{Route, Via};
use super::send::Peer;
use super::Node;
use crate::io::{PeerPath, PeerStatus};
use p2pchat_proto::wire::Envelope;
use p2pchat_proto::{decode_envelope, encode, encode_envelope, link_sender, Message, NodeId};
use rand::Rng;
use std::net::SocketAddr;
use std::time::Duration;

/// A relay must have heard from the member it passes datagrams to within this time.
const RELAY_HEARD: Duration = Duration::from_secs(30);
/// A relay candidate must have been heard from within this time.
const CANDIDATE_HEARD: Duration = Duration::from_secs(10);
/// Members sampled when looking for a relay candidate.
const CANDIDATE_SAMPLE: usize = 8;
/// Members a keepalive round pings at most (the most recently heard first).
const KEEPALIVE_MAX: usize = 64;
/// A keepalive goes to members heard from within this time (the pairs in use).
const KEEPALIVE_ACTIVE: Duration = Duration::from_secs(120);
/// How often members reached through a relay are punched again, to go direct when a path
/// opened (and how many at most per round).
const DIRECT_RETRY: Duration = Duration::from_secs(30);
const DIRECT_RETRY_MAX: usize = 16;

impl Node {
    /// A member asks us to pass `inner` on to `to`.
    pub(super) fn handle_relay(
        &mut self,
        now: Duration,
        from: SocketAddr,
        to: NodeId,
        inner: &[u8],
    ) {
        if !self.cfg.relay || self.own.node_id.is_none() {
            self.net.stats.rejected += 1;
            return;
        }
        let sender = self
            .view
            .members
            .id_at(from)
            .or_else(|| self.paths.id_at(from));
        // Only a member we know at this address, for its own datagrams.
        let Some(sender) = sender.filter(|&s| link_sender(inner) == Some(s)) else {
            self.net.stats.unauthenticated += 1;
            return;
        };
        let reachable = !self.paths.is_relayed(to)
            && self.view.members.get(&to).is_some_and(|m| {
                m.status == PeerStatus::Online && now.saturating_sub(m.last_heard) < RELAY_HEARD
            });
        if !reachable || to == sender {
            self.net.stats.relay_refused += 1;
            return;
        }
        if !self.paths.relay_allowed(sender, now) {
            self.net.stats.relay_refused += 1;
            return;
        }
        let Some(dest) = self.direct_addr(to) else {
            self.net.stats.relay_refused += 1;
            return;
        };
        match encode_envelope(&Envelope::Relayed { inner }) {
            Ok(bytes) => {
                self.net.stats.relayed += 1;
                self.push_datagram(dest, bytes);
            }
            Err(_) => self.net.stats.malformed += 1,
        }
    }

    /// A datagram passed on to us by the relay at `from`.
    pub(super) fn handle_relayed(&mut self, now: Duration, from: SocketAddr, inner: &[u8]) {
        match decode_envelope(inner) {
            Ok(Envelope::Link {
                from: id,
                epoch,
                counter,
                cert,
                sealed,
            }) if self.own.node_id.is_some() => {
                self.net.stats.via_relay += 1;
                self.receive_link(now, from, Some(from), id, epoch, counter, cert, sealed);
            }
            _ => self.net.stats.unauthenticated += 1,
        }
    }

    /// Where datagrams to member `id` go without a relay: the address it was last heard at,
    /// else its record's.
    pub(super) fn direct_addr(&self, id: NodeId) -> Option<SocketAddr> {
        match self.paths.route(id) {
            Some(Route::Direct(a)) => Some(a),
            _ => self.info_of(id).map(|i| i.addr),
        }
    }

    /// A member to relay our datagrams to `target`: one we reach directly and heard from
    /// lately, picked at random (each try another).
    pub(super) fn relay_candidate(&mut self, now: Duration, target: NodeId) -> Option<NodeId> {
        let sample = self.sample_live(CANDIDATE_SAMPLE, &[target]);
        sample.into_iter().find(|&id| {
            !self.paths.is_relayed(id)
                && self.view.members.get(&id).is_some_and(|m| {
                    m.status == PeerStatus::Online
                        && now.saturating_sub(m.last_heard) < CANDIDATE_HEARD
                })
        })
    }

    /// Queues `inner` (a link datagram for `to`) wrapped for the relay at `relay`.
    pub(super) fn wrap_for_relay(&mut self, to: NodeId, relay: SocketAddr, inner: &[u8]) {
        match encode_envelope(&Envelope::Relay { to, inner }) {
            Ok(bytes) => self.push_datagram(relay, bytes),
            Err(e) => debug_assert!(false, "a relay envelope must fit: {e}"),
        }
    }

    /// Tries to reach `target` through a relay: a Hello through `via`, or through a
    /// candidate when `via` is `None`, or through the auth server when there is none. Its
    /// answer, through the relay, sets the route.
    pub(super) fn try_relay(&mut self, now: Duration, target: NodeId, via: Option<NodeId>) {
        if !self.relaying() || Some(target) == self.own.node_id {
            return;
        }
        let relay = via
            .filter(|&v| v != target)
            .or_else(|| self.relay_candidate(now, target));
        match relay {
            Some(r) => {
                if let Some(addr) = self.direct_addr(r) {
                    self.hello_via(target, addr);
                }
            }
            None => self.try_server_relay(target),
        }
    }

    /// `id` is reached through the auth server now: a Hello through a member candidate, so
    /// that a member that reaches both takes the route over (both sides move when they hear
    /// each other through it).
    pub(super) fn try_member_relay(&mut self, now: Duration, id: NodeId) {
        if !self.relaying() {
            return;
        }
        if let Some(addr) = self
            .relay_candidate(now, id)
            .and_then(|r| self.direct_addr(r))
        {
            self.hello_via(id, addr);
        }
    }

    /// Tries to reach `target` through the auth server we ask now.
    pub(super) fn try_server_relay(&mut self, target: NodeId) {
        if self.relaying() && Some(target) != self.own.node_id {
            let server = self.auth.addr();
            self.hello_via(target, server);
        }
    }

    /// Sends `target` a Hello through the relay at `relay`.
    fn hello_via(&mut self, target: NodeId, relay: SocketAddr) {
        let Some(me) = self.my_info() else { return };
        let hello = Message::Hello {
            info: me,
            joined: !self.life.restored,
        };
        let Ok(payload) = encode(&hello) else { return };
        if let Some(inner) = self.seal_for(target, &payload) {
            self.net.stats.relay_tries += 1;
            self.wrap_for_relay(target, relay, &inner);
        }
    }

    fn relaying(&self) -> bool {
        self.cfg.rendezvous && self.cfg.relay
    }

    /// An indirect probe of `target` was answered through `helper`: the helper reaches it,
    /// and perhaps we do not. Try it as relay (unless already routed through it, or the
    /// target answered directly a moment ago).
    pub(super) fn indirect_answer(&mut self, now: Duration, target: NodeId, helper: Peer) {
        if self.paths.relay_of(target) == Some(Via::Member(Some(helper.id))) {
            return;
        }
        self.try_relay(now, target, Some(helper.id));
    }

    /// The relay `relay` went silent (a member), or we turned away from it (the server):
    /// whoever we reached through it gets another relay and another punch.
    pub(super) fn relay_gone(&mut self, now: Duration, relay: Via) {
        for id in self.paths.drop_via(relay) {
            self.ask_punch(id);
            self.try_relay(now, id, None);
        }
    }

    /// How we reach member `id` (for `/peers`).
    pub(super) fn peer_path(&self, id: NodeId) -> PeerPath {
        match self.paths.relay_of(id) {
            Some(Via::Member(via)) => PeerPath::Relayed { via },
            Some(Via::Server) => PeerPath::Server,
            None => PeerPath::Direct,
        }
    }

    /// Every 30 s, members reached through a relay are punched again: whatever answers
    /// directly is reached directly from then on.
    pub(super) fn retry_direct(&mut self, now: Duration) {
        if self.paths.relayed_count() == 0 || now < self.paths.next_direct_try {
            return;
        }
        self.paths.next_direct_try = now + DIRECT_RETRY;
        for id in self.paths.relayed_ids(DIRECT_RETRY_MAX) {
            self.ask_punch(id);
            if self.paths.relay_of(id) == Some(Via::Server) {
                self.try_member_relay(now, id);
            }
            let Some(addr) = self.direct_addr(id) else {
                continue;
            };
            let nonce: u64 = self.rng.random();
            self.send_direct(
                id,
                addr,
                &Message::Ping {
                    nonce,
                    gossip: Vec::new(),
                },
            );
        }
    }

    /// Every `keepalive_interval`, a node behind a NAT pings its relays and the members it
    /// talks with that were silent since the last round (see the module docs).
    pub(super) fn keepalive(&mut self, now: Duration) {
        if !self.own.natted() || now < self.paths.next_keepalive {
            return;
        }
        self.paths.next_keepalive = now + self.cfg.keepalive_interval;
        let quiet = self.cfg.keepalive_interval;
        let mut due: Vec<(Duration, NodeId)> = self
            .view
            .members
            .values()
            .filter(|m| {
                let since = now.saturating_sub(m.last_heard);
                m.status != PeerStatus::Offline && since >= quiet && since < KEEPALIVE_ACTIVE
            })
            .map(|m| (m.last_heard, m.info.node_id))
            .collect();
        due.sort_unstable_by(|a, b| b.cmp(a));
        due.truncate(KEEPALIVE_MAX);
        let mut ids: Vec<NodeId> = due.into_iter().map(|(_, id)| id).collect();
        for relay in self.paths.relays() {
            if !ids.contains(&relay) {
                ids.push(relay);
            }
        }
        for id in ids {
            let nonce: u64 = self.rng.random();
            self.net.stats.keepalives += 1;
            self.send_member(
                id,
                &Message::Ping {
                    nonce,
                    gossip: Vec::new(),
                },
            );
        }
    }
}
