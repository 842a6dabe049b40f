//! Behaviour is pinned: `p2pchat sim ... --json` must print, byte for byte, what was recorded
//! in `tests/golden/` (the simulator is deterministic for a seed). A change that alters
//! protocol behaviour shows up here; if it is meant, record the new outputs with
//! `P2PCHAT_BLESS=1 cargo test --test golden` (and `-- --ignored` for the large runs) and say
//! why in the commit.

mod common;

use common::bin;
use std::path::PathBuf;
use std::process::Command;

/// The sim commands of README.md and docs/PERFORMANCE.md small enough for every test run.
const SMALL: &[(&str, &str)] = &[
    ("loss", "--nodes 100 --messages 200 --loss 0.3 --dup 0.1"),
    (
        "partition",
        "--nodes 100 --messages 200 --partition-ms 5000",
    ),
    (
        "crash",
        "--nodes 100 --messages 200 --private 50 --crash 30 --crash-auth",
    ),
    (
        "offline",
        "--nodes 200 --messages 100 --offline-private 20 --loss 0.2 --crash 20",
    ),
    (
        "views",
        "--nodes 240 --messages 60 --private 30 --view 24 --loss 0.05 --crash 40",
    ),
    ("burst", "--nodes 60 --messages 120 --burst --profile wan"),
];

/// The large ones (minutes each in a release build): `cargo test --release --test golden --
/// --ignored`.
const LARGE: &[(&str, &str)] = &[
    ("ring1000", "--nodes 1000 --messages 300 --crash 300"),
    ("views3000", "--nodes 3000 --messages 100 --loss 0.05"),
];

fn check(name: &str, args: &str) {
    let out = Command::new(bin())
        .arg("sim")
        .args(args.split_whitespace())
        .arg("--json")
        .output()
        .expect("run p2pchat sim");
    assert!(
        out.status.success(),
        "sim {args} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    if std::env::var_os("P2PCHAT_BLESS").is_some() {
        std::fs::write(&path, &out.stdout).expect("record");
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (record it with P2PCHAT_BLESS=1 cargo test --test golden)",
            path.display()
        )
    });
    if want != out.stdout {
        panic!(
            "sim {args}: the output changed\nrecorded: {}\nnow:      {}",
            String::from_utf8_lossy(&want).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
}

#[test]
fn small_sim_runs_print_what_was_recorded() {
    // In parallel: each run is one process.
    std::thread::scope(|s| {
        for (name, args) in SMALL {
            s.spawn(move || check(name, args));
        }
    });
}

#[test]
#[ignore = "minutes in a release build: cargo test --release --test golden -- --ignored"]
fn large_sim_runs_print_what_was_recorded() {
    for (name, args) in LARGE {
        check(name, args);
    }
}
