#!/usr/bin/env python3
"""Measures LMTP delivery: messages/s over one or more connections.

Usage: bench/lmtp.py PORT [--messages N] [--size OCTETS] [--connections C] [--user NAME]
Talks to 127.0.0.1:PORT only (a poplite serve --lmtp 127.0.0.1:PORT), one
recipient per message, each connection delivering N/C messages in turn.
Bounded: N messages, and a 20 s socket timeout on every reply.
"""
import argparse
import smtplib
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--messages", type=int, default=2000)
parser.add_argument("--size", type=int, default=4096)
parser.add_argument("--connections", type=int, default=1)
parser.add_argument("--user", default="alice")
args = parser.parse_args()

line = b"x" * 76 + b"\r\n"
body = b"Subject: bench\r\n\r\n" + line * max(1, args.size // len(line))
per_connection = args.messages // args.connections
errors = []


def deliver():
    lmtp = smtplib.LMTP("127.0.0.1", args.port, timeout=20)
    try:
        for _ in range(per_connection):
            refused = lmtp.sendmail("bench@far.test", [args.user], body)
            if refused:
                errors.append(refused)
    finally:
        lmtp.quit()


started = time.perf_counter()
threads = [threading.Thread(target=deliver) for _ in range(args.connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.perf_counter() - started
total = per_connection * args.connections
print(f"{total} messages of {len(body)} octets over {args.connections} connection(s): "
      f"{elapsed:.2f} s, {total / elapsed:.0f} messages/s, {len(errors)} refused")
