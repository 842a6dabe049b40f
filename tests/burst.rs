//! A big group talking at once, as real processes: 100 nodes, one loopback address each, all
//! sending at the same moment. Nothing is refused, and every message reaches every node once.

mod common;

use common::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const NODES: usize = 100;
const EACH: usize = 2;

#[test]
fn a_hundred_processes_sending_at_once_deliver_everything_exactly_once() {
    let dirs = tempdir();
    let (_auth, addr) = Proc::auth_server_with(
        &dirs.path().join("auth"),
        "127.0.0.1:0",
        None,
        &["--signup-rate", "0"],
    );
    let mut ps: Vec<Proc> = Vec::new();
    for i in 0..NODES {
        let name = format!("n{i}");
        // One loopback address each, as separate machines would have.
        let listen = format!("127.0.{}.{}:0", 1 + i / 200, 2 + i % 200);
        let mut p = Proc::node_on(
            0,
            &name,
            "pw",
            &addr,
            &dirs.path().join(&name),
            true,
            None,
            &["--listen", &listen],
        );
        p.ready();
        ps.push(p);
    }
    // Everyone knows everyone before the burst (the group is formed).
    let deadline = Instant::now() + Duration::from_secs(300);
    for p in ps.iter_mut() {
        loop {
            let st = status(p);
            if st["members"].as_u64() == Some(NODES as u64 - 1) {
                break;
            }
            assert!(Instant::now() < deadline, "{}: {st}", p.name);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // The burst: every node writes EACH messages at once.
    for (i, p) in ps.iter_mut().enumerate() {
        for k in 0..EACH {
            p.send(&format!("burst {i}.{k}"));
        }
    }
    let texts: Vec<String> = (0..NODES)
        .flat_map(|i| (0..EACH).map(move |k| format!("burst {i}.{k}")))
        .collect();
    for p in ps.iter_mut() {
        for t in &texts {
            p.wait_text(t);
        }
        let errors: Vec<_> = p.seen.iter().filter(|v| v["event"] == "error").collect();
        assert!(errors.is_empty(), "{}: {errors:?}", p.name);
    }
    // Exactly once, everywhere.
    for p in ps.iter_mut() {
        let mut count: HashMap<&str, usize> = HashMap::new();
        for v in &p.seen {
            if v["event"] == "message" && v["scope"] == "group" {
                *count
                    .entry(v["text"].as_str().unwrap_or_default())
                    .or_default() += 1;
            }
        }
        for t in &texts {
            assert_eq!(count.get(t.as_str()), Some(&1), "{}: {t}", p.name);
        }
    }
}
