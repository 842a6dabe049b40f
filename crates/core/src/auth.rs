//! The auth server: admits people and hands newcomers to members for bootstrapping.
//!
//! - signup creates an account with the next node id (ids are never reused); a taken username
//!   is refused. signin checks the password; the same user always gets the same node id.
//! - A member is *live* while it keeps polling (`Fetch`) within the lease; the cap counts live
//!   members plus queued newcomers.
//! - With nobody live, an admitted node is told it is `first`. Otherwise it is queued; members'
//!   polls receive queued newcomers, and a newcomer still waiting after `reoffer_after` is
//!   offered again. A newcomer leaves the queue when it starts polling itself.
//! - Retried requests (same source and request id) get the cached answer, so a lost reply
//!   never turns a successful signup into "username taken".
//! - Security (`docs/SECURITY.md`): the server has long-term keys (persisted as a record).
//!   A key request gets the X25519 key and a cookie bound to the sender's address; signup and
//!   signin arrive inside Noise NK with that cookie; admission returns a signed certificate.
//!   Failed attempts are throttled per account and per address, before any password hashing.
//!   Answers are never larger than the request they answer (no amplification). Members poll
//!   over an authenticated link and get renewed certificates at half-life.

use crate::config::AuthConfig;
use crate::io::{Event, Output, Record, Stats};
use crate::secure::{self, Identity, Links, SERVER_ID};
use p2pchat_proto::wire::{
    decode_auth_request, encode_envelope, to_payload, valid_username, Cert, Envelope, Key,
    SenderCert, MAX_PASSWORD, MIN_AUTH_HELLO, MIN_KEY_REQUEST,
};
use p2pchat_proto::{
    decode, decode_envelope, encode, Admission, AuthError, AuthReply, AuthRequest, Message, NodeId,
    PeerInfo,
};
use rand_chacha::ChaCha20Rng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How passwords are stored and checked. The runtime plugs in argon2id; tests and the
/// simulator use [`InsecurePlainCredentials`].
pub trait Credentials: Send {
    /// A verifier string for a new password (e.g. an argon2id PHC string).
    fn hash(&mut self, password: &str) -> String;
    /// Whether `password` matches the stored verifier.
    fn verify(&self, password: &str, stored: &str) -> bool;
}

/// Stores the password itself: for tests and the simulator only, never for real data.
#[derive(Debug, Default, Clone)]
pub struct InsecurePlainCredentials;

impl Credentials for InsecurePlainCredentials {
    fn hash(&mut self, password: &str) -> String {
        format!("plain${password}")
    }
    fn verify(&self, password: &str, stored: &str) -> bool {
        stored.strip_prefix("plain$") == Some(password)
    }
}

struct Account {
    node_id: NodeId,
    hash: String,
}

struct Live {
    last_poll: Duration,
    /// Where its polls come from (answers `Lookup`).
    addr: SocketAddr,
}

struct Waiting {
    info: PeerInfo,
    queued_at: Duration,
    offered_at: Option<Duration>,
}

/// Failed attempts of one account or one address.
#[derive(Default, Clone, Copy)]
struct Failures {
    count: u32,
    window_start: Duration,
    locked_until: Duration,
    signups: u32,
}

/// The auth server state machine.
pub struct AuthServer {
    cfg: AuthConfig,
    creds: Box<dyn Credentials>,
    accounts: HashMap<String, Account>,
    ids: HashSet<NodeId>,
    next_id: u32,
    live: HashMap<NodeId, Live>,
    queue: VecDeque<Waiting>,
    replies: HashMap<(SocketAddr, u64), (Duration, Result<Admission, AuthError>)>,
    out: VecDeque<Output>,
    stats: Stats,
    /// When the first datagram arrived: after a restart, members need one lease to poll
    /// again before "nobody is live" can be believed.
    started: Option<Duration>,
    last_expiry: Duration,

    crng: ChaCha20Rng,
    ident: Identity,
    epoch: u32,
    wall_ms: u64,
    /// Keys the address cookies; new on every boot.
    cookie_secret: [u8; 32],
    /// Answers by the initiator's ephemeral key: a retried or replayed hello gets the same
    /// bytes and changes nothing.
    answers: HashMap<Key, (Duration, Vec<u8>)>,
    links: Links,
    /// The newest certificate seen or issued per member.
    certs: HashMap<NodeId, (String, Cert)>,
    account_failures: HashMap<String, Failures>,
    source_failures: HashMap<IpAddr, Failures>,
}

/// Most entries in each attacker-growable table (answers, failures, reply cache).
const TABLE_LIMIT: usize = 65_536;

impl AuthServer {
    /// A server restored from its records (empty for a fresh one). `crypto_seed` comes from
    /// the OS in the runtime; `wall_ms` is Unix time in milliseconds at `now == 0`.
    pub fn new(
        cfg: AuthConfig,
        creds: Box<dyn Credentials>,
        records: &[Record],
        crypto_seed: [u8; 32],
        wall_ms: u64,
    ) -> Self {
        let mut crng = secure::crypto_rng(crypto_seed);
        let cookie_secret = secure::seed_from(&mut crng);
        let mut server = AuthServer {
            cfg,
            creds,
            accounts: HashMap::new(),
            ids: HashSet::new(),
            next_id: 1,
            live: HashMap::new(),
            queue: VecDeque::new(),
            replies: HashMap::new(),
            out: VecDeque::new(),
            stats: Stats::default(),
            started: None,
            last_expiry: Duration::ZERO,
            ident: Identity::from_secrets([0; 32], [0; 32]),
            crng,
            epoch: 0,
            wall_ms,
            cookie_secret,
            answers: HashMap::new(),
            links: Links::default(),
            certs: HashMap::new(),
            account_failures: HashMap::new(),
            source_failures: HashMap::new(),
        };
        let mut have_keys = false;
        for record in records {
            match record {
                Record::User {
                    user,
                    node_id,
                    password_hash,
                } => {
                    server.next_id = server.next_id.max(node_id.0.saturating_add(1));
                    server.ids.insert(*node_id);
                    server.accounts.insert(
                        user.clone(),
                        Account {
                            node_id: *node_id,
                            hash: password_hash.clone(),
                        },
                    );
                }
                Record::Keys { sign_sk, dh_sk } => {
                    server.ident = Identity::from_secrets(*sign_sk, *dh_sk);
                    have_keys = true;
                }
                Record::Boot { epoch } => server.epoch = server.epoch.max(*epoch),
                _ => {}
            }
        }
        if !have_keys {
            server.ident = Identity::generate(&mut server.crng);
            let (sign_sk, dh_sk) = server.ident.secrets();
            server
                .out
                .push_back(Output::Persist(Record::Keys { sign_sk, dh_sk }));
        }
        server.epoch = server.epoch.saturating_add(1);
        server.out.push_back(Output::Persist(Record::Boot {
            epoch: server.epoch,
        }));
        server
    }

    /// The server's X25519 public key: what nodes pin (`--auth-key`), printed as hex.
    pub fn key(&self) -> Key {
        self.ident.dh_pk
    }

    /// The printable form of [`AuthServer::key`].
    pub fn fingerprint(&self) -> String {
        secure::fingerprint(&self.ident.dh_pk)
    }

    /// Number of registered users.
    pub fn user_count(&self) -> usize {
        self.accounts.len()
    }

    /// Members holding a valid lease at `now`.
    pub fn live_count(&self, now: Duration) -> usize {
        self.live
            .values()
            .filter(|l| now.saturating_sub(l.last_poll) < self.cfg.lease)
            .count()
    }

    /// Newcomers waiting to be bootstrapped.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Traffic and fault counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The next output to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Feeds one received datagram. Anything malformed, unauthenticated or replayed is
    /// counted and dropped; no answer is ever larger than the datagram it answers.
    pub fn handle_datagram(&mut self, now: Duration, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        self.started.get_or_insert(now);
        let env = match decode_envelope(bytes) {
            Ok(e) => e,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        self.expire(now);
        match env {
            Envelope::KeyRequest { .. } if bytes.len() >= MIN_KEY_REQUEST => {
                let cookie = secure::cookie(&self.cookie_secret, &from, self.bucket(now));
                let reply = Envelope::KeyReply {
                    dh_pk: self.ident.dh_pk,
                    sign_pk: self.ident.sign_pk,
                    cookie,
                };
                if let Ok(out) = encode_envelope(&reply) {
                    self.send_raw(from, out, bytes.len());
                }
            }
            Envelope::AuthHello { noise } if bytes.len() >= MIN_AUTH_HELLO => {
                self.auth_hello(now, from, noise, bytes.len());
            }
            Envelope::Link {
                from: id,
                epoch,
                counter,
                cert,
                sealed,
            } => {
                let Some(payload) = self.open_link(now, id, epoch, counter, cert, sealed) else {
                    return;
                };
                match decode(&payload) {
                    Ok(Message::Fetch { node_id }) if node_id == id => {
                        self.fetch(now, from, node_id)
                    }
                    Ok(Message::Fetch { .. }) => self.stats.impersonation += 1,
                    Ok(Message::Lookup { user }) => self.lookup(now, from, id, &user),
                    Ok(_) => self.stats.rejected += 1,
                    Err(_) => self.stats.malformed += 1,
                }
            }
            _ => self.stats.unauthenticated += 1,
        }
    }

    fn wall(&self, now: Duration) -> u64 {
        self.wall_ms.saturating_add(now.as_millis() as u64)
    }

    /// Cookies are valid for the current and the previous 30-second bucket.
    fn bucket(&self, now: Duration) -> u64 {
        now.as_secs() / 30
    }

    /// Sends a datagram that answers an unauthenticated one of `request_len` bytes.
    fn send_raw(&mut self, to: SocketAddr, bytes: Vec<u8>, request_len: usize) {
        if bytes.len() > request_len {
            debug_assert!(false, "an answer must never be larger than its request");
            return;
        }
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        self.out.push_back(Output::Send { to, bytes });
    }

    fn auth_hello(&mut self, now: Duration, from: SocketAddr, noise: &[u8], len: usize) {
        let Some(e) = noise.get(..32).and_then(|e| <Key>::try_from(e).ok()) else {
            self.stats.malformed += 1;
            return;
        };
        if let Some((_, answer)) = self.answers.get(&e) {
            let answer = answer.clone();
            self.stats.replayed += 1;
            self.send_raw(from, answer, len);
            return;
        }
        let seed = secure::seed_from(&mut self.crng);
        let (_, dh_sk) = self.ident.secrets();
        let Ok((mut hs, payload)) = secure::nk_respond(&dh_sk, seed, noise) else {
            self.stats.unauthenticated += 1;
            return;
        };
        let Ok(req) = decode_auth_request(&payload) else {
            self.stats.malformed += 1;
            return;
        };
        let b = self.bucket(now);
        let cookie_ok = [b, b.saturating_sub(1)]
            .iter()
            .any(|&bk| secure::cookie(&self.cookie_secret, &from, bk) == req.cookie);
        let result = if cookie_ok {
            self.admit(now, from, &req)
        } else {
            Err(AuthError::StaleCookie)
        };
        let reply = AuthReply {
            req: req.req,
            result,
        };
        let answer = to_payload(&reply)
            .ok()
            .and_then(|p| secure::nk_answer(&mut hs, &p).ok())
            .and_then(|m2| {
                let mut to = [0u8; 8];
                to.copy_from_slice(&e[..8]);
                encode_envelope(&Envelope::AuthAnswer { to, noise: &m2 }).ok()
            });
        let Some(answer) = answer else { return };
        if self.answers.len() < TABLE_LIMIT {
            self.answers.insert(e, (now, answer.clone()));
        }
        self.send_raw(from, answer, len);
    }

    /// Authenticates a member's link datagram (its certificate must be one we issued).
    fn open_link(
        &mut self,
        now: Duration,
        id: NodeId,
        epoch: u32,
        counter: u64,
        attached: Option<SenderCert>,
        sealed: &[u8],
    ) -> Option<Vec<u8>> {
        let known = self.certs.get(&id).cloned();
        let server_vk = secure::verifying_key(&self.ident.sign_pk)?;
        let accounts = &self.accounts;
        let ident = &self.ident;
        let valid = |user: &str, cert: &Cert| {
            accounts.get(user).map(|acc| acc.node_id) == Some(id)
                && ident.check_cert(&server_vk, id, user, cert)
        };
        let (user, cert, _) = secure::pick_cert(attached, known, self.wall(now), valid)
            .map_err(|r| r.count(&mut self.stats))
            .ok()?;
        let payload = self
            .links
            .open(
                &self.ident,
                SERVER_ID,
                id,
                cert.dh_pk,
                epoch,
                counter,
                sealed,
            )
            .map_err(|r| r.count(&mut self.stats))
            .ok()?;
        let newer = self
            .certs
            .get(&id)
            .is_none_or(|(_, c)| c.expires_ms <= cert.expires_ms);
        if newer {
            self.certs.insert(id, (user, cert));
        }
        Some(payload)
    }

    /// Seals a message to a member over its link.
    fn send(&mut self, to: SocketAddr, id: NodeId, msg: &Message) {
        let Ok(payload) = encode(msg) else {
            debug_assert!(false, "the server built an unencodable message");
            return;
        };
        let Some(link) = self.links.get_mut(id) else {
            return;
        };
        if let Some(bytes) = link.seal(SERVER_ID, self.epoch, &payload, None) {
            self.stats.datagrams_out += 1;
            self.stats.bytes_out += bytes.len() as u64;
            self.out.push_back(Output::Send { to, bytes });
        }
    }

    fn expire(&mut self, now: Duration) {
        // Soft state is swept at most once a second, not on every datagram.
        if now.saturating_sub(self.last_expiry) < Duration::from_secs(1) {
            return;
        }
        self.last_expiry = now;
        let lease = self.cfg.lease;
        self.live
            .retain(|_, l| now.saturating_sub(l.last_poll) < lease * 4);
        let ttl = self.cfg.pending_ttl;
        self.queue.retain(|w| now.saturating_sub(w.queued_at) < ttl);
        let cache_ttl = self.cfg.reply_cache_ttl;
        self.replies
            .retain(|_, (at, _)| now.saturating_sub(*at) < cache_ttl);
        self.answers
            .retain(|_, (at, _)| now.saturating_sub(*at) < cache_ttl);
        let keep = self.cfg.lock_max.max(self.cfg.source_window) * 3;
        let fresh =
            |f: &mut Failures| now.saturating_sub(f.window_start) < keep || f.locked_until > now;
        self.account_failures.retain(|_, f| fresh(f));
        self.source_failures.retain(|_, f| fresh(f));
    }

    /// Seconds left on a lock of this account or address, if any.
    fn throttled(&self, now: Duration, ip: IpAddr, user: &str) -> Option<u32> {
        let until = [
            self.account_failures.get(user).map(|f| f.locked_until),
            self.source_failures.get(&ip).map(|f| f.locked_until),
        ]
        .into_iter()
        .flatten()
        .max()?;
        let left = until.checked_sub(now).filter(|d| !d.is_zero())?;
        Some(left.as_secs_f64().ceil().max(1.0) as u32)
    }

    fn record_failure(&mut self, now: Duration, ip: IpAddr, user: &str) {
        let cfg = self.cfg.clone();
        if self.account_failures.len() < TABLE_LIMIT || self.account_failures.contains_key(user) {
            let f = self.account_failures.entry(user.to_string()).or_default();
            if now.saturating_sub(f.window_start) > cfg.lock_max * 3 {
                *f = Failures {
                    window_start: now,
                    ..Failures::default()
                };
            }
            f.count += 1;
            if f.count > cfg.free_failures {
                let doublings = (f.count - cfg.free_failures - 1).min(16);
                let lock = cfg
                    .lock_base
                    .saturating_mul(1 << doublings)
                    .min(cfg.lock_max);
                f.locked_until = now + lock;
            }
        }
        let src = self.source_entry(now, ip);
        if let Some(f) = src {
            f.count += 1;
            if f.count >= cfg.source_failures {
                f.locked_until = now + cfg.source_window;
            }
        }
    }

    fn source_entry(&mut self, now: Duration, ip: IpAddr) -> Option<&mut Failures> {
        if self.source_failures.len() >= TABLE_LIMIT && !self.source_failures.contains_key(&ip) {
            return None;
        }
        let window = self.cfg.source_window;
        let f = self.source_failures.entry(ip).or_default();
        if now.saturating_sub(f.window_start) > window {
            let locked_until = f.locked_until;
            *f = Failures {
                window_start: now,
                locked_until,
                ..Failures::default()
            };
        }
        Some(f)
    }

    fn admit(
        &mut self,
        now: Duration,
        from: SocketAddr,
        req: &AuthRequest,
    ) -> Result<Admission, AuthError> {
        if let Some((_, cached)) = self.replies.get(&(from, req.req)) {
            return cached.clone();
        }
        if let Some(secs) = self.throttled(now, from.ip(), &req.user) {
            self.stats.throttled += 1;
            return Err(AuthError::Throttled(secs));
        }
        if req.signup && self.cfg.source_signups > 0 {
            let limit = self.cfg.source_signups;
            let window = self.cfg.source_window;
            if let Some(f) = self.source_entry(now, from.ip()) {
                if f.signups >= limit {
                    let left = (f.window_start + window).saturating_sub(now);
                    self.stats.throttled += 1;
                    return Err(AuthError::RateLimited(left.as_secs().max(1) as u32));
                }
                f.signups += 1;
            }
        }
        let result = self.decide(now, from, req);
        match &result {
            Err(AuthError::BadCredentials) => self.record_failure(now, from.ip(), &req.user),
            Ok(_) => {
                self.account_failures.remove(&req.user);
            }
            Err(_) => {}
        }
        if self.replies.len() < TABLE_LIMIT {
            self.replies.insert((from, req.req), (now, result.clone()));
        }
        result
    }

    fn issue(
        &mut self,
        now: Duration,
        node_id: NodeId,
        user: &str,
        sign_pk: Key,
        dh_pk: Key,
    ) -> Cert {
        let expires = self.wall(now) + self.cfg.cert_lifetime.as_millis() as u64;
        let cert = self
            .ident
            .issue_cert(node_id, user, sign_pk, dh_pk, expires);
        self.certs.insert(node_id, (user.to_string(), cert.clone()));
        cert
    }

    fn decide(
        &mut self,
        now: Duration,
        from: SocketAddr,
        req: &AuthRequest,
    ) -> Result<Admission, AuthError> {
        let (user, password, signup) = (req.user.as_str(), req.password.as_str(), req.signup);
        if !valid_username(user) {
            return Err(AuthError::InvalidUsername);
        }
        if password.is_empty() || password.len() > MAX_PASSWORD {
            return Err(AuthError::InvalidPassword);
        }
        // A full queue is checked before an account is made: a refused signup must be able
        // to ask again. (Someone is live when the queue is full, so this is never `first`.)
        let queued = |s: &Self| {
            s.accounts
                .get(user)
                .is_some_and(|a| s.queue.iter().any(|w| w.info.node_id == a.node_id))
        };
        if self.queue.len() >= self.cfg.queue_limit && !queued(self) {
            return Err(AuthError::QueueFull);
        }
        let node_id = if signup {
            if self.accounts.contains_key(user) {
                return Err(AuthError::UsernameTaken);
            }
            self.check_capacity(now, None)?;
            let node_id = NodeId(self.next_id);
            self.next_id = self.next_id.saturating_add(1);
            self.ids.insert(node_id);
            let password_hash = self.creds.hash(password);
            self.out.push_back(Output::Persist(Record::User {
                user: user.to_string(),
                node_id,
                password_hash: password_hash.clone(),
            }));
            self.accounts.insert(
                user.to_string(),
                Account {
                    node_id,
                    hash: password_hash,
                },
            );
            node_id
        } else {
            let account = self.accounts.get(user).ok_or(AuthError::BadCredentials)?;
            if !self.creds.verify(password, &account.hash) {
                return Err(AuthError::BadCredentials);
            }
            let node_id = account.node_id;
            self.check_capacity(now, Some(node_id))?;
            node_id
        };
        // "Nobody else is here" must be sure: a member whose polls were lost for one lease is
        // still there, and a second network started beside it would never merge. So `first`
        // needs silence for two leases (the cap still counts one).
        let others_live = self
            .live
            .iter()
            .filter(|(id, l)| {
                **id != node_id && now.saturating_sub(l.last_poll) < self.cfg.lease * 2
            })
            .count();
        // Right after a restart of a server that has accounts, the members have not polled
        // yet: queue the newcomer rather than let it start a second network. If nobody polls,
        // its bootstrap timeout makes it ask again, and by then it is first.
        let warming_up = self.accounts.len() > 1
            && self
                .started
                .is_some_and(|s| now.saturating_sub(s) < self.cfg.lease);
        let first = others_live == 0 && !warming_up;
        let cert = self.issue(now, node_id, user, req.sign_pk, req.dh_pk);
        let info = PeerInfo {
            node_id,
            user: user.to_string(),
            addr: from,
            cert: cert.clone(),
        };
        if first {
            self.live.insert(
                node_id,
                Live {
                    last_poll: now,
                    addr: from,
                },
            );
            self.queue.retain(|w| w.info.node_id != node_id);
        } else if let Some(w) = self.queue.iter_mut().find(|w| w.info.node_id == node_id) {
            w.info = info;
            w.queued_at = now;
            w.offered_at = None;
        } else {
            if self.queue.len() >= self.cfg.queue_limit {
                return Err(AuthError::QueueFull);
            }
            self.queue.push_back(Waiting {
                info,
                queued_at: now,
                offered_at: None,
            });
        }
        self.out.push_back(Output::Event(Event::Admitted {
            user: user.to_string(),
            node_id,
            addr: from,
            first,
        }));
        Ok(Admission {
            node_id,
            first,
            observed: from,
            cert,
            server_sign_pk: self.ident.sign_pk,
        })
    }

    fn check_capacity(&self, now: Duration, me: Option<NodeId>) -> Result<(), AuthError> {
        let live = self
            .live
            .iter()
            .filter(|(id, l)| Some(**id) != me && now.saturating_sub(l.last_poll) < self.cfg.lease)
            .count();
        let waiting = self
            .queue
            .iter()
            .filter(|w| Some(w.info.node_id) != me && !self.live.contains_key(&w.info.node_id))
            .count();
        if live + waiting >= self.cfg.max_nodes {
            Err(AuthError::NetworkFull)
        } else {
            Ok(())
        }
    }

    /// Answers a member's `Lookup` with the user's record if it is online (holds a lease).
    fn lookup(&mut self, now: Duration, from: SocketAddr, asker: NodeId, user: &str) {
        if !self.live.contains_key(&asker) {
            self.stats.rejected += 1;
            return;
        }
        let peers: Vec<PeerInfo> = self
            .accounts
            .get(user)
            .and_then(|a| {
                let live = self
                    .live
                    .get(&a.node_id)
                    .filter(|l| now.saturating_sub(l.last_poll) < self.cfg.lease)?;
                let (user, cert) = self.certs.get(&a.node_id)?;
                Some(PeerInfo {
                    node_id: a.node_id,
                    user: user.clone(),
                    addr: live.addr,
                    cert: cert.clone(),
                })
            })
            .into_iter()
            .collect();
        self.send(from, asker, &Message::Certs { peers });
    }

    fn fetch(&mut self, now: Duration, from: SocketAddr, node_id: NodeId) {
        if !self.ids.contains(&node_id) {
            self.stats.rejected += 1;
            return;
        }
        self.live.insert(
            node_id,
            Live {
                last_poll: now,
                addr: from,
            },
        );
        // A newcomer that polls is in the network: it no longer waits.
        self.queue.retain(|w| w.info.node_id != node_id);
        let mut newcomers = Vec::new();
        for w in self.queue.iter_mut() {
            if newcomers.len() >= self.cfg.fetch_batch {
                break;
            }
            let due = w
                .offered_at
                .is_none_or(|at| now.saturating_sub(at) >= self.cfg.reoffer_after);
            if due {
                w.offered_at = Some(now);
                newcomers.push(w.info.clone());
            }
        }
        // Renew a certificate past its half-life.
        let half = self.cfg.cert_lifetime.as_millis() as u64 / 2;
        let wall = self.wall(now);
        let renewed = match self.certs.get(&node_id).cloned() {
            Some((user, c)) if c.expires_ms.saturating_sub(wall) < half => {
                Some(self.issue(now, node_id, &user, c.sign_pk, c.dh_pk))
            }
            _ => None,
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::Link;

    const WALL: u64 = 1_700_000_000_000;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn server_with(cfg: AuthConfig, records: &[Record]) -> AuthServer {
        let mut s = AuthServer::new(
            cfg,
            Box::new(InsecurePlainCredentials),
            records,
            [5; 32],
            WALL,
        );
        while s.poll_output().is_some() {}
        s
    }

    fn server(max_nodes: usize) -> AuthServer {
        server_with(
            AuthConfig {
                max_nodes,
                ..AuthConfig::default()
            },
            &[],
        )
    }

    fn client_ident(port: u16) -> Identity {
        Identity::generate(&mut secure::crypto_rng([(port % 251) as u8; 32]))
    }

    fn sends(s: &mut AuthServer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(o) = s.poll_output() {
            if let Output::Send { bytes, .. } = o {
                out.push(bytes);
            }
        }
        out
    }

    fn seed(port: u16, req: u64) -> [u8; 32] {
        let mut s = [0u8; 32];
        s[..2].copy_from_slice(&port.to_le_bytes());
        s[2..10].copy_from_slice(&req.to_le_bytes());
        s
    }

    /// A whole signup/signin as a node does it: key request, then Noise NK.
    fn auth(
        s: &mut AuthServer,
        now: Duration,
        port: u16,
        req: u64,
        user: &str,
        pw: &str,
        up: bool,
    ) -> Result<Admission, AuthError> {
        let kr = encode_envelope(&Envelope::KeyRequest {
            pad: &[0; MIN_KEY_REQUEST],
        })
        .expect("fits");
        s.handle_datagram(now, addr(port), &kr);
        let replies = sends(s);
        let Some(Ok(Envelope::KeyReply { dh_pk, cookie, .. })) =
            replies.first().map(|b| decode_envelope(b))
        else {
            panic!("no key reply")
        };
        assert!(replies[0].len() <= kr.len(), "no amplification");
        let me = client_ident(port);
        let request = AuthRequest {
            req,
            signup: up,
            user: user.into(),
            password: pw.into(),
            sign_pk: me.sign_pk,
            dh_pk: me.dh_pk,
            cookie,
            pad: vec![0; MIN_AUTH_HELLO],
        };
        let (mut hs, m1) = secure::nk_initiate(
            &dh_pk,
            seed(port, req),
            &to_payload(&request).expect("fits"),
        )
        .expect("nk");
        let hello = encode_envelope(&Envelope::AuthHello { noise: &m1 }).expect("fits");
        s.handle_datagram(now, addr(port), &hello);
        let replies = sends(s);
        let Some(Ok(Envelope::AuthAnswer { noise, .. })) =
            replies.first().map(|b| decode_envelope(b))
        else {
            panic!("no answer")
        };
        assert!(replies[0].len() <= hello.len(), "no amplification");
        let payload = secure::nk_finish(&mut hs, noise).expect("authentic answer");
        let reply: AuthReply = p2pchat_proto::wire::from_payload(&payload).expect("reply");
        assert_eq!(reply.req, req);
        reply.result
    }

    /// A member's poll over its link; returns the decrypted answer.
    fn fetch(
        s: &mut AuthServer,
        now: Duration,
        port: u16,
        user: &str,
        adm: &Admission,
    ) -> Vec<Message> {
        let me = client_ident(port);
        let mut link = Link::new(&me, adm.node_id, SERVER_ID, s.key());
        let epoch = (now.as_millis() as u32).wrapping_add(1);
        let dg = link
            .seal(
                adm.node_id,
                epoch,
                &encode(&Message::Fetch {
                    node_id: adm.node_id,
                })
                .expect("fits"),
                Some(SenderCert {
                    user: user.into(),
                    cert: adm.cert.clone(),
                }),
            )
            .expect("seal");
        s.handle_datagram(now, addr(port), &dg);
        sends(s)
            .iter()
            .map(|b| match decode_envelope(b) {
                Ok(Envelope::Link {
                    from,
                    epoch,
                    counter,
                    sealed,
                    ..
                }) => decode(&link.open(from, epoch, counter, sealed).expect("authentic"))
                    .expect("valid"),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn signup_then_signin_gives_the_same_id_and_wrong_password_is_refused() {
        let mut s = server(10);
        let t = Duration::ZERO;
        let a = auth(&mut s, t, 5000, 1, "alice", "pw", true).expect("signup");
        assert!(a.first);
        let vk = secure::verifying_key(&a.server_sign_pk).expect("key");
        assert!(secure::cert_ok(&vk, a.node_id, "alice", &a.cert));
        assert_eq!(a.cert.dh_pk, client_ident(5000).dh_pk);
        assert_eq!(
            auth(&mut s, t, 5000, 2, "alice", "pw2", true),
            Err(AuthError::UsernameTaken)
        );
        assert_eq!(
            auth(&mut s, t, 5000, 3, "alice", "bad", false),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            auth(&mut s, t, 5000, 4, "nobody", "pw", false),
            Err(AuthError::BadCredentials)
        );
        let again = auth(&mut s, t, 5001, 5, "alice", "pw", false).expect("signin");
        assert_eq!(again.node_id, a.node_id);
        assert_eq!(
            auth(&mut s, t, 5000, 6, "bad name", "pw", true),
            Err(AuthError::InvalidUsername)
        );
    }

    #[test]
    fn a_retried_signup_gets_the_cached_answer() {
        let mut s = server(10);
        let a = auth(&mut s, Duration::ZERO, 5000, 7, "alice", "pw", true).expect("signup");
        let b = auth(
            &mut s,
            Duration::from_millis(300),
            5000,
            7,
            "alice",
            "pw",
            true,
        )
        .expect("retry");
        assert_eq!(a, b);
    }

    #[test]
    fn repeated_wrong_passwords_are_throttled_while_others_get_in() {
        let mut s = server(10);
        let t = Duration::ZERO;
        auth(&mut s, t, 5000, 1, "alice", "pw", true).expect("signup");
        auth(&mut s, t, 5001, 1, "bob", "pw", true).expect("signup");
        for req in 10..15 {
            assert_eq!(
                auth(&mut s, t, 5002, req, "alice", "guess", false),
                Err(AuthError::BadCredentials)
            );
        }
        assert_eq!(
            auth(&mut s, t, 5002, 20, "alice", "guess", false),
            Err(AuthError::BadCredentials)
        );
        // Locked now, even with the right password.
        assert!(matches!(
            auth(&mut s, t, 5002, 21, "alice", "pw", false),
            Err(AuthError::Throttled(n)) if n >= 1
        ));
        // Bob, from the same address, is not affected.
        assert!(auth(&mut s, t, 5002, 22, "bob", "pw", false).is_ok());
        // Once the lock has passed, the right password works again.
        let later = Duration::from_secs(10);
        assert!(auth(&mut s, later, 5000, 23, "alice", "pw", false).is_ok());
        assert!(s.stats().throttled >= 1);
    }

    #[test]
    fn stale_cookies_replays_and_short_requests_change_nothing() {
        let mut s = server(10);
        // A key request shorter than the minimum gets no answer at all.
        let short = encode_envelope(&Envelope::KeyRequest { pad: &[0; 8] }).expect("fits");
        s.handle_datagram(Duration::ZERO, addr(5000), &short);
        assert!(sends(&mut s).is_empty());
        // A hello replayed a minute later, from another address, with a stale cookie.
        let kr = encode_envelope(&Envelope::KeyRequest {
            pad: &[0; MIN_KEY_REQUEST],
        })
        .expect("fits");
        s.handle_datagram(Duration::ZERO, addr(5000), &kr);
        let cookie = match decode_envelope(&sends(&mut s)[0]) {
            Ok(Envelope::KeyReply { cookie, .. }) => cookie,
            other => panic!("{other:?}"),
        };
        let me = client_ident(5000);
        let request = AuthRequest {
            req: 1,
            signup: true,
            user: "eve".into(),
            password: "pw".into(),
            sign_pk: me.sign_pk,
            dh_pk: me.dh_pk,
            cookie,
            pad: vec![0; MIN_AUTH_HELLO],
        };
        let (_, m1) = secure::nk_initiate(&s.key(), [1; 32], &to_payload(&request).expect("fits"))
            .expect("nk");
        let hello = encode_envelope(&Envelope::AuthHello { noise: &m1 }).expect("fits");
        s.handle_datagram(Duration::from_secs(120), addr(6000), &hello);
        assert_eq!(
            sends(&mut s).len(),
            1,
            "answered with StaleCookie inside Noise"
        );
        assert_eq!(s.user_count(), 0, "no account was created");
        // The same bytes again: the cached answer, still no account.
        s.handle_datagram(Duration::from_secs(121), addr(6000), &hello);
        assert_eq!(sends(&mut s).len(), 1);
        assert_eq!(s.user_count(), 0);
        assert_eq!(s.stats().replayed, 1);
    }

    #[test]
    fn newcomers_are_queued_handed_to_fetchers_and_reoffered() {
        let mut s = server(10);
        let t0 = Duration::ZERO;
        let a = auth(&mut s, t0, 5000, 1, "alice", "pw", true).expect("first");
        let b = auth(&mut s, t0, 5001, 1, "bob", "pw", true).expect("queued");
        assert!(!b.first);
        assert_eq!(s.queue_len(), 1);
        let got = fetch(&mut s, t0, 5000, "alice", &a);
        assert!(
            matches!(&got[..], [Message::Pending { newcomers, .. }] if newcomers.len() == 1 && newcomers[0].user == "bob")
        );
        // Not offered again right away...
        let got = fetch(&mut s, t0 + Duration::from_millis(100), 5000, "alice", &a);
        assert!(matches!(&got[..], [Message::Pending { newcomers, .. }] if newcomers.is_empty()));
        // ...but again once the re-offer delay has passed without bob polling.
        let later = t0 + Duration::from_secs(2);
        let got = fetch(&mut s, later, 5000, "alice", &a);
        assert!(matches!(&got[..], [Message::Pending { newcomers, .. }] if newcomers.len() == 1));
        // Bob polls: he is in, and leaves the queue.
        fetch(&mut s, later, 5001, "bob", &b);
        assert_eq!(s.queue_len(), 0);
        assert_eq!(s.live_count(later), 2);
        // A poll claiming bob's certificate under alice's keys is refused.
        let forged = Admission {
            cert: b.cert.clone(),
            ..a.clone()
        };
        let before = s.live_count(later);
        let me = client_ident(5000);
        let mut link = Link::new(&me, b.node_id, SERVER_ID, s.key());
        let dg = link
            .seal(
                b.node_id,
                99,
                &encode(&Message::Fetch { node_id: b.node_id }).expect("fits"),
                Some(SenderCert {
                    user: "bob".into(),
                    cert: forged.cert,
                }),
            )
            .expect("seal");
        s.handle_datagram(later, addr(5000), &dg);
        assert!(sends(&mut s).is_empty());
        assert_eq!(s.live_count(later), before);
    }

    #[test]
    fn certificates_are_renewed_at_half_life() {
        let mut s = server_with(
            AuthConfig {
                cert_lifetime: Duration::from_secs(100),
                ..AuthConfig::default()
            },
            &[],
        );
        let a = auth(&mut s, Duration::ZERO, 5000, 1, "alice", "pw", true).expect("signup");
        let got = fetch(&mut s, Duration::from_secs(10), 5000, "alice", &a);
        assert!(matches!(&got[..], [Message::Pending { renewed: None, .. }]));
        let got = fetch(&mut s, Duration::from_secs(60), 5000, "alice", &a);
        let [Message::Pending {
            renewed: Some(c), ..
        }] = &got[..]
        else {
            panic!("expected a renewal: {got:?}")
        };
        assert!(c.expires_ms > a.cert.expires_ms);
        assert_eq!(c.dh_pk, a.cert.dh_pk);
    }

    #[test]
    fn the_cap_counts_live_and_waiting_nodes() {
        let mut s = server(2);
        let t = Duration::ZERO;
        auth(&mut s, t, 5000, 1, "a", "pw", true).expect("first");
        auth(&mut s, t, 5001, 1, "b", "pw", true).expect("second");
        assert_eq!(
            auth(&mut s, t, 5002, 1, "c", "pw", true),
            Err(AuthError::NetworkFull)
        );
        // Leases run out: room again, and the lone signer is first.
        let later = Duration::from_secs(60);
        let c = auth(&mut s, later, 5002, 2, "c", "pw", true).expect("room");
        assert!(c.first);
    }

    #[test]
    fn a_full_queue_refuses_before_making_the_account_so_the_signup_can_ask_again() {
        let mut s = server_with(
            AuthConfig {
                queue_limit: 1,
                ..AuthConfig::default()
            },
            &[],
        );
        let t = Duration::ZERO;
        assert!(auth(&mut s, t, 5000, 1, "a", "pw", true).expect("a").first);
        auth(&mut s, t, 5001, 1, "b", "pw", true).expect("b waits");
        assert_eq!(
            auth(&mut s, t, 5002, 1, "c", "pw", true),
            Err(AuthError::QueueFull)
        );
        // b asking again is fine (already queued); c's name is still free once there is room.
        auth(&mut s, t, 5001, 2, "b", "pw", false).expect("b again");
        s.queue.clear();
        auth(&mut s, t, 5002, 2, "c", "pw", true).expect("c, later");
    }

    #[test]
    fn restored_server_keeps_keys_accounts_and_never_reuses_ids() {
        let mut s = AuthServer::new(
            AuthConfig::default(),
            Box::new(InsecurePlainCredentials),
            &[],
            [5; 32],
            WALL,
        );
        let mut records = Vec::new();
        while let Some(o) = s.poll_output() {
            if let Output::Persist(r) = o {
                records.push(r);
            }
        }
        s.handle_datagram(Duration::ZERO, addr(1), b"garbage");
        assert_eq!(s.stats().malformed, 1);
        auth(&mut s, Duration::ZERO, 5000, 1, "x", "p", true).expect("signup");
        records.push(Record::User {
            user: "x".into(),
            node_id: NodeId(1),
            password_hash: "plain$p".into(),
        });
        let key = s.key();
        let mut restored = AuthServer::new(
            AuthConfig::default(),
            Box::new(InsecurePlainCredentials),
            &records,
            [6; 32],
            WALL,
        );
        assert_eq!(restored.key(), key, "the key survives a restart");
        assert_eq!(restored.user_count(), 1);
        let y = auth(&mut restored, Duration::ZERO, 5003, 9, "y", "pw", true).expect("signup");
        assert_eq!(y.node_id, NodeId(2));
        assert!(auth(&mut restored, Duration::ZERO, 5004, 9, "x", "p", false).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic_and_are_never_amplified(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1300),
            kind in 0u8..6,
        ) {
            let mut s = server(10);
            let mut b = bytes;
            if b.len() >= 4 && kind < 5 {
                // A valid header and envelope tag, so the decoders behind them are reached.
                b[..4].copy_from_slice(&[b'p', b'C', 2, kind]);
            }
            s.handle_datagram(Duration::ZERO, addr(1), &b);
            while let Some(o) = s.poll_output() {
                if let Output::Send { bytes: out, .. } = o {
                    proptest::prop_assert!(out.len() <= b.len(), "{} answered with {}", b.len(), out.len());
                }
            }
            proptest::prop_assert_eq!(s.user_count(), 0);
        }
    }

    #[test]
    fn signups_over_the_rate_limit_are_told_to_wait_not_that_they_failed() {
        let mut s = server_with(
            AuthConfig {
                source_signups: 2,
                ..AuthConfig::default()
            },
            &[],
        );
        let t = Duration::from_secs(1);
        assert!(auth(&mut s, t, 5000, 1, "ann", "pw", true).is_ok());
        assert!(auth(&mut s, t, 5001, 2, "ben", "pw", true).is_ok());
        // Same address (127.0.0.1), third signup in the window.
        let refused = auth(&mut s, t, 5002, 3, "cid", "pw", true);
        let Err(e @ AuthError::RateLimited(secs)) = refused else {
            panic!("{refused:?}")
        };
        assert!((1..=60).contains(&secs), "{secs}");
        assert!(e.to_string().contains("too many signups"), "{e}");
        // Signing in is not limited; after the window, signing up works again.
        assert!(auth(&mut s, t, 5003, 4, "ann", "pw", false).is_ok());
        let later = t + AuthConfig::default().source_window + Duration::from_secs(1);
        assert!(auth(&mut s, later, 5004, 5, "cid", "pw", true).is_ok());
    }
}
