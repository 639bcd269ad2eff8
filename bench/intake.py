#!/usr/bin/env python3
"""Measures the three ways mail comes in side by side, in one run against one
server: LMTP, SMTP and the HTTP API's POST, in messages/s and the server's CPU
per message; how much CPU a waiting `?min=` request costs; and, with
--fsync, how many fsyncs each way makes per message on a database file
against `poplite deliver`.

Usage: bench/intake.py BINARY [--messages N] [--size OCTETS] [--clients C]
                       [--rounds R] [--wait SECONDS] [--fsync]

Starts `BINARY serve --memory` on 127.0.0.1 ports of its own, and stops it at
the end. Each round sends N messages each way in turn, starting with another way
each round (so no way always gets the warmer cache or the emptier store), over C connections of one recipient
each; the medians are compared with LMTP's. The clients are Python's, so
messages/s is partly the client's; the server's CPU per message (from
/proc) is the steadier figure.
--fsync needs strace. Bounded: N messages per way and round, a 20 s timeout on every reply, at
most 60 s for the server to start.
"""
import argparse
import http.client
import multiprocessing
import os
import re
import select
import signal
import smtplib
import subprocess
import tempfile
import time

WAYS = ("lmtp", "smtp", "http")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User plus system CPU of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start(binary, database, wrapper=()):
    """A server with every intake listener on `database` (`--memory` or
    `--db FILE`); its process and addresses."""
    memory = ["--memory"] if database == "--memory" else []
    store = [] if memory else ["--db", database]
    command = [*wrapper, binary, *store, "serve", *memory, "--listen", "127.0.0.1:0",
               "--lmtp", "127.0.0.1:0", "--smtp", "127.0.0.1:0",
               "--http", "127.0.0.1:0", "--user", "alice:pw", "--user", "bob:pw"]
    # Unbuffered, so that select sees every line as it comes.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, bufsize=0,
                            env={**os.environ, "RUST_LOG": "warn"})
    addrs, deadline = {}, time.monotonic() + 60
    while len(addrs) < 3 and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        if not ready:
            continue
        line = proc.stdout.readline().decode()
        if not line:
            break
        found = re.match(r"poplite listening on (\S+):(\d+) \((LMTP|SMTP|HTTP)\)", line)
        if found:
            addrs[found[3].lower()] = (found[1], int(found[2]))
    if len(addrs) < 3:
        proc.kill()
        raise SystemExit(f"the server did not start: {addrs}")
    return proc, addrs


def sender(way, addr, body):
    """A function that sends one message the given way, and its closer."""
    host, port = addr
    if way in ("lmtp", "smtp"):
        client = (smtplib.LMTP if way == "lmtp" else smtplib.SMTP)(host, port, timeout=20)

        def send():
            refused = client.sendmail("bench@far.test", ["alice"], body)
            assert not refused, refused
        return send, client.quit
    connection = http.client.HTTPConnection(host, port, timeout=20)

    def post():
        connection.request("POST", "/api/v1/users/alice/messages", body,
                           {"Content-Type": "message/rfc822"})
        response = connection.getresponse()
        response.read()
        assert response.status == 201, response.status
    return post, connection.close


def work(way, addr, body, count):
    """One client: `count` messages over one connection."""
    send, close = sender(way, addr, body)
    try:
        for _ in range(count):
            send()
    finally:
        close()


def deliver(way, addr, body, messages, clients):
    """Delivers `messages` over `clients` connections, each client a process
    of its own (threads would share one core through the GIL, and measure
    Python more than the server); seconds taken and messages sent."""
    per_client = messages // clients
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        started = time.perf_counter()
        # An error in a client is raised here, not lost.
        pool.starmap(work, [(way, addr, body, per_client)] * clients)
        seconds = time.perf_counter() - started
    return seconds, per_client * clients


def rates(args, body):
    proc, addrs = start(args.binary, "--memory")
    try:
        results = {way: [] for way in WAYS}
        for round in range(args.rounds):
            # Each round starts with another way: none always meets the
            # fullest store.
            for way in WAYS[round % 3:] + WAYS[:round % 3]:
                before = cpu_seconds(proc.pid)
                seconds, sent = deliver(way, addrs[way], body, args.messages, args.clients)
                cpu = cpu_seconds(proc.pid) - before
                results[way].append((sent / seconds, cpu / sent * 1e6))
        print(f"{args.messages} messages of {len(body)} octets per way and round, "
              f"{args.clients} clients, {args.rounds} rounds, `serve --memory`:")
        print("| way | messages/s (median) | vs LMTP | server CPU µs/message | vs LMTP |")
        print("|---|---|---|---|---|")
        median = lambda xs: sorted(xs)[len(xs) // 2]
        base_rate = median([r for r, _ in results["lmtp"]])
        base_cpu = median([c for _, c in results["lmtp"]])
        for way in WAYS:
            rate = median([r for r, _ in results[way]])
            cpu = median([c for _, c in results[way]])
            print(f"| {way} | {rate:.0f} | {ratio(rate, base_rate)} | {cpu:.0f} | "
                  f"{ratio(cpu, base_cpu)} |")
        if args.wait:
            waiting(proc, addrs["http"], args.wait)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def ratio(value, base):
    """value/base to two places; a handful of messages can take less CPU
    than one clock tick, which makes no ratio."""
    return f"{value / base:.2f}" if base else "n/a"


def waiting(proc, addr, seconds):
    """The server's CPU while one request waits `seconds` for mail that does
    not come, against the same time with nothing waiting."""
    time.sleep(1)
    before = cpu_seconds(proc.pid)
    time.sleep(seconds)
    idle = cpu_seconds(proc.pid) - before
    connection = http.client.HTTPConnection(*addr, timeout=seconds + 20)
    before = cpu_seconds(proc.pid)
    started = time.perf_counter()
    # bob gets no mail: the answer at the end is an empty list.
    connection.request("GET", f"/api/v1/users/bob/messages?min=1&timeout={seconds}")
    response = connection.getresponse()
    response.read()
    took = time.perf_counter() - started
    cpu = cpu_seconds(proc.pid) - before
    connection.close()
    print(f"\nA `?min=` request that waited {took:.1f} s: the server used {cpu * 1000:.0f} ms "
          f"of CPU ({idle * 1000:.0f} ms in the same time with nothing waiting); "
          f"status {response.status}.")


def fsyncs(args, body):
    """fsync and fdatasync calls per message on a database file, each way
    (strace attached to every thread of a warmed-up server), against one
    `poplite deliver` of one message."""
    with tempfile.TemporaryDirectory(prefix="poplite-intake-") as tmp:
        db = os.path.join(tmp, "bench.db")
        count = 50
        counts = {}
        for way in WAYS:
            trace = os.path.join(tmp, f"{way}.strace")
            proc, addrs = start(args.binary, db)
            try:
                deliver(way, addrs[way], body, count, 1)
                threads = os.listdir(f"/proc/{proc.pid}/task")
                tracer = subprocess.Popen(
                    ["strace", "-f", "-qq", "-o", trace, "-e", "trace=fsync,fdatasync",
                     *[arg for tid in threads for arg in ("-p", tid)]],
                    stderr=subprocess.DEVNULL)
                time.sleep(1)  # strace attaches asynchronously
                deliver(way, addrs[way], body, count, 1)
                time.sleep(0.5)
                tracer.send_signal(signal.SIGINT)
                tracer.wait(timeout=20)
                counts[way] = traced_calls(trace) / count
            finally:
                proc.terminate()
                proc.wait(timeout=20)
        message = os.path.join(tmp, "message.eml")
        with open(message, "wb") as f:
            f.write(body)
        trace = os.path.join(tmp, "deliver.strace")
        subprocess.run(["strace", "-f", "-qq", "-o", trace, "-e", "trace=fsync,fdatasync",
                        args.binary, "--db", db, "deliver", "alice", message],
                       check=True, timeout=60, stdout=subprocess.DEVNULL)
        counts["deliver (one process, one message)"] = traced_calls(trace)
        print(f"\nfsync + fdatasync per message on a database file (strace, {count} messages):")
        for way, per in counts.items():
            print(f"  {way}: {per:.2f}")


def traced_calls(trace):
    """fsync and fdatasync calls strace has written to `trace` so far."""
    with open(trace) as f:
        return sum(1 for line in f if re.search(r"\b(fsync|fdatasync)\(", line))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait", type=int, default=10)
    parser.add_argument("--fsync", action="store_true")
    args = parser.parse_args()
    line = b"x" * 76 + b"\r\n"
    body = b"Subject: bench\r\n\r\n" + line * max(1, (args.size - 18) // len(line))
    rates(args, body)
    if args.fsync:
        fsyncs(args, body)


if __name__ == "__main__":
    main()
