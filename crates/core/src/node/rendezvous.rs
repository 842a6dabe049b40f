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

/// Whether a member asks the server for a punch along with a Hello that leaves
/// `left_after` tries: with the third and the fifth (about one and two seconds of silence
/// at the default retry; the second ask covers a first one made before our first poll,
/// which the server does not answer).
pub(super) fn ask_after(cfg: &NodeConfig, left_after: u32) -> bool {
    cfg.rendezvous && (left_after + 3 == cfg.hello_attempts || left_after + 5 == cfg.hello_attempts)
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
        self.send_to(id, addr, &Message::Hello { info: me, joined });
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
    fn a_punch_is_asked_after_one_and_two_seconds_of_unanswered_hellos_only_with_rendezvous() {
        let cfg = NodeConfig::default();
        let asks: Vec<u32> = (0..cfg.hello_attempts)
            .rev()
            .filter(|&left| ask_after(&cfg, left))
            .collect();
        assert_eq!(asks, [cfg.hello_attempts - 3, cfg.hello_attempts - 5]);
        let off = NodeConfig {
            rendezvous: false,
            ..NodeConfig::default()
        };
        assert!((0..off.hello_attempts).all(|left| !ask_after(&off, left)));
    }
}
