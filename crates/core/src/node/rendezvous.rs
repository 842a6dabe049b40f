//! NAT traversal through the auth server, which sees every node's public (reflexive)
//! address: a NAT in front of a node drops datagrams from anyone the node has not sent to,
//! so two nodes that must talk are told to send to each other at once.
//!
//! - A newcomer handed to a member for bootstrapping is told (`Punch`) to send to that
//!   member: its Hello opens its NAT to the member, whose answer and `Connect` then get in.
//! - A member whose Hellos to another go unanswered asks the server (`PunchAsk`); the server
//!   sends a `Punch` to both, and both send a Hello: each opens its own NAT to the other
//!   (a hole punched from both sides). Two NATs that give each destination its own port
//!   (symmetric) defeat this; relays carry that traffic (see [`super::relay`]).

use super::life::Phase;
use super::Node;
use crate::config::NodeConfig;
use p2pchat_proto::{Message, NodeId, PeerInfo};
use std::time::Duration;

/// Hellos sent through a relay after those of `hello_attempts` (each try from the fourth
/// also goes through a relay).
const RELAY_HELLOS: u32 = 4;

/// Hellos a member sends to another before it gives up (gossip covers the rest).
pub(super) fn hello_tries(cfg: &NodeConfig) -> u32 {
    cfg.hello_attempts + if relaying(cfg) { RELAY_HELLOS } else { 0 }
}

fn relaying(cfg: &NodeConfig) -> bool {
    cfg.rendezvous && cfg.relay
}

/// A newcomer not bootstrapped after this long also sends its Hellos to the members it is
/// punched to through the auth server (the server offers a waiting newcomer again after
/// `AuthConfig::reoffer_after`, 2 s by default).
const NEWCOMER_SERVER_AFTER: Duration = Duration::from_secs(1);

/// Hellos from this one on (to a member that has not answered) also go through the auth
/// server: no member relayed the four before (the server is the last resort; from the
/// sixth, it carried more than twice as many datagrams in the simulator, pairs that members
/// would have carried).
const SERVER_HELLOS_FROM: u32 = 8;

/// What goes with one Hello to a member that has not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HelloPlan {
    /// Ask the server for a punch.
    pub(super) punch: bool,
    /// Send the Hello through a member relay too.
    pub(super) relay: bool,
    /// Send the Hello through the auth server too.
    pub(super) server: bool,
}

/// What goes with the Hello numbered `k` (from 1). Punches with the third and the fifth
/// (about one and two seconds of silence at the default retry; the second ask covers a
/// first one made before our first poll, which the server does not answer); a member relay
/// from the fourth on, each try through another; the auth server from the eighth on.
pub(super) fn hello_plan(cfg: &NodeConfig, k: u32) -> HelloPlan {
    HelloPlan {
        punch: cfg.rendezvous && (k == 3 || k == 5),
        relay: relaying(cfg) && k >= 4,
        server: relaying(cfg) && k >= SERVER_HELLOS_FROM,
    }
}

impl Node {
    /// The server says: send to `peer` now (it is told the same about us, or it is the
    /// member bootstrapping us). A newcomer still waiting after a while (the server offers
    /// it again: its NAT and the member's may both defeat the punch) also sends the Hello
    /// through the server.
    pub(super) fn handle_punch(&mut self, now: Duration, peer: PeerInfo) {
        if !self.cfg.rendezvous || Some(peer.node_id) == self.own.node_id {
            return;
        }
        let (id, addr) = (peer.node_id, peer.addr);
        if !self.learn_record(peer) {
            return;
        }
        let Some(me) = self.my_info() else { return };
        self.net.stats.punches += 1;
        let joined = !self.life.restored;
        // Straight to where the server sees it, whatever route we had.
        self.send_direct(id, addr, &Message::Hello { info: me, joined });
        let waited = self
            .life
            .awaiting_since
            .is_some_and(|t| now.saturating_sub(t) >= NEWCOMER_SERVER_AFTER);
        if self.life.phase == Phase::AwaitingBootstrap && waited {
            self.try_server_relay(id);
        }
    }

    /// Asks the server to have us and `id` send to each other.
    pub(super) fn ask_punch(&mut self, id: NodeId) {
        if self.cfg.rendezvous {
            self.send_server(&Message::PunchAsk { node_id: id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_punch_is_asked_after_one_and_two_seconds_of_unanswered_hellos_then_relays_are_tried() {
        let cfg = NodeConfig::default();
        let tries = 1..=hello_tries(&cfg);
        let asks: Vec<u32> = tries
            .clone()
            .filter(|&k| hello_plan(&cfg, k).punch)
            .collect();
        assert_eq!(asks, [3, 5]);
        let relayed: Vec<u32> = tries
            .clone()
            .filter(|&k| hello_plan(&cfg, k).relay)
            .collect();
        assert_eq!(
            relayed,
            (4..=cfg.hello_attempts + RELAY_HELLOS).collect::<Vec<_>>()
        );
        let server: Vec<u32> = tries.filter(|&k| hello_plan(&cfg, k).server).collect();
        assert_eq!(
            server,
            (SERVER_HELLOS_FROM..=cfg.hello_attempts + RELAY_HELLOS).collect::<Vec<_>>()
        );
        let off = NodeConfig {
            rendezvous: false,
            ..NodeConfig::default()
        };
        assert_eq!(hello_tries(&off), off.hello_attempts);
        let nothing = HelloPlan {
            punch: false,
            relay: false,
            server: false,
        };
        assert!((1..=hello_tries(&off)).all(|k| hello_plan(&off, k) == nothing));
    }
}
