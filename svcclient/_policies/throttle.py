"""Client-side adaptive throttling (Google SRE book, "Handling Overload").

Theory of operation
-------------------
A :class:`Throttle` remembers, over the last ``window`` seconds, how many *requests* the
client made and how many of them the backend *accepted*. Before a new request it draws a
random number and rejects the request locally with probability

    p = min(max_reject_probability, max(0, (requests - k * accepts) / (requests + 1)))

* While the backend accepts everything, ``requests == accepts`` and, with ``k >= 1``, the
  numerator is never positive: throttling a healthy service costs one comparison.
* When the backend starts refusing (by default 429, 503 and transport errors), ``p`` rises
  smoothly so that the traffic that still reaches it tends to ``k`` times what it accepts:
  the backend stops spending its capacity on rejections, and the surplus is the probe
  that notices recovery. A smaller ``k`` is more aggressive.
* A local rejection counts as a request and never as an accept, so ``p`` keeps rising as
  long as the backend refuses, and falls again as soon as the requests that do get through
  are accepted.
* ``max_reject_probability`` keeps some traffic flowing even in a total outage;
  ``min_requests`` keeps a quiet client from being throttled by its first failure (with 1
  request and 0 accepts the bare formula says 1/2).

Counts live in a bucketed time window (like the breaker's :class:`TimeWindow`: ``buckets``
buckets of ``window / buckets`` seconds, with running totals). Every attempt sent counts
once when its outcome is known; a local rejection counts at once. The object does no I/O
and takes the clock and the random source as arguments, so the arithmetic is tested with
plain numbers; a lock makes it safe to share between threads, and the async driver uses the
same object.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .._exceptions import ConfigError
from .._validate import check_count, check_number, check_seconds, check_status_codes

__all__ = ["DEFAULT_OVERLOAD_STATUSES", "Throttle", "ThrottlePolicy"]

DEFAULT_OVERLOAD_STATUSES: Final = frozenset({429, 503})
"""Statuses that mean "the backend refused this request": never counted as accepts."""


def status_set(key: str, codes: object) -> frozenset[int]:
    """``codes`` as a frozenset of HTTP status codes, or a :class:`ConfigError`."""
    return check_status_codes(key, codes, low=100, high=599)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """Settings of client-side adaptive throttling (off unless ``ServiceConfig.throttle`` is set).

    * ``k`` (2.0): the backend is sent up to ``k`` times what it accepts; at least 1 (below 1
      a healthy backend would be throttled).
    * ``window`` (120 s) in ``buckets`` (12) buckets: the history that requests and accepts
      are counted over.
    * ``max_reject_probability`` (0.9): the ceiling on ``p``, in (0, 1].
    * ``min_requests`` (10): no local rejection until the window holds this many requests.
    * ``overload_statuses`` ({429, 503}): responses that are not accepts. Every other
      response is an accept; a transport error (refused, reset, timeout) never is.

    A locally rejected call raises :class:`~svcclient.ThrottledError` (or gets the fallback).

    >>> ThrottlePolicy(k=1.5, window=60.0, buckets=6).max_reject_probability
    0.9
    """

    k: float = 2.0
    window: float = 120.0
    buckets: int = 12
    max_reject_probability: float = 0.9
    min_requests: int = 10
    overload_statuses: frozenset[int] = DEFAULT_OVERLOAD_STATUSES

    def __post_init__(self) -> None:
        check_number("k", self.k, low=1.0, high=1e6)
        check_seconds("window", self.window)
        check_count("buckets", self.buckets)
        if self.window / self.buckets < 0.001:
            raise ConfigError(None, "buckets", self.buckets, "buckets narrower than 1 ms")
        p = self.max_reject_probability
        check_number("max_reject_probability", p, low=0.0, low_open=True, high=1.0)
        check_count("min_requests", self.min_requests, low=0)
        frozen = status_set("overload_statuses", self.overload_statuses)
        object.__setattr__(self, "overload_statuses", frozen)

    def is_accept(self, status: int) -> bool:
        """True when a response with ``status`` counts as accepted by the backend."""
        return status not in self.overload_statuses


class Throttle:
    """The runtime state of one service's throttle (see the module docstring).

    ``clock`` gives seconds (monotonic); ``rng`` gives floats in [0, 1).

    >>> t = Throttle(ThrottlePolicy(min_requests=0), clock=lambda: 0.0)
    >>> for _ in range(3):
    ...     t.record(False)
    >>> t.probability()            # (3 - 2 * 0) / (3 + 1)
    0.75
    """

    # The window is the current bucket (``_cur_*``) plus ``buckets - 1`` closed ones in
    # rings whose totals (``_closed_*``) change only when a bucket rolls over, so counting
    # is one or two increments and deciding is an add and a compare; buckets roll only when
    # the clock passes ``_edge``. Writers hold the lock (acquire/release: half the cost of
    # ``with``); the healthy path of admit() only reads (a stale read at worst decides on
    # the counts of a moment ago, which a probabilistic throttle cannot tell apart).
    __slots__ = (
        "_b_acc",
        "_b_req",
        "_closed_acc",
        "_closed_req",
        "_cur_acc",
        "_cur_req",
        "_edge",
        "_head",
        "_k",
        "_lock",
        "_max_p",
        "_min",
        "_n",
        "_width",
        "clock",
        "overload_statuses",
        "policy",
        "rng",
    )

    def __init__(
        self,
        policy: ThrottlePolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy if policy is not None else ThrottlePolicy()
        self.clock = clock
        self.rng = rng
        self._k = float(self.policy.k)
        self._max_p = float(self.policy.max_reject_probability)
        self._min = self.policy.min_requests
        self.overload_statuses = self.policy.overload_statuses
        self._n = self.policy.buckets
        self._width = self.policy.window / self.policy.buckets
        self._lock = threading.Lock()
        self._clear()

    @property
    def requests(self) -> int:
        """Requests in the window (attempts sent plus local rejections)."""
        self._advance(self.clock())
        return self._closed_req + self._cur_req

    @property
    def accepts(self) -> int:
        """Requests in the window that the backend accepted."""
        self._advance(self.clock())
        return self._closed_acc + self._cur_acc

    def probability(self) -> float:
        """The probability that a request made now is rejected locally."""
        self._advance(self.clock())
        return self._p(self._closed_req + self._cur_req, self._closed_acc + self._cur_acc)

    def _p(self, requests: int, accepts: int) -> float:
        excess = requests - self._k * accepts
        if excess <= 0 or requests < self._min:
            return 0.0
        p = excess / (requests + 1)
        return p if p < self._max_p else self._max_p

    def admit(self) -> float:
        """Decide on one request: 0.0 to send it, else the rejection probability it lost to.

        A rejection is counted at once as a request that was not accepted; an admitted
        request is counted when :meth:`record` reports its outcome.
        """
        now = self.clock()
        if now >= self._edge:
            self._advance(now)
        requests = self._closed_req + self._cur_req
        accepts = self._closed_acc + self._cur_acc
        if requests - self._k * accepts <= 0:  # the healthy path: no lock, no draw
            return 0.0
        p = self._p(requests, accepts)
        if p <= 0.0 or self.rng() >= p:
            return 0.0
        lock = self._lock
        lock.acquire()
        try:
            if now >= self._edge:
                self._roll(now)
            self._cur_req += 1
        finally:
            lock.release()
        return p

    def record(self, accepted: bool) -> None:
        """Count the outcome of one request that was sent."""
        now = self.clock()
        lock = self._lock
        lock.acquire()
        try:
            if now >= self._edge:
                self._roll(now)
            self._cur_req += 1
            if accepted:
                self._cur_acc += 1
        finally:
            lock.release()

    def record_status(self, status: int) -> None:
        """Count a response: an accept unless ``status`` is an overload status."""
        self.record(status not in self.overload_statuses)

    def reset(self) -> None:
        """Forget the window (tests, or after reconfiguration)."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._b_req = [0] * self._n  # closed buckets; the current one is in _cur_*
        self._b_acc = [0] * self._n
        self._cur_req = self._cur_acc = 0
        self._closed_req = self._closed_acc = 0  # totals of the closed buckets
        self._head = -self._n - 1  # absolute index of the current bucket: none yet
        self._edge = -math.inf  # the first count rolls into its bucket

    def _advance(self, now: float) -> None:
        if now >= self._edge:
            with self._lock:
                if now >= self._edge:
                    self._roll(now)

    def _roll(self, now: float) -> None:
        """Move the current bucket to the one ``now`` falls in (lock held)."""
        width = self._width
        idx = int(now // width)
        head = self._head
        if idx > head:
            n = self._n
            b_req, b_acc = self._b_req, self._b_acc
            pos = head % n
            b_req[pos], b_acc[pos] = self._cur_req, self._cur_acc
            self._closed_req += self._cur_req
            self._closed_acc += self._cur_acc
            if idx - head >= n:
                for i in range(n):
                    b_req[i] = b_acc[i] = 0
                self._closed_req = self._closed_acc = 0
            else:
                for absolute in range(head + 1, idx + 1):
                    pos = absolute % n
                    if b_req[pos]:
                        self._closed_req -= b_req[pos]
                        self._closed_acc -= b_acc[pos]
                        b_req[pos] = b_acc[pos] = 0
            self._cur_req = self._cur_acc = 0
            self._head = head = idx
        # The first time that falls in a later bucket, exactly despite float rounding (a
        # clock that stepped back stays in the current bucket).
        edge = (head + 1) * width
        while int(edge // width) <= head:
            edge = math.nextafter(edge, math.inf)
        while int(math.nextafter(edge, -math.inf) // width) > head:
            edge = math.nextafter(edge, -math.inf)
        self._edge = edge

    def __repr__(self) -> str:
        return f"Throttle(p={self.probability():.3f}, policy={self.policy!r})"
