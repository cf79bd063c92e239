"""A client-wide retry budget (Finagle / Envoy style) that keeps an outage from becoming a
retry storm.

Theory of operation
-------------------
Every logical call deposits with :meth:`RetryBudget.record_request`; every retry or hedge
must :meth:`RetryBudget.try_withdraw` first. A withdrawal at time ``t`` succeeds only if,
counting it,

    retries in (t - window, t]  <=  ratio * requests in (t - window, t]  +  floor * window

where ``floor = min_retries_per_second`` lets a low-traffic service still retry.

Counts live in ``BUCKETS`` time buckets of ``window / BUCKETS`` seconds, so
``record_request`` is a comparison and one ``list.append``: the current bucket's requests
are tokens in a list (atomic under the GIL, so no lock), counted and cleared when the
bucket closes. Buckets blur the edges of
the window, and the blur is always resolved against retrying: requests are counted only in
buckets that lie wholly inside ``(t - window, t]`` (the current one and the ``BUCKETS - 1``
before it), retries in every bucket that overlaps it (one more). The inequality above
therefore holds exactly at every withdrawal. At worst the budget is slightly stricter than
the exact one: it may count retries from up to ``window * (1 + 1/BUCKETS)`` ago and forget
requests older than ``window * (1 - 1/BUCKETS)``.

What it guarantees over longer periods: cover the retries of any period ``[a, b]`` by
disjoint windows, each ending at a retry, going back from the last one; each window obeys
the inequality, so

    retries in [a, b]  <=  ratio * requests in (a - window, b]  +  floor * (b - a + window)

During a full outage (every attempt fails, every call wants all its retries) total attempts
stay at most ``(1 + ratio) * requests + floor * (duration + window)``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .._validate import check_number, check_seconds

__all__ = ["BUCKETS", "BudgetPolicy", "BudgetStats", "RetryBudget"]

BUCKETS: Final = 10
"""Number of time buckets per window."""


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """Configuration of a :class:`RetryBudget`.

    * ``ratio`` (0.2): retries may add at most this fraction to the request rate.
    * ``window`` (10.0 s): the sliding window over which requests and retries are counted.
    * ``min_retries_per_second`` (10.0): a floor, so a service with little traffic can still
      retry; it adds ``min_retries_per_second * window`` retries to every window.

    ``ratio=0`` and ``min_retries_per_second=0`` together forbid all retries and hedges.

    >>> BudgetPolicy(ratio=0.1, window=30.0, min_retries_per_second=1.0)
    BudgetPolicy(ratio=0.1, window=30.0, min_retries_per_second=1.0)
    """

    ratio: float = 0.2
    window: float = 10.0
    min_retries_per_second: float = 10.0

    def __post_init__(self) -> None:
        check_number("ratio", self.ratio, low=0, high=1e6)
        check_seconds("window", self.window)
        check_number("min_retries_per_second", self.min_retries_per_second, low=0, high=1e9)


@dataclass(frozen=True, slots=True)
class BudgetStats:
    """A snapshot of a :class:`RetryBudget` (counts are for the current window)."""

    requests: int
    """Requests counted in the current window."""
    retries: int
    """Retries and hedges counted in the current window."""
    available: int
    """Withdrawals that would succeed right now."""
    withdrawn_total: int
    """Successful withdrawals since creation."""
    exhausted_total: int
    """Refused withdrawals since creation (same as ``RetryBudget.exhausted_count``)."""


class RetryBudget:
    """Limits retries and hedges to a fraction of the request rate, plus a floor.

    Call :meth:`record_request` once per logical call and :meth:`try_withdraw` before each
    retry or hedge; when it returns False, give the caller the original error at once.
    Thread-safe. Defaults: 20 % over a 10 s window plus 10 retries per second.

    >>> now = [0.0]
    >>> budget = RetryBudget(ratio=0.5, window=1.0, min_retries_per_second=0.0,
    ...                      clock=lambda: now[0])
    >>> budget.record_request(); budget.record_request()
    >>> budget.try_withdraw(), budget.try_withdraw(), budget.exhausted_count
    (True, False, 1)
    """

    __slots__ = (
        "_clock",
        "_cur",
        "_lock",
        "_req_ring",
        "_reserve",
        "_ret_now",
        "_ret_ring",
        "_width",
        "arrivals",
        "bucket_end",
        "exhausted_count",
        "policy",
        "withdrawn_count",
    )

    policy: BudgetPolicy
    exhausted_count: int
    """Withdrawals refused since creation; the pipeline exports it as a counter."""
    withdrawn_count: int
    arrivals: list[None]
    """The current bucket's requests, one token each (see :meth:`record_request`)."""
    bucket_end: float
    """When the current bucket closes: a request before it only appends to ``arrivals``
    (what the pipeline does itself on every request, without the call)."""

    def __init__(
        self,
        ratio: float = 0.2,
        window: float = 10.0,
        min_retries_per_second: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = BudgetPolicy(ratio, window, min_retries_per_second)
        self._clock = clock
        self._lock = threading.Lock()
        self._width = window / BUCKETS
        self._reserve = min_retries_per_second * window
        # The current bucket's counts live in arrivals and _ret_now (the hot path touches
        # only them); the ring holds the BUCKETS buckets before it, slot = bucket index % BUCKETS.
        # The slot of the current bucket therefore holds the oldest bucket (cur - BUCKETS).
        self._req_ring = [0] * BUCKETS
        self._ret_ring = [0] * BUCKETS
        # The current bucket's requests, one token each (see record_request).
        self.arrivals: list[None] = []
        self._ret_now = 0
        self._cur = math.floor(clock() / self._width)
        self.bucket_end = (self._cur + 1) * self._width
        self.exhausted_count = 0
        self.withdrawn_count = 0

    @classmethod
    def from_policy(
        cls, policy: BudgetPolicy, clock: Callable[[], float] = time.monotonic
    ) -> RetryBudget:
        """A budget configured by ``policy``."""
        return cls(policy.ratio, policy.window, policy.min_retries_per_second, clock=clock)

    def record_request(self, now: float | None = None) -> None:
        """Count one logical call (not its retries). Cheap: runs on every request.

        ``now``: a reading of this budget's clock the caller already has (saves a read).
        """
        if now is None:
            now = self._clock()
        if now >= self.bucket_end:  # the bucket closes: rare, under the lock
            lock = self._lock
            lock.acquire()
            try:
                if now >= self.bucket_end:
                    self._advance(now)
            finally:
                lock.release()
        # No lock: the append is atomic, and _advance takes a closing bucket's count by
        # deleting exactly the tokens it counted, so an arrival racing the close is
        # counted in the next bucket, never lost.
        self.arrivals.append(None)

    def try_withdraw(self) -> bool:
        """Take one retry (or hedge) from the budget; False, and counted, when it is spent."""
        now = self._clock()
        with self._lock:
            if now >= self.bucket_end:
                self._advance(now)
            if self._ret_now + 1 <= self._allowance():
                self._ret_now += 1
                self.withdrawn_count += 1
                return True
            self.exhausted_count += 1
            return False

    def stats(self) -> BudgetStats:
        """Counts for the current window and totals since creation."""
        now = self._clock()
        with self._lock:
            if now >= self.bucket_end:
                self._advance(now)
            oldest = self._cur % BUCKETS
            requests = sum(self._req_ring) - self._req_ring[oldest] + len(self.arrivals)
            retries = sum(self._ret_ring) + self._ret_now
            available = max(0, math.floor(self._allowance() - self._ret_now))
            return BudgetStats(
                requests, retries, available, self.withdrawn_count, self.exhausted_count
            )

    def _allowance(self) -> float:
        # Retries the window may hold besides the current bucket's. Lock held.
        oldest = self._cur % BUCKETS
        requests = sum(self._req_ring) - self._req_ring[oldest] + len(self.arrivals)
        earlier_retries = sum(self._ret_ring)
        return self.policy.ratio * requests + self._reserve - earlier_retries

    def _advance(self, now: float) -> None:
        # Move to the bucket holding ``now``: store the current bucket in its slot, clear
        # the slots of the buckets skipped over (no traffic). Lock held; rare.
        new = math.floor(now / self._width)
        cur = self._cur
        if new <= cur:
            # Float rounding at a bucket edge; the clock never goes backwards.
            self.bucket_end = (cur + 1) * self._width
            return
        slot = cur % BUCKETS
        arrivals = self.arrivals
        counted = len(arrivals)
        del arrivals[:counted]  # not clear(): a token appended meanwhile stays, for the next
        self._req_ring[slot] = counted
        self._ret_ring[slot] = self._ret_now
        for bucket in range(cur + 1, min(new, cur + 1 + BUCKETS)):
            self._req_ring[bucket % BUCKETS] = 0
            self._ret_ring[bucket % BUCKETS] = 0
        self._ret_now = 0
        self._cur = new
        self.bucket_end = (new + 1) * self._width

    def __repr__(self) -> str:
        p = self.policy
        return (
            f"RetryBudget(ratio={p.ratio!r}, window={p.window!r}, "
            f"min_retries_per_second={p.min_retries_per_second!r})"
        )
