"""When a pooled connection retires (``max_connection_age``, see :mod:`.connection_age`).

No I/O: the stream wrappers of both worlds (:mod:`._async`, :mod:`._sync`) share it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["DEFAULT_JITTER", "Clock", "Retirement"]

DEFAULT_JITTER = 0.1

Clock = Callable[[], float]


class Retirement:
    """When a new connection should retire: ``now + max_age * U(1 - jitter, 1 + jitter)``."""

    __slots__ = ("clock", "jitter", "max_age", "random")

    def __init__(self, max_age: float, jitter: float, clock: Clock, rng: random.Random) -> None:
        self.max_age = max_age
        self.jitter = jitter
        self.clock = clock
        self.random = rng.random

    def at(self) -> float:
        spread = 1.0 + self.jitter * (2.0 * self.random() - 1.0)
        return self.clock() + self.max_age * spread
