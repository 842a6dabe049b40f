//! What members ask the auth server over their link: polls (`Fetch`: lease, newcomers,
//! renewed certificate), where a user is (`Lookup`), the account's devices (`Devices`,
//! `Revoke`), and NAT rendezvous (`PunchAsk`, and the `Punch` sent to a newcomer and its
//! bootstrapping member).

use super::{AuthServer, PUNCHES_PER_SECOND, TABLE_LIMIT};
use crate::io::Output;
use crate::secure::SERVER_ID;
use p2pchat_proto::wire::{Revocation, MAX_DEVICES_LISTED};
use p2pchat_proto::{encode, Message, NodeId, PeerInfo};
use std::net::SocketAddr;
use std::time::Duration;

impl AuthServer {
    /// Seals a message to a node whose link may not exist yet (a newcomer that never sent
    /// over one): the link is derived from its certificate.
    pub(super) fn send_to_node(&mut self, info: &PeerInfo, msg: &Message) {
        let Ok(payload) = encode(msg) else {
            debug_assert!(false, "the server built an unencodable message");
            return;
        };
        let link = self
            .links
            .to(&self.ident, SERVER_ID, info.node_id, info.cert.dh_pk);
        if let Some(bytes) = link.seal(SERVER_ID, self.epoch, &payload, None) {
            self.stats.datagrams_out += 1;
            self.stats.bytes_out += bytes.len() as u64;
            self.out.push_back(Output::Send {
                to: info.addr,
                bytes,
            });
        }
    }

    /// A member cannot reach `target`: both are told to send to each other now, each at the
    /// address this server sees the other at. At most a few a second per asker; nothing
    /// for a target without a lease.
    pub(super) fn punch_ask(
        &mut self,
        now: Duration,
        from: SocketAddr,
        asker: NodeId,
        target: NodeId,
    ) {
        let second = now.as_secs();
        let entry = self.punches.entry(asker).or_insert((second, 0));
        if entry.0 != second {
            *entry = (second, 0);
        }
        entry.1 += 1;
        if entry.1 > PUNCHES_PER_SECOND {
            self.stats.throttled += 1;
            return;
        }
        if self.punches.len() > TABLE_LIMIT {
            self.punches.retain(|_, (s, _)| *s == second);
        }
        let (Some((asker_user, asker_cert)), Some((target_user, _))) = (
            self.certs.get(&asker).cloned(),
            self.certs.get(&target).cloned(),
        ) else {
            self.stats.rejected += 1;
            return;
        };
        let at = self.at(now);
        let found = match self.dir.lookup(at, &self.cfg, asker, &target_user) {
            Ok(found) => found,
            Err(e) => return self.directory_failed(e),
        };
        let Some(peer) = found.into_iter().flatten().find(|p| p.node_id == target) else {
            self.stats.rejected += 1;
            return;
        };
        let me = PeerInfo {
            node_id: asker,
            user: asker_user,
            addr: from,
            cert: asker_cert,
        };
        self.send_to_node(&me, &Message::Punch { peer: peer.clone() });
        self.send_to_node(&peer, &Message::Punch { peer: me });
    }

    /// Answers a member's `Lookup` with the user's record if it is online (holds a lease).
    pub(super) fn lookup(&mut self, now: Duration, from: SocketAddr, asker: NodeId, user: &str) {
        let at = self.at(now);
        match self.dir.lookup(at, &self.cfg, asker, user) {
            Ok(Some(peers)) => self.send(from, asker, &Message::Certs { peers }),
            Ok(None) => self.stats.rejected += 1,
            Err(e) => self.directory_failed(e),
        }
    }

    /// The asker's account (from the certificate its link was opened with), if it is a
    /// device of it that is not revoked.
    pub(super) fn asker_account(&mut self, id: NodeId) -> Option<String> {
        let user = self.certs.get(&id).map(|(u, _)| u.clone())?;
        match self.dir.knows(id) {
            Ok(true) => Some(user),
            Ok(false) => {
                self.stats.rejected += 1;
                None
            }
            Err(e) => {
                self.directory_failed(e);
                None
            }
        }
    }

    /// Answers a device's `Devices` with its account's devices.
    pub(super) fn devices(&mut self, now: Duration, from: SocketAddr, asker: NodeId) {
        let Some(user) = self.asker_account(asker) else {
            return;
        };
        let at = self.at(now);
        match self.dir.devices(at, &self.cfg, &user) {
            Ok(mut devices) => {
                // The newest ones when an account has more than a datagram holds.
                let skip = devices.len().saturating_sub(MAX_DEVICES_LISTED);
                devices.drain(..skip);
                self.send(from, asker, &Message::DeviceList { devices });
            }
            Err(e) => self.directory_failed(e),
        }
    }

    /// Revokes another device of the asker's account: the asker gets the signed revocation
    /// (to pass on to members) and the new list.
    pub(super) fn revoke(
        &mut self,
        now: Duration,
        from: SocketAddr,
        asker: NodeId,
        target: NodeId,
    ) {
        let Some(user) = self.asker_account(asker) else {
            return;
        };
        if target == asker {
            self.stats.rejected += 1;
            return;
        }
        match self.dir.revoke(&user, target) {
            Ok(true) => {
                for record in self.dir.take_records() {
                    self.out.push_back(Output::Persist(record));
                }
                // (Its certificate stays known: its polls are still opened, to tell it.)
                let sig = self.ident.sign(&Revocation::signed_bytes(target, &user));
                let r = Revocation {
                    node_id: target,
                    user,
                    sig,
                };
                self.send(from, asker, &Message::Revoked(r));
                self.devices(now, from, asker);
            }
            Ok(false) => self.stats.rejected += 1,
            Err(e) => self.directory_failed(e),
        }
    }

    /// A member's poll: renews its lease (and its certificate past half-life) and hands it
    /// the newcomers due to be offered.
    pub(super) fn fetch(&mut self, now: Duration, from: SocketAddr, node_id: NodeId) {
        match self.dir.knows(node_id) {
            Ok(true) => {}
            Ok(false) => {
                self.stats.rejected += 1;
                // A revoked device that still polls is told so (it stops with that reason).
                if let Some((user, _)) = self.certs.get(&node_id).cloned() {
                    let sig = self.ident.sign(&Revocation::signed_bytes(node_id, &user));
                    let r = Revocation { node_id, user, sig };
                    self.send(from, node_id, &Message::Revoked(r));
                }
                return;
            }
            Err(e) => {
                self.directory_failed(e);
                return;
            }
        }
        // Renew a certificate past its half-life.
        let half = self.cfg.cert_lifetime.as_millis() as u64 / 2;
        let wall = self.wall(now);
        let Some((user, cert)) = self.certs.get(&node_id).cloned() else {
            // open_link always leaves the sender's certificate here.
            self.stats.rejected += 1;
            return;
        };
        let renewed = (cert.expires_ms.saturating_sub(wall) < half)
            .then(|| self.issue(now, node_id, &user, cert.sign_pk, cert.dh_pk));
        let member = PeerInfo {
            node_id,
            user,
            addr: from,
            cert: renewed.clone().unwrap_or(cert),
        };
        let at = self.at(now);
        let newcomers = match self.dir.poll(at, &self.cfg, &member) {
            Ok(n) => n,
            Err(e) => {
                self.directory_failed(e);
                return;
            }
        };
        self.directory_ok();
        // Each newcomer is told to send to this member at once: behind a NAT, that is what
        // lets the member's `Connect` in. And to two other members that polled lately: if
        // this member is behind a NAT no punch opens (symmetric), one of them may answer.
        if self.cfg.rendezvous {
            let mut peers = vec![member.clone()];
            peers.extend(
                self.pollers
                    .iter()
                    .rev()
                    .filter(|p| p.node_id != member.node_id)
                    .take(super::EXTRA_PUNCHES)
                    .cloned(),
            );
            for n in &newcomers {
                for peer in &peers {
                    self.send_to_node(n, &Message::Punch { peer: peer.clone() });
                }
            }
            self.pollers.retain(|p| p.node_id != member.node_id);
            if self.pollers.len() >= 8 {
                self.pollers.pop_front();
            }
            self.pollers.push_back(member.clone());
        }
        // Keep the reply within one datagram even with long usernames.
        let mut msg = Message::Pending { newcomers, renewed };
        while encode(&msg).is_err() {
            match &mut msg {
                Message::Pending { newcomers, .. } if !newcomers.is_empty() => {
                    newcomers.pop();
                }
                _ => return,
            }
        }
        self.send(from, node_id, &msg);
    }
}
