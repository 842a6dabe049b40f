//! Process-level tests of the real binary: the seed's scenarios on 127.0.0.1.

mod common;

use common::*;
use serde_json::Value;

fn ids(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn online(p: &mut Proc, user: &str) {
    p.wait_for(&format!("{user} online"), |v| {
        v["event"] == "peer" && v["user"] == user && v["status"] == "online"
    });
}

#[test]
fn the_seed_scenarios_work_end_to_end() {
    let dirs = tempdir();
    let auth_dir = dirs.path().join("auth");
    let node_dir = dirs.path().join("nodes");
    let (mut auth, auth_addr) = Proc::auth_server(&auth_dir, "127.0.0.1:0", None, None);

    // Signup: the first node is told it is first.
    let mut alice = Proc::node("alice", "pw-a", &auth_addr, &node_dir, true, None, &[]);
    let ready = alice.ready();
    assert_eq!(ready["first"], true);
    let alice_id = ready["node_id"].clone();

    // Bootstrap through the pending queue, and the join announcement.
    let mut bob = Proc::node("bob", "pw-b", &auth_addr, &node_dir, true, None, &[]);
    assert_eq!(bob.ready()["first"], false);
    alice.wait_for("bob just joined", |v| {
        v["event"] == "peer" && v["user"] == "bob" && v["joined"] == true
    });
    let mut carol = Proc::node("carol", "pw-c", &auth_addr, &node_dir, true, None, &[]);
    let carol_id = carol.ready()["node_id"].clone();
    for (p, others) in [
        (&mut alice, ["bob", "carol"]),
        (&mut bob, ["alice", "carol"]),
        (&mut carol, ["alice", "bob"]),
    ] {
        for o in others {
            online(p, o);
        }
    }

    // Group chat reaches everyone, in the same causal order everywhere.
    alice.send("hello from alice");
    for p in [&mut alice, &mut bob, &mut carol] {
        p.wait_text("hello from alice");
    }
    bob.send("bob answers alice");
    carol.send("carol says hi");
    for p in [&mut alice, &mut bob, &mut carol] {
        p.wait_text("bob answers alice");
        p.wait_text("carol says hi");
    }
    let reply = bob.wait_text("bob answers alice");
    assert_eq!(
        reply["clock"][alice_id.to_string()],
        1,
        "bob's reply depends on alice's message: {reply}"
    );
    let h = ids(&alice.history(""));
    assert_eq!(h.len(), 3);
    assert_eq!(h, ids(&bob.history("")));
    assert_eq!(h, ids(&carol.history("")));

    // Private messages: seen by the two parties only.
    alice.send("/msg bob a secret for bob");
    let got = bob.wait_text("a secret for bob");
    assert_eq!(got["scope"], "private");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["to"], "bob");
    alice.wait_for("ack from bob", |v| {
        v["event"] == "acked" && v["peer"] == "bob"
    });
    assert_eq!(alice.history("bob").len(), 1);
    assert!(carol.history("alice").is_empty());
    assert!(carol.seen.iter().all(|v| v["text"] != "a secret for bob"));

    // carol is killed with SIGKILL; the others talk; she comes back with the same node id and
    // her peers, and catches up.
    carol.kill9();
    alice.send("while carol was away");
    bob.wait_text("while carol was away");
    let mut carol = Proc::node("carol", "pw-c", &auth_addr, &node_dir, false, None, &[]);
    assert_eq!(carol.ready()["node_id"], carol_id);
    carol.wait_text("while carol was away");
    carol.send("/peers");
    let peers = carol.wait_for("peers", |v| v["event"] == "peers");
    let names: Vec<&str> = peers["peers"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["user"].as_str())
        .collect();
    assert!(
        names.contains(&"alice") && names.contains(&"bob"),
        "{peers}"
    );
    assert_eq!(ids(&carol.history("")), ids(&alice.history("")));

    // The auth server is killed; the chat goes on.
    auth.kill9();
    bob.send("the server is gone and we still chat");
    for p in [&mut alice, &mut carol] {
        p.wait_text("the server is gone and we still chat");
    }

    // It returns (same port, same accounts): a new node joins and gets the history.
    let (_auth2, addr2) = Proc::auth_server(&auth_dir, &auth_addr, None, None);
    assert_eq!(addr2, auth_addr);
    let mut dave = Proc::node("dave", "pw-d", &auth_addr, &node_dir, true, None, &[]);
    dave.ready();
    dave.wait_text("the server is gone and we still chat");
    dave.send("dave joined after the outage");
    for p in [&mut alice, &mut bob, &mut carol] {
        p.wait_text("dave joined after the outage");
    }
    let reference = ids(&alice.history(""));
    assert_eq!(reference.len(), 6);
    for p in [&mut bob, &mut carol, &mut dave] {
        assert_eq!(ids(&p.history("")), reference, "{} disagrees", p.name);
    }
    // Nothing was delivered twice anywhere.
    for p in [&alice, &bob, &dave] {
        let mut group = p.texts("group");
        let n = group.len();
        group.sort();
        group.dedup();
        assert_eq!(group.len(), n, "{} got a duplicate", p.name);
    }

    // /quit leaves cleanly.
    alice.send("/quit");
    assert_eq!(alice.exit_code(), Some(0));
}

#[test]
fn account_errors_and_bad_input_get_clear_errors() {
    let dirs = tempdir();
    let (_auth, auth_addr) =
        Proc::auth_server(&dirs.path().join("auth"), "127.0.0.1:0", None, None);
    let nodes = dirs.path().join("nodes");

    let mut alice = Proc::node("alice", "right", &auth_addr, &nodes, true, None, &[]);
    let id = alice.ready()["node_id"].clone();

    // Bad commands and oversized texts: an error event, and the node stays up.
    alice.send("/msg nobody hello?");
    alice.wait_for("unknown user error", |v| {
        v["event"] == "error"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("unknown user"))
    });
    alice.send(&"x".repeat(5000));
    alice.wait_for("too long error", |v| {
        v["event"] == "error"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("too long"))
    });
    alice.send("/frobnicate");
    alice.wait_for("unknown command", |v| {
        v["event"] == "error"
            && v["fatal"] == false
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("unknown command"))
    });
    alice.send("still alive");
    alice.wait_text("still alive");
    alice.close_stdin();
    assert_eq!(alice.exit_code(), Some(0));

    // Taken username.
    let other = dirs.path().join("other");
    let mut taken = Proc::node("alice", "whatever", &auth_addr, &other, true, None, &[]);
    taken.fails_with("taken");

    // Wrong password, and unknown user.
    for (user, pw) in [("alice", "wrong"), ("nobody", "pw")] {
        let mut bad = Proc::node(
            user,
            pw,
            &auth_addr,
            &dirs.path().join(format!("bad-{user}")),
            false,
            None,
            &[],
        );
        bad.fails_with("wrong username or password");
    }

    // The right password signs in again: from its own data dir with the same node id,
    // from another data dir as another device of the account (a node id of its own).
    let mut again = Proc::node("alice", "right", &auth_addr, &nodes, false, None, &[]);
    assert_eq!(again.ready()["node_id"], id);
    drop(again);
    let mut device = Proc::node(
        "alice",
        "right",
        &auth_addr,
        &dirs.path().join("again"),
        false,
        None,
        &[],
    );
    let other_id = device.ready()["node_id"].clone();
    assert!(
        other_id.as_u64().is_some() && other_id != id,
        "{other_id} vs {id}"
    );
    drop(device);

    // A full network.
    let (_small, small_addr) =
        Proc::auth_server(&dirs.path().join("small"), "127.0.0.1:0", None, Some(1));
    let mut one = Proc::node(
        "one",
        "pw",
        &small_addr,
        &dirs.path().join("n1"),
        true,
        None,
        &[],
    );
    one.ready();
    let mut two = Proc::node(
        "two",
        "pw",
        &small_addr,
        &dirs.path().join("n2"),
        true,
        None,
        &[],
    );
    two.fails_with("full");

    // An unreachable auth server, after retries.
    let mut lost = Proc::node(
        "lost",
        "pw",
        "127.0.0.1:9",
        &dirs.path().join("lost"),
        true,
        None,
        &["--auth-attempts", "3"],
    );
    lost.fails_with("unreachable");

    // No password at all in script mode: a clear error, not a hang.
    let out = std::process::Command::new(bin())
        .args(["node", "--user", "x", "--data-dir"])
        .arg(dirs.path().join("nopw"))
        .env_remove("P2PCHAT_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .output()
        .expect("run");
    assert!(!out.status.success());
    // Once, as the script-mode JSON error (nothing repeated on stderr).
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("P2PCHAT_PASSWORD").count(), 1, "{stdout}");
    assert!(stdout.contains(r#""fatal":true"#), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("P2PCHAT_PASSWORD"));
}
