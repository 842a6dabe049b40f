//! The auth servers' shared directory in PostgreSQL: several `auth-server --db URL` processes
//! over one database share the server keys, the accounts, node ids, leases and the queue.
//!
//! - Schema versions are numbered like the SQLite store's; a database newer than this build
//!   is refused with a clear error, and migrations run under an advisory lock (two servers
//!   starting at once on an empty database do not race).
//! - The keys are inserted once (`ON CONFLICT DO NOTHING`) and read back: every server has
//!   the same identity, so pinned keys and trust on first use work with any of them.
//! - An admission is one SERIALIZABLE transaction (cap, queue limit, new id, queue entry),
//!   retried on SQLSTATE 40001/40P01: the cap holds exactly under concurrent signups.
//! - Node ids come from a sequence: never reused (a retried transaction leaves a gap).
//! - Polls are short READ COMMITTED transactions; newcomers are taken with `SKIP LOCKED`.
//!
//! The state machine calls the directory synchronously (as it calls argon2), so each call
//! blocks its worker thread on the query with `block_in_place`: the server needs a
//! multi-threaded tokio runtime.

use crate::RuntimeError;
use p2pchat_core::auth::{
    Account, Admitted, Ask, Counts, Decision, Device, Directory, DirectoryError, Now, Seat,
};
use p2pchat_core::{AuthConfig, Record};
use p2pchat_proto::wire::{Cert, DeviceInfo, Key};
use p2pchat_proto::{AuthError, NodeId, PeerInfo};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, Transaction};

/// The newest schema this build knows.
pub const PG_SCHEMA_VERSION: i32 = 2;

/// Version 1: keys, accounts, ids, leases, queue, boot epochs.
const MIGRATION_1: &str = "
CREATE TABLE server_keys (
    id INT PRIMARY KEY CHECK (id = 1),
    sign_sk BYTEA NOT NULL,
    dh_sk BYTEA NOT NULL
);
CREATE SEQUENCE node_ids START 1;
CREATE SEQUENCE boot_epochs START 1;
CREATE TABLE accounts (
    user_name TEXT PRIMARY KEY,
    node_id BIGINT NOT NULL UNIQUE,
    hash TEXT NOT NULL,
    signup_key BYTEA,
    created_ms BIGINT NOT NULL
);
CREATE TABLE leases (
    node_id BIGINT PRIMARY KEY,
    last_poll_ms BIGINT NOT NULL,
    info BYTEA NOT NULL
);
CREATE TABLE queue (
    node_id BIGINT PRIMARY KEY,
    info BYTEA NOT NULL,
    queued_ms BIGINT NOT NULL,
    offered_ms BIGINT,
    seq BIGSERIAL
);
CREATE INDEX leases_by_poll ON leases (last_poll_ms);
";

/// Version 2: devices. Each account's one node so far becomes its first device, with the
/// key that signed up when known.
const MIGRATION_2: &str = "
CREATE TABLE devices (
    node_id BIGINT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES accounts (user_name),
    sign_pk BYTEA,
    revoked BOOLEAN NOT NULL DEFAULT false,
    created_ms BIGINT NOT NULL
);
CREATE INDEX devices_by_user ON devices (user_name);
INSERT INTO devices (node_id, user_name, sign_pk, created_ms)
    SELECT node_id, user_name, signup_key, created_ms FROM accounts;
";

/// Serializable transactions are retried this many times before the request goes
/// unanswered (the node asks again).
const RETRIES: u32 = 30;

/// A directory in one PostgreSQL database.
pub struct PgDirectory {
    config: Config,
    /// `user@host:port/db`, never the password.
    target: String,
    client: Option<Client>,
    /// The last failed (re)connection: at most one attempt a second while it is down.
    failed_at: Option<Instant>,
}

/// Where a URL points, for messages (no password).
fn describe_target(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// A database error in words: the server's message where there is one.
fn explain(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) if *db.code() == SqlState::INSUFFICIENT_PRIVILEGE => {
            format!("no permission: {}", db.message())
        }
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

/// Runs a query future to completion from synchronous code on a multi-threaded runtime.
fn block<F: Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn node_id(v: i64) -> Result<NodeId, tokio_postgres::Error> {
    // Ids are u32 on the wire; the sequence stays far below (the cap is on live nodes,
    // but ids are never reused, so a database would need 4 billion signups).
    Ok(NodeId(u32::try_from(v).unwrap_or(u32::MAX)))
}

fn encode_info(info: &PeerInfo) -> Vec<u8> {
    postcard::to_allocvec(info).unwrap_or_default()
}

fn decode_info(bytes: &[u8]) -> Option<PeerInfo> {
    postcard::from_bytes(bytes).ok()
}

fn key32(bytes: &[u8]) -> Option<Key> {
    <[u8; 32]>::try_from(bytes).ok()
}

impl PgDirectory {
    /// Connects, brings the schema up to date and returns the directory with the records
    /// the server starts from: the shared keys (made now if the database has none) and a
    /// boot epoch no other server of this database has had.
    pub async fn open(url: &str) -> Result<(Self, Vec<Record>), RuntimeError> {
        let config: Config = url.parse().map_err(|e| {
            RuntimeError::Config(format!(
                "invalid database URL (expected postgresql://USER@HOST:PORT/DB): {e}"
            ))
        })?;
        let target = describe_target(&config);
        let unreachable = |e: tokio_postgres::Error| {
            RuntimeError::Fatal(format!("database {target}: {}", explain(&e)))
        };
        let (mut client, connection) = config.connect(NoTls).await.map_err(|e| {
            RuntimeError::Fatal(format!(
                "cannot reach the database {target}: {}",
                explain(&e)
            ))
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("database connection closed: {}", explain(&e));
            }
        });
        migrate(&mut client, &target).await?;
        let fresh = p2pchat_core::secure::Identity::generate(
            &mut p2pchat_core::secure::crypto_rng(crate::os_seed()),
        )
        .secrets();
        client
            .execute(
                "INSERT INTO server_keys (id, sign_sk, dh_sk) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO NOTHING",
                &[&&fresh.0[..], &&fresh.1[..]],
            )
            .await
            .map_err(unreachable)?;
        let row = client
            .query_one("SELECT sign_sk, dh_sk FROM server_keys WHERE id = 1", &[])
            .await
            .map_err(unreachable)?;
        let (sign_sk, dh_sk) = match (key32(row.get(0)), key32(row.get(1))) {
            (Some(s), Some(d)) => (s, d),
            _ => {
                return Err(RuntimeError::Fatal(format!(
                    "database {target}: the server keys are damaged"
                )))
            }
        };
        let epoch: i64 = client
            .query_one("SELECT nextval('boot_epochs')", &[])
            .await
            .map_err(unreachable)?
            .get(0);
        // The state machine adds one to the newest epoch it is given.
        let epoch = u32::try_from(epoch.saturating_sub(1)).unwrap_or(u32::MAX - 1);
        let records = vec![Record::Keys { sign_sk, dh_sk }, Record::Boot { epoch }];
        Ok((
            PgDirectory {
                config,
                target,
                client: Some(client),
                failed_at: None,
            },
            records,
        ))
    }

    /// Where the database is (`user@host:port/db`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The connection, made again if it was lost (at most one attempt a second).
    fn client(&mut self) -> Result<&mut Client, DirectoryError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            if self
                .failed_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                return Err(DirectoryError(format!("database {} is down", self.target)));
            }
            match block(self.config.connect(NoTls)) {
                Ok((client, connection)) => {
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::warn!("database connection closed: {}", explain(&e));
                        }
                    });
                    self.failed_at = None;
                    self.client = Some(client);
                }
                Err(e) => {
                    self.failed_at = Some(Instant::now());
                    return Err(DirectoryError(format!(
                        "cannot reach the database {}: {}",
                        self.target,
                        explain(&e)
                    )));
                }
            }
        }
        self.client
            .as_mut()
            .ok_or_else(|| DirectoryError("no database connection".into()))
    }

    /// Runs `attempt` (one transaction) until it commits, again after a serialization
    /// failure or a deadlock, at most [`RETRIES`] times.
    fn retrying<T>(
        &mut self,
        mut attempt: impl FnMut(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, DirectoryError> {
        let mut last = None;
        for _ in 0..RETRIES {
            match attempt(self.client()?) {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) => last = Some(e),
                Err(e) => return Err(self.failed(&e)),
            }
        }
        Err(match last {
            Some(e) => self.failed(&e),
            None => DirectoryError("too much contention".into()),
        })
    }

    fn failed(&self, e: &tokio_postgres::Error) -> DirectoryError {
        DirectoryError(format!("database {}: {}", self.target, explain(e)))
    }
}

async fn migrate(client: &mut Client, target: &str) -> Result<(), RuntimeError> {
    let fail = |e: tokio_postgres::Error| {
        RuntimeError::Fatal(format!(
            "database {target}: cannot set up the schema: {}",
            explain(&e)
        ))
    };
    let tx = client.transaction().await.map_err(fail)?;
    // One migrator at a time, whichever server starts first.
    tx.execute("SELECT pg_advisory_xact_lock(7584)", &[])
        .await
        .map_err(fail)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS p2pchat_schema (version INT NOT NULL)")
        .await
        .map_err(fail)?;
    let found: Option<i32> = tx
        .query_opt("SELECT max(version) FROM p2pchat_schema", &[])
        .await
        .map_err(fail)?
        .and_then(|r| r.get(0));
    let found = found.unwrap_or(0);
    if found > PG_SCHEMA_VERSION {
        return Err(RuntimeError::Fatal(format!(
            "database {target} has schema version {found}, newer than this p2pchat knows \
             ({PG_SCHEMA_VERSION}): upgrade p2pchat"
        )));
    }
    if found < 1 {
        tx.batch_execute(MIGRATION_1).await.map_err(fail)?;
        tx.execute("INSERT INTO p2pchat_schema (version) VALUES (1)", &[])
            .await
            .map_err(fail)?;
    }
    if found < 2 {
        tx.batch_execute(MIGRATION_2).await.map_err(fail)?;
        tx.execute("INSERT INTO p2pchat_schema (version) VALUES (2)", &[])
            .await
            .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)?;
    Ok(())
}

/// The cap and queue figures one admission depends on.
struct Load {
    queue_len: i64,
    me_queued: bool,
    live: i64,
    waiting: i64,
}

const LOAD: &str = "SELECT
    (SELECT count(*) FROM queue),
    EXISTS (SELECT 1 FROM queue WHERE node_id = $1),
    (SELECT count(*) FROM leases WHERE node_id <> $1 AND last_poll_ms > $2),
    (SELECT count(*) FROM queue q WHERE q.node_id <> $1
        AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.node_id = q.node_id))";

async fn load(
    c: &impl tokio_postgres::GenericClient,
    me: Option<NodeId>,
    lease_start: i64,
) -> Result<Load, tokio_postgres::Error> {
    let me = me.map_or(-1, |id| i64::from(id.0));
    let r = c.query_one(LOAD, &[&me, &lease_start]).await?;
    Ok(Load {
        queue_len: r.get(0),
        me_queued: r.get(1),
        live: r.get(2),
        waiting: r.get(3),
    })
}

fn refusal(l: &Load, cfg: &AuthConfig) -> Option<AuthError> {
    if l.queue_len >= cfg.queue_limit as i64 && !l.me_queued {
        return Some(AuthError::QueueFull);
    }
    (l.live + l.waiting >= cfg.max_nodes as i64).then_some(AuthError::NetworkFull)
}

/// `me` holds a lease from `t` (with its record) and no longer waits in the queue.
async fn go_live(
    tx: &Transaction<'_>,
    me: i64,
    t: i64,
    info: &[u8],
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO leases (node_id, last_poll_ms, info) VALUES ($1, $2, $3) \
         ON CONFLICT (node_id) DO UPDATE SET last_poll_ms = $2, info = $3",
        &[&me, &t, &info],
    )
    .await?;
    tx.execute("DELETE FROM queue WHERE node_id = $1", &[&me])
        .await?;
    Ok(())
}

/// One admission, inside a serializable transaction (see [`Directory::admit`]).
async fn admit_tx(
    tx: &Transaction<'_>,
    now: Now,
    cfg: &AuthConfig,
    ask: &Ask<'_>,
    issue: &mut dyn FnMut(NodeId) -> Cert,
) -> Result<Result<Admitted, AuthError>, tokio_postgres::Error> {
    let t = ms(now.wall_ms);
    let lease = dur_ms(cfg.lease);
    let l = load(tx, ask.existing(), t - lease).await?;
    if let Some(e) = refusal(&l, cfg) {
        return Ok(Err(e));
    }
    let id = match ask.seat {
        Seat::Device(id) => {
            let row = tx
                .query_opt(
                    "SELECT revoked FROM devices WHERE node_id = $1 AND user_name = $2",
                    &[&i64::from(id.0), &ask.user],
                )
                .await?;
            match row.map(|r| r.get::<_, bool>(0)) {
                None => return Ok(Err(AuthError::BadCredentials)),
                Some(true) => return Ok(Err(AuthError::DeviceRevoked)),
                Some(false) => {}
            }
            // A device from before devices were known is claimed by its first signin.
            tx.execute(
                "UPDATE devices SET sign_pk = $2 WHERE node_id = $1 AND sign_pk IS NULL",
                &[&i64::from(id.0), &&ask.key[..]],
            )
            .await?;
            id
        }
        Seat::NewAccount { hash } => {
            let row = tx
                .query_opt(
                    "INSERT INTO accounts (user_name, node_id, hash, signup_key, created_ms) \
                     VALUES ($1, nextval('node_ids'), $2, $3, $4) \
                     ON CONFLICT (user_name) DO NOTHING RETURNING node_id",
                    &[&ask.user, &hash, &&ask.key[..], &t],
                )
                .await?;
            let Some(r) = row else {
                return Ok(Err(AuthError::UsernameTaken));
            };
            let raw: i64 = r.get(0);
            tx.execute(
                "INSERT INTO devices (node_id, user_name, sign_pk, created_ms) \
                 VALUES ($1, $2, $3, $4)",
                &[&raw, &ask.user, &&ask.key[..], &t],
            )
            .await?;
            node_id(raw)?
        }
        Seat::NewDevice { max } => {
            let active: i64 = tx
                .query_one(
                    "SELECT count(*) FROM devices WHERE user_name = $1 AND NOT revoked",
                    &[&ask.user],
                )
                .await?
                .get(0);
            if active >= max as i64 {
                return Ok(Err(AuthError::TooManyDevices(max as u32)));
            }
            let raw: i64 = tx
                .query_one(
                    "INSERT INTO devices (node_id, user_name, sign_pk, created_ms) \
                     VALUES (nextval('node_ids'), $1, $2, $3) RETURNING node_id",
                    &[&ask.user, &&ask.key[..], &t],
                )
                .await?
                .get(0);
            node_id(raw)?
        }
    };
    let me = i64::from(id.0);
    let others: i64 = tx
        .query_one(
            "SELECT count(*) FROM leases WHERE node_id <> $1 AND last_poll_ms > $2",
            &[&me, &(t - 2 * lease)],
        )
        .await?
        .get(0);
    let warming_up = ask.warming_up && {
        let users: i64 = tx
            .query_one(
                "SELECT count(*) FROM (SELECT 1 FROM accounts LIMIT 2) a",
                &[],
            )
            .await?
            .get(0);
        users > 1
    };
    let first = others == 0 && !warming_up;
    let cert = issue(id);
    let info = encode_info(&PeerInfo {
        node_id: id,
        user: ask.user.to_string(),
        addr: ask.from,
        cert: cert.clone(),
    });
    if first {
        go_live(tx, me, t, &info).await?;
    } else {
        tx.execute(
            "INSERT INTO queue (node_id, info, queued_ms, offered_ms) VALUES ($1, $2, $3, NULL) \
             ON CONFLICT (node_id) DO UPDATE SET info = $2, queued_ms = $3, offered_ms = NULL",
            &[&me, &info, &t],
        )
        .await?;
    }
    Ok(Ok(Admitted {
        node_id: id,
        first,
        cert,
    }))
}

impl Directory for PgDirectory {
    fn account(&mut self, user: &str) -> Result<Option<Account>, DirectoryError> {
        let c = self.client()?;
        let r = block(async {
            let Some(row) = c
                .query_opt("SELECT hash FROM accounts WHERE user_name = $1", &[&user])
                .await?
            else {
                return Ok(None);
            };
            let rows = c
                .query(
                    "SELECT node_id, sign_pk, revoked FROM devices WHERE user_name = $1 \
                     ORDER BY node_id",
                    &[&user],
                )
                .await?;
            let mut devices = Vec::with_capacity(rows.len());
            for d in &rows {
                devices.push(Device {
                    node_id: node_id(d.get(0))?,
                    key: d.get::<_, Option<&[u8]>>(1).and_then(key32),
                    revoked: d.get(2),
                });
            }
            Ok::<_, tokio_postgres::Error>(Some(Account {
                hash: row.get(0),
                devices,
            }))
        });
        r.map_err(|e| self.failed(&e))
    }

    fn knows(&mut self, id: NodeId) -> Result<bool, DirectoryError> {
        let c = self.client()?;
        let r = block(c.query_opt(
            "SELECT 1 FROM devices WHERE node_id = $1 AND NOT revoked",
            &[&i64::from(id.0)],
        ));
        r.map(|row| row.is_some()).map_err(|e| self.failed(&e))
    }

    fn devices(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        user: &str,
    ) -> Result<Vec<DeviceInfo>, DirectoryError> {
        let lease_start = ms(now.wall_ms) - dur_ms(cfg.lease);
        let c = self.client()?;
        let r = block(c.query(
            "SELECT d.node_id, d.revoked, l.last_poll_ms FROM devices d \
             LEFT JOIN leases l ON l.node_id = d.node_id \
             WHERE d.user_name = $1 ORDER BY d.node_id",
            &[&user],
        ));
        let rows = r.map_err(|e| self.failed(&e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let polled: Option<i64> = row.get(2);
            out.push(DeviceInfo {
                node_id: node_id(row.get(0)).map_err(|e| self.failed(&e))?,
                online: polled.is_some_and(|p| p > lease_start),
                last_seen_ms: polled.map_or(0, |p| u64::try_from(p).unwrap_or(0)),
                revoked: row.get(1),
            });
        }
        Ok(out)
    }

    fn revoke(&mut self, user: &str, id: NodeId) -> Result<bool, DirectoryError> {
        let me = i64::from(id.0);
        let user = user.to_string();
        self.retrying(|c| {
            block(async {
                let tx = c.transaction().await?;
                let n = tx
                    .execute(
                        "UPDATE devices SET revoked = true WHERE node_id = $1 AND user_name = $2",
                        &[&me, &user],
                    )
                    .await?;
                if n > 0 {
                    tx.execute("DELETE FROM leases WHERE node_id = $1", &[&me])
                        .await?;
                    tx.execute("DELETE FROM queue WHERE node_id = $1", &[&me])
                        .await?;
                }
                tx.commit().await?;
                Ok(n > 0)
            })
        })
    }

    fn check(&mut self, now: Now, cfg: &AuthConfig, me: Option<NodeId>) -> Decision<()> {
        let lease_start = ms(now.wall_ms) - dur_ms(cfg.lease);
        let c = self.client()?;
        match block(load(&*c, me, lease_start)) {
            Ok(l) => Ok(refusal(&l, cfg).map_or(Ok(()), Err)),
            Err(e) => Err(self.failed(&e)),
        }
    }

    fn admit(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        ask: &Ask<'_>,
        issue: &mut dyn FnMut(NodeId) -> Cert,
    ) -> Decision<Admitted> {
        self.retrying(|c| {
            block(async {
                let tx = c
                    .build_transaction()
                    .isolation_level(IsolationLevel::Serializable)
                    .start()
                    .await?;
                let decided = admit_tx(&tx, now, cfg, ask, &mut *issue).await?;
                tx.commit().await?;
                Ok(decided)
            })
        })
    }

    fn poll(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        member: &PeerInfo,
    ) -> Result<Vec<PeerInfo>, DirectoryError> {
        let t = ms(now.wall_ms);
        let me = i64::from(member.node_id.0);
        let info = encode_info(member);
        let due = t - dur_ms(cfg.reoffer_after);
        let batch = i64::try_from(cfg.fetch_batch).unwrap_or(i64::MAX);
        self.retrying(|c| {
            block(async {
                let tx = c.transaction().await?;
                // A newcomer that polls is in the network: it no longer waits.
                go_live(&tx, me, t, &info).await?;
                let rows = tx
                    .query(
                        "UPDATE queue SET offered_ms = $1 WHERE node_id IN ( \
                             SELECT node_id FROM queue \
                             WHERE offered_ms IS NULL OR offered_ms <= $2 \
                             ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED) \
                         RETURNING info, seq",
                        &[&t, &due, &batch],
                    )
                    .await?;
                tx.commit().await?;
                let mut offered: Vec<(i64, PeerInfo)> = rows
                    .iter()
                    .filter_map(|r| Some((r.get(1), decode_info(r.get(0))?)))
                    .collect();
                offered.sort_by_key(|(seq, _)| *seq);
                Ok(offered.into_iter().map(|(_, p)| p).collect())
            })
        })
    }

    fn lookup(
        &mut self,
        now: Now,
        cfg: &AuthConfig,
        asker: NodeId,
        user: &str,
    ) -> Result<Option<Vec<PeerInfo>>, DirectoryError> {
        let lease_start = ms(now.wall_ms) - dur_ms(cfg.lease);
        let asker = i64::from(asker.0);
        let c = self.client()?;
        let r = block(async {
            let member = c
                .query_opt("SELECT 1 FROM leases WHERE node_id = $1", &[&asker])
                .await?;
            if member.is_none() {
                return Ok(None);
            }
            let rows = c
                .query(
                    "SELECT l.info FROM devices d JOIN leases l ON l.node_id = d.node_id \
                     WHERE d.user_name = $1 AND NOT d.revoked AND l.last_poll_ms > $2",
                    &[&user, &lease_start],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>(Some(
                rows.iter().filter_map(|r| decode_info(r.get(0))).collect(),
            ))
        });
        r.map_err(|e| self.failed(&e))
    }

    fn expire(&mut self, now: Now, cfg: &AuthConfig) -> Result<(), DirectoryError> {
        let t = ms(now.wall_ms);
        let leases_before = t - 4 * dur_ms(cfg.lease);
        let queued_before = t - dur_ms(cfg.pending_ttl);
        let c = self.client()?;
        let r = block(async {
            c.execute(
                "DELETE FROM leases WHERE last_poll_ms <= $1",
                &[&leases_before],
            )
            .await?;
            c.execute("DELETE FROM queue WHERE queued_ms <= $1", &[&queued_before])
                .await
        });
        r.map(|_| ()).map_err(|e| self.failed(&e))
    }

    fn counts(&mut self, now: Now, cfg: &AuthConfig) -> Result<Counts, DirectoryError> {
        let lease_start = ms(now.wall_ms) - dur_ms(cfg.lease);
        let c = self.client()?;
        let r = block(c.query_one(
            "SELECT (SELECT count(*) FROM accounts), \
                    (SELECT count(*) FROM leases WHERE last_poll_ms > $1), \
                    (SELECT count(*) FROM queue)",
            &[&lease_start],
        ));
        match r {
            Ok(row) => {
                let n = |i: usize| usize::try_from(row.get::<_, i64>(i)).unwrap_or(0);
                Ok(Counts {
                    users: n(0),
                    live: n(1),
                    queued: n(2),
                })
            }
            Err(e) => Err(self.failed(&e)),
        }
    }
}
