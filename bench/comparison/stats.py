"""Figures from run records (results.jsonl's lines): medians over rounds,
per-session CPU and its hashing split, ratios, error counts, and how a
figure is written."""

import statistics


def fmt(x, digits=None):
    """A figure with about three significant digits (fewer decimals as it
    grows), thousands separated; n/a for None."""
    if x is None:
        return "n/a"
    if digits is None:
        a = abs(x)
        digits = 0 if a >= 1000 else 1 if a >= 100 else 2 if a >= 1 else 3
    return f"{x:,.{digits}f}"


def ratio(a, b):
    """A / B to two decimals, or n/a when either is missing or B is 0."""
    return f"{a / b:.2f}" if a is not None and b not in (None, 0) else "n/a"


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def runs_of(runs, scenario, server):
    return [r for r in runs if r["scenario"] == scenario and r["server"] == server]


def run_errors(run):
    return sum(run["loadgen"]["errors"].values())


def error_kinds(rs):
    """{error kind: count} summed over runs RS."""
    kinds = {}
    for r in rs:
        for kind, n in r["loadgen"]["errors"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    return kinds


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

    cpu_unit = "RETR" if scenario == "big" else "session"
    metrics = {
        "sessions/s ↑": med(lambda r: r["loadgen"]["sessions_per_s"]),
        "messages/s ↑": med(lambda r: r["loadgen"]["messages_per_s"]),
        "MB/s ↑": med(lambda r: r["loadgen"]["mb_per_s"]),
        "latency p50 ms ↓": med(lambda r: r["loadgen"]["p50_ms"]),
        "latency p99 ms ↓": med(lambda r: r["loadgen"]["p99_ms"]),
        f"CPU ms/{cpu_unit} ↓": med(cpu_ms_per_unit),
    }
    if any("db_cpu_s" in r for r in rs):
        # poplite-pg: the cluster's share of the CPU, and its connections.
        metrics[f"of it PostgreSQL, CPU ms/{cpu_unit} ↓"] = med(
            lambda r: db_ms_per_unit(r, unit))
        metrics["PostgreSQL connections, peak"] = med(lambda r: r.get("db_conns_peak"))
        if scenario == "idle":
            metrics["PostgreSQL connections, all held (pg_stat_activity)"] = med(
                lambda r: r.get("db_conns_held"))
    metrics.update({
        "CPU cores busy": med(lambda r: r["cpu_s"] / r["loadgen"]["elapsed_s"]),
        "RSS MB, peak in run ↓": med(lambda r: r["rss_peak_kb"] / 1024),
        "PSS MB, peak in run ↓": med(lambda r: r["pss_peak_kb"] / 1024),
        "RSS MB, after run ↓": med(lambda r: r["rss_end_kb"] / 1024),
        "errors (all rounds)": sum(run_errors(r) for r in rs),
    })
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


def db_ms_per_unit(run, unit="sessions"):
    """poplite-pg's PostgreSQL CPU ms per session (or message), or None."""
    n = run["loadgen"][unit]
    return run["db_cpu_s"] * 1000 / n if n and "db_cpu_s" in run else None


def db_ms_per_session(runs, scenario, server):
    """Median PostgreSQL CPU ms per session of SERVER's runs, or None."""
    return median_or_none(db_ms_per_unit(r) for r in runs_of(runs, scenario, server))


def sessions_per_s(runs, scenario, server):
    return median_or_none(r["loadgen"]["sessions_per_s"] for r in runs_of(runs, scenario, server))


def cpu_ms_per_session(runs, scenario, server):
    """Median CPU ms per session of SERVER's runs of SCENARIO, or None."""
    return median_or_none(r["cpu_s"] * 1000 / r["loadgen"]["sessions"]
                          for r in runs_of(runs, scenario, server) if r["loadgen"]["sessions"])


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


def login_rates(runs, server):
    return [r["loadgen"]["sessions_per_s"] for r in runs_of(runs, "login", server)]
