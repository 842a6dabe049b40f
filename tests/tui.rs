//! The interactive UI, driven for real in tmux (send-keys, capture-pane) against a node in
//! script mode.

mod common;

use common::*;
use std::process::Command;

/// An auth server, bob in script mode, and a tmux server; `alice(signup)` is the shell
/// command that runs alice's UI in it (and then prints its exit code).
struct Setup {
    _dirs: tempfile::TempDir,
    _auth: Proc,
    auth: String,
    nodes: std::path::PathBuf,
    bob: Proc,
    tmux: Tmux,
}

impl Setup {
    fn new() -> Setup {
        require_tmux();
        let dirs = tempdir();
        let (auth_proc, auth) =
            Proc::auth_server(&dirs.path().join("auth"), "127.0.0.1:0", None, None);
        let nodes = dirs.path().join("nodes");
        let mut bob = Proc::node("bob", "pb", &auth, &nodes, true, None, &[]);
        bob.ready();
        Setup {
            _dirs: dirs,
            _auth: auth_proc,
            auth,
            nodes,
            bob,
            tmux: Tmux::new(),
        }
    }

    fn alice(&self, signup: bool) -> String {
        format!(
            "P2PCHAT_PASSWORD=pa {} node --port 0 --user alice{} --auth {} --data-dir {}; echo EXIT=$?; sleep 60",
            bin(),
            if signup { " --signup" } else { "" },
            self.auth,
            self.nodes.display()
        )
    }
}

#[test]
fn the_terminal_ui_chats_with_script_mode_nodes() {
    let setup = Setup::new();
    setup.tmux.start(&setup.alice(true));
    // (The rest of `setup` lives to the end of the test.)
    let Setup { mut bob, tmux, .. } = setup;
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

    // Search answers in the conversation pane, from the data dir's index.
    tmux.type_line("/search SCRIPT");
    let screen = tmux.wait_screen("search results", |s| s.contains("1 found for \"SCRIPT\""));
    assert!(screen.contains("<bob> hi alice, from a script"), "{screen}");

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

/// The pid of the program the shell in tmux window `ui` runs (the shell's only child).
fn ui_program_pid(tmux: &Tmux) -> String {
    let shell = tmux.run(&["display-message", "-p", "-t", "ui", "#{pane_pid}"]);
    let out = Command::new("pgrep")
        .args(["-P", shell.trim()])
        .output()
        .expect("pgrep");
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!pid.is_empty(), "no program under the shell {shell}");
    pid
}

#[test]
fn hostile_text_is_inert_sigterm_is_graceful_and_a_restart_draws_the_history() {
    let setup = Setup::new();
    let (first, again) = (setup.alice(true), setup.alice(false));
    setup.tmux.start(&first);
    let Setup { mut bob, tmux, .. } = setup;
    tmux.wait_screen("signed in", |s| s.contains("signed in as alice"));
    bob.wait_for("alice online", |v| {
        v["event"] == "peer" && v["user"] == "alice" && v["status"] == "online"
    });
    tmux.type_line("a line before the attack");
    bob.wait_text("a line before the attack");
    tmux.type_line("/msg bob kept private");
    bob.wait_text("kept private");

    // Clear the screen, move the cursor, ring the bell, set the title, reverse the text.
    let hostile =
        "innocent \u{1b}[2J\u{1b}[3;20HFAKE\u{7}\u{1b}]0;owned\u{7} \u{202e}txet desrever";
    bob.send(hostile);
    let screen = tmux.wait_screen("the hostile message", |s| s.contains("innocent"));
    assert!(
        screen.contains("a line before the attack"),
        "the screen was cleared:\n{screen}"
    );
    let line = screen
        .lines()
        .find(|l| l.contains("innocent"))
        .expect("the message line");
    assert!(
        line.contains("bob: innocent �[2J�[3;20HFAKE��]0;owned� �txet desrever"),
        "controls shown inert, in place:\n{screen}"
    );
    // Nothing was drawn elsewhere: FAKE appears only inside bob's line.
    assert_eq!(screen.matches("FAKE").count(), 1, "{screen}");
    let title = tmux.run(&["display-message", "-p", "-t", "ui", "#{pane_title}"]);
    assert!(!title.contains("owned"), "title changed to {title}");

    // SIGTERM with the UI up: a goodbye, exit 0, the terminal restored.
    let pid = ui_program_pid(&tmux);
    let ok = Command::new("kill").args(["-s", "TERM", &pid]).status();
    assert!(ok.is_ok_and(|s| s.success()));
    let screen = tmux.wait_screen("exit", |s| s.contains("EXIT="));
    assert!(screen.contains("EXIT=0"), "{screen}");
    bob.wait_for("alice's goodbye", |v| {
        v["event"] == "peer" && v["user"] == "alice" && v["status"] == "offline"
    });

    // Back, from the data dir: the stored conversations, people and counts are drawn.
    tmux.run(&["kill-session", "-t", "ui"]);
    tmux.start(&again);
    let screen = tmux.wait_screen("stored history and bob online", |s| {
        s.contains("a line before the attack") && s.contains("● bob") && s.contains("1/1 online")
    });
    assert!(screen.contains("bob: innocent"), "{screen}");
    assert!(
        screen.contains("@bob"),
        "the private conversation:\n{screen}"
    );
    assert!(screen.contains("1 delivered"), "private counts:\n{screen}");
    // Oldest first: the history sits above the notices of this start.
    let (old, notice) = (
        screen.find("a line before the attack").expect("old line"),
        screen.find("signed in as alice").expect("notice"),
    );
    assert!(old < notice, "{screen}");
    tmux.type_line("/quit");
    let screen = tmux.wait_screen("exit", |s| s.contains("EXIT="));
    assert!(screen.contains("EXIT=0"), "{screen}");
}

#[test]
fn scrolling_up_loads_older_pages_down_to_the_first_message() {
    let setup = Setup::new();
    let again = setup.alice(false);
    setup.tmux.start(&setup.alice(true));
    let Setup { mut bob, tmux, .. } = setup;
    tmux.wait_screen("signed in", |s| s.contains("signed in as alice"));
    bob.wait_for("alice online", |v| {
        v["event"] == "peer" && v["user"] == "alice"
    });
    // More than a start loads (the newest 500).
    for i in 0..530 {
        bob.send(&format!("old line {i:03}"));
    }
    tmux.wait_screen("the last line", |s| s.contains("old line 529"));
    tmux.type_line("/quit");
    tmux.wait_screen("exit", |s| s.contains("EXIT=0"));
    tmux.run(&["kill-session", "-t", "ui"]);

    // Back: the newest page is drawn; PageUp reaches further back than it, page by page.
    tmux.start(&again);
    tmux.wait_screen("the stored history", |s| s.contains("old line 529"));
    let mut screen = String::new();
    for _ in 0..80 {
        tmux.run(&["send-keys", "-t", "ui", "PPage"]);
        screen = tmux.screen();
        if screen.contains("old line 000") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let screen = if screen.contains("old line 000") {
        screen
    } else {
        tmux.wait_screen("the first line", |s| s.contains("old line 000"))
    };
    assert!(!screen.contains("old line 529"), "scrolled up:\n{screen}");
    tmux.type_line("/quit");
    tmux.wait_screen("exit", |s| s.contains("EXIT="));
}
