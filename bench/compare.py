#!/usr/bin/env python3
"""poplite against Dovecot (POP3): same corpus, same users, same argon2id
hashes, same machine, on loopback.

Builds poplite and examples/loadgen, has bench/dovecot-setup.sh install
Dovecot and create the system user popbench if they are missing, sets both
servers up in a fresh temporary directory, runs every scenario for --rounds
rounds alternating poplite and Dovecot (A B A B ...; in `retr` rounds at a
real hash cost, poplite a second time on cheap-hash users), measures each
server's CPU time and memory over its whole process tree from /proc
(poplite's also split into its argon2 threads and the rest), and prints a
markdown report of the medians.

Run as root on Debian (apt-get, useradd, chown to the Dovecot mail user).
Only 127.0.0.1 is ever bound or targeted. Everything lives under one
temporary directory, removed on exit unless --keep; the only thing made
outside it is the system user `popbench` that owns Dovecot's maildirs.

Exit status: 0 on success, 2 when some loadgen run reported errors (the
report is still printed), anything else on failure.

Standard library only (Python 3.11). argon2-cffi, for the login hashing
bound, is installed into the temporary directory when it is missing.
"""

import argparse
import concurrent.futures
import ctypes
import ctypes.util
import dataclasses
import datetime
import grp
import importlib
import json
import os
import poplib
import pwd
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
SETUP_SCRIPT = os.path.join(BENCH_DIR, "dovecot-setup.sh")

ALL_SCENARIOS = ("login", "retr", "cycle", "big", "idle")
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
  --port-a P           poplite's port (default 42110)
  --port-b P           Dovecot's port (default 42111)
  --out FILE           also write the markdown report to FILE
  --keep               keep the work directory (its path is printed)
  -h, --help           this help

Exit status: 0, or 2 when a loadgen run reported errors (report still printed).
"""

DOVECOT_TUNING = (
    "pop3-login service_count=0 + process_min_avail={cores}, pop3 process_min_avail={cores}, "
    "auth_cache_size=0, anvil auth penalty off, info log to /dev/null, maildir files named "
    "with S=/W= sizes as dovecot-lda names them")


class Failure(Exception):
    """Ends the comparison with a message and exit status 1."""


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def warn(message):
    print(f"\n!!!!!!!! WARNING: {message}\n", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- options

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
    out: str
    keep: bool

    @property
    def argon2_label(self):
        return self.argon2 or DEFAULT_ARGON2

    @property
    def cheap_runs(self):
        """Whether `retr` also runs poplite on the cheap-hash users."""
        return self.argon2_label != CHEAP_ARGON2 and "retr" in self.scenarios


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
                          ("port-a", 42110), ("port-b", 42111)):
        parser.add_argument(f"--{name}", default=str(default))
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--idle-duration", default="90s")
    parser.add_argument("--argon2", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--keep", action="store_true")
    return checked_settings(parser.parse_args(argv))


def checked_settings(args):
    """Settings from parsed ARGS, or Failure naming the first bad option."""
    for name, value in vars(args).items():
        if isinstance(value, str) and not value:
            raise Failure(f"--{name.replace('_', '-')} needs a value (see --help)")
    numbers = {}
    for name in ("rounds", "concurrency", "messages", "users", "cycle_mailboxes", "big_mb",
                 "idle_conns", "port_a", "port_b"):
        value = getattr(args, name)
        if not re.fullmatch(r"[0-9]+", value) or int(value) < 1:
            raise Failure(f"--{name.replace('_', '-')} must be a positive integer")
        numbers[name] = int(value)
    if args.argon2 is not None and not re.fullmatch(r"m=[0-9]+,t=[0-9]+,p=[0-9]+", args.argon2):
        raise Failure("--argon2 takes m=KIB,t=N,p=N, e.g. m=64,t=1,p=1")
    if not (numbers["port_a"] != numbers["port_b"] and numbers["port_a"] < 65536
            and numbers["port_b"] < 65536):
        raise Failure("bad ports")
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
                    idle_duration_s=idle_duration_s, out=args.out, keep=args.keep, **numbers)


# ---------------------------------------------------------------- /proc accounting

def proc_table():
    """{pid: (ppid, cpu ticks incl. reaped children)} for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        # fields[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
        table[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    return table


def tree_pids(root, table=None):
    """The PIDs of ROOT and all its descendants."""
    table = proc_table() if table is None else table
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            out.append(pid)
            stack.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root):
    """utime+stime of each live process in the tree, plus cutime+cstime: the
    time of children that exited and were reaped (Dovecot's per-session pop3
    and login processes), so nothing is lost or counted twice."""
    table = proc_table()
    ticks = sum(table[p][1] for p in tree_pids(root, table))
    return ticks / os.sysconf("SC_CLK_TCK")


def hashing_cpu_seconds(pid):
    """utime+stime of poplite's argon2 threads (named poplite-hash-N), so a
    run's CPU splits into hashing and everything else; 0 for other servers."""
    ticks = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.index(b"(") + 1:data.rindex(b")")]
        if comm.startswith(b"poplite-hash"):
            fields = data[data.rindex(b")") + 2:].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def field_kb(path, key):
    """The kB figure of KEY in a /proc status-like file, 0 if absent."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory_kb(root):
    """(summed VmRSS, summed Pss) of the tree. RSS counts shared pages
    (libraries, shared memory) once per process; PSS splits them."""
    pids = tree_pids(root)
    rss = sum(field_kb(f"/proc/{p}/status", "VmRSS") for p in pids)
    pss = sum(field_kb(f"/proc/{p}/smaps_rollup", "Pss") for p in pids)
    return rss, pss


class MemorySampler:
    """Samples a process tree's memory every INTERVAL seconds in a thread,
    for at most LIMIT seconds, and keeps the peaks."""

    def __init__(self, root, interval, limit):
        self.root, self.interval, self.limit = root, interval, limit
        self.peak_rss = self.peak_pss = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            rss, pss = tree_memory_kb(self.root)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.samples += 1
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        """Stops sampling; returns (peak RSS kB, peak PSS kB)."""
        self._stop.set()
        self._thread.join()
        return self.peak_rss, self.peak_pss


# ---------------------------------------------------------------- corpus

WORDS = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with",
         "was", "on", "be", "by", "at", "this", "from", "or", "an", "mail", "server",
         "message", "queue", "inbox", "relay", "delivery", "lunch", "meeting",
         "report", "budget", "quarterly", "invoice", "attached", "please", "review",
         "thanks", "regards", "tomorrow", "agenda", "project", "status", "update",
         "release", "schedule", "database", "storage", "network")


def text_lines(rng, nbytes):
    """ASCII lines of at most 76 characters, about nbytes in all (LF ends).
    About one line in 40 starts with a dot, to exercise dot-stuffing."""
    out, total = [], 0
    while total < nbytes:
        words, n = [], 0
        while n < 60:
            w = rng.choice(WORDS)
            words.append(w)
            n += len(w) + 1
        line = " ".join(words)[:76]
        if rng.random() < 0.025:
            line = "." + line[:75]
        out.append(line)
        total += len(line) + 1
    return "\n".join(out) + "\n"


def message_text(rng, i, nbytes, subject):
    """Message number I: headers and about NBYTES of text in all."""
    header = (f"From: sender{i % 7}@example.org\n"
              f"To: bench@example.org\n"
              f"Subject: {subject}\n"
              f"Date: Mon, 02 Jun 2025 10:{i % 60:02d}:00 +0000\n"
              f"Message-ID: <bench.{i}@example.org>\n"
              f"MIME-Version: 1.0\n"
              f"Content-Type: text/plain; charset=us-ascii\n\n")
    return header + text_lines(rng, max(0, nbytes - len(header)))


def sizes_of(path):
    """(size on disk, size with CRLF line ends as POP3 sends it, before
    dot-stuffing)."""
    size, lf, crlf, prev = 0, 0, 0, b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            lf += chunk.count(b"\n")
            crlf += chunk.count(b"\r\n") + (1 if prev == b"\r" and chunk[:1] == b"\n" else 0)
            prev = chunk[-1:]
    return size, size + lf - crlf


def write_manifest(outdir, paths):
    """manifest.json in OUTDIR: path, size and vsize of each file; returns it."""
    manifest = []
    for path in paths:
        size, vsize = sizes_of(path)
        manifest.append({"path": path, "size": size, "vsize": vsize})
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return manifest


def write_corpus(outdir, count):
    """COUNT message files, 2-20 KB each, every 25th 2 MB, and their
    manifest; returns (paths, total bytes)."""
    rng = random.Random(1939)
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for i in range(1, count + 1):
        nbytes = 2_000_000 if i % 25 == 0 else rng.randint(2_000, 20_000)
        path = os.path.join(outdir, f"msg-{i:05d}.eml")
        with open(path, "w", newline="\n") as f:
            f.write(message_text(rng, i, nbytes, f"bench message {i} ({nbytes} bytes)"))
        paths.append(path)
    manifest = write_manifest(outdir, paths)
    return paths, sum(m["size"] for m in manifest)


def write_big_message(outdir, mb):
    """One message of MB * 10^6 octets (LF ends), for `big`, and its
    manifest; returns (path, bytes)."""
    rng = random.Random(5034)
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "big-00001.eml")
    target = mb * 1_000_000
    block = text_lines(rng, 1 << 20)
    with open(path, "w", newline="\n") as f:
        head = message_text(rng, 0, 0, f"big message ({mb} MB)")
        f.write(head)
        written = len(head)
        while written + len(block) <= target:
            f.write(block)
            written += len(block)
        rest = target - written
        if rest > 0:
            tail = block[: max(0, rest - 1)]
            tail = tail[: tail.rfind("\n") + 1] if "\n" in tail else ""
            f.write(tail + "x" * (rest - len(tail) - 1) + "\n")
    manifest = write_manifest(outdir, [path])
    return path, manifest[0]["size"]


# ---------------------------------------------------------------- the run's state

@dataclasses.dataclass
class Bench:
    """What the steps of one comparison share."""
    settings: Settings
    work: str  # the temporary directory
    poplite: str
    loadgen: str
    rev: str
    cores: int
    mail_uid: int = 0
    mail_gid: int = 0
    corpus_files: list = dataclasses.field(default_factory=list)
    corpus_bytes: int = 0
    big_bytes: int = 0
    dovecot_version: str = ""
    hash_note: str = ""
    phc: str = ""
    warnings: list = dataclasses.field(default_factory=list)
    poplite_proc: subprocess.Popen = None
    dovecot_proc: subprocess.Popen = None
    loadgen_proc: subprocess.Popen = None
    generation: int = 0

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    @property
    def db(self):
        return self.path("poplite.db")

    @property
    def dovecot_conf(self):
        return self.path("dovecot", "dovecot.conf")

    def has(self, scenario):
        return scenario in self.settings.scenarios

    def warning(self, message):
        """A warning both on stderr now and in the report."""
        self.warnings.append(message)
        warn(message)


# ---------------------------------------------------------------- build and system

def require_root():
    if os.geteuid() != 0:
        raise Failure("run as root (it installs Dovecot and creates the system user popbench)")


def build_binaries():
    """Builds poplite and loadgen in release mode; returns their paths."""
    if not os.path.isfile(os.path.join(REPO, "Cargo.toml")):
        raise Failure(f"no Cargo.toml in {REPO}")
    log("building poplite and loadgen (release)")
    subprocess.run(["cargo", "build", "--release", "--bin", "poplite", "--example", "loadgen"],
                   cwd=REPO, check=True, stdout=sys.stderr)
    metadata = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                              cwd=REPO, capture_output=True, text=True, check=False)
    target = os.path.join(REPO, "target")
    if metadata.returncode == 0:
        target = json.loads(metadata.stdout).get("target_directory") or target
    poplite = os.path.join(target, "release", "poplite")
    loadgen = os.path.join(target, "release", "examples", "loadgen")
    if not (os.access(poplite, os.X_OK) and os.access(loadgen, os.X_OK)):
        raise Failure(f"build products missing under {target}/release")
    return poplite, loadgen


def source_revision():
    """The short commit, marked when tracked files have uncommitted changes."""
    def git(*args):
        result = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True,
                                check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        rev += " (with uncommitted changes)"
    return rev


def run_setup_script(*args):
    """bench/dovecot-setup.sh: Dovecot and the mail user, or one package."""
    subprocess.run(["bash", SETUP_SCRIPT, *args], check=True, stdout=sys.stderr)


def raise_descriptor_limit(settings):
    """Descriptors for the load generator and the servers started from here."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if ("idle" in settings.scenarios and soft != resource.RLIM_INFINITY
            and soft < settings.idle_conns * 4 + 1024):
        warn(f"ulimit -n is {soft}: too low for --idle-conns {settings.idle_conns}")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def check_ports_free(settings):
    for port in (settings.port_a, settings.port_b):
        if port_open(port):
            raise Failure(f"127.0.0.1:{port} is already in use (choose --port-a/--port-b)")


# ---------------------------------------------------------------- poplite set-up

def run_poplite(bench, *args, stdin_text=None):
    """Runs the poplite CLI on the bench database; returns its stdout."""
    result = subprocess.run([bench.poplite, "--db", bench.db, *args], input=stdin_text,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise Failure(f"poplite {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout


def add_poplite_user(bench, name, params=None):
    """A user with password pw at PARAMS (default: --argon2's cost)."""
    params = bench.settings.argon2 if params is None else params
    run_poplite(bench, "user", "add", name, "--password-stdin",
                *(["--argon2-params", params] if params else []), stdin_text=PASSWORD + "\n")


def poplite_message_counts(bench):
    """{user: messages} from `poplite user list`."""
    counts = {}
    for line in run_poplite(bench, "user", "list").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1].isdigit():
            counts[fields[0]] = int(fields[1])
    return counts


def fill_poplite_mailbox(bench, user, counts):
    """Delivers messages so that USER has all of the corpus again: only the
    missing ones (the last ones of the corpus), as Dovecot's fill does."""
    have = counts.get(user, 0)
    if have < len(bench.corpus_files):
        run_poplite(bench, "deliver", user, *bench.corpus_files[have:])


def add_users_in_parallel(bench, names):
    """Adds NAMES at --argon2's cost, one `poplite user add` per core at a time."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=bench.cores) as pool:
        for future in [pool.submit(add_poplite_user, bench, name) for name in names]:
            future.result()


def set_up_poplite(bench):
    """poplite's users and mail for every scenario asked for."""
    s = bench.settings
    log(f"poplite: adding {s.users} users (argon2id {s.argon2_label}) and delivering")
    for i in range(s.users):
        add_poplite_user(bench, f"bench{i}")
        fill_poplite_mailbox(bench, f"bench{i}", {})
    if s.cheap_runs:
        log(f"poplite: adding {s.users} users cheap0.. (argon2id {CHEAP_ARGON2}) with the same "
            "mail, for the CPU split")
        for i in range(s.users):
            add_poplite_user(bench, f"cheap{i}", CHEAP_ARGON2)
            fill_poplite_mailbox(bench, f"cheap{i}", {})
    if bench.has("cycle"):
        log(f"poplite: adding {s.cycle_mailboxes} users cycle0.. for cycle "
            "(filled before each run)")
        for i in range(s.cycle_mailboxes):
            add_poplite_user(bench, f"cycle{i}")
    if bench.has("big"):
        add_poplite_user(bench, "big0", CHEAP_ARGON2)
        max_size = max(bench.big_bytes * 2 + 1_000_000, 300_000_000)
        run_poplite(bench, "deliver", "big0", bench.path("corpus-big", "big-00001.eml"),
                    "--max-message-size", str(max_size))
    if bench.has("idle"):
        log(f"poplite: adding {s.idle_conns} users idle0.. for idle "
            "(one mailbox per held connection)")
        add_users_in_parallel(bench, [f"idle{i}" for i in range(s.idle_conns)])


def first_password_hash(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT password_hash FROM users ORDER BY id LIMIT 1").fetchone()[0]
    finally:
        con.close()


# ---------------------------------------------------------------- Dovecot set-up

def dovecot_config(bench):
    """dovecot.conf for the bench: POP3 on 127.0.0.1:--port-b, passwd-file
    users, maildirs, Dovecot's high-performance login mode."""
    s, w = bench.settings, bench.work
    extra_limits = pop3_limit = ""
    if bench.has("idle"):
        # `idle` holds one pop3 process per connection: raise the limits
        # (service pop3's own process_limit defaults to 1024).
        extra_limits = (f"default_client_limit = {s.idle_conns * 2 + 1000}\n"
                        f"default_process_limit = {s.idle_conns + 256}")
        pop3_limit = f"process_limit = {s.idle_conns + 256}"
    return f"""\
# Generated by bench/compare.py
base_dir = {w}/dovecot/run
state_dir = {w}/dovecot/state
instance_name = popbench-{os.getpid()}
log_path = {w}/dovecot.log
# Info lines (one per login and logout) are dropped, as poplite runs with RUST_LOG=warn.
info_log_path = /dev/null
protocols = pop3
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 1s
auth_cache_size = 0
mail_location = maildir:~/Maildir
mail_fsync = optimized
first_valid_uid = {bench.mail_uid}
first_valid_gid = {bench.mail_gid}
listen = 127.0.0.1
verbose_proctitle = no
{extra_limits}
passdb {{
  driver = passwd-file
  args = {w}/dovecot/users
}}
userdb {{
  driver = passwd-file
  args = {w}/dovecot/users
}}
# High-performance mode, as Dovecot's docs describe it: login processes
# serve many clients each, one per core is kept ready.
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {s.port_b}
  }}
  inet_listener pop3s {{
    port = 0
  }}
  service_count = 0
  process_min_avail = {bench.cores}
}}
service pop3 {{
  process_min_avail = {bench.cores}
  {pop3_limit}
}}
# Without this, anvil slows down repeated logins from one IP.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def write_dovecot_config(bench):
    for sub in ("dovecot/run", "dovecot/state", "home"):
        os.makedirs(bench.path(sub), exist_ok=True)
    os.chmod(bench.path("dovecot"), 0o755)
    os.chmod(bench.path("home"), 0o755)
    with open(bench.dovecot_conf, "w") as f:
        f.write(dovecot_config(bench))


def dovecot_password_scheme(bench):
    """ARGON2ID if this Dovecot verifies poplite's PHC strings, else PLAIN
    (with a warning: login numbers are then not comparable). Sets the
    report's note on passwords."""
    label = bench.settings.argon2_label
    check = subprocess.run(["doveadm", "-c", bench.dovecot_conf, "pw", "-t",
                            "{ARGON2ID}" + bench.phc, "-p", PASSWORD],
                           capture_output=True, check=False)
    if check.returncode == 0:
        bench.hash_note = (f"the same argon2id PHC strings ({label}) on both sides; "
                           "Dovecot reads them as {ARGON2ID}")
        return "ARGON2ID"
    bench.hash_note = (f"DIFFERENT: poplite argon2id ({label}), Dovecot {{PLAIN}} "
                       "(this Dovecot cannot verify {ARGON2ID})")
    bench.warning("this Dovecot build does not accept {ARGON2ID}$argon2id$...: Dovecot uses "
                  "{PLAIN} passwords, so login numbers are NOT comparable")
    return "PLAIN"


def write_dovecot_passwd(bench, scheme):
    """Dovecot's passwd-file: every poplite user, with poplite's hash."""
    con = sqlite3.connect(f"file:{bench.db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT name, password_hash FROM users ORDER BY id").fetchall()
    finally:
        con.close()
    out = bench.path("dovecot", "users")
    home_root = bench.path("home")
    with open(out, "w") as f:
        for name, phc in rows:
            secret = f"{{PLAIN}}{PASSWORD}" if scheme == "PLAIN" else f"{{{scheme}}}{phc}"
            f.write(f"{name}:{secret}:{bench.mail_uid}:{bench.mail_gid}::{home_root}/{name}::\n")
    try:
        os.chown(out, 0, grp.getgrnam("dovecot").gr_gid)
    except (KeyError, OSError):
        pass
    os.chmod(out, 0o640)


def make_home(bench, user, mode=0o700):
    home = bench.path("home", user)
    os.makedirs(home, exist_ok=True)
    os.chown(home, bench.mail_uid, bench.mail_gid)
    if mode is not None:
        os.chmod(home, mode)


def fill_maildir(bench, user, manifest_path, generation):
    """Tops USER's maildir up to the manifest's message count by copying
    the missing messages into new/, named as dovecot-lda names them (S= and
    W= sizes), so Dovecot sees freshly delivered mail. Returns how many."""
    maildir = bench.path("home", user, "Maildir")
    with open(manifest_path) as f:
        manifest = json.load(f)
    for sub in ("", "cur", "new", "tmp"):
        d = os.path.join(maildir, sub)
        os.makedirs(d, exist_ok=True)
        os.chown(d, bench.mail_uid, bench.mail_gid)
        os.chmod(d, 0o700)
    have = sum(len(os.listdir(os.path.join(maildir, sub))) for sub in ("cur", "new"))
    now = int(time.time())
    for i, m in enumerate(manifest[have:], start=have):
        base = f"{now}.M{i}P{os.getpid()}G{generation}.popbench,S={m['size']},W={m['vsize']}"
        tmp = os.path.join(maildir, "tmp", base)
        shutil.copyfile(m["path"], tmp)
        os.chown(tmp, bench.mail_uid, bench.mail_gid)
        os.chmod(tmp, 0o600)
        os.rename(tmp, os.path.join(maildir, "new", base))
    return len(manifest) - min(have, len(manifest))


def set_up_dovecot_mail(bench):
    """Homes and maildirs for every scenario asked for."""
    s = bench.settings
    log("Dovecot: maildirs")
    for i in range(s.users):
        make_home(bench, f"bench{i}")
        fill_maildir(bench, f"bench{i}", bench.path("corpus", "manifest.json"), 0)
    if bench.has("cycle"):
        for i in range(s.cycle_mailboxes):
            make_home(bench, f"cycle{i}")
    if bench.has("big"):
        make_home(bench, "big0")
        fill_maildir(bench, "big0", bench.path("corpus-big", "manifest.json"), 0)
    if bench.has("idle"):
        for i in range(s.idle_conns):
            make_home(bench, f"idle{i}", mode=None)


def check_dovecot_config(bench):
    """doveconf -n, kept in the work directory; Failure if Dovecot rejects it."""
    result = subprocess.run(["doveconf", "-c", bench.dovecot_conf, "-n"],
                            capture_output=True, text=True, check=False)
    with open(bench.path("dovecot", "doveconf-n.txt"), "w") as f:
        f.write(result.stdout)
    if result.returncode != 0:
        raise Failure(f"Dovecot rejects the configuration: {result.stderr.strip()}")


def set_up_dovecot(bench):
    bench.phc = first_password_hash(bench.db)
    write_dovecot_config(bench)
    write_dovecot_passwd(bench, dovecot_password_scheme(bench))
    set_up_dovecot_mail(bench)
    check_dovecot_config(bench)


# ---------------------------------------------------------------- servers

def start_servers(bench):
    s = bench.settings
    # Every load-generator connection comes from 127.0.0.1: no per-address limit.
    extra = ["--max-connections-per-ip", "0"]
    if bench.has("idle"):
        extra += ["--max-connections", str(s.idle_conns + 256)]
    log(f"starting poplite on 127.0.0.1:{s.port_a} and Dovecot on 127.0.0.1:{s.port_b}")
    with open(bench.path("poplite.out"), "w") as out, open(bench.path("poplite.log"), "w") as err:
        bench.poplite_proc = subprocess.Popen(
            [bench.poplite, "--db", bench.db, "serve", "--listen", f"127.0.0.1:{s.port_a}",
             "--auth-failure-delay", "1s", *extra],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            env={**os.environ, "RUST_LOG": "warn"})
    with open(bench.path("dovecot.out"), "w") as out:
        bench.dovecot_proc = subprocess.Popen(["dovecot", "-F", "-c", bench.dovecot_conf],
                                              stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=subprocess.STDOUT)
    wait_for_port(bench, s.port_a, bench.poplite_proc, "poplite")
    wait_for_port(bench, s.port_b, bench.dovecot_proc, "dovecot")
    wait_for_listening_line(bench)


def wait_for_port(bench, port, proc, name):
    """Waits (at most 30 s) for 127.0.0.1:PORT to accept, while PROC lives."""
    for _ in range(300):
        if proc.poll() is not None:
            raise Failure(f"{name} exited before listening (see {bench.path(name + '.log')})")
        if port_open(port):
            return
        time.sleep(0.1)
    raise Failure(f"{name} did not listen on 127.0.0.1:{port} within 30 s")


def wait_for_listening_line(bench):
    """poplite's stdout must name the address it listens on."""
    expected = f"poplite listening on 127.0.0.1:{bench.settings.port_a}"
    for _ in range(50):
        with open(bench.path("poplite.out")) as f:
            text = f.read()
        if "poplite listening on " in text:
            break
        time.sleep(0.1)
    if not any(line.startswith(expected) for line in text.splitlines()):
        raise Failure(f"poplite did not report '{expected}'")


def check_login(port, user, expect):
    """Logs in over POP3 and checks the message count; retries for 30 s."""
    deadline = time.time() + 30
    while True:
        try:
            p = poplib.POP3("127.0.0.1", port, timeout=30)
            p.user(user)
            p.pass_(PASSWORD)
            count, _ = p.stat()
            p.quit()
            if count != expect:
                raise Failure(f"{user}@{port}: {count} messages, expected {expect}")
            return
        except (OSError, poplib.error_proto) as e:
            if time.time() > deadline:
                raise Failure(f"login {user}@127.0.0.1:{port} failed: {e}") from e
            time.sleep(0.5)


def check_both_servers(bench):
    s = bench.settings
    for port in (s.port_a, s.port_b):
        check_login(port, "bench0", s.messages)
        if bench.has("big"):
            check_login(port, "big0", 1)
        if bench.has("idle"):
            check_login(port, "idle0", 0)
    log(f"both servers answer a login as bench0 with {s.messages} messages")


def warm_up(bench):
    """Dovecot builds its index files on a mailbox's first session, and both
    servers get their pages cached. Not measured."""
    s = bench.settings
    log("warm-up (not measured)")
    for port in (s.port_a, s.port_b):
        subprocess.run([bench.loadgen, "--addr", f"127.0.0.1:{port}", "--scenario", "retr",
                        "--concurrency", str(s.users), "--duration", "1s", "--users", "bench%d",
                        "--user-count", str(s.users), "--password", PASSWORD],
                       check=True, stdout=subprocess.DEVNULL, timeout=600)
        if bench.has("big"):
            check_login(port, "big0", 1)


def stop_processes(procs):
    """SIGTERM to each Popen in PROCS, up to 15 s for all, then SIGKILL."""
    procs = [p for p in procs if p is not None and p.poll() is None]
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_pids(pids):
    """The same for processes that are not our children (Dovecot's)."""
    def alive(pid):
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False

    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def stop_everything(bench):
    """Stops the load generator and both servers; Dovecot's children that
    outlive its master are stopped by PID too."""
    stop_processes([bench.loadgen_proc])
    stop_processes([bench.poplite_proc])
    if bench.dovecot_proc is not None:
        kids = [p for p in tree_pids(bench.dovecot_proc.pid) if p != bench.dovecot_proc.pid]
        stop_processes([bench.dovecot_proc])
        stop_pids(kids)


# ---------------------------------------------------------------- hashing bound

def import_argon2_cffi(bench):
    """argon2-cffi's module, installed into the work directory (or
    from Debian) if missing; None if it cannot be had."""
    pylib = bench.path("pylib")
    sys.path.insert(0, pylib)
    try:
        return importlib.import_module("argon2")
    except ImportError:
        pass
    log(f"installing argon2-cffi (into {pylib})")
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", pylib,
                                "argon2-cffi"], capture_output=True, check=False).returncode == 0
    if not installed:
        installed = subprocess.run(["bash", SETUP_SCRIPT, "--package", "python3-argon2"],
                                   stdout=sys.stderr, check=False).returncode == 0
    if not installed:
        return None
    importlib.invalidate_caches()
    try:
        return importlib.import_module("argon2")
    except ImportError:
        return None


def median_time(fn, runs=20):
    """Median wall time of RUNS calls of FN, after one not counted."""
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def sodium_verify_seconds(phc):
    """Median time of one libsodium verification of PHC (Dovecot's argon2),
    or None without libsodium."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
        if lib.sodium_init() < 0:
            return None
        verify = lib.crypto_pwhash_str_verify
        verify.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong]
        if verify(phc.encode(), PASSWORD.encode(), len(PASSWORD)) != 0:
            return None
        return median_time(lambda: verify(phc.encode(), PASSWORD.encode(), len(PASSWORD)))
    except (OSError, AttributeError):
        return None


def measure_hashing(bench):
    """(argon2-cffi seconds per verification or None, libsodium's or None)."""
    argon2 = import_argon2_cffi(bench)
    if argon2 is None:
        bench.warning("argon2-cffi unavailable: the login hashing bound is not measured")
        return None, None
    hasher = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
    try:
        cffi = median_time(lambda: hasher.verify(bench.phc, PASSWORD))
    except argon2.exceptions.VerificationError as e:
        bench.warning(f"argon2-cffi failed ({e}): the login hashing bound is not measured")
        return None, None
    sodium = sodium_verify_seconds(bench.phc)
    log(f"one argon2id verification: argon2-cffi {cffi:.6f} s, libsodium "
        f"{'None' if sodium is None else f'{sodium:.6f}'} s")
    return cffi, sodium


def measure_single_logins(bench):
    """One login at a time, 3 s on each server: its p50 is about one
    verification in each server's own argon2 (RustCrypto in poplite,
    libsodium in Dovecot)."""
    p50 = {}
    for name, port in (("poplite", bench.settings.port_a), ("dovecot", bench.settings.port_b)):
        out = bench.path(f"single-login-{port}.json")
        subprocess.run([bench.loadgen, "--addr", f"127.0.0.1:{port}", "--scenario", "login",
                        "--concurrency", "1", "--duration", "3s", "--users", "bench0",
                        "--user-count", "1", "--password", PASSWORD, "--json", out],
                       check=True, stdout=subprocess.DEVNULL, timeout=600)
        with open(out) as f:
            p50[f"{name}_s"] = json.load(f)["p50_ms"] / 1000
    log(f"one login at a time, p50: {json.dumps(p50)}")
    return p50


# ---------------------------------------------------------------- runs

@dataclasses.dataclass
class Load:
    """What loadgen is asked to do in one run."""
    users: str
    count: int
    concurrency: int
    duration: str
    duration_s: float
    extra: list


def load_for(settings, scenario, server):
    s = settings
    load = Load("bench%d", s.users, s.concurrency, s.duration, s.duration_s, [])
    if scenario == "big":
        load.users, load.count, load.concurrency = "big%d", 1, 1
    elif scenario == "retr" and server == "poplite-cheap":
        load.users = "cheap%d"
    elif scenario == "idle":
        load = Load("idle%d", s.idle_conns, s.idle_conns, s.idle_duration, s.idle_duration_s,
                    ["--timeout", "600s"])
    elif scenario == "cycle":
        load.users, load.count = "cycle%d", s.cycle_mailboxes
    return load


def refill_cycle_mailboxes(bench, server):
    """Gives every cycle mailbox the whole corpus again on SERVER's side."""
    bench.generation += 1
    counts = poplite_message_counts(bench) if server == "poplite" else None
    for i in range(bench.settings.cycle_mailboxes):
        if server == "poplite":
            fill_poplite_mailbox(bench, f"cycle{i}", counts)
        else:
            fill_maildir(bench, f"cycle{i}", bench.path("corpus", "manifest.json"),
                         bench.generation)
    os.sync()


def start_loadgen(bench, args, log_path):
    """Starts loadgen with ARGS, its output to LOG_PATH."""
    with open(log_path, "w") as out:
        bench.loadgen_proc = subprocess.Popen([bench.loadgen, *args], stdout=out,
                                              stderr=subprocess.STDOUT)


def wait_for_loadgen(bench, timeout_s):
    """Waits for the running loadgen, stopped after TIMEOUT_S (its own
    deadline comes first; this is the backstop). Returns its exit status,
    124 when it had to be stopped."""
    try:
        status = bench.loadgen_proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_processes([bench.loadgen_proc])
        status = 124
    bench.loadgen_proc = None
    return status


def tail(path, lines=5):
    try:
        with open(path) as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""


def loadgen_json(status, json_path, log_path, what):
    """The JSON a finished loadgen run wrote, or Failure with the end of its
    output if it failed or wrote none."""
    if status != 0 or not os.path.exists(json_path) or os.path.getsize(json_path) == 0:
        raise Failure(f"loadgen failed (exit {status}) on {what}: {tail(log_path)}")
    with open(json_path) as f:
        return json.load(f)


class HeldMemory:
    """`idle`: the tree's memory with every connection held, measured once
    in a timer thread 3 s before the end (halfway through short runs)."""

    def __init__(self, pid, duration_s):
        self.rss = self.pss = 0
        delay = duration_s - 3 if duration_s > 6 else duration_s / 2
        self._timer = threading.Timer(delay, self._measure, args=(pid,))
        self._timer.start()

    def _measure(self, pid):
        self.rss, self.pss = tree_memory_kb(pid)

    def stop(self):
        """(RSS kB, PSS kB), zeros if the run ended before the measurement."""
        self._timer.cancel()
        return self.rss, self.pss


def measure_run(bench, scenario, round_no, server, port, proc):
    """One loadgen run of SCENARIO against one server, with the server's
    CPU and memory over it; returns the run's record."""
    load = load_for(bench.settings, scenario, server)
    if scenario == "cycle":
        refill_cycle_mailboxes(bench, server)
    name = f"run-{scenario}-{round_no}-{server}"
    json_path, log_path = bench.path(name + ".json"), bench.path(name + ".txt")
    pid = proc.pid
    rss0, pss0 = tree_memory_kb(pid)
    sampler = MemorySampler(pid, 0.5, load.duration_s + 900).start()
    cpu0, hash0 = tree_cpu_seconds(pid), hashing_cpu_seconds(pid)
    start_loadgen(
        bench, ["--addr", f"127.0.0.1:{port}", "--scenario", scenario,
                "--concurrency", str(load.concurrency), "--duration", load.duration,
                "--users", load.users, "--user-count", str(load.count), "--password", PASSWORD,
                "--json", json_path, *load.extra],
        log_path)
    held = HeldMemory(pid, load.duration_s) if scenario == "idle" else None
    status = wait_for_loadgen(bench, int(load.duration_s * 2 + 600))
    cpu1, hash1 = tree_cpu_seconds(pid), hashing_cpu_seconds(pid)
    rss1, pss1 = tree_memory_kb(pid)
    peak_rss, peak_pss = sampler.stop()
    held_rss, held_pss = held.stop() if held else (0, 0)
    loadgen = loadgen_json(status, json_path, log_path, f"{server}/{scenario}")
    if proc.poll() is not None:
        raise Failure(f"{server} died during {scenario}")
    return {"scenario": scenario, "round": round_no, "server": server, "loadgen": loadgen,
            "cpu_s": cpu1 - cpu0, "hash_cpu_s": hash1 - hash0,
            "rss_before_kb": rss0, "pss_before_kb": pss0,
            "rss_peak_kb": max(peak_rss, rss1), "pss_peak_kb": max(peak_pss, pss1),
            "rss_end_kb": rss1, "pss_end_kb": pss1,
            "rss_held_kb": held_rss, "pss_held_kb": held_pss}


def measure_raw_copy(bench, round_no):
    """`big` against a plain TCP copy of the same message, with the same
    client: the ceiling both servers are measured against."""
    s = bench.settings
    name = f"run-big-{round_no}-raw"
    json_path, log_path = bench.path(name + ".json"), bench.path(name + ".txt")
    start_loadgen(
        bench, ["--scenario", "big", "--concurrency", "1", "--duration", s.duration,
                "--users", "big0", "--raw-copy", bench.path("corpus-big", "big-00001.eml"),
                "--json", json_path],
        log_path)
    status = wait_for_loadgen(bench, int(s.duration_s * 2 + 600))
    loadgen = loadgen_json(status, json_path, log_path, "raw copy")
    return {"scenario": "big", "round": round_no, "server": "raw", "loadgen": loadgen,
            "cpu_s": 0.0, "rss_before_kb": 0, "pss_before_kb": 0, "rss_peak_kb": 0,
            "pss_peak_kb": 0, "rss_end_kb": 0, "pss_end_kb": 0}


def run_errors(run):
    return sum(run["loadgen"]["errors"].values())


def progress_line(run):
    """One run's figures, for stderr as the runs go."""
    g = run["loadgen"]
    if run["server"] == "raw":
        return f"    big    round {run['round']} raw copy {g['mb_per_s']:8.1f} MB/s"
    return (f"    {run['scenario']:<6} round {run['round']} {run['server']:<13} "
            f"{g['sessions_per_s']:8.1f} sess/s {g['messages_per_s']:8.1f} msg/s "
            f"{g['mb_per_s']:7.1f} MB/s  p50 {g['p50_ms']:8.2f} ms p99 {g['p99_ms']:8.2f} ms  "
            f"cpu {run['cpu_s']:6.2f} s  rss {run['rss_peak_kb'] / 1024:7.1f} MB "
            f"pss {run['pss_peak_kb'] / 1024:7.1f} MB"
            + (f"  held {g['held']}" if run["scenario"] == "idle" else "")
            + (f"  ERRORS {g['errors']}" if run_errors(run) else ""))


def round_runs(bench, scenario, round_no):
    """One round of SCENARIO: poplite, then Dovecot, then poplite-cheap for
    `retr` at a real hash cost, then the raw copy for `big`; yields each
    run's record as it ends."""
    s = bench.settings
    yield measure_run(bench, scenario, round_no, "poplite", s.port_a, bench.poplite_proc)
    yield measure_run(bench, scenario, round_no, "dovecot", s.port_b, bench.dovecot_proc)
    if s.cheap_runs and scenario == "retr":
        yield measure_run(bench, scenario, round_no, "poplite-cheap", s.port_a, bench.poplite_proc)
    if scenario == "big":
        yield measure_raw_copy(bench, round_no)


def run_all_scenarios(bench):
    """Every scenario, --rounds rounds each; returns the records, also kept
    in results.jsonl in the work directory."""
    s = bench.settings
    runs = []
    with open(bench.path("results.jsonl"), "w") as results:
        for scenario in s.scenarios:
            log(f"scenario {scenario}: {s.rounds} rounds")
            for round_no in range(1, s.rounds + 1):
                for run in round_runs(bench, scenario, round_no):
                    runs.append(run)
                    results.write(json.dumps(run) + "\n")
                    results.flush()
                    print(progress_line(run), file=sys.stderr, flush=True)
    return runs


# ---------------------------------------------------------------- report

def report_meta(bench, hashing, single_login):
    """Everything the report says about the set-up."""
    s = bench.settings
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    duration = s.duration
    if bench.has("idle"):
        duration = f"{s.duration} (idle: {s.idle_duration}, {s.idle_conns} connections)"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cores": bench.cores, "mem": f"{mem_kb / 1048576:.0f} GiB RAM",
        "kernel": os.uname().release, "poplite_rev": bench.rev, "dovecot": bench.dovecot_version,
        "users": s.users, "messages": s.messages,
        "cycle_mailboxes": s.cycle_mailboxes if bench.has("cycle") else None,
        "corpus_mb": bench.corpus_bytes / 1e6,
        "big_mb": s.big_mb if bench.has("big") else None,
        "rounds": s.rounds, "duration": duration, "concurrency": s.concurrency,
        "hash_note": bench.hash_note, "hash_params": s.argon2_label,
        "hash_verify_s": hashing[0], "sodium_verify_s": hashing[1],
        "single_login": single_login, "cheap_params": CHEAP_ARGON2, "cheap_runs": s.cheap_runs,
        "dovecot_tuning": DOVECOT_TUNING.format(cores=bench.cores),
        "scenarios": s.scenarios, "warnings": bench.warnings,
    }


def fmt(x, digits=None):
    """A figure with about three significant digits (fewer decimals as it
    grows), thousands separated; n/a for None."""
    if x is None:
        return "n/a"
    if digits is None:
        a = abs(x)
        digits = 0 if a >= 1000 else 1 if a >= 100 else 2 if a >= 1 else 3
    return f"{x:,.{digits}f}"


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def runs_of(runs, scenario, server):
    return [r for r in runs if r["scenario"] == scenario and r["server"] == server]


def header_lines(meta):
    """The title and the set-up, then any warnings."""
    corpus = (f"- corpus: {meta['users']} mailboxes x {meta['messages']} messages "
              f"({meta['corpus_mb']:.1f} MB per mailbox: 2-20 KB each, every 25th 2 MB), "
              "LF line ends")
    if meta.get("cycle_mailboxes"):
        corpus += (f"; cycle: {meta['cycle_mailboxes']} more such mailboxes, refilled before "
                   "each run, each emptied once per run")
    if meta.get("big_mb"):
        corpus += (f"; big0: one {meta['big_mb']} MB message, its user's hash at "
                   f"{meta['cheap_params']} on both sides so that its RSS growth is the "
                   "stream's, not a login's argon2 buffer")
    lines = [
        "# poplite vs Dovecot (POP3)",
        "",
        (f"- date: {meta['date']}, host: {meta['cores']} cores, {meta['mem']}, "
        f"kernel {meta['kernel']}"),
        f"- poplite {meta['poplite_rev']} (release build); Dovecot {meta['dovecot']}",
        corpus,
        (f"- runs: {meta['rounds']} rounds x {meta['duration']} per scenario, alternating "
        f"poplite/Dovecot; concurrency {meta['concurrency']}; loadgen on the same machine"),
        f"- passwords: {meta['hash_note']}",
    ]
    if meta.get("cheap_runs"):
        lines.append(f"- poplite-cheap: poplite again, on users cheap0.. holding the same mail "
                     f"with {meta['cheap_params']} hashes, for the mail path's CPU without hashing")
    lines += [f"- both servers: auth_failure_delay 1s; Dovecot: {meta['dovecot_tuning']}", ""]
    for warning in meta.get("warnings", []):
        lines += [f"> **WARNING: {warning}**", ""]
    return lines


def server_metrics(scenario, rs):
    """The summary table's metrics for one server's runs of SCENARIO, in
    table order (medians over rounds; errors summed)."""
    def med(key):
        return median_or_none(key(r) for r in rs)

    unit = "messages" if scenario == "big" else "sessions"

    def cpu_ms_per_unit(r):
        n = r["loadgen"][unit]
        return r["cpu_s"] * 1000 / n if n else None

    def per_held_kb(r, field):
        held = r["loadgen"]["held"]
        return (r[f"{field}_peak_kb"] - r[f"{field}_before_kb"]) / held if held else None

    metrics = {
        "sessions/s ↑": med(lambda r: r["loadgen"]["sessions_per_s"]),
        "messages/s ↑": med(lambda r: r["loadgen"]["messages_per_s"]),
        "MB/s ↑": med(lambda r: r["loadgen"]["mb_per_s"]),
        "latency p50 ms ↓": med(lambda r: r["loadgen"]["p50_ms"]),
        "latency p99 ms ↓": med(lambda r: r["loadgen"]["p99_ms"]),
        ("CPU ms/RETR ↓" if scenario == "big" else "CPU ms/session ↓"): med(cpu_ms_per_unit),
        "CPU cores busy": med(lambda r: r["cpu_s"] / r["loadgen"]["elapsed_s"]),
        "RSS MB, peak in run ↓": med(lambda r: r["rss_peak_kb"] / 1024),
        "PSS MB, peak in run ↓": med(lambda r: r["pss_peak_kb"] / 1024),
        "RSS MB, after run ↓": med(lambda r: r["rss_end_kb"] / 1024),
        "errors (all rounds)": sum(run_errors(r) for r in rs),
    }
    if scenario == "big":
        metrics["RSS MB, growth in run ↓"] = med(
            lambda r: (r["rss_peak_kb"] - r["rss_before_kb"]) / 1024)
    if scenario == "idle":
        metrics["connections held ↑"] = med(lambda r: r["loadgen"]["held"])
        metrics["RSS MB, all held (3 s before the end) ↓"] = med(
            lambda r: r.get("rss_held_kb", 0) / 1024 or None)
        metrics["PSS MB, all held (3 s before the end) ↓"] = med(
            lambda r: r.get("pss_held_kb", 0) / 1024 or None)
        metrics["RSS KB per held conn ↓"] = med(lambda r: per_held_kb(r, "rss"))
        metrics["PSS KB per held conn ↓"] = med(lambda r: per_held_kb(r, "pss"))
    return metrics


def error_kinds(rs):
    """{error kind: count} summed over runs RS."""
    kinds = {}
    for r in rs:
        for kind, n in r["loadgen"]["errors"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    return kinds


# Metrics that mean nothing for a scenario and stay out of its rows.
OMITTED_METRICS = {
    "idle": ("sessions/s ↑", "messages/s ↑", "MB/s ↑", "latency p50 ms ↓",
             "latency p99 ms ↓",
             "CPU ms/session ↓"),
    "big": ("sessions/s ↑",),
    "login": ("messages/s ↑", "MB/s ↑"),
}


def errors_cell(count, kinds):
    return f"{count} {kinds}" if count else str(count)


def summary_rows(scenario, runs):
    """The summary table's rows for SCENARIO (none if it did not run)."""
    per, kinds = {}, {}
    for server in ("poplite", "dovecot"):
        rs = runs_of(runs, scenario, server)
        if rs:
            per[server], kinds[server] = server_metrics(scenario, rs), error_kinds(rs)
    if not per:
        return []
    rows = []
    for metric in next(iter(per.values())):
        if metric in OMITTED_METRICS.get(scenario, ()):
            continue
        a = per.get("poplite", {}).get(metric)
        b = per.get("dovecot", {}).get(metric)
        if metric.startswith("errors"):
            ratio = ""
            a = errors_cell(a, kinds["poplite"]) if a is not None else "n/a"
            b = errors_cell(b, kinds["dovecot"]) if b is not None else "n/a"
        else:
            ratio = f"{a / b:.2f}" if a is not None and b not in (None, 0) else "n/a"
            a, b = fmt(a), fmt(b)
        rows.append(f"| {scenario} | {metric} | {a} | {b} | {ratio} |")
    return rows


def summary_table(meta, runs):
    lines = [
        ("Medians over rounds. Ratio = poplite / Dovecot "
         "(↑ higher is better, ↓ lower is better). "
        "CPU and RSS cover each server's whole process tree (Dovecot: master and all children); "
        "RSS sums VmRSS, so pages shared between Dovecot's processes count once per process, "
        "PSS splits them. `big` counts CPU per RETR of the big message."),
        "",
        "| scenario | metric | poplite | Dovecot | poplite/Dovecot |",
        "|---|---|---:|---:|---:|",
    ]
    for scenario in meta["scenarios"]:
        lines += summary_rows(scenario, runs)
    return lines + [""]


def raw_copy_section(meta, runs):
    """`big` against the plain TCP copy of the same message."""
    raw = [r["loadgen"]["mb_per_s"] for r in runs_of(runs, "big", "raw")]
    if not raw:
        return []
    ceiling = statistics.median(raw)
    lines = [(f"Plain TCP copy of the same {meta.get('big_mb')} MB message over loopback, same "
             "client (`loadgen --raw-copy`, written from memory in 256 KiB writes), in the same "
             f"rounds: **{ceiling:,.0f} MB/s**.")]
    for server, label in (("poplite", "poplite"), ("dovecot", "Dovecot")):
        rates = [r["loadgen"]["mb_per_s"] for r in runs_of(runs, "big", server)]
        if rates and ceiling:
            rate = statistics.median(rates)
            lines.append(f"- {label} `big`: {rate:,.0f} MB/s = "
                         f"**{100 * rate / ceiling:.0f}%** of the plain copy")
    return lines + [""]


def cpu_ms_per_session(runs, scenario, server):
    """Median CPU ms per session of SERVER's runs of SCENARIO, or None."""
    return median_or_none(r["cpu_s"] * 1000 / r["loadgen"]["sessions"]
                          for r in runs_of(runs, scenario, server) if r["loadgen"]["sessions"])


def mail_path_section(meta, runs):
    """CPU per session of `retr` and `cycle` less `login`'s."""
    mail = [s for s in ("retr", "cycle") if s in meta["scenarios"]]
    if "login" not in meta["scenarios"] or not mail:
        return []
    lines = [
        ("CPU per session on the mail path: each scenario's CPU ms/session less `login`'s "
        "(which is about one argon2id verification and the login exchange):"),
        "",
        "| scenario | poplite ms | Dovecot ms | poplite/Dovecot |",
        "|---|---:|---:|---:|",
    ]
    for scenario in mail:
        d = {}
        for server in ("poplite", "dovecot"):
            total = cpu_ms_per_session(runs, scenario, server)
            login = cpu_ms_per_session(runs, "login", server)
            d[server] = total - login if total is not None and login is not None else None
        a, b = d["poplite"], d["dovecot"]
        ratio = f"{a / b:.2f}" if a is not None and b else "n/a"
        lines.append(f"| {scenario} | {fmt(a)} | {fmt(b)} | {ratio} |")
    return lines + [""]


def hashing_split(runs, scenario, server):
    """(hashing ms, rest ms) per session, medians of each part over rounds,
    so the two may not add up to the median total exactly; or None."""
    rs = [r for r in runs_of(runs, scenario, server)
          if r["loadgen"]["sessions"] and "hash_cpu_s" in r]
    if not rs:
        return None
    per_session = [(r["hash_cpu_s"] * 1000 / r["loadgen"]["sessions"],
                    (r["cpu_s"] - r["hash_cpu_s"]) * 1000 / r["loadgen"]["sessions"]) for r in rs]
    return (statistics.median(h for h, _ in per_session),
            statistics.median(rest for _, rest in per_session))


def cpu_split_section(meta, runs):
    """Where poplite's CPU per session goes (its argon2 threads against
    everything else), against the target of half Dovecot's."""
    rows = [(s, hashing_split(runs, s, "poplite"), cpu_ms_per_session(runs, s, "dovecot"))
            for s in ("retr", "cycle")]
    rows = [(s, sp, d) for s, sp, d in rows if sp and d]
    if not rows:
        return []
    cheap = hashing_split(runs, "retr", "poplite-cheap")
    lines = [
        ("Where poplite's CPU per session goes, against the target of ½ Dovecot's: hashing is "
        "the CPU of its argon2 threads (read per thread from /proc), the rest is everything "
        "else in the process (medians over rounds):"),
        "",
        ("| scenario | hashing ms | rest ms | total ms | target: ½ Dovecot's ms | "
        "left for the rest after hashing ms |"),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for scenario, (hashing, rest), dovecot in rows:
        lines.append(f"| {scenario} | {fmt(hashing)} | {fmt(rest)} | {fmt(hashing + rest)} | "
                     f"{fmt(dovecot / 2)} | {fmt(dovecot / 2 - hashing)} |")
    if cheap:
        lines.append(f"| retr, poplite-cheap ({meta['cheap_params']}) | {fmt(cheap[0])} | "
                     f"{fmt(cheap[1])} | {fmt(sum(cheap))} |  |  |")
    lines.append("")
    for scenario, (hashing, rest), dovecot in rows:
        lines.append(target_verdict(runs, scenario, hashing, rest, dovecot, cheap))
    sodium = meta.get("sodium_verify_s")
    if sodium:
        lines.append(sodium_verdict(sodium * 1000, rows))
    cheap_errors = sum(run_errors(r) for r in runs if r["server"] == "poplite-cheap")
    if cheap_errors:
        lines.append(f"- poplite-cheap runs had {cheap_errors} errors.")
    return lines + [""]


def target_verdict(runs, scenario, hashing, rest, dovecot, cheap):
    """Whether SCENARIO met ½ Dovecot's CPU per session, and what is left
    for the rest after hashing."""
    target = dovecot / 2
    total = cpu_ms_per_session(runs, scenario, "poplite")
    verdict = "met" if total <= target else "not met"
    line = (f"- `{scenario}`: {verdict} in this run ({fmt(total)} ms against {fmt(target)}). "
            f"Hashing takes {100 * hashing / target:.0f}% of the target, leaving "
            f"{fmt(target - hashing)} ms for the rest, which costs {fmt(rest)} ms here")
    if cheap:
        # Without real hashing the rest is at its least: no argon2 thread
        # evicts the caches it works in. cycle RETRs the same mail as retr
        # and deletes it too, so retr's cheap rest is under cycle's.
        line += (f" and {fmt(cheap[1])} ms with no real hashing in the process "
                 "(`retr`, poplite-cheap)")
    return line + "."


def sodium_verdict(ms, rows):
    """What each target leaves at libsodium's speed of hashing."""
    def after_sodium(scenario, dovecot):
        left = dovecot / 2 - ms
        if left < 0:
            return f"`{scenario}`'s target is {fmt(-left)} ms short of the hash alone"
        return f"`{scenario}` leaves {fmt(left)} ms for the rest"

    return (f"- one libsodium verification (Dovecot's argon2, in-process) takes {fmt(ms)} ms; "
            "at that speed " + ", ".join(after_sodium(scenario, dovecot)
                                         for scenario, _, dovecot in rows) + ".")


def login_rates(runs, server):
    return [r["loadgen"]["sessions_per_s"] for r in runs_of(runs, "login", server)]


def hashing_bound_section(meta, runs):
    """`login` against cores / one argon2-cffi verification."""
    hb = meta.get("hash_verify_s")
    if not hb:
        return []
    bound = meta["cores"] / hb
    lines = [(f"Hashing bound for `login`: {meta['cores']} cores / {hb * 1000:.1f} ms per argon2id "
             f"verification ({meta['hash_params']}; argon2-cffi, median of 20) = "
             f"**{bound:.1f} logins/s**. It is argon2-cffi's speed, so a server whose own argon2 "
             "is faster can pass 100%; each server's own ceiling follows.")]
    for server, label in (("poplite", "poplite"), ("dovecot", "Dovecot")):
        rates = login_rates(runs, server)
        if rates:
            rate = statistics.median(rates)
            lines.append(f"- {label}: {rate:.1f} sessions/s = **{100 * rate / bound:.0f}%** "
                         "of the bound")
    return lines + [""]


def own_argon2_section(meta, runs):
    """Each server's own argon2id speed and the `login` ceiling it sets."""
    single, sodium = meta.get("single_login"), meta.get("sodium_verify_s")
    if "login" not in meta["scenarios"] or not (single or sodium):
        return []
    lines = ["Each server's own argon2id implementation (approximate ceilings for `login`):", ""]
    if sodium:
        lines.append(f"- libsodium (Dovecot's argon2), one verification in-process: "
                     f"{sodium * 1000:.1f} ms")
    if single:
        a_ms, b_ms = single["poplite_s"] * 1000, single["dovecot_s"] * 1000
        poplite_ceiling = meta["cores"] / single["poplite_s"]
        dovecot_ceiling = 1 / single["dovecot_s"]
        lines += [
            (f"- one login at a time (USER, PASS, STAT, QUIT; p50 over 3 s), about one "
            f"verification plus the protocol: poplite {a_ms:.1f} ms (RustCrypto `argon2`), "
            f"Dovecot {b_ms:.1f} ms (libsodium)"),
            (f"- ceilings: poplite verifies on every core: {meta['cores']} / {a_ms:.1f} ms "
            f"= {poplite_ceiling:.0f} logins/s. Dovecot 2.3 verifies passwd-file passwords "
            f"inside its single `auth` process, so one core: 1 / {b_ms:.1f} ms "
            f"= {dovecot_ceiling:.0f} logins/s"),
        ]
        for server, label, ceiling in (("poplite", "poplite", poplite_ceiling),
                                       ("dovecot", "Dovecot", dovecot_ceiling)):
            rates = login_rates(runs, server)
            if rates:
                lines.append(f"- {label}: {100 * statistics.median(rates) / ceiling:.0f}% "
                             "of its own ceiling")
    return lines + [""]


def per_run_table(runs):
    lines = [
        "Per run (rounds in order):",
        "",
        ("| scenario | round | server | sessions/s | messages/s | MB/s | p50 ms | p99 ms | CPU s | "
        "of it hashing s | RSS peak MB | errors |"),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        g = r["loadgen"]
        hashing = fmt(r.get("hash_cpu_s")) if r["server"].startswith("poplite") else ""
        lines.append(
            f"| {r['scenario']} | {r['round']} | {r['server']} | {fmt(g['sessions_per_s'])} | "
            f"{fmt(g['messages_per_s'])} | {fmt(g['mb_per_s'])} | {fmt(g['p50_ms'])} | "
            f"{fmt(g['p99_ms'])} | {fmt(r['cpu_s'])} | {hashing} | "
            f"{fmt(r['rss_peak_kb'] / 1024)} | {run_errors(r)} |")
    return lines + [""]


def render_report(meta, runs):
    """The markdown report."""
    sections = (header_lines(meta), summary_table(meta, runs), raw_copy_section(meta, runs),
                mail_path_section(meta, runs), cpu_split_section(meta, runs),
                hashing_bound_section(meta, runs), own_argon2_section(meta, runs),
                per_run_table(runs))
    return "\n".join(line for section in sections for line in section)


def publish_report(bench, text):
    """Prints the report; writes it into the work directory and to --out."""
    print(text, flush=True)
    with open(bench.path("report.md"), "w") as f:
        f.write(text)
    out = bench.settings.out
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
        log(f"report written to {out}")


# ---------------------------------------------------------------- main

def prepare_system(settings):
    """Root, the build, Dovecot and its mail user, descriptors, free ports:
    a Bench with an empty work directory, or Failure."""
    require_root()
    poplite, loadgen = build_binaries()
    run_setup_script()
    raise_descriptor_limit(settings)
    check_ports_free(settings)
    user = pwd.getpwnam(MAIL_USER)
    dovecot_version = subprocess.run(["dovecot", "--version"], capture_output=True,
                                     text=True, check=True).stdout.strip()
    return Bench(settings=settings, work=make_work_dir(), poplite=poplite, loadgen=loadgen,
                 rev=source_revision(), cores=os.cpu_count() or 1, mail_uid=user.pw_uid,
                 mail_gid=user.pw_gid, dovecot_version=dovecot_version)


def make_work_dir():
    """A fresh /tmp/popbench.XXXXXX that Dovecot's mail processes, running
    as popbench, can reach into."""
    work = tempfile.mkdtemp(prefix="popbench.", dir="/tmp")
    os.chmod(work, 0o755)
    return work


def write_corpora(bench):
    s = bench.settings
    log(f"work directory: {bench.work}")
    log(f"generating corpus: {s.messages} messages per mailbox")
    bench.corpus_files, bench.corpus_bytes = write_corpus(bench.path("corpus"), s.messages)
    if bench.has("big"):
        log(f"generating the {s.big_mb} MB message for big0")
        _, bench.big_bytes = write_big_message(bench.path("corpus-big"), s.big_mb)


def compare(bench):
    """Sets both servers up, runs everything and reports; returns the exit
    status."""
    write_corpora(bench)
    set_up_poplite(bench)
    set_up_dovecot(bench)
    start_servers(bench)
    check_both_servers(bench)
    warm_up(bench)
    hashing, single_login = (None, None), None
    if bench.has("login"):
        hashing = measure_hashing(bench)
        single_login = measure_single_logins(bench)
    runs = run_all_scenarios(bench)
    publish_report(bench, render_report(report_meta(bench, hashing, single_login), runs))
    if any(run_errors(r) for r in runs):
        warn("some loadgen runs reported errors (see the errors rows; logs in the work "
             "directory when run with --keep)")
        return 2
    return 0


def exit_on_sigterm():
    """SIGTERM ends the run as an exception would, so that the servers are
    stopped and the work directory removed on the way out (status 143)."""
    def handler(signum, frame):
        raise SystemExit(143)
    signal.signal(signal.SIGTERM, handler)


def main(argv=None):
    try:
        settings = parse_options(sys.argv[1:] if argv is None else argv)
        bench = prepare_system(settings)
    except (Failure, subprocess.SubprocessError) as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    exit_on_sigterm()
    try:
        return compare(bench)
    except (Failure, subprocess.SubprocessError) as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stop_everything(bench)
        if settings.keep:
            print(f"work directory kept: {bench.work}", file=sys.stderr)
        else:
            shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
