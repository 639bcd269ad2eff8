"""A throwaway poplite server and what a test does to it, over its HTTP API.

The server runs `poplite serve --memory` with POP3, SMTP and the HTTP API on
ephemeral loopback ports; everything a test does to it (users, mail, waits,
resets) goes through the API, so what a test sees is what a POP3 client sees.
"""

from __future__ import annotations

import email.header
import email.message
import email.parser
import email.policy
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from .errors import PopliteError, PopliteTimeout
from .process import ServerProcess

__all__ = ["MessageLike", "PopliteServer", "StoredMessage"]

#: What `deliver` takes: the raw message, text (stored as UTF-8), or a message object.
MessageLike = Union[bytes, str, email.message.Message]

# The API's own wait is capped at 60 s; longer waits ask again.
_LONGEST_API_WAIT = 60.0
# How long a POP3 session that a client has just closed may still be seen.
_SESSION_CLOSE_GRACE = 2.0


@dataclass(frozen=True)
class StoredMessage:
    """One message in a maildrop, as POP3 would serve it."""

    uid: str
    """The UIDL unique id."""
    size: int
    """Octets, as POP3's LIST counts them."""
    subject: Optional[str]
    """The Subject header, decoded (RFC 2047), or None."""
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


class PopliteServer:
    """A `poplite serve --memory` process on ephemeral loopback ports.

    Use `PopliteServer.start()` as a context manager, or call `stop()`.
    """

    host: str
    """Where every listener is: 127.0.0.1."""
    pop3_port: int
    """The POP3 port."""
    smtp_port: int
    """The SMTP port: the code under test sends mail for local users here."""
    http_url: str
    """The HTTP API's base URL, e.g. http://127.0.0.1:40567."""

    def __init__(self, process: ServerProcess) -> None:
        """Wraps a started process; use `PopliteServer.start()` instead."""
        self._process = process
        self._stopped = False
        self.host = "127.0.0.1"
        self.pop3_port = process.ports["POP3"]
        self.smtp_port = process.ports["SMTP"]
        self.http_url = f"http://{self.host}:{process.ports['HTTP']}"

    @classmethod
    def start(
        cls,
        binary: Optional[str] = None,
        extra_args: Optional[List[str]] = None,
        timeout: float = 10.0,
    ) -> "PopliteServer":
        """Starts a server and returns once every listener is bound.

        `binary` defaults to `find_binary()`; `extra_args` go to `serve` (for
        example `["--auth-failure-delay", "0s"]`). The server gets this
        process's environment without POPLITE_* variables, so it starts the
        same whatever the shell has set. Raises `PopliteStartError` with the
        server's stderr if it exits or stays silent for `timeout` seconds.
        """
        return cls(ServerProcess(binary, list(extra_args or []), timeout))

    def __enter__(self) -> "PopliteServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL after 5 s); idempotent."""
        self._stopped = True
        self._process.stop()

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
        elif isinstance(message, (bytes, bytearray, memoryview)):
            raw = bytes(message)
        else:
            raise TypeError(
                f"deliver takes bytes, str or email.message.Message, not {type(message).__name__}"
            )
        body = self._request("POST", f"{_user_path(user)}/messages", raw, "message/rfc822")
        return self._with_content(user, json.loads(body))

    def messages(self, user: str) -> List[StoredMessage]:
        """The user's maildrop now, oldest first, with each message's content."""
        listing = json.loads(self._request("GET", f"{_user_path(user)}/messages"))
        return [self._with_content(user, entry) for entry in listing]

    def wait_for_messages(
        self, user: str, n: int, timeout: float = 10.0
    ) -> List[StoredMessage]:
        """Waits until `user` has at least `n` messages and returns them all.

        The server answers as soon as the mail is there (no polling); raises
        `PopliteTimeout`, saying how many came, after `timeout` seconds.
        """
        if n < 0 or timeout < 0:
            raise ValueError(f"n and timeout must not be negative (n={n}, timeout={timeout})")
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
        """Removes every user and message; refused while a POP3 client is logged in.

        A client that has just closed its connection may still be seen for a
        moment, so a refusal for an open session is retried for up to 2 s.
        """
        deadline = time.monotonic() + _SESSION_CLOSE_GRACE
        while True:
            try:
                self._request("POST", "/api/v1/reset")
                return
            except PopliteError as refusal:
                if refusal.status != 409 or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def open_sessions(self) -> List[Dict[str, Any]]:
        """The POP3 sessions open now, oldest first.

        Each is the API's `{"id", "peer", "user", "state", "since", "tls"}`;
        `user` is None before login.
        """
        sessions: List[Dict[str, Any]] = json.loads(self._request("GET", "/api/v1/sessions"))
        return sessions

    def logged_in_sessions(self, grace: float = _SESSION_CLOSE_GRACE) -> List[Dict[str, Any]]:
        """The POP3 sessions holding a maildrop, once those closing have ended
        (waiting `grace` seconds at most): what would make `reset` fail."""
        deadline = time.monotonic() + grace
        while True:
            held = [session for session in self.open_sessions() if session.get("user")]
            if not held or time.monotonic() >= deadline:
                return held
            time.sleep(0.05)

    def _with_content(self, user: str, entry: Dict[str, Any]) -> StoredMessage:
        """The API's summary of a message, with its content fetched."""
        uid = str(entry["uid"])
        content = self._request(
            "GET", f"{_user_path(user)}/messages/{urllib.parse.quote(uid, safe='')}"
        )
        subject = entry.get("subject")
        return StoredMessage(
            uid=uid,
            size=int(entry["size"]),
            subject=None if subject is None else _decoded(subject),
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
        """One API request; its body, or PopliteError saying why not."""
        if self._stopped:
            raise PopliteError(f"{method} {path}: the server was stopped")
        request = urllib.request.Request(self.http_url + path, data=body, method=method)
        if content_type is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer: bytes = response.read()
                return answer
        except urllib.error.HTTPError as error:
            raise PopliteError(f"{method} {path}: {_problem(error)}", error.code) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            state = self._process.exit_status()
            why = f"the server exited with {state}" if state is not None else str(error)
            raise PopliteError(f"{method} {path}: {why}") from error


def _user_path(user: str) -> str:
    return "/api/v1/users/" + urllib.parse.quote(user, safe="")


def _decoded(header: str) -> str:
    """A header's text with RFC 2047 encoded words decoded."""
    try:
        return str(email.header.make_header(email.header.decode_header(header)))
    except (ValueError, LookupError):
        return header


def _problem(error: urllib.error.HTTPError) -> str:
    """One line from an RFC 9457 problem+json answer (or the status alone)."""
    try:
        problem = json.loads(error.read())
        return f"{error.code} {problem.get('title', '')}: {problem.get('detail', '')}".strip()
    except (ValueError, AttributeError, OSError):
        return f"{error.code} {error.reason}"
