"""Starting and stopping a `poplite serve --memory` process.

Where the binary comes from, which environment it gets, how its listening
ports are read from its first lines, and what happens to it when the test
process dies.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sysconfig
import tempfile
import time
from typing import IO, Dict, List, Optional

from .errors import PopliteStartError

__all__ = ["ServerProcess", "find_binary"]

# "poplite listening on 127.0.0.1:PORT" for POP3, "… (SMTP)", "… (HTTP)" and
# others (TLS, LMTP) when extra arguments turn them on.
_LISTENING = re.compile(rb"poplite listening on (\S+):(\d+)(?: \((\w+)\))?")
_NEEDED = ("POP3", "SMTP", "HTTP")


def find_binary() -> str:
    """The poplite binary: $POPLITE_BIN, else the one this package installed, else PATH."""
    chosen = os.environ.get("POPLITE_BIN")
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise PopliteStartError(f"POPLITE_BIN={chosen} is not an executable file")
        return chosen
    # The wheel puts it beside this interpreter's scripts, which need not be
    # on PATH (a virtual environment used without activating it).
    beside = os.path.join(sysconfig.get_path("scripts"), "poplite")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("poplite")
    if found is None:
        raise PopliteStartError(
            "no poplite binary: install this package's wheel, put poplite on PATH, "
            "or set POPLITE_BIN"
        )
    return found


def _server_environment() -> Dict[str, str]:
    """This process's environment without POPLITE_* variables.

    Every `serve` option reads one (POPLITE_HTTP_TOKEN, POPLITE_USERS, …), and
    a fixture's server must be the same fresh one whatever the shell running
    the tests has set for other poplite servers; options go in `extra_args`.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("POPLITE_")}
    env.setdefault("RUST_LOG", "warn")
    return env


class ServerProcess:
    """A running `poplite serve --memory` with the ports it listens on."""

    ports: Dict[str, int]
    """Each listener's port by kind: "POP3", "SMTP", "HTTP" (and "TLS", "LMTP" if on)."""

    def __init__(self, binary: Optional[str], extra_args: List[str], timeout: float) -> None:
        """Starts the server; raises PopliteStartError (with its stderr) if it fails."""
        from_env = binary is None and bool(os.environ.get("POPLITE_BIN"))
        program = binary or find_binary()
        command = [
            program, "serve", "--memory",
            "--listen", "127.0.0.1:0", "--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0",
            # The kernel stops it if this process dies without cleaning up
            # (SIGKILL, a CI timeout); it tracks the thread that starts it.
            "--exit-with-parent",
            *extra_args,
        ]
        described = " ".join(command) + (" (chosen by POPLITE_BIN)" if from_env else "")
        # stderr goes to a file: a pipe nobody reads would fill up and stall
        # the server, and a file can be shown whole when it fails.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=self._stderr, env=_server_environment(), bufsize=0,
            )
        except OSError as error:
            self._stderr.close()
            raise PopliteStartError(f"cannot run {described}: {error}") from error
        try:
            self.ports = self._read_ports(timeout)
        except PopliteStartError as error:
            said = self._end_and_read_stderr()
            raise PopliteStartError(
                f"{error} ({described}); its stderr:\n{said or '(empty)'}"
            ) from None
        except BaseException:
            self._end_and_read_stderr()
            raise

    def exit_status(self) -> Optional[int]:
        """The process's exit status, or None while it runs."""
        return self._process.poll()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; idempotent."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()

    def _end_and_read_stderr(self) -> str:
        """Kills the process and returns what it wrote to stderr."""
        self._process.kill()
        self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.seek(0)
        said = self._stderr.read().decode(errors="replace").strip()
        self._stderr.close()
        return said

    def _read_ports(self, timeout: float) -> Dict[str, int]:
        """Reads "listening on" lines until POP3, SMTP and HTTP are all named."""
        stdout = self._process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        ports: Dict[str, int] = {}
        pending = b""
        while not all(kind in ports for kind in _NEEDED):
            left = deadline - time.monotonic()
            if left <= 0:
                raise PopliteStartError(f"it did not say where it listens within {timeout:g} s")
            ready, _, _ = select.select([stdout], [], [], left)
            if not ready:
                continue
            chunk = stdout.read(4096)
            if not chunk:
                raise PopliteStartError(f"the server exited with {self._process.wait()}")
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                found = _LISTENING.match(line.strip())
                if found:
                    ports[(found.group(3) or b"POP3").decode()] = int(found.group(2))
        return ports
