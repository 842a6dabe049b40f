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
use crate::HashMap;
use p2pchat_proto::wire::DeviceInfo;
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

/// One device of an account: its own node id and keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its node id, never reused.
    pub node_id: NodeId,
    /// Its Ed25519 key; `None` for the one device of an account made before devices were
    /// known (the first signin claims it).
    pub key: Option<Key>,
    /// Revoked: its sign-ins and polls are refused.
    pub revoked: bool,
}

/// One account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The password verifier (an argon2id PHC string in the runtime).
    pub hash: String,
    /// Its devices, oldest first (at least one).
    pub devices: Vec<Device>,
}

impl Account {
    /// The device that signs with `key`.
    pub fn device_with(&self, key: &Key) -> Option<&Device> {
        self.devices.iter().find(|d| d.key.as_ref() == Some(key))
    }

    /// A device of an older store that no key has claimed yet.
    pub fn unclaimed(&self) -> Option<&Device> {
        self.devices.iter().find(|d| d.key.is_none() && !d.revoked)
    }

    /// Whether `id` is one of its devices, not revoked.
    pub fn owns(&self, id: NodeId) -> bool {
        self.devices.iter().any(|d| d.node_id == id && !d.revoked)
    }

    /// Devices not revoked.
    pub fn active(&self) -> usize {
        self.devices.iter().filter(|d| !d.revoked).count()
    }
}

/// Which node id an admission is for.
#[derive(Clone, Copy, Debug)]
pub enum Seat<'a> {
    /// A known device of the account (password checked); a device without a key yet is
    /// claimed by `Ask::key`.
    Device(NodeId),
    /// A new account with this password verifier, and its first device.
    NewAccount {
        /// The verifier to store.
        hash: &'a str,
    },
    /// A new device of an existing account (password checked), unless it has `max` already.
    NewDevice {
        /// Most devices not revoked.
        max: usize,
    },
}

/// An admission to decide.
#[derive(Clone, Debug)]
pub struct Ask<'a> {
    /// Username (already validated).
    pub user: &'a str,
    /// The node id it is for.
    pub seat: Seat<'a>,
    /// The asking node's signing key.
    pub key: Key,
    /// Where the request came from: the address newcomers are bootstrapped at.
    pub from: SocketAddr,
    /// This server started less than a lease ago: members may not have polled yet.
    pub warming_up: bool,
}

impl Ask<'_> {
    /// The node id, when it exists already.
    pub fn existing(&self) -> Option<NodeId> {
        match self.seat {
            Seat::Device(id) => Some(id),
            _ => None,
        }
    }
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
    /// Whether `id` is a device of an account, not revoked.
    fn knows(&mut self, id: NodeId) -> Result<bool, DirectoryError>;
    /// The devices of `user`, by node id, with whether each holds a lease.
    fn devices(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        user: &str,
    ) -> Result<Vec<DeviceInfo>, DirectoryError>;
    /// Revokes device `id` of `user`; false if it is not one of that account's devices.
    fn revoke(&mut self, user: &str, id: NodeId) -> Result<bool, DirectoryError>;
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
    /// The records of the devices of `user` that hold a lease; `None` if `asker` is not a
    /// member that polled (it may not ask).
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
    /// The account of each device.
    owners: HashMap<NodeId, String>,
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
            match record {
                Record::User {
                    user,
                    node_id,
                    password_hash,
                } => {
                    d.next_id = d.next_id.max(node_id.0.saturating_add(1));
                    d.owners.insert(*node_id, user.clone());
                    d.accounts.insert(
                        user.clone(),
                        Account {
                            hash: password_hash.clone(),
                            devices: vec![Device {
                                node_id: *node_id,
                                key: None,
                                revoked: false,
                            }],
                        },
                    );
                }
                Record::Device {
                    user,
                    node_id,
                    key,
                    revoked,
                } => {
                    let Some(acc) = d.accounts.get_mut(user) else {
                        continue;
                    };
                    d.next_id = d.next_id.max(node_id.0.saturating_add(1));
                    d.owners.insert(*node_id, user.clone());
                    let device = Device {
                        node_id: *node_id,
                        key: Some(*key),
                        revoked: *revoked,
                    };
                    match acc.devices.iter_mut().find(|x| x.node_id == *node_id) {
                        Some(x) => *x = device,
                        None => acc.devices.push(device),
                    }
                }
                _ => {}
            }
        }
        d
    }

    /// Stores a device's new state and the record that persists it.
    fn put_device(&mut self, user: &str, device: Device) {
        let Some(acc) = self.accounts.get_mut(user) else {
            return;
        };
        if let Some(key) = device.key {
            self.records.push(Record::Device {
                user: user.to_string(),
                node_id: device.node_id,
                key,
                revoked: device.revoked,
            });
        }
        self.owners.insert(device.node_id, user.to_string());
        match acc.devices.iter_mut().find(|x| x.node_id == device.node_id) {
            Some(x) => *x = device,
            None => acc.devices.push(device),
        }
    }

    /// A new device `node_id` of `user` that signs with `key`; returns its id.
    fn add_device(&mut self, user: &str, node_id: NodeId, key: Key) -> NodeId {
        self.put_device(
            user,
            Device {
                node_id,
                key: Some(key),
                revoked: false,
            },
        );
        node_id
    }

    fn new_id(&mut self) -> NodeId {
        let id = NodeId(self.next_id);
        self.next_id = self.next_id.saturating_add(1);
        id
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
        Ok(self
            .owners
            .get(&id)
            .and_then(|u| self.accounts.get(u))
            .is_some_and(|a| a.owns(id)))
    }

    fn devices(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        user: &str,
    ) -> Result<Vec<DeviceInfo>, DirectoryError> {
        let Some(acc) = self.accounts.get(user) else {
            return Ok(Vec::new());
        };
        Ok(acc
            .devices
            .iter()
            .map(|d| {
                let polled = self.live.get(&d.node_id).map(|l| l.last_poll);
                DeviceInfo {
                    node_id: d.node_id,
                    online: polled.is_some_and(|p| now.mono.saturating_sub(p) < cfg.lease),
                    last_seen_ms: polled.map_or(0, |p| {
                        now.wall_ms
                            .saturating_sub(now.mono.saturating_sub(p).as_millis() as u64)
                    }),
                    revoked: d.revoked,
                }
            })
            .collect())
    }

    fn revoke(&mut self, user: &str, id: NodeId) -> Result<bool, DirectoryError> {
        let Some(device) = self
            .accounts
            .get(user)
            .and_then(|a| a.devices.iter().find(|d| d.node_id == id))
            .cloned()
        else {
            return Ok(false);
        };
        self.put_device(
            user,
            Device {
                revoked: true,
                // A device never signed in since devices were known: revoked under a key
                // nobody has, so the record can say so.
                key: Some(device.key.unwrap_or([0; 32])),
                ..device
            },
        );
        self.live.remove(&id);
        self.queue.retain(|w| w.info.node_id != id);
        Ok(true)
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
        if let Err(e) = self.check_now(t, cfg, ask.existing()) {
            return Ok(Err(e));
        }
        let node_id = match ask.seat {
            Seat::Device(id) => {
                let Some(device) = self
                    .accounts
                    .get(ask.user)
                    .and_then(|a| a.devices.iter().find(|d| d.node_id == id))
                    .cloned()
                else {
                    return Ok(Err(AuthError::BadCredentials));
                };
                if device.revoked {
                    return Ok(Err(AuthError::DeviceRevoked));
                }
                if device.key.is_none() {
                    self.put_device(
                        ask.user,
                        Device {
                            key: Some(ask.key),
                            ..device
                        },
                    );
                }
                id
            }
            Seat::NewAccount { hash } => {
                if self.accounts.contains_key(ask.user) {
                    return Ok(Err(AuthError::UsernameTaken));
                }
                let node_id = self.new_id();
                self.records.push(Record::User {
                    user: ask.user.to_string(),
                    node_id,
                    password_hash: hash.to_string(),
                });
                self.accounts.insert(
                    ask.user.to_string(),
                    Account {
                        hash: hash.to_string(),
                        devices: Vec::new(),
                    },
                );
                self.add_device(ask.user, node_id, ask.key)
            }
            Seat::NewDevice { max } => {
                let Some(acc) = self.accounts.get(ask.user) else {
                    return Ok(Err(AuthError::BadCredentials));
                };
                if acc.active() >= max {
                    return Ok(Err(AuthError::TooManyDevices(max as u32)));
                }
                let node_id = self.new_id();
                self.add_device(ask.user, node_id, ask.key)
            }
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
            .into_iter()
            .flat_map(|a| a.devices.iter().filter(|d| !d.revoked))
            .filter_map(|d| self.live.get(&d.node_id))
            .filter(|l| now.mono.saturating_sub(l.last_poll) < cfg.lease)
            .map(|l| l.info.clone());
        Ok(Some(peers.collect()))
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
    fn devices(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        user: &str,
    ) -> Result<Vec<DeviceInfo>, DirectoryError> {
        self.with(|d| d.devices(now, cfg, user))
    }
    fn revoke(&mut self, user: &str, id: NodeId) -> Result<bool, DirectoryError> {
        self.with(|d| d.revoke(user, id))
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
#[path = "directory_tests.rs"]
mod tests;
