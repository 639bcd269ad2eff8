#!/usr/bin/env python3
"""poplite against Dovecot (POP3): same corpus, same users, same argon2id
hashes, same machine, on loopback; with --postgres, poplite on PostgreSQL
too (poplite-pg), side by side in the same rounds.

Builds poplite and examples/loadgen, has bench/dovecot-setup.sh install
Dovecot and create the system user popbench if they are missing, sets both
servers up in a fresh temporary directory, runs every scenario for --rounds
rounds alternating poplite and Dovecot (A B A B ...; in `retr` rounds at a
real hash cost, poplite a second time on cheap-hash users), measures each
server's CPU time and memory over its whole process tree from /proc
(poplite's also split into its argon2 threads and the rest; poplite-pg's
CPU includes its PostgreSQL cluster's whole process tree), and prints a
markdown report of the medians.

With --postgres it starts a throwaway PostgreSQL cluster in the work
directory (fsync on, as PostgreSQL ships), copies poplite's store into a
fresh database there (`poplite copy`: the same users, hashes, mail and
UIDs), and serves it with one poplite node (two with --pg-nodes 2).

Run as root on Debian (apt-get, useradd, chown to the Dovecot mail user).
Only 127.0.0.1 is ever bound or targeted. Everything lives under one
temporary directory, removed on exit unless --keep; the only thing made
outside it is the system user `popbench` that owns Dovecot's maildirs.

Exit status: 0 on success, 2 when some loadgen run reported errors (the
report is still printed), anything else on failure.

Standard library only (Python 3.11). argon2-cffi, for the login hashing
bound, is installed into the temporary directory when it is missing.

This file is the entry point (the run from start to end, exit statuses,
clean-up); the parts are in bench/comparison/, one module per job.
"""

import os
import shutil
import signal
import subprocess
import sys

# The package next to this script, also when the script's directory is not
# on sys.path (python3 -P, PYTHONSAFEPATH) or this file is imported.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from comparison.common import Failure, warn
from comparison.corpus import write_corpora
from comparison.hashing import measure_hashing, measure_single_logins
from comparison.mailboxes import set_up_poplite
from comparison.options import parse_options
from comparison.report import publish_report, render_report, report_meta
from comparison.postgres import start_cluster
from comparison.scenarios import run_all_scenarios
from comparison.servers import (
    check_servers,
    set_up_dovecot,
    start_servers,
    stop_everything,
    warm_up,
)
from comparison.stats import run_errors
from comparison.system import prepare_system


def compare(bench):
    """Sets both servers up, runs everything and reports; returns the exit
    status."""
    write_corpora(bench)
    if bench.settings.postgres:
        bench.cluster = start_cluster(bench.path("postgres"))
    set_up_poplite(bench)
    set_up_dovecot(bench)
    start_servers(bench)
    check_servers(bench)
    warm_up(bench)
    hashing, single_login = (None, None), None
    # The login bounds are set against poplite (SQLite) and Dovecot.
    if bench.has("login") and (bench.runs("poplite") or bench.runs("dovecot")):
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
