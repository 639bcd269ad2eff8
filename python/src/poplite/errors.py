"""What the package raises: one base class, so `except PopliteError` catches all."""

from __future__ import annotations

from typing import Optional

__all__ = ["PopliteError", "PopliteStartError", "PopliteTimeout"]


class PopliteError(Exception):
    """The server refused a request, or could not be reached."""

    status: Optional[int]
    """The HTTP status of the API's refusal (404, 409, …), or None if there was none."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        """`message` is the whole explanation; `status` the API's HTTP status, if any."""
        super().__init__(message)
        self.status = status


class PopliteStartError(PopliteError):
    """The server process did not start; the message holds its stderr."""


class PopliteTimeout(PopliteError, TimeoutError):
    """`wait_for_messages` ran out of time before enough mail came."""
