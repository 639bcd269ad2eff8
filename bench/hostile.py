#!/usr/bin/env python3
"""Hostile load and ingestion memory, for one or more poplite builds side by side.

Usage: bench/hostile.py NAME=POPLITE_BINARY [NAME=POPLITE_BINARY ...]
                        [--hostile TOOL] [--duration 10s] [--skip-ingest]

For each build, in one run:
  flood8    default settings; 8 connections from 127.0.0.1 stream 1 MB
            lines (4) or pipeline NOOP/LIST while reading replies (4)
  mix1000   --max-connections-per-ip 0; 1000 hostile connections of every
            kind from 127.0.0.1-9 (examples/hostile.rs)
  deliver   `poplite deliver` of a 1 GB message from a pipe: peak RSS
  lmtp4     four simultaneous 60 MB LMTP deliveries: server RSS growth
In the first two, a legitimate session (login, STAT, RETR of 100 KB,
QUIT) runs over and over from 127.0.0.10, alone and then under attack.

Loopback only; every phase is bounded in time; each server is stopped by
its pid. TOOL defaults to target/release/examples/hostile (build it with
`cargo build --release --example hostile`).
"""
import argparse
import json
import os
import resource
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("builds", nargs="+", help="NAME=PATH of a poplite binary")
parser.add_argument("--hostile", default="target/release/examples/hostile")
parser.add_argument("--duration", default="10s")
parser.add_argument("--skip-ingest", action="store_true")
args = parser.parse_args()

# 1000 client sockets here, as many in the server: lift the descriptor limit
# for this process and everything it starts.
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

MIX1000 = ["--slow", "150", "--silent", "200", "--garbage", "150", "--long-lines", "150",
           "--pipelined-readers", "150", "--pipelined-writers", "150", "--half-tls", "50"]
FLOOD8 = ["--long-lines", "4", "--pipelined-readers", "4", "--sources", "1"]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, timeout=600, **kw)


def prepare(binary, dir):
    db = os.path.join(dir, "p.db")
    run([binary, "--db", db, "user", "add", "legit", "--password-stdin",
         "--argon2-params", "m=64,t=1,p=1"], input=b"pw\n")
    body = b"Subject: 100 KB\n\n" + (b"x" * 98 + b"\n") * 1000
    run([binary, "--db", db, "deliver", "legit"], input=body)
    run([binary, "cert", "self-signed", "--out", dir, "--name", "localhost"])
    return db


def start(binary, db, dir, extra):
    log = open(os.path.join(dir, "server.log"), "wb")
    server = subprocess.Popen(
        [binary, "--db", db, "serve", "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
         "--tls-cert", os.path.join(dir, "cert.pem"), "--tls-key", os.path.join(dir, "key.pem")]
        + extra, stdout=subprocess.PIPE, stderr=log)
    addrs = {}
    deadline = time.time() + 30
    while len(addrs) < 2 + sum(1 for x in extra if x == "--lmtp") and time.time() < deadline:
        line = server.stdout.readline().decode()
        if not line:
            break
        kind = "lmtp" if "(LMTP)" in line else "tls" if "(TLS)" in line else "pop3"
        addrs[kind] = line.split()[3]
    return server, addrs


def stop(server):
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def hostile(name, binary, scenario, extra_serve, mix):
    with tempfile.TemporaryDirectory() as dir:
        db = prepare(binary, dir)
        server, addrs = start(binary, db, dir, extra_serve)
        try:
            out = os.path.join(dir, "result.json")
            run([args.hostile, "--addr", addrs["pop3"], "--tls-addr", addrs["tls"],
                 "--duration", args.duration, "--server-pid", str(server.pid), "--json", out] + mix)
            with open(out) as f:
                return json.load(f)
        finally:
            stop(server)


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def deliver_1g(binary):
    with tempfile.TemporaryDirectory() as dir:
        db = os.path.join(dir, "d.db")
        run([binary, "--db", db, "user", "add", "alice", "--password-stdin",
             "--argon2-params", "m=64,t=1,p=1"], input=b"pw\n")
        started = time.perf_counter()
        proc = subprocess.Popen([binary, "--db", db, "deliver", "alice", "--max-message-size",
                                 "2000000000"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        chunk = (b"y" * 1022 + b"\n") * 1024
        proc.stdin.write(b"Subject: one gigabyte\n\n")
        for _ in range(1024):
            proc.stdin.write(chunk)
        proc.stdin.close()
        # VmHWM only grows: the last reading before the process ends is its
        # peak (wait4's ru_maxrss would also count this script's memory,
        # which the child had before exec).
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, status_kib(proc.pid, "VmHWM"))
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        ok = proc.returncode == 0
        elapsed = time.perf_counter() - started
        return {"ok": ok, "peak_rss_kib": peak, "seconds": round(elapsed, 2)}


def lmtp4(binary):
    with tempfile.TemporaryDirectory() as dir:
        db = prepare(binary, dir)
        for i in range(4):
            run([binary, "--db", db, "user", "add", f"u{i}", "--password-stdin",
                 "--argon2-params", "m=64,t=1,p=1"], input=b"pw\n")
        server, addrs = start(binary, db, dir, ["--lmtp", "127.0.0.1:0",
                                                "--max-message-size", "100000000"])
        try:
            host, port = addrs["lmtp"].rsplit(":", 1)
            before = status_kib(server.pid, "VmRSS")
            body = b"Subject: 60 MB\r\n\r\n" + (b"z" * 998 + b"\r\n") * 60000
            results = []

            def send(user):
                lmtp = smtplib.LMTP(host, int(port), timeout=120)
                try:
                    results.append(lmtp.sendmail("s@far.test", [user], body))
                finally:
                    lmtp.quit()

            started = time.perf_counter()
            threads = [threading.Thread(target=send, args=(f"u{i}",)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
            growth = status_kib(server.pid, "VmHWM") - before
            ok = len(results) == 4 and all(not r for r in results)
            return {"ok": ok, "rss_growth_kib": growth, "seconds": round(elapsed, 2)}
        finally:
            stop(server)


results = {}
for build in args.builds:
    name, binary = build.split("=", 1)
    results[name] = {
        "flood8": hostile(name, binary, "flood8", [], FLOOD8),
        "mix1000": hostile(name, binary, "mix1000", ["--max-connections-per-ip", "0"], MIX1000),
    }
    if not args.skip_ingest:
        results[name]["deliver"] = deliver_1g(binary)
        results[name]["lmtp4"] = lmtp4(binary)
    print(f"{name}: done", file=sys.stderr)

print("| build | scenario | legit p50 alone | p99 alone | p50 attacked | p99 attacked | errors | server CPU s | peak RSS MB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for name, r in results.items():
    for scenario in ("flood8", "mix1000"):
        h = r[scenario]
        a, b = h["alone"], h["attacked"]
        print(f"| {name} | {scenario} | {a['p50_ms']} | {a['p99_ms']} | {b['p50_ms']} | {b['p99_ms']} "
              f"| {b['errors']} ({b['sessions']} sessions) | {h['server_cpu_s']} "
              f"| {h['server_peak_rss_kib'] / 1024:.1f} |")
for name, r in results.items():
    for scenario in ("flood8", "mix1000"):
        closes = ", ".join(f"{c['kind']} {c['reason']}: {c['count']}" for c in r[scenario]["closes"])
        print(f"{name} {scenario} closes: {closes or 'none'}")
if not args.skip_ingest:
    print()
    print("| build | deliver 1 GB peak RSS MB | s | 4 x 60 MB LMTP RSS growth MB | s |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        d, l = r["deliver"], r["lmtp4"]
        print(f"| {name} | {d['peak_rss_kib'] / 1024:.0f}{'' if d['ok'] else ' (failed)'} | {d['seconds']} "
              f"| {l['rss_growth_kib'] / 1024:.0f}{'' if l['ok'] else ' (failed)'} | {l['seconds']} |")
