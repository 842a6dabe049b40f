//! Offline delivery: a private message reaches a recipient who comes back after its sender
//! left, through mailboxes that cannot read it, survive kill -9, and stand in for each other.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// Private texts `p` delivered from `from`, in order.
fn private_from(p: &Proc, from: &str) -> Vec<String> {
    p.seen
        .iter()
        .filter(|v| v["event"] == "message" && v["scope"] == "private" && v["from"] == from)
        .map(|v| v["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// alice writes to bob while bob is away, then leaves; returns alice's events.
fn write_while_away_and_leave(ps: &mut [Proc], texts: &[&str]) -> Vec<Value> {
    let (alice, rest) = ps.split_first_mut().expect("alice");
    let bob = rest.first_mut().expect("bob");
    bob.signal("TERM");
    assert_eq!(bob.exit_code(), Some(0));
    wait_status(alice, "bob", "offline");
    for t in texts {
        alice.send(&format!("/msg bob {t}"));
    }
    for seq in 1..=texts.len() as u64 {
        alice.wait_for(&format!("stored {seq}"), |v| {
            v["event"] == "stored" && v["peer"] == "bob" && v["seq"] == seq
        });
    }
    // End of input: stored counts as done, so alice leaves without waiting for bob.
    alice.close_stdin();
    assert_eq!(alice.exit_code(), Some(0));
    alice.seen.clone()
}

/// bob comes back; returns how long after his `ready` the last text arrived.
fn bob_returns(dir: &Path, auth: &str, texts: &[&str]) -> (Proc, Duration) {
    let mut bob = Proc::node("bob", "pw", auth, &dir.join("bob"), false, None, &[]);
    bob.ready();
    let back = Instant::now();
    for t in texts {
        bob.wait_text(t);
    }
    let took = back.elapsed();
    eprintln!(
        "bob had every message {} s after his return",
        took.as_secs_f64()
    );
    // Exactly once, in the order written, also after more hand-overs could have come.
    bob.send("/history alice");
    let h = bob.wait_for("history", |v| v["event"] == "history");
    let hist: Vec<&str> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(hist, texts, "bob's history with alice");
    assert_eq!(private_from(&bob, "alice"), texts, "delivered once each");
    (bob, took)
}

#[test]
fn a_message_reaches_a_recipient_who_returns_after_its_sender_left() {
    let dirs = tempdir();
    let (_auth, addr, mut ps) = network(dirs.path(), &["alice", "bob", "carol"]);
    let texts = ["see you at 10, bob", "bring the slides", "and coffee ☕"];
    let alice_events = write_while_away_and_leave(&mut ps, &texts);
    assert!(
        !alice_events.iter().any(|v| v["event"] == "acked"),
        "not delivered yet: only stored"
    );
    let carol = &mut ps[2];
    wait_status(carol, "alice", "offline");
    let carol_port: u16 = carol.ready()["addr"]
        .as_str()
        .and_then(|a| a.rsplit(':').next()?.parse().ok())
        .expect("carol's port");
    // carol keeps them, and cannot read them: not in her events, not in her files.
    assert_eq!(status(carol)["mailbox"], 3);
    // kill -9 of the mailbox, and back: nothing lost.
    carol.kill9();
    let carol_dir = dirs.path().join("carol");
    for t in texts {
        assert!(
            !files_contain(&carol_dir, t.as_bytes()),
            "{t:?} readable in carol's files"
        );
    }
    // (On its port: a member that others remember, as a real node would be.)
    let mut carol = Proc::node_on(
        carol_port,
        "carol",
        "pw",
        &addr,
        &carol_dir,
        false,
        None,
        &[],
    );
    carol.ready();
    assert_eq!(status(&mut carol)["mailbox"], 3, "kept across kill -9");

    let (mut bob, took) = bob_returns(dirs.path(), &addr, &texts);
    assert!(took <= Duration::from_secs(10), "took {took:?}");
    assert!(
        carol.seen.iter().all(|v| v["event"] != "message"),
        "carol saw a message: {:?}",
        carol.seen
    );
    // Acknowledged: the mailbox lets them go.
    let deadline = Instant::now() + TIMEOUT;
    while status(&mut carol)["mailbox"] != 0 {
        assert!(Instant::now() < deadline, "carol still keeps them");
        std::thread::sleep(Duration::from_millis(200));
    }

    // alice comes back: her messages count as delivered (acked), and bob gets nothing twice.
    let mut alice = Proc::node(
        "alice",
        "pw",
        &addr,
        &dirs.path().join("alice"),
        false,
        None,
        &[],
    );
    alice.ready();
    alice.wait_for("acked", |v| {
        v["event"] == "acked" && v["peer"] == "bob" && v["upto"] == 3
    });
    assert_eq!(status(&mut alice)["pending_private"], 0);
    bob.send("/status");
    bob.wait_for("status", |v| v["event"] == "status");
    assert_eq!(private_from(&bob, "alice"), texts);
}

#[test]
fn three_mailboxes_of_which_two_are_gone_still_deliver() {
    let dirs = tempdir();
    let (_auth, addr, mut ps) = network(dirs.path(), &["alice", "bob", "box1", "box2", "box3"]);
    let texts = ["one", "two"];
    write_while_away_and_leave(&mut ps, &texts);
    // With three members up besides alice and bob, all three are bob's mailboxes.
    for b in ps.iter_mut().skip(2) {
        wait_status(b, "alice", "offline");
        assert_eq!(status(b)["mailbox"], 2, "{}", b.name);
    }
    ps[2].kill9();
    ps[3].signal("TERM");
    assert_eq!(ps[3].exit_code(), Some(0));
    let (_bob, took) = bob_returns(dirs.path(), &addr, &texts);
    assert!(took <= Duration::from_secs(10), "took {took:?}");
}
