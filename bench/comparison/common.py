"""What every part of the comparison shares: paths, fixed names and costs,
the Failure error, and logging to stderr."""

import os
import sys
import time

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH_DIR)
SETUP_SCRIPT = os.path.join(BENCH_DIR, "dovecot-setup.sh")

ALL_SCENARIOS = ("login", "retr", "cycle", "big", "idle")
# --servers, in the order each round runs them.
ALL_SERVERS = ("poplite", "dovecot", "poplite-pg")
# poplite's default argon2id cost, what every user gets without --argon2.
DEFAULT_ARGON2 = "m=19456,t=2,p=1"
# The cheapest argon2id cost. big0 always uses it, so that `big`'s RSS growth
# is the stream's and not a login's 19 MiB argon2 buffer. At a real cost,
# cheap0.. (bench0..'s mail) use it too: poplite's `retr` on them is the
# session's CPU without hashing, set against the target for `retr` and
# `cycle` per session.
CHEAP_ARGON2 = "m=64,t=1,p=1"
PASSWORD = "pw"
MAIL_USER = "popbench"


class Failure(Exception):
    """Ends the comparison with a message and exit status 1."""


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def warn(message):
    print(f"\n!!!!!!!! WARNING: {message}\n", file=sys.stderr, flush=True)
