"""The markdown report: the set-up (meta) gathered from a Bench, each
section rendered from the run records and meta, and the report printed
and written out."""

import datetime
import os
import statistics

from .common import CHEAP_ARGON2, log
from .stats import (
    cpu_ms_per_session,
    db_ms_per_session,
    error_kinds,
    fmt,
    hashing_split,
    login_rates,
    median_or_none,
    ratio,
    run_errors,
    runs_of,
    server_metrics,
    sessions_per_s,
)

DOVECOT_TUNING = (
    "pop3-login service_count=0 + process_min_avail={cores}, pop3 process_min_avail={cores}, "
    "auth_cache_size=0, anvil auth penalty off, info log to /dev/null, maildir files named "
    "with S=/W= sizes as dovecot-lda names them")


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
        "hash_note": bench.hash_note or f"argon2id ({s.argon2_label})",
        "hash_params": s.argon2_label,
        "hash_verify_s": hashing[0], "sodium_verify_s": hashing[1],
        "single_login": single_login, "cheap_params": CHEAP_ARGON2, "cheap_runs": s.cheap_runs,
        "dovecot_tuning": (DOVECOT_TUNING.format(cores=bench.cores) if bench.runs("dovecot")
                           else None),
        "scenarios": s.scenarios, "warnings": bench.warnings,
        "postgres": postgres_meta(bench), "servers": s.servers,
    }


def postgres_meta(bench):
    """poplite-pg's cluster as the report describes it, or None."""
    c = bench.cluster
    if c is None:
        return None
    return {"version": c.version, "settings": c.settings, "nodes": bench.settings.pg_nodes}


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
    pg = meta.get("postgres")
    servers = "poplite/Dovecot/poplite-pg" if pg else "poplite/Dovecot"
    if meta.get("servers"):
        servers = "/".join(LABELS[s] for s in meta["servers"])
    lines = [
        title(meta, pg),
        "",
        (f"- date: {meta['date']}, host: {meta['cores']} cores, {meta['mem']}, "
        f"kernel {meta['kernel']}"),
        f"- poplite {meta['poplite_rev']} (release build)"
        + (f"; Dovecot {meta['dovecot']}" if meta["dovecot"] else ""),
        corpus,
        (f"- runs: {meta['rounds']} rounds x {meta['duration']} per scenario, alternating "
        f"{servers}; concurrency {meta['concurrency']}; loadgen on the same machine"),
        f"- passwords: {meta['hash_note']}",
    ]
    if pg:
        lines.append(postgres_line(pg))
    if meta.get("cheap_runs"):
        lines.append(f"- poplite-cheap: poplite again, on users cheap0.. holding the same mail "
                     f"with {meta['cheap_params']} hashes, for the mail path's CPU without hashing")
    if meta["dovecot_tuning"]:
        lines.append(f"- {'every server' if pg else 'both servers'}: auth_failure_delay 1s; "
                     f"Dovecot: {meta['dovecot_tuning']}")
    lines.append("")
    for warning in meta.get("warnings", []):
        lines += [f"> **WARNING: {warning}**", ""]
    return lines


def title(meta, pg):
    if "dovecot" not in meta.get("servers", ["dovecot"]):
        return "# poplite on PostgreSQL (POP3)"
    return "# poplite vs Dovecot (POP3)" + (", and poplite on PostgreSQL" if pg else "")


def postgres_line(pg):
    """The header's line on poplite-pg and its cluster."""
    st = pg["settings"]
    line = (f"- poplite-pg: poplite on PostgreSQL {pg['version']}, a cluster of its own in the "
            f"work directory on 127.0.0.1 (fsync {st.get('fsync')}, synchronous_commit "
            f"{st.get('synchronous_commit')}, full_page_writes {st.get('full_page_writes')}, "
            f"shared_buffers {st.get('shared_buffers')}, max_wal_size {st.get('max_wal_size')}; "
            "otherwise PostgreSQL's defaults), a fresh database holding a copy of poplite's "
            "store (`poplite copy`: the same users, hashes, mail and UIDs), one node with "
            "its default pool of 8 connections; its CPU counts poplite and the cluster's "
            "whole process tree (postmaster, backends, WAL writer, checkpointer...), its "
            "memory poplite's alone")
    if pg.get("nodes", 1) > 1:
        line += ("; poplite-pg-2nodes: two such nodes on that database, loadgen's workers "
                 "split between them (worker i on node i mod 2, so a mailbox stays on one node)")
    return line


# Metrics that mean nothing for a scenario and stay out of its rows.
OMITTED_METRICS = {
    "idle": ("sessions/s ↑", "messages/s ↑", "MB/s ↑", "latency p50 ms ↓",
             "latency p99 ms ↓",
             "CPU ms/session ↓", "of it PostgreSQL, CPU ms/session ↓"),
    "big": ("sessions/s ↑",),
    "login": ("messages/s ↑", "MB/s ↑"),
}


def errors_cell(count, kinds):
    return f"{count} {kinds}" if count else str(count)


# The summary's server columns, in order, and their headings.
LABELS = {"poplite": "poplite", "dovecot": "Dovecot", "poplite-pg": "poplite-pg"}
# The ratios the summary gives, as (numerator, denominator), when both ran.
RATIOS = (("poplite", "dovecot"), ("poplite-pg", "dovecot"), ("poplite-pg", "poplite"))


def columns(runs):
    """The summary's servers that have runs, and the ratios between them."""
    servers = [s for s in LABELS if any(r["server"] == s for r in runs)]
    return servers, [(a, b) for a, b in RATIOS if a in servers and b in servers]


def summary_rows(scenario, runs, servers, ratios):
    """The summary table's rows for SCENARIO (none if it did not run)."""
    per, kinds = {}, {}
    for server in servers:
        rs = runs_of(runs, scenario, server)
        if rs:
            per[server], kinds[server] = server_metrics(scenario, rs), error_kinds(rs)
    if not per:
        return []
    # In the order of the server with the most metrics (poplite-pg's
    # PostgreSQL rows sit beside the CPU), then any others.
    fullest = max(per.values(), key=len)
    metrics = list(dict.fromkeys([*fullest, *(m for values in per.values() for m in values)]))
    rows = []
    for metric in metrics:
        if metric in OMITTED_METRICS.get(scenario, ()):
            continue
        values = {server: per.get(server, {}).get(metric) for server in servers}
        if metric.startswith("errors"):
            cells = [errors_cell(values[s], kinds[s]) if values[s] is not None else "n/a"
                     for s in servers]
            quotients = [""] * len(ratios)
        else:
            cells = [fmt(values[s]) for s in servers]
            quotients = [ratio(values[a], values[b]) for a, b in ratios]
        rows.append(f"| {scenario} | {metric} | " + " | ".join(cells + quotients) + " |")
    return rows


def summary_table(meta, runs):
    servers, ratios = columns(runs)
    heads = [LABELS[s] for s in servers] + [f"{LABELS[a]}/{LABELS[b]}" for a, b in ratios]
    ratio_note = {0: "", 1: "Ratio = poplite / Dovecot "}.get(
        len(ratios), "Ratios as each column's heading says ")
    lines = [
        ("Medians over rounds. " + ratio_note + "(↑ higher is better, ↓ lower is better). "
        "CPU and RSS cover each server's whole process tree (Dovecot: master and all children); "
        "RSS sums VmRSS, so pages shared between Dovecot's processes count once per process, "
        "PSS splits them. `big` counts CPU per RETR of the big message."
        + (" poplite-pg's CPU is poplite's and its PostgreSQL cluster's together; its memory "
           "is poplite's alone; PostgreSQL connections are those its node holds open to the "
           "cluster (the pool and the APOP watch), counted from /proc."
           if "poplite-pg" in servers else "")),
        "",
        "| scenario | metric | " + " | ".join(heads) + " |",
        "|---|---|" + "---:|" * len(heads),
    ]
    for scenario in meta["scenarios"]:
        lines += summary_rows(scenario, runs, servers, ratios)
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


def mail_path_section(meta, runs):
    """CPU per session of `retr` and `cycle` less `login`'s."""
    mail = [s for s in ("retr", "cycle") if s in meta["scenarios"]]
    if "login" not in meta["scenarios"] or not mail:
        return []
    servers, ratios = columns(runs)
    heads = [f"{LABELS[s]} ms" for s in servers] + [f"{LABELS[a]}/{LABELS[b]}" for a, b in ratios]
    lines = [
        ("CPU per session on the mail path: each scenario's CPU ms/session less `login`'s "
        "(which is about one argon2id verification and the login exchange):"),
        "",
        "| scenario | " + " | ".join(heads) + " |",
        "|---|" + "---:|" * len(heads),
    ]
    for scenario in mail:
        d = {}
        for server in servers:
            total = cpu_ms_per_session(runs, scenario, server)
            login = cpu_ms_per_session(runs, "login", server)
            d[server] = total - login if total is not None and login is not None else None
        cells = [fmt(d[s]) for s in servers] + [ratio(d[a], d[b]) for a, b in ratios]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return lines + [""]


def postgres_section(meta, runs):
    """poplite-pg's CPU per session split between poplite and PostgreSQL,
    against poplite's on SQLite, and the issue's targets (`retr` and
    `cycle` sessions/s at least Dovecot's)."""
    scenarios = [s for s in ("login", "retr", "cycle") if runs_of(runs, s, "poplite-pg")]
    if not scenarios:
        return []
    lines = [
        ("On PostgreSQL: poplite-pg's CPU per session, split into the poplite process and the "
         "PostgreSQL cluster (medians over rounds, so the parts may not add up to the total "
         "exactly), against poplite's on SQLite:"),
        "",
        ("| scenario | poplite-pg ms | of it poplite ms | of it PostgreSQL ms | "
         "poplite (SQLite) ms | poplite-pg/poplite |"),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for scenario in scenarios:
        total = cpu_ms_per_session(runs, scenario, "poplite-pg")
        db = db_ms_per_session(runs, scenario, "poplite-pg")
        node = median_or_none((r["cpu_s"] - r["db_cpu_s"]) * 1000 / r["loadgen"]["sessions"]
                              for r in runs_of(runs, scenario, "poplite-pg")
                              if r["loadgen"]["sessions"])
        sqlite = cpu_ms_per_session(runs, scenario, "poplite")
        lines.append(f"| {scenario} | {fmt(total)} | {fmt(node)} | {fmt(db)} | {fmt(sqlite)} | "
                     f"{ratio(total, sqlite)} |")
    lines.append("")
    for scenario in (s for s in ("retr", "cycle") if s in scenarios):
        pg, dovecot = (sessions_per_s(runs, scenario, s) for s in ("poplite-pg", "dovecot"))
        if pg is not None and dovecot:
            verdict = "met" if pg >= dovecot else "not met"
            lines.append(f"- `{scenario}` sessions/s on PostgreSQL at least Dovecot's: {verdict} "
                         f"in this run ({fmt(pg)} against {fmt(dovecot)}, "
                         f"{ratio(pg, dovecot)}×).")
    return lines + [""]


def two_nodes_section(meta, runs):
    """One poplite-pg node against two on the same database, same rounds."""
    scenarios = [s for s in ("login", "retr", "cycle")
                 if runs_of(runs, s, "poplite-pg") and runs_of(runs, s, "poplite-pg-2nodes")]
    if not scenarios:
        return []
    lines = [
        (f"One node against two on the same database (poplite-pg-2nodes: loadgen's "
         f"{meta['concurrency']} workers split between the nodes), in the same rounds; CPU "
         "counts both nodes and the cluster:"),
        "",
        ("| scenario | sessions/s, 1 node | 2 nodes | 2/1 | CPU ms/session, 1 node | 2 nodes | "
         "of it PostgreSQL ms, 1 node | 2 nodes |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in scenarios:
        one, two = (sessions_per_s(runs, scenario, s) for s in ("poplite-pg", "poplite-pg-2nodes"))
        cpu = [cpu_ms_per_session(runs, scenario, s) for s in ("poplite-pg", "poplite-pg-2nodes")]
        db = [db_ms_per_session(runs, scenario, s) for s in ("poplite-pg", "poplite-pg-2nodes")]
        lines.append(f"| {scenario} | {fmt(one)} | {fmt(two)} | {ratio(two, one)} | "
                     f"{fmt(cpu[0])} | {fmt(cpu[1])} | {fmt(db[0])} | {fmt(db[1])} |")
    return lines + [""]


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
    pg = any("db_cpu_s" in r for r in runs)
    lines = [
        "Per run (rounds in order):",
        "",
        ("| scenario | round | server | sessions/s | messages/s | MB/s | p50 ms | p99 ms | CPU s | "
        "of it hashing s | " + ("of it PostgreSQL s | " if pg else "")
        + "RSS peak MB | errors |"),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if pg else "")
        + "---:|---:|",
    ]
    for r in runs:
        g = r["loadgen"]
        hashing = fmt(r.get("hash_cpu_s")) if r["server"].startswith("poplite") else ""
        db = (fmt(r["db_cpu_s"]) if "db_cpu_s" in r else "") + " | " if pg else ""
        lines.append(
            f"| {r['scenario']} | {r['round']} | {r['server']} | {fmt(g['sessions_per_s'])} | "
            f"{fmt(g['messages_per_s'])} | {fmt(g['mb_per_s'])} | {fmt(g['p50_ms'])} | "
            f"{fmt(g['p99_ms'])} | {fmt(r['cpu_s'])} | {hashing} | {db}"
            f"{fmt(r['rss_peak_kb'] / 1024)} | {run_errors(r)} |")
    return lines + [""]


def render_report(meta, runs):
    """The markdown report."""
    sections = (header_lines(meta), summary_table(meta, runs), raw_copy_section(meta, runs),
                mail_path_section(meta, runs), postgres_section(meta, runs),
                two_nodes_section(meta, runs), cpu_split_section(meta, runs),
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
