"""CPU time and memory of a process tree, read from /proc: the tree's
CPU (reaped children included), poplite's argon2 threads' share of it,
and RSS/PSS, sampled for peaks or taken once with every connection held."""

import os
import threading
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


def trees_pids(roots, table=None):
    """The PIDs of the trees of ROOTS, each once."""
    table = proc_table() if table is None else table
    return sorted({p for root in roots for p in tree_pids(root, table)})


def tree_cpu_seconds(*roots):
    """utime+stime of each live process in the trees of ROOTS, plus
    cutime+cstime: the time of children that exited and were reaped
    (Dovecot's per-session pop3 and login processes, PostgreSQL's
    backends), so nothing is lost or counted twice."""
    table = proc_table()
    ticks = sum(table[p][1] for p in trees_pids(roots, table))
    return ticks / os.sysconf("SC_CLK_TCK")


def hashing_cpu_seconds(*pids):
    """utime+stime of poplite's argon2 threads (named poplite-hash-N) in
    the processes PIDS, so a run's CPU splits into hashing and everything
    else; 0 for other servers."""
    return sum(process_hashing_ticks(pid) for pid in pids) / os.sysconf("SC_CLK_TCK")


def process_hashing_ticks(pid):
    ticks = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
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
    return ticks


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


def tree_memory_kb(*roots):
    """(summed VmRSS, summed Pss) of the trees of ROOTS. RSS counts shared
    pages (libraries, shared memory) once per process; PSS splits them."""
    pids = trees_pids(roots)
    rss = sum(field_kb(f"/proc/{p}/status", "VmRSS") for p in pids)
    pss = sum(field_kb(f"/proc/{p}/smaps_rollup", "Pss") for p in pids)
    return rss, pss


class MemorySampler:
    """Samples the memory of the trees of ROOTS every INTERVAL seconds in a
    thread, for at most LIMIT seconds, and keeps the peaks; also the peak of
    EXTRA(), when given, sampled with them."""

    def __init__(self, roots, interval, limit, extra=None):
        self.roots, self.interval, self.limit = roots, interval, limit
        self.extra, self.peak_extra = extra, None
        self.peak_rss = self.peak_pss = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            rss, pss = tree_memory_kb(*self.roots)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            if self.extra:
                self.peak_extra = max(self.peak_extra or 0, self.extra())
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


class HeldMemory:
    """`idle`: the trees' memory with every connection held, measured once
    in a timer thread 3 s before the end (halfway through short runs); also
    EXTRA(), when given, at that moment (the database's connections)."""

    def __init__(self, roots, duration_s, extra=None):
        self.rss = self.pss = 0
        self.extra, self.extra_value = extra, None
        delay = duration_s - 3 if duration_s > 6 else duration_s / 2
        self._timer = threading.Timer(delay, self._measure, args=(roots,))
        self._timer.start()

    def _measure(self, roots):
        self.rss, self.pss = tree_memory_kb(*roots)
        if self.extra:
            self.extra_value = self.extra()

    def stop(self):
        """(RSS kB, PSS kB), zeros if the run ended before the measurement;
        EXTRA()'s value is in extra_value."""
        self._timer.cancel()
        return self.rss, self.pss
