//! Several auth servers over one real PostgreSQL (Debian's, started by the test on loopback
//! in a temporary directory): one key, one set of accounts, one cap, failover, and no lost or
//! duplicated account when a server is killed in the middle of a signup.

mod common;

use common::*;
use std::io::Write;
use std::time::Instant;

/// The key an auth server prints on its second line.
fn key_line(p: &mut Proc) -> String {
    let line = p.line();
    assert!(line.starts_with("auth server key: "), "{line}");
    line
}

#[test]
fn two_servers_share_key_accounts_and_the_cap_even_when_signups_race() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_db("shared");
    let (mut a, a_addr) = Proc::auth_server_db(&url, "127.0.0.1:0", &[]);
    let (mut b, b_addr) = Proc::auth_server_db(&url, "127.0.0.1:0", &[]);
    assert_eq!(key_line(&mut a), key_line(&mut b), "one identity");
    let dir = tempdir();
    let d = path(&dir);
    // A pinned key works with either server.
    let key = key_line(&mut Proc::auth_server_db(&url, "127.0.0.1:0", &[]).0);
    let key = key.split_whitespace().nth(3).expect("key").to_string();
    let mut ann = Proc::node("ann", "pw-a", &a_addr, &d.join("ann"), true, None, &[]);
    let ann_id = ann.ready()["node_id"].clone();
    // Taken through A is taken through B.
    let mut other = Proc::node("ann", "pw-x", &b_addr, &d.join("ann2"), true, None, &[]);
    other.fails_with("taken");
    let mut bob = Proc::node(
        "bob",
        "pw-b",
        &b_addr,
        &d.join("bob"),
        true,
        None,
        &["--auth-key", &key],
    );
    let bob_id = bob.ready()["node_id"].clone();
    assert_ne!(ann_id, bob_id, "ids come from one sequence");
    // Admitted by A and by B, they chat together.
    ann.send("hello from A's side");
    bob.wait_text("hello from A's side");
    bob.send("/msg ann and back from B's");
    ann.wait_text("and back from B's");

    // The cap: 10 signups race through both servers of a network capped at 4.
    let capped = pg.create_db("capped");
    let (_a2, a2) = Proc::auth_server_db(&capped, "127.0.0.1:0", &["--max-nodes", "4"]);
    let (_b2, b2) = Proc::auth_server_db(&capped, "127.0.0.1:0", &["--max-nodes", "4"]);
    let mut racers: Vec<Proc> = (0..10)
        .map(|i| {
            let auth = if i % 2 == 0 { &a2 } else { &b2 };
            let name = format!("racer{i}");
            Proc::node(&name, "pw", auth, &d.join(&name), true, None, &[])
        })
        .collect();
    let (mut ready, mut full) = (0, 0);
    for r in racers.iter_mut() {
        let v = r.wait_for("ready or refusal", |v| {
            v["event"] == "ready" || (v["event"] == "error" && v["fatal"] == true)
        });
        if v["event"] == "ready" {
            ready += 1;
        } else {
            assert!(
                v["message"].as_str().is_some_and(|m| m.contains("full")),
                "refused for the cap, not for {v}"
            );
            full += 1;
        }
    }
    assert_eq!((ready, full), (4, 6), "the cap holds across servers");
    assert_eq!(pg.sql("capped", "SELECT count(*) FROM accounts"), "4");
    // A fifth is refused whichever server it asks.
    for (i, auth) in [&a2, &b2].into_iter().enumerate() {
        let name = format!("late{i}");
        let mut late = Proc::node(&name, "pw", auth, &d.join(&name), true, None, &[]);
        late.fails_with("full");
    }
}

#[test]
fn a_node_fails_over_and_a_killed_server_loses_no_signup() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_db("failover");
    let (mut a, a_addr) = Proc::auth_server_db(&url, "127.0.0.1:0", &[]);
    let (_b, b_addr) = Proc::auth_server_db(&url, "127.0.0.1:0", &[]);
    let dir = tempdir();
    let d = path(&dir);
    let both = ["--auth", b_addr.as_str()];
    let mut ann = Proc::node("ann", "pw-a", &a_addr, &d.join("ann"), true, None, &both);
    ann.ready();

    // Kill -9 A while it is in the middle of bob's signup: its account insert waits on a
    // lock held here, so A has read, hashed and begun, but not committed.
    let (mut psql, mut held) = pg.session("failover");
    writeln!(held, "BEGIN; LOCK TABLE accounts IN EXCLUSIVE MODE;").expect("lock");
    held.flush().expect("flush");
    let locked = Instant::now();
    while pg.sql("failover", "SELECT count(*) FROM pg_locks WHERE mode = 'ExclusiveLock' AND relation = 'accounts'::regclass") != "1" {
        assert!(locked.elapsed() < TIMEOUT, "the lock was never taken");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut bob = Proc::node("bob", "pw-b", &a_addr, &d.join("bob"), true, None, &both);
    let waiting = Instant::now();
    while pg.sql(
        "failover",
        "SELECT count(*) FROM pg_locks WHERE NOT granted",
    ) == "0"
    {
        assert!(waiting.elapsed() < TIMEOUT, "A never reached the insert");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    a.kill9();
    writeln!(held, "COMMIT;").expect("unlock");
    drop(held);
    let _ = psql.wait();
    // bob asks B (same request), which makes the account once; ann polls B too.
    let bob_id = bob.ready()["node_id"].clone();
    let st = status(&mut bob);
    assert_eq!(st["auth_server"], b_addr.as_str(), "bob ended on B: {st}");
    assert_eq!(
        pg.sql(
            "failover",
            "SELECT node_id FROM accounts WHERE user_name = 'bob'"
        ),
        bob_id.to_string()
    );
    ann.send("after the failover");
    bob.wait_text("after the failover");
    let ann_st = status(&mut ann);
    assert!(ann_st["auth_failovers"].as_u64() >= Some(1), "{ann_st}");

    // More signups while A is dead and comes back, killed again mid-way: every account is
    // made exactly once, and each node holds the id the database gave it.
    let (mut a, a_addr) = Proc::auth_server_db(&url, &a_addr, &[]);
    let many: Vec<String> = (0..6).map(|i| format!("user{i}")).collect();
    let mut nodes: Vec<Proc> = many
        .iter()
        .map(|n| Proc::node(n, "pw", &a_addr, &d.join(n), true, None, &both))
        .collect();
    a.kill9();
    for (n, p) in many.iter().zip(nodes.iter_mut()) {
        let id = p.ready()["node_id"].clone();
        let row = pg.sql(
            "failover",
            &format!("SELECT node_id FROM accounts WHERE user_name = '{n}'"),
        );
        assert_eq!(row, id.to_string(), "{n}");
    }
    assert_eq!(
        pg.sql(
            "failover",
            "SELECT count(*), count(DISTINCT node_id) FROM accounts"
        ),
        "8|8"
    );
}

#[test]
fn a_database_outage_answers_nothing_wrong_and_signups_go_on_when_it_is_back() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_db("outage");
    let (_a, a_addr) = Proc::auth_server_db(&url, "127.0.0.1:0", &[]);
    let dir = tempdir();
    let d = path(&dir);
    let mut ann = Proc::node("ann", "pw-a", &a_addr, &d.join("ann"), true, None, &[]);
    ann.ready();
    pg.pause();
    // bob asks while the database is down: no answer (neither "taken" nor an error).
    let attempts = ["--auth-attempts", "60"];
    let mut bob = Proc::node(
        "bob",
        "pw-b",
        &a_addr,
        &d.join("bob"),
        true,
        None,
        &attempts,
    );
    let asking = Instant::now();
    loop {
        let st = status(&mut bob);
        assert_eq!(st["phase"], "signing_in", "{st}");
        if st["datagrams_out"].as_u64() >= Some(4) {
            break;
        }
        assert!(asking.elapsed() < TIMEOUT, "bob never asked: {st}");
    }
    assert!(
        !bob.seen.iter().any(|v| v["event"] == "error"),
        "no answer is given while the database is down: {:?}",
        bob.seen
    );
    pg.resume();
    // The server reconnects; bob's next attempt gets in. ann kept chatting meanwhile.
    bob.ready();
    ann.send("after the outage");
    bob.wait_text("after the outage");
    assert_eq!(pg.sql("outage", "SELECT count(*) FROM accounts"), "2");
}

/// Runs an auth server that must exit 1 at once; returns what it printed.
fn auth_server_fails(url: &str) -> String {
    let out = std::process::Command::new(bin())
        .args(["auth-server", "--listen", "127.0.0.1:0", "--db", url])
        .output()
        .expect("run the auth server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    text
}

#[test]
fn database_errors_are_clear() {
    let Some(pg) = Postgres::start() else { return };
    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("postgresql://postgres@127.0.0.1:{closed}/nothing");
    let mut p = auth_server_fails(&url);
    assert!(
        p.contains("cannot reach the database postgres@127.0.0.1"),
        "{p}"
    );
    assert!(!p.contains("panicked"), "{p}");
    // A role without rights on the schema.
    let url = pg.create_db("locked");
    pg.sql("postgres", "CREATE ROLE nobody LOGIN");
    let nobody = pg.url("nobody", "locked");
    p = auth_server_fails(&nobody);
    assert!(p.contains("no permission"), "{p}");
    // A schema from a newer p2pchat.
    let (mut ok, _) = Proc::auth_server_db(&url, "127.0.0.1:0", &[]);
    ok.kill9();
    pg.sql("locked", "UPDATE p2pchat_schema SET version = 99");
    p = auth_server_fails(&url);
    assert!(p.contains("schema version 99"), "{p}");
    // The password in a URL is never printed.
    let secret = format!("postgresql://postgres:s3cret@127.0.0.1:{closed}/nothing");
    p = auth_server_fails(&secret);
    assert!(!p.contains("s3cret"), "{p}");
}

#[test]
fn devices_of_one_account_through_two_servers_on_one_database() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_db("devices");
    let (_a, a_addr) = Proc::auth_server_db(&url, "127.0.0.1:0", &["--max-devices", "2"]);
    let (_b, b_addr) = Proc::auth_server_db(&url, "127.0.0.1:0", &["--max-devices", "2"]);
    let dir = tempdir();
    let d = path(&dir);
    let mut first = Proc::node("yuri", "pw", &a_addr, &d.join("y1"), true, None, &[]);
    let id1 = first.ready()["node_id"].as_u64().expect("id");
    // A second data dir, through the other server: a device of its own.
    let mut second = Proc::node("yuri", "pw", &b_addr, &d.join("y2"), false, None, &[]);
    let id2 = second.ready()["node_id"].as_u64().expect("id");
    assert_ne!(id1, id2);
    assert_eq!(pg.sql("devices", "SELECT count(*) FROM devices"), "2");
    // The cap counts devices in the database, whichever server is asked.
    let mut third = Proc::node("yuri", "pw", &a_addr, &d.join("y3"), false, None, &[]);
    third.fails_with("revoke one");
    // Each device resumes its own id.
    drop(second);
    let mut again = Proc::node("yuri", "pw", &a_addr, &d.join("y2"), false, None, &[]);
    assert_eq!(again.ready()["node_id"].as_u64(), Some(id2));
    // The list and a revocation, through the database.
    first.send("/devices");
    let list = first.wait_for("devices", |v| v["event"] == "devices");
    assert_eq!(list["devices"].as_array().map(Vec::len), Some(2), "{list}");
    first.send(&format!("/devices revoke {id2}"));
    again.fails_with("revoked");
    assert_eq!(
        pg.sql(
            "devices",
            &format!("SELECT revoked FROM devices WHERE node_id = {id2}")
        ),
        "t"
    );
}
