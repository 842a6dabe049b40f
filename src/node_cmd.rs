//! `p2pchat auth-server` and `p2pchat node`: processes around the runtime drivers.

use crate::cli::{AuthArgs, NodeArgs};
use crate::commands;
use anyhow::{bail, Context};
use p2pchat_core::{AuthConfig, Command, Event, NodeConfig, NodeParams, PeerStatus, Scope};
use p2pchat_runtime::{
    spawn_auth_server, spawn_auth_server_on, spawn_node, Argon2Credentials, AuthBackend,
    AuthHandle, PgDirectory,
};
use p2pchat_store::Store;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// Sets up logging to stderr; `RUST_LOG` overrides the default level.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The data dir: the one given, or the platform's data directory for p2pchat.
pub fn data_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(d) => d,
        None => dirs::data_dir()
            .map(|d| d.join("p2pchat"))
            .context("no platform data directory; pass --data-dir")?,
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    Ok(dir)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The signals that stop a process gracefully: SIGINT, SIGTERM and SIGHUP. Unlike a
/// one-shot future, [`Signals::recv`] may be awaited again (in a `select!` loop) after it
/// returned: a second signal is seen too.
pub struct Signals {
    #[cfg(unix)]
    streams: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Signals {
    /// Installs the handlers (inside the runtime). Without them the default action (exit)
    /// stays in force.
    pub fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(i), Ok(t), Ok(h)) => Some([i, t, h]),
                _ => None,
            };
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for the next signal and names it.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let Some([i, t, h]) = self.streams.as_mut() else {
                return std::future::pending().await;
            };
            tokio::select! {
                Some(()) = i.recv() => "SIGINT",
                Some(()) = t.recv() => "SIGTERM",
                Some(()) = h.recv() => "SIGHUP",
                else => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// `p2pchat auth-server`.
pub fn auth_server(args: AuthArgs) -> anyhow::Result<()> {
    init_logging("info");
    if args.max_nodes == 0 {
        bail!("--max-nodes must be at least 1");
    }
    let cfg = AuthConfig {
        max_nodes: args.max_nodes,
        source_signups: args.signup_rate,
        ..AuthConfig::default()
    };
    let creds = Box::new(Argon2Credentials::default());
    let Some(url) = args.db else {
        let dir = data_dir(args.data_dir)?;
        let store = Store::open(&dir.join("auth-server.db"))?;
        return runtime()?.block_on(async move {
            let handle = spawn_auth_server(cfg, creds, args.listen, store)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            serve(handle, &dir.display().to_string()).await
        });
    };
    // The database's queries block a worker thread each: several threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let (dir, records) = PgDirectory::open(&url).await?;
        let target = dir.target().to_string();
        let backend = AuthBackend::Postgres(Box::new(dir), records);
        let handle = spawn_auth_server_on(cfg, creds, args.listen, backend)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        serve(handle, &format!("postgresql {target}")).await
    })
}

/// Prints where a started auth server listens, then runs it until a signal.
async fn serve(handle: AuthHandle, data: &str) -> anyhow::Result<()> {
    println!("p2pchat auth server listening on {}", handle.local_addr);
    println!(
        "auth server key: {} (nodes can pin it with --auth-key)",
        p2pchat_core::secure::fingerprint(&handle.key)
    );
    println!("data: {data}");
    let _ = std::io::stdout().flush();
    let sig = Signals::new().recv().await;
    tracing::info!("{sig}: stopping");
    handle.stop().await?;
    Ok(())
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

/// Path of a user's node database inside a data dir.
pub fn node_db(dir: &Path, user: &str) -> PathBuf {
    dir.join(format!("node-{user}.db"))
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
        local_addr: bind,
        auth_addr,
        auth_fallbacks: fallbacks.to_vec(),
        seed: seed(),
        // Filled in from the OS by the runtime.
        crypto_seed: [0; 32],
        auth_key,
        wall_ms: 0,
        crypto_memo: None,
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
fn read_stdin(tx: tokio::sync::mpsc::UnboundedSender<Input>) {
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
            if tx.send(input).is_err() || failed {
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
async fn script_loop(
    control: p2pchat_runtime::NodeControl,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    mut printer: Printer,
    linger: Duration,
) -> anyhow::Result<ExitCode> {
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<Input>();
    read_stdin(line_tx);
    let mut signals = Signals::new();
    let mut stdin_open = true;
    let mut ready = false;
    let mut fatal = false;
    let mut quitting = false;
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
            input = lines.recv(), if stdin_open => {
                let end = match input {
                    Some(Input::Line(n, line)) => {
                        let parsed = split_tag(&line)
                            .and_then(|(tag, text)| commands::parse(text).map(|cmd| (tag, cmd)));
                        match parsed {
                            Ok((_, None)) => {}
                            Ok((Some(tag), Some(cmd))) => {
                                control.command_tagged(tag, cmd);
                            }
                            Ok((None, Some(cmd))) => {
                                control.command(cmd);
                            }
                            Err(message) => printer.print(&Event::Error {
                                message: format!("line {n}: {message}"),
                                fatal: false,
                            }),
                        }
                        false
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

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut bytes).is_err() {
        return std::process::id() as u64;
    }
    u64::from_le_bytes(bytes)
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

/// A readable line for a terminal user.
pub fn human(e: &Event, me: &str) -> Option<String> {
    Some(match e {
        Event::Ready { user, node_id, addr, first } => format!(
            "* signed in as {user} (node {node_id}) on {addr}{}. Type to chat; /msg USER TEXT, /peers, /history [USER], /quit",
            if *first { ", first node of the network" } else { "" }
        ),
        Event::Message(m) if m.is_merge() => return None,
        Event::Message(m) => {
            let clock = m.clock.as_ref().map(|c| format!("  {c}")).unwrap_or_default();
            match m.scope {
                Scope::Group => format!("<{}> {}{clock}", m.from, m.text),
                Scope::Private => {
                    let to = m.to.clone().unwrap_or_default();
                    if m.from == me {
                        format!("[private to {to}] {}{clock}", m.text)
                    } else {
                        format!("[private from {}] {}{clock}", m.from, m.text)
                    }
                }
            }
        }
        Event::Peer { info, status, joined } => {
            if *joined {
                format!("* {} just joined the chat!", info.user)
            } else {
                format!("* {} is {}", info.user, crate::json::status(*status))
            }
        }
        Event::Peers(list) => {
            if list.is_empty() {
                "* no peers yet".to_string()
            } else {
                list.iter()
                    .map(|(p, s)| format!("* {} (node {}, {}) {}", p.user, p.node_id, p.addr, crate::json::status(*s)))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Event::History { messages, with, .. } => {
            let mut lines = vec![match with {
                Some(w) => format!("* private history with {w}:"),
                None => "* group history:".to_string(),
            }];
            for m in messages {
                let clock = m.clock.as_ref().map(|c| format!("  {c}")).unwrap_or_default();
                lines.push(format!("  <{}> {}{clock}", m.from, m.text));
            }
            lines.join("\n")
        }
        Event::Acked { .. } => return None,
        Event::Stored { peer, seq } => {
            format!("* private message {seq} to {peer} is kept by a mailbox until {peer} is back")
        }
        Event::AuthServer { reachable } => format!(
            "* auth server {}",
            if *reachable { "reachable again" } else { "unreachable (the chat goes on)" }
        ),
        Event::Status(s) => format!("* status: {}", crate::json::status_text(s)),
        Event::Error { message, fatal } => {
            if *fatal {
                format!("! fatal: {message}")
            } else {
                format!("! {message}")
            }
        }
        Event::Overview { peers, .. } => format!(
            "* {} members known, {} online",
            peers.len(),
            peers.iter().filter(|(_, s)| *s == PeerStatus::Online).count()
        ),
        Event::Reply { event, .. } => return human(event, me),
        Event::Admitted { .. } | Event::Settled => return None,
    })
}
