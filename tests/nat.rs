//! Across NATs, in a NAT lab this test builds (network namespaces and nftables; needs root,
//! `ip` and `nft`): a public network 203.0.113.0/24 (TEST-NET-3) with the auth server and
//! a member, and home networks 192.168.N.0/24 behind routers that masquerade and drop
//! whatever comes in unasked, forwarded or for the router itself (a stateful firewall, as
//! home routers have: an unasked datagram for the router that were let in would leave a
//! connection entry that takes the port a punch needs). A "cone" router keeps a node's port for
//! every destination; traversal goes through the auth server as rendezvous. A "symmetric"
//! router gives every destination another port (`masquerade random`): no punch opens a path
//! to or from it, and members talk through a relay.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The namespaces of one lab, deleted when dropped.
struct NatLab {
    prefix: String,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nft(ns: &str, rules: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run nft (nftables)");
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin.write_all(rules.as_bytes()).expect("write rules");
    }
    assert!(child.wait().expect("nft").success(), "nft refused {rules}");
}

impl NatLab {
    /// `homes[i]`: the NAT of home network `i + 1` (`"cone"`), each with one host.
    fn new(homes: &[&str]) -> NatLab {
        let prefix = format!(
            "p2n{}-{}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let lab = NatLab { prefix };
        let (pubns, srv) = (lab.ns("pub"), lab.ns("srv"));
        for n in [&pubns, &srv] {
            run(&["ip", "netns", "add", n]);
            run(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        run(&["ip", "-n", &pubns, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &pubns, "link", "set", "br0", "up"]);
        lab.wire(&pubns, "srv", &srv, "eth0", "203.0.113.10/24");
        for (i, kind) in homes.iter().enumerate() {
            let k = i + 1;
            let (r, h) = (lab.ns(&format!("r{k}")), lab.ns(&format!("h{k}")));
            for n in [&r, &h] {
                run(&["ip", "netns", "add", n]);
                run(&["ip", "-n", n, "link", "set", "lo", "up"]);
            }
            lab.wire(
                &pubns,
                &format!("r{k}"),
                &r,
                "wan",
                &format!("203.0.113.{k}/24"),
            );
            run(&[
                "ip", "link", "add", "lan", "netns", &r, "type", "veth", "peer", "name", "eth0",
                "netns", &h,
            ]);
            run(&[
                "ip",
                "-n",
                &r,
                "addr",
                "add",
                &format!("192.168.{k}.1/24"),
                "dev",
                "lan",
            ]);
            run(&["ip", "-n", &r, "link", "set", "lan", "up"]);
            run(&[
                "ip",
                "-n",
                &h,
                "addr",
                "add",
                &format!("192.168.{k}.2/24"),
                "dev",
                "eth0",
            ]);
            run(&["ip", "-n", &h, "link", "set", "eth0", "up"]);
            run(&[
                "ip",
                "-n",
                &h,
                "route",
                "add",
                "default",
                "via",
                &format!("192.168.{k}.1"),
            ]);
            run(&[
                "ip",
                "netns",
                "exec",
                &r,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
            ]);
            let random = if *kind == "symmetric" { " random" } else { "" };
            nft(
                &r,
                &format!(
                    "table ip nat {{\n chain post {{\n  type nat hook postrouting priority 100;\n  oifname \"wan\" masquerade{random}\n }}\n}}\n\
                     table inet fw {{\n chain filter_in {{\n  type filter hook input priority 0; policy drop;\n  iifname {{ \"lan\", \"lo\" }} accept\n  ct state established,related accept\n }}\n chain filter_fwd {{\n  type filter hook forward priority 0; policy drop;\n  iifname \"lan\" accept\n  ct state established,related accept\n }}\n}}\n"
                ),
            );
        }
        // Datagrams between the two routers' public addresses (a direct path), and between
        // the first router and the public member (port 7001, beside the auth server).
        nft(
            &pubns,
            "table bridge lab {\n chain f {\n  type filter hook forward priority 0;\n  ip saddr 203.0.113.1 ip daddr 203.0.113.2 counter\n  ip saddr 203.0.113.2 ip daddr 203.0.113.1 counter\n }\n chain m {\n  type filter hook forward priority 1;\n  ip saddr 203.0.113.1 ip daddr 203.0.113.10 udp dport 7001 counter\n  ip saddr 203.0.113.10 udp sport 7001 ip daddr 203.0.113.1 counter\n }\n}\n",
        );
        lab
    }

    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A veth from the public bridge (port `port`) into `ns` as `dev` with `addr`.
    fn wire(&self, pubns: &str, port: &str, ns: &str, dev: &str, addr: &str) {
        run(&[
            "ip", "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", port, "netns",
            pubns,
        ]);
        run(&[
            "ip", "-n", pubns, "link", "set", port, "master", "br0", "up",
        ]);
        run(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        run(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }

    /// Datagrams counted between the two home routers' public addresses.
    fn direct_datagrams(&self) -> u64 {
        self.counted("f")
    }

    /// Datagrams counted between the first home router and the public member, both ways:
    /// `(out, in)`.
    fn member_datagrams(&self) -> (u64, u64) {
        let v = self.counts("m");
        (
            v.first().copied().unwrap_or(0),
            v.get(1).copied().unwrap_or(0),
        )
    }

    fn counted(&self, chain: &str) -> u64 {
        self.counts(chain).iter().sum()
    }

    /// The packet counters of one chain of the lab's bridge table, in rule order.
    fn counts(&self, chain: &str) -> Vec<u64> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("pub"),
                "nft",
                "list",
                "chain",
                "bridge",
                "lab",
                chain,
            ])
            .output()
            .expect("nft list");
        String::from_utf8_lossy(&out.stdout)
            .split("packets ")
            .skip(1)
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .collect()
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        let mut names = vec![self.ns("pub"), self.ns("srv")];
        for k in 1..=2 {
            names.push(self.ns(&format!("r{k}")));
            names.push(self.ns(&format!("h{k}")));
        }
        for n in names {
            let _ = Command::new("ip").args(["netns", "delete", &n]).output();
        }
    }
}

/// The auth server and a public member, in the lab's public network.
fn public_side(lab: &NatLab, dir: &std::path::Path) -> (Proc, String, Proc) {
    let srv = lab.ns("srv");
    let (auth, addr) = Proc::auth_server(&dir.join("auth"), "203.0.113.10:7000", Some(&srv), None);
    let mut mem = public_member(lab, "mem", 7001, &addr, dir);
    mem.ready();
    (auth, addr, mem)
}

/// A member on the public network (a relay when two members behind NATs need one).
fn public_member(lab: &NatLab, user: &str, port: u16, addr: &str, dir: &std::path::Path) -> Proc {
    Proc::node(
        user,
        "pw",
        addr,
        &dir.join(user),
        true,
        Some(&lab.ns("srv")),
        &["--listen", &format!("203.0.113.10:{port}")],
    )
}

/// `/peers` on `p`: the entry for `user`.
fn peer_entry(p: &mut Proc, user: &str) -> Value {
    let v = peers(p);
    v["peers"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["user"] == user).cloned())
        .unwrap_or_else(|| panic!("{user} not in {v}"))
}

/// `alice` behind the first home router and `bob` behind the second, both ready.
fn homes(lab: &NatLab, addr: &str, dir: &std::path::Path) -> (Proc, Proc) {
    let mut alice = home_node(lab, 1, "alice", addr, dir);
    alice.ready();
    let mut bob = home_node(lab, 2, "bob", addr, dir);
    bob.ready();
    (alice, bob)
}

/// `/peers` on `p`: a fresh answer.
fn peers(p: &mut Proc) -> Value {
    let is_peers = |v: &Value| v["event"] == "peers";
    let n = p.seen.iter().filter(|v| is_peers(v)).count();
    p.send("/peers");
    p.wait_nth("peers", n, is_peers)
}

/// Two members behind NATs, `alice` and `bob`: both online for each other, group messages
/// (also to the public member `mem`, when there is one) and private messages both ways.
fn talk(alice: &mut Proc, bob: &mut Proc, mem: Option<&mut Proc>, tag: &str) {
    let t = Instant::now();
    let step = |what: &str| eprintln!("  {:5.1} s {what}", t.elapsed().as_secs_f64());
    wait_status(alice, "bob", "online");
    step("alice sees bob online");
    wait_status(bob, "alice", "online");
    step("bob sees alice online");
    alice.send(&format!("alice to all {tag}"));
    bob.wait_text(&format!("alice to all {tag}"));
    if let Some(mem) = mem {
        mem.wait_text(&format!("alice to all {tag}"));
    }
    step("alice's group message reached bob (and the public member)");
    bob.send(&format!("bob to all {tag}"));
    alice.wait_text(&format!("bob to all {tag}"));
    step("bob's group message reached alice");
    alice.send(&format!("/msg bob psst bob {tag}"));
    private_text(bob, &format!("psst bob {tag}"));
    step("alice's private message reached bob");
    bob.send(&format!("/msg alice psst alice {tag}"));
    private_text(alice, &format!("psst alice {tag}"));
    step("bob's private message reached alice");
}

/// A node in home network `k` (behind its router's NAT).
fn home_node(lab: &NatLab, k: usize, user: &str, addr: &str, dir: &std::path::Path) -> Proc {
    let ns = lab.ns(&format!("h{k}"));
    Proc::node(
        user,
        "pw",
        addr,
        &dir.join(user),
        true,
        Some(&ns),
        &["--listen", "0.0.0.0:7002"],
    )
}

fn private_text(p: &mut Proc, text: &str) -> Value {
    p.wait_for(&format!("private {text:?}"), |v| {
        v["event"] == "message" && v["scope"] == "private" && v["text"] == text
    })
}

#[test]
fn a_node_behind_a_nat_joins_and_talks_with_a_public_member() {
    let lab = NatLab::new(&["cone"]);
    let d = tempdir();
    let dir = path(&d);
    let (_auth, addr, mut mem) = public_side(&lab, &dir);
    let start = Instant::now();
    let mut alice = home_node(&lab, 1, "alice", &addr, &dir);
    let ready = alice.ready();
    assert_eq!(ready["addr"], "203.0.113.1:7002", "its public address");
    alice.send("hello from behind a NAT");
    mem.wait_text("hello from behind a NAT");
    mem.send("/msg alice welcome");
    private_text(&mut alice, "welcome");
    alice.send("/msg mem thanks");
    private_text(&mut mem, "thanks");
    eprintln!(
        "none/cone: joined and talked in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let st = status(&mut alice);
    assert!(st["punches"].as_u64().unwrap_or(0) > 0, "{st}");
    assert_eq!(st["natted"], true, "{st}");
    // Direct: datagrams both ways between the NAT's public address and the member.
    let (out, back) = lab.member_datagrams();
    assert!(out > 0 && back > 0, "{out} out, {back} back");
    assert_eq!(peer_entry(&mut mem, "alice")["path"], "direct");
    assert_eq!(st["relayed_peers"], 0, "{st}");
}

/// Two home nodes behind NATs of `kinds` and a public member, after `talk`: the processes
/// first, so they stop before the lab's namespaces go.
struct Pair {
    alice: Proc,
    bob: Proc,
    _mem: Proc,
    _auth: Proc,
    lab: NatLab,
    _dir: tempfile::TempDir,
}

/// Builds the lab for `kinds`, starts everyone, has alice and bob talk, and prints how long
/// it took.
fn pair_that_talked(kinds: [&str; 2]) -> Pair {
    let lab = NatLab::new(&kinds);
    let d = tempdir();
    let dir = path(&d);
    let (auth, addr, mut mem) = public_side(&lab, &dir);
    let start = Instant::now();
    let (mut alice, mut bob) = homes(&lab, &addr, &dir);
    talk(&mut alice, &mut bob, Some(&mut mem), "");
    eprintln!(
        "{}/{}: joined and talked in {:.1} s",
        kinds[0],
        kinds[1],
        start.elapsed().as_secs_f64()
    );
    Pair {
        alice,
        bob,
        _mem: mem,
        _auth: auth,
        lab,
        _dir: d,
    }
}

#[test]
fn two_nodes_behind_cone_nats_talk_directly() {
    let mut p = pair_that_talked(["cone", "cone"]);
    let direct = p.lab.direct_datagrams();
    assert!(direct > 0, "no datagram went directly between the two NATs");
    assert_eq!(peer_entry(&mut p.alice, "bob")["path"], "direct");
}

#[test]
fn a_node_behind_a_symmetric_nat_talks_with_one_behind_a_cone_nat() {
    let mut p = pair_that_talked(["cone", "symmetric"]);
    // No punch opens a path to or from a symmetric NAT: a relay carries it.
    assert_eq!(peer_entry(&mut p.alice, "bob")["path"], "relayed");
    assert_eq!(peer_entry(&mut p.bob, "alice")["path"], "relayed");
}

#[test]
fn two_nodes_behind_symmetric_nats_talk_through_a_relay_that_is_replaced_when_it_dies() {
    let lab = NatLab::new(&["symmetric", "symmetric"]);
    let d = tempdir();
    let dir = path(&d);
    let (_auth, addr, mut mem) = public_side(&lab, &dir);
    let mut mem2 = public_member(&lab, "mem2", 7003, &addr, &dir);
    let mem2_id = mem2.ready()["node_id"].clone();
    let start = Instant::now();
    let (mut alice, mut bob) = homes(&lab, &addr, &dir);
    talk(&mut alice, &mut bob, Some(&mut mem), "1");
    eprintln!(
        "symmetric/symmetric: joined and talked in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let entry = peer_entry(&mut alice, "bob");
    assert_eq!(entry["path"], "relayed", "{entry}");
    // The relay dies: the other public member takes over (not the auth server, the last
    // resort).
    let via = entry["via"].clone();
    let mem_id = peer_entry(&mut alice, "mem")["node_id"].clone();
    let (dead, alive, alive_id) = if via == mem2_id {
        (&mut mem2, &mut mem, mem_id)
    } else {
        (&mut mem, &mut mem2, mem2_id)
    };
    dead.kill9();
    let again = Instant::now();
    // Both route through the other relay within a few probe rounds.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    for i in 0..2 {
        let (p, other) = if i == 0 {
            (&mut alice, "bob")
        } else {
            (&mut bob, "alice")
        };
        loop {
            let e = peer_entry(p, other);
            if e["path"] == "relayed" && e["via"] == alive_id && e["status"] == "online" {
                break;
            }
            if Instant::now() >= deadline {
                let mut dump = String::new();
                for q in [&mut alice, &mut bob, &mut *alive] {
                    let peers = peers(q);
                    let st = status(q);
                    dump += &format!("{}: {peers}\n{st}\n", q.name);
                }
                panic!("still routed through the dead relay\n{dump}");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    eprintln!(
        "  {:5.1} s both route through the other relay",
        again.elapsed().as_secs_f64()
    );
    talk(&mut alice, &mut bob, Some(alive), "2");
    eprintln!(
        "symmetric/symmetric: the relay died; talking again through another in {:.1} s",
        again.elapsed().as_secs_f64()
    );
    let entry = peer_entry(&mut alice, "bob");
    assert_eq!(entry["path"], "relayed", "{entry}");
    assert_eq!(entry["via"], alive_id, "{entry}");
    let st = status(&mut alice);
    assert!(st["via_relay"].as_u64().unwrap_or(0) > 0, "{st}");
    let st = status(alive);
    assert!(st["relayed"].as_u64().unwrap_or(0) > 0, "{st}");
}

#[test]
fn with_no_member_on_the_public_side_nodes_behind_symmetric_nats_join_and_talk_through_the_auth_server(
) {
    // Every member is behind a NAT, so none can relay: the auth server is the last resort.
    let lab = NatLab::new(&["symmetric", "symmetric"]);
    let d = tempdir();
    let dir = path(&d);
    let (_auth, addr) = Proc::auth_server(
        &dir.join("auth"),
        "203.0.113.10:7000",
        Some(&lab.ns("srv")),
        None,
    );
    let start = Instant::now();
    let (mut alice, mut bob) = homes(&lab, &addr, &dir);
    talk(&mut alice, &mut bob, None, "");
    eprintln!(
        "symmetric/symmetric, nobody public: joined and talked in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    for (p, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        let entry = peer_entry(p, other);
        assert_eq!(entry["path"], "relayed", "{entry}");
        assert_eq!(entry["via"], "server", "{entry}");
        let st = status(p);
        assert!(st["via_relay"].as_u64().unwrap_or(0) > 0, "{st}");
    }
}
