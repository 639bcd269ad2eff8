#!/usr/bin/env python3
"""bench/startup.py BINARY: how long `poplite serve --memory` takes from exec to
the first greeting on a fresh connection (what a test fixture waits for).
Loopback only; 20 runs; prints the median."""
import os, subprocess, socket, time, statistics, sys
binary = os.path.abspath(sys.argv[1])
times = []
for i in range(20):
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "serve", "--memory", "--listen", "127.0.0.1:0", "--user", "alice:pw"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/tmp")
    line = p.stdout.readline().decode()
    addr = line.strip().rsplit(" ", 1)[1]
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    greeting = s.recv(100)
    t1 = time.perf_counter()
    assert greeting.startswith(b"+OK"), greeting
    times.append((t1 - t0) * 1000)
    s.close(); p.terminate(); p.wait(timeout=10)
print("start to first greeting: median %.1f ms, min %.1f, max %.1f (20 runs)" % (statistics.median(times), min(times), max(times)))
