//! Process-level test harness: runs the real `p2pchat` binary on 127.0.0.1 with ephemeral
//! ports, reads script-mode JSON events, and kills every process it started when dropped.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Generous: CI machines are slow and noisy. Tests wait on events, never on sleeps.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_p2pchat")
}

/// A running process whose stdout lines arrive on a channel.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every JSON event seen so far, in order.
    pub seen: Vec<Value>,
    prefix: Vec<String>,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start p2pchat");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines: rx,
            seen: Vec::new(),
            prefix: Vec::new(),
        }
    }

    /// Prefixes every command with `ip netns exec NS` when set.
    pub fn command(netns: Option<&str>) -> Command {
        match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin()]);
                c
            }
            None => Command::new(bin()),
        }
    }

    /// Starts an auth server and waits for its address.
    pub fn auth_server(
        dir: &Path,
        listen: &str,
        netns: Option<&str>,
        max_nodes: Option<usize>,
    ) -> (Proc, String) {
        let max = max_nodes.map(|m| m.to_string());
        let extra: Vec<&str> = match &max {
            Some(m) => vec!["--max-nodes", m],
            None => vec![],
        };
        Self::auth_server_with(dir, listen, netns, &extra)
    }

    /// Starts an auth server with extra arguments and waits for its address.
    pub fn auth_server_with(
        dir: &Path,
        listen: &str,
        netns: Option<&str>,
        extra: &[&str],
    ) -> (Proc, String) {
        let mut cmd = Self::command(netns);
        cmd.args(["auth-server", "--listen", listen, "--data-dir"])
            .arg(dir)
            .args(extra);
        Self::auth_from(cmd)
    }

    /// Starts an auth server command and waits for the address it prints.
    fn auth_from(cmd: Command) -> (Proc, String) {
        let mut p = Proc::spawn("auth", cmd);
        let line = p
            .next_line(TIMEOUT)
            .expect("the auth server prints where it listens");
        let addr = line
            .rsplit(' ')
            .next()
            .expect("address at the end of the line")
            .to_string();
        (p, addr)
    }

    /// Starts a node in script mode.
    pub fn node(
        user: &str,
        password: &str,
        auth: &str,
        dir: &Path,
        signup: bool,
        netns: Option<&str>,
        extra: &[&str],
    ) -> Proc {
        Self::node_on(0, user, password, auth, dir, signup, netns, extra)
    }

    /// Starts a node in script mode on this UDP port of 127.0.0.1 (0: any free one), unless
    /// `extra` gives `--listen`.
    #[allow(clippy::too_many_arguments)]
    pub fn node_on(
        port: u16,
        user: &str,
        password: &str,
        auth: &str,
        dir: &Path,
        signup: bool,
        netns: Option<&str>,
        extra: &[&str],
    ) -> Proc {
        let mut cmd = Self::command(netns);
        cmd.arg("node");
        if !extra.contains(&"--listen") {
            cmd.args(["--port", &port.to_string()]);
        }
        cmd.args(["--user", user, "--auth", auth, "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("P2PCHAT_PASSWORD", password);
        if signup {
            cmd.arg("--signup");
        }
        Proc::spawn(user, cmd)
    }

    fn next_line(&mut self, timeout: Duration) -> Option<String> {
        if let Some(l) = self.prefix.pop() {
            return Some(l);
        }
        self.lines.recv_timeout(timeout).ok()
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            writeln!(stdin, "{line}").expect("write to node stdin");
            stdin.flush().expect("flush");
        }
    }

    /// Waits for an event matching `pred`, keeping every event in `seen`.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        // Already seen?
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.name));
                    assert!(
                        v.get("event").is_some(),
                        "{}: event without 'event': {line}",
                        self.name
                    );
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: timed out waiting for {what}; seen: {:#?}",
                    self.name, self.seen
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: exited while waiting for {what}; seen: {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Waits up to `within` for an event matching `pred`, forgetting the others (for long
    /// streams of events that need not be kept).
    pub fn wait_forgetting(&mut self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if serde_json::from_str::<Value>(&line).is_ok_and(|v| pred(&v)) {
                        return;
                    }
                }
                Err(_) => panic!("{}: no {what} within {within:?}", self.name),
            }
        }
    }

    /// Waits for the `ready` event.
    pub fn ready(&mut self) -> Value {
        self.wait_for("ready", |v| v["event"] == "ready")
    }

    /// Waits until this node has delivered a message with this text (group or private).
    pub fn wait_text(&mut self, text: &str) -> Value {
        self.wait_for(&format!("message {text:?}"), |v| {
            v["event"] == "message" && v["text"] == text
        })
    }

    /// Waits until more than `n` events match `pred`; returns the (n+1)th.
    pub fn wait_nth(&mut self, what: &str, n: usize, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(v) = self.seen.iter().filter(|v| pred(v)).nth(n) {
                return v.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.name));
                    self.seen.push(v);
                }
                Err(_) => panic!(
                    "{}: timed out waiting for {what}; seen: {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Asks for a history and returns its messages.
    pub fn history(&mut self, args: &str) -> Vec<Value> {
        let is_history = |v: &Value| v["event"] == "history";
        let n = self.seen.iter().filter(|v| is_history(v)).count();
        self.send(&format!("/history {args}"));
        let h = self.wait_nth("history", n, is_history);
        h["messages"].as_array().cloned().unwrap_or_default()
    }

    /// Texts delivered so far with the given scope.
    pub fn texts(&self, scope: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|v| v["event"] == "message" && v["scope"] == scope)
            .map(|v| v["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            // Drain output so the process never blocks on a full pipe.
            while let Ok(line) = self.lines.try_recv() {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    self.seen.push(v);
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        self.seen.push(v);
                    }
                }
                return status.code();
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts the process exits 1 after a fatal `error` event whose message contains `needle`.
    pub fn fails_with(&mut self, needle: &str) {
        assert_eq!(self.exit_code(), Some(1), "{}: {:?}", self.name, self.seen);
        assert!(
            self.seen.iter().any(|v| v["event"] == "error"
                && v["fatal"] == true
                && v["message"].as_str().is_some_and(|m| m.contains(needle))),
            "{}: no fatal error mentioning {needle:?}: {:?}",
            self.name,
            self.seen
        );
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line (e.g. the auth server's key line).
    pub fn line(&mut self) -> String {
        self.next_line(TIMEOUT).expect("a line of output")
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Closes stdin: the node finishes what it was asked and quits gracefully.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Writes raw bytes to stdin (for input that is not UTF-8).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        if let Some(stdin) = self.stdin.as_mut() {
            stdin.write_all(bytes).expect("write to node stdin");
            stdin.flush().expect("flush");
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`, ...).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{}: kill -s {sig} failed", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `p` reports `user` with this status.
pub fn wait_status(p: &mut Proc, user: &str, status: &str) -> Value {
    p.wait_for(&format!("{user} {status}"), |v| {
        v["event"] == "peer" && v["user"] == user && v["status"] == status
    })
}

/// Asks for `/status` and returns the reply.
pub fn status(p: &mut Proc) -> Value {
    let n = p.seen.iter().filter(|v| v["event"] == "status").count();
    p.send("/status");
    p.wait_nth("status", n, |v| v["event"] == "status")
}

/// An auth server and `names` signed up and ready (each in `dir/NAME`, password `pw`), each
/// seeing every other online.
pub fn network(dir: &Path, names: &[&str]) -> (Proc, String, Vec<Proc>) {
    let (auth, addr) = Proc::auth_server(&dir.join("auth"), "127.0.0.1:0", None, None);
    let mut ps: Vec<Proc> = Vec::new();
    for n in names {
        let mut p = Proc::node(n, "pw", &addr, &dir.join(n), true, None, &[]);
        p.ready();
        ps.push(p);
    }
    for p in ps.iter_mut() {
        for other in names {
            if *other != p.name {
                wait_status(p, other, "online");
            }
        }
    }
    (auth, addr, ps)
}

/// Whether any file directly in `dir` contains `needle`.
pub fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir)
        .expect("data dir")
        .flatten()
        .any(|e| {
            std::fs::read(e.path())
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
}

/// Panics with the install hint when tmux is missing.
pub fn require_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is needed for this test (apt-get install tmux; .ci/run installs it)");
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn path(d: &tempfile::TempDir) -> PathBuf {
    d.path().to_path_buf()
}

static NEXT_TMUX: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A private tmux server, killed when dropped.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn new() -> Tmux {
        Tmux {
            // One server per test, also when tests of one binary run in parallel.
            socket: format!(
                "p2pchat-test-{}-{}",
                std::process::id(),
                NEXT_TMUX.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        }
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux (install it: apt-get install tmux)");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "ui"])
    }

    pub fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
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

    /// Starts `cmd` (a shell command line) in a 110x30 window named `ui`.
    pub fn start(&self, cmd: &str) {
        // A session that outlives `ui`: when a test kills `ui` to start it again, the server
        // must not be on its way out (with no session left, it exits, and a `new-session` that
        // reaches it in that moment dies with it, hanging up on the program just started).
        self.run(&["new-session", "-d", "-s", "keep", "sleep 3600"]);
        self.run(&[
            "new-session",
            "-d",
            "-s",
            "ui",
            "-x",
            "110",
            "-y",
            "30",
            cmd,
        ]);
    }

    pub fn type_line(&self, text: &str) {
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

/// A PostgreSQL server of its own, on loopback, in a temporary directory: Debian's binaries
/// (`initdb` + `pg_ctl`), run as the `postgres` user when the test runs as root (PostgreSQL
/// refuses root). Stopped (immediate mode) and removed when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    run_as: Option<String>,
}

/// Where PostgreSQL's server binaries are: `P2PCHAT_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's layout). `None` when there are none: the PostgreSQL
/// tests then say SKIPPED, unless `P2PCHAT_REQUIRE_POSTGRES` is set (`.ci/run` sets it after
/// installing PostgreSQL), where they fail.
fn postgres_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("P2PCHAT_PG_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    let found = found.pop();
    if found.is_none() && std::env::var_os("P2PCHAT_REQUIRE_POSTGRES").is_some() {
        panic!(
            "PostgreSQL server binaries are needed for this test (apt-get install postgresql; \
             or set P2PCHAT_PG_BIN to the directory holding initdb)"
        );
    }
    found
}

impl Postgres {
    /// A fresh server, or `None` (after saying SKIPPED) where PostgreSQL is not installed.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = postgres_bin() else {
            eprintln!(
                "SKIPPED: PostgreSQL server binaries not found (apt-get install postgresql; \
                 .ci/run installs them and makes this a failure)"
            );
            return None;
        };
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let run_as = root.then(|| "postgres".to_string());
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(user) = &run_as {
            let st = Command::new("chown")
                .args([user.as_str()])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(st.success(), "chown the PostgreSQL dir to {user}");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pg = Postgres {
            dir,
            bin,
            port,
            run_as,
        };
        let data = pg.dir.path().join("data");
        pg.run("initdb", |c| {
            c.arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]);
        });
        pg.resume();
        Some(pg)
    }

    /// Starts the server (again, after [`Postgres::pause`]).
    pub fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let data = self.dir.path().join("data");
        self.run("pg_ctl", |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-o", &opts, "-l"])
                .arg(self.dir.path().join("log"))
                .args(["-w", "-t", "60", "start"]);
        });
    }

    /// Stops the server (its data stays): the database is down.
    pub fn pause(&self) {
        let data = self.dir.path().join("data");
        self.run("pg_ctl", |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        });
    }

    /// A PostgreSQL tool, run as the server's user.
    fn tool(&self, tool: &str) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(self.bin.join(tool));
                c
            }
            None => Command::new(self.bin.join(tool)),
        }
    }

    fn run(&self, tool: &str, args: impl FnOnce(&mut Command)) -> String {
        let mut c = self.tool(tool);
        args(&mut c);
        let out = c.output().unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a database and returns its URL.
    pub fn create_db(&self, name: &str) -> String {
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        self.url("postgres", name)
    }

    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL as the superuser; returns the rows, unaligned, `|` between fields.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        self.run("psql", |c| {
            c.args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db])
                .args(["-v", "ON_ERROR_STOP=1", "-tAq", "-c", sql]);
        })
        .trim()
        .to_string()
    }

    /// A psql session reading SQL from its stdin (to hold a lock across steps).
    pub fn session(&self, db: &str) -> (Child, ChildStdin) {
        let port = self.port.to_string();
        let mut child = self
            .tool("psql")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-tAq"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("psql");
        let stdin = child.stdin.take().expect("stdin");
        (child, stdin)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Proc {
    /// Starts an auth server over a PostgreSQL database and waits for its address.
    pub fn auth_server_db(url: &str, listen: &str, extra: &[&str]) -> (Proc, String) {
        let mut cmd = Self::command(None);
        cmd.args(["auth-server", "--listen", listen, "--db", url])
            .args(extra);
        Self::auth_from(cmd)
    }
}
