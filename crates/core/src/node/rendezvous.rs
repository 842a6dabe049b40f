//! NAT traversal through the auth server, which sees every node's public (reflexive)
//! address: a NAT in front of a node drops datagrams from anyone the node has not sent to,
//! so two nodes that must talk are told to send to each other at once.
//!
//! - A newcomer handed to a member for bootstrapping is told (`Punch`) to send to that
//!   member: its Hello opens its NAT to the member, whose answer and `Connect` then get in.
//! - A member whose Hellos to another go unanswered asks the server (`PunchAsk`); the server
//!   sends a `Punch` to both, and both send a Hello: each opens its own NAT to the other
//!   (a hole punched from both sides). Two NATs that give each destination its own port
//!   (symmetric) defeat this; a relay for them is not built yet.

use super::Node;
use crate::config::NodeConfig;
use p2pchat_proto::{Message, NodeId, PeerInfo};

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

/// What goes with the Hello numbered `k` (from 1) to a member that has not answered:
/// (a punch asked of the server, the Hello also sent through a relay). Punches with the
/// third and the fifth (about one and two seconds of silence at the default retry; the
/// second ask covers a first one made before our first poll, which the server does not
/// answer); a relay from the fourth on, each try through another.
pub(super) fn hello_plan(cfg: &NodeConfig, k: u32) -> (bool, bool) {
    (
        cfg.rendezvous && (k == 3 || k == 5),
        relaying(cfg) && k >= 4,
    )
}

impl Node {
    /// The server says: send to `peer` now (it is told the same about us, or it is the
    /// member bootstrapping us).
    pub(super) fn handle_punch(&mut self, peer: PeerInfo) {
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
        let asks: Vec<u32> = tries.clone().filter(|&k| hello_plan(&cfg, k).0).collect();
        assert_eq!(asks, [3, 5]);
        let relayed: Vec<u32> = tries.filter(|&k| hello_plan(&cfg, k).1).collect();
        assert_eq!(
            relayed,
            (4..=cfg.hello_attempts + RELAY_HELLOS).collect::<Vec<_>>()
        );
        let off = NodeConfig {
            rendezvous: false,
            ..NodeConfig::default()
        };
        assert_eq!(hello_tries(&off), off.hello_attempts);
        assert!((1..=hello_tries(&off)).all(|k| hello_plan(&off, k) == (false, false)));
    }
}
