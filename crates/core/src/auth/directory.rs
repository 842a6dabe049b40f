//! What several auth servers must share: accounts, node ids, leases and the newcomer queue.
//!
//! The auth server ([`super::AuthServer`]) keeps the per-process state itself (cookies,
//! Noise answers, reply caches, throttling, links) and asks a [`Directory`] for everything
//! that decides admission. [`MemoryDirectory`] holds it in memory and persists accounts as
//! [`Record`]s (the embedded SQLite default, and the simulator); the runtime's PostgreSQL
//! directory lets several server processes share one database.
//!
//! [`Directory::admit`] is one atomic step: the cap (live members plus waiting newcomers),
//! the queue limit, a new node id and the queue entry are decided together, so the cap holds
//! exactly under concurrent signups through different servers.

use crate::config::AuthConfig;
use crate::io::Record;
use crate::{HashMap, HashSet};
use p2pchat_proto::wire::{Cert, Key};
use p2pchat_proto::{AuthError, NodeId, PeerInfo};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// The time of a request: the process's monotonic clock (what an in-memory directory
/// compares) and Unix time in ms (what a shared database stores: every server reads it).
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Since the server started.
    pub mono: Duration,
    /// Unix time in milliseconds.
    pub wall_ms: u64,
}

/// One account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Its node id, never reused.
    pub node_id: NodeId,
    /// The password verifier (an argon2id PHC string in the runtime).
    pub hash: String,
    /// The node key that signed up, when known: the same node asking again with the same
    /// password is a retried signup (its answer was lost), not a taken username.
    pub signup_key: Option<Key>,
}

/// An admission to decide.
#[derive(Clone, Debug)]
pub struct Ask<'a> {
    /// Username (already validated).
    pub user: &'a str,
    /// `None` for a new account, else the account's node id (password checked).
    pub node_id: Option<NodeId>,
    /// The verifier to store for a new account.
    pub hash: Option<&'a str>,
    /// The asking node's signing key.
    pub key: Key,
    /// Where the request came from: the address newcomers are bootstrapped at.
    pub from: SocketAddr,
    /// This server started less than a lease ago: members may not have polled yet.
    pub warming_up: bool,
}

/// What [`Directory::admit`] decided.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The node id.
    pub node_id: NodeId,
    /// Nobody else is live: the node starts the network.
    pub first: bool,
    /// Its new certificate.
    pub cert: Cert,
}

/// Sizes for status lines and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Accounts.
    pub users: usize,
    /// Members holding a lease.
    pub live: usize,
    /// Newcomers waiting.
    pub queued: usize,
}

/// The shared state cannot be read or written now (a database that is down or refuses).
/// The server then answers nothing: the node asks again, or asks another server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account directory unavailable: {0}")]
pub struct DirectoryError(pub String);

/// Either a refusal for the node or a directory failure.
pub type Decision<T> = Result<Result<T, AuthError>, DirectoryError>;

/// The shared state of the auth servers. Every method is one atomic step.
pub trait Directory: Send {
    /// The account named `user`.
    fn account(&mut self, user: &str) -> Result<Option<Account>, DirectoryError>;
    /// Whether `id` belongs to an account.
    fn knows(&mut self, id: NodeId) -> Result<bool, DirectoryError>;
    /// A cheap check before a password is hashed: the queue limit (unless `me` already
    /// waits) and the cap (not counting `me`). [`Directory::admit`] checks again.
    fn check(&mut self, now: Now, cfg: &AuthConfig, me: Option<NodeId>) -> Decision<()>;
    /// Admits a node: creates the account for a signup, decides `first`, marks the node
    /// live (first) or queues it, all at once. `issue` makes the certificate for the id.
    fn admit(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        ask: &Ask<'_>,
        issue: &mut dyn FnMut(NodeId) -> Cert,
    ) -> Decision<Admitted>;
    /// A member polls: renews its lease (with its address and newest certificate), takes
    /// it out of the queue, and returns the newcomers due to be offered (marked offered).
    fn poll(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        member: &PeerInfo,
    ) -> Result<Vec<PeerInfo>, DirectoryError>;
    /// The record of `user` if it holds a lease; `None` if `asker` is not a member that
    /// polled (it may not ask).
    fn lookup(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        asker: NodeId,
        user: &str,
    ) -> Result<Option<Vec<PeerInfo>>, DirectoryError>;
    /// Drops leases long expired and newcomers that waited too long.
    fn expire(&mut self, now: Now, cfg: &AuthConfig) -> Result<(), DirectoryError>;
    /// Accounts, live members and waiting newcomers.
    fn counts(&mut self, now: Now, cfg: &AuthConfig) -> Result<Counts, DirectoryError>;
    /// Records to persist locally (an in-memory directory's new accounts).
    fn take_records(&mut self) -> Vec<Record> {
        Vec::new()
    }
}

struct Live {
    last_poll: Duration,
    info: PeerInfo,
}

struct Waiting {
    info: PeerInfo,
    queued_at: Duration,
    offered_at: Option<Duration>,
}

/// The directory of one server process, restored from (and persisted as) records.
#[derive(Default)]
pub struct MemoryDirectory {
    accounts: HashMap<String, Account>,
    ids: HashSet<NodeId>,
    next_id: u32,
    live: HashMap<NodeId, Live>,
    queue: VecDeque<Waiting>,
    records: Vec<Record>,
}

impl MemoryDirectory {
    /// The accounts found in `records` (other records are ignored).
    pub fn from_records(records: &[Record]) -> Self {
        let mut d = MemoryDirectory {
            next_id: 1,
            ..MemoryDirectory::default()
        };
        for record in records {
            if let Record::User {
                user,
                node_id,
                password_hash,
            } = record
            {
                d.next_id = d.next_id.max(node_id.0.saturating_add(1));
                d.ids.insert(*node_id);
                d.accounts.insert(
                    user.clone(),
                    Account {
                        node_id: *node_id,
                        hash: password_hash.clone(),
                        signup_key: None,
                    },
                );
            }
        }
        d
    }

    fn queued(&self, id: Option<NodeId>) -> bool {
        id.is_some_and(|id| self.queue.iter().any(|w| w.info.node_id == id))
    }

    fn capacity(
        &self,
        now: Duration,
        cfg: &AuthConfig,
        me: Option<NodeId>,
    ) -> Result<(), AuthError> {
        let live = self
            .live
            .iter()
            .filter(|(id, l)| Some(**id) != me && now.saturating_sub(l.last_poll) < cfg.lease)
            .count();
        let waiting = self
            .queue
            .iter()
            .filter(|w| Some(w.info.node_id) != me && !self.live.contains_key(&w.info.node_id))
            .count();
        if live + waiting >= cfg.max_nodes {
            Err(AuthError::NetworkFull)
        } else {
            Ok(())
        }
    }

    fn check_now(
        &self,
        now: Duration,
        cfg: &AuthConfig,
        me: Option<NodeId>,
    ) -> Result<(), AuthError> {
        // A full queue is checked before an account is made: a refused signup must be able
        // to ask again. (Someone is live when the queue is full, so this is never `first`.)
        if self.queue.len() >= cfg.queue_limit && !self.queued(me) {
            return Err(AuthError::QueueFull);
        }
        self.capacity(now, cfg, me)
    }
}

impl Directory for MemoryDirectory {
    fn account(&mut self, user: &str) -> Result<Option<Account>, DirectoryError> {
        Ok(self.accounts.get(user).cloned())
    }

    fn knows(&mut self, id: NodeId) -> Result<bool, DirectoryError> {
        Ok(self.ids.contains(&id))
    }

    fn check(&mut self, now: Now, cfg: &AuthConfig, me: Option<NodeId>) -> Decision<()> {
        Ok(self.check_now(now.mono, cfg, me))
    }

    fn admit(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        ask: &Ask<'_>,
        issue: &mut dyn FnMut(NodeId) -> Cert,
    ) -> Decision<Admitted> {
        let t = now.mono;
        if let Err(e) = self.check_now(t, cfg, ask.node_id) {
            return Ok(Err(e));
        }
        let node_id = match (ask.node_id, ask.hash) {
            (Some(id), _) => id,
            (None, Some(hash)) => {
                if self.accounts.contains_key(ask.user) {
                    return Ok(Err(AuthError::UsernameTaken));
                }
                let node_id = NodeId(self.next_id);
                self.next_id = self.next_id.saturating_add(1);
                self.ids.insert(node_id);
                self.records.push(Record::User {
                    user: ask.user.to_string(),
                    node_id,
                    password_hash: hash.to_string(),
                });
                self.accounts.insert(
                    ask.user.to_string(),
                    Account {
                        node_id,
                        hash: hash.to_string(),
                        signup_key: Some(ask.key),
                    },
                );
                node_id
            }
            (None, None) => return Ok(Err(AuthError::BadCredentials)),
        };
        // "Nobody else is here" must be sure: a member whose polls were lost for one lease is
        // still there, and a second network started beside it would never merge. So `first`
        // needs silence for two leases (the cap still counts one).
        let others_live = self
            .live
            .iter()
            .filter(|(id, l)| **id != node_id && t.saturating_sub(l.last_poll) < cfg.lease * 2)
            .count();
        // Right after a restart of a server that has accounts, the members have not polled
        // yet: queue the newcomer rather than let it start a second network. If nobody polls,
        // its bootstrap timeout makes it ask again, and by then it is first.
        let warming_up = self.accounts.len() > 1 && ask.warming_up;
        let first = others_live == 0 && !warming_up;
        let cert = issue(node_id);
        let info = PeerInfo {
            node_id,
            user: ask.user.to_string(),
            addr: ask.from,
            cert: cert.clone(),
        };
        // Lookups hand out the newest certificate, also before the node polls again.
        if let Some(l) = self.live.get_mut(&node_id) {
            l.info.cert = cert.clone();
        }
        if first {
            self.live.insert(node_id, Live { last_poll: t, info });
            self.queue.retain(|w| w.info.node_id != node_id);
        } else if let Some(w) = self.queue.iter_mut().find(|w| w.info.node_id == node_id) {
            w.info = info;
            w.queued_at = t;
            w.offered_at = None;
        } else {
            if self.queue.len() >= cfg.queue_limit {
                return Ok(Err(AuthError::QueueFull));
            }
            self.queue.push_back(Waiting {
                info,
                queued_at: t,
                offered_at: None,
            });
        }
        Ok(Ok(Admitted {
            node_id,
            first,
            cert,
        }))
    }

    fn poll(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        member: &PeerInfo,
    ) -> Result<Vec<PeerInfo>, DirectoryError> {
        let t = now.mono;
        let id = member.node_id;
        self.live.insert(
            id,
            Live {
                last_poll: t,
                info: member.clone(),
            },
        );
        // A newcomer that polls is in the network: it no longer waits.
        self.queue.retain(|w| w.info.node_id != id);
        let mut newcomers = Vec::new();
        for w in self.queue.iter_mut() {
            if newcomers.len() >= cfg.fetch_batch {
                break;
            }
            let due = w
                .offered_at
                .is_none_or(|at| t.saturating_sub(at) >= cfg.reoffer_after);
            if due {
                w.offered_at = Some(t);
                newcomers.push(w.info.clone());
            }
        }
        Ok(newcomers)
    }

    fn lookup(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        asker: NodeId,
        user: &str,
    ) -> Result<Option<Vec<PeerInfo>>, DirectoryError> {
        if !self.live.contains_key(&asker) {
            return Ok(None);
        }
        let peers = self
            .accounts
            .get(user)
            .and_then(|a| self.live.get(&a.node_id))
            .filter(|l| now.mono.saturating_sub(l.last_poll) < cfg.lease)
            .map(|l| l.info.clone());
        Ok(Some(peers.into_iter().collect()))
    }

    fn expire(&mut self, now: Now, cfg: &AuthConfig) -> Result<(), DirectoryError> {
        let t = now.mono;
        let lease = cfg.lease;
        self.live
            .retain(|_, l| t.saturating_sub(l.last_poll) < lease * 4);
        let ttl = cfg.pending_ttl;
        self.queue.retain(|w| t.saturating_sub(w.queued_at) < ttl);
        Ok(())
    }

    fn counts(&mut self, now: Now, cfg: &AuthConfig) -> Result<Counts, DirectoryError> {
        Ok(Counts {
            users: self.accounts.len(),
            live: self
                .live
                .values()
                .filter(|l| now.mono.saturating_sub(l.last_poll) < cfg.lease)
                .count(),
            queued: self.queue.len(),
        })
    }

    fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }
}

/// One [`MemoryDirectory`] shared by several servers in one process: what a database gives
/// real servers, for tests of failover.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct SharedMemory(pub std::sync::Arc<std::sync::Mutex<MemoryDirectory>>);

#[cfg(test)]
impl SharedMemory {
    fn with<T>(&self, f: impl FnOnce(&mut MemoryDirectory) -> T) -> T {
        let mut d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut d)
    }
}

#[cfg(test)]
impl Directory for SharedMemory {
    fn account(&mut self, user: &str) -> Result<Option<Account>, DirectoryError> {
        self.with(|d| d.account(user))
    }
    fn knows(&mut self, id: NodeId) -> Result<bool, DirectoryError> {
        self.with(|d| d.knows(id))
    }
    fn check(&mut self, now: Now, cfg: &AuthConfig, me: Option<NodeId>) -> Decision<()> {
        self.with(|d| d.check(now, cfg, me))
    }
    fn admit(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        ask: &Ask<'_>,
        issue: &mut dyn FnMut(NodeId) -> Cert,
    ) -> Decision<Admitted> {
        self.with(|d| d.admit(now, cfg, ask, issue))
    }
    fn poll(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        member: &PeerInfo,
    ) -> Result<Vec<PeerInfo>, DirectoryError> {
        self.with(|d| d.poll(now, cfg, member))
    }
    fn lookup(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        asker: NodeId,
        user: &str,
    ) -> Result<Option<Vec<PeerInfo>>, DirectoryError> {
        self.with(|d| d.lookup(now, cfg, asker, user))
    }
    fn expire(&mut self, now: Now, cfg: &AuthConfig) -> Result<(), DirectoryError> {
        self.with(|d| d.expire(now, cfg))
    }
    fn counts(&mut self, now: Now, cfg: &AuthConfig) -> Result<Counts, DirectoryError> {
        self.with(|d| d.counts(now, cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(s: u64) -> Now {
        Now {
            mono: Duration::from_secs(s),
            wall_ms: 1_700_000_000_000 + s * 1000,
        }
    }

    fn cert(id: NodeId) -> Cert {
        Cert {
            sign_pk: [id.0 as u8; 32],
            dh_pk: [0; 32],
            expires_ms: 0,
            sig: [0; 64],
        }
    }

    fn ask<'a>(user: &'a str, node_id: Option<NodeId>, hash: Option<&'a str>) -> Ask<'a> {
        Ask {
            user,
            node_id,
            hash,
            key: [7; 32],
            from: SocketAddr::from(([127, 0, 0, 1], 9000)),
            warming_up: false,
        }
    }

    fn admit(
        d: &mut MemoryDirectory,
        cfg: &AuthConfig,
        t: u64,
        a: &Ask<'_>,
    ) -> Result<Admitted, AuthError> {
        d.admit(now(t), cfg, a, &mut cert)
            .expect("memory never fails")
    }

    #[test]
    fn ids_are_never_reused_and_accounts_persist_as_records() {
        let cfg = AuthConfig::default();
        let mut d = MemoryDirectory::from_records(&[]);
        let a = admit(&mut d, &cfg, 0, &ask("ann", None, Some("h1"))).expect("ann");
        assert!(a.first);
        let b = admit(&mut d, &cfg, 0, &ask("bob", None, Some("h2"))).expect("bob");
        assert!(!b.first, "ann is live: bob waits to be bootstrapped");
        assert_eq!(
            admit(&mut d, &cfg, 0, &ask("ann", None, Some("h3"))).unwrap_err(),
            AuthError::UsernameTaken
        );
        let records = d.take_records();
        assert_eq!(records.len(), 2);
        let mut again = MemoryDirectory::from_records(&records);
        let acc = again.account("bob").expect("memory").expect("bob");
        assert_eq!((acc.node_id, acc.hash.as_str()), (b.node_id, "h2"));
        let c = admit(&mut again, &cfg, 0, &ask("cid", None, Some("h"))).expect("cid");
        assert!(
            c.node_id.0 > b.node_id.0,
            "a restored directory never reuses an id"
        );
    }

    #[test]
    fn the_cap_counts_leases_and_the_queue_and_polls_move_newcomers() {
        let cfg = AuthConfig {
            max_nodes: 2,
            ..AuthConfig::default()
        };
        let mut d = MemoryDirectory::from_records(&[]);
        let a = admit(&mut d, &cfg, 0, &ask("ann", None, Some("h"))).expect("ann");
        let b = admit(&mut d, &cfg, 0, &ask("bob", None, Some("h"))).expect("bob");
        assert_eq!(
            admit(&mut d, &cfg, 0, &ask("cid", None, Some("h"))).unwrap_err(),
            AuthError::NetworkFull
        );
        assert_eq!(d.counts(now(0), &cfg).expect("memory").queued, 1);
        let ann = PeerInfo {
            node_id: a.node_id,
            user: "ann".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
            cert: a.cert,
        };
        let offered = d.poll(now(0), &cfg, &ann).expect("memory");
        assert_eq!(
            offered.iter().map(|p| p.node_id).collect::<Vec<_>>(),
            [b.node_id]
        );
        assert!(
            d.poll(now(1), &cfg, &ann).expect("memory").is_empty(),
            "not yet due again"
        );
        assert_eq!(
            d.poll(now(3), &cfg, &ann).expect("memory").len(),
            1,
            "offered again"
        );
        // bob polls: he is live, not waiting; ann can look him up.
        let bob = PeerInfo {
            user: "bob".into(),
            ..offered[0].clone()
        };
        d.poll(now(3), &cfg, &bob).expect("memory");
        assert_eq!(
            d.counts(now(3), &cfg).expect("memory"),
            Counts {
                users: 2,
                live: 2,
                queued: 0
            }
        );
        let found = d.lookup(now(3), &cfg, a.node_id, "bob").expect("memory");
        assert_eq!(found.map(|v| v.len()), Some(1));
        assert_eq!(
            d.lookup(now(3), &cfg, NodeId(99), "bob").expect("memory"),
            None
        );
        // Leases lapse: the cap frees up, and long-expired leases are swept.
        assert!(d.check(now(10), &cfg, None).expect("memory").is_ok());
        d.expire(now(60), &cfg).expect("memory");
        assert_eq!(d.counts(now(60), &cfg).expect("memory").live, 0);
    }
}
