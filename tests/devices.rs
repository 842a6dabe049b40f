//! One account, several devices: a second data dir for an account is a device of its own
//! (own id, keys and counters), so nothing is lost, stalled or duplicated, for the account's
//! devices or anyone else; a device can be revoked from another.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;

/// Group texts in a history, in order, without merges.
fn texts(h: &[Value]) -> Vec<String> {
    h.iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Each message id holds one text, and each text (all distinct here) arrived once.
fn ids_and_texts_are_unique(p: &Proc, scope: &str) {
    let mut by_id: HashMap<String, String> = HashMap::new();
    let mut count: HashMap<String, usize> = HashMap::new();
    for v in p
        .seen
        .iter()
        .filter(|v| v["event"] == "message" && v["scope"] == scope && v["text"] != "")
    {
        let id = v["id"].as_str().unwrap_or_default().to_string();
        let text = v["text"].as_str().unwrap_or_default().to_string();
        if let Some(old) = by_id.insert(id.clone(), text.clone()) {
            assert_eq!(old, text, "{}: id {id} holds two texts", p.name);
        }
        *count.entry(text).or_default() += 1;
    }
    for (text, n) in count {
        assert_eq!(n, 1, "{}: {text:?} shown {n} times", p.name);
    }
}

#[test]
fn a_second_data_dir_is_a_device_of_its_own_and_nothing_is_lost_stalled_or_duplicated() {
    let d = tempdir();
    let dir = path(&d);
    let (_auth, addr, mut ps) = network(&dir, &["yuri", "ann"]);
    let mut ann = ps.pop().expect("ann");
    let mut yuri1 = ps.pop().expect("yuri");
    let id1 = status(&mut yuri1)["node_id"].as_u64().expect("id");
    yuri1.send("y1 one");
    yuri1.send("y1 two");
    ann.wait_text("y1 two");

    // The same account from a fresh data dir: a second laptop, or a reinstall.
    let mut yuri2 = Proc::node("yuri", "pw", &addr, &dir.join("yuri2"), false, None, &[]);
    let id2 = yuri2.ready()["node_id"].as_u64().expect("id");
    assert_ne!(id1, id2, "a new device gets a node id of its own");
    yuri2.wait_text("y1 one");
    yuri2.wait_text("y1 two");
    wait_status(&mut yuri2, "ann", "online");
    // Both devices online at once: both receive, both send, nobody is cut off.
    ann.send("ann to all");
    yuri1.wait_text("ann to all");
    yuri2.wait_text("ann to all");
    yuri2.send("y2 hello");
    ann.wait_text("y2 hello");
    yuri1.wait_text("y2 hello");
    let from_y2 = ann.wait_text("y2 hello");
    assert_eq!(from_y2["from"], "yuri", "shown per user");
    assert_eq!(
        from_y2["device"].as_u64(),
        Some(id2),
        "the device that wrote it"
    );

    // Private: to the user reaches both devices; what one device sends shows on the other.
    ann.send("/msg yuri psst");
    yuri1.wait_text("psst");
    yuri2.wait_text("psst");
    yuri2.send("/msg ann from the laptop");
    ann.wait_text("from the laptop");
    yuri1.wait_text("from the laptop");

    // The first device goes away; a newcomer still gets everything, from both devices.
    yuri1.signal("TERM");
    assert_eq!(yuri1.exit_code(), Some(0));
    let mut nia = Proc::node("nia", "pw", &addr, &dir.join("nia"), true, None, &[]);
    nia.ready();
    for t in ["y1 one", "y1 two", "ann to all", "y2 hello"] {
        nia.wait_text(t);
    }
    ann.send("after the newcomer");
    nia.wait_text("after the newcomer");
    yuri2.wait_text("after the newcomer");
    let st = status(&mut nia);
    assert_eq!(st["bad_signature"], 0, "{st}");

    // The first device comes back: it catches up what it missed, once.
    let mut yuri1 = Proc::node("yuri", "pw", &addr, &dir.join("yuri"), false, None, &[]);
    assert_eq!(
        yuri1.ready()["node_id"].as_u64(),
        Some(id1),
        "it resumes its id"
    );
    yuri1.wait_text("after the newcomer");
    yuri2.send("/msg ann while you were away");
    ann.wait_text("while you were away");
    yuri1.wait_text("while you were away");

    // Both devices show the same group and private history; no id holds two texts.
    let group1 = texts(&yuri1.history("--last 50"));
    let group2 = texts(&yuri2.history("--last 50"));
    assert_eq!(group1, group2);
    assert_eq!(
        group1,
        [
            "y1 one",
            "y1 two",
            "ann to all",
            "y2 hello",
            "after the newcomer"
        ]
    );
    let private1 = texts(&yuri1.history("ann"));
    let private2 = texts(&yuri2.history("ann"));
    assert_eq!(private1, private2);
    assert_eq!(private1, ["psst", "from the laptop", "while you were away"]);
    for p in [&yuri1, &yuri2, &ann, &nia] {
        ids_and_texts_are_unique(p, "group");
        ids_and_texts_are_unique(p, "private");
    }

    // The devices are listed, and one revokes the other: its datagrams are refused.
    yuri2.send("/devices");
    let list = yuri2.wait_for("devices", |v| v["event"] == "devices");
    let ids: Vec<u64> = list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["node_id"].as_u64())
        .collect();
    assert_eq!(ids, [id1, id2]);
    yuri2.send(&format!("/devices revoke {id1}"));
    yuri2.wait_for("revoked in the list", |v| {
        v["event"] == "devices"
            && v["devices"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|d| d["node_id"] == id1 && d["revoked"] == true)
            })
    });
    ann.wait_for("yuri's first device offline", |v| {
        v["event"] == "peer" && v["node_id"] == id1 && v["status"] == "offline"
    });
    yuri1.send("from a stolen laptop");
    yuri2.send("still here");
    ann.wait_text("still here");
    // Members refuse what it sends, until it is told at its next poll and stops (which can
    // come first: then it sends nothing more).
    for tries in 0.. {
        let refused: u64 = [&mut ann, &mut nia, &mut yuri2]
            .into_iter()
            .map(|p| status(p)["revoked"].as_u64().unwrap_or(0))
            .sum();
        if refused > 0 || !yuri1.is_running() {
            break;
        }
        assert!(tries < 200, "no member refused the revoked device");
        yuri1.send("from a stolen laptop, again");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // It is told at its next poll, and stops; its signin is refused too.
    yuri1.fails_with("revoked");
    let mut back = Proc::node("yuri", "pw", &addr, &dir.join("yuri"), false, None, &[]);
    back.fails_with("revoked");
    assert!(!ann.texts("group").iter().any(|t| t.contains("stolen")));
}

#[test]
fn one_device_more_than_the_server_allows_is_refused_with_a_way_out() {
    let d = tempdir();
    let dir = path(&d);
    let (_auth, addr) = Proc::auth_server_with(
        &dir.join("auth"),
        "127.0.0.1:0",
        None,
        &["--max-devices", "2"],
    );
    let mut first = Proc::node("zoe", "pw", &addr, &dir.join("z1"), true, None, &[]);
    first.ready();
    let mut second = Proc::node("zoe", "pw", &addr, &dir.join("z2"), false, None, &[]);
    second.ready();
    let mut third = Proc::node("zoe", "pw", &addr, &dir.join("z3"), false, None, &[]);
    third.fails_with("revoke one");
    // A wrong password from a new dir is still just a wrong password.
    let mut guess = Proc::node("zoe", "nope", &addr, &dir.join("z4"), false, None, &[]);
    guess.fails_with("wrong username or password");
}
