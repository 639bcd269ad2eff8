"""poplite-pg's PostgreSQL: a throwaway cluster in the work directory,
started as .ci/postgres starts the tests' one (initdb as the postgres
user, trust on its own socket and 127.0.0.1 at a free port) but with
PostgreSQL's durable defaults: fsync, synchronous_commit and
full_page_writes on. .ci/postgres turns fsync off, which suits tests but
would let poplite-pg skip the flush that poplite on SQLite
(synchronous=FULL) and Dovecot (mail_fsync=optimized) pay for.

Also: SQL through psql, and the connections poplite's nodes hold to the
cluster, counted from /proc (their sockets), which costs the database
nothing."""

import dataclasses
import glob
import os
import shutil
import signal
import socket
import subprocess

from .common import Failure, log
from .measure import tree_pids

DATABASE = "poplite"


@dataclasses.dataclass
class Cluster:
    """A running cluster: where it lives, how to reach it, its postmaster."""
    dir: str
    bin: str
    port: int
    postmaster_pid: int
    version: str = ""
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data(self):
        return os.path.join(self.dir, "data")


def postgres_bin():
    """The newest installed PostgreSQL's bin directory, or Failure."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    if not bins or not os.access(os.path.join(bins[-1], "initdb"), os.X_OK):
        raise Failure("--postgres needs PostgreSQL (apt-get install postgresql)")
    return bins[-1]


def free_port():
    """A port free on 127.0.0.1 now: bound, noted, released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(*args, **kwargs):
    """Runs ARGS as the postgres user; Failure with its stderr if it fails."""
    result = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True,
                            text=True, timeout=300, check=False, **kwargs)
    if result.returncode != 0:
        raise Failure(f"{os.path.basename(args[0])} failed: {result.stderr.strip()}")
    return result.stdout


def start_cluster(cluster_dir):
    """initdb and start a cluster in CLUSTER_DIR (made here), and create
    the database poplite-pg uses; returns its Cluster."""
    bin_dir = postgres_bin()
    os.makedirs(cluster_dir)
    shutil.chown(cluster_dir, "postgres", "postgres")
    port = free_port()
    log(f"PostgreSQL: a cluster in {cluster_dir} on 127.0.0.1:{port}, fsync on")
    data = os.path.join(cluster_dir, "data")
    as_postgres(os.path.join(bin_dir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--locale=C.UTF-8")
    # max_connections: each node's pool (8), the CLI's deliveries, psql.
    options = (f"-p {port} -k {cluster_dir} -c listen_addresses=127.0.0.1 "
               "-c max_connections=100")
    as_postgres(os.path.join(bin_dir, "pg_ctl"), "-D", data, "-l",
                os.path.join(cluster_dir, "server.log"), "-w", "-o", options, "start")
    with open(os.path.join(data, "postmaster.pid")) as f:
        pid = int(f.readline())
    cluster = Cluster(dir=cluster_dir, bin=bin_dir, port=port, postmaster_pid=pid)
    try:
        psql(cluster, f"CREATE DATABASE {DATABASE}", database="postgres")
        cluster.version = psql(cluster, "SHOW server_version").strip()
        cluster.settings = {
            name: psql(cluster, f"SHOW {name}").strip()
            for name in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers",
                         "wal_level", "max_wal_size")}
        if cluster.settings["fsync"] != "on":
            raise Failure("the bench cluster must run with fsync on")
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def psql(cluster, sql, database=DATABASE):
    """SQL's output (unaligned, tuples only) from psql on CLUSTER."""
    c = cluster
    result = subprocess.run(
        [os.path.join(c.bin, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
         "-p", str(c.port), "-U", "postgres", "-d", database, "-c", sql],
        capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise Failure(f"psql: {result.stderr.strip()}")
    return result.stdout


def client_connections(cluster):
    """pg_stat_activity's client backends on poplite-pg's database, psql's
    own excluded."""
    return int(psql(cluster, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           f"'{DATABASE}' AND pid <> pg_backend_pid()").strip())


def node_connections(pids, port):
    """The TCP connections the processes PIDS hold open to 127.0.0.1:PORT
    (poplite's nodes to the cluster: the pool and the APOP watch), from
    their descriptors and /proc/net/tcp."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    wanted = f"0100007F:{port:04X}"
    count = 0
    with open(f"/proc/{pids[0]}/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            # remote address, state (01: established), inode
            if fields[2] == wanted and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def stop_cluster(cluster):
    """pg_ctl stop (fast: sessions are ended); if the postmaster is still
    there, SIGKILL to its processes by PID. The files stay."""
    c = cluster
    subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(c.bin, "pg_ctl"), "-D",
                    c.data, "-m", "fast", "-w", "-t", "30", "stop"],
                   capture_output=True, timeout=60, check=False)
    try:
        with open(f"/proc/{c.postmaster_pid}/cmdline", "rb") as f:
            ours = c.data.encode() in f.read()
    except OSError:
        ours = False
    if ours:  # the PID is still our postmaster's, not a reused one
        for pid in tree_pids(c.postmaster_pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
