//! Store-and-forward for private messages: what lets a message reach a recipient who comes
//! back after its sender has left.
//!
//! - [`seal`] / [`open`]: a private message sealed for its recipient alone (a [`MailBlob`]),
//!   under a key derived from the two parties' static X25519 keys, so that a mailbox can
//!   neither read nor alter it, and signed by its sender ([`authentic`]), so that any member
//!   can check who wrote it before keeping it or passing it on.
//! - [`choose`]: the mailboxes of a recipient, chosen deterministically among the members
//!   that are up (rendezvous hashing), so every sender picks the same few.
//! - [`Mailbox`]: what a member keeps for others: bounded per sender and per recipient,
//!   dropped on the recipient's acknowledgement or at expiry.
//!
//! The node (`node/mailbox.rs`) decides when to deposit, when to hand over, and persists every change
//! as a record; the protocol is in `docs/PROTOCOL.md` ("Mailboxes").

use crate::secure::Identity;
use crate::HashMap;
use blake2::{Blake2s256, Digest};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use p2pchat_proto::wire::{from_payload, to_payload};
use p2pchat_proto::{Key, MailBlob, NodeId, PrivateMsg};
use std::collections::BTreeMap;

fn mail_key(shared: &[u8; 32], from: NodeId, to: NodeId) -> XChaCha20Poly1305 {
    let mut h = Blake2s256::new();
    Digest::update(&mut h, b"p2pchat-mail-v1");
    Digest::update(&mut h, shared);
    Digest::update(&mut h, from.0.to_le_bytes());
    Digest::update(&mut h, to.0.to_le_bytes());
    XChaCha20Poly1305::new(&h.finalize())
}

fn aad(from: NodeId, to: NodeId, seq: u64, expires_ms: u64) -> [u8; 24] {
    let mut a = [0u8; 24];
    a[..4].copy_from_slice(&from.0.to_le_bytes());
    a[4..8].copy_from_slice(&to.0.to_le_bytes());
    a[8..16].copy_from_slice(&seq.to_le_bytes());
    a[16..].copy_from_slice(&expires_ms.to_le_bytes());
    a
}

/// Seals `msg` (written by `me`) for its recipient, whose X25519 key is `to_dh`. `nonce` must
/// be fresh (random): it is never derived from the counter, which a lost data dir could reuse.
pub fn seal(
    me: &Identity,
    msg: &PrivateMsg,
    to_dh: &Key,
    expires_ms: u64,
    nonce: [u8; 24],
) -> Option<MailBlob> {
    let plain = to_payload(msg).ok()?;
    let key = mail_key(&me.agree(to_dh), msg.from, msg.to);
    let sealed = key
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad(msg.from, msg.to, msg.seq, expires_ms),
            },
        )
        .ok()?;
    let mut blob = MailBlob {
        from: msg.from,
        to: msg.to,
        seq: msg.seq,
        expires_ms,
        nonce,
        sealed,
        sig: [0; 64],
    };
    blob.sig = me.sign(&blob.signed_bytes());
    Some(blob)
}

/// Whether `blob` carries its sender's signature (`from_vk`: the sender's Ed25519 key).
pub fn authentic(me: &Identity, blob: &MailBlob, from_vk: &ed25519_dalek::VerifyingKey) -> bool {
    me.check(from_vk, &blob.signed_bytes(), &blob.sig)
}

/// Opens a blob addressed to `me`, written by the holder of `from_dh`: the message, if it is
/// authentic and says what the clear fields say.
/// (The signature is checked apart, with [`authentic`]: the seal alone already proves the
/// sender to the recipient, the signature proves it to everyone.)
pub fn open(me: &Identity, blob: &MailBlob, from_dh: &Key) -> Option<PrivateMsg> {
    let key = mail_key(&me.agree(from_dh), blob.from, blob.to);
    let plain = key
        .decrypt(
            XNonce::from_slice(&blob.nonce),
            Payload {
                msg: &blob.sealed,
                aad: &aad(blob.from, blob.to, blob.seq, blob.expires_ms),
            },
        )
        .ok()?;
    let msg: PrivateMsg = from_payload(&plain).ok()?;
    (msg.from == blob.from && msg.to == blob.to && msg.seq == blob.seq).then_some(msg)
}

/// Rendezvous score of a candidate mailbox for a recipient (SplitMix64 of the pair): the same
/// on every node, spread evenly, and stable when other members come and go.
fn score(recipient: NodeId, candidate: NodeId) -> u64 {
    let mut z =
        (u64::from(recipient.0) << 32 | u64::from(candidate.0)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `k` mailboxes of `recipient` among `candidates` (highest rendezvous scores).
pub fn choose(
    recipient: NodeId,
    candidates: impl Iterator<Item = NodeId>,
    k: usize,
) -> Vec<NodeId> {
    let mut scored: Vec<(u64, NodeId)> = candidates
        .filter(|&c| c != recipient)
        .map(|c| (score(recipient, c), c))
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().take(k).map(|(_, c)| c).collect()
}

/// What [`Mailbox::put`] did with a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Kept (persist it).
    Stored,
    /// Already kept: nothing changed (still confirm it to the sender).
    Duplicate,
    /// Refused: the sender's or the recipient's share is full, or it expired.
    Refused,
}

/// Limits of a [`Mailbox`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Blobs kept from one sender, all recipients together.
    pub per_sender: usize,
    /// Blobs kept for one recipient, all senders together.
    pub per_recipient: usize,
}

/// The private messages a member keeps for absent recipients, by (recipient, sender, seq).
#[derive(Default)]
pub struct Mailbox {
    blobs: BTreeMap<(NodeId, NodeId, u64), MailBlob>,
    per_sender: HashMap<NodeId, usize>,
    per_recipient: HashMap<NodeId, usize>,
}

impl Mailbox {
    /// Keeps `blob` unless it expired (at wall time `now_ms`) or a share is full.
    pub fn put(&mut self, blob: MailBlob, limits: Limits, now_ms: u64) -> Put {
        let key = (blob.to, blob.from, blob.seq);
        if self.blobs.contains_key(&key) {
            return Put::Duplicate;
        }
        let from = self.per_sender.get(&blob.from).copied().unwrap_or(0);
        let to = self.per_recipient.get(&blob.to).copied().unwrap_or(0);
        if blob.expires_ms <= now_ms || from >= limits.per_sender || to >= limits.per_recipient {
            return Put::Refused;
        }
        *self.per_sender.entry(blob.from).or_default() += 1;
        *self.per_recipient.entry(blob.to).or_default() += 1;
        self.blobs.insert(key, blob);
        Put::Stored
    }

    fn remove(&mut self, key: (NodeId, NodeId, u64)) -> bool {
        let Some(b) = self.blobs.remove(&key) else {
            return false;
        };
        for (map, id) in [
            (&mut self.per_sender, b.from),
            (&mut self.per_recipient, b.to),
        ] {
            if let Some(n) = map.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&id);
                }
            }
        }
        true
    }

    /// Drops what `to` has of `from` (counters up to `upto`); true if anything was dropped.
    pub fn drop_upto(&mut self, to: NodeId, from: NodeId, upto: u64) -> bool {
        let keys: Vec<_> = self
            .blobs
            .range((to, from, 0)..=(to, from, upto))
            .map(|(k, _)| *k)
            .collect();
        let mut any = false;
        for k in keys {
            any |= self.remove(k);
        }
        any
    }

    /// Drops the blobs expired at wall time `now_ms`; returns them as (to, from, seq).
    pub fn expire(&mut self, now_ms: u64) -> Vec<(NodeId, NodeId, u64)> {
        let expired: Vec<_> = self
            .blobs
            .iter()
            .filter(|(_, b)| b.expires_ms <= now_ms)
            .map(|(k, _)| *k)
            .collect();
        for &k in &expired {
            self.remove(k);
        }
        expired
    }

    /// The blobs kept for `to`, oldest counter first per sender.
    pub fn for_recipient(&self, to: NodeId) -> impl Iterator<Item = &MailBlob> {
        self.blobs
            .range((to, NodeId(0), 0)..=(to, NodeId(u32::MAX), u64::MAX))
            .map(|(_, b)| b)
    }

    /// Whether anything is kept for `to`.
    pub fn has_mail_for(&self, to: NodeId) -> bool {
        self.per_recipient.contains_key(&to)
    }

    /// The recipients something is kept for.
    pub fn recipients(&self) -> Vec<NodeId> {
        self.per_recipient.keys().copied().collect()
    }

    /// Blobs kept.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Nothing kept.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure;

    fn ident(n: u8) -> Identity {
        Identity::generate(&mut secure::crypto_rng([n; 32]))
    }

    fn msg(seq: u64, text: &str) -> PrivateMsg {
        PrivateMsg {
            from: NodeId(1),
            to: NodeId(2),
            seq,
            seen: 0,
            text: text.into(),
            time_ms: 5,
        }
    }

    const LIMITS: Limits = Limits {
        per_sender: 3,
        per_recipient: 4,
    };

    #[test]
    fn only_the_recipient_opens_a_blob_and_nobody_alters_it() {
        let (alice, bob, carol) = (ident(1), ident(2), ident(3));
        let m = msg(1, "for bob only");
        let blob = seal(&alice, &m, &bob.dh_pk, 1_000, [9; 24]).expect("seal");
        let alice_vk = secure::verifying_key(&alice.sign_pk).expect("vk");
        let carol_vk = secure::verifying_key(&carol.sign_pk).expect("vk");
        // Anyone can check who wrote it; nobody else could have.
        assert!(authentic(&carol, &blob, &alice_vk));
        assert!(!authentic(&carol, &blob, &carol_vk));
        assert!(!blob
            .sealed
            .windows(b"for bob only".len())
            .any(|w| w == b"for bob only"));
        assert_eq!(open(&bob, &blob, &alice.dh_pk), Some(m.clone()));
        // A mailbox (carol) cannot open it, nor pass it off as someone else's.
        assert_eq!(open(&carol, &blob, &alice.dh_pk), None);
        assert_eq!(open(&bob, &blob, &carol.dh_pk), None);
        // Every clear field is bound: counter, expiry, parties, and the ciphertext.
        for change in 0..5 {
            let mut b = blob.clone();
            match change {
                0 => b.seq = 2,
                1 => b.expires_ms += 1,
                2 => b.from = NodeId(3),
                3 => b.sealed[0] ^= 1,
                _ => b.nonce[0] ^= 1,
            }
            assert_eq!(open(&bob, &b, &alice.dh_pk), None, "change {change}");
            assert!(!authentic(&carol, &b, &alice_vk), "change {change}");
        }
    }

    #[test]
    fn every_sender_chooses_the_same_mailboxes_and_they_move_little() {
        let members: Vec<NodeId> = (1..=20).map(NodeId).collect();
        let a = choose(NodeId(7), members.iter().copied(), 3);
        let mut shuffled = members.clone();
        shuffled.reverse();
        assert_eq!(a, choose(NodeId(7), shuffled.into_iter(), 3));
        assert_eq!(a.len(), 3);
        assert!(!a.contains(&NodeId(7)), "never the recipient itself");
        // One of them leaves: the other two stay mailboxes.
        let without: Vec<NodeId> = members.into_iter().filter(|&m| m != a[0]).collect();
        let b = choose(NodeId(7), without.into_iter(), 3);
        assert_eq!(&b[..2], &a[1..]);
    }

    #[test]
    fn a_mailbox_is_bounded_per_sender_and_recipient_and_drops_on_ack_or_expiry() {
        let alice = ident(1);
        let bob = ident(2);
        let blob = |from: u32, to: u32, seq: u64, expires| {
            let mut m = msg(seq, "x");
            m.from = NodeId(from);
            m.to = NodeId(to);
            seal(&alice, &m, &bob.dh_pk, expires, [seq as u8; 24]).expect("seal")
        };
        let mut mb = Mailbox::default();
        for seq in 1..=3 {
            assert_eq!(mb.put(blob(1, 2, seq, 100), LIMITS, 0), Put::Stored);
        }
        assert_eq!(mb.put(blob(1, 2, 3, 100), LIMITS, 0), Put::Duplicate);
        // Sender 1's share is full; another sender still gets in, up to bob's share.
        assert_eq!(mb.put(blob(1, 5, 1, 100), LIMITS, 0), Put::Refused);
        assert_eq!(mb.put(blob(4, 2, 1, 100), LIMITS, 0), Put::Stored);
        assert_eq!(mb.put(blob(6, 2, 1, 100), LIMITS, 0), Put::Refused);
        // Expired on arrival: refused.
        assert_eq!(mb.put(blob(6, 9, 1, 10), LIMITS, 50), Put::Refused);
        assert_eq!(mb.for_recipient(NodeId(2)).count(), 4);
        assert!(mb.drop_upto(NodeId(2), NodeId(1), 2));
        let left: Vec<(NodeId, u64)> = mb
            .for_recipient(NodeId(2))
            .map(|b| (b.from, b.seq))
            .collect();
        assert_eq!(left, [(NodeId(1), 3), (NodeId(4), 1)]);
        assert_eq!(mb.put(blob(1, 2, 4, 200), LIMITS, 0), Put::Stored);
        assert_eq!(
            mb.expire(100),
            [(NodeId(2), NodeId(1), 3), (NodeId(2), NodeId(4), 1)]
        );
        assert_eq!(mb.len(), 1);
        assert!(mb.has_mail_for(NodeId(2)));
        assert!(mb.drop_upto(NodeId(2), NodeId(1), 10));
        assert!(mb.is_empty() && !mb.has_mail_for(NodeId(2)));
    }
}
