"""Rolling windows of call outcomes for the circuit breaker.

Two shapes, both keeping running totals so that judging the failure rate is O(1):

* :class:`TimeWindow` - the last ``duration`` seconds in ``buckets`` buckets (opossum's
  rolling count: 10 s in 10 buckets by default). A bucket covers ``duration / buckets``
  seconds of the injected clock; the window is the current bucket plus the ``buckets - 1``
  before it, so it spans between ``(buckets - 1) / buckets`` and all of ``duration``.
* :class:`CountWindow` - the last ``size`` calls (Resilience4j's count-based window), a ring.

Both count *calls*, *failures* and *slow calls* (a slow call may also be a failure). They
hold no lock: the breaker owns the lock and calls in with it held, which keeps the window
free of I/O and of threading, and testable with plain numbers. One exception, in the
time window: :attr:`TimeWindow.pending` takes fast successes without the lock (see there).
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["CountWindow", "TimeWindow", "Window"]

# Outcome bits stored in a CountWindow slot. CALL marks a filled slot, so 0 means "empty".
_CALL: Final = 1
_FAIL: Final = 2
_SLOW: Final = 4


class TimeWindow:
    """Outcomes of the last ``duration`` seconds, in ``buckets`` equal buckets.

    ``now`` values come from the breaker's clock; a time ``t`` falls in bucket
    ``int(t // width)``. A clock that steps backwards is treated as "still in the current
    bucket". The current bucket's counts live in plain attributes and the time at which it
    ends is precomputed, so counting a call is a compare and two increments.

    >>> w = TimeWindow(10.0, 10)
    >>> w.record(0.5, failed=True, slow=False); w.success(1.5); (w.calls, w.failures)
    (2, 1)
    >>> w.advance(10.7); (w.calls, w.failures)   # bucket [0, 1) has rolled out
    (1, 0)

    ``pending``: fast successes in the current bucket not counted yet, one token each.
    The breaker appends one there without its lock (``list.append`` is atomic) when the
    call is fast, before ``edge`` and the window holds no failure or slow call (so the
    success could not trip anything); every method here counts the tokens first
    (:meth:`fold`, deleting exactly the tokens it counted, so one appended meanwhile waits
    for the next fold). ``reset`` drops them.
    """

    __slots__ = (
        "_b_calls",
        "_b_fails",
        "_b_slow",
        "_cur_calls",
        "_cur_fails",
        "_cur_slow",
        "_head",
        "_n",
        "_width",
        "calls",
        "edge",
        "failures",
        "pending",
        "slow_calls",
    )

    edge: float
    """The first time that falls after the current bucket (a time at or past it rolls)."""

    def __init__(self, duration: float, buckets: int) -> None:
        self._n = buckets
        self._width = duration / buckets
        self.pending: list[None] = []
        self.reset()

    def fold(self) -> None:
        """Count the pending successes in the current bucket."""
        pending = self.pending
        n = len(pending)
        if n:
            del pending[:n]
            self._cur_calls += n
            self.calls += n

    def success(self, now: float) -> int:
        """Count one fast, successful call at ``now`` (the hot path).

        Returns the failures plus slow calls in the window: nonzero when a rate could
        have reached its threshold (successes alone never trip a breaker).
        """
        if self.pending:
            self.fold()
        if now >= self.edge:
            self._roll(now)
        self._cur_calls += 1
        self.calls += 1
        return self.failures + self.slow_calls

    def record(self, now: float, failed: bool, slow: bool) -> None:
        """Count one call at ``now`` with its verdict."""
        if self.pending:
            self.fold()
        if now >= self.edge:
            self._roll(now)
        self._cur_calls += 1
        self.calls += 1
        if failed:
            self._cur_fails += 1
            self.failures += 1
        if slow:
            self._cur_slow += 1
            self.slow_calls += 1

    def advance(self, now: float) -> None:
        """Count the pending successes, drop buckets that fell out of the window by
        ``now`` (before reading totals)."""
        if self.pending:
            self.fold()
        if now >= self.edge:
            self._roll(now)

    def reset(self) -> None:
        """Forget every outcome."""
        self.pending.clear()
        n = self._n
        self._b_calls = [0] * n  # closed buckets; the current one is in _cur_*
        self._b_fails = [0] * n
        self._b_slow = [0] * n
        self._cur_calls = self._cur_fails = self._cur_slow = 0
        self._head = 0  # absolute index of the current bucket
        self.edge = float("-inf")  # first call rolls into its bucket
        self.calls = self.failures = self.slow_calls = 0

    def _roll(self, now: float) -> None:
        idx = int(now // self._width)
        head = self._head
        if idx <= head and self.edge != float("-inf"):
            self.edge = self._edge_of(head)  # float rounding at the edge: stay
            return
        n = self._n
        calls, fails, slow = self._b_calls, self._b_fails, self._b_slow
        # Close the current bucket, then empty every bucket the window slid past.
        pos = head % n
        calls[pos], fails[pos], slow[pos] = self._cur_calls, self._cur_fails, self._cur_slow
        if idx - head >= n or self.edge == float("-inf"):
            for i in range(n):
                calls[i] = fails[i] = slow[i] = 0
            self.calls = self.failures = self.slow_calls = 0
        else:
            for absolute in range(head + 1, idx + 1):
                pos = absolute % n
                if calls[pos]:
                    self.calls -= calls[pos]
                    self.failures -= fails[pos]
                    self.slow_calls -= slow[pos]
                    calls[pos] = fails[pos] = slow[pos] = 0
        self._cur_calls = self._cur_fails = self._cur_slow = 0
        self._head = idx
        self.edge = self._edge_of(idx)

    def _edge_of(self, idx: int) -> float:
        """The first time that falls in a bucket after ``idx`` (exactly, despite rounding)."""
        width = self._width
        edge = (idx + 1) * width
        while int(edge // width) <= idx:
            edge = math.nextafter(edge, math.inf)
        while int(math.nextafter(edge, -math.inf) // width) > idx:
            edge = math.nextafter(edge, -math.inf)
        return edge


class CountWindow:
    """Outcomes of the last ``size`` calls, whatever their age.

    >>> w = CountWindow(2)
    >>> w.record(0.0, failed=True, slow=False); w.success(0.0); w.success(0.0)
    >>> (w.calls, w.failures)   # the failure was pushed out by the third call
    (2, 0)
    """

    __slots__ = ("_pos", "_ring", "_size", "calls", "failures", "slow_calls")

    def __init__(self, size: int) -> None:
        self._size = size
        self._ring = [0] * size
        self._pos = 0
        self.calls = 0
        self.failures = 0
        self.slow_calls = 0

    def success(self, now: float) -> int:
        """Count one fast, successful call (the hot path; ``now`` is unused).

        Returns the failures plus slow calls in the window, as ``TimeWindow.success``.
        """
        ring = self._ring
        pos = self._pos
        old = ring[pos]
        ring[pos] = _CALL
        if old == 0:
            self.calls += 1
        elif old != _CALL:
            self._forget(old)
        pos += 1
        self._pos = 0 if pos == self._size else pos
        return self.failures + self.slow_calls

    def record(self, now: float, failed: bool, slow: bool) -> None:
        """Count one call with its verdict, evicting the oldest when full."""
        ring = self._ring
        pos = self._pos
        old = ring[pos]
        if old:
            self._forget(old)
        else:
            self.calls += 1
        code = _CALL
        if failed:
            code |= _FAIL
            self.failures += 1
        if slow:
            code |= _SLOW
            self.slow_calls += 1
        ring[pos] = code
        pos += 1
        self._pos = 0 if pos == self._size else pos

    def advance(self, now: float) -> None:
        """Nothing ages out of a count window; present so both shapes read alike."""

    def fold(self) -> None:
        """Nothing is pending in a count window (every call is counted under the lock)."""

    def reset(self) -> None:
        """Forget every outcome."""
        self._ring = [0] * self._size
        self._pos = 0
        self.calls = self.failures = self.slow_calls = 0

    def _forget(self, code: int) -> None:
        # The evicted slot's call is replaced by the new one, so ``calls`` is unchanged.
        if code & _FAIL:
            self.failures -= 1
        if code & _SLOW:
            self.slow_calls -= 1


Window = TimeWindow | CountWindow
