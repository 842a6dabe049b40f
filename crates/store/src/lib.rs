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
pub const SCHEMA_VERSION: i64 = 4;

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
        // Future migrations go here: `if from < 5 { ... PRAGMA user_version = 5; }`.
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
            let rows = stmt
                .query_map(params![*after, limit], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .map_err(fail)?;
            for row in rows {
                let (id, body) = row.map_err(fail)?;
                *after = id;
                match decode(&path, id, &body)? {
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
                let record = postcard::from_bytes(&body).map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    detail: format!("record {id}: {e}"),
                })?;
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pchat_proto::{Dot, GroupMsg, NodeId};

    fn sample() -> Vec<Record> {
        vec![
            Record::Identity {
                node_id: NodeId(3),
                user: "carol".into(),
            },
            Record::Group(GroupMsg {
                author: NodeId(3),
                seq: 1,
                lamport: 1,
                deps: vec![],
                text: "hi".into(),
                time_ms: 1,
                sig: [0; 64],
            }),
        ]
    }

    fn group(author: u32, seq: u64, text: &str) -> Record {
        Record::Group(GroupMsg {
            author: NodeId(author),
            seq,
            lamport: seq,
            deps: vec![],
            text: text.into(),
            time_ms: 1,
            sig: [0; 64],
        })
    }

    fn private(from: u32, to: u32, seq: u64, text: &str) -> p2pchat_proto::PrivateMsg {
        p2pchat_proto::PrivateMsg {
            from: NodeId(from),
            to: NodeId(to),
            seq,
            seen: 0,
            text: text.into(),
            time_ms: 1,
        }
    }

    fn texts(records: &[Record]) -> Vec<&str> {
        records
            .iter()
            .map(|r| match r {
                Record::Group(m) => m.text.as_str(),
                Record::PrivateIn(m) | Record::PrivateOut(m) => m.text.as_str(),
                _ => "?",
            })
            .collect()
    }

    #[test]
    fn search_finds_words_and_word_starts_newest_last_in_a_conversation_or_everywhere() {
        let mut s = Store::in_memory().expect("open");
        s.append(&[
            group(1, 1, "Lunch at noon?"),
            group(2, 1, "lunchtime is sacred"),
            Record::PrivateOut(private(3, 2, 1, "secret lunch plan")),
            Record::PrivateIn(private(4, 3, 1, "lunch with Zoë")),
            group(1, 2, ""),
            group(2, 2, "dinner"),
        ])
        .expect("append");
        assert_eq!(
            texts(&s.search("LUNCH", None, 10).expect("search")),
            [
                "Lunch at noon?",
                "lunchtime is sacred",
                "secret lunch plan",
                "lunch with Zoë"
            ]
        );
        assert_eq!(
            texts(&s.search("lunch", None, 2).expect("search")),
            ["secret lunch plan", "lunch with Zoë"],
            "the newest two"
        );
        assert_eq!(
            texts(&s.search("lunch", Some(2), 10).expect("search")),
            ["secret lunch plan"],
            "only the conversation with node 2"
        );
        assert_eq!(
            texts(&s.search("zoe lunch", None, 10).expect("search")),
            ["lunch with Zoë"],
            "every word, accents ignored"
        );
        assert!(s.search("breakfast", None, 10).expect("search").is_empty());
    }

    #[test]
    fn the_index_follows_in_batches_and_catches_up_before_a_search_and_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.db");
        {
            let mut s = Store::open(&path).expect("open");
            for i in 1..=300 {
                s.append(&[group(1, i, &format!("word{i} common"))])
                    .expect("append");
            }
            assert_eq!(s.search("common", None, 1000).expect("search").len(), 300);
            for i in 301..=310 {
                s.append(&[group(1, i, &format!("word{i} common"))])
                    .expect("append");
            }
        }
        let mut s = Store::open(&path).expect("reopen");
        s.append(&[group(1, 311, "word311 common")])
            .expect("append");
        assert_eq!(s.search("common", None, 1000).expect("search").len(), 311);
        assert_eq!(
            texts(&s.search("word305", None, 10).expect("search")),
            ["word305 common"]
        );
    }

    #[test]
    fn group_messages_load_in_chunks_apart_from_the_rest_and_are_read_back_by_dot() {
        let mut s = Store::in_memory().expect("open");
        let mut all = vec![Record::Identity {
            node_id: NodeId(3),
            user: "carol".into(),
        }];
        for i in 1..=10 {
            all.push(group(1, i, &format!("m{i}")));
        }
        all.push(Record::Boot { epoch: 2 });
        s.append(&all).expect("append");
        let mut s = {
            // A fresh handle knows nothing of where the messages are until it loads them.
            let rest = s.load_without_groups().expect("load");
            assert_eq!(rest.len(), 2);
            s
        };
        let mut chunks = Vec::new();
        s.load_groups(4, |c| chunks.push(c.len())).expect("groups");
        assert_eq!(chunks, [4, 4, 2]);
        assert_eq!(
            s.group(1, 7).expect("read").map(|m| m.text),
            Some("m7".into())
        );
    }

    #[test]
    fn hostile_search_text_is_words_not_syntax() {
        let mut s = Store::in_memory().expect("open");
        s.append(&[group(1, 1, "a \"quoted\" NEAR(thing) OR not")])
            .expect("append");
        for q in [
            "\"",
            "NEAR(",
            "* OR AND",
            "quoted\" OR \"",
            "-not",
            "^a",
            "",
            "   ",
        ] {
            s.search(q, None, 10).expect("never an error");
        }
        assert_eq!(s.search("\"quoted\"", None, 10).expect("search").len(), 1);
        assert_eq!(s.search("near thing", None, 10).expect("search").len(), 1);
    }

    #[test]
    fn a_store_from_before_the_search_index_is_indexed_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.db");
        {
            let mut s = Store::open(&path).expect("open");
            s.append(&[group(1, 1, "old news"), group(1, 2, "older news")])
                .expect("append");
        }
        {
            // As version 3 left it: no index.
            let c = Connection::open(&path).expect("raw");
            c.execute_batch("DROP TABLE texts; DROP TABLE texts_indexed; PRAGMA user_version = 3;")
                .expect("downgrade");
        }
        let mut s = Store::open(&path).expect("migrate");
        assert_eq!(s.load().expect("load").len(), 2);
        assert_eq!(
            texts(&s.search("news", None, 10).expect("search")),
            ["old news", "older news"]
        );
    }

    #[test]
    fn records_survive_reopening_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.db");
        {
            let mut s = Store::open(&path).expect("open");
            s.append(&sample()).expect("append");
        }
        let mut s = Store::open(&path).expect("reopen");
        assert_eq!(s.load().expect("load"), sample());
    }

    #[test]
    fn group_messages_are_read_back_by_dot_after_append_and_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.db");
        {
            let mut s = Store::open(&path).expect("open");
            s.append(&sample()).expect("append");
            assert_eq!(
                s.group(3, 1).expect("read").map(|m| m.text),
                Some("hi".into())
            );
            assert_eq!(s.group(3, 2).expect("read"), None);
        }
        let mut s = Store::open(&path).expect("reopen");
        assert_eq!(s.load().expect("load"), sample());
        assert_eq!(
            s.group(3, 1).expect("read").map(|m| m.text),
            Some("hi".into())
        );
    }

    #[test]
    fn a_second_process_is_refused_while_the_first_holds_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.db");
        {
            let mut s = Store::open(&path).expect("open");
            s.append(&sample()).expect("append");
        }
        // Reopening an existing file (no write yet) must already hold the lock.
        let _first = Store::open(&path).expect("open");
        match Store::open(&path) {
            Err(StoreError::Locked(_)) => {}
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("expected Locked, got a second handle"),
        }
    }

    #[test]
    fn garbage_and_newer_files_are_refused_and_left_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junk.db");
        let junk = b"this is not a database at all, just some bytes ".repeat(100);
        std::fs::write(&path, &junk).expect("write");
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read(&path).expect("read"), junk);

        let newer = dir.path().join("newer.db");
        {
            let c = Connection::open(&newer).expect("open");
            c.execute_batch("PRAGMA user_version = 99;").expect("set");
        }
        assert!(matches!(
            Store::open(&newer),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn a_format_2_file_is_migrated_and_its_messages_keep_text_and_signature() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        let identity = Record::Identity {
            node_id: NodeId(3),
            user: "carol".into(),
        };
        // Format 2 bytes: the variant index, then the fields without a time; a group
        // message's signature is its last 64 bytes.
        let mut group = postcard::to_allocvec(&1u32).expect("index");
        group.extend(
            postcard::to_allocvec(&(NodeId(3), 1u64, 5u64, Vec::<Dot>::new(), "old words"))
                .expect("fields"),
        );
        group.extend([7u8; 64]);
        let mut private = postcard::to_allocvec(&2u32).expect("index");
        private.extend(
            postcard::to_allocvec(&(NodeId(3), NodeId(4), 1u64, 0u64, "old secret"))
                .expect("fields"),
        );
        {
            let c = rusqlite::Connection::open(&path).expect("create");
            c.execute_batch(
                "CREATE TABLE records (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, body BLOB NOT NULL);
                 PRAGMA user_version = 2;",
            )
            .expect("schema 2");
            for (kind, body) in [
                ("identity", postcard::to_allocvec(&identity).expect("id")),
                ("group", group),
                ("private_out", private),
            ] {
                c.execute(
                    "INSERT INTO records (kind, body) VALUES (?1, ?2)",
                    params![kind, body],
                )
                .expect("insert");
            }
        }
        let mut s = Store::open(&path).expect("migrated");
        let records = s.load().expect("load");
        assert_eq!(records[0], identity);
        let Record::Group(g) = &records[1] else {
            panic!("{records:?}")
        };
        assert_eq!(
            (g.text.as_str(), g.time_ms, g.sig),
            ("old words", 0, [7u8; 64])
        );
        let Record::PrivateOut(p) = &records[2] else {
            panic!("{records:?}")
        };
        assert_eq!(
            (p.text.as_str(), p.to, p.time_ms),
            ("old secret", NodeId(4), 0)
        );
        assert_eq!(
            s.group(3, 1).expect("read").map(|m| m.text),
            Some("old words".into())
        );
        drop(s);
        // Migrated once: reopening reads the same.
        let mut s = Store::open(&path).expect("reopen");
        assert_eq!(s.load().expect("load"), records);
    }

    #[test]
    fn the_in_memory_twin_behaves_the_same() {
        let mut s = Store::in_memory().expect("mem");
        assert!(s.is_empty().expect("len"));
        s.append(&sample()).expect("append");
        assert_eq!(s.load().expect("load"), sample());
    }
}
