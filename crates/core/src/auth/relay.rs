//! The auth server as the relay of last resort. Two nodes whose NATs defeat every punch
//! talk through a member that reaches both; when there is none (every member is behind a
//! NAT, or a newcomer behind a symmetric NAT joins such a group), they talk through the
//! server, which every node reaches anyway.
//!
//! The server passes `Relay {to, inner}` on as `Relayed {inner}` only when:
//! - `inner` is a link datagram of node `f`, and the `Relay` came from the address this
//!   server last saw `f`'s authenticated datagrams (or its admission) at;
//! - `to` is another node this server saw within `SEEN_FOR`, and it is sent to the address
//!   it was seen at (so only to nodes that talk to this server: no reflection toward an
//!   address an attacker picks);
//! - `f`'s budget (`AuthConfig::relay_rate` a second, twice that in a burst) and the
//!   server's total budget (`AuthConfig::relay_total`, the same) allow it.
//!
//! What it sends is smaller than what it got, and it cannot open `inner` (sealed for `to`).

use super::{AuthServer, TABLE_LIMIT};
use crate::budget::Budgets;
use crate::io::Output;
use crate::HashMap;
use p2pchat_proto::wire::Envelope;
use p2pchat_proto::{encode_envelope, link_sender, NodeId};
use std::net::SocketAddr;
use std::time::Duration;

/// A node is relayed to, and its address believed, this long after it was last seen.
const SEEN_FOR: Duration = Duration::from_secs(30);

/// Where the server last saw each node, and the relay budgets.
pub(super) struct ServerRelay {
    seen: HashMap<NodeId, (SocketAddr, Duration)>,
    per_node: Budgets<NodeId>,
    total: Budgets<()>,
}

impl ServerRelay {
    /// `rate` datagrams a second per node, `total` for everyone together (bursts of twice
    /// as many).
    pub(super) fn new(rate: u32, total: u32) -> Self {
        let (rate, total) = (f64::from(rate), f64::from(total));
        ServerRelay {
            seen: HashMap::default(),
            per_node: Budgets::new(rate, 2.0 * rate, TABLE_LIMIT),
            total: Budgets::new(total, 2.0 * total, 1),
        }
    }

    /// Node `id` was authenticated at `addr` (a link datagram, or its admission).
    pub(super) fn saw(&mut self, id: NodeId, addr: SocketAddr, now: Duration) {
        if self.seen.len() >= TABLE_LIMIT && !self.seen.contains_key(&id) {
            self.seen
                .retain(|_, (_, at)| now.saturating_sub(*at) < SEEN_FOR);
            if self.seen.len() >= TABLE_LIMIT {
                return;
            }
        }
        self.seen.insert(id, (addr, now));
    }

    /// Where `id` was seen within `SEEN_FOR`.
    fn at(&self, id: NodeId, now: Duration) -> Option<SocketAddr> {
        self.seen
            .get(&id)
            .filter(|(_, at)| now.saturating_sub(*at) < SEEN_FOR)
            .map(|(a, _)| *a)
    }
}

impl AuthServer {
    /// A node asks us to pass `inner` on to `to` (see the module docs).
    pub(super) fn handle_relay(
        &mut self,
        now: Duration,
        from: SocketAddr,
        to: NodeId,
        inner: &[u8],
    ) {
        if !self.cfg.rendezvous || self.cfg.relay_rate == 0 {
            self.stats.rejected += 1;
            return;
        }
        let Some(sender) = link_sender(inner) else {
            self.stats.malformed += 1;
            return;
        };
        // Only for a node at the address we know it at, for its own datagrams.
        if self.relay.at(sender, now) != Some(from) {
            self.stats.unauthenticated += 1;
            return;
        }
        let Some(dest) = self.relay.at(to, now).filter(|_| to != sender) else {
            self.stats.relay_refused += 1;
            return;
        };
        if !self.relay.per_node.allow(sender, now) || !self.relay.total.allow((), now) {
            self.stats.relay_refused += 1;
            return;
        }
        match encode_envelope(&Envelope::Relayed { inner }) {
            Ok(bytes) => {
                self.stats.relayed += 1;
                self.stats.datagrams_out += 1;
                self.stats.bytes_out += bytes.len() as u64;
                self.out.push_back(Output::Send { to: dest, bytes });
            }
            Err(_) => self.stats.malformed += 1,
        }
    }
}
