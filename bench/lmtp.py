#!/usr/bin/env python3
"""Measures LMTP delivery, and SMTP's beside it: messages/s over one or
more connections.

Usage: bench/lmtp.py PORT [--smtp SMTP_PORT] [--rounds R] [--messages N]
                     [--size OCTETS] [--connections C] [--user NAME] [--pid PID]
Talks to 127.0.0.1 only (a poplite serve --lmtp 127.0.0.1:PORT, and with
--smtp the same server's --smtp 127.0.0.1:SMTP_PORT), one recipient per
message, each connection delivering N/C messages in turn. With --smtp,
R rounds alternate LMTP and SMTP on the one server (so neither gets the
warmer cache or the emptier database), and the medians are compared.
With --pid (the server's), each round also reports the server's CPU time
per message (utime + stime from /proc), steadier than messages/s on a
busy machine.
Bounded: R x N messages per protocol, a 20 s socket timeout on every reply.
"""
import argparse
import os
import smtplib
import statistics
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--smtp", type=int, help="also measure SMTP on this port")
parser.add_argument("--rounds", type=int, default=1)
parser.add_argument("--messages", type=int, default=2000)
parser.add_argument("--size", type=int, default=4096)
parser.add_argument("--connections", type=int, default=1)
parser.add_argument("--user", default="alice")
parser.add_argument("--pid", type=int, help="the server's pid, to report its CPU per message")
args = parser.parse_args()

line = b"x" * 76 + b"\r\n"
body = b"Subject: bench\r\n\r\n" + line * max(1, args.size // len(line))
per_connection = args.messages // args.connections


def server_cpu():
    """The server's CPU seconds so far (user + system), or 0 without --pid."""
    if not args.pid:
        return 0.0
    with open(f"/proc/{args.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(protocol, port):
    """One round: N messages over C connections; returns messages/s."""
    errors = []

    def deliver():
        client = protocol("127.0.0.1", port, timeout=20)
        try:
            if protocol is smtplib.SMTP:
                client.ehlo("bench.test")
            for _ in range(per_connection):
                refused = client.sendmail("bench@far.test", [args.user], body)
                if refused:
                    errors.append(refused)
        finally:
            client.quit()

    cpu = server_cpu()
    started = time.perf_counter()
    threads = [threading.Thread(target=deliver) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    total = per_connection * args.connections
    cpu = (server_cpu() - cpu) * 1e6 / total
    name = "SMTP" if protocol is smtplib.SMTP else "LMTP"
    print(f"{name}: {total} messages of {len(body)} octets over {args.connections} "
          f"connection(s): {elapsed:.2f} s, {total / elapsed:.0f} messages/s, "
          f"{len(errors)} refused" + (f", server CPU {cpu:.0f} µs/message" if args.pid else ""),
          flush=True)
    cpus[name].append(cpu)
    return total / elapsed


rates = {"LMTP": [], "SMTP": []}
cpus = {"LMTP": [], "SMTP": []}
for _ in range(args.rounds):
    rates["LMTP"].append(run(smtplib.LMTP, args.port))
    if args.smtp:
        rates["SMTP"].append(run(smtplib.SMTP, args.smtp))
if args.smtp:
    lmtp, smtp = statistics.median(rates["LMTP"]), statistics.median(rates["SMTP"])
    print(f"median of {args.rounds} round(s): LMTP {lmtp:.0f} messages/s, "
          f"SMTP {smtp:.0f} messages/s (SMTP/LMTP {smtp / lmtp:.2f})")
    if args.pid:
        lmtp, smtp = statistics.median(cpus["LMTP"]), statistics.median(cpus["SMTP"])
        print(f"median server CPU: LMTP {lmtp:.0f} µs/message, SMTP {smtp:.0f} µs/message")
