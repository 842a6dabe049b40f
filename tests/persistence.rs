//! Durable state: everything survives SIGKILL of every process, from the data dirs alone.

mod common;

use common::*;
use serde_json::Value;

fn entries(msgs: &[Value]) -> Vec<(String, String)> {
    msgs.iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or_default().to_string(),
                m["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn everything_comes_back_from_disk_after_every_process_is_killed() {
    let dirs = tempdir();
    let auth_dir = dirs.path().join("auth");
    let nodes = dirs.path().join("nodes");
    let (mut auth, auth_addr) = Proc::auth_server(&auth_dir, "127.0.0.1:0", None, None);
    let names = ["alice", "bob", "carol"];
    let password = |n: &str| format!("{n}-Secret-Passw0rd");
    let mut ps: Vec<Proc> = Vec::new();
    let mut ids = Vec::new();
    for n in names {
        let mut p = Proc::node(n, &password(n), &auth_addr, &nodes, true, None, &[]);
        ids.push(p.ready()["node_id"].clone());
        ps.push(p);
    }
    for i in 0..3 {
        for other in names {
            if other != names[i] {
                ps[i].wait_for("peer", |v| v["event"] == "peer" && v["user"] == other);
            }
        }
    }
    // A conversation, in the group and privately.
    for round in 0..3 {
        for i in 0..3 {
            let text = format!("round {round} from {}", names[i]);
            ps[i].send(&text);
            for p in ps.iter_mut() {
                p.wait_text(&text);
            }
        }
    }
    ps[0].send("/msg bob private one");
    ps[1].wait_text("private one");
    ps[1].send("/msg alice private two");
    ps[0].wait_text("private two");
    ps[2].send("/msg alice from carol");
    ps[0].wait_text("from carol");
    ps[0].wait_for("ack", |v| v["event"] == "acked" && v["peer"] == "bob");
    let group_before = entries(&ps[0].history(""));
    assert_eq!(group_before.len(), 9);
    let ab_before = entries(&ps[0].history("bob"));
    let ac_before = entries(&ps[0].history("carol"));
    assert_eq!((ab_before.len(), ac_before.len()), (2, 1));

    // Everyone dies at once.
    auth.kill9();
    for p in ps.iter_mut() {
        p.kill9();
    }
    drop(ps);

    // The server's files hold argon2id verifiers, never a password.
    assert!(files_contain(&auth_dir, b"$argon2id$v=19$m=19456,t=2,p=1$"));
    for n in names {
        assert!(
            !files_contain(&auth_dir, password(n).as_bytes()),
            "{n}'s password is on disk"
        );
    }

    // Each node, restarted alone (no peer to resync from), has everything from its disk.
    let (_auth2, auth2) = Proc::auth_server(&auth_dir, "127.0.0.1:0", None, None);
    for (i, n) in names.iter().enumerate() {
        let mut p = Proc::node(n, &password(n), &auth2, &nodes, false, None, &[]);
        assert_eq!(
            p.ready()["node_id"],
            ids[i],
            "{n} came back with another id"
        );
        assert_eq!(entries(&p.history("")), group_before, "{n}'s group history");
        if *n == "alice" {
            assert_eq!(entries(&p.history("bob")), ab_before);
            assert_eq!(entries(&p.history("carol")), ac_before);
        }
        if *n == "bob" {
            let mut h = entries(&p.history("alice"));
            h.sort();
            let mut want = ab_before.clone();
            want.sort();
            assert_eq!(h, want);
        }
        let last = entries(&p.history("--last 2"));
        assert_eq!(last, group_before[7..].to_vec());
        p.send("/quit");
        assert_eq!(p.exit_code(), Some(0));
    }

    // The restarted server still refuses a wrong password and a taken username.
    let mut wrong = Proc::node(
        "alice",
        "not-it",
        &auth2,
        &dirs.path().join("w"),
        false,
        None,
        &[],
    );
    wrong.fails_with("wrong username or password");
    let mut taken = Proc::node(
        "bob",
        "whatever",
        &auth2,
        &dirs.path().join("t"),
        true,
        None,
        &[],
    );
    taken.fails_with("taken");
    // And hands out a fresh id to a new user, never an old one.
    let mut dave = Proc::node("dave", "pw", &auth2, &nodes, true, None, &[]);
    let dave_id = dave.ready()["node_id"].clone();
    assert!(!ids.contains(&dave_id));
}

#[test]
fn a_node_restarted_while_the_server_is_down_rejoins_its_peers() {
    let dirs = tempdir();
    let nodes = dirs.path().join("nodes");
    let (mut auth, auth_addr) =
        Proc::auth_server(&dirs.path().join("auth"), "127.0.0.1:0", None, None);
    let mut alice = Proc::node("alice", "pa", &auth_addr, &nodes, true, None, &[]);
    alice.ready();
    let mut bob = Proc::node("bob", "pb", &auth_addr, &nodes, true, None, &[]);
    let bob_id = bob.ready()["node_id"].clone();
    alice.wait_for("bob", |v| v["event"] == "peer" && v["user"] == "bob");
    alice.send("before the outage");
    bob.wait_text("before the outage");

    auth.kill9();
    bob.kill9();
    alice.send("while bob is down");
    let mut bob = Proc::node("bob", "pb", &auth_addr, &nodes, false, None, &[]);
    assert_eq!(bob.ready()["node_id"], bob_id);
    bob.wait_text("while bob is down");
    bob.send("back without any server");
    alice.wait_text("back without any server");
    let n = alice.history("").len();
    assert_eq!(n, 3);
    assert_eq!(bob.history("").len(), 3);
}

#[test]
fn a_corrupt_or_busy_data_file_is_refused_and_left_untouched() {
    let dirs = tempdir();
    let nodes = dirs.path().join("nodes");
    std::fs::create_dir_all(&nodes).expect("mkdir");
    let db = nodes.join("node-zed.db");
    let junk = b"definitely not sqlite ".repeat(64);
    std::fs::write(&db, &junk).expect("write");
    let mut p = Proc::node("zed", "pw", "127.0.0.1:9", &nodes, true, None, &[]);
    p.fails_with("not a p2pchat database");
    assert_eq!(std::fs::read(&db).expect("read"), junk);

    // Two processes on one data dir: the second is refused.
    let (_auth, auth) = Proc::auth_server(&dirs.path().join("auth"), "127.0.0.1:0", None, None);
    let mut first = Proc::node("amy", "pw", &auth, &nodes, true, None, &[]);
    first.ready();
    let mut second = Proc::node("amy", "pw", &auth, &nodes, false, None, &[]);
    second.fails_with("in use");
}
