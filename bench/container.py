#!/usr/bin/env python3
"""How long `docker run` of the poplite image takes until its ready line,
beside `docker run` of a trivial static binary in the same run (so that
the engine's own cost is visible), and how long `docker stop` takes.

Usage: bench/container.py [IMAGE] [--runs N]   (IMAGE: poplite:latest)
Needs a Docker engine and a C compiler (for the trivial image). Every
container it starts is removed by id; bounded: N runs of each, 60 s per run.
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time


def trivial_image():
    """An image FROM scratch with a static binary that prints one line."""
    with tempfile.TemporaryDirectory() as context:
        source = os.path.join(context, "ready.c")
        with open(source, "w") as f:
            f.write('#include <stdio.h>\nint main(void){puts("ready");return 0;}\n')
        subprocess.run(["cc", "-static", "-O2", "-o", os.path.join(context, "ready"), source],
                       check=True)
        with open(os.path.join(context, "Dockerfile"), "w") as f:
            f.write('FROM scratch\nCOPY ready /ready\nENTRYPOINT ["/ready"]\n')
        subprocess.run(["docker", "build", "-q", "-t", "poplite-bench-trivial", context],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return "poplite-bench-trivial"


def until_first_line(args, wanted):
    """Seconds from `docker run` to the first stdout line containing
    `wanted`; the container is removed after."""
    name = f"poplite-bench-{os.getpid()}-{time.monotonic_ns()}"
    started = time.perf_counter()
    proc = subprocess.Popen(["timeout", "60", "docker", "run", "--name", name, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    took = None
    for line in proc.stdout:
        if wanted in line:
            took = time.perf_counter() - started
            break
    subprocess.run(["docker", "rm", "-f", "-v", name], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)
    proc.wait(timeout=60)
    if took is None:
        raise SystemExit(f"no {wanted!r} from docker run {args}")
    return took


def stop_time(image):
    """Seconds `docker stop` takes on a running throwaway server."""
    cid = subprocess.run(["docker", "run", "-d", "-e", "POPLITE_MEMORY=true", image],
                         check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    try:
        time.sleep(1)
        started = time.perf_counter()
        subprocess.run(["docker", "stop", cid], check=True, stdout=subprocess.DEVNULL,
                       timeout=60)
        return time.perf_counter() - started
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", cid], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("image", nargs="?", default="poplite:latest")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    trivial = trivial_image()
    poplite, baseline = [], []
    for _ in range(args.runs):  # alternating, so neither gets the quieter moment
        baseline.append(until_first_line([trivial], "ready"))
        poplite.append(until_first_line(
            ["-e", "POPLITE_MEMORY=true", "-e", "POPLITE_USERS=alice:pw", args.image],
            "poplite listening on"))
    size = int(subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", args.image],
                              check=True, capture_output=True, text=True).stdout)
    stops = [stop_time(args.image) for _ in range(3)]
    subprocess.run(["docker", "rmi", trivial], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    p, b = statistics.median(poplite), statistics.median(baseline)
    print(f"image {args.image}: {size / 1e6:.1f} MB")
    print(f"docker run until the ready line, median of {args.runs}: poplite {p * 1000:.0f} ms, "
          f"a trivial static binary {b * 1000:.0f} ms (poplite's own share {(p - b) * 1000:.0f} ms)")
    print(f"docker stop: {', '.join(f'{s:.2f}' for s in stops)} s")


if __name__ == "__main__":
    main()
