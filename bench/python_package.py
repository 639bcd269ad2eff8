#!/usr/bin/env python3
"""What the Python package costs a test suite: `pip install` of the wheel
(beside pytest's own wheel, installed the same way in the same run, so that
pip's own cost is visible), and the pytest plugin's fixture set-up and
teardown per test, medians over a generated suite of N tests per fixture.

Usage: bench/python_package.py WHEEL [OTHER_WHEEL…] [--installs N] [--tests N]
       [--rounds N] [--python PY]
Other wheels (an earlier build) are measured beside the first, the fixture
runs alternating between them for N rounds.
Needs network for pytest from PyPI. Bounded: N installs of each wheel into
fresh virtual environments, each step 300 s at most; one pytest run of N
tests per fixture, 300 s at most.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import tempfile
import time

SUITE = """
def test_{n}({fixture}):
    assert {fixture}.pop3_port
"""


def venv(python, path):
    """A fresh virtual environment at `path`; its bin directory."""
    subprocess.run([python, "-m", "venv", path], check=True, timeout=120)
    return os.path.join(path, "bin")


def install_seconds(python, wheel, runs, scratch):
    """Median and spread of `pip install --no-index --no-deps WHEEL` into fresh environments."""
    times = []
    for run in range(runs):
        bin_dir = venv(python, os.path.join(scratch, f"install-{os.path.basename(wheel)}-{run}"))
        started = time.perf_counter()
        subprocess.run([os.path.join(bin_dir, "pip"), "install", "-q", "--no-index",
                        "--no-deps", "--disable-pip-version-check", wheel],
                       check=True, timeout=300)
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), max(times)


# Times each test's set-up and teardown phase (where the fixtures run) with
# the monotonic clock; pytest's own --durations rounds to 10 ms.
TIMER = """
import json, os, time
import pytest

PHASES = {"setup": [], "teardown": []}

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    started = time.perf_counter()
    yield
    PHASES["setup"].append(time.perf_counter() - started)

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    started = time.perf_counter()
    yield
    PHASES["teardown"].append(time.perf_counter() - started)

def pytest_sessionfinish(session):
    with open(os.environ["PHASES_OUT"], "w") as f:
        json.dump(PHASES, f)
"""


def fixture_durations(bin_dir, fixture, tests, scratch):
    """Each test's set-up and teardown seconds of `fixture` over `tests` generated tests."""
    suite = os.path.join(scratch, fixture)
    os.makedirs(suite, exist_ok=True)
    with open(os.path.join(suite, "conftest.py"), "w") as f:
        f.write(TIMER)
    with open(os.path.join(suite, f"test_{fixture}.py"), "w") as f:
        for n in range(tests):
            f.write(SUITE.format(n=n, fixture=fixture))
    out = os.path.join(scratch, f"{fixture}.json")
    run = subprocess.run(
        [os.path.join(bin_dir, "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", suite],
        capture_output=True, text=True, timeout=300, cwd=suite,
        env={**os.environ, "PHASES_OUT": out})
    if run.returncode != 0:
        raise SystemExit(f"pytest failed:\n{run.stdout}{run.stderr}")
    with open(out) as f:
        phases = json.load(f)
    assert len(phases["setup"]) == tests, phases
    return phases["setup"], phases["teardown"]


def main():
    """Measures and prints one line per figure and wheel."""
    parser = argparse.ArgumentParser()
    parser.add_argument("wheels", nargs="+", help="the wheel, and others to set beside it")
    parser.add_argument("--installs", type=int, default=10)
    parser.add_argument("--tests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1,
                        help="fixture runs per wheel, alternating between the wheels")
    parser.add_argument("--python", default="python3")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([args.python, "-m", "pip", "download", "-q", "--no-deps",
                        "--disable-pip-version-check", "-d", scratch, "pytest"],
                       check=True, timeout=300)
        pytest_wheel = glob.glob(os.path.join(scratch, "pytest-*.whl"))[0]
        if args.installs > 0:
            for wheel in (*args.wheels, pytest_wheel):
                median, low, high = install_seconds(args.python, wheel, args.installs, scratch)
                size = os.path.getsize(wheel) / 1e6
                print(f"pip install {os.path.basename(wheel)} ({size:.1f} MB): "
                      f"median {median:.2f} s ({low:.2f}-{high:.2f}) over {args.installs}")
        suites = []
        for number, wheel in enumerate(args.wheels):
            bin_dir = venv(args.python, os.path.join(scratch, f"suite-{number}"))
            subprocess.run([os.path.join(bin_dir, "pip"), "install", "-q", "--no-index",
                            "--disable-pip-version-check", wheel], check=True, timeout=300)
            subprocess.run([os.path.join(bin_dir, "pip"), "install", "-q",
                            "--disable-pip-version-check", "pytest"], check=True, timeout=300)
            suites.append(bin_dir)
        phases = {}
        for round_ in range(args.rounds):
            for number, bin_dir in enumerate(suites):
                for fixture in ("poplite_server", "poplite_server_session"):
                    setup, teardown = fixture_durations(
                        bin_dir, fixture, args.tests, os.path.join(scratch, f"{number}-{round_}"))
                    found = phases.setdefault((number, fixture), ([], []))
                    found[0].extend(setup)
                    found[1].extend(teardown)
        for (number, fixture), (setup, teardown) in phases.items():
            print(f"{os.path.basename(args.wheels[number])} {fixture}: "
                  f"set-up median {statistics.median(setup) * 1000:.1f} ms, "
                  f"teardown median {statistics.median(teardown) * 1000:.1f} ms "
                  f"over {len(setup)} tests")


if __name__ == "__main__":
    main()
