#!/usr/bin/env bash
# bench/compare.sh: poplite against Dovecot, same corpus, same users, same
# argon2id hashes, same machine, on loopback.
#
# Builds poplite and examples/loadgen, installs Dovecot if it is missing,
# sets both servers up in a fresh temporary directory, runs every scenario
# for --rounds rounds alternating poplite and Dovecot (A B A B ...; in `retr`
# rounds at a real hash cost, poplite a second time on cheap-hash users),
# measures each server's CPU time and memory over its whole process tree from
# /proc (poplite's also split into its argon2 threads and the rest),
# and prints a markdown report of the medians.
#
# Run as root on Debian (apt-get, useradd, chown to the Dovecot mail user).
# Only 127.0.0.1 is ever bound or targeted. Everything lives under one
# `mktemp -d` directory, removed on exit unless --keep; the only thing made
# outside it is the system user `popbench` that owns Dovecot's maildirs.
#
# Exit status: 0 on success, 2 when some loadgen run reported errors (the
# report is still printed), anything else on failure.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/compare.sh [OPTIONS]

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
EOF
}

# ---------------------------------------------------------------- options
ROUNDS=3
DURATION=10s
CONCURRENCY=8
SCENARIOS="login retr cycle big"
MESSAGES=50
USERS=8
CYCLE_MAILBOXES=192
BIG_MB=200
ARGON2=""
IDLE_CONNS=2000
IDLE_DURATION=90s
PORT_A=42110
PORT_B=42111
OUT=""
KEEP=0

die() {
    echo "compare.sh: $*" >&2
    exit 1
}
need_arg() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while [[ $# -gt 0 ]]; do
    case $1 in
    --rounds) need_arg "$@"; ROUNDS=$2; shift 2 ;;
    --duration) need_arg "$@"; DURATION=$2; shift 2 ;;
    --concurrency) need_arg "$@"; CONCURRENCY=$2; shift 2 ;;
    --scenarios) need_arg "$@"; SCENARIOS=$2; shift 2 ;;
    --messages) need_arg "$@"; MESSAGES=$2; shift 2 ;;
    --users) need_arg "$@"; USERS=$2; shift 2 ;;
    --cycle-mailboxes) need_arg "$@"; CYCLE_MAILBOXES=$2; shift 2 ;;
    --big-mb) need_arg "$@"; BIG_MB=$2; shift 2 ;;
    --argon2) need_arg "$@"; ARGON2=$2; shift 2 ;;
    --idle-conns) need_arg "$@"; IDLE_CONNS=$2; shift 2 ;;
    --idle-duration) need_arg "$@"; IDLE_DURATION=$2; shift 2 ;;
    --port-a) need_arg "$@"; PORT_A=$2; shift 2 ;;
    --port-b) need_arg "$@"; PORT_B=$2; shift 2 ;;
    --out) need_arg "$@"; OUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done

for v in ROUNDS CONCURRENCY MESSAGES USERS CYCLE_MAILBOXES BIG_MB IDLE_CONNS PORT_A PORT_B; do
    if ! is_uint "${!v}" || [[ ${!v} -lt 1 ]]; then
        die "--$(tr 'A-Z_' 'a-z-' <<<"$v") must be a positive integer"
    fi
done
if [[ -n $ARGON2 && ! $ARGON2 =~ ^m=[0-9]+,t=[0-9]+,p=[0-9]+$ ]]; then
    die "--argon2 takes m=KIB,t=N,p=N, e.g. m=64,t=1,p=1"
fi
ARGON2_LABEL=${ARGON2:-m=19456,t=2,p=1}
[[ $PORT_A -ne $PORT_B && $PORT_A -lt 65536 && $PORT_B -lt 65536 ]] || die "bad ports"

# A duration (10s, 500ms, 2m, 1h, or plain seconds) in seconds, as a decimal.
dur_seconds() {
    local d=$1
    if [[ $d =~ ^([0-9]+(\.[0-9]+)?)(ms|s|m|min|h)?$ ]]; then
        local n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[3]:-s}
        case $unit in
        ms) awk -v n="$n" 'BEGIN { printf "%.3f", n / 1000 }' ;;
        s) awk -v n="$n" 'BEGIN { printf "%.3f", n }' ;;
        m | min) awk -v n="$n" 'BEGIN { printf "%.3f", n * 60 }' ;;
        h) awk -v n="$n" 'BEGIN { printf "%.3f", n * 3600 }' ;;
        esac
    else
        return 1
    fi
}
DURATION_S=$(dur_seconds "$DURATION") || die "bad --duration: $DURATION (use e.g. 10s, 500ms, 1m)"
IDLE_DURATION_S=$(dur_seconds "$IDLE_DURATION") || die "bad --idle-duration: $IDLE_DURATION"

read -r -a SCENARIO_LIST <<<"$SCENARIOS"
[[ ${#SCENARIO_LIST[@]} -gt 0 ]] || die "--scenarios is empty"
for s in "${SCENARIO_LIST[@]}"; do
    case $s in login | retr | cycle | big | idle) ;; *) die "unknown scenario: $s (login retr cycle big idle)" ;; esac
done
has_scenario() {
    local s
    for s in "${SCENARIO_LIST[@]}"; do [[ $s == "$1" ]] && return 0; done
    return 1
}
# The cheapest argon2id cost. big0 always uses it, so that `big`'s RSS growth
# is the stream's and not a login's 19 MiB argon2 buffer. At a real cost,
# cheap0.. (bench0..'s mail) use it too: poplite's `retr` on them is the
# session's CPU without hashing, set against the target for `retr` and
# `cycle` per session.
CHEAP_ARGON2=m=64,t=1,p=1
CHEAP_RUNS=false
if [[ $ARGON2_LABEL != "$CHEAP_ARGON2" ]] && has_scenario retr; then CHEAP_RUNS=true; fi

[[ $(id -u) -eq 0 ]] || die "run as root (it installs Dovecot and creates the system user popbench)"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '\n!!!!!!!! WARNING: %s\n\n' "$*" >&2; }

# ---------------------------------------------------------------- build
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$REPO"
[[ -f Cargo.toml ]] || die "no Cargo.toml in $REPO"

log "building poplite and loadgen (release)"
cargo build --release --bin poplite --example loadgen
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-$REPO/target}
POPLITE=$TARGET_DIR/release/poplite
LOADGEN=$TARGET_DIR/release/examples/loadgen
[[ -x $POPLITE && -x $LOADGEN ]] || die "build products missing under $TARGET_DIR/release"
REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    REV="$REV (with uncommitted changes)"
fi

# ---------------------------------------------------------------- packages
export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get install -y -q "$@" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }
}
if ! command -v dovecot >/dev/null || ! command -v doveadm >/dev/null || [[ ! -x /usr/lib/dovecot/pop3 ]]; then
    log "installing dovecot-pop3d"
    apt_install dovecot-pop3d
fi
if ! command -v python3 >/dev/null; then
    log "installing python3"
    apt_install python3
fi
DOVECOT_VERSION=$(dovecot --version)

# Descriptors for the load generator and the servers started from here.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if has_scenario idle && [[ $NOFILE != unlimited && $NOFILE -lt $((IDLE_CONNS * 4 + 1024)) ]]; then
    warn "ulimit -n is $NOFILE: too low for --idle-conns $IDLE_CONNS"
fi

CORES=$(nproc)

# ---------------------------------------------------------------- work dir, cleanup
W=$(mktemp -d /tmp/popbench.XXXXXX)
chmod 755 "$W" # Dovecot's mail processes run as popbench and must reach W/home

PID_A=""
PID_B=""
SAMPLER_PID=""
LOADGEN_PID=""

# Sends SIGTERM to PIDS, waits up to 15 s for all of them, then SIGKILLs the rest.
stop_pids() {
    local pid alive i
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 150; i++)); do
        alive=0
        for pid in "$@"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        if [[ $alive -eq 0 ]]; then return 0; fi
        sleep 0.1
    done
    for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}

# The PIDs of ROOT and all its descendants (from /proc/*/stat).
tree_pids() {
    python3 "$W/tools.py" tree "$1" 2>/dev/null || true
}

cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    [[ -n $LOADGEN_PID ]] && stop_pids "$LOADGEN_PID"
    [[ -n $SAMPLER_PID ]] && stop_pids "$SAMPLER_PID"
    if [[ -n $PID_A ]]; then
        stop_pids "$PID_A"
        wait "$PID_A" 2>/dev/null
    fi
    if [[ -n $PID_B ]]; then
        # The master's children (auth, login, pop3, ...) go when it goes;
        # any that linger are killed by PID too.
        local kids
        kids=$(tree_pids "$PID_B" | tr '\n' ' ')
        stop_pids "$PID_B"
        wait "$PID_B" 2>/dev/null
        # shellcheck disable=SC2086
        [[ -n $kids ]] && stop_pids $kids
    fi
    if [[ $KEEP -eq 1 ]]; then
        echo "work directory kept: $W" >&2
    else
        rm -rf "$W"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- python helpers
cat >"$W/tools.py" <<'PY'
"""Helpers for bench/compare.sh: corpus, maildirs, /proc accounting, report."""
import json
import os
import random
import shutil
import statistics
import sys
import time


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


def tree(root, table=None):
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


def cpu_seconds(root):
    # utime+stime of each live process in the tree, plus cutime+cstime: the
    # time of children that exited and were reaped (Dovecot's per-session
    # pop3 and login processes), so nothing is lost or counted twice.
    table = proc_table()
    ticks = sum(table[p][1] for p in tree(root, table))
    return ticks / os.sysconf("SC_CLK_TCK")


def hashing_cpu_seconds(pid):
    """utime+stime of poplite's argon2 threads (named poplite-hash-N), so a
    run's CPU splits into hashing and everything else."""
    ticks = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
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
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_kb(root):
    """(summed VmRSS, summed Pss) of the tree. RSS counts shared pages
    (libraries, shared memory) once per process; PSS splits them."""
    pids = tree(root)
    rss = sum(field_kb(f"/proc/{p}/status", "VmRSS") for p in pids)
    pss = sum(field_kb(f"/proc/{p}/smaps_rollup", "Pss") for p in pids)
    return rss, pss


WORDS = ("the of and to in is that for it as with was on be by at this from or an "
         "mail server message queue inbox relay delivery lunch meeting report budget "
         "quarterly invoice attached please review thanks regards tomorrow agenda "
         "project status update release schedule database storage network").split()


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


def message(rng, i, nbytes, subject):
    header = (f"From: sender{i % 7}@example.org\n"
              f"To: bench@example.org\n"
              f"Subject: {subject}\n"
              f"Date: Mon, 02 Jun 2025 10:{i % 60:02d}:00 +0000\n"
              f"Message-ID: <bench.{i}@example.org>\n"
              f"MIME-Version: 1.0\n"
              f"Content-Type: text/plain; charset=us-ascii\n\n")
    return header + text_lines(rng, max(0, nbytes - len(header)))


def vsize_of(path):
    """The size with CRLF line ends, as POP3 sends it (before dot-stuffing)."""
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


def cmd_corpus(outdir, count):
    """COUNT message files: 2-20 KB each, every 25th 2 MB; a manifest."""
    rng = random.Random(1939)
    os.makedirs(outdir, exist_ok=True)
    manifest = []
    for i in range(1, int(count) + 1):
        nbytes = 2_000_000 if i % 25 == 0 else rng.randint(2_000, 20_000)
        path = os.path.join(outdir, f"msg-{i:05d}.eml")
        with open(path, "w", newline="\n") as f:
            f.write(message(rng, i, nbytes, f"bench message {i} ({nbytes} bytes)"))
        size, vsize = vsize_of(path)
        manifest.append({"path": path, "size": size, "vsize": vsize})
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    print(sum(m["size"] for m in manifest))


def cmd_bigmsg(outdir, mb):
    """One message of MB * 10^6 octets (LF ends), for `big`."""
    rng = random.Random(5034)
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "big-00001.eml")
    target = int(mb) * 1_000_000
    block = text_lines(rng, 1 << 20)
    with open(path, "w", newline="\n") as f:
        head = message(rng, 0, 0, f"big message ({mb} MB)")
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
    size, vsize = vsize_of(path)
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump([{"path": path, "size": size, "vsize": vsize}], f)
    print(size)


def cmd_fill(maildir, manifest_path, uid, gid, generation):
    """Tops MAILDIR up to the manifest's message count by copying the
    missing messages into new/, named as dovecot-lda names them (S= and W=
    sizes), so Dovecot sees freshly delivered mail. Prints how many."""
    with open(manifest_path) as f:
        manifest = json.load(f)
    uid, gid = int(uid), int(gid)
    for sub in ("", "cur", "new", "tmp"):
        d = os.path.join(maildir, sub)
        os.makedirs(d, exist_ok=True)
        os.chown(d, uid, gid)
        os.chmod(d, 0o700)
    have = len(os.listdir(os.path.join(maildir, "cur"))) + len(os.listdir(os.path.join(maildir, "new")))
    now = int(time.time())
    copied = 0
    for i, m in enumerate(manifest[have:], start=have):
        base = f"{now}.M{i}P{os.getpid()}G{generation}.popbench,S={m['size']},W={m['vsize']}"
        tmp = os.path.join(maildir, "tmp", base)
        shutil.copyfile(m["path"], tmp)
        os.chown(tmp, uid, gid)
        os.chmod(tmp, 0o600)
        os.rename(tmp, os.path.join(maildir, "new", base))
        copied += 1
    print(copied)


def cmd_passwd(db, out, scheme, uid, gid, home_root, plain):
    import sqlite3
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT name, password_hash FROM users ORDER BY id").fetchall()
    con.close()
    with open(out, "w") as f:
        for name, phc in rows:
            secret = f"{{PLAIN}}{plain}" if scheme == "PLAIN" else f"{{{scheme}}}{phc}"
            f.write(f"{name}:{secret}:{uid}:{gid}::{home_root}/{name}::\n")
    os.chmod(out, 0o600)
    print(len(rows))


def cmd_first_hash(db):
    import sqlite3
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    print(con.execute("SELECT password_hash FROM users ORDER BY id LIMIT 1").fetchone()[0])


def cmd_check_login(port, user, password, expect):
    """Logs in over POP3 and checks the message count; retries for 30 s."""
    import poplib
    deadline = time.time() + 30
    while True:
        try:
            p = poplib.POP3("127.0.0.1", int(port), timeout=30)
            p.user(user)
            p.pass_(password)
            count, octets = p.stat()
            p.quit()
            if int(expect) >= 0 and count != int(expect):
                sys.exit(f"{user}@{port}: {count} messages, expected {expect}")
            print(f"{count} {octets}")
            return
        except (OSError, poplib.error_proto) as e:
            if time.time() > deadline:
                sys.exit(f"login {user}@127.0.0.1:{port} failed: {e}")
            time.sleep(0.5)


def cmd_sample(root, out, interval, limit):
    """Samples the tree's memory until SIGTERM or LIMIT seconds; keeps
    'peak_rss_kb peak_pss_kb samples' in OUT."""
    import signal
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    root, interval, end = int(root), float(interval), time.time() + float(limit)
    peak_rss, peak_pss, n = 0, 0, 0
    while not stop and time.time() < end:
        rss, pss = memory_kb(root)
        peak_rss, peak_pss, n = max(peak_rss, rss), max(peak_pss, pss), n + 1
        with open(out + ".tmp", "w") as f:
            f.write(f"{peak_rss} {peak_pss} {n}\n")
        os.replace(out + ".tmp", out)
        time.sleep(interval)


def median_time(fn, runs=20):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cmd_hashbound(phc):
    """Median time of 20 argon2id verifications of PHC ('pw'), in seconds,
    with argon2-cffi, then with libsodium (Dovecot's argon2) or None."""
    from argon2 import PasswordHasher
    ph = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
    cffi = median_time(lambda: ph.verify(phc, "pw"))
    sodium = None
    try:
        import ctypes
        import ctypes.util
        lib = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
        if lib.sodium_init() >= 0:
            verify = lib.crypto_pwhash_str_verify
            verify.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong]
            if verify(phc.encode(), b"pw", 2) == 0:
                sodium = median_time(lambda: verify(phc.encode(), b"pw", 2))
    except (OSError, AttributeError):
        pass
    print(f"{cffi:.6f} {sodium if sodium is None else f'{sodium:.6f}'}")


def fmt(x, digits=None):
    if x is None:
        return "n/a"
    if digits is None:
        a = abs(x)
        digits = 0 if a >= 1000 else 1 if a >= 100 else 2 if a >= 1 else 3
    return f"{x:,.{digits}f}"


def cmd_report(results_path, meta_path, out):
    with open(meta_path) as f:
        meta = json.load(f)
    runs = []
    if os.path.exists(results_path):
        with open(results_path) as f:
            runs = [json.loads(line) for line in f if line.strip()]
    lines = []
    w = lines.append
    w("# poplite vs Dovecot (POP3)")
    w("")
    w(f"- date: {meta['date']}, host: {meta['cores']} cores, {meta['mem']}, kernel {meta['kernel']}")
    w(f"- poplite {meta['poplite_rev']} (release build); Dovecot {meta['dovecot']}")
    w(f"- corpus: {meta['users']} mailboxes x {meta['messages']} messages "
      f"({meta['corpus_mb']:.1f} MB per mailbox: 2-20 KB each, every 25th 2 MB), LF line ends"
      + (f"; cycle: {meta['cycle_mailboxes']} more such mailboxes, refilled before each run, "
         "each emptied once per run" if meta.get("cycle_mailboxes") else "")
      + (f"; big0: one {meta['big_mb']} MB message, its user's hash at {meta['cheap_params']} "
         "on both sides so that its RSS growth is the stream's, not a login's argon2 buffer"
         if meta.get("big_mb") else ""))
    w(f"- runs: {meta['rounds']} rounds x {meta['duration']} per scenario, alternating poplite/Dovecot; "
      f"concurrency {meta['concurrency']}; loadgen on the same machine")
    w(f"- passwords: {meta['hash_note']}")
    if meta.get("cheap_runs"):
        w(f"- poplite-cheap: poplite again, on users cheap0.. holding the same mail with "
          f"{meta['cheap_params']} hashes, for the mail path's CPU without hashing")
    w(f"- both servers: auth_failure_delay 1s; Dovecot: {meta['dovecot_tuning']}")
    w("")
    for warning in meta.get("warnings", []):
        w(f"> **WARNING: {warning}**")
        w("")
    w("Medians over rounds. Ratio = poplite / Dovecot "
      "(↑ higher is better, ↓ lower is better). CPU and RSS cover each server's whole "
      "process tree (Dovecot: master and all children); RSS sums VmRSS, so pages shared "
      "between Dovecot's processes count once per process, PSS splits them. `big` counts "
      "CPU per RETR of the big message.")
    w("")
    w("| scenario | metric | poplite | Dovecot | poplite/Dovecot |")
    w("|---|---|---:|---:|---:|")
    any_errors = False
    for scenario in meta["scenarios"]:
        per = {}
        for server in ("poplite", "dovecot"):
            rs = [r for r in runs if r["scenario"] == scenario and r["server"] == server]
            if not rs:
                continue

            def med(key, rs=rs):
                vals = [key(r) for r in rs]
                vals = [v for v in vals if v is not None]
                return statistics.median(vals) if vals else None

            unit = "messages" if scenario == "big" else "sessions"

            def per_unit(r, unit=unit):
                n = r["loadgen"][unit]
                return r["cpu_s"] * 1000 / n if n else None

            errors = sum(sum(r["loadgen"]["errors"].values()) for r in rs)
            any_errors |= errors > 0
            kinds = {}
            for r in rs:
                for k, v in r["loadgen"]["errors"].items():
                    kinds[k] = kinds.get(k, 0) + v
            per[server] = {
                "sessions/s ↑": med(lambda r: r["loadgen"]["sessions_per_s"]),
                "messages/s ↑": med(lambda r: r["loadgen"]["messages_per_s"]),
                "MB/s ↑": med(lambda r: r["loadgen"]["mb_per_s"]),
                "latency p50 ms ↓": med(lambda r: r["loadgen"]["p50_ms"]),
                "latency p99 ms ↓": med(lambda r: r["loadgen"]["p99_ms"]),
                ("CPU ms/RETR ↓" if scenario == "big" else "CPU ms/session ↓"): med(per_unit),
                "CPU cores busy": med(lambda r: r["cpu_s"] / r["loadgen"]["elapsed_s"]),
                "RSS MB, peak in run ↓": med(lambda r: r["rss_peak_kb"] / 1024),
                "PSS MB, peak in run ↓": med(lambda r: r["pss_peak_kb"] / 1024),
                "RSS MB, after run ↓": med(lambda r: r["rss_end_kb"] / 1024),
                "errors (all rounds)": errors,
                "_kinds": kinds,
            }
            if scenario == "big":
                per[server]["RSS MB, growth in run ↓"] = med(
                    lambda r: (r["rss_peak_kb"] - r["rss_before_kb"]) / 1024)
            if scenario == "idle":
                per[server]["connections held ↑"] = med(lambda r: r["loadgen"]["held"])
                per[server]["RSS MB, all held (3 s before the end) ↓"] = med(
                    lambda r: r.get("rss_held_kb", 0) / 1024 or None)
                per[server]["PSS MB, all held (3 s before the end) ↓"] = med(
                    lambda r: r.get("pss_held_kb", 0) / 1024 or None)
                per[server]["RSS KB per held conn ↓"] = med(
                    lambda r: (r["rss_peak_kb"] - r["rss_before_kb"]) / r["loadgen"]["held"]
                    if r["loadgen"]["held"] else None)
                per[server]["PSS KB per held conn ↓"] = med(
                    lambda r: (r["pss_peak_kb"] - r["pss_before_kb"]) / r["loadgen"]["held"]
                    if r["loadgen"]["held"] else None)
        if not per:
            continue
        metrics = [k for k in next(iter(per.values())) if not k.startswith("_")]
        if scenario == "idle":
            metrics = [m for m in metrics if m not in ("sessions/s ↑", "messages/s ↑", "MB/s ↑",
                                                      "latency p50 ms ↓", "latency p99 ms ↓",
                                                      "CPU ms/session ↓")]
        if scenario == "big":
            metrics = [m for m in metrics if m != "sessions/s ↑"]
        if scenario == "login":
            metrics = [m for m in metrics if m not in ("messages/s ↑", "MB/s ↑")]
        for m in metrics:
            a = per.get("poplite", {}).get(m)
            b = per.get("dovecot", {}).get(m)
            ratio = f"{a / b:.2f}" if a is not None and b not in (None, 0) else "n/a"
            if m.startswith("errors"):
                ratio = ""
                a = str(a) + (f" {per['poplite']['_kinds']}" if a else "") if a is not None else "n/a"
                b = str(b) + (f" {per['dovecot']['_kinds']}" if b else "") if b is not None else "n/a"
            else:
                a, b = fmt(a), fmt(b)
            w(f"| {scenario} | {m} | {a} | {b} | {ratio} |")
    w("")
    raw = [r["loadgen"]["mb_per_s"] for r in runs if r["scenario"] == "big" and r["server"] == "raw"]
    if raw:
        ceiling = statistics.median(raw)
        w(f"Plain TCP copy of the same {meta.get('big_mb')} MB message over loopback, same client "
          f"(`loadgen --raw-copy`, written from memory in 256 KiB writes), in the same rounds: "
          f"**{ceiling:,.0f} MB/s**.")
        for server, label in (("poplite", "poplite"), ("dovecot", "Dovecot")):
            rs = [r["loadgen"]["mb_per_s"] for r in runs
                  if r["scenario"] == "big" and r["server"] == server]
            if rs and ceiling:
                w(f"- {label} `big`: {statistics.median(rs):,.0f} MB/s = "
                  f"**{100 * statistics.median(rs) / ceiling:.0f}%** of the plain copy")
        w("")
    def cpu_ms_per_session(scenario, server):
        vals = [r["cpu_s"] * 1000 / r["loadgen"]["sessions"] for r in runs
                if r["scenario"] == scenario and r["server"] == server and r["loadgen"]["sessions"]]
        return statistics.median(vals) if vals else None

    mail = [s for s in ("retr", "cycle") if s in meta["scenarios"]]
    if "login" in meta["scenarios"] and mail:
        w("CPU per session on the mail path: each scenario's CPU ms/session less `login`'s "
          "(which is about one argon2id verification and the login exchange):")
        w("")
        w("| scenario | poplite ms | Dovecot ms | poplite/Dovecot |")
        w("|---|---:|---:|---:|")
        for scenario in mail:
            d = {}
            for server in ("poplite", "dovecot"):
                total, login = cpu_ms_per_session(scenario, server), cpu_ms_per_session("login", server)
                d[server] = total - login if total is not None and login is not None else None
            a, b = d["poplite"], d["dovecot"]
            ratio = f"{a / b:.2f}" if a is not None and b else "n/a"
            w(f"| {scenario} | {fmt(a)} | {fmt(b)} | {ratio} |")
        w("")
    any_errors |= cpu_split_section(w, meta, runs, cpu_ms_per_session)
    hb = meta.get("hash_verify_s")
    if hb:
        bound = meta["cores"] / hb
        w(f"Hashing bound for `login`: {meta['cores']} cores / {hb * 1000:.1f} ms per argon2id "
          f"verification ({meta['hash_params']}; argon2-cffi, median of 20) = **{bound:.1f} logins/s**. "
          "It is argon2-cffi's speed, so a server whose own argon2 is faster can pass 100%; "
          "each server's own ceiling follows.")
        for server, label in (("poplite", "poplite"), ("dovecot", "Dovecot")):
            rs = [r["loadgen"]["sessions_per_s"] for r in runs
                  if r["scenario"] == "login" and r["server"] == server]
            if rs:
                s = statistics.median(rs)
                w(f"- {label}: {s:.1f} sessions/s = **{100 * s / bound:.0f}%** of the bound")
        w("")
    single, sodium = meta.get("single_login"), meta.get("sodium_verify_s")
    if "login" in meta["scenarios"] and (single or sodium):
        w("Each server's own argon2id implementation (approximate ceilings for `login`):")
        w("")
        if sodium:
            w(f"- libsodium (Dovecot's argon2), one verification in-process: {sodium * 1000:.1f} ms")
        if single:
            w(f"- one login at a time (USER, PASS, STAT, QUIT; p50 over 3 s), about one verification "
              f"plus the protocol: poplite {single['poplite_s'] * 1000:.1f} ms (RustCrypto `argon2`), "
              f"Dovecot {single['dovecot_s'] * 1000:.1f} ms (libsodium)")
            pc = meta["cores"] / single["poplite_s"]
            dc = 1 / single["dovecot_s"]
            w(f"- ceilings: poplite verifies on every core: {meta['cores']} / {single['poplite_s'] * 1000:.1f} ms "
              f"= {pc:.0f} logins/s. Dovecot 2.3 verifies passwd-file passwords inside its single `auth` "
              f"process, so one core: 1 / {single['dovecot_s'] * 1000:.1f} ms = {dc:.0f} logins/s")
            for server, label, ceiling in (("poplite", "poplite", pc), ("dovecot", "Dovecot", dc)):
                rs = [r["loadgen"]["sessions_per_s"] for r in runs
                      if r["scenario"] == "login" and r["server"] == server]
                if rs:
                    w(f"- {label}: {100 * statistics.median(rs) / ceiling:.0f}% of its own ceiling")
        w("")
    w("Per run (rounds in order):")
    w("")
    w("| scenario | round | server | sessions/s | messages/s | MB/s | p50 ms | p99 ms | CPU s | of it hashing s | RSS peak MB | errors |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        g = r["loadgen"]
        w(f"| {r['scenario']} | {r['round']} | {r['server']} | {fmt(g['sessions_per_s'])} | "
          f"{fmt(g['messages_per_s'])} | {fmt(g['mb_per_s'])} | {fmt(g['p50_ms'])} | {fmt(g['p99_ms'])} | "
          f"{fmt(r['cpu_s'])} | {fmt(r.get('hash_cpu_s')) if r['server'].startswith('poplite') else ''} | "
          f"{fmt(r['rss_peak_kb'] / 1024)} | {sum(g['errors'].values())} |")
    w("")
    text = "\n".join(lines)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
    sys.exit(3 if any_errors else 0)


def cpu_split_section(w, meta, runs, cpu_ms_per_session):
    """Where poplite's CPU per session goes (its argon2 threads against
    everything else), against the target of half Dovecot's; True if a
    poplite-cheap run had errors."""
    def split(scenario, server):
        rs = [r for r in runs if r["scenario"] == scenario and r["server"] == server
              and r["loadgen"]["sessions"] and "hash_cpu_s" in r]
        if not rs:
            return None
        per_session = [(r["hash_cpu_s"] * 1000 / r["loadgen"]["sessions"],
                        (r["cpu_s"] - r["hash_cpu_s"]) * 1000 / r["loadgen"]["sessions"]) for r in rs]
        # Medians of each part over rounds, so the two may not add up to the
        # median total exactly.
        return (statistics.median(h for h, _ in per_session),
                statistics.median(rest for _, rest in per_session))

    rows = [(s, split(s, "poplite"), cpu_ms_per_session(s, "dovecot")) for s in ("retr", "cycle")]
    rows = [(s, sp, d) for s, sp, d in rows if sp and d]
    if not rows:
        return False
    cheap = split("retr", "poplite-cheap")
    errors = sum(sum(r["loadgen"]["errors"].values()) for r in runs if r["server"] == "poplite-cheap")
    w("Where poplite's CPU per session goes, against the target of ½ Dovecot's: hashing is "
      "the CPU of its argon2 threads (read per thread from /proc), the rest is everything else "
      "in the process (medians over rounds):")
    w("")
    w("| scenario | hashing ms | rest ms | total ms | target: ½ Dovecot's ms | left for the rest after hashing ms |")
    w("|---|---:|---:|---:|---:|---:|")
    for scenario, (hashing, rest), dovecot in rows:
        w(f"| {scenario} | {fmt(hashing)} | {fmt(rest)} | {fmt(hashing + rest)} | {fmt(dovecot / 2)} | "
          f"{fmt(dovecot / 2 - hashing)} |")
    if cheap:
        w(f"| retr, poplite-cheap ({meta['cheap_params']}) | {fmt(cheap[0])} | {fmt(cheap[1])} | "
          f"{fmt(sum(cheap))} |  |  |")
    w("")
    sodium = meta.get("sodium_verify_s")
    for scenario, (hashing, rest), dovecot in rows:
        target = dovecot / 2
        total = cpu_ms_per_session(scenario, "poplite")
        left = target - hashing
        verdict = "met" if total <= target else "not met"
        line = (f"- `{scenario}`: {verdict} in this run ({fmt(total)} ms against {fmt(target)}). "
                f"Hashing takes {100 * hashing / target:.0f}% of the target, leaving {fmt(left)} ms "
                f"for the rest, which costs {fmt(rest)} ms here")
        if cheap:
            # Without real hashing the rest is at its least: no argon2 thread
            # evicts the caches it works in. cycle RETRs the same mail as retr
            # and deletes it too, so retr's cheap rest is under cycle's.
            line += f" and {fmt(cheap[1])} ms with no real hashing in the process (`retr`, poplite-cheap)"
        w(line + ".")
    if sodium:
        ms = sodium * 1000

        def after_sodium(scenario, dovecot):
            left = dovecot / 2 - ms
            if left < 0:
                return f"`{scenario}`'s target is {fmt(-left)} ms short of the hash alone"
            return f"`{scenario}` leaves {fmt(left)} ms for the rest"

        w(f"- one libsodium verification (Dovecot's argon2, in-process) takes {fmt(ms)} ms; at that "
          "speed " + ", ".join(after_sodium(scenario, dovecot) for scenario, _, dovecot in rows) + ".")
    if errors:
        w(f"- poplite-cheap runs had {errors} errors.")
    w("")
    return errors > 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "tree":
        print("\n".join(str(p) for p in tree(int(args[0]))))
    elif cmd == "cpu":
        print(f"{cpu_seconds(int(args[0])):.3f}")
    elif cmd == "hashcpu":
        print(f"{hashing_cpu_seconds(int(args[0])):.3f}")
    elif cmd == "mem":
        print(*memory_kb(int(args[0])))
    else:
        {"corpus": cmd_corpus, "bigmsg": cmd_bigmsg, "fill": cmd_fill, "passwd": cmd_passwd,
         "first-hash": cmd_first_hash, "check-login": cmd_check_login, "sample": cmd_sample,
         "hashbound": cmd_hashbound, "report": cmd_report}[cmd](*args)


main()
PY
TOOLS=(python3 "$W/tools.py")

# ---------------------------------------------------------------- ports
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
for p in "$PORT_A" "$PORT_B"; do
    if port_open "$p"; then die "127.0.0.1:$p is already in use (choose --port-a/--port-b)"; fi
done

# Waits (at most 30 s) for 127.0.0.1:PORT to accept, while PID lives.
wait_port() {
    local port=$1 pid=$2 name=$3 i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || die "$name exited before listening (see $W/$name.log)"
        if port_open "$port"; then return 0; fi
        sleep 0.1
    done
    die "$name did not listen on 127.0.0.1:$port within 30 s"
}

# ---------------------------------------------------------------- mail user
if ! id popbench >/dev/null 2>&1; then
    log "creating system user popbench"
    useradd --system --no-create-home --shell /usr/sbin/nologin popbench
fi
MAIL_UID=$(id -u popbench)
MAIL_GID=$(id -g popbench)

# ---------------------------------------------------------------- corpus
log "work directory: $W"
log "generating corpus: $MESSAGES messages per mailbox"
CORPUS_BYTES=$("${TOOLS[@]}" corpus "$W/corpus" "$MESSAGES")
mapfile -t CORPUS_FILES < <(ls "$W"/corpus/msg-*.eml)
if has_scenario big; then
    log "generating the ${BIG_MB} MB message for big0"
    BIG_BYTES=$("${TOOLS[@]}" bigmsg "$W/corpus-big" "$BIG_MB")
fi

# ---------------------------------------------------------------- poplite set-up
DB=$W/poplite.db
add_user() { # user [argon2 params]
    local params=${2:-$ARGON2}
    printf 'pw\n' | "$POPLITE" --db "$DB" user add "$1" --password-stdin ${params:+--argon2-params "$params"} >/dev/null
}
# Delivers messages so that USER has all of them again: only the missing
# ones (the last ones of the corpus), as Dovecot's fill does.
poplite_fill() {
    local user=$1 have
    have=$("$POPLITE" --db "$DB" user list | awk -F'\t' -v u="$user" '$1 == u { print $2 }')
    have=${have:-0}
    if [[ $have -lt ${#CORPUS_FILES[@]} ]]; then
        "$POPLITE" --db "$DB" deliver "$user" "${CORPUS_FILES[@]:$have}" >/dev/null
    fi
}

log "poplite: adding $USERS users (argon2id $ARGON2_LABEL) and delivering"
for ((i = 0; i < USERS; i++)); do
    add_user "bench$i"
    poplite_fill "bench$i"
done
if $CHEAP_RUNS; then
    log "poplite: adding $USERS users cheap0.. (argon2id $CHEAP_ARGON2) with the same mail, for the CPU split"
    for ((i = 0; i < USERS; i++)); do
        add_user "cheap$i" "$CHEAP_ARGON2"
        poplite_fill "cheap$i"
    done
fi
if has_scenario cycle; then
    log "poplite: adding $CYCLE_MAILBOXES users cycle0.. for cycle (filled before each run)"
    for ((i = 0; i < CYCLE_MAILBOXES; i++)); do add_user "cycle$i"; done
fi
if has_scenario big; then
    add_user big0 "$CHEAP_ARGON2"
    MAX_SIZE=$((BIG_BYTES * 2 + 1000000))
    if [[ $MAX_SIZE -lt 300000000 ]]; then MAX_SIZE=300000000; fi
    "$POPLITE" --db "$DB" deliver big0 "$W/corpus-big/big-00001.eml" --max-message-size "$MAX_SIZE" >/dev/null
fi
if has_scenario idle; then
    log "poplite: adding $IDLE_CONNS users idle0.. for idle (one mailbox per held connection)"
    export POPLITE DB ARGON2
    # shellcheck disable=SC2016 # expanded by the inner bash
    seq 0 $((IDLE_CONNS - 1)) | xargs -P "$CORES" -n 50 bash -c '
        for i in "$@"; do printf "pw\n" | "$POPLITE" --db "$DB" user add "idle$i" --password-stdin ${ARGON2:+--argon2-params "$ARGON2"} >/dev/null || exit 255; done
    ' _
fi

# ---------------------------------------------------------------- Dovecot set-up
: >"$W/warnings.txt"
PHC=$("${TOOLS[@]}" first-hash "$DB")
DCONF=$W/dovecot/dovecot.conf
mkdir -p "$W/dovecot/run" "$W/dovecot/state" "$W/home"
chmod 755 "$W/dovecot" "$W/home"

write_dovecot_conf() {
    # `idle` holds one pop3 process per connection: raise the limits
    # (service pop3's own process_limit defaults to 1024).
    local extra_limits="" pop3_limit=""
    if has_scenario idle; then
        extra_limits="default_client_limit = $((IDLE_CONNS * 2 + 1000))
default_process_limit = $((IDLE_CONNS + 256))"
        pop3_limit="process_limit = $((IDLE_CONNS + 256))"
    fi
    cat >"$DCONF" <<EOF
# Generated by bench/compare.sh
base_dir = $W/dovecot/run
state_dir = $W/dovecot/state
instance_name = popbench-$$
log_path = $W/dovecot.log
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
first_valid_uid = $MAIL_UID
first_valid_gid = $MAIL_GID
listen = 127.0.0.1
verbose_proctitle = no
$extra_limits
passdb {
  driver = passwd-file
  args = $W/dovecot/users
}
userdb {
  driver = passwd-file
  args = $W/dovecot/users
}
# High-performance mode, as Dovecot's docs describe it: login processes
# serve many clients each, one per core is kept ready.
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $PORT_B
  }
  inet_listener pop3s {
    port = 0
  }
  service_count = 0
  process_min_avail = $CORES
}
service pop3 {
  process_min_avail = $CORES
  $pop3_limit
}
# Without this, anvil slows down repeated logins from one IP.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF
}
write_dovecot_conf

HASH_SCHEME=ARGON2ID
if doveadm -c "$DCONF" pw -t "{ARGON2ID}$PHC" -p pw >/dev/null 2>&1; then
    HASH_NOTE="the same argon2id PHC strings ($ARGON2_LABEL) on both sides; Dovecot reads them as {ARGON2ID}"
else
    HASH_SCHEME=PLAIN
    HASH_NOTE="DIFFERENT: poplite argon2id ($ARGON2_LABEL), Dovecot {PLAIN} (this Dovecot cannot verify {ARGON2ID})"
    MSG="this Dovecot build does not accept {ARGON2ID}\$argon2id\$...: Dovecot uses {PLAIN} passwords, so login numbers are NOT comparable"
    echo "$MSG" >>"$W/warnings.txt"
    warn "$MSG"
fi
"${TOOLS[@]}" passwd "$DB" "$W/dovecot/users" "$HASH_SCHEME" "$MAIL_UID" "$MAIL_GID" "$W/home" pw >/dev/null
chown root:dovecot "$W/dovecot/users" 2>/dev/null || true
chmod 640 "$W/dovecot/users"

log "Dovecot: maildirs"
dovecot_fill() { # user generation
    "${TOOLS[@]}" fill "$W/home/$1/Maildir" "$2" "$MAIL_UID" "$MAIL_GID" "$3" >/dev/null
}
make_home() {
    mkdir -p "$W/home/$1"
    chown "$MAIL_UID:$MAIL_GID" "$W/home/$1"
    chmod 700 "$W/home/$1"
}
for ((i = 0; i < USERS; i++)); do
    make_home "bench$i"
    dovecot_fill "bench$i" "$W/corpus/manifest.json" 0
done
if has_scenario cycle; then
    for ((i = 0; i < CYCLE_MAILBOXES; i++)); do make_home "cycle$i"; done
fi
if has_scenario big; then
    make_home big0
    dovecot_fill big0 "$W/corpus-big/manifest.json" 0
fi
if has_scenario idle; then
    for ((i = 0; i < IDLE_CONNS; i++)); do mkdir -p "$W/home/idle$i"; done
    chown "$MAIL_UID:$MAIL_GID" "$W"/home/idle*
fi

doveconf -c "$DCONF" -n >"$W/dovecot/doveconf-n.txt" 2>"$W/dovecot/doveconf.err" ||
    die "Dovecot rejects the configuration: $(cat "$W/dovecot/doveconf.err")"

# ---------------------------------------------------------------- start servers
# Every load-generator connection comes from 127.0.0.1: no per-address limit.
SERVE_EXTRA=(--max-connections-per-ip 0)
if has_scenario idle; then SERVE_EXTRA+=(--max-connections $((IDLE_CONNS + 256))); fi
log "starting poplite on 127.0.0.1:$PORT_A and Dovecot on 127.0.0.1:$PORT_B"
RUST_LOG=warn "$POPLITE" --db "$DB" serve --listen "127.0.0.1:$PORT_A" --auth-failure-delay 1s \
    "${SERVE_EXTRA[@]}" </dev/null >"$W/poplite.out" 2>"$W/poplite.log" &
PID_A=$!
dovecot -F -c "$DCONF" </dev/null >"$W/dovecot.out" 2>&1 &
PID_B=$!
wait_port "$PORT_A" "$PID_A" poplite
wait_port "$PORT_B" "$PID_B" dovecot
for ((i = 0; i < 50; i++)); do
    if grep -q '^poplite listening on ' "$W/poplite.out"; then break; fi
    sleep 0.1
done
grep -q "^poplite listening on 127.0.0.1:$PORT_A" "$W/poplite.out" ||
    die "poplite did not report 'poplite listening on 127.0.0.1:$PORT_A'"

for port in "$PORT_A" "$PORT_B"; do
    "${TOOLS[@]}" check-login "$port" bench0 pw "$MESSAGES" >/dev/null
    if has_scenario big; then "${TOOLS[@]}" check-login "$port" big0 pw 1 >/dev/null; fi
    if has_scenario idle; then "${TOOLS[@]}" check-login "$port" idle0 pw 0 >/dev/null; fi
done
log "both servers answer a login as bench0 with $MESSAGES messages"

# Warm-up: Dovecot builds its index files on a mailbox's first session, and
# both servers get their pages cached. Not measured.
log "warm-up (not measured)"
for port in "$PORT_A" "$PORT_B"; do
    "$LOADGEN" --addr "127.0.0.1:$port" --scenario retr --concurrency "$USERS" --duration 1s \
        --users 'bench%d' --user-count "$USERS" --password pw >/dev/null
    if has_scenario big; then "${TOOLS[@]}" check-login "$port" big0 pw 1 >/dev/null; fi
done

# ---------------------------------------------------------------- hashing bound
HASH_VERIFY_S=""
SODIUM_VERIFY_S=""
SINGLE_LOGIN=""
if has_scenario login; then
    PYLIB=$W/pylib
    if ! python3 -c 'import argon2' 2>/dev/null; then
        log "installing argon2-cffi (into $PYLIB)"
        python3 -m pip install -q --target "$PYLIB" argon2-cffi >/dev/null 2>&1 ||
            apt_install python3-argon2 ||
            true
    fi
    if HASHBOUND=$(PYTHONPATH=$PYLIB "${TOOLS[@]}" hashbound "$PHC" 2>/dev/null); then
        read -r HASH_VERIFY_S SODIUM_VERIFY_S <<<"$HASHBOUND"
        log "one argon2id verification: argon2-cffi $HASH_VERIFY_S s, libsodium $SODIUM_VERIFY_S s"
    else
        HASH_VERIFY_S=""
        echo "argon2-cffi unavailable: the login hashing bound is not measured" >>"$W/warnings.txt"
        warn "argon2-cffi unavailable: the login hashing bound is not measured"
    fi
    # One login at a time: its latency is about one verification in each
    # server's own argon2 (RustCrypto in poplite, libsodium in Dovecot).
    for port in "$PORT_A" "$PORT_B"; do
        "$LOADGEN" --addr "127.0.0.1:$port" --scenario login --concurrency 1 --duration 3s \
            --users bench0 --user-count 1 --password pw --json "$W/single-login-$port.json" >/dev/null
    done
    SINGLE_LOGIN=$(python3 -c '
import json, sys
a, b = (json.load(open(p))["p50_ms"] / 1000 for p in sys.argv[1:])
print(json.dumps({"poplite_s": a, "dovecot_s": b}))' "$W/single-login-$PORT_A.json" "$W/single-login-$PORT_B.json")
    log "one login at a time, p50: $SINGLE_LOGIN"
fi

# ---------------------------------------------------------------- runs
RESULTS=$W/results.jsonl
: >"$RESULTS"
GENERATION=0

# run_one SCENARIO ROUND SERVER PORT PID
run_one() {
    local scenario=$1 round=$2 server=$3 port=$4 pid=$5
    local dur=$DURATION dur_s=$DURATION_S conc=$CONCURRENCY users='bench%d' count=$USERS
    local extra=()
    case $scenario in
    big) users='big%d' count=1 conc=1 ;;
    retr) if [[ $server == poplite-cheap ]]; then users='cheap%d'; fi ;;
    idle)
        users='idle%d' count=$IDLE_CONNS conc=$IDLE_CONNS dur=$IDLE_DURATION dur_s=$IDLE_DURATION_S
        extra=(--timeout 600s)
        ;;
    cycle)
        users='cycle%d' count=$CYCLE_MAILBOXES
        GENERATION=$((GENERATION + 1))
        local i
        for ((i = 0; i < CYCLE_MAILBOXES; i++)); do
            if [[ $server == poplite ]]; then
                poplite_fill "cycle$i"
            else
                dovecot_fill "cycle$i" "$W/corpus/manifest.json" "$GENERATION"
            fi
        done
        sync
        ;;
    esac
    local json=$W/run-$scenario-$round-$server.json
    local mem_before cpu_before cpu_after mem_end hash_before hash_after
    mem_before=$("${TOOLS[@]}" mem "$pid")
    rm -f "$W/sample"
    "${TOOLS[@]}" sample "$pid" "$W/sample" 0.5 "$(awk -v d="$dur_s" 'BEGIN { print d + 900 }')" &
    SAMPLER_PID=$!
    cpu_before=$("${TOOLS[@]}" cpu "$pid")
    hash_before=$("${TOOLS[@]}" hashcpu "$pid")
    # Bounded: loadgen stops at its deadline; `timeout` is the backstop.
    timeout --kill-after=10 "$(awk -v d="$dur_s" 'BEGIN { printf "%d", d * 2 + 600 }')" \
        "$LOADGEN" --addr "127.0.0.1:$port" --scenario "$scenario" --concurrency "$conc" \
        --duration "$dur" --users "$users" --user-count "$count" --password pw \
        --json "$json" "${extra[@]}" >"$W/run-$scenario-$round-$server.txt" 2>&1 &
    LOADGEN_PID=$!
    # idle: memory while every connection is held, 3 s before the end.
    rm -f "$W/held"
    if [[ $scenario == idle ]]; then
        (sleep "$(awk -v d="$dur_s" 'BEGIN { print (d > 6 ? d - 3 : d / 2) }')" &&
            "${TOOLS[@]}" mem "$pid" >"$W/held") &
    fi
    local lg_status=0
    wait "$LOADGEN_PID" || lg_status=$?
    LOADGEN_PID=""
    cpu_after=$("${TOOLS[@]}" cpu "$pid")
    hash_after=$("${TOOLS[@]}" hashcpu "$pid")
    mem_end=$("${TOOLS[@]}" mem "$pid")
    kill -TERM "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
    [[ $lg_status -eq 0 && -s $json ]] ||
        die "loadgen failed (exit $lg_status) on $server/$scenario: $(tail -5 "$W/run-$scenario-$round-$server.txt")"
    kill -0 "$pid" 2>/dev/null || die "$server died during $scenario"
    local sample="0 0 0" held="0 0"
    if [[ -s $W/sample ]]; then sample=$(cat "$W/sample"); fi
    if [[ -s $W/held ]]; then held=$(cat "$W/held"); fi
    python3 - "$json" "$scenario" "$round" "$server" "$cpu_before" "$cpu_after" "$hash_before" "$hash_after" \
        "$mem_before" "$sample" "$mem_end" "$held" >>"$RESULTS" <<'PY'
import json, sys
j, scenario, rnd, server, c0, c1, h0, h1, before, sample, end, held = sys.argv[1:]
with open(j) as f:
    lg = json.load(f)
rss0, pss0 = map(int, before.split())
peak_rss, peak_pss, _ = map(int, sample.split())
rss1, pss1 = map(int, end.split())
print(json.dumps({"scenario": scenario, "round": int(rnd), "server": server, "loadgen": lg,
                  "cpu_s": float(c1) - float(c0), "hash_cpu_s": float(h1) - float(h0),
                  "rss_before_kb": rss0, "pss_before_kb": pss0,
                  "rss_peak_kb": max(peak_rss, rss1), "pss_peak_kb": max(peak_pss, pss1),
                  "rss_end_kb": rss1, "pss_end_kb": pss1,
                  "rss_held_kb": int(held.split()[0]), "pss_held_kb": int(held.split()[1])}))
PY
    python3 - "$RESULTS" >&2 <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    r = json.loads(f.readlines()[-1])
g = r["loadgen"]
errors = sum(g["errors"].values())
print(f"    {r['scenario']:<6} round {r['round']} {r['server']:<13} {g['sessions_per_s']:8.1f} sess/s "
      f"{g['messages_per_s']:8.1f} msg/s {g['mb_per_s']:7.1f} MB/s  p50 {g['p50_ms']:8.2f} ms "
      f"p99 {g['p99_ms']:8.2f} ms  cpu {r['cpu_s']:6.2f} s  rss {r['rss_peak_kb'] / 1024:7.1f} MB "
      f"pss {r['pss_peak_kb'] / 1024:7.1f} MB"
      + (f"  held {g['held']}" if r["scenario"] == "idle" else "")
      + (f"  ERRORS {g['errors']}" if errors else ""))
PY
}

# run_raw_copy ROUND: `big` against a plain TCP copy of the same message,
# with the same client, the ceiling both servers are measured against.
run_raw_copy() {
    local round=$1 json=$W/run-big-$1-raw.json
    timeout --kill-after=10 "$(awk -v d="$DURATION_S" 'BEGIN { printf "%d", d * 2 + 600 }')" \
        "$LOADGEN" --scenario big --concurrency 1 --duration "$DURATION" --users big0 \
        --raw-copy "$W/corpus-big/big-00001.eml" --json "$json" >"$W/run-big-$round-raw.txt" 2>&1 ||
        die "loadgen --raw-copy failed: $(tail -5 "$W/run-big-$round-raw.txt")"
    python3 - "$json" "$round" >>"$RESULTS" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    lg = json.load(f)
print(json.dumps({"scenario": "big", "round": int(sys.argv[2]), "server": "raw", "loadgen": lg,
                  "cpu_s": 0.0, "rss_before_kb": 0, "pss_before_kb": 0, "rss_peak_kb": 0,
                  "pss_peak_kb": 0, "rss_end_kb": 0, "pss_end_kb": 0}))
PY
    printf '    big    round %s raw copy %8.1f MB/s\n' "$round" \
        "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["mb_per_s"])' "$json")" >&2
}

for scenario in "${SCENARIO_LIST[@]}"; do
    log "scenario $scenario: $ROUNDS rounds"
    for ((round = 1; round <= ROUNDS; round++)); do
        run_one "$scenario" "$round" poplite "$PORT_A" "$PID_A"
        run_one "$scenario" "$round" dovecot "$PORT_B" "$PID_B"
        if $CHEAP_RUNS && [[ $scenario == retr ]]; then
            run_one "$scenario" "$round" poplite-cheap "$PORT_A" "$PID_A"
        fi
        if [[ $scenario == big ]]; then run_raw_copy "$round"; fi
    done
done

# ---------------------------------------------------------------- report
export M_DATE M_CORES=$CORES M_KERNEL M_REV=$REV M_DOVECOT=$DOVECOT_VERSION M_USERS=$USERS M_CYCLE=$CYCLE_MAILBOXES \
    M_MESSAGES=$MESSAGES M_CORPUS_BYTES=$CORPUS_BYTES M_BIG_MB="" M_ROUNDS=$ROUNDS \
    M_DURATION=$DURATION M_CONCURRENCY=$CONCURRENCY M_HASH_NOTE=$HASH_NOTE M_HASH_PARAMS=$ARGON2_LABEL \
    M_HASH_VERIFY_S=$HASH_VERIFY_S M_SODIUM_VERIFY_S=$SODIUM_VERIFY_S M_SINGLE_LOGIN=$SINGLE_LOGIN \
    M_SCENARIOS=$SCENARIOS M_WARNINGS=$W/warnings.txt M_CHEAP=$CHEAP_ARGON2 M_CHEAP_RUNS=$CHEAP_RUNS
M_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
M_KERNEL=$(uname -r)
if has_scenario big; then M_BIG_MB=$BIG_MB; fi
if has_scenario idle; then M_DURATION="$DURATION (idle: $IDLE_DURATION, $IDLE_CONNS connections)"; fi
M_TUNING="pop3-login service_count=0 + process_min_avail=$CORES, pop3 process_min_avail=$CORES, auth_cache_size=0,"
M_TUNING+=" anvil auth penalty off, info log to /dev/null, maildir files named with S=/W= sizes as dovecot-lda names them"
export M_TUNING
python3 - "$W/meta.json" <<'PY'
import json, os, sys
e = os.environ
num = lambda k: float(e[k]) if e.get(k) not in (None, "", "None") else None
with open(e["M_WARNINGS"]) as f:
    warnings = [line.rstrip("\n") for line in f if line.strip()]
with open("/proc/meminfo") as f:
    mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
meta = {
    "date": e["M_DATE"], "cores": int(e["M_CORES"]), "mem": f"{mem_kb / 1048576:.0f} GiB RAM",
    "kernel": e["M_KERNEL"], "poplite_rev": e["M_REV"], "dovecot": e["M_DOVECOT"],
    "users": int(e["M_USERS"]), "messages": int(e["M_MESSAGES"]),
    "cycle_mailboxes": int(e["M_CYCLE"]) if "cycle" in e["M_SCENARIOS"].split() else None,
    "corpus_mb": int(e["M_CORPUS_BYTES"]) / 1e6,
    "big_mb": int(e["M_BIG_MB"]) if e["M_BIG_MB"] else None,
    "rounds": int(e["M_ROUNDS"]), "duration": e["M_DURATION"],
    "concurrency": int(e["M_CONCURRENCY"]), "hash_note": e["M_HASH_NOTE"], "hash_params": e["M_HASH_PARAMS"],
    "hash_verify_s": num("M_HASH_VERIFY_S"), "sodium_verify_s": num("M_SODIUM_VERIFY_S"),
    "single_login": json.loads(e["M_SINGLE_LOGIN"]) if e["M_SINGLE_LOGIN"] else None,
    "cheap_params": e["M_CHEAP"], "cheap_runs": e["M_CHEAP_RUNS"] == "true",
    "dovecot_tuning": e["M_TUNING"], "scenarios": e["M_SCENARIOS"].split(), "warnings": warnings,
}
with open(sys.argv[1], "w") as f:
    json.dump(meta, f)
PY

REPORT_STATUS=0
"${TOOLS[@]}" report "$RESULTS" "$W/meta.json" "$W/report.md" || REPORT_STATUS=$?
[[ $REPORT_STATUS -eq 0 || $REPORT_STATUS -eq 3 ]] || die "report failed"
if [[ -n $OUT ]]; then
    mkdir -p "$(dirname "$OUT")"
    cp "$W/report.md" "$OUT"
    log "report written to $OUT"
fi
if [[ $REPORT_STATUS -eq 3 ]]; then
    warn "some loadgen runs reported errors (see the errors rows; logs in $W when run with --keep)"
    exit 2
fi
