"""Hedging policy: a speculative second attempt for slow idempotent requests (async)."""

from __future__ import annotations

from dataclasses import dataclass

from .._exceptions import ConfigError
from .._validate import check_count, check_seconds

__all__ = ["HedgePolicy", "LatencyWindow"]


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """Send another attempt to a different endpoint when the first is slow.

    ``delay`` is a fixed wait in seconds, or ``"p95"`` to use the service's observed 95th
    percentile latency (``min_delay`` until enough samples exist). ``max_hedges`` extra
    attempts at most; hedges draw on the retry budget. Only idempotent requests hedge,
    and only with :class:`AsyncServiceClient` / :class:`AsyncResilientTransport`.

    >>> HedgePolicy(delay=0.05)
    """

    delay: float | str = "p95"
    min_delay: float = 0.01
    max_hedges: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.delay, str):
            if self.delay != "p95":
                raise ConfigError(None, "delay", self.delay, "a number of seconds or 'p95'")
        else:
            check_seconds("delay", self.delay)
        check_seconds("min_delay", self.min_delay)
        check_count("max_hedges", self.max_hedges, low=1, high=4)


class LatencyWindow:
    """The last ``size`` successful latencies and their 95th percentile (for ``"p95"``).

    The percentile is recomputed every ``size // 8`` samples, not per request.
    """

    __slots__ = ("_cached", "_count", "_every", "_samples", "_size")

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._samples: list[float] = []
        self._count = 0
        self._every = max(size // 8, 1)
        self._cached: float | None = None

    def add(self, seconds: float) -> None:
        """Record one successful attempt's latency."""
        samples = self._samples
        if len(samples) < self._size:
            samples.append(seconds)
        else:
            samples[self._count % self._size] = seconds
        self._count += 1
        if self._count % self._every == 0:
            self._cached = None

    def p95(self) -> float | None:
        """The 95th percentile, or None with fewer than 20 samples."""
        if len(self._samples) < 20:
            return None
        if self._cached is None:
            ordered = sorted(self._samples)
            self._cached = ordered[min(int(len(ordered) * 0.95), len(ordered) - 1)]
        return self._cached

    def hedge_delay(self, policy: HedgePolicy) -> float:
        """The wait before hedging under ``policy``."""
        if isinstance(policy.delay, float | int):
            return float(policy.delay)
        observed = self.p95()
        return policy.min_delay if observed is None else max(observed, policy.min_delay)
