//! NATs in the simulator (`--natted F`): a share of the nodes sit behind a NAT that keeps
//! their port for every destination ("cone") and lets a datagram in only from an address the
//! node sent to within the last 30 s (a stateful firewall). The auth server and the other
//! nodes are reachable. Nodes then need the auth server's rendezvous (`Punch`) to join and
//! to reach each other.
//!
//! With `--symmetric S`, a share S of those NATs give each destination its own port
//! (symmetric): a peer sees such a node at another address than the auth server does, so a
//! datagram between two nodes behind NATs, one of them symmetric, never gets in (no punch
//! helps; they need a relay). A node without a NAT still reaches a symmetric one once it
//! sent to it (it answers the address it was heard at).

use crate::HashMap;
use foldhash::HashMapExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How long a NAT keeps a mapping open without traffic out (µs).
const MAPPING_TTL: u64 = 30_000_000;

#[derive(Default)]
pub(crate) struct Nats {
    /// Per endpoint (the auth server is 0): behind a NAT.
    natted: Vec<bool>,
    /// Per endpoint: behind a symmetric NAT.
    symmetric: Vec<bool>,
    /// (endpoint behind a NAT, remote endpoint) -> when it last sent there (µs).
    opened: HashMap<(usize, usize), u64>,
    /// Datagrams a NAT dropped.
    pub(crate) dropped: u64,
}

impl Nats {
    /// `share` of endpoints `1..=total` behind NATs, drawn with their own RNG (runs without
    /// NATs keep their numbers).
    pub(crate) fn new(total: usize, share: f64, symmetric: f64, seed: u64) -> Nats {
        if share <= 0.0 {
            return Nats::default();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4E41_5453);
        let natted: Vec<bool> = (0..=total)
            .map(|i| i > 0 && rng.random_bool(share))
            .collect();
        // Their own RNG: runs without symmetric NATs keep their numbers.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5359_4D4D);
        let symmetric = natted
            .iter()
            .map(|&n| n && symmetric > 0.0 && rng.random_bool(symmetric))
            .collect();
        Nats {
            natted,
            symmetric,
            opened: HashMap::with_capacity(total * 8),
            dropped: 0,
        }
    }

    /// Endpoint `from` sends to `to` at `now`: its NAT opens a mapping for `to`.
    pub(crate) fn sent(&mut self, from: usize, to: usize, now: u64) {
        if self.natted.get(from).copied().unwrap_or(false) {
            self.opened.insert((from, to), now);
        }
    }

    /// Whether a datagram from `from` gets through `to`'s NAT at `now`.
    pub(crate) fn admits(&mut self, from: usize, to: usize, now: u64) -> bool {
        let is = |v: &[bool], i: usize| v.get(i).copied().unwrap_or(false);
        if !is(&self.natted, to) {
            return true;
        }
        // Between two NATs, a symmetric one on either side: each side sends to a port the
        // other's NAT did not open.
        let crossed =
            is(&self.natted, from) && (is(&self.symmetric, from) || is(&self.symmetric, to));
        let open = !crossed
            && self
                .opened
                .get(&(to, from))
                .is_some_and(|&t| now.saturating_sub(t) < MAPPING_TTL);
        if !open {
            self.dropped += 1;
        }
        open
    }

    /// Endpoints behind NATs.
    pub(crate) fn count(&self) -> usize {
        self.natted.iter().filter(|&&n| n).count()
    }

    /// Endpoints behind symmetric NATs.
    pub(crate) fn symmetric_count(&self) -> usize {
        self.symmetric.iter().filter(|&&n| n).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nat_lets_in_only_whom_its_node_sent_to_lately() {
        let mut n = Nats::new(1000, 0.5, 0.0, 1);
        let inside = (1..=1000).find(|&i| n.natted[i]).expect("some natted");
        let outside = (1..=1000).find(|&i| !n.natted[i]).expect("some not");
        assert!(!n.natted[0], "the auth server is reachable");
        assert!((400..600).contains(&n.count()));
        assert!(n.admits(inside, outside, 0), "the outside one has no NAT");
        assert!(!n.admits(outside, inside, 0), "unasked");
        n.sent(inside, outside, 10);
        assert!(n.admits(outside, inside, 20));
        assert!(!n.admits(outside, inside, 10 + MAPPING_TTL), "expired");
        assert_eq!(n.dropped, 2);
        let none = Nats::new(10, 0.0, 0.5, 1);
        assert_eq!(none.count(), 0);
    }

    #[test]
    fn nodes_behind_nats_one_of_them_symmetric_never_get_through_to_each_other() {
        let mut n = Nats::new(1000, 0.5, 0.5, 1);
        assert_eq!(
            n.natted,
            Nats::new(1000, 0.5, 0.0, 1).natted,
            "the same nodes are natted"
        );
        let sym: Vec<usize> = (1..=1000).filter(|&i| n.symmetric[i]).collect();
        let cone = (1..=1000)
            .find(|&i| n.natted[i] && !n.symmetric[i])
            .expect("some cone");
        let public = (1..=1000).find(|&i| !n.natted[i]).expect("some public");
        assert!((150..350).contains(&sym.len()), "{}", sym.len());
        let (s, t) = (sym[0], sym[1]);
        // Both sides opened: still nothing between a symmetric NAT and another NAT.
        for (a, b) in [(s, t), (s, cone)] {
            n.sent(a, b, 0);
            n.sent(b, a, 0);
            assert!(!n.admits(a, b, 1) && !n.admits(b, a, 1), "{a} {b}");
        }
        // A node without a NAT gets in once the symmetric one sent to it.
        assert!(!n.admits(public, s, 1));
        n.sent(s, public, 1);
        assert!(n.admits(public, s, 2) && n.admits(s, public, 2));
    }
}
