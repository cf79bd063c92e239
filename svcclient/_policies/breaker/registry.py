"""Circuit breakers shared by name, so the app, the HTTP pipeline, the metrics and the CLI
all see the same state for one service.

>>> from svcclient import breakers
>>> breakers.get_or_create("user-service").state
'closed'
>>> breakers.get("user-service") is breakers.get_or_create("user-service")
True
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from .machine import BreakerPolicy, CircuitBreaker

__all__ = ["BreakerRegistry", "breakers"]

log = logging.getLogger("svcclient")


class BreakerRegistry:
    """A thread-safe name -> :class:`CircuitBreaker` map; ``svcclient.breakers`` is the shared one.

    Lookups are plain dict reads (no lock); creating and registering take a lock so that
    two threads asking for the same new name get the same breaker.
    """

    __slots__ = ("_breakers", "_lock")

    def __init__(self) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> CircuitBreaker:
        """The breaker registered as ``name``; KeyError naming the known ones if none."""
        try:
            return self._breakers[name]
        except KeyError:
            known = ", ".join(sorted(self._breakers)) or "none yet"
            raise KeyError(
                f"no circuit breaker named {name!r} (known: {known}); breakers are created "
                f"by a ServiceClient for its service, or by breakers.get_or_create(name)"
            ) from None

    def get_or_create(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> CircuitBreaker:
        """The breaker named ``name``, made with ``policy`` (default policy) if absent.

        If it exists with a different policy the existing breaker is kept (the first
        configuration wins; a debug message says so), so every user shares one state.
        """
        breaker = self._breakers.get(name)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(name)
                if breaker is None:
                    breaker = CircuitBreaker(name=name, policy=policy, clock=clock)
                    self._breakers[name] = breaker
                    return breaker
        if policy is not None and policy != breaker.policy:
            log.debug("circuit breaker %r exists with another policy; keeping it", name)
        return breaker

    def register(self, breaker: CircuitBreaker, *, replace: bool = False) -> CircuitBreaker:
        """Share ``breaker`` under its name; ValueError if taken (unless ``replace``)."""
        with self._lock:
            current = self._breakers.get(breaker.name)
            if current is not None and current is not breaker and not replace:
                raise ValueError(f"a circuit breaker named {breaker.name!r} is already registered")
            self._breakers[breaker.name] = breaker
        return breaker

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._breakers)

    def clear(self) -> None:
        """Forget every breaker (for tests)."""
        with self._lock:
            self._breakers = {}

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def __contains__(self, name: object) -> bool:
        return name in self._breakers


breakers = BreakerRegistry()
