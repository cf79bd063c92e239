"""The time bound of whatever is sending now, for svcclient's pools to cap sockets with.

A context variable, so it follows the sending thread or task (asyncio and trio copy
contexts per task; a hedge's racer has its own). The drivers set it to the attempt
around each send, the streamed-body wrappers to the call's deadline around each chunk.
Kept apart from :mod:`.pinned` so that using it does not import httpcore.
"""

from __future__ import annotations

import contextvars
import typing

__all__ = ["BOUND", "Bound", "capped"]


class Bound(typing.Protocol):
    """Anything that says how many seconds are left (an Attempt, a Deadline)."""

    def remaining(self) -> float: ...


BOUND: contextvars.ContextVar[Bound | None] = contextvars.ContextVar(
    "svcclient_bound", default=None
)


def capped(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` capped at the time the bound leaves; ``error`` (an httpcore timeout
    class) raised when none is left. With no bound set, ``timeout`` unchanged."""
    bound = BOUND.get()
    if bound is None:
        return timeout
    left = bound.remaining()
    if left <= 0.0:
        raise error("svcclient: no time left (attempt timeout or deadline)")
    return left if timeout is None or left < timeout else timeout
