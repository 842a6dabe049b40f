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

use crate::config::AuthConfig;
use crate::io::{Event, Output, Record, Stats};
use p2pchat_proto::wire::{self, valid_username, MAX_PASSWORD};
use p2pchat_proto::{decode, encode, Admission, AuthError, Message, NodeId, PeerInfo};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
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
}

struct Waiting {
    info: PeerInfo,
    queued_at: Duration,
    offered_at: Option<Duration>,
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
}

impl AuthServer {
    /// A server restored from its records (empty for a fresh one).
    pub fn new(cfg: AuthConfig, creds: Box<dyn Credentials>, records: &[Record]) -> Self {
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
        };
        for record in records {
            if let Record::User {
                user,
                node_id,
                password_hash,
            } = record
            {
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
        }
        server
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

    /// Feeds one received datagram.
    pub fn handle_datagram(&mut self, now: Duration, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        self.started.get_or_insert(now);
        let msg = match decode(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        self.expire(now);
        match msg {
            Message::Signup {
                req,
                user,
                password,
            } => self.admit(now, from, req, &user, &password, true),
            Message::Signin {
                req,
                user,
                password,
            } => self.admit(now, from, req, &user, &password, false),
            Message::Fetch { node_id } => self.fetch(now, from, node_id),
            _ => self.stats.rejected += 1,
        }
    }

    fn send(&mut self, to: SocketAddr, msg: &Message) {
        if let Ok(bytes) = encode(msg) {
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
    }

    fn admit(
        &mut self,
        now: Duration,
        from: SocketAddr,
        req: u64,
        user: &str,
        password: &str,
        signup: bool,
    ) {
        if let Some((_, cached)) = self.replies.get(&(from, req)) {
            let result = cached.clone();
            self.send(from, &Message::AuthReply { req, result });
            return;
        }
        let result = self.decide(now, from, user, password, signup);
        if self.replies.len() < 65_536 {
            self.replies.insert((from, req), (now, result.clone()));
        }
        self.send(from, &Message::AuthReply { req, result });
    }

    fn decide(
        &mut self,
        now: Duration,
        from: SocketAddr,
        user: &str,
        password: &str,
        signup: bool,
    ) -> Result<Admission, AuthError> {
        if !valid_username(user) {
            return Err(AuthError::InvalidUsername);
        }
        if password.is_empty() || password.len() > MAX_PASSWORD {
            return Err(AuthError::InvalidPassword);
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
        let others_live = self
            .live
            .iter()
            .filter(|(id, l)| **id != node_id && now.saturating_sub(l.last_poll) < self.cfg.lease)
            .count();
        // Right after a restart of a server that has accounts, the members have not polled
        // yet: queue the newcomer rather than let it start a second network. If nobody polls,
        // its bootstrap timeout makes it ask again, and by then it is first.
        let warming_up = self.accounts.len() > 1
            && self
                .started
                .is_some_and(|s| now.saturating_sub(s) < self.cfg.lease);
        let first = others_live == 0 && !warming_up;
        let info = PeerInfo {
            node_id,
            user: user.to_string(),
            addr: from,
        };
        if first {
            self.live.insert(node_id, Live { last_poll: now });
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

    fn fetch(&mut self, now: Duration, from: SocketAddr, node_id: NodeId) {
        if !self.ids.contains(&node_id) {
            self.stats.rejected += 1;
            return;
        }
        self.live.insert(node_id, Live { last_poll: now });
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
        // Keep the reply within one datagram even with long usernames.
        while !newcomers.is_empty()
            && wire::encoded_len(&Message::Pending {
                newcomers: newcomers.clone(),
            }) + wire::HEADER_LEN
                > wire::MAX_DATAGRAM
        {
            newcomers.pop();
        }
        self.send(from, &Message::Pending { newcomers });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn server(max_nodes: usize) -> AuthServer {
        AuthServer::new(
            AuthConfig {
                max_nodes,
                ..AuthConfig::default()
            },
            Box::new(InsecurePlainCredentials),
            &[],
        )
    }

    fn request(s: &mut AuthServer, now: Duration, from: SocketAddr, msg: Message) -> Vec<Message> {
        s.handle_datagram(now, from, &encode(&msg).expect("fits"));
        let mut replies = Vec::new();
        while let Some(o) = s.poll_output() {
            if let Output::Send { bytes, .. } = o {
                replies.push(decode(&bytes).expect("server sends valid datagrams"));
            }
        }
        replies
    }

    fn auth(
        s: &mut AuthServer,
        now: Duration,
        port: u16,
        req: u64,
        user: &str,
        pw: &str,
        up: bool,
    ) -> Result<Admission, AuthError> {
        let (user, password) = (user.to_string(), pw.to_string());
        let msg = if up {
            Message::Signup {
                req,
                user,
                password,
            }
        } else {
            Message::Signin {
                req,
                user,
                password,
            }
        };
        match request(s, now, addr(port), msg).pop() {
            Some(Message::AuthReply { result, .. }) => result,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    #[test]
    fn signup_then_signin_gives_the_same_id_and_wrong_password_is_refused() {
        let mut s = server(10);
        let t = Duration::ZERO;
        let a = auth(&mut s, t, 5000, 1, "alice", "pw", true).expect("signup");
        assert!(a.first);
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
    fn newcomers_are_queued_handed_to_fetchers_and_reoffered() {
        let mut s = server(10);
        let t0 = Duration::ZERO;
        let a = auth(&mut s, t0, 5000, 1, "alice", "pw", true).expect("first");
        let b = auth(&mut s, t0, 5001, 1, "bob", "pw", true).expect("queued");
        assert!(!b.first);
        assert_eq!(s.queue_len(), 1);
        let fetch = Message::Fetch { node_id: a.node_id };
        let got = request(&mut s, t0, addr(5000), fetch.clone());
        assert!(
            matches!(&got[..], [Message::Pending { newcomers }] if newcomers.len() == 1 && newcomers[0].user == "bob")
        );
        // Not offered again right away...
        let got = request(
            &mut s,
            t0 + Duration::from_millis(100),
            addr(5000),
            fetch.clone(),
        );
        assert!(matches!(&got[..], [Message::Pending { newcomers }] if newcomers.is_empty()));
        // ...but again once the re-offer delay has passed without bob polling.
        let later = t0 + Duration::from_secs(2);
        let got = request(&mut s, later, addr(5000), fetch.clone());
        assert!(matches!(&got[..], [Message::Pending { newcomers }] if newcomers.len() == 1));
        // Bob polls: he is in, and leaves the queue.
        request(
            &mut s,
            later,
            addr(5001),
            Message::Fetch { node_id: b.node_id },
        );
        assert_eq!(s.queue_len(), 0);
        assert_eq!(s.live_count(later), 2);
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
    fn restored_server_keeps_accounts_and_never_reuses_ids() {
        let mut s = server(10);
        auth(&mut s, Duration::ZERO, 5000, 1, "alice", "pw", true).expect("signup");
        let mut records = Vec::new();
        s.handle_datagram(Duration::ZERO, addr(1), b"garbage");
        assert_eq!(s.stats().malformed, 1);
        let mut s2 = server(10);
        s2.handle_datagram(
            Duration::ZERO,
            addr(5000),
            &encode(&Message::Signup {
                req: 1,
                user: "x".into(),
                password: "p".into(),
            })
            .expect("fits"),
        );
        while let Some(o) = s2.poll_output() {
            if let Output::Persist(r) = o {
                records.push(r);
            }
        }
        let mut restored = AuthServer::new(
            AuthConfig::default(),
            Box::new(InsecurePlainCredentials),
            &records,
        );
        assert_eq!(restored.user_count(), 1);
        let y = auth(&mut restored, Duration::ZERO, 5003, 9, "y", "pw", true).expect("signup");
        assert_eq!(y.node_id, NodeId(2));
        assert!(auth(&mut restored, Duration::ZERO, 5004, 9, "x", "p", false).is_ok());
    }
}
