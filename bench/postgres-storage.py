#!/usr/bin/env python3
"""How message bodies are stored in PostgreSQL, measured side by side: the
same mail, the same poplite node, users whose bodies were stored with
PostgreSQL's default (pglz-compressed TOAST), with lz4 compression, and
uncompressed (STORAGE EXTERNAL), loadgen `retr` on each in turn, round
after round. ALTER TABLE ... SET STORAGE / SET COMPRESSION apply to rows
stored afterwards, so one table holds all three.

    bench/postgres-storage.py [POPLITE] [LOADGEN] [--rounds N] [--duration D]

POPLITE and LOADGEN default to target/release/poplite and
target/release/examples/loadgen (cargo build --release --bin poplite
--example loadgen). Run as root (the cluster's initdb runs as the postgres
user); the cluster is made as compare.py --postgres makes it (fsync on) in
a temporary directory, removed at the end. Prints a markdown report.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from comparison.common import CHEAP_ARGON2, PASSWORD, REPO, Failure, log
from comparison.corpus import write_corpus
from comparison.measure import tree_cpu_seconds
from comparison.options import duration_seconds
from comparison.postgres import free_port, psql, start_cluster, stop_cluster
from comparison.stats import fmt, median_or_none, ratio
from comparison.system import port_open, source_revision

USERS = 8
# Each variant: the statements that make the rows stored next use it.
VARIANTS = (
    ("pglz", "ALTER TABLE message_chunks ALTER COLUMN data SET STORAGE EXTENDED;"
             "ALTER TABLE message_chunks ALTER COLUMN data SET COMPRESSION pglz"),
    ("lz4", "ALTER TABLE message_chunks ALTER COLUMN data SET STORAGE EXTENDED;"
            "ALTER TABLE message_chunks ALTER COLUMN data SET COMPRESSION lz4"),
    ("external", "ALTER TABLE message_chunks ALTER COLUMN data SET STORAGE EXTERNAL"),
)


def poplite_cli(poplite, url, *args, stdin_text=None):
    subprocess.run([poplite, "--db", url, *args], input=stdin_text, text=True, check=True,
                   stdout=subprocess.DEVNULL, timeout=600)


def set_up(poplite, cluster, corpus):
    """USERS users per variant, each with the whole corpus, stored the
    variant's way; then the column's defaults again."""
    poplite_cli(poplite, cluster.url, "user", "list")  # makes the schema
    for name, sql in VARIANTS:
        log(f"{name}: {USERS} users with the corpus")
        psql(cluster, sql)
        for i in range(USERS):
            poplite_cli(poplite, cluster.url, "user", "add", f"{name}{i}", "--password-stdin",
                        "--argon2-params", CHEAP_ARGON2, stdin_text=PASSWORD + "\n")
            poplite_cli(poplite, cluster.url, "deliver", f"{name}{i}", *corpus)
    psql(cluster, VARIANTS[0][1])


def stored_bytes(cluster, name):
    """The bodies of NAME0's messages as stored (after compression)."""
    return int(psql(cluster, "SELECT sum(pg_column_size(c.data)) FROM message_chunks c "
                             "JOIN messages m ON m.id = c.message_id JOIN users u "
                             f"ON u.id = m.user_id WHERE u.name = '{name}0'").strip())


def run(loadgen, port, name, duration, out):
    subprocess.run([loadgen, "--addr", f"127.0.0.1:{port}", "--scenario", "retr",
                    "--concurrency", str(USERS), "--duration", duration, "--users", f"{name}%d",
                    "--user-count", str(USERS), "--password", PASSWORD, "--json", out],
                   check=True, stdout=subprocess.DEVNULL, timeout=3600)
    with open(out) as f:
        return json.load(f)


def measure(loadgen, port, node, cluster, rounds, duration, work):
    """Rounds of retr on each variant in turn; {variant: [record]}."""
    records = {name: [] for name, _ in VARIANTS}
    for round_no in range(1, rounds + 1):
        for name, _ in VARIANTS:
            cpu0, db0 = tree_cpu_seconds(node.pid), tree_cpu_seconds(cluster.postmaster_pid)
            g = run(loadgen, port, name, duration, os.path.join(work, f"{name}-{round_no}.json"))
            cpu1, db1 = tree_cpu_seconds(node.pid), tree_cpu_seconds(cluster.postmaster_pid)
            records[name].append({"loadgen": g, "poplite_s": cpu1 - cpu0, "db_s": db1 - db0})
            n = g["sessions"] or 1
            log(f"round {round_no} {name:8} {g['sessions_per_s']:7.1f} sessions/s, CPU per "
                f"session: poplite {1000 * (cpu1 - cpu0) / n:.2f} ms, PostgreSQL "
                f"{1000 * (db1 - db0) / n:.2f} ms, errors {g['errors']}")
    return records


def report(records, sizes, raw, args, cluster):
    def med(name, f):
        return median_or_none(f(r) for r in records[name] if r["loadgen"]["sessions"])

    def per_session(key):
        return lambda r: r[key] * 1000 / r["loadgen"]["sessions"]

    lines = [
        "# poplite on PostgreSQL: how bodies are stored",
        "",
        f"- poplite {source_revision()} (release build); date {time.strftime('%Y-%m-%d %H:%M')}",
        (f"- PostgreSQL {cluster.version} (fsync on), one poplite node, loadgen `retr`, "
         f"concurrency {USERS}, {args.rounds} rounds x {args.duration}, variants in turn in "
         "each round; the same 50 messages (2-20 KB, every 25th 2 MB) per mailbox"),
        "- CPU per session: the poplite process, and the cluster's whole process tree",
        "",
        ("| bodies stored | stored octets per mailbox (of the corpus's) | sessions/s | "
         "poplite ms | PostgreSQL ms | total ms | sessions/s vs pglz | PostgreSQL ms vs pglz |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base_rate = med("pglz", lambda r: r["loadgen"]["sessions_per_s"])
    base_db = med("pglz", per_session("db_s"))
    for name, _ in VARIANTS:
        rate = med(name, lambda r: r["loadgen"]["sessions_per_s"])
        node, db = med(name, per_session("poplite_s")), med(name, per_session("db_s"))
        total = med(name, lambda r: (r["poplite_s"] + r["db_s"]) * 1000 / r["loadgen"]["sessions"])
        lines.append(f"| {name} | {sizes[name]:,} ({100 * sizes[name] / raw:.0f}%) | "
                     f"{fmt(rate)} | "
                     f"{fmt(node)} | {fmt(db)} | {fmt(total)} | {ratio(rate, base_rate)} | "
                     f"{ratio(db, base_db)} |")
    errors = sum(sum(r["loadgen"]["errors"].values()) for rs in records.values() for r in rs)
    lines += ["", f"Errors in all runs: {errors}. Medians over rounds.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(prog="postgres-storage.py")
    target = os.path.join(REPO, "target", "release")
    parser.add_argument("poplite", nargs="?", default=os.path.join(target, "poplite"))
    parser.add_argument("loadgen", nargs="?", default=os.path.join(target, "examples", "loadgen"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="10s")
    args = parser.parse_args()
    if duration_seconds(args.duration) is None or args.rounds < 1:
        raise Failure("bad --rounds or --duration")
    work = tempfile.mkdtemp(prefix="poplite-storage.", dir="/tmp")
    os.chmod(work, 0o755)
    cluster = node = None
    try:
        cluster = start_cluster(os.path.join(work, "postgres"))
        corpus, raw = write_corpus(os.path.join(work, "corpus"), 50)
        set_up(args.poplite, cluster, corpus)
        sizes = {name: stored_bytes(cluster, name) for name, _ in VARIANTS}
        port = free_port()
        with open(os.path.join(work, "poplite.log"), "w") as err:
            node = subprocess.Popen(
                [args.poplite, "--db", cluster.url, "serve", "--listen", f"127.0.0.1:{port}",
                 "--max-connections-per-ip", "0"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env={**os.environ, "RUST_LOG": "warn"})
        for _ in range(300):
            if port_open(port) or node.poll() is not None:
                break
            time.sleep(0.1)
        if not port_open(port):
            raise Failure("poplite did not listen")
        for name, _ in VARIANTS:  # warm-up, not measured
            run(args.loadgen, port, name, "1s", os.path.join(work, "warm.json"))
        records = measure(args.loadgen, port, node, cluster, args.rounds, args.duration, work)
        print(report(records, sizes, raw, args, cluster))
        return 0
    finally:
        if node is not None:
            node.terminate()
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        if cluster is not None:
            stop_cluster(cluster)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Failure, subprocess.SubprocessError) as e:
        sys.exit(f"postgres-storage.py: {e}")
