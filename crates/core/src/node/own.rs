//! Who this node is on the network: its id once admitted, the address peers reach it at, its
//! keys, its link epoch and its certificate. Everything a datagram says about its sender
//! comes from here.

use crate::secure::Identity;
use ed25519_dalek::VerifyingKey;
use p2pchat_proto::wire::{Cert, SenderCert};
use p2pchat_proto::{NodeId, PeerInfo};
use rand_chacha::ChaCha20Rng;
use std::net::SocketAddr;
use std::time::Duration;

pub(super) struct Own {
    /// Given by the auth server at the first admission, then kept for good.
    pub(super) node_id: Option<NodeId>,
    /// Our address as peers see it (the auth server tells it at admission).
    pub(super) advertised: SocketAddr,
    /// Where our socket is bound.
    local: SocketAddr,
    /// Unix time in milliseconds at `now == 0`.
    wall_ms: u64,
    pub(super) ident: Identity,
    /// Our Ed25519 key, parsed (signs group messages and mail).
    pub(super) my_vk: Option<VerifyingKey>,
    /// The counter space of our links: one more at every start, persisted before use.
    pub(super) epoch: u32,
    pub(super) cert: Option<Cert>,
    /// Randomness for keys and handshakes.
    pub(super) crng: ChaCha20Rng,
}

impl Own {
    pub(super) fn new(
        advertised: SocketAddr,
        wall_ms: u64,
        ident: Identity,
        crng: ChaCha20Rng,
    ) -> Self {
        Own {
            node_id: None,
            advertised,
            local: advertised,
            wall_ms,
            ident,
            my_vk: None,
            epoch: 0,
            cert: None,
            crng,
        }
    }

    /// Whether a NAT is in front of us: the auth server sees another address than our
    /// socket's (a socket bound to all interfaces: another port).
    pub(super) fn natted(&self) -> bool {
        if self.local.ip().is_unspecified() {
            self.advertised.port() != self.local.port()
        } else {
            self.advertised != self.local
        }
    }

    /// Wall-clock time (Unix ms) at `now`: certificates expire in wall-clock time.
    pub(super) fn wall(&self, now: Duration) -> u64 {
        self.wall_ms.saturating_add(now.as_millis() as u64)
    }

    /// Our member record, once admitted and certified.
    pub(super) fn info(&self, user: &str) -> Option<PeerInfo> {
        Some(PeerInfo {
            node_id: self.node_id?,
            user: user.to_string(),
            addr: self.advertised,
            cert: self.cert.clone()?,
        })
    }

    /// Our certificate, to attach when the receiver may not have it.
    pub(super) fn attachment(&self, user: &str, peer_has: bool) -> Option<SenderCert> {
        if peer_has {
            return None;
        }
        self.cert.clone().map(|cert| SenderCert {
            user: user.to_string(),
            cert,
        })
    }

    /// Adopts a certificate; false when it is the one we have.
    pub(super) fn adopt_cert(&mut self, cert: &Cert) -> bool {
        if self.cert.as_ref() == Some(cert) {
            return false;
        }
        self.cert = Some(cert.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure;

    fn own() -> Own {
        let mut crng = secure::crypto_rng([7; 32]);
        let ident = Identity::generate(&mut crng);
        Own::new("127.0.0.1:9".parse().unwrap(), 1_000, ident, crng)
    }

    fn cert(expires_ms: u64) -> Cert {
        Cert {
            sign_pk: [1; 32],
            dh_pk: [2; 32],
            expires_ms,
            sig: [3; 64],
        }
    }

    #[test]
    fn no_record_before_admission_and_certificate() {
        let mut o = own();
        assert!(o.info("yuri").is_none());
        o.node_id = Some(NodeId(4));
        assert!(o.info("yuri").is_none(), "no certificate yet");
        assert!(o.adopt_cert(&cert(5)));
        let info = o.info("yuri").unwrap();
        assert_eq!((info.node_id, info.user.as_str()), (NodeId(4), "yuri"));
    }

    #[test]
    fn the_certificate_is_attached_only_for_peers_without_it() {
        let mut o = own();
        assert!(
            o.attachment("yuri", false).is_none(),
            "nothing to attach yet"
        );
        o.adopt_cert(&cert(5));
        assert!(o.attachment("yuri", true).is_none());
        assert_eq!(o.attachment("yuri", false).unwrap().cert, cert(5));
        assert!(!o.adopt_cert(&cert(5)), "the same certificate is no change");
        assert!(o.adopt_cert(&cert(6)));
    }

    #[test]
    fn wall_time_counts_from_the_start() {
        assert_eq!(own().wall(Duration::from_millis(250)), 1_250);
    }
}
