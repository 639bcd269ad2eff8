"""The machine before anything is set up: root, the release build of
poplite and loadgen, Dovecot and its mail user (bench/dovecot-setup.sh),
descriptor limits, free ports, and the empty work directory."""

import json
import os
import pwd
import resource
import socket
import subprocess
import sys
import tempfile

from .common import MAIL_USER, REPO, SETUP_SCRIPT, Failure, log, warn
from .state import Bench


def require_root():
    if os.geteuid() != 0:
        raise Failure("run as root (it installs Dovecot and creates the system user popbench)")


def build_binaries():
    """Builds poplite and loadgen in release mode; returns their paths."""
    if not os.path.isfile(os.path.join(REPO, "Cargo.toml")):
        raise Failure(f"no Cargo.toml in {REPO}")
    log("building poplite and loadgen (release)")
    subprocess.run(["cargo", "build", "--release", "--bin", "poplite", "--example", "loadgen"],
                   cwd=REPO, check=True, stdout=sys.stderr)
    metadata = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                              cwd=REPO, capture_output=True, text=True, check=False)
    target = os.path.join(REPO, "target")
    if metadata.returncode == 0:
        target = json.loads(metadata.stdout).get("target_directory") or target
    poplite = os.path.join(target, "release", "poplite")
    loadgen = os.path.join(target, "release", "examples", "loadgen")
    if not (os.access(poplite, os.X_OK) and os.access(loadgen, os.X_OK)):
        raise Failure(f"build products missing under {target}/release")
    return poplite, loadgen


def source_revision():
    """The short commit, marked when tracked files have uncommitted changes."""
    def git(*args):
        result = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True,
                                check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        rev += " (with uncommitted changes)"
    return rev


def run_setup_script(*args):
    """bench/dovecot-setup.sh: Dovecot and the mail user, or one package."""
    subprocess.run(["bash", SETUP_SCRIPT, *args], check=True, stdout=sys.stderr)


def raise_descriptor_limit(settings):
    """Descriptors for the load generator and the servers started from here."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if ("idle" in settings.scenarios and soft != resource.RLIM_INFINITY
            and soft < settings.idle_conns * 4 + 1024):
        warn(f"ulimit -n is {soft}: too low for --idle-conns {settings.idle_conns}")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def check_ports_free(settings):
    for port in (settings.port_a, settings.port_b, *settings.pg_ports):
        if port_open(port):
            raise Failure(f"127.0.0.1:{port} is already in use (choose --port-a/-b/-c)")


def prepare_system(settings):
    """Root, the build, Dovecot and its mail user, descriptors, free ports:
    a Bench with an empty work directory, or Failure."""
    require_root()
    poplite, loadgen = build_binaries()
    dovecot_version = ""
    if "dovecot" in settings.servers:
        run_setup_script()
        dovecot_version = subprocess.run(["dovecot", "--version"], capture_output=True,
                                         text=True, check=True).stdout.strip()
    raise_descriptor_limit(settings)
    check_ports_free(settings)
    try:
        user = pwd.getpwnam(MAIL_USER)
    except KeyError:  # Dovecot is not run, so its mail user may not exist
        user = pwd.getpwuid(0)
    return Bench(settings=settings, work=make_work_dir(), poplite=poplite, loadgen=loadgen,
                 rev=source_revision(), cores=os.cpu_count() or 1, mail_uid=user.pw_uid,
                 mail_gid=user.pw_gid, dovecot_version=dovecot_version)


def make_work_dir():
    """A fresh /tmp/popbench.XXXXXX that Dovecot's mail processes, running
    as popbench, can reach into."""
    work = tempfile.mkdtemp(prefix="popbench.", dir="/tmp")
    os.chmod(work, 0o755)
    return work
