//! `p2pchat bench-auth`: signups per second through running auth servers. Workers sign up
//! fresh users as a node does (key request, then the request inside Noise NK), each worker
//! on its own UDP socket and loopback address, spread over the servers given with `--auth`.
//! Run the servers with `--signup-rate 0` (else one address may sign up 100 a minute) and a
//! cap above the count: every signup after the first is queued as a newcomer.

use anyhow::{bail, Context};
use clap::Args;
use p2pchat_core::secure::{self, Identity};
use p2pchat_proto::wire::{
    decode_envelope, encode_envelope, from_payload, to_payload, Envelope, MIN_AUTH_HELLO,
    MIN_KEY_REQUEST,
};
use p2pchat_proto::{AuthReply, AuthRequest};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Arguments of `p2pchat bench-auth`.
#[derive(Args, Debug)]
pub struct BenchAuthArgs {
    /// An auth server (repeat for several; workers are spread over them).
    #[arg(long, required = true, value_parser = crate::process::resolve)]
    pub auth: Vec<SocketAddr>,
    /// Signups in total.
    #[arg(long, default_value_t = 200)]
    pub signups: usize,
    /// Signups in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Prefix of the usernames (unique per run: the accounts stay).
    #[arg(long, default_value = "bench")]
    pub prefix: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Waits for one datagram, asking again every second (an answer can be lost, and a busy
/// server answers a retried hello from its cache).
async fn ask(socket: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..30 {
        socket.send_to(bytes, to).await?;
        if let Ok(r) =
            tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await
        {
            let (n, _) = r?;
            return Ok(buf[..n].to_vec());
        }
    }
    bail!("auth server {to} did not answer in 30 s")
}

/// One signup; returns how long it took.
async fn signup(
    socket: &UdpSocket,
    to: SocketAddr,
    user: String,
    n: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let kr = encode_envelope(&Envelope::KeyRequest {
        pad: &[0; MIN_KEY_REQUEST],
    })?;
    let reply = ask(socket, to, &kr).await?;
    let Ok(Envelope::KeyReply { dh_pk, cookie, .. }) = decode_envelope(&reply) else {
        bail!("not a key reply");
    };
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed[8..16].copy_from_slice(&p2pchat_runtime::unix_ms().to_le_bytes());
    let me = Identity::generate(&mut secure::crypto_rng(seed));
    let mut req = AuthRequest {
        req: n,
        signup: true,
        user,
        password: format!("bench-password-{n}"),
        sign_pk: me.sign_pk,
        dh_pk: me.dh_pk,
        cookie,
        pad: Vec::new(),
    };
    let len = to_payload(&req)?.len();
    req.pad = vec![0; MIN_AUTH_HELLO.saturating_sub(len + 48)];
    seed[16] = 1;
    let (mut hs, m1) = secure::nk_initiate(&dh_pk, seed, &to_payload(&req)?)?;
    let hello = encode_envelope(&Envelope::AuthHello { noise: &m1 })?;
    let answer = ask(socket, to, &hello).await?;
    let Ok(Envelope::AuthAnswer { noise, .. }) = decode_envelope(&answer) else {
        bail!("not an answer");
    };
    let payload = secure::nk_finish(&mut hs, noise)?;
    let reply: AuthReply = from_payload(&payload)?;
    if let Err(e) = reply.result {
        bail!("signup refused: {e}");
    }
    Ok(started.elapsed())
}

/// Runs the benchmark and prints the figures.
pub fn bench_auth(args: BenchAuthArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let workers = args.concurrency.clamp(1, 250);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..workers {
            // One loopback address per worker, like distinct users' machines.
            let ip = format!("127.0.{}.{}", 10 + w / 250, 1 + w % 250);
            let socket = UdpSocket::bind(format!("{ip}:0"))
                .await
                .with_context(|| format!("cannot bind {ip}"))?;
            let to = args.auth[w % args.auth.len()];
            let mine: Vec<usize> = (w..args.signups).step_by(workers).collect();
            let prefix = args.prefix.clone();
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::new();
                for i in mine {
                    times.push(signup(&socket, to, format!("{prefix}{i}"), i as u64).await?);
                }
                anyhow::Ok(times)
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.extend(t.await??);
        }
        let wall = started.elapsed().as_secs_f64();
        times.sort();
        let pct = |p: f64| {
            times
                .get(((times.len() as f64 - 1.0) * p).round() as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let rate = times.len() as f64 / wall;
        if args.json {
            println!(
                "{}",
                json!({
                    "servers": args.auth.len(),
                    "signups": times.len(),
                    "concurrency": workers,
                    "seconds": wall,
                    "signups_per_s": rate,
                    "p50_ms": pct(0.5),
                    "p99_ms": pct(0.99),
                })
            );
        } else {
            println!(
                "{} signups through {} server(s) in {wall:.2} s: {rate:.1} signups/s; \
                 latency p50 {:.1} ms, p99 {:.1} ms",
                times.len(),
                args.auth.len(),
                pct(0.5),
                pct(0.99)
            );
        }
        Ok(())
    })
}
