//! A cluster on a network that drops a quarter of all UDP datagrams at random: inside a
//! network namespace this test creates, with an nftables rule (needs root, `ip` and `nft`).

mod common;

use common::*;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace that is deleted when dropped.
struct Netns(String);

impl Netns {
    fn lossy() -> Netns {
        let name = format!(
            "p2pchat-t{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let run = |args: &[&str]| {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("run ip (iproute2)");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["netns", "add", &name]);
        let ns = Netns(name);
        run(&["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"]);
        // Dropped on input, so senders see no error: the datagram just vanishes.
        let rules = "table inet lossy {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    meta l4proto udp numgen random mod 4 0 drop\n  }\n}\n";
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.0, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run nft (nftables)");
        {
            use std::io::Write;
            let stdin = child.stdin.as_mut().expect("stdin");
            stdin.write_all(rules.as_bytes()).expect("write rules");
        }
        assert!(
            child.wait().expect("nft").success(),
            "nft rejected the loss rule"
        );
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn a_quarter_of_all_datagrams_lost_and_nothing_is_lost_or_duplicated() {
    if !is_root() {
        eprintln!("SKIPPED: creating a network namespace needs root (CI runs as root)");
        return;
    }
    let ns = Netns::lossy();
    let dirs = tempdir();
    let (_auth, auth) = Proc::auth_server(
        &dirs.path().join("auth"),
        "127.0.0.1:12345",
        Some(&ns.0),
        None,
    );
    let names = ["ann", "ben", "cat", "dan"];
    let mut nodes: Vec<Proc> = Vec::new();
    for name in names {
        let mut p = Proc::node(
            name,
            "pw",
            &auth,
            &dirs.path().join("nodes"),
            true,
            Some(&ns.0),
            &[],
        );
        p.ready();
        nodes.push(p);
    }
    for i in 0..nodes.len() {
        for other in names {
            if other != names[i] {
                let p = &mut nodes[i];
                p.wait_for(&format!("{other} known"), |v| {
                    v["event"] == "peer" && v["user"] == other
                });
            }
        }
    }
    // Everyone talks, and sends privately to the next one.
    let per_node = 6;
    for round in 0..per_node {
        for i in 0..nodes.len() {
            let next = names[(i + 1) % names.len()];
            let me = names[i];
            nodes[i].send(&format!("group {round} from {me}"));
            nodes[i].send(&format!("/msg {next} private {round} from {me} to {next}"));
        }
    }
    for i in 0..nodes.len() {
        for round in 0..per_node {
            for (j, author) in names.iter().enumerate() {
                nodes[i].wait_text(&format!("group {round} from {author}"));
                if (j + 1) % names.len() == i {
                    nodes[i].wait_text(&format!("private {round} from {author} to {}", names[i]));
                }
            }
        }
    }
    let reference: Vec<Value> = nodes[0].history("");
    assert_eq!(reference.len(), per_node * names.len());
    for p in nodes.iter_mut() {
        let h = p.history("");
        let ids: Vec<&Value> = h.iter().map(|m| &m["id"]).collect();
        let want: Vec<&Value> = reference.iter().map(|m| &m["id"]).collect();
        assert_eq!(ids, want, "{}'s history differs", p.name);
        for scope in ["group", "private"] {
            let mut texts = p.texts(scope);
            let n = texts.len();
            texts.sort();
            texts.dedup();
            assert_eq!(texts.len(), n, "{} got a {scope} duplicate", p.name);
        }
        // Own private messages are echoed; received ones come from the previous node only.
        let received: Vec<String> = p
            .seen
            .iter()
            .filter(|v| {
                v["event"] == "message" && v["scope"] == "private" && v["to"] == p.name.as_str()
            })
            .map(|v| v["text"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(received.len(), per_node, "{}: {received:?}", p.name);
    }
    // The loss was real: the protocol had to retransmit.
    let mut retransmits = 0;
    for p in nodes.iter_mut() {
        let n = p.seen.iter().filter(|v| v["event"] == "status").count();
        p.send("/status");
        retransmits += p.wait_nth("status", n, |v| v["event"] == "status")["private_retransmits"]
            .as_u64()
            .unwrap_or(0);
    }
    assert!(
        retransmits > 0,
        "no retransmission at 25% loss: was anything dropped?"
    );
    drop(nodes);
}

use serde_json::Value;
