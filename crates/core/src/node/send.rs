//! The one send path: every message is encoded, sealed on the link to its receiver (a
//! member, a stranger, or the auth server) and queued as a datagram; and the way back:
//! opening a received link datagram.

use super::paths::{Route, Via};
use super::views::Admit;
use super::Node;
use crate::secure::{self, SERVER_ID};
use p2pchat_proto::wire::SenderCert;
use p2pchat_proto::{decode, encode, Message, NodeId, PeerInfo};
use std::net::SocketAddr;
use std::time::Duration;

/// An authenticated peer: the node whose link key opened a datagram, and the address it
/// came from. Handlers get it explicitly, and replies go to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Peer {
    pub(super) id: NodeId,
    pub(super) addr: SocketAddr,
}

impl Node {
    /// Seals `msg` for the auth server we ask now and queues the datagram.
    pub(super) fn send_server(&mut self, msg: &Message) {
        let Some(me) = self.own.node_id else { return };
        let Some(dh) = self.auth.server_dh else {
            return;
        };
        let Ok(payload) = encode(msg).inspect_err(|e| {
            debug_assert!(false, "the node built an unencodable message: {e}");
        }) else {
            return;
        };
        // Always with the certificate: a restarted server keeps no state about us.
        let cert = self.attachment(false);
        let epoch = self.own.epoch;
        let sealed = self
            .net
            .links
            .to(&self.own.ident, me, SERVER_ID, dh)
            .seal(me, epoch, &payload, cert);
        match sealed {
            Some(bytes) => self.push_datagram(self.auth.addr(), bytes),
            None => debug_assert!(false, "a sealed message must fit a datagram"),
        }
    }

    /// Seals `msg` for the member `id` at its address (nothing when it is not a member).
    pub(super) fn send_member(&mut self, id: NodeId, msg: &Message) {
        if let Some(addr) = self.view.members.get(&id).map(|m| m.info.addr) {
            self.send_to(id, addr, msg);
        }
    }

    /// Seals an encoded message for the member `id` (nothing when it is not a member).
    pub(super) fn send_payload_member(&mut self, id: NodeId, payload: &[u8]) {
        if let Some(addr) = self.view.members.get(&id).map(|m| m.info.addr) {
            self.send_payload_to(id, addr, payload);
        }
    }

    /// Seals `msg` for the member at `addr`, for the one message that names a peer by address
    /// only (`PingReq`); counted as unsendable when no member is there.
    pub(super) fn send_at(&mut self, addr: SocketAddr, msg: &Message) {
        match self.view.members.id_at(addr) {
            Some(id) => self.send_to(id, addr, msg),
            None => self.net.stats.unsendable += 1,
        }
    }

    /// Seals `msg` for the peer a datagram came from.
    pub(super) fn reply(&mut self, to: Peer, msg: &Message) {
        self.send_to(to.id, to.addr, msg);
    }

    /// Seals `msg` for the member or stranger `id` at `to`.
    pub(super) fn send_to(&mut self, id: NodeId, to: SocketAddr, msg: &Message) {
        match encode(msg) {
            Ok(p) => self.send_payload_to(id, to, &p),
            Err(e) => debug_assert!(false, "the node built an unencodable message: {e}"),
        }
    }

    /// Seals an encoded message for the member or stranger `id` at `to`, or where
    /// [`super::paths`] says it is now (another address, or through a relay).
    pub(super) fn send_payload_to(&mut self, id: NodeId, to: SocketAddr, payload: &[u8]) {
        let Some(bytes) = self.seal_for(id, payload) else {
            return;
        };
        match self.paths.route(id) {
            None => self.push_datagram(to, bytes),
            Some(Route::Direct(addr)) => self.push_datagram(addr, bytes),
            Some(Route::Relay { addr, .. }) => self.wrap_for_relay(id, addr, &bytes),
        }
    }

    /// Seals `msg` for `id` and sends it to `to`, whatever route `id` has (a punch, a
    /// direct try next to a relayed one).
    pub(super) fn send_direct(&mut self, id: NodeId, to: SocketAddr, msg: &Message) {
        if let Some(bytes) = encode(msg).ok().and_then(|p| self.seal_for(id, &p)) {
            self.push_datagram(to, bytes);
        }
    }

    /// Seals an encoded message for the member or stranger `id`: the datagram.
    pub(super) fn seal_for(&mut self, id: NodeId, payload: &[u8]) -> Option<Vec<u8>> {
        let me = self.own.node_id?;
        let Some(dh) = self.info_of(id).map(|i| i.cert.dh_pk) else {
            self.net.stats.unsendable += 1;
            return None;
        };
        let has = self
            .net
            .links
            .get(id)
            .is_some_and(|l| l.peer_dh == dh && l.peer_has_cert);
        let cert = self.attachment(has);
        let epoch = self.own.epoch;
        let sealed = self
            .net
            .links
            .to(&self.own.ident, me, id, dh)
            .seal(me, epoch, payload, cert);
        debug_assert!(sealed.is_some(), "a sealed message must fit a datagram");
        sealed
    }

    /// A link datagram from `id`, straight from `from` or passed on by the relay at `from`
    /// (`relay`): opened, and its message handled.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn receive_link(
        &mut self,
        now: Duration,
        from: SocketAddr,
        relay: Option<SocketAddr>,
        id: NodeId,
        epoch: u32,
        counter: u64,
        cert: Option<SenderCert>,
        sealed: &[u8],
    ) {
        let Some((payload, mut fresh)) =
            self.open_link(now, from, id, epoch, counter, cert, sealed)
        else {
            return;
        };
        let Ok(msg) = decode(&payload) else {
            self.net.stats.malformed += 1;
            return;
        };
        if id == SERVER_ID {
            self.handle_server(now, msg);
            return;
        }
        if self.account.is_revoked(id) {
            self.net.stats.revoked += 1;
            return;
        }
        let record = self.info_of(id).map(|i| i.addr);
        let addr = match relay {
            None => {
                self.paths
                    .heard_direct(id, from, record.or(Some(from)), now);
                from
            }
            Some(at) => {
                // Its address is not the relay's: the record's, or the one its message says.
                let claimed = match &msg {
                    Message::Hello { info, .. }
                    | Message::HelloAck { info, .. }
                    | Message::Connect { from: info, .. } => Some(info.addr),
                    _ => None,
                };
                let Some(addr) = record.or(claimed) else {
                    self.net.stats.unknown_sender += 1;
                    return;
                };
                if let Some(info) = fresh.as_mut() {
                    info.addr = addr;
                }
                let via = if self.auth.servers().contains(&at) {
                    Via::Server
                } else {
                    Via::Member(self.view.members.id_at(at).or_else(|| self.paths.id_at(at)))
                };
                if self.paths.heard_relayed(id, at, via, now) && via == Via::Server {
                    // The last resort: offer the pair to a member relay at once.
                    self.try_member_relay(now, id);
                }
                addr
            }
        };
        if let Some(info) = fresh {
            // A certificate we did not have: Hello, HelloAck and Connect learn it
            // themselves (with the right announcement); anything else learns it here.
            let known = self.view.members.contains_key(&id);
            match &msg {
                Message::Hello { .. } | Message::HelloAck { .. } | Message::Connect { .. }
                    if !known => {}
                _ if known => {
                    self.learn_member(now, info, true, Admit::IfRoom);
                }
                _ => {
                    self.learn_and_announce(now, info, true, Admit::Contact);
                }
            }
        }
        self.handle_peer(now, Peer { id, addr }, msg);
    }

    /// Authenticates a link datagram. Returns its payload and, when it carried a certificate
    /// we did not have, the sender's member record.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open_link(
        &mut self,
        now: Duration,
        from: SocketAddr,
        id: NodeId,
        epoch: u32,
        counter: u64,
        attached: Option<SenderCert>,
        sealed: &[u8],
    ) -> Option<(Vec<u8>, Option<PeerInfo>)> {
        let Some(me) = self.own.node_id else {
            self.net.stats.unauthenticated += 1;
            return None;
        };
        if id == SERVER_ID {
            let (Some(dh), true) = (self.auth.server_dh, from == self.auth.addr()) else {
                self.net.stats.unauthenticated += 1;
                return None;
            };
            let opened =
                self.net
                    .links
                    .open(&self.own.ident, me, SERVER_ID, dh, epoch, counter, sealed);
            return opened
                .map_err(|r| r.count(&mut self.net.stats))
                .ok()
                .map(|p| (p, None));
        }
        if id == me {
            self.net.stats.impersonation += 1;
            return None;
        }
        let known = self.info_of(id).map(|i| (i.user.clone(), i.cert.clone()));
        let wall = self.wall(now);
        let (user, cert, fresh) =
            secure::pick_cert(attached, known, wall, |u, c| self.cert_valid(id, u, c))
                .map_err(|r| r.count(&mut self.net.stats))
                .ok()?;
        let opened =
            self.net
                .links
                .open(&self.own.ident, me, id, cert.dh_pk, epoch, counter, sealed);
        let payload = opened.map_err(|r| r.count(&mut self.net.stats)).ok()?;
        let info = fresh.then_some(PeerInfo {
            node_id: id,
            user,
            addr: from,
            cert,
        });
        Some((payload, info))
    }
}
