//! Cryptography for the state machines, still sans-IO: every random byte comes from a seeded
//! RNG the driver provides, so the simulator stays deterministic.
//!
//! - [`Identity`]: a party's long-term Ed25519 (signing) and X25519 (key agreement) keys.
//! - Certificates: the server signs `(node id, username, keys, expiry)`; see
//!   [`Identity::issue_cert`] and [`cert_ok`].
//! - [`Link`]: the AEAD channel between two parties, keyed from their static keys (one key per
//!   direction), with a per-link counter and a sliding [`ReplayWindow`].
//! - Noise NK for signup/signin: the node knows the server's X25519 key in advance, so the
//!   request (password included) is encrypted to the server and the answer is authenticated.
//!
//! Primitives: Ed25519 (`ed25519-dalek`), X25519 (`x25519-dalek`), ChaCha20-Poly1305,
//! BLAKE2s for key derivation and cookies, and `snow` for Noise.

use blake2::digest::Mac as _;
use blake2::{Blake2s256, Blake2sMac256, Digest};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use p2pchat_proto::wire::{encode_envelope, Cert, Envelope, Key, SenderCert, Sig};
use p2pchat_proto::NodeId;
use rand::RngCore;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use x25519_dalek::{PublicKey, StaticSecret};

/// The auth server's node id on links.
pub const SERVER_ID: NodeId = NodeId(0);
/// The Noise pattern used for signup and signin.
pub const NOISE_PARAMS: &str = "Noise_NK_25519_ChaChaPoly_BLAKE2s";
/// Replay window width, in datagrams.
pub const WINDOW: u64 = 1024;

/// Memoized results of pure crypto functions, shared by the state machines of one process.
///
/// Only the simulator uses it: it runs thousands of nodes in one process, each verifying the
/// same certificates and signatures and deriving both halves of every link. Verification and
/// key agreement are pure functions, so sharing their results changes no outcome, only the
/// time a run takes. A real node (one per process) and `p2pchat bench` do every operation.
#[derive(Default)]
pub struct CryptoMemo {
    verified: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
    agreed: std::sync::Mutex<std::collections::HashMap<(Key, Key), [u8; 32]>>,
    parsed: std::sync::Mutex<std::collections::HashMap<Key, VerifyingKey>>,
}

impl std::fmt::Debug for CryptoMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CryptoMemo")
    }
}

fn verify_key(vk: &VerifyingKey, msg: &[u8], sig: &Sig) -> [u8; 32] {
    let mut h = Blake2s256::new();
    Digest::update(&mut h, vk.as_bytes());
    Digest::update(&mut h, sig);
    Digest::update(&mut h, msg);
    h.finalize().into()
}

/// A party's long-term keys.
pub struct Identity {
    sign: SigningKey,
    dh: StaticSecret,
    /// Ed25519 public key.
    pub sign_pk: Key,
    /// X25519 public key.
    pub dh_pk: Key,
    memo: Option<std::sync::Arc<CryptoMemo>>,
}

impl Identity {
    /// Rebuilds an identity from its two secrets.
    pub fn from_secrets(sign_sk: [u8; 32], dh_sk: [u8; 32]) -> Self {
        let sign = SigningKey::from_bytes(&sign_sk);
        let dh = StaticSecret::from(dh_sk);
        let sign_pk = sign.verifying_key().to_bytes();
        let dh_pk = PublicKey::from(&dh).to_bytes();
        Identity {
            sign,
            dh,
            sign_pk,
            dh_pk,
            memo: None,
        }
    }

    /// Shares pure crypto results with the other machines of this process (simulator only).
    pub fn with_memo(mut self, memo: Option<std::sync::Arc<CryptoMemo>>) -> Self {
        self.memo = memo;
        self
    }

    /// [`verify`], memoized when this identity has a memo.
    pub fn check(&self, vk: &VerifyingKey, msg: &[u8], sig: &Sig) -> bool {
        let Some(memo) = &self.memo else {
            return verify(vk, msg, sig);
        };
        let key = verify_key(vk, msg, sig);
        if memo.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return true;
        }
        let ok = verify(vk, msg, sig);
        if ok {
            if let Ok(mut v) = memo.verified.lock() {
                v.insert(key);
            }
        }
        ok
    }

    /// [`verifying_key`], memoized when this identity has a memo.
    pub fn parse_key(&self, pk: &Key) -> Option<VerifyingKey> {
        let Some(memo) = &self.memo else {
            return verifying_key(pk);
        };
        if let Some(vk) = memo.parsed.lock().ok().and_then(|m| m.get(pk).copied()) {
            return Some(vk);
        }
        let vk = verifying_key(pk)?;
        if let Ok(mut m) = memo.parsed.lock() {
            m.insert(*pk, vk);
        }
        Some(vk)
    }

    /// [`cert_ok`], memoized when this identity has a memo.
    pub fn check_cert(
        &self,
        server: &VerifyingKey,
        node_id: NodeId,
        user: &str,
        cert: &Cert,
    ) -> bool {
        let bytes = Cert::signed_bytes(node_id, user, &cert.sign_pk, &cert.dh_pk, cert.expires_ms);
        self.check(server, &bytes, &cert.sig)
    }

    /// Fresh keys from `rng` (which the driver seeds from the OS).
    pub fn generate(rng: &mut impl RngCore) -> Self {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut a);
        rng.fill_bytes(&mut b);
        Self::from_secrets(a, b)
    }

    /// The two secrets, to persist.
    pub fn secrets(&self) -> ([u8; 32], [u8; 32]) {
        (self.sign.to_bytes(), self.dh.to_bytes())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Sig {
        self.sign.sign(msg).to_bytes()
    }

    /// X25519 with a peer's public key.
    pub fn agree(&self, peer: &Key) -> [u8; 32] {
        let Some(memo) = &self.memo else {
            return self.dh.diffie_hellman(&PublicKey::from(*peer)).to_bytes();
        };
        // Both ends of a link compute the same secret: one computation serves both.
        let pair = if self.dh_pk <= *peer {
            (self.dh_pk, *peer)
        } else {
            (*peer, self.dh_pk)
        };
        if let Some(s) = memo.agreed.lock().ok().and_then(|m| m.get(&pair).copied()) {
            return s;
        }
        let s = self.dh.diffie_hellman(&PublicKey::from(*peer)).to_bytes();
        if let Ok(mut m) = memo.agreed.lock() {
            m.insert(pair, s);
        }
        s
    }

    /// Signs a certificate binding `node_id` and `user` to a node's keys.
    pub fn issue_cert(
        &self,
        node_id: NodeId,
        user: &str,
        sign_pk: Key,
        dh_pk: Key,
        expires_ms: u64,
    ) -> Cert {
        let sig = self.sign(&Cert::signed_bytes(
            node_id, user, &sign_pk, &dh_pk, expires_ms,
        ));
        Cert {
            sign_pk,
            dh_pk,
            expires_ms,
            sig,
        }
    }
}

/// Parses an Ed25519 public key (None for an invalid point).
pub fn verifying_key(pk: &Key) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(pk).ok()
}

/// Checks an Ed25519 signature.
pub fn verify(vk: &VerifyingKey, msg: &[u8], sig: &Sig) -> bool {
    vk.verify(msg, &Signature::from_bytes(sig)).is_ok()
}

/// Whether `cert` is the server's signature for `node_id` and `user` (expiry not checked).
pub fn cert_ok(server: &VerifyingKey, node_id: NodeId, user: &str, cert: &Cert) -> bool {
    let bytes = Cert::signed_bytes(node_id, user, &cert.sign_pk, &cert.dh_pk, cert.expires_ms);
    verify(server, &bytes, &cert.sig)
}

/// A short, printable form of a public key: its lowercase hex.
pub fn fingerprint(pk: &Key) -> String {
    pk.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the hex form printed by [`fingerprint`].
pub fn parse_fingerprint(s: &str) -> Option<Key> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// A stateless cookie: a keyed MAC of the client's address and a time bucket.
pub fn cookie(secret: &[u8; 32], addr: &std::net::SocketAddr, bucket: u64) -> [u8; 16] {
    let mut mac = <Blake2sMac256 as blake2::digest::KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable_mac());
    mac.update(addr.to_string().as_bytes());
    mac.update(&bucket.to_le_bytes());
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn unreachable_mac() -> Blake2sMac256 {
    // A 32-byte key is always accepted by BLAKE2s-MAC; this path cannot be taken.
    <Blake2sMac256 as blake2::digest::KeyInit>::new(&Default::default())
}

/// Sliding window over `(epoch, counter)`: accepts each counter of the newest epoch once,
/// up to [`WINDOW`] behind the highest seen.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    epoch: u32,
    max: u64,
    bits: [u64; (WINDOW / 64) as usize],
}

impl ReplayWindow {
    /// Whether `(epoch, counter)` is new. Does not change the window.
    pub fn fresh(&self, epoch: u32, counter: u64) -> bool {
        if counter == 0 || epoch < self.epoch {
            return false;
        }
        if epoch > self.epoch || counter > self.max {
            return true;
        }
        if self.max - counter >= WINDOW {
            return false;
        }
        let i = (counter % WINDOW) as usize;
        self.bits[i / 64] & (1 << (i % 64)) == 0
    }

    /// Records `(epoch, counter)` as seen (call only after authentication succeeded).
    pub fn commit(&mut self, epoch: u32, counter: u64) {
        if epoch > self.epoch {
            *self = ReplayWindow {
                epoch,
                ..Default::default()
            };
        }
        if counter > self.max {
            let gap = counter - self.max;
            if gap >= WINDOW {
                self.bits = Default::default();
            } else {
                for c in self.max + 1..counter {
                    let i = (c % WINDOW) as usize;
                    self.bits[i / 64] &= !(1 << (i % 64));
                }
            }
            self.max = counter;
        }
        let i = (counter % WINDOW) as usize;
        self.bits[i / 64] |= 1 << (i % 64);
    }
}

/// The channel between this party and one peer.
pub struct Link {
    /// The peer's X25519 key the link was derived from.
    pub peer_dh: Key,
    send: ChaCha20Poly1305,
    recv: ChaCha20Poly1305,
    counter: u64,
    window: ReplayWindow,
    /// The peer has answered us, so it has our certificate: stop attaching it.
    pub peer_has_cert: bool,
}

fn direction_key(shared: &[u8; 32], from: NodeId, to: NodeId) -> ChaCha20Poly1305 {
    let mut h = Blake2s256::new();
    Digest::update(&mut h, b"p2pchat-link-v1");
    Digest::update(&mut h, shared);
    Digest::update(&mut h, from.0.to_le_bytes());
    Digest::update(&mut h, to.0.to_le_bytes());
    let key = h.finalize();
    ChaCha20Poly1305::new(&key)
}

fn nonce(epoch: u32, counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&epoch.to_le_bytes());
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n.into()
}

fn aad(from: NodeId, epoch: u32, counter: u64) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&from.0.to_le_bytes());
    a[4..8].copy_from_slice(&epoch.to_le_bytes());
    a[8..].copy_from_slice(&counter.to_le_bytes());
    a
}

impl Link {
    /// Derives the link between `me` (`my_id`) and the peer with `peer_dh` (`peer_id`).
    pub fn new(me: &Identity, my_id: NodeId, peer_id: NodeId, peer_dh: Key) -> Self {
        let shared = me.agree(&peer_dh);
        Link {
            peer_dh,
            send: direction_key(&shared, my_id, peer_id),
            recv: direction_key(&shared, peer_id, my_id),
            counter: 0,
            window: ReplayWindow::default(),
            peer_has_cert: false,
        }
    }

    /// Seals `payload` into a datagram; `cert` is attached when the peer may lack it.
    pub fn seal(
        &mut self,
        my_id: NodeId,
        epoch: u32,
        payload: &[u8],
        cert: Option<SenderCert>,
    ) -> Option<Vec<u8>> {
        self.counter += 1;
        let counter = self.counter;
        let aad = aad(my_id, epoch, counter);
        let sealed = self
            .send
            .encrypt(
                &nonce(epoch, counter),
                Payload {
                    msg: payload,
                    aad: &aad,
                },
            )
            .ok()?;
        encode_envelope(&Envelope::Link {
            from: my_id,
            epoch,
            counter,
            cert,
            sealed: &sealed,
        })
        .ok()
    }

    /// Authenticates and decrypts a datagram from the peer; `None` for a forgery or a replay.
    pub fn open(
        &mut self,
        from: NodeId,
        epoch: u32,
        counter: u64,
        sealed: &[u8],
    ) -> Option<Vec<u8>> {
        if !self.window.fresh(epoch, counter) {
            return None;
        }
        let aad = aad(from, epoch, counter);
        let plain = self
            .recv
            .decrypt(
                &nonce(epoch, counter),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .ok()?;
        self.window.commit(epoch, counter);
        Some(plain)
    }

    /// Whether a datagram with these numbers would be a replay (for counting).
    pub fn is_replay(&self, epoch: u32, counter: u64) -> bool {
        !self.window.fresh(epoch, counter)
    }
}

/// Why a link datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Already seen (a replay or a network duplicate), or behind the window.
    Replayed,
    /// Failed authentication: forged, corrupted, or sealed under another key.
    Unauthentic,
}

impl Refused {
    /// Counts the refusal in the machine's counters.
    pub fn count(self, stats: &mut crate::io::Stats) {
        match self {
            Refused::Replayed => stats.replayed += 1,
            Refused::Unauthentic => stats.unauthenticated += 1,
        }
    }
}

/// Why no certificate authenticates a link datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCert {
    /// None attached and none known for the sender.
    UnknownSender,
    /// The attached certificate is not the server's for that id and name.
    BadSignature,
    /// The certificate expired.
    Expired,
}

impl NoCert {
    /// Counts the refusal in the machine's counters.
    pub fn count(self, stats: &mut crate::io::Stats) {
        match self {
            NoCert::UnknownSender => stats.unknown_sender += 1,
            NoCert::BadSignature => stats.bad_signature += 1,
            NoCert::Expired => stats.expired += 1,
        }
    }
}

/// The certificate that authenticates a link datagram: the one known for the sender, or the
/// attached one when it differs and is `valid` and not older than the known one (an old
/// certificate must not bring back old keys, under which old datagrams could be replayed).
/// Returns `(user, cert, fresh)`, `fresh` when the attached certificate was taken.
pub fn pick_cert(
    attached: Option<SenderCert>,
    known: Option<(String, Cert)>,
    now_ms: u64,
    valid: impl FnOnce(&str, &Cert) -> bool,
) -> Result<(String, Cert, bool), NoCert> {
    let picked = match (attached, known) {
        (Some(a), Some((ku, kc))) if a.cert == kc && a.user == ku => (ku, kc, false),
        (Some(a), Some((ku, kc))) if kc.expires_ms > a.cert.expires_ms => (ku, kc, false),
        (Some(a), _) if valid(&a.user, &a.cert) => (a.user, a.cert, true),
        (Some(_), _) => return Err(NoCert::BadSignature),
        (None, Some((ku, kc))) => (ku, kc, false),
        (None, None) => return Err(NoCert::UnknownSender),
    };
    if picked.1.expires_ms < now_ms {
        return Err(NoCert::Expired);
    }
    Ok(picked)
}

/// One party's links, by peer id (the server's is `SERVER_ID`): the one place links are
/// derived, opened and sealed, for nodes and the auth server alike.
#[derive(Default)]
pub struct Links(crate::HashMap<NodeId, Link>);

impl Links {
    /// The link to `peer`, derived afresh when new or when the peer's key changed.
    pub fn to(&mut self, me: &Identity, my_id: NodeId, peer: NodeId, peer_dh: Key) -> &mut Link {
        let link = self
            .0
            .entry(peer)
            .or_insert_with(|| Link::new(me, my_id, peer, peer_dh));
        if link.peer_dh != peer_dh {
            *link = Link::new(me, my_id, peer, peer_dh);
        }
        link
    }

    /// Authenticates a datagram from `peer`, whose certified key is `peer_dh`. A link derived
    /// for it is kept only if the datagram authenticates (a forgery changes no state).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        me: &Identity,
        my_id: NodeId,
        peer: NodeId,
        peer_dh: Key,
        epoch: u32,
        counter: u64,
        sealed: &[u8],
    ) -> Result<Vec<u8>, Refused> {
        let mut derived = if self.0.get(&peer).is_some_and(|l| l.peer_dh == peer_dh) {
            None
        } else {
            Some(Link::new(me, my_id, peer, peer_dh))
        };
        let link = match derived.as_mut() {
            Some(l) => l,
            None => self.0.get_mut(&peer).ok_or(Refused::Unauthentic)?,
        };
        if link.is_replay(epoch, counter) {
            return Err(Refused::Replayed);
        }
        let payload = link
            .open(peer, epoch, counter, sealed)
            .ok_or(Refused::Unauthentic)?;
        // The peer sealed to our key: it has our certificate.
        link.peer_has_cert = true;
        if let Some(l) = derived {
            self.0.insert(peer, l);
        }
        Ok(payload)
    }

    /// Drops the link to `peer` (its replay window with it): for a peer that is now
    /// another process under the same identity, counting from its own epoch.
    pub fn forget(&mut self, peer: NodeId) {
        self.0.remove(&peer);
    }

    /// The link to `peer`, if any.
    pub fn get(&self, peer: NodeId) -> Option<&Link> {
        self.0.get(&peer)
    }

    /// The link to `peer`, if any, to seal with.
    pub fn get_mut(&mut self, peer: NodeId) -> Option<&mut Link> {
        self.0.get_mut(&peer)
    }

    /// After our certificate changed: attach it again until each peer answers.
    pub fn resend_certs(&mut self) {
        for link in self.0.values_mut() {
            link.peer_has_cert = false;
        }
    }
}

struct SeededRandom(ChaCha20Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

/// Snow's default primitives with randomness from a seed we control.
struct SeededResolver([u8; 32]);

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom(ChaCha20Rng::from_seed(self.0))))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

fn builder(seed: [u8; 32]) -> Result<snow::Builder<'static>, snow::Error> {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse()?;
    Ok(snow::Builder::with_resolver(
        params,
        Box::new(SeededResolver(seed)),
    ))
}

/// The node's side of NK: returns the handshake state after writing message 1 around
/// `payload`, and the message.
pub fn nk_initiate(
    server_dh: &Key,
    seed: [u8; 32],
    payload: &[u8],
) -> Result<(snow::HandshakeState, Vec<u8>), snow::Error> {
    let mut hs = builder(seed)?
        .remote_public_key(server_dh)?
        .build_initiator()?;
    let mut buf = vec![0u8; payload.len() + 64];
    let n = hs.write_message(payload, &mut buf)?;
    buf.truncate(n);
    Ok((hs, buf))
}

/// The node reads the server's message 2; returns its payload.
pub fn nk_finish(hs: &mut snow::HandshakeState, msg: &[u8]) -> Result<Vec<u8>, snow::Error> {
    let mut buf = vec![0u8; msg.len()];
    let n = hs.read_message(msg, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// The server's side of NK: reads message 1 and returns its payload and the state that
/// writes the answer.
pub fn nk_respond(
    server_dh_sk: &[u8; 32],
    seed: [u8; 32],
    msg: &[u8],
) -> Result<(snow::HandshakeState, Vec<u8>), snow::Error> {
    let mut hs = builder(seed)?
        .local_private_key(server_dh_sk)?
        .build_responder()?;
    let mut buf = vec![0u8; msg.len()];
    let n = hs.read_message(msg, &mut buf)?;
    buf.truncate(n);
    Ok((hs, buf))
}

/// The server writes message 2 around `payload`.
pub fn nk_answer(hs: &mut snow::HandshakeState, payload: &[u8]) -> Result<Vec<u8>, snow::Error> {
    let mut buf = vec![0u8; payload.len() + 64];
    let n = hs.write_message(payload, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// A 32-byte seed drawn from `rng`.
pub fn seed_from(rng: &mut impl RngCore) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

/// A cryptographic RNG from a 32-byte seed.
pub fn crypto_rng(seed: [u8; 32]) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(seed)
}

#[cfg(test)]
mod tests;
