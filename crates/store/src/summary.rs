//! The saved summary of the group history: the node's part (opaque here), the store's own
//! index of where each group message is, and the last record both cover. A restart loads it
//! and replays only the group records after that, instead of every one (a million rows
//! decoded take about a second; the summary is one blob of a few bytes per message).
//!
//! It is a cache. The driver saves it when enough group records were added since the last
//! one (at least [`SUMMARY_MIN`], and a quarter of what the last one covered, so that the
//! total written stays proportional to the history) and when the node stops. A summary that
//! does not decode or fit is ignored and the history replayed whole.

use crate::{classify, Store, StoreError};
use rusqlite::params;
use std::collections::HashMap;

/// Fewest new group records before a new summary is due.
pub const SUMMARY_MIN: u64 = 50_000;

/// A saved summary (see the module doc).
pub struct Summary {
    /// The last record it covers: the group records after this one are to be replayed.
    pub upto: i64,
    /// The node's part.
    pub node: Vec<u8>,
    groups: HashMap<u32, Vec<i64>>,
}

impl Summary {
    /// Group messages it covers per author (to check against the node's part).
    pub fn counts(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.groups
            .iter()
            .map(|(&a, ids)| (a, ids.len() as u64))
            .filter(|&(_, n)| n > 0)
    }
}

impl Store {
    /// Saves `node` (the node's summary of exactly the group records stored so far) with
    /// this store's index of them, replacing the previous summary.
    pub fn save_summary(&mut self, node: &[u8]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let fail = |e| classify(&path, e);
        let mut authors: Vec<(u32, Vec<u64>)> = self
            .groups
            .iter()
            .map(|(&a, ids)| {
                let mut prev = 0i64;
                let deltas = ids
                    .iter()
                    .map(|&id| {
                        let d = id.wrapping_sub(prev) as u64;
                        prev = id;
                        d
                    })
                    .collect();
                (a, deltas)
            })
            .collect();
        authors.sort_unstable_by_key(|a| a.0);
        let dots = postcard::to_allocvec(&authors).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            detail: format!("cannot encode the summary: {e}"),
        })?;
        let tx = self.conn.transaction().map_err(fail)?;
        let upto: i64 = tx
            .query_row("SELECT coalesce(max(id), 0) FROM records", [], |r| r.get(0))
            .map_err(fail)?;
        tx.execute("DELETE FROM summary", []).map_err(fail)?;
        tx.execute(
            "INSERT INTO summary (upto, node, dots) VALUES (?1, ?2, ?3)",
            params![upto, node, dots],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        self.summarized = self.group_records;
        Ok(())
    }

    /// The saved summary, if any; an error when it does not decode or fit the records (the
    /// caller then replays the whole history). Nothing changes here until
    /// [`Store::adopt_summary`].
    pub fn load_summary(&mut self) -> Result<Option<Summary>, StoreError> {
        let path = self.path.clone();
        let fail = |e| classify(&path, e);
        let bad = |detail: String| StoreError::Corrupt {
            path: path.clone(),
            detail: format!("the history summary: {detail}"),
        };
        let mut stmt = self
            .conn
            .prepare("SELECT upto, node, dots, (SELECT max(id) FROM records) FROM summary")
            .map_err(fail)?;
        let mut rows = stmt.query([]).map_err(fail)?;
        let Some(row) = rows.next().map_err(fail)? else {
            return Ok(None);
        };
        let upto: i64 = row.get(0).map_err(fail)?;
        let node: Vec<u8> = row.get(1).map_err(fail)?;
        let dots: Vec<u8> = row.get(2).map_err(fail)?;
        let last: Option<i64> = row.get(3).map_err(fail)?;
        if upto > last.unwrap_or(0) || upto < 0 {
            return Err(bad(format!("covers record {upto}, past the last one")));
        }
        let authors: Vec<(u32, Vec<u64>)> =
            postcard::from_bytes(&dots).map_err(|e| bad(e.to_string()))?;
        let mut groups = HashMap::with_capacity(authors.len());
        for (author, deltas) in authors {
            let mut prev = 0i64;
            let mut ids = Vec::with_capacity(deltas.len());
            for d in deltas {
                let id = i64::try_from(d)
                    .ok()
                    .and_then(|d| prev.checked_add(d))
                    .filter(|&id| id > prev && id <= upto)
                    .ok_or_else(|| bad(format!("record ids of author {author} out of order")))?;
                ids.push(id);
                prev = id;
            }
            if groups.insert(author, ids).is_some() {
                return Err(bad(format!("author {author} twice")));
            }
        }
        Ok(Some(Summary { upto, node, groups }))
    }

    /// Starts this store's index from `summary` (its node part was taken); returns the
    /// record id to load group records after.
    pub fn adopt_summary(&mut self, summary: Summary) -> i64 {
        let n: u64 = summary.counts().map(|(_, c)| c).sum();
        self.groups = summary.groups;
        self.group_records = n;
        self.summarized = n;
        summary.upto
    }

    /// Whether enough group records were added since the last summary to save a new one
    /// (never for a store in memory: it does not outlive the process).
    pub fn summary_due(&self) -> bool {
        let since = self.group_records.saturating_sub(self.summarized);
        self.durable() && since >= SUMMARY_MIN.max(self.summarized / 4)
    }

    /// Whether any group record was added since the last summary (worth saving at a stop).
    pub fn summary_stale(&self) -> bool {
        self.durable() && self.group_records > self.summarized
    }

    fn durable(&self) -> bool {
        self.path != ":memory:"
    }
}
