//! The driver tasks: one per state machine.

use crate::postgres::PgDirectory;
use p2pchat_core::{
    Archive, AuthConfig, AuthServer, Command, Credentials, Event, GroupSummary, Host, Node,
    NodeConfig, NodeParams, Output, Record, Stats,
};
use p2pchat_proto::{Dot, GroupMsg, NodeId};
use p2pchat_store::{Store, StoreError};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Why a driver could not start or had to stop.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// Binding or using the socket failed.
    #[error("network error")]
    Io(#[from] std::io::Error),
    /// The store failed; the driver stops rather than lose data.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data dir belongs to another user.
    #[error("this data dir belongs to user {found:?}, not {wanted:?}")]
    WrongUser {
        /// The user in the data dir.
        found: String,
        /// The user asked for.
        wanted: String,
    },
    /// The state machine stopped with a fatal error.
    #[error("{0}")]
    Fatal(String),
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A running node: its control half and its events.
pub struct NodeHandle {
    /// Commands in, and the task.
    pub control: NodeControl,
    /// Events from the node, in order.
    pub events: mpsc::UnboundedReceiver<Event>,
}

impl NodeHandle {
    /// Where the node's socket is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.control.local_addr
    }

    /// Splits the handle for a UI loop that owns the events.
    pub fn split(self) -> (NodeControl, mpsc::UnboundedReceiver<Event>) {
        (self.control, self.events)
    }
}

/// A node handle without its event receiver.
pub struct NodeControl {
    /// Where the node's socket is bound.
    pub local_addr: SocketAddr,
    commands: mpsc::UnboundedSender<(Option<String>, Command)>,
    task: JoinHandle<Result<(), RuntimeError>>,
}

impl NodeControl {
    /// Gives the node a command; false if it has stopped.
    pub fn command(&self, cmd: Command) -> bool {
        self.commands.send((None, cmd)).is_ok()
    }

    /// Gives the node a command whose replies come back as `Event::Reply` with `tag`.
    pub fn command_tagged(&self, tag: String, cmd: Command) -> bool {
        self.commands.send((Some(tag), cmd)).is_ok()
    }

    /// Waits for the node to stop.
    pub async fn join(self) -> Result<(), RuntimeError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(RuntimeError::Fatal(format!("node task failed: {e}"))),
        }
    }

    /// Stops the task at once, without a goodbye (a crash); returns once it is gone.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Binds a UDP socket with large kernel buffers: a burst of datagrams waits in the kernel
/// instead of being dropped while the machine is busy (the protocol would repair the loss, but
/// repairs cost more than buffering).
async fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let std_sock = std::net::UdpSocket::bind(addr)?;
    let sock = socket2::SockRef::from(&std_sock);
    // Capped by net.core.rmem_max / wmem_max; a smaller buffer is not an error.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    std_sock.set_nonblocking(true)?;
    UdpSocket::from_std(std_sock)
}

/// Most datagrams handled before the outputs are carried out (and their records committed).
const RECV_BATCH: usize = 64;

/// Requested kernel socket buffer size.
const SOCKET_BUFFER: usize = 4 << 20;

/// 32 bytes from the OS: the seed of a machine's keys and handshakes.
pub fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    if rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut seed).is_err() {
        // No OS randomness at all: refuse to make keys from anything weaker.
        panic!("the operating system's random number generator failed");
    }
    seed
}

/// Unix time in milliseconds (certificate expiry is wall-clock time).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Logs the fault counters at most every few seconds while they grow.
struct FaultLog {
    last_total: u64,
    last_at: Instant,
}

impl FaultLog {
    fn new() -> Self {
        FaultLog {
            last_total: 0,
            last_at: Instant::now(),
        }
    }

    fn check(&mut self, who: &str, s: &Stats) {
        let total = s.rejected_total();
        if total > self.last_total && self.last_at.elapsed() >= Duration::from_secs(5) {
            let kinds: Vec<String> = s
                .rejections()
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            tracing::warn!(
                "{who}: rejected {total} inputs so far ({})",
                kinds.join(", ")
            );
            self.last_total = total;
            self.last_at = Instant::now();
        }
    }
}

/// Where a node task hands its events, in the task itself (no extra hop).
pub trait EventSink: Send + Sync + 'static {
    /// Takes one event; a sink that is gone drops it.
    fn emit(&self, e: Event);
}

impl EventSink for mpsc::UnboundedSender<Event> {
    fn emit(&self, e: Event) {
        let _ = self.send(e);
    }
}

/// Starts a node on `bind`, restoring it from `store` if it holds an identity. Its [`Host`]
/// (address, seeds, wall clock) is made here, from the socket and the OS.
pub async fn spawn_node(
    cfg: NodeConfig,
    params: NodeParams,
    bind: SocketAddr,
    store: Store,
) -> Result<NodeHandle, RuntimeError> {
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let control = spawn_node_with_sink(cfg, params, bind, store, ev_tx).await?;
    Ok(NodeHandle {
        control,
        events: ev_rx,
    })
}

/// [`spawn_node`], with events handed to `sink` as the node task emits them (the benchmark
/// timestamps deliveries there, as a UI would see them).
pub async fn spawn_node_with_sink(
    cfg: NodeConfig,
    params: NodeParams,
    bind: SocketAddr,
    mut store: Store,
    sink: impl EventSink,
) -> Result<NodeControl, RuntimeError> {
    cfg.validate().map_err(RuntimeError::Config)?;
    // Everything but the group history, which follows in chunks once the node has its
    // archive (a long history never sits in memory whole).
    let records = store.load_without_groups()?;
    if let Some(Record::Identity { user, .. }) = records
        .iter()
        .find(|r| matches!(r, Record::Identity { .. }))
    {
        if *user != params.user {
            return Err(RuntimeError::WrongUser {
                found: user.clone(),
                wanted: params.user,
            });
        }
    }
    let socket = bind_udp(bind).await?;
    let local_addr = socket.local_addr()?;
    let seed = os_seed();
    let host = Host {
        local_addr: routed_addr(local_addr, params.auth_addr),
        seed: u64::from_le_bytes([
            seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
        ]),
        crypto_seed: os_seed(),
        wall_ms: unix_ms(),
    };
    let start = Instant::now();
    let mut node = Node::restore(cfg, params, host, &records, Duration::ZERO);
    drop(records);
    let store = Arc::new(Mutex::new(store));
    node.set_archive(Box::new(StoreArchive(store.clone())));
    let mut after = {
        let mut s = store
            .lock()
            .map_err(|_| RuntimeError::Fatal("the store lock was poisoned".into()))?;
        start_from_summary(&mut node, &mut s)
    };
    let summarised = node.stats().group_delivered;
    loop {
        // The lock is released between chunks: restoring may read old bodies back.
        let chunk = {
            let mut s = store
                .lock()
                .map_err(|_| RuntimeError::Fatal("the store lock was poisoned".into()))?;
            s.load_groups_after(&mut after, RESTORE_CHUNK)?
        };
        if chunk.is_empty() {
            break;
        }
        node.restore_group(Duration::ZERO, chunk);
    }
    tracing::info!(
        summarised,
        replayed = node.stats().group_delivered - summarised,
        "group history restored"
    );
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run_node(node, socket, store, cmd_rx, sink, start));
    Ok(NodeControl {
        local_addr,
        commands: cmd_tx,
        task,
    })
}

/// The address our datagrams to `toward` leave from: a socket bound to all interfaces
/// (`0.0.0.0`) takes the address of the interface the OS routes through (found by connecting
/// a throwaway UDP socket: nothing is sent). The node compares it with the address the auth
/// server sees to know whether a NAT is in front of it.
fn routed_addr(local: SocketAddr, toward: SocketAddr) -> SocketAddr {
    if !local.ip().is_unspecified() {
        return local;
    }
    let any = SocketAddr::new(local.ip(), 0);
    let ip = std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(toward).and_then(|()| s.local_addr()))
        .map(|a| a.ip());
    match ip {
        Ok(ip) if !ip.is_unspecified() => SocketAddr::new(ip, local.port()),
        _ => local,
    }
}

/// Starts the node's group history from the saved summary when there is one that fits;
/// returns the record id to replay group records after (0: all of them).
fn start_from_summary(node: &mut Node, store: &mut Store) -> i64 {
    let ignore = |why: String| {
        tracing::warn!("{why}; replaying the whole history instead");
        0
    };
    let summary = match store.load_summary() {
        Ok(Some(s)) => s,
        Ok(None) => return 0,
        Err(e) => return ignore(e.to_string()),
    };
    let part = match GroupSummary::decode(&summary.node) {
        Ok(p) => p,
        Err(e) => return ignore(e.to_string()),
    };
    // The node's part and the store's index must describe the same records.
    let mut theirs: Vec<(u32, u64)> = summary.counts().collect();
    theirs.sort_unstable();
    let mine: Vec<(u32, u64)> = part.delivered().iter().map(|(a, n)| (a.0, n)).collect();
    if mine != theirs {
        return ignore("the history summary does not match the store's index".into());
    }
    match node.restore_summary(part) {
        Ok(_) => store.adopt_summary(summary),
        Err(e) => ignore(e.to_string()),
    }
}

/// Saves a summary of the group history when one is due, or at a stop when anything is new
/// since the last (called once every record the node produced is committed).
fn save_summary(node: &Node, store: &Mutex<Store>, stopping: bool) {
    let Ok(mut s) = store.lock() else { return };
    if !(s.summary_due() || (stopping && s.summary_stale())) {
        return;
    }
    let took = std::time::Instant::now();
    if let Some(summary) = node.group_summary() {
        let bytes = summary.encode();
        match s.save_summary(&bytes) {
            Ok(()) => tracing::debug!(
                messages = summary.len(),
                bytes = bytes.len(),
                ms = took.elapsed().as_millis() as u64,
                "history summary saved"
            ),
            // Only a cache: the next start replays more.
            Err(e) => tracing::warn!("cannot save the history summary: {e}"),
        }
    }
}

/// Group messages replayed at a time at start.
const RESTORE_CHUNK: usize = 4_096;

/// Where `carry_out` commits records: a store, or a store shared with the node's archive.
trait Sink {
    fn commit(&mut self, records: &[Record]) -> Result<(), RuntimeError>;
}

impl Sink for Store {
    fn commit(&mut self, records: &[Record]) -> Result<(), RuntimeError> {
        Ok(self.append(records)?)
    }
}

impl Sink for Arc<Mutex<Store>> {
    fn commit(&mut self, records: &[Record]) -> Result<(), RuntimeError> {
        if records.is_empty() {
            return Ok(());
        }
        // Held only for the append, never across an await.
        let mut store = self
            .lock()
            .map_err(|_| RuntimeError::Fatal("the store lock was poisoned".into()))?;
        Ok(store.append(records)?)
    }
}

/// The node's store, read back for group messages no longer kept in memory.
struct StoreArchive(Arc<Mutex<Store>>);

impl Archive for StoreArchive {
    fn group(&self, dot: Dot) -> Option<GroupMsg> {
        let store = self.0.lock().ok()?;
        match store.group(dot.author.0, dot.seq) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("cannot read back group message {dot}: {e}");
                None
            }
        }
    }

    fn search(&self, query: &str, peer: Option<NodeId>, limit: usize) -> Option<Vec<Record>> {
        let mut store = self.0.lock().ok()?;
        match store.search(query, peer.map(|p| p.0), limit) {
            Ok(found) => Some(found),
            Err(e) => {
                // Said once here; the node then searches what it holds in memory.
                tracing::warn!("cannot search the store: {e}");
                None
            }
        }
    }
}

/// Carries out outputs in order: records are committed before any datagram that follows them
/// leaves. Events go out at once: what the user sees may precede its commit by the rest of
/// this step (microseconds), and nothing is lost if the process dies in between (peers still
/// hold a group message, and a private one is not acknowledged until it is committed).
async fn carry_out(
    outputs: &mut Vec<Output>,
    socket: &UdpSocket,
    store: &mut impl Sink,
    events: Option<&dyn EventSink>,
) -> Result<(), RuntimeError> {
    let mut pending: Vec<Record> = Vec::new();
    for out in outputs.drain(..) {
        match out {
            Output::Persist(r) => pending.push(r),
            Output::Send { to, bytes } => {
                store.commit(&pending)?;
                pending.clear();
                if let Err(e) = socket.send_to(&bytes, to).await {
                    // UDP is lossy anyway: the protocol retries. Log and go on.
                    tracing::debug!("send to {to} failed: {e}");
                }
            }
            Output::Event(e) => {
                log_event(&e);
                if let Some(sink) = events {
                    sink.emit(e);
                }
            }
        }
    }
    if !pending.is_empty() {
        // Nothing waits on these records but this task's next step: let the other nodes of
        // this process (the benchmark, the demo) deliver what just arrived before we write.
        tokio::task::yield_now().await;
        store.commit(&pending)?;
    }
    Ok(())
}

fn log_event(e: &Event) {
    match e {
        Event::Ready {
            user,
            node_id,
            addr,
            first,
        } => tracing::info!(%user, %node_id, %addr, first, "ready"),
        Event::Peer { info, status, .. } => {
            tracing::info!(user = %info.user, node_id = %info.node_id, ?status, "peer")
        }
        // Message bodies are never logged above debug.
        Event::Message(m) => tracing::debug!(id = %m.id, from = %m.from, "delivered"),
        Event::AuthServer { reachable } => tracing::info!(reachable, "auth server"),
        // The front end shows errors; the log keeps them for debugging only.
        Event::Error { message, fatal } => tracing::debug!(fatal, "{message}"),
        Event::Admitted {
            user,
            node_id,
            addr,
            first,
        } => tracing::info!(%user, %node_id, %addr, first, "admitted"),
        _ => {}
    }
}

async fn run_node(
    mut node: Node,
    socket: UdpSocket,
    mut store: Arc<Mutex<Store>>,
    mut commands: mpsc::UnboundedReceiver<(Option<String>, Command)>,
    events: impl EventSink,
    start: Instant,
) -> Result<(), RuntimeError> {
    let mut buf = vec![0u8; 2048];
    let mut outputs = Vec::new();
    let mut fatal: Option<String> = None;
    let mut commands_open = true;
    let mut faults = FaultLog::new();
    loop {
        faults.check("node", node.stats());
        while let Some(o) = node.poll_output() {
            if let Output::Event(Event::Error {
                message,
                fatal: true,
            }) = &o
            {
                fatal = Some(message.clone());
            }
            outputs.push(o);
        }
        carry_out(&mut outputs, &socket, &mut store, Some(&events)).await?;
        save_summary(&node, &store, node.is_stopped());
        if node.is_stopped() {
            return match fatal {
                Some(m) => Err(RuntimeError::Fatal(m)),
                None => Ok(()),
            };
        }
        let deadline = node
            .poll_timeout()
            .map(|d| start + d)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        // Biased: due timers first, then the network, then new commands. Draining what peers
        // sent before producing more is the backpressure that keeps receive buffers from
        // overflowing under a flood of local sends.
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(deadline) => node.handle_timeout(start.elapsed()),
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let now = start.elapsed();
                    node.handle_datagram(now, from, &buf[..n]);
                    // Batched receive: whatever else is already queued is handled too, so its
                    // records are committed in one transaction with these.
                    for _ in 1..RECV_BATCH {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, from)) => node.handle_datagram(now, from, &buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
                // ICMP errors (peer port closed) surface here on some systems: ignore.
                Err(e) => tracing::debug!("recv failed: {e}"),
            },
            cmd = commands.recv(), if commands_open => match cmd {
                Some((tag, c)) => node.handle_tagged(start.elapsed(), tag, c),
                None => {
                    commands_open = false;
                    node.handle_command(start.elapsed(), Command::Quit);
                }
            },
        }
    }
}

/// A running auth server.
pub struct AuthHandle {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// Its X25519 public key: what nodes pin (print it with `fingerprint`).
    pub key: p2pchat_proto::Key,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), RuntimeError>>,
}

impl AuthHandle {
    /// Asks the server to stop and waits for it.
    pub async fn stop(self) -> Result<(), RuntimeError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(RuntimeError::Fatal(format!("auth task failed: {e}"))),
        }
    }

    /// Kills the server at once (a crash); returns once its socket and store are closed.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Waits until the server stops on its own (it does not, unless it fails).
    pub async fn join(self) -> Result<(), RuntimeError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(RuntimeError::Fatal(format!("auth task failed: {e}"))),
        }
    }
}

/// Where an auth server keeps its accounts.
pub enum AuthBackend {
    /// One server with its own SQLite store (the default).
    Sqlite(Store),
    /// One of several servers over a PostgreSQL database, with the records it starts from
    /// (see [`PgDirectory::open`]).
    Postgres(Box<PgDirectory>, Vec<Record>),
}

/// Starts the auth server on `bind`, restoring its accounts from `store`.
pub async fn spawn_auth_server(
    cfg: AuthConfig,
    creds: Box<dyn Credentials>,
    bind: SocketAddr,
    store: Store,
) -> Result<AuthHandle, RuntimeError> {
    spawn_auth_server_on(cfg, creds, bind, AuthBackend::Sqlite(store)).await
}

/// Starts the auth server on `bind` over `backend`. A PostgreSQL backend needs a
/// multi-threaded runtime (its queries block their worker thread).
pub async fn spawn_auth_server_on(
    cfg: AuthConfig,
    creds: Box<dyn Credentials>,
    bind: SocketAddr,
    backend: AuthBackend,
) -> Result<AuthHandle, RuntimeError> {
    let socket = bind_udp(bind).await?;
    let local_addr = socket.local_addr()?;
    let (seed, wall) = (os_seed(), unix_ms());
    let (server, sink): (AuthServer, Box<dyn Sink + Send>) = match backend {
        AuthBackend::Sqlite(mut store) => {
            // Everything but the group history, which follows in chunks once the node has its
            // archive (a long history never sits in memory whole).
            let records = store.load_without_groups()?;
            let server = AuthServer::new(cfg, creds, &records, seed, wall);
            (server, Box::new(store))
        }
        AuthBackend::Postgres(dir, records) => {
            if tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::CurrentThread
            {
                return Err(RuntimeError::Config(
                    "a PostgreSQL auth server needs a multi-threaded runtime".into(),
                ));
            }
            let server = AuthServer::with_directory(cfg, creds, dir, &records, seed, wall);
            // Everything it must keep is in the database.
            (server, Box::new(Discard))
        }
    };
    let mut server = server;
    let mut sink = sink;
    let key = server.key();
    // New keys and the boot record are durable before the first answer.
    let mut outputs: Vec<Output> = std::iter::from_fn(|| server.poll_output()).collect();
    carry_out(&mut outputs, &socket, &mut sink, None).await?;
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_auth(server, socket, sink, stop_rx));
    Ok(AuthHandle {
        local_addr,
        key,
        stop,
        task,
    })
}

/// Records nobody keeps: a PostgreSQL server's boot record.
struct Discard;

impl Sink for Discard {
    fn commit(&mut self, _: &[Record]) -> Result<(), RuntimeError> {
        Ok(())
    }
}

impl Sink for Box<dyn Sink + Send> {
    fn commit(&mut self, records: &[Record]) -> Result<(), RuntimeError> {
        (**self).commit(records)
    }
}

async fn run_auth(
    mut server: AuthServer,
    socket: UdpSocket,
    mut store: Box<dyn Sink + Send>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    let start = Instant::now();
    let mut buf = vec![0u8; 2048];
    let mut outputs = Vec::new();
    let mut faults = FaultLog::new();
    loop {
        faults.check("auth server", server.stats());
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                // argon2 makes a signin take tens of ms; the server is the only task of its
                // process, so blocking here delays nothing else.
                Ok((n, from)) => server.handle_datagram(start.elapsed(), from, &buf[..n]),
                Err(e) => tracing::debug!("recv failed: {e}"),
            },
            _ = stop.changed() => return Ok(()),
        }
        while let Some(o) = server.poll_output() {
            outputs.push(o);
        }
        carry_out(&mut outputs, &socket, &mut store, None).await?;
    }
}
