//! History as a user reads it from script mode: pages (`/history --last N --before ID`) and
//! search (`/search TEXT [--in USER] [--last N]`, SQLite full text), also after a restart.

mod common;

use common::*;
use serde_json::Value;

fn texts(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Sends `/search ARGS` and returns the `search` event it got.
fn search(p: &mut Proc, args: &str) -> Value {
    let is_search = |v: &Value| v["event"] == "search";
    let n = p.seen.iter().filter(|v| is_search(v)).count();
    p.send(&format!("/search {args}"));
    p.wait_nth("search", n, is_search)
}

/// Sends `/history ARGS` and returns the `history` event it got.
fn history(p: &mut Proc, args: &str) -> Value {
    let is_history = |v: &Value| v["event"] == "history";
    let n = p.seen.iter().filter(|v| is_history(v)).count();
    p.send(&format!("/history {args}"));
    p.wait_nth("history", n, is_history)
}

/// Sends a command that must fail and returns the error message.
fn error(p: &mut Proc, line: &str) -> String {
    let is_error = |v: &Value| v["event"] == "error";
    let n = p.seen.iter().filter(|v| is_error(v)).count();
    p.send(line);
    let e = p.wait_nth("error", n, is_error);
    e["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn history_pages_and_search_answer_from_the_data_dir_also_after_a_restart() {
    let dirs = tempdir();
    let (_auth, addr, mut ps) = network(dirs.path(), &["alice", "bob"]);
    // 30 group messages, one in three about lunch; two private ones about lunch.
    let mut group = Vec::new();
    for i in 0..30 {
        let text = if i % 3 == 0 {
            format!("note {i}: Lunch at noon?")
        } else {
            format!("note {i}: the weather")
        };
        ps[0].send(&text);
        ps[1].wait_text(&text);
        group.push(text);
    }
    ps[0].send("/msg bob lunchtime plans, privately");
    ps[1].wait_text("lunchtime plans, privately");
    ps[1].send("/msg alice no lunch for me");
    ps[0].wait_text("no lunch for me");
    let lunch: Vec<String> = group
        .iter()
        .filter(|t| t.contains("Lunch"))
        .cloned()
        .collect();

    for round in ["running", "restarted"] {
        let bob = &mut ps[1];
        // Every word, as a word start, in the group and the private conversation, oldest first.
        let found = search(bob, "LUNCH");
        assert_eq!(found["query"], "LUNCH");
        let mut want = lunch.clone();
        want.push("lunchtime plans, privately".into());
        want.push("no lunch for me".into());
        assert_eq!(
            texts(found["messages"].as_array().expect("messages")),
            want,
            "{round}"
        );
        // The newest matches, and one conversation only.
        let newest = search(bob, "lunch --last 2");
        assert_eq!(
            texts(newest["messages"].as_array().expect("messages")),
            ["lunchtime plans, privately", "no lunch for me"],
            "{round}"
        );
        let private = search(bob, "lunch --in alice");
        let private = private["messages"].as_array().expect("messages");
        assert_eq!(private.len(), 2, "{round}");
        assert!(
            private.iter().all(|m| m["to"].is_string()),
            "{round}: {private:?}"
        );
        let both = search(bob, "note noon");
        assert_eq!(
            texts(both["messages"].as_array().expect("messages")),
            lunch,
            "{round}"
        );
        // Text that looks like query syntax is only words; no words is a clear error.
        let odd = search(bob, "\"noon\" OR NEAR(weather");
        assert!(
            odd["messages"].as_array().expect("messages").is_empty(),
            "{round}: {odd}"
        );
        assert!(error(bob, "/search \"*( )").contains("nothing to search for"));
        assert!(error(bob, "/search x --in nobody").contains("unknown user"));

        // Pages: the newest 10, then the 10 before the first of them.
        let page = history(bob, "--last 10");
        let msgs = page["messages"].as_array().expect("messages").clone();
        assert_eq!(texts(&msgs), group[20..].to_vec(), "{round}");
        assert_eq!(page["earlier"], 20, "{round}");
        let first = msgs[0]["id"].as_str().expect("id").to_string();
        let back = history(bob, &format!("--before {first} --last 10"));
        assert_eq!(
            texts(back["messages"].as_array().expect("messages")),
            group[10..20].to_vec(),
            "{round}"
        );
        assert_eq!(back["earlier"], 10, "{round}");
        assert!(error(bob, "/history --before 999.999").contains("no message 999.999"));

        if round == "running" {
            bob.kill9();
            let mut again = Proc::node(
                "bob",
                "pw",
                &addr,
                &dirs.path().join("bob"),
                false,
                None,
                &[],
            );
            again.ready();
            ps[1] = again;
        }
    }
}

#[test]
fn a_long_pipe_ending_in_quit_loses_no_line() {
    let dirs = tempdir();
    let (_auth, addr) = Proc::auth_server(&dirs.path().join("auth"), "127.0.0.1:0", None, None);
    let dir = dirs.path().join("n");
    // More lines than a node keeps before it is signed in, written at once, then /quit: every
    // line is carried out, in order, before the node leaves.
    let mut p = Proc::node("piper", "pw", &addr, &dir, true, None, &[]);
    const LINES: usize = 12_000;
    for i in 0..LINES {
        p.send(&format!("line {i}"));
    }
    p.send("/quit");
    p.send("not after quit");
    assert_eq!(p.exit_code(), Some(0));
    let mut again = Proc::node("piper", "pw", &addr, &dir, false, None, &[]);
    again.ready();
    let page = history(&mut again, "--last 2");
    assert_eq!(
        texts(page["messages"].as_array().expect("messages")),
        [format!("line {}", LINES - 2), format!("line {}", LINES - 1)]
    );
    assert_eq!(page["earlier"], LINES - 2);
}

#[test]
fn a_restart_after_a_crash_starts_from_the_summary_and_replays_the_rest() {
    let dirs = tempdir();
    let (_auth, addr) = Proc::auth_server(&dirs.path().join("auth"), "127.0.0.1:0", None, None);
    let dir = dirs.path().join("n");
    let start = |signup| Proc::node("sam", "pw", &addr, &dir, signup, None, &[]);
    let echo = |p: &mut Proc, text: &str| {
        p.wait_for(text, |v| v["event"] == "message" && v["text"] == text);
    };
    // A clean stop saves a summary of the first 300 ...
    let mut p = start(true);
    let node_id = p.ready()["node_id"].clone();
    for i in 0..300 {
        p.send(&format!("m{i}"));
    }
    echo(&mut p, "m299");
    p.send("/quit");
    assert_eq!(p.exit_code(), Some(0));
    // ... the next 200 come after it, and the process is killed: no new summary.
    let mut p = start(false);
    p.ready();
    assert_eq!(history(&mut p, "--last 1")["earlier"], 299);
    for i in 300..500 {
        p.send(&format!("m{i}"));
    }
    echo(&mut p, "m499");
    // The echo may precede its commit by microseconds; a later answer follows it.
    status(&mut p);
    p.kill9();
    // The restart has all 500 in order, and its next message does not reuse a number.
    let mut p = start(false);
    p.ready();
    let page = history(&mut p, "--last 1000");
    let want: Vec<String> = (0..500).map(|i| format!("m{i}")).collect();
    assert_eq!(texts(page["messages"].as_array().expect("messages")), want);
    p.send("after the crash");
    let m = p.wait_for("the new message", |v| {
        v["event"] == "message" && v["text"] == "after the crash"
    });
    assert_eq!(m["id"], format!("{node_id}.501"), "{m}");
    // Paging back reaches into what the summary covers.
    let back = history(&mut p, &format!("--last 2 --before {node_id}.250"));
    assert_eq!(
        texts(back["messages"].as_array().expect("messages")),
        ["m247", "m248"]
    );
    assert_eq!(back["earlier"], 247);
}

#[test]
fn status_is_answered_however_often_it_is_asked_before_sign_in() {
    // Nothing answers at this address: the node stays signing in.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let dirs = tempdir();
    let mut p = Proc::node(
        "patient",
        "pw",
        &addr,
        &dirs.path().join("n"),
        true,
        None,
        &["--auth-attempts", "60"],
    );
    // More than the lines a node takes before it is signed in: `/status` is not one of them.
    const ASKS: usize = 1_500;
    for _ in 0..ASKS {
        p.send("/status");
    }
    let last = p.wait_nth("the last status", ASKS - 1, |v| v["event"] == "status");
    assert_eq!(last["phase"], "signing_in", "{last}");
}

#[test]
fn a_newcomer_catches_up_a_hundred_thousand_messages() {
    const N: usize = 100_000;
    let dirs = tempdir();
    let (_auth, addr) = Proc::auth_server(&dirs.path().join("auth"), "127.0.0.1:0", None, None);
    let mut anna = Proc::node(
        "anna",
        "pw",
        &addr,
        &dirs.path().join("anna"),
        true,
        None,
        &[],
    );
    anna.ready();
    for i in 0..N {
        anna.send(&format!("message {i} of a long history"));
    }
    let last = format!("message {} of a long history", N - 1);
    let minutes = std::time::Duration::from_secs(600);
    anna.wait_forgetting("the echo of the last message", minutes, |v| {
        v["event"] == "message" && v["text"] == last.as_str()
    });
    // A newcomer gets the whole history from anna's data dir, by anti-entropy repair.
    let mut bert = Proc::node(
        "bert",
        "pw",
        &addr,
        &dirs.path().join("bert"),
        true,
        None,
        &[],
    );
    bert.wait_forgetting("the last message", minutes, |v| {
        v["event"] == "message" && v["text"] == last.as_str()
    });
    let page = history(&mut bert, "--last 1");
    assert_eq!(page["earlier"], N - 1, "every message, once");
}
