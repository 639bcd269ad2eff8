"""The command line: the help text, parsing, and the checks that turn it
into Settings (a bad value is a Failure, exit status 1)."""

import argparse
import dataclasses
import re
import sys

from .common import ALL_SCENARIOS, ALL_SERVERS, CHEAP_ARGON2, DEFAULT_ARGON2, Failure

USAGE = """\
Usage: bench/compare.py [OPTIONS]

Compare poplite and Dovecot (POP3) on this machine, on 127.0.0.1.

  --scenarios "LIST"   scenarios to run, from: login retr cycle big idle
                       (default: "login retr cycle big")
  --rounds N           rounds per scenario, each runs poplite then Dovecot, and
                       for `retr` then poplite-cheap (see --argon2) (default 3)
  --duration D         duration of each run, e.g. 10s, 500ms, 1m (default 10s)
  --concurrency C      concurrent sessions for login/retr/cycle (default 8)
  --users N            mailboxes bench0..bench(N-1) (default 8)
  --messages N         messages per mailbox (default 50; every 25th is 2 MB)
  --cycle-mailboxes N  mailboxes cycle0..(N-1) that `cycle` empties, refilled
                       before each run (default 192: at about 30 sessions/s, a run of 6 s)
  --argon2 PARAMS      argon2id cost of every user, as m=KIB,t=N,p=N (default:
                       poplite's, m=19456,t=2,p=1); a cheap cost such as
                       m=64,t=1,p=1 compares the mail path without the hash;
                       at any other cost, if `retr` is in --scenarios, poplite
                       also runs it on users with the same mail and that cheap
                       hash (poplite-cheap)
  --big-mb N           size of big0's single message in MB, for `big` (default 200)
  --idle-conns N       connections held by `idle`, one user each (default 2000)
  --idle-duration D    how long `idle` holds them, logins included (default 90s)
  --postgres           also run poplite on PostgreSQL (poplite-pg), on a fresh
                       database in a throwaway cluster with fsync on, holding a
                       copy of poplite's users, hashes and mail (needs
                       Debian's postgresql package)
  --pg-nodes N         1, or 2: then every round also runs poplite-pg-2nodes,
                       two nodes on that database with the load split between
                       them (needs --postgres) (default 1)
  --servers "LIST"     servers to run, from: poplite dovecot poplite-pg
                       (default: poplite dovecot, and poplite-pg with --postgres)
  --port-a P           poplite's port (default 42110)
  --port-b P           Dovecot's port (default 42111)
  --port-c P           poplite-pg's port; its second node takes P+1 (default 42112)
  --out FILE           also write the markdown report to FILE
  --keep               keep the work directory (its path is printed)
  -h, --help           this help

Exit status: 0, or 2 when a loadgen run reported errors (report still printed).
"""


@dataclasses.dataclass
class Settings:
    """The command line, checked, with durations also in seconds."""
    scenarios: list
    rounds: int
    duration: str
    duration_s: float
    concurrency: int
    users: int
    messages: int
    cycle_mailboxes: int
    argon2: str  # "" for poplite's default
    big_mb: int
    idle_conns: int
    idle_duration: str
    idle_duration_s: float
    port_a: int
    port_b: int
    port_c: int
    postgres: bool
    pg_nodes: int
    servers: list
    out: str
    keep: bool

    @property
    def argon2_label(self):
        return self.argon2 or DEFAULT_ARGON2

    @property
    def cheap_runs(self):
        """Whether `retr` also runs poplite on the cheap-hash users."""
        return (self.argon2_label != CHEAP_ARGON2 and "retr" in self.scenarios
                and "poplite" in self.servers)

    @property
    def pg_ports(self):
        """poplite-pg's nodes' ports (none without --postgres)."""
        return [self.port_c + i for i in range(self.pg_nodes)] if self.postgres else []


class UsageParser(argparse.ArgumentParser):
    """argparse with compare.py's own help text, and exit status 1 (not
    argparse's 2, which here means loadgen errors) on a bad command line."""

    def format_help(self):
        return USAGE

    def error(self, message):
        sys.stderr.write(USAGE)
        sys.exit(f"compare.py: {message}")


def duration_seconds(text):
    """A duration (10s, 500ms, 2m, 1min, 1h, or plain seconds) in seconds,
    or None if TEXT is not one."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|min|h)?", text)
    if not match:
        return None
    scale = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}[match.group(2) or "s"]
    return float(match.group(1)) * scale


def parse_options(argv):
    parser = UsageParser(prog="compare.py", allow_abbrev=False)
    parser.add_argument("--scenarios", default="login retr cycle big")
    for name, default in (("rounds", 3), ("concurrency", 8), ("users", 8), ("messages", 50),
                          ("cycle-mailboxes", 192), ("big-mb", 200), ("idle-conns", 2000),
                          ("port-a", 42110), ("port-b", 42111), ("port-c", 42112),
                          ("pg-nodes", 1)):
        parser.add_argument(f"--{name}", default=str(default))
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--idle-duration", default="90s")
    parser.add_argument("--argon2", default=None)
    parser.add_argument("--servers", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--keep", action="store_true")
    return checked_settings(parser.parse_args(argv))


def checked_settings(args):
    """Settings from parsed ARGS, or Failure naming the first bad option."""
    for name, value in vars(args).items():
        if isinstance(value, str) and not value:
            raise Failure(f"--{name.replace('_', '-')} needs a value (see --help)")
    numbers = {}
    for name in ("rounds", "concurrency", "messages", "users", "cycle_mailboxes", "big_mb",
                 "idle_conns", "port_a", "port_b", "port_c", "pg_nodes"):
        value = getattr(args, name)
        if not re.fullmatch(r"[0-9]+", value) or int(value) < 1:
            raise Failure(f"--{name.replace('_', '-')} must be a positive integer")
        numbers[name] = int(value)
    if args.argon2 is not None and not re.fullmatch(r"m=[0-9]+,t=[0-9]+,p=[0-9]+", args.argon2):
        raise Failure("--argon2 takes m=KIB,t=N,p=N, e.g. m=64,t=1,p=1")
    if numbers["pg_nodes"] > 2:
        raise Failure("--pg-nodes is 1 or 2")
    if numbers["pg_nodes"] > 1 and not args.postgres:
        raise Failure("--pg-nodes needs --postgres")
    ports = [numbers["port_a"], numbers["port_b"]]
    if args.postgres:
        ports += [numbers["port_c"] + i for i in range(numbers["pg_nodes"])]
    if len(set(ports)) != len(ports) or max(ports) >= 65536:
        raise Failure("bad ports")
    servers = checked_servers(args.servers, args.postgres)
    duration_s = duration_seconds(args.duration)
    if duration_s is None:
        raise Failure(f"bad --duration: {args.duration} (use e.g. 10s, 500ms, 1m)")
    idle_duration_s = duration_seconds(args.idle_duration)
    if idle_duration_s is None:
        raise Failure(f"bad --idle-duration: {args.idle_duration}")
    scenarios = args.scenarios.split()
    if not scenarios:
        raise Failure("--scenarios is empty")
    for scenario in scenarios:
        if scenario not in ALL_SCENARIOS:
            raise Failure(f"unknown scenario: {scenario} ({' '.join(ALL_SCENARIOS)})")
    return Settings(scenarios=scenarios, duration=args.duration, duration_s=duration_s,
                    argon2=args.argon2 or "", idle_duration=args.idle_duration,
                    idle_duration_s=idle_duration_s, postgres=args.postgres, servers=servers,
                    out=args.out, keep=args.keep, **numbers)


def checked_servers(text, postgres):
    """--servers as a list in the order runs take them, or Failure."""
    known = ALL_SERVERS if postgres else tuple(s for s in ALL_SERVERS if s != "poplite-pg")
    if text is None:
        return list(known)
    servers = text.split()
    if not servers:
        raise Failure("--servers is empty")
    for server in servers:
        if server == "poplite-pg" and not postgres:
            raise Failure("poplite-pg needs --postgres")
        if server not in ALL_SERVERS:
            raise Failure(f"unknown server: {server} ({' '.join(ALL_SERVERS)})")
    if postgres and "poplite-pg" not in servers:
        raise Failure("--postgres without poplite-pg in --servers")
    return [s for s in ALL_SERVERS if s in servers]
