"""The pytest fixtures, registered through the `pytest11` entry point."""

from __future__ import annotations

from typing import Iterator

import pytest

from .server import PopliteServer

__all__ = ["poplite_server", "poplite_server_session"]


@pytest.fixture
def poplite_server() -> Iterator[PopliteServer]:
    """A fresh in-memory poplite server for this test, stopped after it."""
    with PopliteServer.start() as server:
        yield server


@pytest.fixture(scope="session")
def _poplite_server_process() -> Iterator[PopliteServer]:
    """The one server process behind `poplite_server_session`."""
    with PopliteServer.start() as server:
        yield server


@pytest.fixture
def poplite_server_session(
    _poplite_server_process: PopliteServer,
) -> PopliteServer:
    """One poplite server for the whole session, emptied before each test that uses it."""
    _poplite_server_process.reset()
    return _poplite_server_process
