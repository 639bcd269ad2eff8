#!/usr/bin/env python3
"""A PostgreSQL cluster for measuring poplite by hand, made as
bench/compare.py --postgres makes its own: fsync on (unlike .ci/postgres,
which is for tests), 127.0.0.1 at a free port, a database `poplite`.

    bench/postgres-cluster.py start     prints dir=, url= and pid= (the postmaster)
    bench/postgres-cluster.py stop DIR  stops it and removes DIR

Run as root (initdb runs as the postgres user). Used for
examples/maildrop_bench.rs on PostgreSQL and for two nodes by hand
(docs/performance.md, "On PostgreSQL").
"""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from comparison.common import Failure
from comparison.postgres import Cluster, postgres_bin, stop_cluster, start_cluster


def main(argv):
    if argv == ["start"]:
        parent = tempfile.mkdtemp(prefix="poplite-bench-pg.", dir="/tmp")
        os.chmod(parent, 0o755)
        cluster = start_cluster(os.path.join(parent, "cluster"))
        print(f"dir={parent}\nurl={cluster.url}\npid={cluster.postmaster_pid}")
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        data = os.path.join(argv[1], "cluster", "data")
        if not os.path.isfile(os.path.join(data, "postmaster.pid")):
            raise Failure(f"no running cluster in {argv[1]}")
        with open(os.path.join(data, "postmaster.pid")) as f:
            pid = int(f.readline())
        stop_cluster(Cluster(dir=os.path.dirname(data), bin=postgres_bin(), port=0,
                             postmaster_pid=pid))
        shutil.rmtree(argv[1])
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 64


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Failure as e:
        sys.exit(f"postgres-cluster.py: {e}")
