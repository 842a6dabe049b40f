//! `p2pchat node`: a chat node process. On a terminal the TUI; otherwise script mode (one
//! command per stdin line, one JSON event per stdout line).

use crate::commands;
use crate::process::{data_dir, init_logging, node_db, resolve, runtime, Signals};
use anyhow::{bail, Context};
use clap::Args;
use p2pchat_core::{Command, Event, NodeConfig, NodeParams};
use p2pchat_runtime::spawn_node;
use p2pchat_store::Store;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// Arguments of `p2pchat node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// UDP port on 127.0.0.1 (0 picks a free one, reported in the ready event).
    #[arg(long, conflicts_with = "listen")]
    pub port: Option<u16>,
    /// UDP address to listen on (instead of --port; HOST:PORT, a hostname is resolved).
    #[arg(long, value_parser = resolve)]
    pub listen: Option<SocketAddr>,
    /// Username (1-32 characters from A-Z a-z 0-9 _ . -).
    #[arg(long)]
    pub user: String,
    /// Create the account (a taken username is an error); without it, sign in.
    #[arg(long)]
    pub signup: bool,
    /// The auth server's address (HOST:PORT; a hostname is resolved, IPv4 first). Repeat it
    /// for several auth servers sharing one database: the node asks them in turn and turns
    /// to the next when one stops answering.
    #[arg(long, default_value = "127.0.0.1:12345", value_parser = resolve)]
    pub auth: Vec<SocketAddr>,
    /// Where this node keeps its identity and history (default: the platform data dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Read the password from the first line of this file (else P2PCHAT_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Signup/signin attempts before giving up on an unreachable auth server (backoff grows
    /// from 0.3 s to 2 s between attempts).
    #[arg(long, default_value_t = p2pchat_core::NodeConfig::default().auth_attempts)]
    pub auth_attempts: u32,
    /// Pin the auth server's key (64 hex characters, printed by `p2pchat auth-server`).
    /// Without it the key seen at the first signin is remembered and pinned (trust on first
    /// use); either way a server with another key is refused before any password is sent.
    #[arg(long, value_name = "HEX")]
    pub auth_key: Option<String>,
    /// How many days private messages for absent users are kept: the expiry this node puts
    /// on what it hands to mailboxes (1 to 365).
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u64).range(1..=365))]
    pub mailbox_days: u64,
    /// Script mode, at the end of input: after signing in and carrying out every command,
    /// wait at most this many seconds for private messages to be acknowledged and group
    /// messages to reach a peer, then say goodbye. What is still unacknowledged stays in the
    /// outbox for the next start.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS", value_parser = linger)]
    pub linger: f64,
}
fn linger(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: expected seconds from 0 to 3600")),
    }
}

fn read_password(args: &NodeArgs) -> anyhow::Result<String> {
    if let Some(path) = &args.password_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read password file {}", path.display()))?;
        let pw = text.lines().next().unwrap_or_default().to_string();
        if pw.is_empty() {
            bail!("password file {} is empty", path.display());
        }
        return Ok(pw);
    }
    if let Ok(pw) = std::env::var("P2PCHAT_PASSWORD") {
        if !pw.is_empty() {
            return Ok(pw);
        }
    }
    if std::io::stdin().is_terminal() {
        let pw = rpassword::prompt_password(format!("password for {}: ", args.user))
            .context("cannot read the password")?;
        if pw.is_empty() {
            bail!("empty password");
        }
        return Ok(pw);
    }
    bail!(
        "no password: set P2PCHAT_PASSWORD, pass --password-file, or run on a terminal to be asked"
    )
}
/// A password the auth server will take: checked here, before anything is sent.
fn check_password(pw: String) -> anyhow::Result<String> {
    let max = p2pchat_proto::wire::MAX_PASSWORD;
    if pw.len() > max {
        bail!(
            "the password is too long: {} bytes (at most {max})",
            pw.len()
        );
    }
    Ok(pw)
}
/// `p2pchat node`.
pub fn node(args: NodeArgs) -> ExitCode {
    let script = !std::io::stdin().is_terminal();
    // Logs would tear the full-screen UI: off there unless RUST_LOG asks for them.
    init_logging(if script { "warn" } else { "off" });
    match run_node(args, script) {
        Ok(code) => code,
        Err(e) => {
            // Once: as JSON for a program, or as a line for a person.
            if script {
                let v = serde_json::json!({"event": "error", "message": format!("{e:#}"), "fatal": true});
                println!("{v}");
            } else {
                eprintln!("p2pchat: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
fn run_node(args: NodeArgs, script: bool) -> anyhow::Result<ExitCode> {
    if !p2pchat_proto::wire::valid_username(&args.user) {
        bail!(
            "invalid username {:?} (1-32 characters from A-Z a-z 0-9 _ . -)",
            args.user
        );
    }
    let auth_key = match &args.auth_key {
        Some(hex) => Some(p2pchat_core::secure::parse_fingerprint(hex).with_context(|| {
            format!("invalid --auth-key {hex:?}: expected the 64 hex characters printed by the auth server")
        })?),
        None => None,
    };
    let password = check_password(read_password(&args)?)?;
    let dir = data_dir(args.data_dir.clone())?;
    let store = Store::open(&node_db(&dir, &args.user))?;
    let bind: SocketAddr = match (args.listen, args.port) {
        (Some(a), _) => a,
        (None, Some(p)) => SocketAddr::from(([127, 0, 0, 1], p)),
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let (&auth_addr, fallbacks) = args
        .auth
        .split_first()
        .context("no auth server: pass --auth HOST:PORT")?;
    let params = NodeParams {
        user: args.user.clone(),
        password,
        signup: args.signup,
        auth_addr,
        auth_fallbacks: fallbacks.to_vec(),
        auth_key,
    };
    let rt = runtime()?;
    let result = rt.block_on(async move {
        let cfg = NodeConfig {
            auth_attempts: args.auth_attempts,
            mailbox_ttl: Duration::from_secs(args.mailbox_days.saturating_mul(24 * 3600)),
            ..NodeConfig::default()
        };
        let handle = spawn_node(cfg, params, bind, store)
            .await
            .with_context(|| format!("cannot start the node on {bind}"))?;
        let (control, events) = handle.split();
        if !script {
            return crate::tui::run(control, events, &args.user).await;
        }
        let linger = Duration::from_secs_f64(args.linger);
        script_loop(control, events, Printer, linger).await
    });
    // The stdin reader blocks in a thread of its own: do not wait for it.
    rt.shutdown_background();
    result
}
/// One line of script input: its number (from 1) and its text, or why it has none.
enum Input {
    Line(usize, String),
    NotUtf8(usize),
    Failed(String),
}
/// Reads stdin line by line, as bytes: a line that is not UTF-8 is reported, not fatal.
fn read_stdin(tx: tokio::sync::mpsc::Sender<Input>) {
    tokio::spawn(async move {
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
        let mut buf = Vec::new();
        let mut n = 0;
        loop {
            buf.clear();
            let input = match stdin.read_until(b'\n', &mut buf).await {
                Ok(0) => break,
                Ok(_) => {
                    n += 1;
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    match String::from_utf8(std::mem::take(&mut buf)) {
                        Ok(line) => Input::Line(n, line),
                        Err(_) => Input::NotUtf8(n),
                    }
                }
                Err(e) => Input::Failed(e.to_string()),
            };
            let failed = matches!(input, Input::Failed(_));
            if tx.send(input).await.is_err() || failed {
                break;
            }
        }
    });
}
/// A script line may carry a tag, `/id TAG COMMAND`: the replies to COMMAND echo TAG as
/// `cmd_id`. Returns the tag (if any) and the command text.
fn split_tag(line: &str) -> Result<(Option<String>, &str), String> {
    let Some(rest) = line.strip_prefix("/id ") else {
        return Ok((None, line));
    };
    let rest = rest.trim_start();
    let (tag, cmd) = rest.split_once(' ').unwrap_or((rest, ""));
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if !ok {
        return Err("usage: /id TAG COMMAND (TAG: 1-64 of A-Z a-z 0-9 _ - . :)".into());
    }
    Ok((Some(tag.to_string()), cmd))
}
/// Script mode: commands from stdin, JSON events on stdout. At the end of input it finishes
/// what was asked (see `--linger`); a signal stops it at once, gracefully.
/// Script lines taken before the node is signed in (it keeps up to 10,000 for then).
const BEFORE_READY_MAX: usize = 1_000;

async fn script_loop(
    control: p2pchat_runtime::NodeControl,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    mut printer: Printer,
    linger: Duration,
) -> anyhow::Result<ExitCode> {
    // Bounded: a long pipe waits in the pipe, not in memory.
    let (line_tx, mut lines) = tokio::sync::mpsc::channel::<Input>(1024);
    read_stdin(line_tx);
    let mut signals = Signals::new();
    let mut stdin_open = true;
    let mut ready = false;
    let mut fatal = false;
    let mut quitting = false;
    // Lines taken before "ready": the node keeps them until it is signed in, a bounded
    // number; the rest wait in the pipe.
    let mut before_ready = 0usize;
    // Set at the end of input once signed in: the latest moment to say goodbye.
    let mut deadline: Option<tokio::time::Instant> = None;
    let quit = |quitting: &mut bool| {
        if !std::mem::replace(quitting, true) {
            control.command(Command::Quit);
        }
    };
    loop {
        let linger_until = deadline.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            ev = events.recv() => match ev {
                Some(e) => {
                    match &e {
                        Event::Error { fatal: true, .. } => fatal = true,
                        Event::Ready { .. } => {
                            ready = true;
                            if !stdin_open {
                                deadline = Some(tokio::time::Instant::now() + linger);
                            }
                        }
                        Event::Settled => {
                            quit(&mut quitting);
                            continue;
                        }
                        _ => {}
                    }
                    printer.print(&e);
                }
                None => break,
            },
            input = lines.recv(), if stdin_open && (ready || before_ready < BEFORE_READY_MAX) => {
                let end = match input {
                    Some(Input::Line(n, line)) => {
                        let parsed = split_tag(&line)
                            .and_then(|(tag, text)| commands::parse(text).map(|cmd| (tag, cmd)));
                        // Only what the node must keep until it is signed in counts; `/status`
                        // is answered at once, however often it is asked.
                        if !ready && matches!(&parsed, Ok((_, Some(c))) if !matches!(c, Command::Status)) {
                            before_ready += 1;
                        }
                        match parsed {
                            Ok((_, None)) => false,
                            // `/quit` in a script: do what the lines before it asked, then
                            // leave (as at the end of input), never drop them.
                            Ok((_, Some(Command::Quit))) => true,
                            Ok((Some(tag), Some(cmd))) => {
                                control.command_tagged(tag, cmd);
                                false
                            }
                            Ok((None, Some(cmd))) => {
                                control.command(cmd);
                                false
                            }
                            Err(message) => {
                                printer.print(&Event::Error {
                                    message: format!("line {n}: {message}"),
                                    fatal: false,
                                });
                                false
                            }
                        }
                    }
                    Some(Input::NotUtf8(n)) => {
                        printer.print(&Event::Error {
                            message: format!("line {n} is not valid UTF-8; ignored"),
                            fatal: false,
                        });
                        false
                    }
                    Some(Input::Failed(e)) => {
                        printer.print(&Event::Error {
                            message: format!("cannot read standard input: {e}; finishing"),
                            fatal: false,
                        });
                        true
                    }
                    None => true,
                };
                if end {
                    // End of input: finish what was asked, then leave.
                    stdin_open = false;
                    control.command(Command::Settle);
                    if ready {
                        deadline = Some(tokio::time::Instant::now() + linger);
                    }
                }
            }
            _ = tokio::time::sleep_until(linger_until), if deadline.is_some() && !quitting => {
                quit(&mut quitting);
            }
            sig = signals.recv() => {
                if quitting {
                    // A second signal: leave now (records are committed step by step).
                    tracing::warn!("{sig} again: leaving at once");
                    return Ok(ExitCode::FAILURE);
                }
                tracing::info!("{sig}: saying goodbye");
                quit(&mut quitting);
            }
        }
    }
    match control.join().await {
        Ok(()) if !fatal => Ok(ExitCode::SUCCESS),
        Ok(()) => Ok(ExitCode::FAILURE),
        Err(e) => {
            if !fatal {
                printer.print(&Event::Error {
                    message: e.to_string(),
                    fatal: true,
                });
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
/// Script mode's output: one JSON object per event, flushed at once.
struct Printer;
impl Printer {
    fn print(&mut self, e: &Event) {
        if matches!(e, Event::Message(m) if m.is_merge()) {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", crate::json::event(e));
        let _ = out.flush();
    }
}
