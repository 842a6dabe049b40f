//! The interactive UI, driven for real in tmux (send-keys, capture-pane) against a node in
//! script mode.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// A private tmux server, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: format!("p2pchat-test-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux (install it: apt-get install tmux)");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "ui"])
    }

    fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "ui", "-l", text]);
        self.run(&["send-keys", "-t", "ui", "Enter"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn the_terminal_ui_chats_with_script_mode_nodes() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is needed for this test (apt-get install tmux; .ci/run installs it)");
    }
    let dirs = tempdir();
    let (_auth, auth) = Proc::auth_server(&dirs.path().join("auth"), "127.0.0.1:0", None, None);
    let nodes = dirs.path().join("nodes");
    let mut bob = Proc::node("bob", "pb", &auth, &nodes, true, None, &[]);
    bob.ready();

    let tmux = Tmux::new();
    let cmd = format!(
        "P2PCHAT_PASSWORD=pa {} node --port 0 --user alice --signup --auth {auth} --data-dir {}; echo EXIT=$?; sleep 60",
        bin(),
        nodes.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "ui",
        "-x",
        "110",
        "-y",
        "30",
        &cmd,
    ]);
    tmux.wait_screen("signed in", |s| s.contains("signed in as alice"));
    bob.wait_for("alice online", |v| {
        v["event"] == "peer" && v["user"] == "alice"
    });
    tmux.wait_screen("bob in the sidebar", |s| s.contains("● bob"));

    // Typed in the UI, received by the others.
    tmux.type_line("hello from the tui ✓");
    bob.wait_text("hello from the tui ✓");
    tmux.type_line("/msg bob a private word");
    let got = bob.wait_text("a private word");
    assert_eq!(got["scope"], "private");
    assert_eq!(got["from"], "alice");

    // A peer's message appears on screen, in the group, with its sender.
    bob.send("hi alice, from a script");
    let screen = tmux.wait_screen("bob's message", |s| {
        s.contains("bob: hi alice, from a script")
    });
    assert!(screen.contains("» alice: hello from the tui ✓"), "{screen}");
    // The private conversation got an entry in the list.
    assert!(screen.contains("@bob"), "{screen}");

    // /quit leaves cleanly: exit 0, and the terminal is back from the alternate screen.
    tmux.type_line("/quit");
    let screen = tmux.wait_screen("exit", |s| s.contains("EXIT="));
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        !screen.contains("#group"),
        "the UI should be gone:\n{screen}"
    );
    assert_eq!(
        tmux.run(&["display-message", "-p", "-t", "ui", "#{alternate_on}"])
            .trim(),
        "0"
    );
}
