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

    __slots__ = ("_factory", "_grace", "_lock", "_pools", "_retiring")

    def __init__(self, factory: Callable[[Endpoint], P], grace: float) -> None:
        self._factory = factory
        self._grace = grace
        self._pools: dict[Endpoint, P] = {}
        self._retiring: list[tuple[float, P]] = []
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

    @property
    def has_retiring(self) -> bool:
        """True while some retired pool still waits to be closed."""
        return bool(self._retiring)

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
                    self._retiring.append((now + self._grace, pool))

    def due(self, now: float) -> list[P]:
        """Remove and return the retired pools whose grace time has passed."""
        with self._lock:
            due = [pool for close_at, pool in self._retiring if close_at <= now]
            if due:
                self._retiring = [(t, p) for t, p in self._retiring if t > now]
            return due

    def drain(self) -> list[P]:
        """Remove and return every pool, live or retiring (on close)."""
        with self._lock:
            pools = list(self._pools.values()) + [pool for _, pool in self._retiring]
            self._pools.clear()
            self._retiring.clear()
            return pools
