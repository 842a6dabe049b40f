//! Unit tests of the group log: causal delivery, digests, archive read-back, pages,
//! summaries and the repair grace.
use super::*;

fn msg(author: u32, seq: u64, lamport: u64, deps: &[(u32, u64)]) -> GroupMsg {
    GroupMsg {
        author: NodeId(author),
        seq,
        lamport,
        deps: deps.iter().map(|&(a, s)| Dot::new(NodeId(a), s)).collect(),
        text: format!("{author}.{seq}"),
        time_ms: 0,
        sig: [0; 64],
    }
}

fn dots(d: &[Delivery]) -> Vec<String> {
    d.iter().map(|(m, _)| m.dot().to_string()).collect()
}

struct Store(Vec<GroupMsg>);

impl Archive for Store {
    fn group(&self, dot: Dot) -> Option<GroupMsg> {
        self.0.iter().find(|m| m.dot() == dot).cloned()
    }
}

#[test]
fn messages_wait_for_what_they_depend_on_and_wake_in_causal_order() {
    let mut g = GroupLog::new(true, true);
    // 2.1 answers 1.2, which follows 1.1: they arrive backwards.
    assert!(g.hold(msg(2, 1, 3, &[(1, 2)])).is_empty());
    assert!(g.hold(msg(1, 2, 2, &[])).is_empty());
    assert_eq!(g.held_len(), 2);
    assert!(g.seen(Dot::new(NodeId(2), 1)), "held back counts as seen");
    let d = g.hold(msg(1, 1, 1, &[]));
    assert_eq!(dots(&d), ["1.1", "1.2", "2.1"]);
    assert_eq!(g.held_len(), 0);
    assert_eq!(g.delivered().get(NodeId(1)), 2);
    let (_, clock) = &d[2];
    let clock = clock.as_ref().expect("full clocks");
    assert_eq!((clock.get(NodeId(1)), clock.get(NodeId(2))), (2, 1));
    // The frontier is 2.1 alone (it references 1.2); our next message follows it.
    assert_eq!(g.frontier_deps(NodeId(3)), [Dot::new(NodeId(2), 1)]);
    assert_eq!(g.next_own(NodeId(3)), (1, 4));
    assert_eq!(
        g.frontier_deps(NodeId(2)),
        Vec::<Dot>::new(),
        "own dot is implied"
    );
    let order: Vec<String> = g.in_order().iter().map(|(m, _)| m.text.clone()).collect();
    assert_eq!(order, ["1.1", "1.2", "2.1"]);
}

#[test]
fn a_digest_comparison_finds_what_each_side_lacks() {
    let mut g = GroupLog::new(false, false);
    g.hold(msg(1, 1, 1, &[]));
    g.hold(msg(1, 2, 3, &[]));
    g.hold(msg(3, 1, 2, &[]));
    let all = (NodeId(0), NodeId(u32::MAX));
    // They have 1.1 only: they lack 3.1 and 1.2, oldest first.
    let (missing, ahead) = g.compare(all.0, all.1, &[(NodeId(1), 1)], usize::MAX, usize::MAX);
    assert_eq!(missing, [(2, NodeId(3), 1), (3, NodeId(1), 2)]);
    assert!(!ahead);
    // They know an author we do not, and are ahead on another.
    let (missing, ahead) = g.compare(
        all.0,
        all.1,
        &[(NodeId(1), 2), (NodeId(2), 1), (NodeId(3), 1)],
        usize::MAX,
        usize::MAX,
    );
    assert!(missing.is_empty() && ahead);
    let (_, ahead) = g.compare(
        all.0,
        all.1,
        &[(NodeId(1), 3), (NodeId(3), 1)],
        usize::MAX,
        usize::MAX,
    );
    assert!(ahead);
    // Only the range asked.
    let (missing, _) = g.compare(NodeId(2), NodeId(3), &[], usize::MAX, usize::MAX);
    assert_eq!(missing, [(2, NodeId(3), 1)]);
    // A peer far behind gets the oldest, across authors, as many as asked.
    let (missing, _) = g.compare(all.0, all.1, &[], 2, usize::MAX);
    assert_eq!(missing, [(1, NodeId(1), 1), (2, NodeId(3), 1)]);
}

#[test]
fn old_bodies_are_read_back_from_the_archive() {
    let mut g = GroupLog::new(false, false);
    let all: Vec<GroupMsg> = (1..=10).map(|s| msg(1, s, s, &[])).collect();
    for m in &all {
        g.hold(m.clone());
    }
    g.set_archive(Box::new(Store(all.clone())), 3);
    assert_eq!(
        (g.trimmed, g.bodies.len()),
        (7, 3),
        "the newest 3 bodies stay"
    );
    for m in &all {
        assert_eq!(g.message(m.dot()).as_ref(), Some(m));
    }
    assert_eq!(g.lamport(Dot::new(NodeId(1), 4)), Some(4));
    assert_eq!(g.message(Dot::new(NodeId(1), 11)), None);
    assert_eq!(g.hop(Dot::new(NodeId(1), 1)), None, "hops not recorded");
}

#[test]
fn a_page_reads_only_its_bodies_and_leaves_merges_out() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    struct Counting(Vec<GroupMsg>, Arc<AtomicUsize>);
    impl Archive for Counting {
        fn group(&self, dot: Dot) -> Option<GroupMsg> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.iter().find(|m| m.dot() == dot).cloned()
        }
    }
    let mut g = GroupLog::new(false, false);
    let mut all: Vec<GroupMsg> = (1..=20).map(|s| msg(1, s, s, &[])).collect();
    // A merge (no text) in the middle: never shown, never counted.
    all[9].text.clear();
    for m in &all {
        g.hold(m.clone());
    }
    let reads = Arc::new(AtomicUsize::new(0));
    g.set_archive(Box::new(Counting(all.clone(), reads.clone())), 2);
    let (page, earlier) = g.page(None, 3).expect("page");
    assert_eq!(dots(&page), ["1.18", "1.19", "1.20"]);
    assert_eq!(earlier, 16, "19 shown messages, 3 on this page");
    assert_eq!(
        reads.load(Ordering::Relaxed),
        1,
        "only 1.18 came from the archive"
    );
    let (page, earlier) = g.page(Some(Dot::new(NodeId(1), 12)), 3).expect("page");
    assert_eq!(
        dots(&page),
        ["1.8", "1.9", "1.11"],
        "the merge 1.10 is skipped"
    );
    assert_eq!(earlier, 7);
    let (page, earlier) = g.page(Some(Dot::new(NodeId(1), 2)), 5).expect("page");
    assert_eq!((dots(&page), earlier), (vec!["1.1".to_string()], 0));
    assert!(
        g.page(Some(Dot::new(NodeId(9), 1)), 5).is_none(),
        "no such message"
    );
}

#[test]
fn a_page_is_in_display_order_when_delivery_order_differs() {
    let mut g = GroupLog::new(false, false);
    // Concurrent messages: a later Lamport time delivered first.
    g.hold(msg(1, 1, 5, &[]));
    g.hold(msg(2, 1, 3, &[]));
    g.hold(msg(3, 1, 5, &[]));
    g.hold(msg(2, 2, 9, &[(1, 1)]));
    let (page, earlier) = g.page(None, 10).expect("page");
    assert_eq!(dots(&page), ["2.1", "1.1", "3.1", "2.2"]);
    assert_eq!(earlier, 0);
    assert_eq!(
        dots(&g.in_order()),
        dots(&page),
        "as the full history orders them"
    );
    let (page, _) = g.page(Some(Dot::new(NodeId(3), 1)), 10).expect("page");
    assert_eq!(dots(&page), ["2.1", "1.1"]);
}

/// The next message of `author` as a node would write it on top of `g`.
fn next(g: &GroupLog, author: u32, merge: bool) -> GroupMsg {
    let (seq, lamport) = g.next_own(NodeId(author));
    let deps = g.frontier_deps(NodeId(author));
    let mut m = msg(author, seq, lamport, &[]);
    m.deps = deps;
    if merge {
        m.text.clear();
    }
    m
}

#[test]
fn a_restored_summary_is_the_log_it_summarised() {
    let mut a = GroupLog::new(true, false);
    let mut all = Vec::new();
    // Four authors, sometimes concurrent (two write on the same frontier), some merges;
    // past the clock cache and several checkpoints.
    for step in 0..1500u32 {
        let author = 1 + (step * 7 + step / 13) % 4;
        let m = next(&a, author, step % 17 == 0);
        let twin = (step % 5 == 0).then(|| next(&a, 1 + (author % 4), false));
        for m in std::iter::once(m).chain(twin) {
            all.push(m.clone());
            a.hold(m);
        }
    }
    let summary = a.summary().expect("summary");
    let bytes = summary.encode();
    assert!(bytes.len() < all.len() * 16, "{} bytes", bytes.len());
    let mut b = GroupLog::new(true, false);
    b.set_archive(Box::new(Store(all.clone())), 3);
    let n = b
        .restore_summary(GroupSummary::decode(&bytes).expect("decodes"))
        .expect("restores");
    assert_eq!(n, all.len());
    a.set_archive(Box::new(Store(all.clone())), 3);
    // Both go on alike: new messages reference the same frontier and get the same clocks.
    for step in 0..20u32 {
        let m = next(&a, 1 + step % 3, false);
        assert_eq!(m, next(&b, 1 + step % 3, false));
        all.push(m.clone());
        let (da, db) = (a.hold(m.clone()), b.hold(m));
        assert_eq!(da, db);
    }
    for g in [&mut a, &mut b] {
        g.archive = Some(Box::new(Store(all.clone())));
    }
    assert_eq!(a.delivered(), b.delivered());
    assert_eq!(a.frontier, b.frontier);
    assert_eq!(a.max_lamport, b.max_lamport);
    assert_eq!(a.in_order(), b.in_order());
    assert_eq!(a.page(None, 50), b.page(None, 50));
    let mid = all[700].dot();
    assert_eq!(a.page(Some(mid), 30), b.page(Some(mid), 30));
    let all_authors = (NodeId(0), NodeId(u32::MAX));
    assert_eq!(
        a.compare(
            all_authors.0,
            all_authors.1,
            &[(NodeId(2), 100)],
            64,
            usize::MAX
        ),
        b.compare(
            all_authors.0,
            all_authors.1,
            &[(NodeId(2), 100)],
            64,
            usize::MAX
        )
    );
    for m in &all {
        assert_eq!(a.clock(m.dot()), b.clock(m.dot()), "{}", m.dot());
    }
}

#[test]
fn a_summary_that_does_not_fit_changes_nothing() {
    let mut a = GroupLog::new(true, false);
    let all: Vec<GroupMsg> = (1..=5).map(|s| msg(1, s, s, &[])).collect();
    for m in &all {
        a.hold(m.clone());
    }
    let bytes = a.summary().expect("summary").encode();
    // Not into a log that has messages already.
    let mut b = GroupLog::new(true, false);
    b.set_archive(Box::new(Store(all.clone())), 3);
    b.hold(msg(2, 1, 1, &[]));
    let s = GroupSummary::decode(&bytes).expect("decodes");
    assert!(b.restore_summary(s).is_err());
    assert_eq!(b.history.len(), 1);
    // Without clocks when clocks are kept, or with a frontier past the history.
    let (entries, frontier, _) = GroupSummary::decode(&bytes).expect("decodes").into_parts();
    for bad in [
        GroupSummary::new(entries.clone(), frontier, None),
        GroupSummary::new(entries, vec![(NodeId(1), 9)], None),
    ] {
        let mut c = GroupLog::new(true, false);
        c.set_archive(Box::new(Store(all.clone())), 3);
        assert!(c.restore_summary(bad).is_err());
        assert!(c.history.is_empty() && c.delivered().get(NodeId(1)) == 0);
    }
}

#[test]
fn what_arrived_within_the_grace_is_not_offered_as_missing() {
    let mut g = GroupLog::new(false, false);
    let ms = Duration::from_millis;
    for (seq, at) in [(1, 0), (2, 100), (3, 900)] {
        let first = g.len();
        g.hold(msg(1, seq, seq, &[]));
        g.stamp(first, ms(at));
    }
    let all = (NodeId(0), NodeId(u32::MAX));
    let lacking = |fresh| {
        let (missing, _) = g.compare(all.0, all.1, &[], 10, fresh);
        missing.iter().map(|m| m.2).collect::<Vec<u64>>()
    };
    // At 1 s with a grace of 500 ms, 1.3 (delivered at 900 ms) is still spreading.
    assert_eq!(lacking(g.fresh_from(ms(1000), ms(500))), [1, 2]);
    assert_eq!(lacking(g.fresh_from(ms(1000), ms(950))), [1]);
    assert_eq!(lacking(g.fresh_from(ms(1000), Duration::ZERO)), [1, 2, 3]);
    // Never more than FRESH_MAX, and stamps older than it are dropped.
    assert_eq!(g.fresh_from(ms(5000), ms(60_000)), 3);
    g.stamp(g.len(), ms(5000));
    assert_eq!(g.stamps.len(), 3, "nothing new delivered: no stamp");
    let first = g.len();
    g.hold(msg(1, 4, 4, &[]));
    g.stamp(first, ms(5000));
    assert_eq!(g.stamps.len(), 1, "the old ones expired");
    assert_eq!(g.fresh_from(ms(5000), ms(10)), 3);
}
