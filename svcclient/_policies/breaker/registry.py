"""Circuit breakers shared by name, so the app, the HTTP pipeline, the metrics and the CLI
all see the same state for one service.

>>> from svcclient import breakers
>>> breakers.get_or_create("user-service").state
'closed'
>>> breakers.get("user-service") is breakers.get_or_create("user-service")
True
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Final

from ..._exceptions import ConfigError
from ..._validate import check_count
from .guard import CircuitBreaker
from .policy import BreakerPolicy

__all__ = ["DEFAULT_CAPACITY", "BreakerRegistry", "breakers"]

DEFAULT_CAPACITY: Final = 1024
"""Breakers the shared registry keeps for names nobody else holds (about 9 KB each)."""


class BreakerRegistry:
    """A thread-safe name -> :class:`CircuitBreaker` map; ``svcclient.breakers`` is the shared one.

    Bounded: a breaker stays registered while anything else holds it (a client, a
    transport, your code), and the registry itself keeps the ``capacity`` most recently
    used ones (created, registered or looked up) alive for names nobody holds any more;
    past that the least recently used of those is forgotten (LRU). A forgotten name
    starts over with a fresh, closed breaker. ``remove(name)`` forgets one at once (a
    client that still holds it keeps using it; new clients get a new one).

    One name, one setup: asking for an existing name with another policy or clock raises
    ``ConfigError`` instead of silently sharing a breaker configured differently.
    """

    __slots__ = ("_capacity", "_live", "_lock", "_recent")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = check_count("capacity", capacity, low=0)
        # Every breaker still alive, by name; entries vanish with their breaker.
        self._live: weakref.WeakValueDictionary[str, CircuitBreaker] = weakref.WeakValueDictionary()
        # Strong references to the `capacity` most recently used, oldest first.
        self._recent: OrderedDict[str, CircuitBreaker] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """How many breakers nobody else holds are kept (least recently used go first)."""
        return self._capacity

    def get(self, name: str) -> CircuitBreaker:
        """The breaker registered as ``name``; KeyError naming the known ones if none."""
        with self._lock:
            breaker = self._live.get(name)
            if breaker is not None:
                self._touch(breaker)
                return breaker
        known = ", ".join(self.names()) or "none yet"
        raise KeyError(
            f"no circuit breaker named {name!r} (known: {known}); breakers are created "
            f"by a ServiceClient for its service, or by breakers.get_or_create(name)"
        )

    def get_or_create(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> CircuitBreaker:
        """The breaker named ``name``; made with ``policy`` and ``clock`` if absent.

        ``policy``/``clock`` None: the defaults when creating, anything when it exists.
        An existing breaker with a different policy or clock raises ``ConfigError``: give
        the clients the same breaker settings, or distinct service names, or
        ``remove(name)`` first to start over.
        """
        with self._lock:
            breaker = self._live.get(name)
            if breaker is None:
                breaker = CircuitBreaker(name=name, policy=policy, clock=clock)
                self._live[name] = breaker
            elif not breaker.same_setup(policy, clock):
                raise _conflict(breaker, policy, clock)
            self._touch(breaker)
            return breaker

    def register(self, breaker: CircuitBreaker, *, replace: bool = False) -> CircuitBreaker:
        """Share ``breaker`` under its name; ValueError if taken (unless ``replace``)."""
        with self._lock:
            current = self._live.get(breaker.name)
            if current is not None and current is not breaker and not replace:
                raise ValueError(f"a circuit breaker named {breaker.name!r} is already registered")
            self._live[breaker.name] = breaker
            self._recent.pop(breaker.name, None)
            self._touch(breaker)
        return breaker

    def remove(self, name: str) -> bool:
        """Forget ``name`` now; True if it was registered. Holders keep their breaker."""
        with self._lock:
            self._recent.pop(name, None)
            return self._live.pop(name, None) is not None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        with self._lock:
            return sorted(self._live.keys())

    def clear(self) -> None:
        """Forget every breaker (for tests)."""
        with self._lock:
            self._live.clear()
            self._recent.clear()

    def _touch(self, breaker: CircuitBreaker) -> None:
        # Lock held. Most recently used last; drop the oldest strong reference past capacity.
        recent = self._recent
        recent[breaker.name] = breaker
        recent.move_to_end(breaker.name)
        while len(recent) > self._capacity:
            recent.popitem(last=False)

    def __iter__(self) -> Iterator[CircuitBreaker]:
        with self._lock:
            return iter(list(self._live.values()))

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, name: object) -> bool:
        return name in self._live


def _conflict(
    breaker: CircuitBreaker, policy: BreakerPolicy | None, clock: Callable[[], float] | None
) -> ConfigError:
    name = breaker.name
    fix = f"use the same settings for one name, or breakers.remove({name!r}) first"
    if policy is not None and policy != breaker.policy:
        differ = [
            f"{f.name}={getattr(policy, f.name)!r} (existing: {getattr(breaker.policy, f.name)!r})"
            for f in dataclasses.fields(policy)
            if getattr(policy, f.name) != getattr(breaker.policy, f.name)
        ]
        return ConfigError(
            name,
            "breaker",
            "; ".join(differ),
            f"a circuit breaker named {name!r} exists with another policy; {fix}",
        )
    return ConfigError(
        name,
        "clock",
        clock,
        f"a circuit breaker named {name!r} exists with another clock ({breaker.clock!r}); {fix}",
    )


breakers = BreakerRegistry()
