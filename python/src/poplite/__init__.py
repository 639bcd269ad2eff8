"""poplite for Python test suites: the server binary and a pytest plugin.

Installing this package puts `poplite` on PATH and gives pytest two fixtures,
`poplite_server` (a fresh server per test) and `poplite_server_session` (one
per session, emptied before each test). `PopliteServer` is the same thing
without pytest.
"""

from .errors import PopliteError, PopliteStartError, PopliteTimeout
from .process import find_binary
from .server import MessageLike, PopliteServer, StoredMessage

__all__ = [
    "MessageLike",
    "PopliteError",
    "PopliteServer",
    "PopliteStartError",
    "PopliteTimeout",
    "StoredMessage",
    "find_binary",
]
