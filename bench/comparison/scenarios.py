"""The measured runs: for each scenario and round, loadgen against poplite,
Dovecot, poplite-pg (and poplite-pg-2nodes, poplite-cheap, and the raw copy
for `big`), each with the server's CPU and memory over it (poplite-pg's CPU
with its PostgreSQL cluster's); one record per run, kept in results.jsonl."""

import dataclasses
import json
import os
import subprocess
import sys

from .common import PASSWORD, Failure, log
from .mailboxes import refill_cycle_mailboxes
from .measure import (
    HeldMemory,
    MemorySampler,
    hashing_cpu_seconds,
    tree_cpu_seconds,
    tree_memory_kb,
)
from .postgres import client_connections, node_connections
from .servers import Target, stop_processes, targets
from .stats import run_errors


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


def measure_run(bench, scenario, round_no, target):
    """One loadgen run of SCENARIO against one server (TARGET), with the
    server's CPU and memory over it; returns the run's record. For
    poplite-pg, cpu_s is poplite's and the cluster's together (db_cpu_s the
    cluster's part), memory poplite's alone, and the connections its nodes
    hold to the cluster are counted (peak; `idle`: also pg_stat_activity's
    count for the database with every connection held)."""
    server, pids, db = target.name, target.pids, target.db_pid
    load = load_for(bench.settings, scenario, server)
    if scenario == "cycle":
        refill_cycle_mailboxes(bench, server)
    name = f"run-{scenario}-{round_no}-{server}"
    json_path, log_path = bench.path(name + ".json"), bench.path(name + ".txt")
    connections = (lambda: node_connections(pids, bench.cluster.port)) if db else None
    rss0, pss0 = tree_memory_kb(*pids)
    sampler = MemorySampler(pids, 0.5, load.duration_s + 900, connections).start()
    db0 = tree_cpu_seconds(db) if db else 0.0
    cpu0, hash0 = tree_cpu_seconds(*pids), hashing_cpu_seconds(*pids)
    addrs = [arg for port in target.ports for arg in ("--addr", f"127.0.0.1:{port}")]
    start_loadgen(
        bench, [*addrs, "--scenario", scenario,
                "--concurrency", str(load.concurrency), "--duration", load.duration,
                "--users", load.users, "--user-count", str(load.count), "--password", PASSWORD,
                "--json", json_path, *load.extra],
        log_path)
    held = None
    if scenario == "idle":
        held = HeldMemory(pids, load.duration_s,
                          (lambda: client_connections(bench.cluster)) if db else None)
    status = wait_for_loadgen(bench, int(load.duration_s * 2 + 600))
    cpu1, hash1 = tree_cpu_seconds(*pids), hashing_cpu_seconds(*pids)
    db1 = tree_cpu_seconds(db) if db else 0.0
    rss1, pss1 = tree_memory_kb(*pids)
    peak_rss, peak_pss = sampler.stop()
    held_rss, held_pss = held.stop() if held else (0, 0)
    loadgen = loadgen_json(status, json_path, log_path, f"{server}/{scenario}")
    if target.died():
        raise Failure(f"{server} died during {scenario}")
    run = {"scenario": scenario, "round": round_no, "server": server, "loadgen": loadgen,
           "cpu_s": cpu1 - cpu0 + db1 - db0, "hash_cpu_s": hash1 - hash0,
           "rss_before_kb": rss0, "pss_before_kb": pss0,
           "rss_peak_kb": max(peak_rss, rss1), "pss_peak_kb": max(peak_pss, pss1),
           "rss_end_kb": rss1, "pss_end_kb": pss1,
           "rss_held_kb": held_rss, "pss_held_kb": held_pss}
    if db:
        run.update(db_cpu_s=db1 - db0, nodes=len(pids), db_conns_peak=sampler.peak_extra,
                   db_conns_held=held.extra_value if held else None)
    return run


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


def progress_line(run):
    """One run's figures, for stderr as the runs go."""
    g = run["loadgen"]
    if run["server"] == "raw":
        return f"    big    round {run['round']} raw copy {g['mb_per_s']:8.1f} MB/s"
    return (f"    {run['scenario']:<6} round {run['round']} {run['server']:<17} "
            f"{g['sessions_per_s']:8.1f} sess/s {g['messages_per_s']:8.1f} msg/s "
            f"{g['mb_per_s']:7.1f} MB/s  p50 {g['p50_ms']:8.2f} ms p99 {g['p99_ms']:8.2f} ms  "
            f"cpu {run['cpu_s']:6.2f} s  rss {run['rss_peak_kb'] / 1024:7.1f} MB "
            f"pss {run['pss_peak_kb'] / 1024:7.1f} MB"
            + (f"  held {g['held']}" if run["scenario"] == "idle" else "")
            + (f"  of it PostgreSQL {run['db_cpu_s']:6.2f} s" if "db_cpu_s" in run else "")
            + (f"  db conns peak {run['db_conns_peak']}" if run.get("db_conns_peak") else "")
            + (f" (pg_stat_activity {run['db_conns_held']} all held)"
               if run.get("db_conns_held") is not None else "")
            + (f"  ERRORS {g['errors']}" if run_errors(run) else ""))


def round_runs(bench, scenario, round_no):
    """One round of SCENARIO: each server in turn (servers.targets), then
    poplite-cheap for `retr` at a real hash cost, then the raw copy for
    `big`; yields each run's record as it ends."""
    s = bench.settings
    for target in targets(bench):
        yield measure_run(bench, scenario, round_no, target)
    if s.cheap_runs and scenario == "retr":
        yield measure_run(bench, scenario, round_no,
                          Target("poplite-cheap", [s.port_a], [bench.poplite_proc]))
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
