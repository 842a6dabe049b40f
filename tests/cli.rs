//! The one-shot commands: `p2pchat sim` and `p2pchat demo`.

mod common;

use common::bin;
use std::process::Command;

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("sim")
        .args(args)
        .output()
        .expect("run p2pchat sim")
}

#[test]
fn sim_prints_the_same_json_line_for_the_same_arguments() {
    let args = [
        "--nodes",
        "30",
        "--messages",
        "40",
        "--private",
        "10",
        "--loss",
        "0.2",
        "--dup",
        "0.05",
        "--crash",
        "3",
        "--seed",
        "11",
        "--json",
    ];
    let a = sim(&args);
    let b = sim(&args);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).expect("one JSON object");
    for key in [
        "nodes",
        "messages",
        "expected",
        "delivered",
        "missing",
        "duplicates",
        "causal_violations",
        "converged_ms",
        "datagrams",
        "bytes",
        "rmr",
        "last_delivery_hop",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["missing"], 0);
    assert_eq!(v["duplicates"], 0);
    assert_eq!(v["causal_violations"], 0);
    assert_eq!(v["expected"], 30 * 40 + 10);
}

#[test]
fn sim_refuses_invalid_arguments_clearly() {
    for args in [
        &["--nodes", "1"][..],
        &["--loss", "2"],
        &["--crash", "500", "--nodes", "10"],
        &["--nodes", "many"],
    ] {
        let out = sim(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn the_demo_passes() {
    let out = Command::new(bin())
        .arg("demo")
        .output()
        .expect("run p2pchat demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("OK: all 4 nodes hold the same 8 group messages"),
        "{text}"
    );
    assert!(text.contains("carol is back as node 3"), "{text}");
}

/// Runs `p2pchat bench` with `args` and `--json`; its one JSON object.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run p2pchat bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn bench_runs_real_nodes_and_reports_json() {
    let v = bench_json(&[
        "--nodes=3",
        "--workload=latency",
        "--messages=20",
        "--rate=200",
    ]);
    assert_eq!(v["delivered"], 40);
    assert_eq!(v["missing"], 0);
    for key in [
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "max_ms",
        "bytes_per_delivery",
        "cpu_s",
        "peak_rss_bytes",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    // Above 32 members a group message travels by ring broadcast: 40 real nodes on real
    // sockets, everything delivered.
    let v = bench_json(&[
        "--nodes=40",
        "--workload=latency",
        "--messages=30",
        "--rate=50",
    ]);
    assert_eq!(v["missing"], 0, "{v}");
    assert_eq!(v["delivered"], 30 * 39, "{v}");
    let bad = Command::new(bin())
        .args(["bench", "--nodes", "1"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
}
