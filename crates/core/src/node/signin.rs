//! Signing up and in: the server's key and cookie, the request inside Noise NK, the answer
//! (admission with a certificate, or a refusal), failover between auth servers, and the
//! polls (`Fetch`) through which members learn of newcomers and renew certificates.

use super::life::Phase;
use super::paths::Via;
use super::timers::Timer;
use super::Node;
use crate::io::{Event, Record};
use crate::secure::{self, SERVER_ID};
use p2pchat_proto::wire::{
    encode_envelope, from_payload, to_payload, Envelope, Key, MAX_PASSWORD, MIN_AUTH_HELLO,
    MIN_KEY_REQUEST,
};
use p2pchat_proto::{AuthError, AuthReply, AuthRequest, Message};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// How long a cookie is reused for retries (the server accepts it for 30 to 60 s).
const COOKIE_REUSE: Duration = Duration::from_secs(20);

impl Node {
    pub(super) fn auth_timer(&mut self, now: Duration) {
        if !self.auth.pending {
            return;
        }
        if self.params.password.len() > MAX_PASSWORD {
            self.fatal(format!(
                "the password is too long: {} bytes (at most {MAX_PASSWORD})",
                self.params.password.len()
            ));
            return;
        }
        if self.auth.attempts >= self.cfg.auth_attempts && self.own.node_id.is_none() {
            let servers: Vec<String> = self.auth.servers().iter().map(|a| a.to_string()).collect();
            self.fatal(format!(
                "auth server {} unreachable after {} attempts",
                servers.join(", "),
                self.auth.attempts
            ));
            return;
        }
        // The last attempt went unanswered: ask the next server, if there is one.
        if self.auth.attempt(now) {
            self.next_auth_server(now);
        }
        // An attempt starts with the server's key and a fresh cookie; the password is only
        // sent once the key matches the pinned one. A retry with a recent cookie goes
        // straight to the hello (one round trip instead of two).
        self.auth.hello_sent = false;
        if let Some((cookie, key, at)) = self.auth.cookie {
            if now.saturating_sub(at) < COOKIE_REUSE && self.auth.server_dh.is_none_or(|k| k == key)
            {
                self.send_hello(key, cookie);
            }
        }
        self.send_key_request();
        let backoff = self
            .cfg
            .auth_retry_initial
            .saturating_mul(1u32 << self.auth.attempts.min(16))
            .min(self.cfg.auth_retry_max);
        self.auth.attempts = self.auth.attempts.saturating_add(1);
        self.set_timer(Timer::Auth, now + backoff);
    }

    /// Turns to the next configured auth server, if there is one.
    pub(super) fn next_auth_server(&mut self, now: Duration) {
        if self.auth.switch(now) {
            self.net.links.forget(SERVER_ID);
            self.net.stats.auth_failovers += 1;
            // The old server relayed for us: those members get another try.
            self.relay_gone(now, Via::Server);
        }
    }

    pub(super) fn send_key_request(&mut self) {
        let pad = [0u8; MIN_KEY_REQUEST];
        if let Ok(bytes) = encode_envelope(&Envelope::KeyRequest { pad: &pad }) {
            let auth = self.auth.addr();
            self.push_datagram(auth, bytes);
        }
    }

    pub(super) fn server_heard(&mut self, now: Duration) {
        self.auth.last_reply = Some(now);
        if !self.auth.reachable {
            self.auth.reachable = true;
            self.event(Event::AuthServer { reachable: true });
        }
    }

    /// The server's key and a cookie: check the pin, then send the request inside Noise NK.
    pub(super) fn key_reply(&mut self, now: Duration, dh_pk: Key, cookie: [u8; 16]) {
        let changed = self.auth.server_dh.is_some_and(|pinned| pinned != dh_pk);
        if !changed && (!self.auth.pending || self.auth.hello_sent) {
            return;
        }
        if let Some(pinned) = self.auth.server_dh {
            if pinned != dh_pk {
                self.net.stats.bad_server_key += 1;
                if self.auth.key_change_reported {
                    return;
                }
                self.auth.key_change_reported = true;
                let msg = format!(
                    "the auth server's key changed: pinned {}, the server at {} offers {}; \
                     refusing to sign in (no password was sent). If the server was re-keyed \
                     on purpose, pass --auth-key with its new key",
                    secure::fingerprint(&pinned),
                    self.auth.addr(),
                    secure::fingerprint(&dh_pk)
                );
                if self.own.node_id.is_none() {
                    self.fatal(msg);
                } else {
                    // Already a member: keep chatting with peers, but stop asking this server
                    // (it could not read our polls anyway: they are sealed to the old key).
                    self.error(msg);
                    self.auth.pending = false;
                    self.timers.cancel(Timer::Auth);
                }
                return;
            }
        }
        self.server_heard(now);
        self.auth.cookie = Some((cookie, dh_pk, now));
        self.send_hello(dh_pk, cookie);
    }

    /// Sends the signup/signin request inside a new Noise NK handshake to `dh_pk`.
    pub(super) fn send_hello(&mut self, dh_pk: Key, cookie: [u8; 16]) {
        let mut req = AuthRequest {
            req: self.auth.req,
            signup: self.params.signup && !self.life.restored,
            user: self.params.user.clone(),
            password: self.params.password.clone(),
            sign_pk: self.own.ident.sign_pk,
            dh_pk: self.own.ident.dh_pk,
            cookie,
            pad: Vec::new(),
        };
        let len = to_payload(&req).map_or(0, |p| p.len());
        // Noise adds an ephemeral key and a tag (48 bytes); pad so the answer is never larger.
        req.pad = vec![0; MIN_AUTH_HELLO.saturating_sub(len + 48)];
        let Ok(payload) = to_payload(&req) else {
            return;
        };
        let seed = secure::seed_from(&mut self.own.crng);
        match secure::nk_initiate(&dh_pk, seed, &payload) {
            Ok((hs, m1)) => {
                let mut tag = [0u8; 8];
                tag.copy_from_slice(&m1[..8]);
                if self.auth.hs.len() >= 4 {
                    self.auth.hs.remove(0);
                }
                self.auth.hs.push((tag, hs, dh_pk));
                self.auth.hello_sent = true;
                if let Ok(bytes) = encode_envelope(&Envelope::AuthHello { noise: &m1 }) {
                    let auth = self.auth.addr();
                    self.push_datagram(auth, bytes);
                }
            }
            Err(e) => self.error(format!("handshake failed: {e}")),
        }
    }

    /// The server's Noise answer: admission (with our certificate) or a refusal.
    pub(super) fn auth_answer(&mut self, now: Duration, tag: [u8; 8], noise: &[u8]) {
        let Some(i) = self.auth.hs.iter().position(|(t, _, _)| *t == tag) else {
            // An answer to an attempt we gave up on (or already read).
            self.net.stats.rejected += 1;
            return;
        };
        let (_, mut hs, dh) = self.auth.hs.remove(i);
        let reply = secure::nk_finish(&mut hs, noise)
            .ok()
            .and_then(|p| from_payload::<AuthReply>(&p).ok());
        let Some(reply) = reply else {
            self.net.stats.unauthenticated += 1;
            return;
        };
        if reply.req != self.auth.req || !self.auth.pending {
            return;
        }
        self.server_heard(now);
        match reply.result {
            Ok(adm) => {
                let vk = secure::verifying_key(&adm.server_sign_pk);
                let valid = vk.as_ref().is_some_and(|vk| {
                    secure::cert_ok(vk, adm.node_id, &self.params.user, &adm.cert)
                }) && adm.cert.sign_pk == self.own.ident.sign_pk
                    && adm.cert.dh_pk == self.own.ident.dh_pk;
                let (true, Some(vk)) = (valid, vk) else {
                    self.fatal("the auth server issued an invalid certificate");
                    return;
                };
                if self.auth.server_dh != Some(dh)
                    || self.auth.server_sign.as_ref().map(|s| s.0) != Some(adm.server_sign_pk)
                {
                    self.auth.server_dh = Some(dh);
                    self.auth.server_sign = Some((adm.server_sign_pk, vk));
                    self.persist(Record::AuthKey {
                        dh_pk: dh,
                        sign_pk: adm.server_sign_pk,
                    });
                }
                self.auth.hs.clear();
                self.set_cert(adm.cert.clone());
                self.admitted(now, adm);
                // What peers sent before we knew who we are.
                for (from, bytes) in self.net.take_early() {
                    self.handle_datagram(now, from, &bytes);
                }
            }
            Err(AuthError::StaleCookie) => {
                self.auth.cookie = None;
                self.set_timer(Timer::Auth, now);
            }
            Err(e @ (AuthError::QueueFull | AuthError::RateLimited(_))) => {
                // Transient (many newcomers at once, or a signup rate limit): ask again later,
                // as a new request (the server caches its answer to this one).
                let wait = match e {
                    AuthError::RateLimited(secs) => {
                        let jitter = self.rng.random_range(0..1_000);
                        Duration::from_millis(u64::from(secs) * 1_000 + jitter)
                    }
                    _ => Duration::from_millis(self.rng.random_range(1_000..4_000)),
                };
                let why = match e {
                    AuthError::RateLimited(_) => {
                        "the auth server limits signups from this address".to_string()
                    }
                    other => other.to_string(),
                };
                self.error(format!(
                    "{why}; asking again in {} s",
                    wait.as_secs().max(1)
                ));
                self.auth.req = self.rng.random();
                self.auth.attempts = 0;
                self.timers.reschedule(Timer::Auth, now + wait);
            }
            Err(e) => self.fatal(e.to_string()),
        }
    }

    pub(super) fn handle_server(&mut self, now: Duration, msg: Message) {
        self.server_heard(now);
        match msg {
            Message::Pending { newcomers, renewed } => {
                if let (Some(cert), Some(me)) = (renewed, self.own.node_id) {
                    let mine = cert.sign_pk == self.own.ident.sign_pk
                        && cert.dh_pk == self.own.ident.dh_pk;
                    let newer = self
                        .own
                        .cert
                        .as_ref()
                        .is_none_or(|c| c.expires_ms < cert.expires_ms);
                    if mine && newer && self.cert_valid(me, &self.params.user.clone(), &cert) {
                        self.set_cert(cert);
                    } else {
                        self.net.stats.bad_signature += 1;
                    }
                }
                for newcomer in newcomers {
                    self.bootstrap(now, newcomer);
                }
            }
            Message::Certs { peers } => self.lookup_answer(now, peers),
            Message::DeviceList { devices } => self.handle_device_list(devices),
            Message::Revoked(r) => self.handle_revocation(now, None, r),
            Message::Punch { peer } => self.handle_punch(now, peer),
            _ => self.net.stats.rejected += 1,
        }
    }

    pub(super) fn admitted(&mut self, now: Duration, adm: p2pchat_proto::Admission) {
        if let Some(id) = self.own.node_id {
            if id != adm.node_id {
                self.fatal(format!(
                    "the auth server gave node id {} but this data dir belongs to node {} \
                     (another data dir of the account claimed this device first after an \
                     upgrade; sign in from a new data dir, and see /devices)",
                    adm.node_id, id
                ));
                return;
            }
        }
        self.timers.cancel(Timer::Auth);
        self.auth.pending = false;
        // The account exists now: any later request (re-signin after a bootstrap timeout) signs in.
        self.params.signup = false;
        self.own.node_id = Some(adm.node_id);
        self.own.advertised = adm.observed;
        if !self.life.restored {
            self.persist(Record::Identity {
                node_id: adm.node_id,
                user: self.params.user.clone(),
            });
        }
        if self.life.phase == Phase::Member {
            // Already back in through a remembered peer.
        } else if adm.first {
            self.life.first = !self.life.restored;
            self.become_member(now);
        } else {
            self.life.phase = Phase::AwaitingBootstrap;
            self.life.awaiting_since.get_or_insert(now);
            self.set_timer(Timer::Bootstrap, now + self.cfg.bootstrap_timeout);
        }
    }

    pub(super) fn become_member(&mut self, now: Duration) {
        if self.life.phase == Phase::Member {
            return;
        }
        self.life.phase = Phase::Member;
        self.life.awaiting_since = None;
        self.timers.cancel(Timer::Bootstrap);
        self.emit_ready();
        let jitter = |rng: &mut ChaCha8Rng, d: Duration| {
            Duration::from_micros(rng.random_range(0..=d.as_micros().max(1) as u64))
        };
        let f = jitter(&mut self.rng, self.cfg.fetch_interval);
        let a = jitter(&mut self.rng, self.cfg.anti_entropy_interval);
        let p = jitter(&mut self.rng, self.cfg.probe_interval);
        self.set_timer(Timer::Fetch, now + f);
        self.set_timer(Timer::AntiEntropy, now + a);
        self.set_timer(Timer::Probe, now + p);
        // Now that the members are known, what was asked before goes to them.
        self.run_queued(now);
    }

    pub(super) fn fetch_timer(&mut self, now: Duration) {
        if let Some(node_id) = self.own.node_id {
            self.send_server(&Message::Fetch { node_id });
        }
        // In a network larger than a view, thousands of members poll: each polls a third as
        // often (still twice per lease), and newcomers are still picked up at once.
        let every = if self.partial() {
            self.cfg.fetch_interval * 3
        } else {
            self.cfg.fetch_interval
        };
        let unreachable = self.cfg.auth_unreachable_after.max(every * 3);
        let silent = self.auth.silent(now, unreachable);
        if silent && self.auth.reachable {
            self.auth.reachable = false;
            self.event(Event::AuthServer { reachable: false });
        }
        // Another server shares the accounts and the queue: poll it instead.
        if silent && self.auth.may_switch(now, unreachable) {
            self.next_auth_server(now);
        }
        if silent && !self.auth.key_change_reported && self.auth.server_dh.is_some() {
            // A server that answers nothing may be gone, or back with another key (it cannot
            // open polls sealed to the old one): its key reply tells which.
            self.send_key_request();
        }
        self.set_timer(Timer::Fetch, now + every);
    }
}
