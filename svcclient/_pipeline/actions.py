"""What a call asks its driver to do next (see :mod:`svcclient._pipeline.call`).

A driver loops on ``action = call.next()`` (or on what reporting an outcome returns) and
performs the action it is given. Four of them are objects of svcclient's own, defined
here; the others are values the driver already knows:

==========================  ============================================================
action                      the driver
==========================  ============================================================
:class:`~.call.Attempt`     sends the attempt to ``attempt.endpoint`` within
                            ``attempt.remaining()``, then reports ``call.responded(attempt,
                            response)`` or ``call.failed(attempt, error)``
:class:`Sleep`              closes ``discard`` (a response not kept), sleeps ``seconds``,
                            asks ``call.next()``
:class:`Resolve`            resolves ``host`` (DNS, within ``timeout``), reports
                            ``call.resolved(resolution)`` or ``call.resolved(None, error)``
:class:`AwaitResolution`    waits up to ``timeout`` for ``event`` (another caller's first
                            lookup), asks ``call.next()``
:class:`AwaitSlot`          waits up to ``timeout`` for a slot of ``bulkhead``; asks
                            ``call.next()``, or reports ``call.refused(error)`` when the
                            bulkhead turns it away
:class:`Fallback`           returns ``run()``'s answer (awaited, when it is awaitable)
``httpx.Response``          returns it
``BaseException``           raises it
==========================  ============================================================

The async driver may also get a :class:`~.hedging.Race` (hedging on): it runs the race's
attempts as the race decides and reports the race's outcome like an attempt's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    import httpx

# Immutable values; named tuples rather than frozen dataclasses: a frozen dataclass costs
# about 0.7 ms of import time each (its methods are compiled when the class is made).

__all__ = ["AwaitResolution", "AwaitSlot", "Fallback", "Resolve", "Sleep"]


class Sleep(NamedTuple):
    """Back off ``seconds`` before the next attempt; close ``discard`` first."""

    seconds: float
    discard: httpx.Response | None = None


class Resolve(NamedTuple):
    """Look ``host`` up in DNS (this call holds the endpoint set's refresh turn)."""

    host: str
    port: int
    timeout: float


class AwaitResolution(NamedTuple):
    """Another caller holds the first lookup: wait for ``event``, at most ``timeout``."""

    event: threading.Event
    timeout: float


class AwaitSlot(NamedTuple):
    """No bulkhead slot is free: wait for one of ``bulkhead``'s, at most ``timeout``."""

    bulkhead: Any  # Bulkhead or AsyncBulkhead: the driver's own kind
    timeout: float


class Fallback(NamedTuple):
    """The call failed and a fallback is configured: its answer is the call's."""

    fallback: Callable[[httpx.Request, BaseException], Any]
    request: httpx.Request
    error: BaseException

    def run(self) -> Any:
        """The fallback's answer (a response, or an awaitable of one)."""
        return self.fallback(self.request, self.error)
