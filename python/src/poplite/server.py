"""A throwaway poplite server process and a client for its HTTP API.

The server runs `poplite serve --memory` with POP3, SMTP and the HTTP API on
ephemeral loopback ports; everything a test does to it (users, mail, waits,
resets) goes through the API, so what a test sees is what a POP3 client sees.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import json
import os
import re
import select
import shutil
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import IO, Any, Dict, List, Optional, Union

__all__ = [
    "PopliteError",
    "PopliteServer",
    "PopliteStartError",
    "PopliteTimeout",
    "StoredMessage",
    "find_binary",
]

#: What `deliver` takes: the raw message, text, or a message object.
MessageLike = Union[bytes, str, email.message.Message]

# "poplite listening on 127.0.0.1:PORT" for POP3, with " (SMTP)" or " (HTTP)".
_LISTENING = re.compile(rb"poplite listening on (\S+):(\d+)(?: \((\w+)\))?")
# The API's own wait is capped at 60 s; longer waits ask again.
_LONGEST_API_WAIT = 60.0
# How long `reset` waits for POP3 sessions that are closing to end.
_SESSION_CLOSE_GRACE = 2.0


class PopliteError(Exception):
    """The server refused a request, or could not be reached."""


class PopliteStartError(PopliteError):
    """The server process did not start; the message holds its stderr."""


class PopliteTimeout(PopliteError, TimeoutError):
    """`wait_for_messages` ran out of time before enough mail came."""


class _Conflict(PopliteError):
    """409: a POP3 session holds what the request would change."""


@dataclass(frozen=True)
class StoredMessage:
    """One message in a maildrop, as POP3 would serve it."""

    uid: str
    """The UIDL unique id."""
    size: int
    """Octets, as POP3's LIST counts them."""
    subject: Optional[str]
    """The Subject header, or None."""
    received_at: str
    """The arrival time, RFC 3339 in UTC."""
    content: bytes
    """The message as RETR sends it (CRLF line ends), before dot-stuffing."""

    @property
    def message(self) -> email.message.EmailMessage:
        """The content parsed with the standard library's modern policy."""
        parser = email.parser.BytesParser(policy=email.policy.default)
        parsed = parser.parsebytes(self.content)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


def find_binary() -> str:
    """The poplite binary: $POPLITE_BIN, else the one this package installed, else PATH."""
    chosen = os.environ.get("POPLITE_BIN")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise PopliteStartError(f"POPLITE_BIN={chosen} is not an executable file")
        return chosen
    # The wheel puts it beside this interpreter's scripts, which need not be
    # on PATH (a virtual environment used without activating it).
    beside = os.path.join(sysconfig.get_path("scripts"), "poplite")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("poplite")
    if found is None:
        raise PopliteStartError(
            "no poplite binary: install this package's wheel, put poplite on PATH, "
            "or set POPLITE_BIN"
        )
    return found


class PopliteServer:
    """A `poplite serve --memory` process on ephemeral loopback ports.

    Use `PopliteServer.start()` as a context manager, or call `stop()`.
    """

    host: str
    """Where every listener is: 127.0.0.1."""
    pop3_port: int
    """The POP3 port (plain, with STLS when TLS is configured: it is not here)."""
    smtp_port: int
    """The SMTP port: the code under test sends mail for local users here."""
    http_url: str
    """The HTTP API's base URL, e.g. http://127.0.0.1:40567."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        stderr: IO[bytes],
        ports: Dict[str, int],
    ) -> None:
        """Wraps a started process; use `PopliteServer.start()` instead."""
        self._process = process
        self._stderr = stderr
        self.host = "127.0.0.1"
        self.pop3_port = ports["POP3"]
        self.smtp_port = ports["SMTP"]
        self.http_url = f"http://{self.host}:{ports['HTTP']}"

    @classmethod
    def start(
        cls,
        binary: Optional[str] = None,
        extra_args: Optional[List[str]] = None,
        timeout: float = 10.0,
    ) -> "PopliteServer":
        """Starts a server and returns once every listener is bound.

        `binary` defaults to `find_binary()`; `extra_args` go to `serve` (for
        example `["--max-message-size", "1M"]`). Raises `PopliteStartError`
        with the server's stderr if it exits or stays silent for `timeout` s.
        """
        program = binary or find_binary()
        command = [
            program, "serve", "--memory",
            "--listen", "127.0.0.1:0", "--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0",
            *(extra_args or []),
        ]
        # stderr goes to a file: a pipe nobody reads would fill up and stall
        # the server, and a file can be shown whole when it fails.
        stderr = tempfile.TemporaryFile()
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=stderr, env=env, bufsize=0,
            )
        except OSError as error:
            stderr.close()
            raise PopliteStartError(f"cannot run {program}: {error}") from error
        try:
            ports = _read_ports(process, timeout)
        except PopliteStartError as error:
            process.kill()
            process.wait()
            stderr.seek(0)
            said = stderr.read().decode(errors="replace").strip()
            stderr.close()
            raise PopliteStartError(
                f"{error} ({' '.join(command)}); its stderr:\n{said or '(empty)'}"
            ) from None
        return cls(process, stderr, ports)

    def __enter__(self) -> "PopliteServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL after 5 s); idempotent."""
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

    def add_user(self, name: str, password: str, apop: bool = False) -> None:
        """Adds a user; `apop=True` also keeps the password for APOP logins."""
        self._request(
            "POST", "/api/v1/users",
            json.dumps({"name": name, "password": password, "apop": apop}).encode(),
            "application/json",
        )

    def deliver(self, user: str, message: MessageLike) -> StoredMessage:
        """Stores a message for `user` (as an MTA would) and returns it as stored."""
        if isinstance(message, email.message.Message):
            raw = message.as_bytes()
        elif isinstance(message, str):
            raw = message.encode()
        else:
            raw = bytes(message)
        body = self._request("POST", f"{_user_path(user)}/messages", raw, "message/rfc822")
        return self._with_content(user, json.loads(body))

    def messages(self, user: str) -> List[StoredMessage]:
        """The user's maildrop now, oldest first, with each message's content."""
        listing = json.loads(self._request("GET", f"{_user_path(user)}/messages"))
        return [self._with_content(user, entry) for entry in listing]

    def wait_for_messages(
        self, user: str, n: int, timeout: float = 10.0
    ) -> List[StoredMessage]:
        """Waits until `user` has at least `n` messages and returns them.

        The server answers as soon as the mail is there (no polling); raises
        `PopliteTimeout`, saying how many came, after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            wait = min(left, _LONGEST_API_WAIT)
            query = urllib.parse.urlencode({"min": n, "timeout": f"{wait:.3f}"})
            listing = json.loads(
                self._request("GET", f"{_user_path(user)}/messages?{query}", timeout=wait + 10)
            )
            if len(listing) >= n:
                return [self._with_content(user, entry) for entry in listing]
            if time.monotonic() >= deadline:
                raise PopliteTimeout(
                    f"{user} has {len(listing)} of {n} messages after {timeout:g} s"
                )

    def reset(self) -> None:
        """Removes every user and message; fails while a POP3 session stays open.

        A client that has just closed its connection may still be seen for a
        moment, so a refusal for an open session is retried for up to 2 s.
        """
        deadline = time.monotonic() + _SESSION_CLOSE_GRACE
        while True:
            try:
                self._request("POST", "/api/v1/reset")
                return
            except _Conflict as conflict:
                if time.monotonic() >= deadline:
                    raise PopliteError(
                        f"{conflict} (a POP3 client of the previous test is still "
                        "connected: QUIT or close it before the test ends)"
                    ) from None
                time.sleep(0.05)

    def _with_content(self, user: str, entry: Dict[str, Any]) -> StoredMessage:
        """The API's summary of a message, with its content fetched."""
        uid = str(entry["uid"])
        content = self._request(
            "GET", f"{_user_path(user)}/messages/{urllib.parse.quote(uid, safe='')}"
        )
        return StoredMessage(
            uid=uid,
            size=int(entry["size"]),
            subject=entry.get("subject"),
            received_at=str(entry["received_at"]),
            content=content,
        )

    def _request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        content_type: Optional[str] = None,
        timeout: float = 30.0,
    ) -> bytes:
        request = urllib.request.Request(self.http_url + path, data=body, method=method)
        if content_type is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer: bytes = response.read()
                return answer
        except urllib.error.HTTPError as error:
            refusal = _Conflict if error.code == 409 else PopliteError
            raise refusal(f"{method} {path}: {_problem(error)}") from None
        except (urllib.error.URLError, OSError) as error:
            state = self._process.poll()
            why = f"the server exited with {state}" if state is not None else str(error)
            raise PopliteError(f"{method} {path}: {why}") from error


def _user_path(user: str) -> str:
    return "/api/v1/users/" + urllib.parse.quote(user, safe="")


def _problem(error: urllib.error.HTTPError) -> str:
    """One line from an RFC 9457 problem+json answer (or the status alone)."""
    try:
        problem = json.loads(error.read())
        return f"{error.code} {problem.get('title', '')}: {problem.get('detail', '')}".strip()
    except (ValueError, AttributeError, OSError):
        return f"{error.code} {error.reason}"


def _read_ports(process: subprocess.Popen[bytes], timeout: float) -> Dict[str, int]:
    """Reads the three "listening on" lines, or raises PopliteStartError."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    ports: Dict[str, int] = {}
    pending = b""
    while len(ports) < 3:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PopliteStartError(f"no ready line within {timeout:g} s")
        ready, _, _ = select.select([process.stdout], [], [], left)
        if not ready:
            continue
        chunk = process.stdout.read(4096)
        if not chunk:
            raise PopliteStartError(f"the server exited with {process.wait()}")
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            found = _LISTENING.match(line.strip())
            if found:
                ports[(found.group(3) or b"POP3").decode()] = int(found.group(2))
    return ports
