//! Unit tests of the store: records, read-back, search, migrations, refusals.
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
        c.execute_batch(
            "DROP TABLE texts; DROP TABLE texts_indexed; DROP TABLE summary;
             DROP INDEX records_other; PRAGMA user_version = 3;",
        )
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
        postcard::to_allocvec(&(NodeId(3), NodeId(4), 1u64, 0u64, "old secret")).expect("fields"),
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

#[test]
fn a_summary_covers_what_was_stored_and_the_rest_is_loaded_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("n.db");
    {
        let mut s = Store::open(&path).expect("open");
        assert!(s.load_summary().expect("none yet").is_none());
        s.append(&sample()).expect("append");
        s.append(&[group(3, 2, "two"), group(4, 1, "four")])
            .expect("append");
        assert!(
            s.summary_stale() && !s.summary_due(),
            "3 records: only at a stop"
        );
        s.save_summary(b"node part").expect("save");
        assert!(!s.summary_stale());
        // After the summary: replayed at the next start.
        s.append(&[group(3, 3, "three")]).expect("append");
    }
    let mut s = Store::open(&path).expect("reopen");
    let summary = s.load_summary().expect("load").expect("saved");
    assert_eq!(summary.node, b"node part");
    let mut counts: Vec<_> = summary.counts().collect();
    counts.sort_unstable();
    assert_eq!(counts, [(3, 2), (4, 1)]);
    let mut after = s.adopt_summary(summary);
    // Old ones are read back by dot without being loaded; only the newer one loads.
    assert_eq!(
        s.group(4, 1).expect("read").map(|m| m.text),
        Some("four".into())
    );
    let rest = s.load_groups_after(&mut after, 10).expect("rest");
    assert_eq!(
        rest.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["three"]
    );
    assert_eq!(
        s.group(3, 3).expect("read").map(|m| m.text),
        Some("three".into())
    );
    assert!(s.summary_stale());
    // The records that are not group messages come from their own index.
    assert_eq!(s.load_without_groups().expect("rest").len(), 1);
}

#[test]
fn a_summary_that_does_not_fit_the_records_is_an_error_not_a_guess() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("n.db");
    {
        let mut s = Store::open(&path).expect("open");
        s.append(&[group(1, 1, "a"), group(1, 2, "b")])
            .expect("append");
        s.save_summary(b"x").expect("save");
    }
    for (break_it, says) in [
        ("UPDATE summary SET dots = x'05ff'", "the history summary"),
        ("UPDATE summary SET upto = 99", "past the last one"),
        ("UPDATE summary SET dots = x'010102050a'", "out of order"),
    ] {
        {
            let mut s = Store::open(&path).expect("open");
            s.save_summary(b"x").expect("save again");
        }
        Connection::open(&path)
            .expect("raw")
            .execute_batch(break_it)
            .expect("break");
        let mut s = Store::open(&path).expect("open");
        let e = s.load_summary().err().expect(break_it).to_string();
        assert!(e.contains(says), "{break_it}: {e}");
        // Everything is still there to replay.
        let mut after = 0;
        assert_eq!(s.load_groups_after(&mut after, 10).expect("load").len(), 2);
    }
    // A store in memory never saves one.
    let mut m = Store::in_memory().expect("open");
    m.append(&[group(1, 1, "a")]).expect("append");
    assert!(!m.summary_stale() && !m.summary_due());
}
