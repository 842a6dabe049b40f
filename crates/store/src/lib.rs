//! # p2pchat-store
//!
//! Durable state for p2pchat: one SQLite file per process (a node or the auth server), holding
//! the [`Record`]s its state machine asked to persist, in order. Replaying them restores the
//! machine (identity, sequence counters, history, outbox, peers, accounts).
//!
//! - WAL journal with `synchronous=FULL`: a committed batch survives a crash and a power cut.
//! - The file is locked for exclusive use while open: a second process gets a clear error.
//! - The schema carries a version (`PRAGMA user_version`) and forward migrations; a file from a
//!   newer version, a corrupt file, or one that is not a database is refused, never rewritten.
//! - [`Store::in_memory`] is the twin for tests.

#![forbid(unsafe_code)]

use p2pchat_core::Record;
use rusqlite::{params, Connection, OpenFlags};
use std::path::Path;
use thiserror::Error;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 6;

/// Storage failures. All are local faults: report and stop, never wipe.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The file is not a p2pchat database, or is damaged.
    #[error("{path}: not a p2pchat database or damaged ({detail}); refusing to touch it")]
    Corrupt {
        /// The file.
        path: String,
        /// What SQLite or the decoder said.
        detail: String,
    },
    /// Another process has the file open.
    #[error("{0}: in use by another process (is another p2pchat running with this data dir?)")]
    Locked(String),
    /// Written by a newer p2pchat.
    #[error("{path}: schema version {found} is newer than this p2pchat supports ({SCHEMA_VERSION}); upgrade p2pchat")]
    TooNew {
        /// The file.
        path: String,
        /// Its version.
        found: i64,
    },
    /// Written by a p2pchat from before security (format 1): its peers have no certificates
    /// and its messages no signatures, so it cannot be carried over.
    #[error("{path}: written by an older p2pchat (format {found}, before keys and certificates); move it away to start this identity afresh")]
    TooOld {
        /// The file.
        path: String,
        /// Its version.
        found: i64,
    },
    /// Any other SQLite failure (disk full, permissions...).
    #[error("storage error")]
    Sqlite(#[from] rusqlite::Error),
}

/// An open store.
pub struct Store {
    conn: Connection,
    path: String,
    /// Record ids of group messages by author, indexed by sequence number - 1 (what lets
    /// old messages be read back instead of kept in memory, without a second B-tree write).
    groups: std::collections::HashMap<u32, Vec<i64>>,
    /// Group records known to this handle (loaded, appended, or covered by the summary it
    /// started from), and how many of them the last saved summary covers.
    group_records: u64,
    summarized: u64,
    /// Searchable messages appended since the search index was last brought up to date
    /// (1 at open: the last session may have left some; a search first indexes them).
    unindexed: usize,
}

fn classify(path: &str, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            StoreError::Locked(path.to_string())
        }
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_string(),
            detail: e.to_string(),
        },
        _ => StoreError::Sqlite(e),
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path`, locks it, and migrates it forward.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(|e| classify(&shown, e))?;
        Self::init(conn, shown, true)
    }

    /// A store that lives in memory only (tests).
    pub fn in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        Self::init(conn, ":memory:".into(), false)
    }

    fn init(conn: Connection, path: String, durable: bool) -> Result<Store, StoreError> {
        let fail = |e| classify(&path, e);
        if durable {
            conn.busy_timeout(std::time::Duration::from_millis(200))
                .map_err(fail)?;
            // Exclusive locking: the lock is taken by the first write and held until close.
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
                .map_err(fail)?;
            let mode: String = conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(fail)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Corrupt {
                    path,
                    detail: format!("could not enable WAL (journal mode {mode})"),
                });
            }
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(fail)?;
            // The log is appended and read once at start: a small page cache (1 MiB, not the
            // default 2 MiB) keeps a node's memory low.
            conn.pragma_update(None, "cache_size", -1024)
                .map_err(fail)?;
            // Take the exclusive lock now, not at the first write.
            conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")
                .map_err(fail)?;
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found: version,
            });
        }
        if version == 1 {
            return Err(StoreError::TooOld {
                path,
                found: version,
            });
        }
        let mut store = Store {
            conn,
            path,
            groups: Default::default(),
            group_records: 0,
            summarized: 0,
            unindexed: 1,
        };
        store.migrate(version)?;
        Ok(store)
    }

    fn migrate(&mut self, from: i64) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| classify(&path, e))?;
        if from < 1 {
            let has_tables: i64 = tx
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type='table'",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| classify(&path, e))?;
            if has_tables > 0 {
                return Err(StoreError::Corrupt {
                    path,
                    detail: "an unversioned database with tables of its own".into(),
                });
            }
            tx.execute_batch(
                "CREATE TABLE records (
                    id   INTEGER PRIMARY KEY AUTOINCREMENT,
                    kind TEXT NOT NULL,
                    body BLOB NOT NULL
                );
                PRAGMA user_version = 3;",
            )
            .map_err(|e| classify(&path, e))?;
        } else if from < 3 {
            legacy::add_times(&tx, &path)?;
            tx.execute_batch("PRAGMA user_version = 3;")
                .map_err(|e| classify(&path, e))?;
        }
        if from < 4 {
            // Version 4: a full-text index over the texts of group and private messages.
            // Contentless (the texts stay in `records` only); the other party of a private
            // message is a token of its own (`p17`) in `peer`. `texts_indexed` is how far
            // `records` is indexed: the index follows in batches, not a segment per commit.
            tx.execute_batch(
                "CREATE VIRTUAL TABLE texts USING fts5(text, peer, content = '',
                     contentless_delete = 1, tokenize = 'unicode61');
                 CREATE TABLE texts_indexed (upto INTEGER NOT NULL);
                 INSERT INTO texts_indexed VALUES (0);",
            )
            .map_err(|e| classify(&path, e))?;
            index_since(&tx).map_err(|e| classify(&path, e))?;
            tx.execute_batch("PRAGMA user_version = 4;")
                .map_err(|e| classify(&path, e))?;
        }
        if from < 5 {
            // Version 5: a summary of the group history to start from (see `summary.rs`),
            // and an index of the other records (partial: a group record adds no B-tree
            // entry) so that a start reads them without scanning the whole history.
            tx.execute_batch(
                "CREATE TABLE summary (upto INTEGER NOT NULL, node BLOB NOT NULL,
                     dots BLOB NOT NULL);
                 CREATE INDEX records_other ON records (id) WHERE kind != 'group';
                 PRAGMA user_version = 5;",
            )
            .map_err(|e| classify(&path, e))?;
        }
        if from < 6 {
            // Version 6: devices. New kinds of records (`device`, `revoked`, `private_copy`)
            // that an older build cannot read: the version makes it refuse the file clearly.
            tx.execute_batch("PRAGMA user_version = 6;")
                .map_err(|e| classify(&path, e))?;
        }
        // Future migrations go here: `if from < 7 { ... PRAGMA user_version = 7; }`.
        tx.commit().map_err(|e| classify(&path, e))?;
        Ok(())
    }

    /// Every record but the group messages, in the order it was appended; the group messages
    /// come from [`Store::load_groups`]. What a node loads at start: its history does not
    /// have to fit in memory at once.
    pub fn load_without_groups(&mut self) -> Result<Vec<Record>, StoreError> {
        let path = self.path.clone();
        let fail = |e| classify(&path, e);
        let mut stmt = self
            .conn
            .prepare("SELECT id, body FROM records WHERE kind != 'group' ORDER BY id")
            .map_err(fail)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(fail)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row.map_err(fail)?;
            out.push(decode(&path, id, &body)?);
        }
        Ok(out)
    }

    /// The group messages in the order they were appended, handed to `each` in chunks of at
    /// most `chunk` (the first chunk is the oldest); indexes them for [`Store::group`].
    pub fn load_groups(
        &mut self,
        chunk: usize,
        mut each: impl FnMut(Vec<p2pchat_proto::GroupMsg>),
    ) -> Result<(), StoreError> {
        let mut after = 0;
        loop {
            let msgs = self.load_groups_after(&mut after, chunk)?;
            if msgs.is_empty() {
                return Ok(());
            }
            each(msgs);
        }
    }

    /// The next at most `chunk` group messages after record `after` (0: from the first),
    /// moving `after` past them; empty at the end. Indexes them for [`Store::group`].
    pub fn load_groups_after(
        &mut self,
        after: &mut i64,
        chunk: usize,
    ) -> Result<Vec<p2pchat_proto::GroupMsg>, StoreError> {
        let path = self.path.clone();
        let fail = |e| classify(&path, e);
        let mut batch = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT id, body FROM records WHERE kind = 'group' AND id > ?1
                     ORDER BY id LIMIT ?2",
                )
                .map_err(fail)?;
            let limit = i64::try_from(chunk.max(1)).unwrap_or(i64::MAX);
            let mut rows = stmt.query(params![*after, limit]).map_err(fail)?;
            while let Some(row) = rows.next().map_err(fail)? {
                let id: i64 = row.get(0).map_err(fail)?;
                // Decoded straight from SQLite's buffer: no copy of the body.
                let body =
                    row.get_ref(1)
                        .map_err(fail)?
                        .as_blob()
                        .map_err(|e| StoreError::Corrupt {
                            path: path.clone(),
                            detail: format!("record {id}: {e}"),
                        })?;
                *after = id;
                match decode(&path, id, body)? {
                    Record::Group(m) => batch.push((id, m)),
                    _ => {
                        return Err(StoreError::Corrupt {
                            path: path.clone(),
                            detail: format!("record {id}: a group record that is not one"),
                        })
                    }
                }
            }
        }
        let mut msgs = Vec::with_capacity(batch.len());
        for (id, m) in batch {
            self.index_group(m.author.0, m.seq, id);
            msgs.push(m);
        }
        Ok(msgs)
    }

    /// Every record, in the order it was appended.
    pub fn load(&mut self) -> Result<Vec<Record>, StoreError> {
        let path = self.path.clone();
        let fail = |e| classify(&path, e);
        let mut out = Vec::new();
        let mut ids = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT id, body FROM records ORDER BY id")
                .map_err(fail)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                .map_err(fail)?;
            for row in rows {
                let (id, body) = row.map_err(fail)?;
                let record = decode(&path, id, &body)?;
                if let Record::Group(m) = &record {
                    ids.push((m.author.0, m.seq, id));
                }
                out.push(record);
            }
        }
        for (author, seq, id) in ids {
            self.index_group(author, seq, id);
        }
        Ok(out)
    }

    /// Appends records in one transaction: all of them are durable when this returns, or none.
    pub fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let fail = |e| classify(&path, e);
        let mut added = Vec::new();
        // BEGIN and COMMIT as cached statements: `Connection::transaction` parses both anew
        // each time, a noticeable part of a one-message commit.
        self.conn
            .prepare_cached("BEGIN")
            .and_then(|mut s| s.execute([]))
            .map_err(fail)?;
        let written = (|| {
            let mut stmt = self
                .conn
                .prepare_cached("INSERT INTO records (kind, body) VALUES (?1, ?2)")?;
            for r in records {
                let body = postcard::to_allocvec(r)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                stmt.execute(params![kind(r), body])?;
                let id = self.conn.last_insert_rowid();
                if let Record::Group(m) = r {
                    added.push((m.author.0, m.seq, id));
                }
                if searchable(r).is_some() {
                    self.unindexed += 1;
                }
            }
            if self.unindexed >= INDEX_BATCH {
                index_since(&self.conn)?;
                self.unindexed = 0;
            }
            self.conn.prepare_cached("COMMIT")?.execute([])
        })();
        if let Err(e) = written {
            // Leave no transaction open: the next append must start clean.
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(fail(e));
        }
        for (author, seq, id) in added {
            self.index_group(author, seq, id);
        }
        Ok(())
    }

    /// Remembers where group message `(author, seq)` is (only in order: 8 bytes a message).
    fn index_group(&mut self, author: u32, seq: u64, id: i64) {
        self.group_records += 1;
        let ids = self.groups.entry(author).or_default();
        if ids.len() as u64 + 1 == seq {
            ids.push(id);
        }
    }

    /// The group message `(author, seq)`, if stored (read back on demand: a node keeps only
    /// its recent history in memory). Covers what this handle loaded or appended.
    pub fn group(
        &self,
        author: u32,
        seq: u64,
    ) -> Result<Option<p2pchat_proto::GroupMsg>, StoreError> {
        let fail = |e| classify(&self.path, e);
        let Some(id) = usize::try_from(seq)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .and_then(|i| self.groups.get(&author)?.get(i).copied())
        else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT body FROM records WHERE id = ?1")
            .map_err(fail)?;
        let mut rows = stmt.query(params![id]).map_err(fail)?;
        let Some(row) = rows.next().map_err(fail)? else {
            return Ok(None);
        };
        let body: Vec<u8> = row.get(0).map_err(fail)?;
        match postcard::from_bytes::<Record>(&body) {
            Ok(Record::Group(m)) => Ok(Some(m)),
            _ => Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!("group record {author}.{seq} does not decode"),
            }),
        }
    }

    /// The stored group and private messages whose text has every word of `query` (as a
    /// word or the start of one, letters and digits only, case and accents ignored), oldest
    /// first, the newest `limit` of them; only the private conversation with `peer` when
    /// given. Read from the full-text index: the cost follows the matches, not the history.
    pub fn search(
        &mut self,
        query: &str,
        peer: Option<u32>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let path = self.path.clone();
        let fail = |e| classify(&path, e);
        // Each word quoted (so nothing the user types is FTS syntax) and matched as a prefix
        // of a word of the text.
        let mut terms: Vec<String> = query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| format!("text : \"{w}\"*"))
            .collect();
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        if let Some(p) = peer {
            terms.push(format!("peer : \"p{p}\""));
        }
        if self.unindexed > 0 {
            let tx = self.conn.transaction().map_err(fail)?;
            index_since(&tx).map_err(fail)?;
            tx.commit().map_err(fail)?;
            self.unindexed = 0;
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT records.id, records.body FROM texts JOIN records ON records.id = texts.rowid
                 WHERE texts MATCH ?1 ORDER BY texts.rowid DESC LIMIT ?2",
            )
            .map_err(fail)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![terms.join(" AND "), limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(fail)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row.map_err(fail)?;
            let record = postcard::from_bytes(&body).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!("record {id}: {e}"),
            })?;
            out.push(record);
        }
        out.reverse();
        Ok(out)
    }

    /// Number of stored records.
    pub fn len(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .map_err(|e| classify(&self.path, e))?;
        Ok(n as usize)
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}

/// Format 2: messages without their writing time. Read back and written again with time 0
/// ("unknown"), which also keeps their signatures valid (see `GroupMsg::signed_bytes`).
mod legacy {
    use super::{classify, StoreError};
    use p2pchat_core::Record;
    use p2pchat_proto::{Dot, GroupMsg, NodeId, PrivateMsg};
    use rusqlite::params;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct GroupV2 {
        author: NodeId,
        seq: u64,
        lamport: u64,
        deps: Vec<Dot>,
        text: String,
        #[serde(with = "serde_big_array::BigArray")]
        sig: [u8; 64],
    }

    #[derive(Deserialize)]
    struct PrivateV2 {
        from: NodeId,
        to: NodeId,
        seq: u64,
        seen: u64,
        text: String,
    }

    /// A format-2 record of a message kind, as this build's record.
    fn upgrade(kind: &str, body: &[u8]) -> Option<Record> {
        // A postcard enum is its variant index (a varint) followed by the variant's fields.
        let (_, fields) = postcard::take_from_bytes::<u32>(body).ok()?;
        if kind == "group" {
            let g: GroupV2 = postcard::from_bytes(fields).ok()?;
            return Some(Record::Group(GroupMsg {
                author: g.author,
                seq: g.seq,
                lamport: g.lamport,
                deps: g.deps,
                text: g.text,
                time_ms: 0,
                sig: g.sig,
            }));
        }
        let p: PrivateV2 = postcard::from_bytes(fields).ok()?;
        let msg = PrivateMsg {
            from: p.from,
            to: p.to,
            seq: p.seq,
            seen: p.seen,
            text: p.text,
            time_ms: 0,
        };
        Some(match kind {
            "private_out" => Record::PrivateOut(msg),
            _ => Record::PrivateIn(msg),
        })
    }

    /// Rewrites every message record of a format-2 file (inside the caller's transaction).
    pub(super) fn add_times(tx: &rusqlite::Transaction, path: &str) -> Result<(), StoreError> {
        let fail = |e| classify(path, e);
        let rows: Vec<(i64, String, Vec<u8>)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, kind, body FROM records
                     WHERE kind IN ('group', 'private_out', 'private_in')",
                )
                .map_err(fail)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(fail)?;
            rows.collect::<Result<_, _>>().map_err(fail)?
        };
        let mut update = tx
            .prepare("UPDATE records SET body = ?1 WHERE id = ?2")
            .map_err(fail)?;
        for (id, kind, body) in rows {
            let bytes = upgrade(&kind, &body)
                .and_then(|r| postcard::to_allocvec(&r).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    path: path.to_string(),
                    detail: format!("record {id} ({kind}) does not decode as format 2"),
                })?;
            update.execute(params![bytes, id]).map_err(fail)?;
        }
        Ok(())
    }
}

/// A record read back.
fn decode(path: &str, id: i64, body: &[u8]) -> Result<Record, StoreError> {
    postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
        path: path.to_string(),
        detail: format!("record {id}: {e}"),
    })
}

/// Messages appended between two updates of the search index (one FTS segment per batch
/// instead of one per commit; a search first indexes what is left).
const INDEX_BATCH: usize = 256;

/// The text a record adds to the search index, and the other party of a private message.
fn searchable(r: &Record) -> Option<(&str, Option<u32>)> {
    match r {
        // (Merge messages have no text: nothing to find.)
        Record::Group(m) if !m.text.is_empty() => Some((&m.text, None)),
        Record::PrivateOut(m) => Some((&m.text, Some(m.to.0))),
        Record::PrivateIn(m) => Some((&m.text, Some(m.from.0))),
        _ => None,
    }
}

/// Indexes the messages appended since the index was last brought up to date, inside the
/// caller's transaction. A record that does not decode is left out of the index (`load`
/// reports it).
fn index_since(conn: &Connection) -> rusqlite::Result<()> {
    let upto: i64 = conn.query_row("SELECT upto FROM texts_indexed", [], |r| r.get(0))?;
    let mut read = conn.prepare_cached(
        "SELECT id, body FROM records
         WHERE id > ?1 AND kind IN ('group', 'private_in', 'private_out') ORDER BY id",
    )?;
    let mut write =
        conn.prepare_cached("INSERT INTO texts (rowid, text, peer) VALUES (?1, ?2, ?3)")?;
    let rows = read.query_map([upto], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    for row in rows {
        let (id, body) = row?;
        let Ok(record) = postcard::from_bytes::<Record>(&body) else {
            continue;
        };
        if let Some((text, peer)) = searchable(&record) {
            write.execute(params![id, text, peer.map(|p| format!("p{p}"))])?;
        }
    }
    conn.execute(
        "UPDATE texts_indexed SET upto = (SELECT coalesce(max(id), 0) FROM records)",
        [],
    )?;
    Ok(())
}

fn kind(r: &Record) -> &'static str {
    match r {
        Record::Identity { .. } => "identity",
        Record::Group(_) => "group",
        Record::PrivateOut(_) => "private_out",
        Record::PrivateIn(_) => "private_in",
        Record::PrivateAcked { .. } => "private_acked",
        Record::Peer(_) => "peer",
        Record::User { .. } => "user",
        Record::Keys { .. } => "keys",
        Record::Boot { .. } => "boot",
        Record::AuthKey { .. } => "auth_key",
        Record::OwnCert(_) => "own_cert",
        Record::MailboxPut(_) => "mailbox_put",
        Record::MailboxDrop { .. } => "mailbox_drop",
        Record::Device { .. } => "device",
        Record::Revoked(_) => "revoked",
        Record::PrivateCopy { .. } => "private_copy",
    }
}

#[cfg(test)]
mod tests;

mod summary;
pub use summary::Summary;
