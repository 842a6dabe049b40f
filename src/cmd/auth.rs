//! `p2pchat auth-server`: the auth server process, over SQLite or PostgreSQL.

use crate::process::{data_dir, init_logging, resolve, runtime, Signals};
use anyhow::{bail, Context};
use clap::Args;
use p2pchat_core::AuthConfig;
use p2pchat_runtime::{
    spawn_auth_server, spawn_auth_server_on, Argon2Credentials, AuthBackend, AuthHandle,
    PgDirectory,
};
use p2pchat_store::Store;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `p2pchat auth-server`.
#[derive(Args, Debug)]
pub struct AuthArgs {
    /// UDP address to listen on (HOST:PORT; a hostname is resolved).
    #[arg(long, default_value = "127.0.0.1:12345", value_parser = resolve)]
    pub listen: SocketAddr,
    /// Where the account database lives (default: the platform data dir, e.g. ~/.local/share/p2pchat).
    #[arg(long, conflicts_with = "db")]
    pub data_dir: Option<PathBuf>,
    /// Keep accounts, keys, leases and the newcomer queue in PostgreSQL
    /// (postgresql://USER[:PASSWORD]@HOST:PORT/DB) instead of SQLite in the data dir: several
    /// auth servers on one database are one service with one key.
    #[arg(long, env = "P2PCHAT_DATABASE_URL", hide_env_values = true)]
    pub db: Option<String>,
    /// Cap on live nodes (members polling plus newcomers waiting).
    #[arg(long, default_value_t = 10_000)]
    pub max_nodes: usize,
    /// Signups one IP address may make per minute (0: unlimited). A node over the limit is
    /// told so and asks again when the minute is over.
    #[arg(long, default_value_t = p2pchat_core::AuthConfig::default().source_signups)]
    pub signup_rate: u32,
    /// Most devices (data dirs, each with its own keys and node id) one account may have;
    /// revoked ones do not count. A signin from one more is refused with a message that
    /// says how to revoke one.
    #[arg(long, default_value_t = p2pchat_core::AuthConfig::default().max_devices)]
    pub max_devices: usize,
    /// Datagrams a second this server passes on for one node whose peers no member relays
    /// for (every member behind a NAT; the relay of last resort, sealed end to end). 0: none.
    #[arg(long, default_value_t = p2pchat_core::AuthConfig::default().relay_rate)]
    pub relay_rate: u32,
    /// Datagrams a second this server relays for all nodes together (what bounds the
    /// bandwidth it lends; a big group with no public member needs more).
    #[arg(long, default_value_t = p2pchat_core::AuthConfig::default().relay_total)]
    pub relay_total: u32,
}

/// `p2pchat auth-server`.
pub fn auth_server(args: AuthArgs) -> anyhow::Result<()> {
    init_logging("info");
    if args.max_nodes == 0 {
        bail!("--max-nodes must be at least 1");
    }
    if args.max_devices == 0 {
        bail!("--max-devices must be at least 1");
    }
    let cfg = AuthConfig {
        max_nodes: args.max_nodes,
        source_signups: args.signup_rate,
        max_devices: args.max_devices,
        relay_rate: args.relay_rate,
        relay_total: args.relay_total,
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
