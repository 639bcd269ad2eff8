"""The cost of one argon2id verification, outside the servers (argon2-cffi
and libsodium) and through each server (one login at a time): the bounds
the report sets `login` against."""

import ctypes
import ctypes.util
import importlib
import json
import statistics
import subprocess
import sys
import time

from .common import PASSWORD, SETUP_SCRIPT, log


def import_argon2_cffi(bench):
    """argon2-cffi's module, installed into the work directory (or
    from Debian) if missing; None if it cannot be had."""
    pylib = bench.path("pylib")
    sys.path.insert(0, pylib)
    try:
        return importlib.import_module("argon2")
    except ImportError:
        pass
    log(f"installing argon2-cffi (into {pylib})")
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", pylib,
                                "argon2-cffi"], capture_output=True, check=False).returncode == 0
    if not installed:
        installed = subprocess.run(["bash", SETUP_SCRIPT, "--package", "python3-argon2"],
                                   stdout=sys.stderr, check=False).returncode == 0
    if not installed:
        return None
    importlib.invalidate_caches()
    try:
        return importlib.import_module("argon2")
    except ImportError:
        return None


def median_time(fn, runs=20):
    """Median wall time of RUNS calls of FN, after one not counted."""
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def sodium_verify_seconds(phc):
    """Median time of one libsodium verification of PHC (Dovecot's argon2),
    or None without libsodium."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
        if lib.sodium_init() < 0:
            return None
        verify = lib.crypto_pwhash_str_verify
        verify.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong]
        if verify(phc.encode(), PASSWORD.encode(), len(PASSWORD)) != 0:
            return None
        return median_time(lambda: verify(phc.encode(), PASSWORD.encode(), len(PASSWORD)))
    except (OSError, AttributeError):
        return None


def measure_hashing(bench):
    """(argon2-cffi seconds per verification or None, libsodium's or None)."""
    argon2 = import_argon2_cffi(bench)
    if argon2 is None:
        bench.warning("argon2-cffi unavailable: the login hashing bound is not measured")
        return None, None
    hasher = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
    try:
        cffi = median_time(lambda: hasher.verify(bench.phc, PASSWORD))
    except argon2.exceptions.VerificationError as e:
        bench.warning(f"argon2-cffi failed ({e}): the login hashing bound is not measured")
        return None, None
    sodium = sodium_verify_seconds(bench.phc)
    log(f"one argon2id verification: argon2-cffi {cffi:.6f} s, libsodium "
        f"{'None' if sodium is None else f'{sodium:.6f}'} s")
    return cffi, sodium


def measure_single_logins(bench):
    """One login at a time, 3 s on each server: its p50 is about one
    verification in each server's own argon2 (RustCrypto in poplite,
    libsodium in Dovecot)."""
    p50 = {}
    if not (bench.runs("poplite") and bench.runs("dovecot")):
        return None
    for name, port in (("poplite", bench.settings.port_a), ("dovecot", bench.settings.port_b)):
        out = bench.path(f"single-login-{port}.json")
        subprocess.run([bench.loadgen, "--addr", f"127.0.0.1:{port}", "--scenario", "login",
                        "--concurrency", "1", "--duration", "3s", "--users", "bench0",
                        "--user-count", "1", "--password", PASSWORD, "--json", out],
                       check=True, stdout=subprocess.DEVNULL, timeout=600)
        with open(out) as f:
            p50[f"{name}_s"] = json.load(f)["p50_ms"] / 1000
    log(f"one login at a time, p50: {json.dumps(p50)}")
    return p50
