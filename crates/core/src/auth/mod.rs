//! The auth server: admits people and hands newcomers to members for bootstrapping.
//!
//! - signup creates an account and its first device with the next node id (ids are never
//!   reused); a taken username is refused. signin checks the password; a device (a data
//!   dir: its signing key) always gets the same node id, and a new device of the account gets
//!   a new one, up to `max_devices`. A revoked device is refused.
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

pub mod directory;
mod relay;
mod requests;

use crate::config::AuthConfig;
use crate::io::{Event, Output, Record, Stats};
use crate::secure::{self, Identity, Links, SERVER_ID};
use crate::HashMap;
pub use directory::{
    Account, Admitted, Ask, Counts, Decision, Device, Directory, DirectoryError, MemoryDirectory,
    Now, Seat,
};
use foldhash::HashMapExt;
use p2pchat_proto::wire::{
    decode_auth_request, encode_envelope, to_payload, valid_username, Cert, Envelope, Key,
    SenderCert, MAX_PASSWORD, MIN_AUTH_HELLO, MIN_KEY_REQUEST,
};
use p2pchat_proto::{
    decode, decode_envelope, encode, Admission, AuthError, AuthReply, AuthRequest, Message, NodeId,
};
use rand_chacha::ChaCha20Rng;
use std::collections::VecDeque;
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
    /// Accounts, leases and the queue: in memory, or shared by several servers.
    dir: Box<dyn Directory>,
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
    /// The directory failed and has not answered since.
    directory_down: bool,
    /// The account of each device, as read from the directory (a device never changes
    /// account; revocation is checked with the directory).
    owners: HashMap<NodeId, String>,
    /// `PunchAsk`s per asker in the current second.
    punches: HashMap<NodeId, (u64, u32)>,
    /// The members that polled last, newest last: a newcomer is also told to send to some
    /// of them (rendezvous), in case the member bootstrapping it cannot be reached.
    pollers: VecDeque<p2pchat_proto::PeerInfo>,
    /// Where each node was last seen, and the relay budgets (the relay of last resort).
    relay: relay::ServerRelay,
}

/// Members a newcomer is told to send to besides the one bootstrapping it.
const EXTRA_PUNCHES: usize = 2;

/// Most `PunchAsk`s one member may make in a second.
const PUNCHES_PER_SECOND: u32 = 8;

/// Most entries in each attacker-growable table (answers, failures, reply cache).
const TABLE_LIMIT: usize = 65_536;

impl AuthServer {
    /// A server restored from its records (empty for a fresh one), keeping its accounts in
    /// memory. `crypto_seed` comes from the OS in the runtime; `wall_ms` is Unix time in
    /// milliseconds at `now == 0`.
    pub fn new(
        cfg: AuthConfig,
        creds: Box<dyn Credentials>,
        records: &[Record],
        crypto_seed: [u8; 32],
        wall_ms: u64,
    ) -> Self {
        let dir = Box::new(MemoryDirectory::from_records(records));
        Self::with_directory(cfg, creds, dir, records, crypto_seed, wall_ms)
    }

    /// A server over `dir`. Its keys and boot epoch come from `records` (`Keys`, `Boot`):
    /// without keys it makes new ones and asks to persist them.
    pub fn with_directory(
        cfg: AuthConfig,
        creds: Box<dyn Credentials>,
        dir: Box<dyn Directory>,
        records: &[Record],
        crypto_seed: [u8; 32],
        wall_ms: u64,
    ) -> Self {
        let mut crng = secure::crypto_rng(crypto_seed);
        let cfg_relay = (cfg.relay_rate, cfg.relay_total);
        let cookie_secret = secure::seed_from(&mut crng);
        let mut server = AuthServer {
            cfg,
            creds,
            dir,
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
            directory_down: false,
            owners: HashMap::new(),
            punches: HashMap::new(),
            pollers: VecDeque::new(),
            relay: relay::ServerRelay::new(cfg_relay.0, cfg_relay.1),
        };
        let mut have_keys = false;
        for record in records {
            match record {
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

    /// Accounts, live members and waiting newcomers at `now` (zeros while the directory
    /// is unavailable).
    pub fn counts(&mut self, now: Duration) -> Counts {
        let at = self.at(now);
        self.dir.counts(at, &self.cfg).unwrap_or_default()
    }

    /// Number of registered users.
    pub fn user_count(&mut self) -> usize {
        self.counts(Duration::ZERO).users
    }

    /// Members holding a valid lease at `now`.
    pub fn live_count(&mut self, now: Duration) -> usize {
        self.counts(now).live
    }

    /// Newcomers waiting to be bootstrapped.
    pub fn queue_len(&mut self) -> usize {
        self.counts(Duration::ZERO).queued
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
                self.relay.saw(id, from, now);
                match decode(&payload) {
                    Ok(Message::Fetch { node_id }) if node_id == id => {
                        self.fetch(now, from, node_id)
                    }
                    Ok(Message::Fetch { .. }) => self.stats.impersonation += 1,
                    Ok(Message::Lookup { user }) => self.lookup(now, from, id, &user),
                    Ok(Message::Devices) => self.devices(now, from, id),
                    Ok(Message::Revoke { node_id }) => self.revoke(now, from, id, node_id),
                    Ok(Message::PunchAsk { node_id }) if self.cfg.rendezvous => {
                        self.punch_ask(now, from, id, node_id)
                    }
                    Ok(_) => self.stats.rejected += 1,
                    Err(_) => self.stats.malformed += 1,
                }
            }
            Envelope::Relay { to, inner } => self.handle_relay(now, from, to, inner),
            _ => self.stats.unauthenticated += 1,
        }
    }

    fn wall(&self, now: Duration) -> u64 {
        self.wall_ms.saturating_add(now.as_millis() as u64)
    }

    fn at(&self, now: Duration) -> Now {
        Now {
            mono: now,
            wall_ms: self.wall(now),
        }
    }

    /// A directory failure: the request goes unanswered (the node asks again, or asks
    /// another server); reported once per outage.
    fn directory_failed(&mut self, e: DirectoryError) {
        self.stats.rejected += 1;
        if !self.directory_down {
            self.directory_down = true;
            self.out.push_back(Output::Event(Event::Error {
                message: format!("{e}; requests go unanswered until it is back"),
                fatal: false,
            }));
        }
    }

    fn directory_ok(&mut self) {
        if self.directory_down {
            self.directory_down = false;
            self.out.push_back(Output::Event(Event::Error {
                message: "account directory available again".into(),
                fatal: false,
            }));
        }
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
            match self.admit(now, from, &req) {
                Some(r) => r,
                None => return,
            }
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
        // A device never changes account: a signed certificate's account is looked up once
        // (a forged one never reaches the directory).
        if let Some(a) = &attached {
            let signed = self.ident.check_cert(&server_vk, id, &a.user, &a.cert);
            if signed && !self.owners.contains_key(&id) {
                match self.dir.account(&a.user) {
                    Ok(Some(acc)) if self.owners.len() < TABLE_LIMIT => {
                        for d in &acc.devices {
                            self.owners.insert(d.node_id, a.user.clone());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.directory_failed(e);
                        return None;
                    }
                }
            }
        }
        let owners = &self.owners;
        let ident = &self.ident;
        let valid = |user: &str, cert: &Cert| {
            owners.get(&id).map(String::as_str) == Some(user)
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
        let at = self.at(now);
        if let Err(e) = self.dir.expire(at, &self.cfg) {
            self.directory_failed(e);
        }
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

    /// The answer to a signup/signin, or `None` when the directory failed (no answer: the
    /// node asks again, or another server).
    fn admit(
        &mut self,
        now: Duration,
        from: SocketAddr,
        req: &AuthRequest,
    ) -> Option<Result<Admission, AuthError>> {
        if let Some((_, cached)) = self.replies.get(&(from, req.req)) {
            return Some(cached.clone());
        }
        if let Some(secs) = self.throttled(now, from.ip(), &req.user) {
            self.stats.throttled += 1;
            return Some(Err(AuthError::Throttled(secs)));
        }
        if req.signup && self.cfg.source_signups > 0 {
            let limit = self.cfg.source_signups;
            let window = self.cfg.source_window;
            if let Some(f) = self.source_entry(now, from.ip()) {
                if f.signups >= limit {
                    let left = (f.window_start + window).saturating_sub(now);
                    self.stats.throttled += 1;
                    return Some(Err(AuthError::RateLimited(left.as_secs().max(1) as u32)));
                }
                f.signups += 1;
            }
        }
        let result = match self.decide(now, from, req) {
            Ok(r) => {
                self.directory_ok();
                r
            }
            Err(e) => {
                self.directory_failed(e);
                return None;
            }
        };
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
        Some(result)
    }

    /// Checks the request against the directory. Cheap refusals come before the password
    /// is hashed; the directory's `admit` then decides the cap, the id and the queue at once.
    fn decide(
        &mut self,
        now: Duration,
        from: SocketAddr,
        req: &AuthRequest,
    ) -> Decision<Admission> {
        let (user, password) = (req.user.as_str(), req.password.as_str());
        if !valid_username(user) {
            return Ok(Err(AuthError::InvalidUsername));
        }
        if password.is_empty() || password.len() > MAX_PASSWORD {
            return Ok(Err(AuthError::InvalidPassword));
        }
        let at = self.at(now);
        let account = self.dir.account(user)?;
        let Some(a) = account else {
            if !req.signup {
                return Ok(Err(AuthError::BadCredentials));
            }
            if let Err(e) = self.dir.check(at, &self.cfg, None)? {
                return Ok(Err(e));
            }
            let hash = self.creds.hash(password);
            return self.seat(now, from, req, Seat::NewAccount { hash: &hash });
        };
        let known = a.device_with(&req.sign_pk);
        if req.signup && known.is_none() {
            return Ok(Err(AuthError::UsernameTaken));
        }
        if !self.creds.verify(password, &a.hash) {
            // A retried signup (its answer was lost, perhaps with the server that made the
            // account) is the same device with the same password; anyone else is told the
            // name is taken.
            return Ok(Err(if req.signup {
                AuthError::UsernameTaken
            } else {
                AuthError::BadCredentials
            }));
        }
        let seat = match (known, a.unclaimed()) {
            (Some(d), _) if d.revoked => return Ok(Err(AuthError::DeviceRevoked)),
            (Some(d), _) => Seat::Device(d.node_id),
            // The one device of an account from before devices were known: the first key
            // to sign in claims it.
            (None, Some(d)) => Seat::Device(d.node_id),
            (None, None) => Seat::NewDevice {
                max: self.cfg.max_devices,
            },
        };
        if let Err(e) = self.dir.check(
            at,
            &self.cfg,
            match seat {
                Seat::Device(id) => Some(id),
                _ => None,
            },
        )? {
            return Ok(Err(e));
        }
        self.seat(now, from, req, seat)
    }

    /// Admits the node into `seat` (the directory decides the cap, the id and the queue).
    fn seat(
        &mut self,
        now: Duration,
        from: SocketAddr,
        req: &AuthRequest,
        seat: Seat<'_>,
    ) -> Decision<Admission> {
        let user = req.user.as_str();
        let at = self.at(now);
        let ask = Ask {
            user,
            seat,
            key: req.sign_pk,
            from,
            warming_up: self
                .started
                .is_some_and(|s| now.saturating_sub(s) < self.cfg.lease),
        };
        let expires = self.wall(now) + self.cfg.cert_lifetime.as_millis() as u64;
        let ident = &self.ident;
        let mut issue = |id: NodeId| ident.issue_cert(id, user, req.sign_pk, req.dh_pk, expires);
        let admitted = match self.dir.admit(at, &self.cfg, &ask, &mut issue)? {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        for record in self.dir.take_records() {
            self.out.push_back(Output::Persist(record));
        }
        let Admitted {
            node_id,
            first,
            cert,
        } = admitted;
        self.owners.insert(node_id, user.to_string());
        self.certs.insert(node_id, (user.to_string(), cert.clone()));
        self.relay.saw(node_id, from, now);
        self.out.push_back(Output::Event(Event::Admitted {
            user: user.to_string(),
            node_id,
            addr: from,
            first,
        }));
        Ok(Ok(Admission {
            node_id,
            first,
            observed: from,
            cert,
            server_sign_pk: self.ident.sign_pk,
        }))
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
}

#[cfg(test)]
mod tests;
