"""Tests of bench/compare.py's pure parts: the command line's checks, the
figures computed from run records, and the markdown report rendered from a
small fixed set of records. No root, network, Dovecot or cargo needed:

    python3 -m unittest discover -s bench -p 'test_*.py'
"""

import contextlib
import io
import os
import subprocess
import sys
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare
from comparison import options, report, stats
from comparison.common import Failure
from comparison.postgres import Cluster
from comparison.state import Bench

COMPARE_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare.py")


def record(scenario, round_no, server, *, sps=0.0, mps=0.0, mbps=0.0, sessions=0,
           messages=0, cpu=0.0, hash_cpu=0.0, rss_before=10240, rss_peak=20480,
           errors=None, held=0, db_cpu=None, conns=None):
    """One run's record as measure_run writes it to results.jsonl (DB_CPU
    and CONNS: poplite-pg's PostgreSQL CPU and its peak connections)."""
    db = {} if db_cpu is None else {"db_cpu_s": db_cpu, "nodes": 1, "db_conns_peak": conns,
                                    "db_conns_held": conns if scenario == "idle" else None}
    return {**db, "scenario": scenario, "round": round_no, "server": server,
            "loadgen": {"sessions_per_s": sps, "messages_per_s": mps, "mb_per_s": mbps,
                        "p50_ms": 1.5, "p99_ms": 9.0, "sessions": sessions,
                        "messages": messages, "elapsed_s": 10.0, "held": held,
                        "errors": errors or {}},
            "cpu_s": cpu, "hash_cpu_s": hash_cpu,
            "rss_before_kb": rss_before, "pss_before_kb": rss_before // 2,
            "rss_peak_kb": rss_peak, "pss_peak_kb": rss_peak // 2,
            "rss_end_kb": rss_peak, "pss_end_kb": rss_peak // 2,
            "rss_held_kb": 0, "pss_held_kb": 0}


def raw_record(round_no, mbps):
    """The plain TCP copy's record, as measure_raw_copy writes it."""
    return {"scenario": "big", "round": round_no, "server": "raw",
            "loadgen": {"sessions_per_s": 0.0, "messages_per_s": 1.0, "mb_per_s": mbps,
                        "p50_ms": 1.0, "p99_ms": 1.0, "sessions": 1, "messages": 1,
                        "elapsed_s": 10.0, "held": 0, "errors": {}},
            "cpu_s": 0.0, "rss_before_kb": 0, "pss_before_kb": 0, "rss_peak_kb": 0,
            "pss_peak_kb": 0, "rss_end_kb": 0, "pss_end_kb": 0}


# CPU ms per session: login poplite 10 (7.5 of it hashing), Dovecot 20;
# retr poplite 15 (10 hashing), Dovecot 40, poplite-cheap 3 (0.5 hashing).
RUNS = [
    record("login", 1, "poplite", sps=40, sessions=400, cpu=4.0, hash_cpu=3.0),
    record("login", 1, "dovecot", sps=20, sessions=200, cpu=4.0),
    record("login", 2, "poplite", sps=60, sessions=600, cpu=6.0, hash_cpu=4.5),
    record("login", 2, "dovecot", sps=20, sessions=200, cpu=4.0),
    record("retr", 1, "poplite", sps=30, mps=1500, mbps=60, sessions=300, messages=15000,
           cpu=4.5, hash_cpu=3.0),
    record("retr", 1, "dovecot", sps=10, mps=500, mbps=20, sessions=100, messages=5000,
           cpu=4.0, errors={"timeout": 2}),
    record("retr", 1, "poplite-cheap", sps=100, mps=5000, mbps=200, sessions=1000,
           messages=50000, cpu=3.0, hash_cpu=0.5),
    record("big", 1, "poplite", mbps=500, messages=10, cpu=2.0, rss_before=5120,
           rss_peak=15360),
    record("big", 1, "dovecot", mbps=250, messages=5, cpu=2.0),
    raw_record(1, 1000),
]

META = {
    "date": "2025-06-02T10:00:00Z", "cores": 2, "mem": "4 GiB RAM", "kernel": "6.1.0",
    "poplite_rev": "abc1234", "dovecot": "2.3.19.1", "users": 8, "messages": 50,
    "cycle_mailboxes": None, "corpus_mb": 5.25, "big_mb": 200, "rounds": 2,
    "duration": "10s", "concurrency": 8,
    "hash_note": "the same argon2id PHC strings", "hash_params": "m=19456,t=2,p=1",
    "hash_verify_s": 0.02, "sodium_verify_s": 0.025,
    "single_login": {"poplite_s": 0.02, "dovecot_s": 0.025},
    "cheap_params": "m=64,t=1,p=1", "cheap_runs": True, "dovecot_tuning": "tuned",
    "scenarios": ["login", "retr", "big"], "warnings": ["something odd"],
}


# RUNS with poplite-pg (one node and two) in the same rounds: login
# poplite-pg 30 sessions/s at 20 ms CPU per session (5 of it PostgreSQL);
# retr 20 sessions/s at 25 ms (10 PostgreSQL), Dovecot 10 sessions/s.
PG_RUNS = [r for r in RUNS if r["scenario"] in ("login", "retr")] + [
    record("login", 1, "poplite-pg", sps=30, sessions=300, cpu=6.0, hash_cpu=3.0,
           db_cpu=1.5, conns=8),
    record("login", 2, "poplite-pg", sps=30, sessions=300, cpu=6.0, hash_cpu=3.0,
           db_cpu=1.5, conns=7),
    record("retr", 1, "poplite-pg", sps=20, mps=1000, mbps=40, sessions=200,
           messages=10000, cpu=5.0, hash_cpu=2.0, db_cpu=2.0, conns=8),
    record("retr", 1, "poplite-pg-2nodes", sps=24, mps=1200, mbps=48, sessions=240,
           messages=12000, cpu=7.2, hash_cpu=2.4, db_cpu=3.6, conns=16),
    record("idle", 1, "poplite-pg", held=100, rss_before=10240, rss_peak=30720,
           db_cpu=0.5, conns=8),
]

PG_META = dict(META, scenarios=["login", "retr", "idle"], big_mb=None, warnings=[],
               postgres={"version": "15.10", "nodes": 2,
                         "settings": {"fsync": "on", "synchronous_commit": "on",
                                      "full_page_writes": "on", "shared_buffers": "128MB",
                                      "max_wal_size": "1GB"}})


class StatsTest(unittest.TestCase):
    def test_fmt_keeps_about_three_significant_digits(self):
        self.assertEqual(stats.fmt(None), "n/a")
        self.assertEqual(stats.fmt(12345.4), "12,345")
        self.assertEqual(stats.fmt(123.44), "123.4")
        self.assertEqual(stats.fmt(2.5), "2.50")
        self.assertEqual(stats.fmt(0.1234), "0.123")
        self.assertEqual(stats.fmt(-2.5), "-2.50")
        self.assertEqual(stats.fmt(2.5, digits=0), "2")

    def test_ratio(self):
        self.assertEqual(stats.ratio(3, 2), "1.50")
        self.assertEqual(stats.ratio(1, 3), "0.33")
        self.assertEqual(stats.ratio(0, 2), "0.00")
        for a, b in ((1, 0), (1, 0.0), (None, 2), (1, None), (None, None)):
            self.assertEqual(stats.ratio(a, b), "n/a", (a, b))

    def test_median_or_none_skips_missing_values(self):
        self.assertEqual(stats.median_or_none([None, 1, 3]), 2)
        self.assertEqual(stats.median_or_none(v for v in (4, None, 1, 2)), 2)
        self.assertIsNone(stats.median_or_none([None]))
        self.assertIsNone(stats.median_or_none([]))

    def test_errors_are_summed(self):
        runs = [record("retr", 1, "dovecot", errors={"timeout": 2, "refused": 1}),
                record("retr", 2, "dovecot", errors={"timeout": 3})]
        self.assertEqual([stats.run_errors(r) for r in runs], [3, 3])
        self.assertEqual(stats.error_kinds(runs), {"timeout": 5, "refused": 1})

    def test_runs_of_selects_scenario_and_server(self):
        self.assertEqual([r["round"] for r in stats.runs_of(RUNS, "login", "poplite")], [1, 2])
        self.assertEqual(stats.runs_of(RUNS, "cycle", "poplite"), [])

    def test_cpu_per_session_and_hashing_split(self):
        self.assertAlmostEqual(stats.cpu_ms_per_session(RUNS, "login", "poplite"), 10.0)
        self.assertAlmostEqual(stats.cpu_ms_per_session(RUNS, "retr", "dovecot"), 40.0)
        self.assertIsNone(stats.cpu_ms_per_session(RUNS, "cycle", "dovecot"))
        hashing, rest = stats.hashing_split(RUNS, "retr", "poplite")
        self.assertAlmostEqual(hashing, 10.0)
        self.assertAlmostEqual(rest, 5.0)
        self.assertIsNone(stats.hashing_split(RUNS, "cycle", "poplite"))

    def test_server_metrics_are_medians_over_rounds(self):
        m = stats.server_metrics("login", stats.runs_of(RUNS, "login", "poplite"))
        self.assertEqual(m["sessions/s ↑"], 50)
        self.assertAlmostEqual(m["CPU ms/session ↓"], 10.0)
        self.assertAlmostEqual(m["CPU cores busy"], 0.5)
        self.assertEqual(m["RSS MB, peak in run ↓"], 20.0)
        self.assertEqual(m["errors (all rounds)"], 0)
        self.assertNotIn("RSS MB, growth in run ↓", m)

    def test_postgres_share_and_connections(self):
        self.assertAlmostEqual(stats.db_ms_per_session(PG_RUNS, "retr", "poplite-pg"), 10.0)
        self.assertIsNone(stats.db_ms_per_session(PG_RUNS, "retr", "poplite"))
        self.assertEqual(stats.sessions_per_s(PG_RUNS, "login", "poplite-pg"), 30)
        m = stats.server_metrics("login", stats.runs_of(PG_RUNS, "login", "poplite-pg"))
        self.assertAlmostEqual(m["CPU ms/session ↓"], 20.0)
        self.assertAlmostEqual(m["of it PostgreSQL, CPU ms/session ↓"], 5.0)
        self.assertEqual(m["PostgreSQL connections, peak"], 7.5)
        self.assertNotIn("PostgreSQL connections, all held (pg_stat_activity)", m)
        idle = stats.server_metrics("idle", stats.runs_of(PG_RUNS, "idle", "poplite-pg"))
        self.assertEqual(idle["PostgreSQL connections, all held (pg_stat_activity)"], 8)
        plain = stats.server_metrics("login", stats.runs_of(PG_RUNS, "login", "poplite"))
        self.assertFalse(any("PostgreSQL" in metric for metric in plain))

    def test_big_counts_cpu_per_retr_and_rss_growth(self):
        m = stats.server_metrics("big", stats.runs_of(RUNS, "big", "poplite"))
        self.assertAlmostEqual(m["CPU ms/RETR ↓"], 200.0)
        self.assertNotIn("CPU ms/session ↓", m)
        self.assertEqual(m["RSS MB, growth in run ↓"], 10.0)


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.text = report.render_report(META, RUNS)
        self.lines = self.text.split("\n")

    def assertLine(self, line):
        self.assertIn(line, self.lines)

    def test_header_and_warnings(self):
        self.assertEqual(self.lines[0], "# poplite vs Dovecot (POP3)")
        self.assertLine("- poplite abc1234 (release build); Dovecot 2.3.19.1")
        self.assertLine("> **WARNING: something odd**")
        self.assertTrue(any(line.startswith("- poplite-cheap: ") for line in self.lines))

    def test_summary_rows(self):
        self.assertLine("| login | sessions/s ↑ | 50.00 | 20.00 | 2.50 |")
        self.assertLine("| login | CPU ms/session ↓ | 10.00 | 20.00 | 0.50 |")
        self.assertLine("| retr | messages/s ↑ | 1,500 | 500.0 | 3.00 |")
        self.assertLine("| retr | errors (all rounds) | 0 | 2 {'timeout': 2} |  |")
        self.assertLine("| big | MB/s ↑ | 500.0 | 250.0 | 2.00 |")
        self.assertLine("| big | RSS MB, growth in run ↓ | 10.00 | 10.00 | 1.00 |")
        # Metrics that mean nothing for a scenario are left out.
        self.assertFalse(any(line.startswith("| login | messages/s") for line in self.lines))
        self.assertFalse(any(line.startswith("| big | sessions/s") for line in self.lines))

    def test_raw_copy_section(self):
        self.assertIn("in the same rounds: **1,000 MB/s**.", self.text)
        self.assertLine("- poplite `big`: 500 MB/s = **50%** of the plain copy")
        self.assertLine("- Dovecot `big`: 250 MB/s = **25%** of the plain copy")

    def test_mail_path_and_cpu_split(self):
        self.assertLine("| retr | 5.00 | 20.00 | 0.25 |")
        self.assertLine("| retr | 10.00 | 5.00 | 15.00 | 20.00 | 10.00 |")
        self.assertLine("| retr, poplite-cheap (m=64,t=1,p=1) | 0.500 | 2.50 | 3.00 |  |  |")
        self.assertLine("- `retr`: met in this run (15.00 ms against 20.00). Hashing takes 50% of "
                        "the target, leaving 10.00 ms for the rest, which costs 5.00 ms here and "
                        "2.50 ms with no real hashing in the process (`retr`, poplite-cheap).")
        self.assertLine("- one libsodium verification (Dovecot's argon2, in-process) takes "
                        "25.00 ms; at that speed `retr`'s target is 5.00 ms short of the hash "
                        "alone.")

    def test_login_bounds(self):
        self.assertIn("= **100.0 logins/s**.", self.text)
        self.assertLine("- poplite: 50.0 sessions/s = **50%** of the bound")
        self.assertLine("- Dovecot: 20.0 sessions/s = **20%** of the bound")
        self.assertLine("- poplite: 50% of its own ceiling")
        self.assertLine("- Dovecot: 50% of its own ceiling")

    def test_per_run_table(self):
        start = self.lines.index("Per run (rounds in order):") + 4
        rows = self.lines[start:self.lines.index("", start)]
        self.assertEqual(len(rows), len(RUNS))
        self.assertTrue(all(row.count("|") == 13 for row in rows), rows)
        self.assertLine("| login | 1 | poplite | 40.00 | 0.000 | 0.000 | 1.50 | 9.00 | 4.00 | "
                        "3.00 | 20.00 | 0 |")
        self.assertLine("| retr | 1 | dovecot | 10.00 | 500.0 | 20.00 | 1.50 | 9.00 | 4.00 |  | "
                        "20.00 | 2 |")

    def test_optional_sections_stay_out_without_their_runs(self):
        meta = dict(META, scenarios=["retr"], hash_verify_s=None, sodium_verify_s=None,
                    single_login=None, warnings=[], cheap_runs=False)
        runs = [r for r in RUNS if r["scenario"] == "retr" and r["server"] != "poplite-cheap"]
        text = report.render_report(meta, runs)
        for absent in ("WARNING", "Plain TCP copy", "CPU per session on the mail path",
                       "Hashing bound", "own argon2id", "poplite-cheap"):
            self.assertNotIn(absent, text)
        self.assertIn("Where poplite's CPU per session goes", text)
        self.assertTrue(text.endswith("| 20.00 | 2 |\n"))


class PostgresReportTest(unittest.TestCase):
    def setUp(self):
        self.text = report.render_report(PG_META, PG_RUNS)
        self.lines = self.text.split("\n")

    def assertLine(self, line):
        self.assertIn(line, self.lines)

    def test_header_names_the_cluster(self):
        self.assertEqual(self.lines[0],
                         "# poplite vs Dovecot (POP3), and poplite on PostgreSQL")
        self.assertTrue(any(line.startswith("- poplite-pg: poplite on PostgreSQL 15.10, ")
                            and "(fsync on, synchronous_commit on," in line
                            and "; poplite-pg-2nodes: two such nodes" in line
                            for line in self.lines))
        self.assertIn("alternating poplite/Dovecot/poplite-pg;", self.text)
        alone = report.render_report(dict(PG_META, servers=["poplite-pg"]), PG_RUNS)
        self.assertTrue(alone.startswith("# poplite on PostgreSQL (POP3)\n"))
        self.assertIn("alternating poplite-pg;", alone)

    def test_summary_has_a_column_and_ratios_for_poplite_pg(self):
        self.assertLine("| scenario | metric | poplite | Dovecot | poplite-pg | poplite/Dovecot | "
                        "poplite-pg/Dovecot | poplite-pg/poplite |")
        self.assertLine("| login | sessions/s ↑ | 50.00 | 20.00 | 30.00 | 2.50 | 1.50 | 0.60 |")
        self.assertLine("| login | CPU ms/session ↓ | 10.00 | 20.00 | 20.00 | 0.50 | 1.00 | "
                        "2.00 |")
        self.assertLine("| retr | of it PostgreSQL, CPU ms/session ↓ | n/a | n/a | 10.00 | n/a | "
                        "n/a | n/a |")
        self.assertLine("| idle | PostgreSQL connections, all held (pg_stat_activity) | n/a | "
                        "n/a | 8.00 | n/a | n/a | n/a |")
        self.assertLine("| retr | errors (all rounds) | 0 | 2 {'timeout': 2} | 0 |  |  |  |")
        self.assertFalse(any(line.startswith("| idle | of it PostgreSQL") for line in self.lines))

    def test_postgres_section_splits_the_cpu_and_checks_the_target(self):
        self.assertLine("| login | 20.00 | 15.00 | 5.00 | 10.00 | 2.00 |")
        self.assertLine("| retr | 25.00 | 15.00 | 10.00 | 15.00 | 1.67 |")
        self.assertLine("- `retr` sessions/s on PostgreSQL at least Dovecot's: met in this run "
                        "(20.00 against 10.00, 2.00×).")

    def test_two_nodes_section(self):
        self.assertLine("| retr | 20.00 | 24.00 | 1.20 | 25.00 | 30.00 | 10.00 | 15.00 |")
        self.assertFalse(any(line.startswith("| login | 30.00 |") for line in self.lines))

    def test_mail_path_has_the_same_columns(self):
        self.assertLine("| retr | 5.00 | 20.00 | 5.00 | 0.25 | 0.25 | 1.00 |")

    def test_per_run_table_has_the_postgresql_column(self):
        start = self.lines.index("Per run (rounds in order):") + 4
        rows = self.lines[start:self.lines.index("", start)]
        self.assertEqual(len(rows), len(PG_RUNS))
        self.assertTrue(all(row.count("|") == 14 for row in rows), rows)
        self.assertLine("| retr | 1 | poplite-pg-2nodes | 24.00 | 1,200 | 48.00 | 1.50 | 9.00 | "
                        "7.20 | 2.40 | 3.60 | 20.00 | 0 |")
        self.assertLine("| retr | 1 | dovecot | 10.00 | 500.0 | 20.00 | 1.50 | 9.00 | 4.00 |  |  "
                        "| 20.00 | 2 |")


class BenchTest(unittest.TestCase):
    def bench(self, argv, cluster=True):
        b = Bench(settings=options.parse_options(argv), work="/w", poplite="p", loadgen="l",
                  rev="r", cores=2)
        if cluster:
            b.cluster = Cluster(dir="/w/postgres", bin="/bin", port=5555, postmaster_pid=1)
        return b

    def test_stores(self):
        b = self.bench(["--postgres"])
        self.assertEqual(b.pg_url, "postgres://postgres@127.0.0.1:5555/poplite")
        self.assertEqual((b.primary_db, b.store_of("poplite-cheap")), ("/w/poplite.db",) * 2)
        self.assertEqual(b.store_of("poplite-pg-2nodes"), b.pg_url)
        # Without poplite on SQLite, users are set up on PostgreSQL directly.
        self.assertEqual(self.bench(["--postgres", "--servers", "poplite-pg"]).primary_db,
                         b.pg_url)
        self.assertIsNone(self.bench([], cluster=False).pg_url)


class OptionsTest(unittest.TestCase):
    def test_defaults(self):
        s = options.parse_options([])
        self.assertEqual(s.scenarios, ["login", "retr", "cycle", "big"])
        self.assertEqual((s.rounds, s.concurrency, s.users, s.messages), (3, 8, 8, 50))
        self.assertEqual((s.duration_s, s.idle_duration_s), (10.0, 90.0))
        self.assertEqual((s.port_a, s.port_b, s.argon2, s.keep), (42110, 42111, "", False))
        self.assertEqual(s.argon2_label, "m=19456,t=2,p=1")
        self.assertTrue(s.cheap_runs)
        self.assertEqual((s.servers, s.postgres, s.pg_nodes, s.port_c, s.pg_ports),
                         (["poplite", "dovecot"], False, 1, 42112, []))

    def test_postgres(self):
        s = options.parse_options(["--postgres"])
        self.assertEqual((s.servers, s.pg_ports), (["poplite", "dovecot", "poplite-pg"], [42112]))
        s = options.parse_options(["--postgres", "--pg-nodes", "2", "--port-c", "5000"])
        self.assertEqual(s.pg_ports, [5000, 5001])
        s = options.parse_options(["--postgres", "--servers", "poplite-pg poplite"])
        self.assertEqual(s.servers, ["poplite", "poplite-pg"])
        s = options.parse_options(["--postgres", "--servers", "poplite-pg"])
        self.assertFalse(s.cheap_runs)

    def test_cheap_runs_only_at_a_real_cost_with_retr(self):
        self.assertFalse(options.parse_options(["--argon2", "m=64,t=1,p=1"]).cheap_runs)
        self.assertFalse(options.parse_options(["--scenarios", "login"]).cheap_runs)

    def test_durations(self):
        for text, seconds in (("10s", 10), ("500ms", 0.5), ("2m", 120), ("1min", 60),
                              ("1h", 3600), ("1.5", 1.5)):
            self.assertAlmostEqual(options.duration_seconds(text), seconds, msg=text)
        for text in ("", "s", "5q", "-1s", "1 s"):
            self.assertIsNone(options.duration_seconds(text), text)

    def test_bad_values_are_failures(self):
        cases = {
            ("--rounds", "0"): "--rounds must be a positive integer",
            ("--users", "x"): "--users must be a positive integer",
            ("--duration", "5q"): "bad --duration: 5q (use e.g. 10s, 500ms, 1m)",
            ("--idle-duration", "zz"): "bad --idle-duration: zz",
            ("--argon2", "foo"): "--argon2 takes m=KIB,t=N,p=N, e.g. m=64,t=1,p=1",
            ("--port-a", "7", "--port-b", "7"): "bad ports",
            ("--port-a", "70000"): "bad ports",
            ("--scenarios", "login nope"): "unknown scenario: nope (login retr cycle big idle)",
            ("--scenarios", " "): "--scenarios is empty",
            ("--out=",): "--out needs a value (see --help)",
            ("--pg-nodes", "2"): "--pg-nodes needs --postgres",
            ("--postgres", "--pg-nodes", "3"): "--pg-nodes is 1 or 2",
            ("--servers", "poplite-pg"): "poplite-pg needs --postgres",
            ("--servers", "poplite exim"): "unknown server: exim (poplite dovecot poplite-pg)",
            ("--servers", " "): "--servers is empty",
            ("--postgres", "--servers", "dovecot"): "--postgres without poplite-pg in --servers",
            ("--postgres", "--port-c", "42111"): "bad ports",
            ("--postgres", "--pg-nodes", "2", "--port-c", "42109"): "bad ports",
        }
        for argv, message in cases.items():
            with self.assertRaises(Failure, msg=argv) as caught:
                options.parse_options(list(argv))
            self.assertEqual(str(caught.exception), message)

    def test_main_exits_1_with_one_line(self):
        err = io.StringIO()
        # Should the check let the value through, fail here rather than
        # build, install and benchmark.
        not_called = mock.Mock(side_effect=AssertionError("options accepted"))
        with contextlib.redirect_stderr(err), mock.patch.object(compare, "prepare_system",
                                                                not_called):
            status = compare.main(["--rounds", "0"])
        self.assertEqual(status, 1)
        self.assertEqual(err.getvalue(), "compare.py: --rounds must be a positive integer\n")

    def test_unknown_option_exits_1_after_the_usage(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as caught:
            options.parse_options(["--bogus"])
        self.assertEqual(caught.exception.code, "compare.py: unrecognized arguments: --bogus")
        self.assertEqual(err.getvalue(), options.USAGE)

    def test_help(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit) as caught:
            options.parse_options(["--help"])
        self.assertEqual(caught.exception.code, 0)
        self.assertEqual(out.getvalue(), options.USAGE)
        self.assertTrue(options.USAGE.startswith("Usage: bench/compare.py [OPTIONS]\n"))

    def test_script_exit_status(self):
        # No PATH: should the check let the value through, the script stops
        # at the first command it runs (cargo) instead of building anything.
        env = {"PATH": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run([sys.executable, COMPARE_PY, "--rounds", "0"], env=env,
                                capture_output=True, text=True, timeout=30, check=False)
        self.assertEqual((result.returncode, result.stdout, result.stderr),
                         (1, "", "compare.py: --rounds must be a positive integer\n"))


if __name__ == "__main__":
    unittest.main()
