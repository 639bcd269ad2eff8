"""The pytest fixtures, registered through the `pytest11` entry point."""

from __future__ import annotations

from typing import Iterator, List

import pytest

from .errors import PopliteError
from .server import PopliteServer

__all__ = ["poplite_serve_args", "poplite_server", "poplite_server_session"]


@pytest.fixture(scope="session")
def poplite_serve_args() -> List[str]:
    """Extra `poplite serve` options for both fixtures' servers: none.

    Override it in a conftest.py, session-scoped, to change them, e.g.
    `return ["--auth-failure-delay", "0s"]`.
    """
    return []


@pytest.fixture
def poplite_server(poplite_serve_args: List[str]) -> Iterator[PopliteServer]:
    """A fresh in-memory poplite server for this test, stopped after it."""
    with PopliteServer.start(extra_args=poplite_serve_args) as server:
        yield server


@pytest.fixture(scope="session")
def _poplite_server_process(poplite_serve_args: List[str]) -> Iterator[PopliteServer]:
    """The one server process behind `poplite_server_session`."""
    with PopliteServer.start(extra_args=poplite_serve_args) as server:
        yield server


@pytest.fixture
def poplite_server_session(
    _poplite_server_process: PopliteServer,
) -> Iterator[PopliteServer]:
    """One poplite server for the whole session, emptied before each test that uses it.

    A test that leaves a POP3 client logged in fails at its own teardown:
    the next test's reset could not empty the server under that session.
    """
    server = _poplite_server_process
    server.reset()
    yield server
    left_open = server.logged_in_sessions()
    if left_open:
        users = ", ".join(sorted({str(s["user"]) for s in left_open}))
        raise PopliteError(
            f"this test left {len(left_open)} POP3 session(s) logged in ({users}): "
            "QUIT or close its POP3 clients before it ends, so the next test can start empty"
        )
