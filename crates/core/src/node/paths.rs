//! How each member is reached: at the address of its record, at another address it was
//! heard from, or through a relay.
//!
//! - A node behind a NAT that gives each destination its own port (symmetric) is seen by
//!   each peer at a different address than the auth server saw. A datagram that
//!   authenticates as member `id` from address `a` shows where `id` is for us: replies and
//!   everything after go to `a` (as WireGuard does; the AEAD and the replay window make a
//!   forged or replayed datagram useless for this).
//! - Two members whose NATs both defeat the punch talk through a third member that reaches
//!   both (a relay). A datagram that came through relay `r` from `id` routes our datagrams
//!   to `id` through `r`, unless `id` was heard directly in the last 10 s. A direct datagram from
//!   `id` ends the relay route: the direct path works again.
//! - A relay passes datagrams on within a budget per sender (a token bucket).
//! - The auth server relays too, as the last resort (no member reaches both): a route through
//!   a member is never replaced by one through the server, and one through the server gives
//!   way to the first member that relays.
//!
//! Everything here is bookkeeping; the flows (choosing a relay, passing on, replacing a
//! relay that went silent) are in `relay.rs`.

use crate::budget::Budgets;
use crate::HashMap;
use p2pchat_proto::NodeId;
use std::net::SocketAddr;
use std::time::Duration;

/// A direct datagram this recent keeps a relayed datagram from starting a relay route (a
/// probe answered only through a helper is more often a lost datagram than a closed NAT).
pub(super) const DIRECT_FRESH: Duration = Duration::from_secs(10);
/// Datagrams a relay passes on per second for one sender, and the burst it allows.
const RELAY_RATE: f64 = 400.0;
const RELAY_BURST: f64 = 800.0;
/// Senders whose relay budget is remembered (the oldest are forgotten beyond).
const BUDGETS: usize = 4096;

/// Where a datagram to a member goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Straight to this address.
    Direct(SocketAddr),
    /// Wrapped for the relay at `addr`.
    Relay {
        /// The relay's address.
        addr: SocketAddr,
        /// Who relays.
        via: Via,
    },
}

/// Who relays for us: a member (by node id, when known) or the auth server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Via {
    /// A member, or an address that is not one we know as a member.
    Member(Option<NodeId>),
    /// The auth server (the last resort).
    Server,
}

#[derive(Clone, Copy, Debug)]
struct Relayed {
    addr: SocketAddr,
    via: Via,
}

/// The routes that differ from the member records, and the relay budgets.
pub(super) struct Paths {
    /// Members heard from at an address other than their record's.
    seen: HashMap<NodeId, SocketAddr>,
    seen_by_addr: HashMap<SocketAddr, NodeId>,
    /// Members reached through a relay.
    relayed: HashMap<NodeId, Relayed>,
    /// When each member was last heard directly.
    direct_at: HashMap<NodeId, Duration>,
    /// Relay budgets per sender we pass datagrams on for.
    budgets: Budgets<NodeId>,
    /// When the next keepalive round is due (behind a NAT).
    pub(super) next_keepalive: Duration,
    /// When members reached through a relay are next punched again, and the last one
    /// punched.
    pub(super) next_direct_try: Duration,
    retried_upto: Option<NodeId>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            seen: HashMap::default(),
            seen_by_addr: HashMap::default(),
            relayed: HashMap::default(),
            direct_at: HashMap::default(),
            budgets: Budgets::new(RELAY_RATE, RELAY_BURST, BUDGETS),
            next_keepalive: Duration::ZERO,
            next_direct_try: Duration::ZERO,
            retried_upto: None,
        }
    }
}

impl Paths {
    /// A datagram from `id` came straight from `from`; `record` is the address of its
    /// record. Returns true when this ends a relay route.
    pub(super) fn heard_direct(
        &mut self,
        id: NodeId,
        from: SocketAddr,
        record: Option<SocketAddr>,
        now: Duration,
    ) -> bool {
        if record == Some(from) {
            if let Some(old) = self.seen.remove(&id) {
                self.seen_by_addr.remove(&old);
            }
        } else if self.seen.get(&id) != Some(&from) {
            if let Some(old) = self.seen.insert(id, from) {
                self.seen_by_addr.remove(&old);
            }
            self.seen_by_addr.insert(from, id);
        }
        self.direct_at.insert(id, now);
        !self.relayed.is_empty() && self.relayed.remove(&id).is_some()
    }

    /// A datagram from `id` came through the relay at `addr` (`via`). Returns true when
    /// this starts or moves a relay route.
    pub(super) fn heard_relayed(
        &mut self,
        id: NodeId,
        addr: SocketAddr,
        via: Via,
        now: Duration,
    ) -> bool {
        if self
            .direct_at
            .get(&id)
            .is_some_and(|&t| now.saturating_sub(t) < DIRECT_FRESH)
        {
            return false;
        }
        // The server is the last resort: a member that relays keeps the route.
        if via == Via::Server && self.relayed.get(&id).is_some_and(|r| r.via != Via::Server) {
            return false;
        }
        let moved = self.relayed.get(&id).is_none_or(|r| r.addr != addr);
        self.relayed.insert(id, Relayed { addr, via });
        moved
    }

    /// Where datagrams to `id` go, when not to its record's address.
    pub(super) fn route(&self, id: NodeId) -> Option<Route> {
        if let Some(r) = self.relayed.get(&id) {
            return Some(Route::Relay {
                addr: r.addr,
                via: r.via,
            });
        }
        self.seen.get(&id).map(|&a| Route::Direct(a))
    }

    /// The member heard from at `addr` (not its record's address).
    pub(super) fn id_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.seen_by_addr.get(&addr).copied()
    }

    /// The relay route to `id`, if any: who relays.
    pub(super) fn relay_of(&self, id: NodeId) -> Option<Via> {
        self.relayed.get(&id).map(|r| r.via)
    }

    /// Whether `id` is reached through a relay.
    pub(super) fn is_relayed(&self, id: NodeId) -> bool {
        self.relayed.contains_key(&id)
    }

    /// Members reached through a relay.
    pub(super) fn relayed_count(&self) -> usize {
        self.relayed.len()
    }

    /// Up to `max` members reached through a relay, in turn: in id order from where the
    /// last call stopped.
    pub(super) fn relayed_ids(&mut self, max: usize) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.relayed.keys().copied().collect();
        v.sort_unstable();
        let start = v.partition_point(|&id| Some(id) <= self.retried_upto);
        v.rotate_left(start);
        v.truncate(max);
        self.retried_upto = v.last().copied();
        v
    }

    /// The members we route through, as relays.
    pub(super) fn relays(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .relayed
            .values()
            .filter_map(|r| match r.via {
                Via::Member(id) => id,
                Via::Server => None,
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Ends the relay routes through `relay` (it went silent, or it is the auth server we
    /// turned away from); returns the members they led to.
    pub(super) fn drop_via(&mut self, relay: Via) -> Vec<NodeId> {
        let ids: Vec<NodeId> = self
            .relayed
            .iter()
            .filter(|(_, r)| r.via == relay)
            .map(|(&id, _)| id)
            .collect();
        for id in &ids {
            self.relayed.remove(id);
        }
        ids
    }

    /// Forgets everything about `id` (it left, or its record changed).
    pub(super) fn forget(&mut self, id: NodeId) {
        if let Some(old) = self.seen.remove(&id) {
            self.seen_by_addr.remove(&old);
        }
        self.relayed.remove(&id);
        self.direct_at.remove(&id);
        self.budgets.forget(&id);
    }

    /// Whether the relay budget of `sender` allows passing one more datagram on now.
    pub(super) fn relay_allowed(&mut self, sender: NodeId, now: Duration) -> bool {
        self.budgets.allow(sender, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([203, 0, 113, 1], port))
    }

    const A: NodeId = NodeId(7);
    const R: NodeId = NodeId(9);

    #[test]
    fn a_member_heard_at_another_address_is_answered_there_until_heard_at_its_record() {
        let mut p = Paths::default();
        let t = Duration::from_secs(1);
        p.heard_direct(A, addr(1), Some(addr(1)), t);
        assert_eq!(p.route(A), None);
        p.heard_direct(A, addr(2), Some(addr(1)), t);
        assert_eq!(p.route(A), Some(Route::Direct(addr(2))));
        assert_eq!(p.id_at(addr(2)), Some(A));
        p.heard_direct(A, addr(3), Some(addr(1)), t);
        assert_eq!(p.id_at(addr(2)), None);
        assert_eq!(p.route(A), Some(Route::Direct(addr(3))));
        p.heard_direct(A, addr(1), Some(addr(1)), t);
        assert_eq!(p.route(A), None);
        assert_eq!(p.id_at(addr(3)), None);
    }

    #[test]
    fn a_relay_route_starts_when_only_relayed_traffic_comes_and_ends_with_a_direct_datagram() {
        let mut p = Paths::default();
        let t = Duration::from_secs(10);
        assert!(p.heard_relayed(A, addr(9), Via::Member(Some(R)), t));
        assert!(!p.heard_relayed(A, addr(9), Via::Member(Some(R)), t));
        assert_eq!(
            p.route(A),
            Some(Route::Relay {
                addr: addr(9),
                via: Via::Member(Some(R))
            })
        );
        assert_eq!(p.relayed_count(), 1);
        // Direct again: the relay route ends, and a relayed copy just after does not restore it.
        assert!(p.heard_direct(A, addr(1), Some(addr(1)), t));
        assert_eq!(p.route(A), None);
        assert!(!p.heard_relayed(A, addr(9), Via::Member(Some(R)), t + Duration::from_secs(5)));
        assert_eq!(p.route(A), None);
        // Silent directly for a while: the relay takes over again.
        assert!(p.heard_relayed(A, addr(9), Via::Member(Some(R)), t + DIRECT_FRESH));
        assert!(p.is_relayed(A));
    }

    #[test]
    fn routes_through_a_silent_relay_are_dropped() {
        let mut p = Paths::default();
        let t = Duration::from_secs(10);
        p.heard_relayed(A, addr(9), Via::Member(Some(R)), t);
        p.heard_relayed(NodeId(8), addr(5), Via::Member(Some(NodeId(5))), t);
        assert_eq!(p.drop_via(Via::Member(Some(R))), vec![A]);
        assert!(!p.is_relayed(A));
        assert!(p.is_relayed(NodeId(8)));
        p.forget(NodeId(8));
        assert_eq!(p.relayed_count(), 0);
    }

    #[test]
    fn members_behind_relays_are_retried_in_turn() {
        let mut p = Paths::default();
        for id in 1..=5 {
            p.heard_relayed(
                NodeId(id),
                addr(9),
                Via::Member(Some(R)),
                Duration::from_secs(9),
            );
        }
        let ids = |v: Vec<NodeId>| v.into_iter().map(|n| n.0).collect::<Vec<_>>();
        assert_eq!(ids(p.relayed_ids(2)), [1, 2]);
        assert_eq!(ids(p.relayed_ids(2)), [3, 4]);
        assert_eq!(ids(p.relayed_ids(2)), [5, 1]);
        assert_eq!(ids(p.relayed_ids(9)), [2, 3, 4, 5, 1]);
    }

    #[test]
    fn the_server_relays_only_where_no_member_does() {
        let mut p = Paths::default();
        let t = Duration::from_secs(10);
        let server = addr(7000);
        assert!(p.heard_relayed(A, server, Via::Server, t));
        assert_eq!(p.relay_of(A), Some(Via::Server));
        assert!(p.relays().is_empty(), "no member to keep alive");
        // A member that relays takes over; the server does not take the route back.
        assert!(p.heard_relayed(A, addr(9), Via::Member(Some(R)), t));
        assert!(!p.heard_relayed(A, server, Via::Server, t));
        assert_eq!(p.relay_of(A), Some(Via::Member(Some(R))));
        // The relay goes silent: the server may carry it again.
        assert_eq!(p.drop_via(Via::Member(Some(R))), vec![A]);
        assert!(p.heard_relayed(A, server, Via::Server, t));
        assert_eq!(p.drop_via(Via::Server), vec![A]);
    }
}
