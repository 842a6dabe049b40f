//! Process plumbing shared by the commands: logging, the data dir, the async runtime,
//! signals, and address parsing.

use anyhow::Context;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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
/// Path of a user's node database inside a data dir.
pub fn node_db(dir: &Path, user: &str) -> PathBuf {
    dir.join(format!("node-{user}.db"))
}

/// `HOST:PORT` to a socket address: an IP address as is, a hostname through the resolver
/// (IPv4 addresses first: the loopback and most home networks are IPv4).
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !s.contains(':') {
        return Err(format!("{s:?} is not HOST:PORT"));
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(s)
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}
