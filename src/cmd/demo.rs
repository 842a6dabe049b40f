//! `p2pchat demo`: the seed's scenarios, end to end on real UDP sockets, in one process.

use anyhow::{bail, Context};
use clap::Args;
use p2pchat_core::{AuthConfig, Command, Event, HistoryEntry, NodeConfig, NodeParams, PeerStatus};
use p2pchat_runtime::{spawn_auth_server, spawn_node, Argon2Credentials, AuthHandle, NodeControl};
use p2pchat_store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// Arguments of `p2pchat demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Also print every protocol event (joins, presence) as it happens.
    #[arg(long)]
    pub verbose: bool,
}

const WAIT: Duration = Duration::from_secs(15);

struct Person {
    name: &'static str,
    control: Option<NodeControl>,
    events: Option<UnboundedReceiver<Event>>,
    addr: SocketAddr,
    node_id: Option<u32>,
    group: BTreeSet<String>,
    private: BTreeSet<String>,
    online: BTreeSet<String>,
    fatal: Option<String>,
}

struct Demo {
    dir: tempfile::TempDir,
    auth_addr: SocketAddr,
    /// The server's key, pinned by every demo node.
    auth_key: Option<p2pchat_proto::Key>,
    auth: Option<AuthHandle>,
    people: Vec<Person>,
    verbose: bool,
    started: Instant,
}

fn say(text: &str) {
    println!("{text}");
}

impl Demo {
    fn person(&mut self, name: &str) -> anyhow::Result<&mut Person> {
        self.people
            .iter_mut()
            .find(|p| p.name == name)
            .with_context(|| format!("no such person {name}"))
    }

    async fn start_auth(&mut self, bind: SocketAddr) -> anyhow::Result<()> {
        let mut tries = 0;
        let handle = loop {
            let store = Store::open(&self.dir.path().join("auth-server.db"))?;
            match spawn_auth_server(
                AuthConfig::default(),
                Box::new(Argon2Credentials::default()),
                bind,
                store,
            )
            .await
            {
                Ok(h) => break h,
                // The port was just released by the crashed server: retry the bind briefly.
                Err(_) if tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.auth_addr = handle.local_addr;
        self.auth_key = Some(handle.key);
        self.auth = Some(handle);
        Ok(())
    }

    async fn start_node(
        &mut self,
        name: &'static str,
        signup: bool,
        port: u16,
    ) -> anyhow::Result<()> {
        let path = crate::process::node_db(self.dir.path(), name);
        let store = Store::open(&path)?;
        let bind = SocketAddr::from(([127, 0, 0, 1], port));
        let params = NodeParams {
            user: name.to_string(),
            password: format!("{name}-demo-password"),
            signup,
            auth_addr: self.auth_addr,
            auth_fallbacks: Vec::new(),
            auth_key: self.auth_key,
        };
        let handle = spawn_node(NodeConfig::default(), params, bind, store).await?;
        let addr = handle.local_addr();
        let (control, events) = handle.split();
        if let Ok(p) = self.person(name) {
            p.control = Some(control);
            p.events = Some(events);
            p.addr = addr;
        } else {
            self.people.push(Person {
                name,
                control: Some(control),
                events: Some(events),
                addr,
                node_id: None,
                group: BTreeSet::new(),
                private: BTreeSet::new(),
                online: BTreeSet::new(),
                fatal: None,
            });
        }
        Ok(())
    }

    fn pump(&mut self) {
        let verbose = self.verbose;
        let t = self.started.elapsed().as_secs_f64();
        for p in &mut self.people {
            let Some(rx) = p.events.as_mut() else {
                continue;
            };
            while let Ok(e) = rx.try_recv() {
                if verbose {
                    if let Some(line) = crate::format::human(&e, p.name) {
                        println!("    [{t:6.2}s {:>5}] {line}", p.name);
                    }
                }
                match e {
                    Event::Ready { node_id, .. } => p.node_id = Some(node_id.0),
                    Event::Message(m) => {
                        match m.scope {
                            p2pchat_core::Scope::Group => p.group.insert(m.id),
                            p2pchat_core::Scope::Private => p.private.insert(m.id),
                        };
                    }
                    Event::Peer { info, status, .. } => {
                        if status == PeerStatus::Online {
                            p.online.insert(info.user);
                        } else {
                            p.online.remove(&info.user);
                        }
                    }
                    Event::Error {
                        message,
                        fatal: true,
                    } => p.fatal = Some(message),
                    _ => {}
                }
            }
        }
    }

    async fn until(&mut self, what: &str, cond: impl Fn(&Demo) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump();
            if let Some(p) = self.people.iter().find(|p| p.fatal.is_some()) {
                bail!("{} failed: {}", p.name, p.fatal.clone().unwrap_or_default());
            }
            if cond(self) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("timed out waiting until {what}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn get(&self, name: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.name == name)
    }

    fn command(&mut self, name: &str, cmd: Command) -> anyhow::Result<()> {
        let p = self.person(name)?;
        match &p.control {
            Some(c) if c.command(cmd) => Ok(()),
            _ => bail!("{name} is not running"),
        }
    }

    async fn group_says(
        &mut self,
        name: &'static str,
        text: &str,
        audience: &[&'static str],
    ) -> anyhow::Result<()> {
        let before = self.get(name).map(|p| p.group.len()).unwrap_or(0);
        self.command(name, Command::Say(text.to_string()))?;
        say(&format!("  {name}: {text}"));
        self.until(&format!("{name}'s message is sent"), |d| {
            d.get(name).is_some_and(|p| p.group.len() > before)
        })
        .await?;
        let total = self.get(name).map(|p| p.group.clone()).unwrap_or_default();
        let who: Vec<&str> = audience.to_vec();
        self.until(&format!("everyone has {name}'s message"), move |d| {
            who.iter()
                .all(|w| d.get(w).is_some_and(|p| total.is_subset(&p.group)))
        })
        .await
    }

    async fn history(
        &mut self,
        name: &str,
        with: Option<&str>,
    ) -> anyhow::Result<Vec<HistoryEntry>> {
        self.command(
            name,
            Command::History {
                with: with.map(str::to_string),
                last: None,
                before: None,
            },
        )?;
        let deadline = Instant::now() + WAIT;
        let p = self.person(name)?;
        let rx = p.events.as_mut().context("no events")?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(Event::History { messages, .. })) => return Ok(messages),
                Ok(Some(Event::Message(m))) => {
                    match m.scope {
                        p2pchat_core::Scope::Group => p.group.insert(m.id),
                        p2pchat_core::Scope::Private => p.private.insert(m.id),
                    };
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => bail!("no history from {name}"),
            }
        }
    }
}

fn show(entries: &[HistoryEntry]) {
    for m in entries {
        let clock = m.clock.as_ref().map(|c| c.to_string()).unwrap_or_default();
        let to =
            m.to.as_ref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default();
        println!("  {:<6}{:<9} {:<52} {clock}", m.from, to, m.text);
    }
}

/// Runs the demo; an error means something did not work as promised.
pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    crate::process::init_logging("error");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut d = Demo {
        dir,
        auth_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        auth_key: None,
        auth: None,
        people: Vec::new(),
        verbose: args.verbose,
        started: Instant::now(),
    };
    let all3 = ["alice", "bob", "carol"];

    say("== p2pchat demo: an auth server and three people on 127.0.0.1");
    d.start_auth(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let auth_bind = d.auth_addr;
    say(&format!(
        "* auth server listening on {auth_bind} (data in a temporary dir)"
    ));
    if let Some(key) = d.auth_key {
        say(&format!(
            "* its key {}: nodes pin it; passwords travel only inside Noise, chat only sealed and signed",
            &p2pchat_core::secure::fingerprint(&key)[..16]
        ));
    }

    say("\n== alice, bob and carol sign up; existing nodes bootstrap newcomers from the server's queue");
    for name in all3 {
        d.start_node(name, true, 0).await?;
        d.until(&format!("{name} is ready"), |d| {
            d.get(name).is_some_and(|p| p.node_id.is_some())
        })
        .await?;
        let p = d.get(name).context("person")?;
        say(&format!(
            "* {name} signed up: node id {}, listening on {}",
            p.node_id.unwrap_or(0),
            p.addr
        ));
    }
    d.until("everyone sees the other two online", |d| {
        all3.iter()
            .all(|n| d.get(n).is_some_and(|p| p.online.len() >= 2))
    })
    .await?;
    say("* every node knows the other two (\"X just joined the chat!\")");

    say("\n== group chat by gossip, ordered by vector clocks");
    d.group_says("alice", "hi everyone, alice here", &all3)
        .await?;
    d.group_says("bob", "hey alice! bob reporting", &all3)
        .await?;
    d.group_says("carol", "hello both, carol joined the party", &all3)
        .await?;

    say("\n== private messages go directly, acknowledged and in order");
    d.command(
        "alice",
        Command::Msg {
            to: "bob".into(),
            text: "psst bob, lunch at noon?".into(),
        },
    )?;
    say("  alice -> bob (private): psst bob, lunch at noon?");
    d.until("bob has alice's private message", |d| {
        d.get("bob").is_some_and(|p| !p.private.is_empty())
    })
    .await?;
    d.command(
        "bob",
        Command::Msg {
            to: "alice".into(),
            text: "sure, see you there".into(),
        },
    )?;
    say("  bob -> alice (private): sure, see you there");
    d.until("alice has bob's reply", |d| {
        d.get("alice").is_some_and(|p| p.private.len() >= 2)
    })
    .await?;

    say("\n== carol's process crashes (no goodbye); the others keep talking");
    let carol = d.person("carol")?;
    let carol_addr = carol.addr;
    let carol_id = carol.node_id;
    let seen_before = carol.group.len();
    if let Some(c) = carol.control.take() {
        c.crash().await;
    }
    carol.events = None;
    d.group_says("alice", "carol went quiet...", &["alice", "bob"])
        .await?;
    d.group_says(
        "bob",
        "she will catch up when she is back",
        &["alice", "bob"],
    )
    .await?;

    say("\n== carol restarts from her data dir: same node id, catches up by anti-entropy");
    d.start_node("carol", false, carol_addr.port()).await?;
    d.until("carol has caught up", |d| {
        let a = d.get("alice").map(|p| p.group.clone()).unwrap_or_default();
        d.get("carol").is_some_and(|p| a.is_subset(&p.group))
    })
    .await?;
    let carol = d.get("carol").context("carol")?;
    if carol.node_id != carol_id {
        bail!(
            "carol came back with node id {:?}, not {:?}",
            carol.node_id,
            carol_id
        );
    }
    say(&format!(
        "* carol is back as node {} and received the {} messages she missed",
        carol.node_id.unwrap_or(0),
        carol.group.len() - seen_before
    ));

    say("\n== the auth server goes down; the chat goes on without it");
    if let Some(a) = d.auth.take() {
        a.crash().await;
    }
    d.group_says(
        "bob",
        "the auth server is down, but we are still chatting",
        &all3,
    )
    .await?;
    d.group_says("carol", "no server needed once you are in", &all3)
        .await?;

    say("\n== the auth server returns (same accounts), and dave joins");
    d.start_auth(auth_bind).await?;
    d.start_node("dave", true, 0).await?;
    d.until("dave is ready", |d| {
        d.get("dave").is_some_and(|p| p.node_id.is_some())
    })
    .await?;
    let dave_id = d.get("dave").and_then(|p| p.node_id).unwrap_or(0);
    say(&format!("* dave signed up: node id {dave_id}"));
    let all4 = ["alice", "bob", "carol", "dave"];
    d.until("dave has the whole history", |d| {
        let a = d.get("alice").map(|p| p.group.clone()).unwrap_or_default();
        d.get("dave").is_some_and(|p| a.is_subset(&p.group))
    })
    .await?;
    say("* dave received the whole group history from his peers");
    d.group_says("dave", "hi all, dave here, just joined!", &all4)
        .await?;

    say("\n== transcript: the group history (same causal order on every node), with vector clocks");
    let reference = d.history("alice", None).await?;
    show(&reference);
    let mut agree = true;
    for name in ["bob", "carol", "dave"] {
        let h = d.history(name, None).await?;
        let same = h.iter().map(|m| &m.id).eq(reference.iter().map(|m| &m.id));
        if !same {
            agree = false;
            println!("! {name}'s history differs from alice's");
        }
    }
    say("\n== transcript: alice <-> bob, privately (two-party clocks)");
    let pa = d.history("alice", Some("bob")).await?;
    show(&pa);
    let pb = d.history("bob", Some("alice")).await?;
    let private_agree = pa.iter().map(|m| &m.id).eq(pb.iter().map(|m| &m.id)) && pa.len() == 2;
    let carol_private = d.history("carol", Some("alice")).await?;
    let dave_private = d.history("dave", Some("bob")).await?;
    let sealed = carol_private.is_empty() && dave_private.is_empty();

    for name in all4 {
        let _ = d.command(name, Command::Quit);
    }
    for p in &mut d.people {
        if let Some(c) = p.control.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.join()).await;
        }
    }
    if let Some(a) = d.auth.take() {
        let _ = a.stop().await;
    }

    let mut counts = BTreeMap::new();
    for p in &d.people {
        counts.insert(p.name, p.group.len());
    }
    say("");
    if agree && private_agree && sealed && reference.len() == 8 {
        say(&format!(
            "OK: all 4 nodes hold the same {} group messages in the same causal order; the private chat is identical on both ends and seen by no one else ({:.1} s)",
            reference.len(),
            d.started.elapsed().as_secs_f64()
        ));
        Ok(())
    } else {
        bail!(
            "histories disagree (group agree: {agree}, private agree: {private_agree}, private sealed: {sealed}, messages: {}, counts: {counts:?})",
            reference.len()
        )
    }
}
