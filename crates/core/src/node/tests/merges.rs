//! Shared merges, driven by hand: after a burst, the designee of a bucket of node ids folds
//! the bucket's part of its frontier once, and everyone else references that merge.

use super::*;
use crate::node::merges::{BUCKET, FOLD_WAIT, SETTLE};

/// A member with id `id`, after `authors` each wrote a message nobody else had seen (fake
/// peers 1 and 2 are live too, and wrote nothing).
fn after_a_burst(id: u32, authors: &[u32]) -> Node {
    let mut n = member_node("m", id, 6000 + id as u16);
    for &p in authors {
        let ping = Message::Ping {
            nonce: 0,
            gossip: Vec::new(),
        };
        send_as(&mut n, p, &ping);
    }
    for &p in authors {
        let msg = group(p, 1, 1, &[]);
        send_as(&mut n, p, &Message::Group { hop: 0, msg });
    }
    let ev = drain(&mut n).1;
    assert_eq!(delivered_ids(&ev).len(), authors.len());
    n
}

/// The group messages `n` wrote (persisted), oldest first.
fn own_messages(n: &mut Node, at: Duration) -> Vec<GroupMsg> {
    n.handle_timeout(at);
    let me = n.node_id().expect("member");
    drain(n)
        .2
        .into_iter()
        .filter_map(|r| match r {
            Record::Group(m) if m.author == me => Some(m),
            _ => None,
        })
        .collect()
}

fn dots(authors: impl IntoIterator<Item = u32>) -> Vec<Dot> {
    authors
        .into_iter()
        .map(|a| Dot::new(NodeId(a), 1))
        .collect()
}

#[test]
fn the_lowest_live_member_of_a_bucket_folds_its_part_of_a_large_frontier_once() {
    // 61 authors (ids 40..=100): more than a message references. Node 32 opens the bucket
    // 32..=63, so it folds that bucket's dots (40..=63), and nothing of the others'.
    assert_eq!(BUCKET, 32);
    let authors: Vec<u32> = (40..=100).collect();
    let mut n = after_a_burst(32, &authors);
    assert!(
        own_messages(&mut n, Duration::from_millis(1) + SETTLE / 2).is_empty(),
        "it lets the burst come in first"
    );
    let own = own_messages(&mut n, Duration::from_millis(1) + SETTLE);
    assert_eq!(own.len(), 1, "one shared merge: {own:?}");
    let merge = &own[0];
    assert!(merge.text.is_empty(), "a merge has no text");
    assert_eq!(merge.deps, dots(40..=63));
    assert!(n.stats().shared_merges == 1 && n.stats().merges == 1);
    // Its part of the frontier is folded: nothing more to do, however long we wait.
    assert!(own_messages(&mut n, Duration::from_secs(5)).is_empty());

    // Another bucket's designee (node 64) folded its part (65..=95) the same way: once that
    // merge is delivered, the frontier is small enough for a message without merges.
    let theirs = GroupMsg {
        text: String::new(),
        ..group(64, 2, 2, &(65..=95).map(|a| (a, 1)).collect::<Vec<_>>())
    };
    let mut theirs = theirs;
    theirs.sig = peer_ident(64).sign(&theirs.signed_bytes());
    send_as(
        &mut n,
        64,
        &Message::Group {
            hop: 0,
            msg: theirs,
        },
    );
    drain(&mut n);
    n.handle_command(Duration::from_secs(6), Command::Say("after".into()));
    let own = own_messages(&mut n, Duration::from_secs(6));
    assert_eq!(own.len(), 1, "no merge of its own: {own:?}");
    let mut want = vec![Dot::new(NodeId(64), 2)];
    want.extend(dots(96..=100));
    assert_eq!(
        own[0].deps, want,
        "their merge and the rest of the frontier"
    );
}

#[test]
fn only_the_lowest_live_member_of_a_bucket_folds_it() {
    // Node 41 shares its bucket with author 40, who is live: 40 folds it, not 41.
    let mut n = mid_burst();
    assert!(own_messages(&mut n, Duration::from_secs(5)).is_empty());
    assert_eq!(n.stats().shared_merges, 0);
}

#[test]
fn a_small_frontier_is_never_folded() {
    // 48 concurrent authors fit one message: nobody writes a shared merge.
    let authors: Vec<u32> = (33..=80).collect();
    let mut n = after_a_burst(32, &authors);
    assert!(own_messages(&mut n, Duration::from_secs(5)).is_empty());
}

/// A merge by fake peer `p` (its message `seq`) referencing `deps` (each at seq 1).
fn merge_by(p: u32, seq: u64, deps: impl IntoIterator<Item = u32>) -> Message {
    let deps: Vec<(u32, u64)> = deps.into_iter().map(|a| (a, 1)).collect();
    let mut msg = GroupMsg {
        text: String::new(),
        ..group(p, seq, 2, &deps)
    };
    msg.sig = peer_ident(p).sign(&msg.signed_bytes());
    Message::Group { hop: 0, msg }
}

/// Node 41 after a burst of the 60 authors 40..=100 but itself: a frontier too large for a
/// message, and author 40 is the designee of its bucket, not 41.
fn mid_burst() -> Node {
    let authors: Vec<u32> = (40..=100).filter(|&a| a != 41).collect();
    after_a_burst(41, &authors)
}

#[test]
fn a_message_written_mid_burst_waits_for_the_shared_merges_and_the_next_waits_behind_it() {
    let (mut n, t) = (mid_burst(), Duration::from_millis(10));
    n.handle_command(t, Command::Say("first".into()));
    n.handle_command(t, Command::Say("second".into()));
    assert!(own_messages(&mut n, t).is_empty(), "both wait");
    assert_eq!(n.commands_waiting(), 2);
    // Bucket 32..=63's designee folds it: 38 dots are left, which fit.
    send_as(&mut n, 40, &merge_by(40, 2, 42..=63));
    let own = own_messages(&mut n, t);
    assert_eq!(own.len(), 2, "no merge of its own: {own:?}");
    assert_eq!(
        (own[0].text.as_str(), own[1].text.as_str()),
        ("first", "second")
    );
    assert!(own[0].deps.contains(&Dot::new(NodeId(40), 2)));
    assert_eq!(n.stats().merges, 0);
    assert_eq!(n.commands_waiting(), 0);
}

#[test]
fn a_message_folds_the_frontier_itself_when_no_shared_merge_comes() {
    let (mut n, t) = (mid_burst(), Duration::from_millis(10));
    n.handle_command(t, Command::Say("late".into()));
    assert!(own_messages(&mut n, t + FOLD_WAIT / 2).is_empty());
    let own = own_messages(&mut n, t + FOLD_WAIT);
    assert_eq!(own.len(), 2, "a merge of its own, then the text: {own:?}");
    assert_eq!(own[1].text, "late");
    assert!(own.iter().all(|m| m.deps.len() <= MAX_DEPS));
}

#[test]
fn quitting_sends_the_messages_that_wait_for_shared_merges() {
    let (mut n, t) = (mid_burst(), Duration::from_millis(10));
    n.handle_command(t, Command::Say("bye all".into()));
    n.handle_command(t, Command::Quit);
    let (_, _, records) = drain(&mut n);
    let texts: Vec<String> = records
        .into_iter()
        .filter_map(|r| match r {
            Record::Group(m) if m.author == NodeId(41) => Some(m.text),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["", "bye all"], "folded and written before leaving");
}
