"""Retry budget: validation, window arithmetic with a fake clock, the outage bound, and a
hypothesis state machine checking the guarantee against an exact event log."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from svcclient._exceptions import ConfigError
from svcclient._policies.budget import BUCKETS, BudgetPolicy, BudgetStats, RetryBudget


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- policy -------------------------------------------------------------------------------


def test_policy_defaults_and_frozen() -> None:
    """Defaults are 20 %, 10 s, 10 retries/s; the policy is immutable."""
    p = BudgetPolicy()
    assert (p.ratio, p.window, p.min_retries_per_second) == (0.2, 10.0, 10.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.ratio = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"ratio": -0.1}, "ratio"),
        ({"ratio": float("nan")}, "ratio"),
        ({"ratio": float("inf")}, "ratio"),
        ({"ratio": "0.2"}, "ratio"),
        ({"window": 0}, "window"),
        ({"window": -1.0}, "window"),
        ({"window": True}, "window"),
        ({"min_retries_per_second": -1}, "min_retries_per_second"),
    ],
)
def test_policy_validation(kwargs: dict[str, Any], key: str) -> None:
    """Negative, zero window, non-finite and non-numeric values raise ConfigError."""
    with pytest.raises(ConfigError) as info:
        BudgetPolicy(**kwargs)
    assert info.value.key == key


def test_budget_constructor_validates() -> None:
    """RetryBudget validates through BudgetPolicy."""
    with pytest.raises(ConfigError):
        RetryBudget(window=0.0)


def test_from_policy() -> None:
    """from_policy copies the policy's settings."""
    p = BudgetPolicy(ratio=0.5, window=2.0, min_retries_per_second=0.0)
    b = RetryBudget.from_policy(p, clock=FakeClock())
    assert b.policy == p
    assert "ratio=0.5" in repr(b)


# --- arithmetic ---------------------------------------------------------------------------


def test_floor_alone_allows_floor_times_window() -> None:
    """With no requests the floor still allows min_retries_per_second * window retries."""
    b = RetryBudget(ratio=0.2, window=10.0, min_retries_per_second=1.0, clock=FakeClock())
    assert [b.try_withdraw() for _ in range(11)] == [True] * 10 + [False]
    assert b.exhausted_count == 1


def test_ratio_allows_fraction_of_requests() -> None:
    """Without a floor, 20 % of the requests in the window may be retried."""
    b = RetryBudget(ratio=0.2, window=10.0, min_retries_per_second=0.0, clock=FakeClock())
    for _ in range(50):
        b.record_request()
    granted = sum(b.try_withdraw() for _ in range(20))
    assert granted == 10
    assert b.exhausted_count == 10
    assert b.stats() == BudgetStats(
        requests=50, retries=10, available=0, withdrawn_total=10, exhausted_total=10
    )


def test_zero_ratio_and_floor_forbid_everything() -> None:
    """ratio=0 with no floor never allows a retry."""
    b = RetryBudget(ratio=0.0, window=1.0, min_retries_per_second=0.0, clock=FakeClock())
    b.record_request()
    assert not b.try_withdraw()


def test_requests_expire_after_the_window() -> None:
    """Credit from requests disappears once they leave the window."""
    clock = FakeClock()
    b = RetryBudget(ratio=1.0, window=10.0, min_retries_per_second=0.0, clock=clock)
    for _ in range(5):
        b.record_request()
    clock.now += 10.0
    assert b.stats().requests == 0
    assert not b.try_withdraw()


def test_retries_expire_and_budget_refills() -> None:
    """Once the spent retries leave the window the floor is available again."""
    clock = FakeClock()
    b = RetryBudget(ratio=0.0, window=10.0, min_retries_per_second=0.5, clock=clock)
    assert [b.try_withdraw() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 5.0
    assert not b.try_withdraw()  # still inside the window
    clock.now += 6.0  # 11 s after: beyond window + one bucket
    assert b.stats().available == 5
    assert b.try_withdraw()


def test_long_idle_gap_clears_everything() -> None:
    """After an idle gap far longer than the window all buckets are empty."""
    clock = FakeClock()
    b = RetryBudget(ratio=0.2, window=10.0, min_retries_per_second=1.0, clock=clock)
    for _ in range(100):
        b.record_request()
    while b.try_withdraw():
        pass
    clock.now += 1e6
    s = b.stats()
    assert (s.requests, s.retries, s.available) == (0, 0, 10)


def test_available_matches_withdrawals() -> None:
    """stats().available is exactly how many withdrawals then succeed."""
    clock = FakeClock()
    b = RetryBudget(ratio=0.3, window=5.0, min_retries_per_second=0.4, clock=clock)
    for _ in range(17):
        b.record_request()
        clock.now += 0.3
    available = b.stats().available
    assert available > 0
    assert sum(b.try_withdraw() for _ in range(available + 5)) == available


# --- the outage bound ---------------------------------------------------------------------


@pytest.mark.parametrize(("rps", "seconds"), [(1000, 60), (50, 60), (3, 30)])
def test_full_outage_bounded(rps: int, seconds: int) -> None:
    """During a full outage attempts stay <= 1.2 x requests + floor x (duration + window)."""
    clock = FakeClock()
    b = RetryBudget(clock=clock)  # 20 %, 10 s, 10/s
    attempts_per_call = 3
    requests = attempts = 0
    for tick in range(rps * seconds):
        clock.now = 1000.0 + tick / rps
        b.record_request()
        requests += 1
        attempts += 1  # the first attempt fails
        for _ in range(attempts_per_call - 1):  # every retry fails too
            if not b.try_withdraw():
                break
            attempts += 1
    floor = 10.0 * (seconds + 10.0)
    assert attempts <= 1.2 * requests + floor
    if rps == 1000:
        # Without the budget this would be 3x; the budget keeps it near 1.2x.
        assert attempts < 1.3 * requests
        assert b.exhausted_count > 0
    if rps == 3:
        # Low traffic: the floor lets every retry through.
        assert attempts == 3 * requests


# --- thread safety ------------------------------------------------------------------------


def test_concurrent_withdrawals_never_overdraw() -> None:
    """Threads racing on try_withdraw get exactly the allowance between them."""
    b = RetryBudget(ratio=0.5, window=10.0, min_retries_per_second=1.0, clock=FakeClock())
    for _ in range(200):
        b.record_request()
    granted: list[int] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait(timeout=10)
        granted.append(sum(b.try_withdraw() for _ in range(100)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sum(granted) == 110  # 0.5 * 200 + 1 * 10
    assert b.exhausted_count == 800 - 110


class _ArrivalDuringClose(list[None]):
    """Request tokens where one more arrives (lock-free) while the bucket is closed:
    right after the close counted them, before it deletes them."""

    def __init__(self, tokens: list[None]) -> None:
        super().__init__(tokens)
        self.raced = False

    def __len__(self) -> int:
        n = super().__len__()
        if not self.raced:
            self.raced = True
            self.append(None)
        return n


def test_a_request_racing_a_bucket_close_is_counted_in_the_next_bucket() -> None:
    """The close deletes exactly the tokens it counted: one appended meanwhile stays."""
    clock = FakeClock(0.0)
    b = RetryBudget(ratio=1.0, window=10.0, min_retries_per_second=0.0, clock=clock)
    for _ in range(3):
        b.record_request()
    b.arrivals = _ArrivalDuringClose(b.arrivals)
    clock.now = 1.5  # the next bucket: this request closes the first one
    b.record_request()
    assert b.stats().requests == 5  # 3 closed + the racing one + this one: none lost


def test_concurrent_requests_across_bucket_closes_are_all_counted() -> None:
    """8 threads recording requests (no lock on that path) while the buckets roll over
    every 1,000 clock reads: every request is counted."""
    reads = itertools.count()

    def clock() -> float:
        return next(reads) * 0.001  # 8,000 requests span 8 of the window's 10 buckets

    b = RetryBudget(ratio=1.0, window=10.0, min_retries_per_second=0.0, clock=clock)
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait(timeout=10)
        for _ in range(1000):
            b.record_request()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert b.stats().requests == 8000


# --- property: the guarantee against an exact event log -----------------------------------

WINDOW = 5.0
WIDTH = WINDOW / BUCKETS


class BudgetMachine(RuleBasedStateMachine):
    """Random traffic; every grant and refusal is checked against exact event times."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(0.0)
        self.ratio = 0.25
        self.floor = 0.6
        self.budget = RetryBudget(
            ratio=self.ratio, window=WINDOW, min_retries_per_second=self.floor, clock=self.clock
        )
        self.requests: list[float] = []
        self.retries: list[float] = []
        self.refused = 0

    @staticmethod
    def _count(times: list[float], lo: float, hi: float, *, lo_open: bool = True) -> int:
        if lo_open:
            return sum(lo < t <= hi for t in times)
        return sum(lo <= t <= hi for t in times)

    @rule(eighths=st.integers(min_value=0, max_value=48))
    def advance(self, eighths: int) -> None:
        # Eighths of a second (and the 0.5 s buckets) are exact in binary floating point.
        self.clock.now += eighths * 0.125

    @rule(n=st.integers(min_value=1, max_value=12))
    def requests_arrive(self, n: int) -> None:
        for _ in range(n):
            self.budget.record_request()
            self.requests.append(self.clock.now)

    @rule()
    def withdraw(self) -> None:
        t = self.clock.now
        granted = self.budget.try_withdraw()
        if granted:
            self.retries.append(t)
            # Safety: the window ending now obeys the inequality, exactly.
            retries = self._count(self.retries, t - WINDOW, t)
            requests = self._count(self.requests, t - WINDOW, t)
            assert retries <= self.ratio * requests + self.floor * WINDOW + 1e-9
        else:
            self.refused += 1
            # Liveness: refused only if even the most generous reading of the buckets
            # (requests from the last window - one bucket, retries from window + one bucket)
            # leaves no room.
            retries = self._count(self.retries, t - WINDOW - WIDTH, t, lo_open=False)
            requests = self._count(self.requests, t - WINDOW + WIDTH, t)
            assert retries + 1 > self.ratio * requests + self.floor * WINDOW - 1e-9

    @invariant()
    def counters_agree(self) -> None:
        assert self.budget.exhausted_count == self.refused
        assert self.budget.withdrawn_count == len(self.retries)


BudgetMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestBudgetMachine = BudgetMachine.TestCase
