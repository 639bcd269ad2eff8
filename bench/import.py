#!/usr/bin/env python3
"""Measures `poplite import` and `export`: messages/s for an mbox and a Maildir.

Usage: bench/import.py POPLITE_BINARY [--messages N]
Writes a corpus of N messages (2-20 KB, a few of 1 MB) to a temp
directory as one mbox and one Maildir, imports each into a fresh
database, exports the mbox back, and prints the rates. Bounded: N
messages, and every command gets 10 minutes.
"""
import argparse
import os
import random
import subprocess
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("poplite")
parser.add_argument("--messages", type=int, default=10000)
args = parser.parse_args()
rng = random.Random(7)


def message(i):
    size = 1024 * 1024 if i % 1000 == 999 else rng.randint(2048, 20480)
    line = b"the quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopq\n"
    body = line * (size // len(line))
    return b"From: a@far.test\nTo: alice@example.org\nSubject: message %d\n\n%s" % (i, body)


def run(*argv):
    started = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{argv[2:]} failed: {out.stderr.decode()}")
    return time.perf_counter() - started


with tempfile.TemporaryDirectory() as tmp:
    messages = [message(i) for i in range(args.messages)]
    octets = sum(len(m) for m in messages)
    mbox = os.path.join(tmp, "in.mbox")
    with open(mbox, "wb") as f:
        for m in messages:
            f.write(b"From a@far.test Wed Dec  2 00:00:00 2026\n" + m + b"\n")
    maildir = os.path.join(tmp, "Maildir")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(maildir, sub))
    for i, m in enumerate(messages):
        with open(os.path.join(maildir, "cur", f"{1764000000 + i}.M{i}.bench:2,S"), "wb") as f:
            f.write(m)
    print(f"corpus: {len(messages)} messages, {octets / 1e6:.1f} MB")
    for kind, source in (("mbox", ["--mbox", mbox]), ("maildir", ["--maildir", maildir])):
        db = os.path.join(tmp, f"{kind}.db")
        subprocess.run([args.poplite, "--db", db, "user", "add", "alice", "--password-stdin",
                        "--argon2-params", "m=64,t=1,p=1"], input=b"pw\n", check=True,
                       capture_output=True, timeout=60)
        seconds = run(args.poplite, "--db", db, "import", "alice", *source)
        print(f"import --{kind}: {seconds:.2f} s, {len(messages) / seconds:,.0f} messages/s, "
              f"{octets / 1e6 / seconds:.0f} MB/s")
    out = os.path.join(tmp, "out.mbox")
    seconds = run(args.poplite, "--db", os.path.join(tmp, "mbox.db"), "export", "alice", "--mbox", out)
    print(f"export --mbox: {seconds:.2f} s, {len(messages) / seconds:,.0f} messages/s")
