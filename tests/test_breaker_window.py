"""Rolling windows: time buckets and count rings, checked with plain numbers."""

from __future__ import annotations

import random

import pytest

from svcclient._policies.breaker.window import CountWindow, TimeWindow


def totals(w: TimeWindow | CountWindow) -> tuple[int, int, int]:
    return (w.calls, w.failures, w.slow_calls)


# -- time window ------------------------------------------------------------------------


def test_time_window_counts_calls_failures_and_slow_calls() -> None:
    """Calls, failures and slow calls are summed over the window."""
    w = TimeWindow(10.0, 10)
    w.success(0.1)
    w.record(0.2, failed=True, slow=False)
    w.record(3.5, failed=False, slow=True)
    w.record(9.9, failed=True, slow=True)
    assert totals(w) == (4, 2, 2)


def test_time_window_drops_a_bucket_once_it_is_a_full_window_old() -> None:
    """A bucket leaves the window when the clock enters the bucket `buckets` later."""
    w = TimeWindow(10.0, 10)
    w.record(0.5, failed=True, slow=False)  # bucket 0: [0, 1)
    w.success(1.0)  # bucket 1
    w.advance(9.999)
    assert totals(w) == (2, 1, 0)
    w.advance(10.0)  # bucket 10 replaces bucket 0
    assert totals(w) == (1, 0, 0)
    w.advance(11.0)
    assert totals(w) == (0, 0, 0)


def test_time_window_jump_longer_than_window_empties_it() -> None:
    """After a silence longer than the window nothing old remains."""
    w = TimeWindow(1.0, 4)
    for i in range(8):
        w.record(i * 0.1, failed=i % 2 == 0, slow=False)
    w.success(100.0)
    assert totals(w) == (1, 0, 0)


def test_time_window_clock_stepping_back_counts_into_current_bucket() -> None:
    """A clock that goes backwards does not corrupt the totals."""
    w = TimeWindow(10.0, 10)
    w.success(5.5)
    w.record(2.0, failed=True, slow=False)
    assert totals(w) == (2, 1, 0)
    w.advance(15.4)  # the window is now buckets 6..15: bucket 5 has gone
    assert totals(w) == (0, 0, 0)


def test_time_window_reset_forgets_everything() -> None:
    """reset() empties the window and later calls count afresh."""
    w = TimeWindow(10.0, 10)
    w.record(1.0, failed=True, slow=True)
    w.reset()
    assert totals(w) == (0, 0, 0)
    w.success(50.0)
    assert totals(w) == (1, 0, 0)


def test_time_window_bucket_edges_are_exact_for_awkward_widths() -> None:
    """A time lands in bucket int(t // width) even where float rounding bites."""
    w = TimeWindow(0.3, 3)  # width 0.1, not exact in binary
    width = 0.3 / 3
    rng = random.Random(7)
    times = sorted(rng.choice([k * width, k * 0.1, k / 10]) for k in range(1, 200))
    for i, t in enumerate(times):
        w.success(t)
        # exactly the calls so far that lie in the last 3 buckets of t are counted
        expected = sum(1 for s in times[: i + 1] if int(s // width) > int(t // width) - 3)
        assert w.calls == expected


@pytest.mark.parametrize("buckets", [1, 2, 5, 10])
def test_time_window_matches_brute_force_recount(buckets: int) -> None:
    """Incremental totals equal a recount from the raw history."""
    duration = 2.0
    width = duration / buckets
    w = TimeWindow(duration, buckets)
    rng = random.Random(buckets)
    history: list[tuple[float, bool, bool]] = []
    now = 0.0
    for _ in range(500):
        now += rng.choice([0.0, 0.01, 0.1, 0.37, 1.0, 2.5])
        failed, slow = rng.random() < 0.3, rng.random() < 0.2
        w.record(now, failed, slow)
        history.append((now, failed, slow))
        head = int(now // width)
        live = [h for h in history if int(h[0] // width) > head - buckets]
        assert totals(w) == (
            len(live),
            sum(h[1] for h in live),
            sum(h[2] for h in live),
        )


# -- count window -----------------------------------------------------------------------


def test_count_window_keeps_only_the_last_n_calls() -> None:
    """The oldest verdict is evicted when the ring is full."""
    w = CountWindow(3)
    w.record(0.0, failed=True, slow=True)
    w.success(0.0)
    w.success(0.0)
    assert totals(w) == (3, 1, 1)
    w.success(0.0)  # evicts the failed, slow call
    assert totals(w) == (3, 0, 0)
    w.record(0.0, failed=True, slow=False)
    assert totals(w) == (3, 1, 0)


def test_count_window_ignores_time() -> None:
    """Age does not matter to a count window."""
    w = CountWindow(5)
    w.record(0.0, failed=True, slow=False)
    w.advance(1e9)
    assert totals(w) == (1, 1, 0)


def test_count_window_reset() -> None:
    """reset() empties the ring."""
    w = CountWindow(2)
    w.record(0.0, failed=True, slow=True)
    w.reset()
    assert totals(w) == (0, 0, 0)
    w.success(0.0)
    assert totals(w) == (1, 0, 0)


@pytest.mark.parametrize("size", [1, 2, 7, 50])
def test_count_window_matches_brute_force_recount(size: int) -> None:
    """Incremental totals equal a recount of the last `size` verdicts."""
    w = CountWindow(size)
    rng = random.Random(size)
    history: list[tuple[bool, bool]] = []
    for _ in range(300):
        if rng.random() < 0.5:
            w.success(0.0)
            history.append((False, False))
        else:
            failed, slow = rng.random() < 0.5, rng.random() < 0.5
            w.record(0.0, failed, slow)
            history.append((failed, slow))
        live = history[-size:]
        assert totals(w) == (len(live), sum(h[0] for h in live), sum(h[1] for h in live))


def test_time_window_pending_successes_count_in_their_bucket_before_a_roll() -> None:
    """Tokens appended without the lock are counted in the bucket they were appended
    in (folded before a roll and before every read) and dropped by reset."""
    w = TimeWindow(10.0, 10)
    w.success(0.5)  # bucket 0
    w.pending.extend([None, None])  # two fast successes in bucket 0
    w.advance(0.9)
    assert totals(w) == (3, 0, 0) and w.pending == []
    w.pending.append(None)
    w.record(10.5, failed=True, slow=False)  # bucket 0 rolls out: its 4 calls go
    assert totals(w) == (1, 1, 0)
    w.pending.append(None)
    w.reset()
    assert totals(w) == (0, 0, 0) and w.pending == []
