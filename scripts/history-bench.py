#!/usr/bin/env python3
"""Long histories: pipe N group messages into one node (script mode), restart it, and time
`ready`, `/history --last 50`, `/search`, a plain `/history`; read its RSS (Linux /proc).

    python3 scripts/history-bench.py target/release/p2pchat 100000 /tmp/hb
    RESTART_ONLY=1 python3 scripts/history-bench.py target/release/p2pchat 100000 /tmp/hb

RESTART_ONLY=1 reuses the data dir of an earlier run (only the restart is measured)."""
import json, os, subprocess, sys, time, shutil
BIN = sys.argv[1]; N = int(sys.argv[2]); D = sys.argv[3]
ONLY = os.environ.get("RESTART_ONLY")
if not ONLY:
    shutil.rmtree(D, ignore_errors=True); os.makedirs(D)
env = dict(os.environ, P2PCHAT_PASSWORD="pw", RUST_LOG="warn")
auth = subprocess.Popen([BIN, "auth-server", "--listen", "127.0.0.1:0", "--data-dir", D + "/auth"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
addr = auth.stdout.readline().strip().rsplit(" ", 1)[-1]
words = ["lorem", "ipsum", "dolor", "sit", "amet", "lunch", "noon", "weather", "rain", "sun"]
def line(i):
    return f"message {i} about {words[i % 10]} and {words[(i * 7) % 10]} w{i}"
# 1. the write: N lines piped in, then end of input
t0 = time.time()
if ONLY:
    N = 0
node = subprocess.Popen([BIN, "node", "--user", "alice", "--signup", "--auth", addr, "--port", "0",
                         "--data-dir", D + "/node"], stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=env)
for i in range(N):
    node.stdin.write(line(i) + "\n")
N = N or int(sys.argv[2])
node.stdin.close()
node.wait()
write = time.time() - t0
print(f"write: {N} messages in {write:.1f} s = {N / write:.0f} msg/s (exit {node.returncode})")
size = sum(os.path.getsize(os.path.join(D + "/node", f)) for f in os.listdir(D + "/node"))
print(f"data dir: {size / 1e6:.1f} MB")
# 2. restart: ready time, RSS, history, search
t0 = time.time()
node = subprocess.Popen([BIN, "node", "--user", "alice", "--auth", addr, "--port", "0",
                         "--data-dir", D + "/node"], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
def wait(pred):
    while True:
        l = node.stdout.readline()
        if not l:
            raise SystemExit("node exited")
        v = json.loads(l)
        if pred(v):
            return v
wait(lambda v: v.get("event") == "ready")
print(f"ready after restart: {time.time() - t0:.2f} s")
def rss():
    for l in open(f"/proc/{node.pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1]) / 1024
print(f"RSS after ready: {rss():.1f} MB")
def timed(cmd, event, runs=5):
    ts = []
    for _ in range(runs):
        t = time.time()
        node.stdin.write(cmd + "\n"); node.stdin.flush()
        v = wait(lambda v: v.get("event") == event)
        ts.append((time.time() - t) * 1000)
    ts.sort()
    return ts[len(ts) // 2], len(v.get("messages", []))
for cmd, ev in [("/history --last 50", "history"), ("/search lunch", "search"),
                (f"/search w{N // 2}", "search"), ("/history", "history")]:
    ms, n = timed(cmd, ev)
    print(f"{cmd}: median of 5 {ms:.1f} ms, {n} messages")
print(f"RSS at the end: {rss():.1f} MB")
node.stdin.write("/quit\n"); node.stdin.close(); node.wait(); auth.kill()
