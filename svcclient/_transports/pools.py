"""Which connection pool serves which endpoint, and when a retired pool may close.

Shared by the sync and async transports; it never closes anything itself (closing is
I/O and differs between them), it only says which pools are due.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from .._endpoint import Endpoint

__all__ = ["PoolSet"]

P = TypeVar("P")


class PoolSet(Generic[P]):
    """One pool per endpoint, created on first use by ``factory``.

    A retired pool (its endpoint left DNS or was ejected) closes only after ``grace``
    seconds, so requests already in flight on it can finish: every request is bounded by
    the service's deadline, which is what ``grace`` is set from.
    """

    __slots__ = ("_factory", "_grace", "_lock", "_pools", "retiring")

    def __init__(self, factory: Callable[[Endpoint], P], grace: float) -> None:
        self._factory = factory
        self._grace = grace
        self._pools: dict[Endpoint, P] = {}
        # Retired pools and when each may close; non-empty while some wait (the drivers
        # test it on every request: an attribute read, not a property call).
        self.retiring: list[tuple[float, P]] = []
        # Only pool creation takes the lock: threads reaching a new endpoint together
        # must share one pool, or the losers' pools (and sockets) are never closed.
        self._lock = threading.Lock()

    def get(self, endpoint: Endpoint) -> P:
        """The pool for ``endpoint`` (created on first use)."""
        pool = self._pools.get(endpoint)
        if pool is None:
            with self._lock:
                pool = self._pools.get(endpoint)
                if pool is None:
                    pool = self._pools[endpoint] = self._factory(endpoint)
        return pool

    def retire(self, endpoints: list[Endpoint], now: float) -> None:
        """Stop handing out the pools of ``endpoints``; ``endpoints`` is emptied."""
        with self._lock:
            while endpoints:
                try:
                    endpoint = endpoints.pop()
                except IndexError:  # another thread emptied the shared list meanwhile
                    break
                pool = self._pools.pop(endpoint, None)
                if pool is not None:
                    self.retiring.append((now + self._grace, pool))

    def due(self, now: float) -> list[P]:
        """Remove and return the retired pools whose grace time has passed."""
        with self._lock:
            due = [pool for close_at, pool in self.retiring if close_at <= now]
            if due:
                self.retiring = [(t, p) for t, p in self.retiring if t > now]
            return due

    def drain(self) -> list[P]:
        """Remove and return every pool, live or retiring (on close)."""
        with self._lock:
            pools = list(self._pools.values()) + [pool for _, pool in self.retiring]
            self._pools.clear()
            self.retiring.clear()
            return pools
