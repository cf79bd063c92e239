"""Adaptive throttling: validation, exact probabilities and window roll-over with a fake
clock, local rejections counted as requests, and a hypothesis property for healthy traffic."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcclient._exceptions import ConfigError
from svcclient._policies.throttle import Throttle, ThrottlePolicy


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _never() -> float:
    raise AssertionError("the throttle drew a random number on the healthy path")


def _throttle(clock: FakeClock, rng: float = 0.0, **kw: object) -> Throttle:
    return Throttle(ThrottlePolicy(**kw), clock=clock, rng=lambda: rng)  # type: ignore[arg-type]


# --- policy -------------------------------------------------------------------------------


def test_policy_defaults_and_frozen() -> None:
    """Defaults: K = 2, 120 s in 12 buckets, ceiling 0.9, 10 requests minimum, 429/503."""
    p = ThrottlePolicy()
    assert (p.k, p.window, p.buckets, p.max_reject_probability, p.min_requests) == (
        2.0,
        120.0,
        12,
        0.9,
        10,
    )
    assert p.overload_statuses == frozenset({429, 503})
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.k = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"k": 0.99}, "k"),
        ({"k": True}, "k"),
        ({"k": float("nan")}, "k"),
        ({"window": 0}, "window"),
        ({"window": -1.0}, "window"),
        ({"buckets": 0}, "buckets"),
        ({"window": 0.005, "buckets": 10}, "buckets"),
        ({"max_reject_probability": 0.0}, "max_reject_probability"),
        ({"max_reject_probability": 1.01}, "max_reject_probability"),
        ({"min_requests": -1}, "min_requests"),
        ({"overload_statuses": 503}, "overload_statuses"),
        ({"overload_statuses": {700}}, "overload_statuses"),
    ],
)
def test_policy_rejects_bad_values(kwargs: dict[str, object], key: str) -> None:
    """Each out-of-range setting raises ConfigError naming that setting."""
    with pytest.raises(ConfigError) as info:
        ThrottlePolicy(**kwargs)  # type: ignore[arg-type]
    assert info.value.key == key


def test_accept_rule_is_every_status_but_the_overload_ones() -> None:
    """By default 429 and 503 are not accepts; 200, 404 and even 500 are."""
    p = ThrottlePolicy()
    assert [p.is_accept(s) for s in (200, 404, 500, 502, 429, 503)] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]
    custom = ThrottlePolicy(overload_statuses=[503, 502])  # type: ignore[arg-type]
    assert custom.overload_statuses == frozenset({502, 503})
    assert not custom.is_accept(502) and custom.is_accept(429)


# --- arithmetic ---------------------------------------------------------------------------


def test_exact_probability_from_the_formula() -> None:
    """10 requests of which 2 accepted, K = 2: p = (10 - 4) / 11."""
    clock = FakeClock()
    t = _throttle(clock, min_requests=0)
    for accepted in [True, True] + [False] * 8:
        t.record(accepted)
    assert (t.requests, t.accepts) == (10, 2)
    assert t.probability() == pytest.approx(6 / 11, abs=1e-15)


def test_k_sets_how_much_surplus_reaches_the_backend() -> None:
    """K = 1.5 with 10 requests and 4 accepts gives (10 - 6) / 11; K = 3 gives 0."""
    clock = FakeClock()
    for k, expected in ((1.5, 4 / 11), (3.0, 0.0)):
        t = _throttle(clock, k=k, min_requests=0)
        for accepted in [True] * 4 + [False] * 6:
            t.record(accepted)
        assert t.probability() == pytest.approx(expected, abs=1e-15)


def test_ceiling_caps_the_rejection_probability() -> None:
    """With every request refused p would be 100/101; the ceiling holds it at 0.9."""
    clock = FakeClock()
    t = _throttle(clock, min_requests=0)
    uncapped = _throttle(clock, min_requests=0, max_reject_probability=1.0)
    for _ in range(100):
        t.record(False)
        uncapped.record(False)
    assert t.probability() == 0.9
    assert uncapped.probability() == pytest.approx(100 / 101, abs=1e-15)


def test_min_requests_keeps_a_quiet_client_unthrottled() -> None:
    """Below min_requests nothing is rejected; at min_requests the formula applies."""
    clock = FakeClock()
    t = _throttle(clock, min_requests=5, max_reject_probability=1.0)
    for _ in range(4):
        t.record(False)
    assert t.probability() == 0.0
    t.record(False)
    assert t.probability() == pytest.approx(5 / 6, abs=1e-15)


def test_local_rejection_counts_as_a_request_and_never_as_an_accept() -> None:
    """A rejected request raises `requests` by one, leaves `accepts`, and p follows exactly."""
    clock = FakeClock()
    t = _throttle(clock, rng=0.0, min_requests=0, max_reject_probability=1.0)
    for accepted in (True, False, False, False):
        t.record(accepted)
    assert t.probability() == pytest.approx(2 / 5, abs=1e-15)  # (4 - 2) / 5
    assert t.admit() == pytest.approx(2 / 5, abs=1e-15)
    assert (t.requests, t.accepts) == (5, 1)
    assert t.probability() == pytest.approx(3 / 6, abs=1e-15)


def test_admit_sends_when_the_draw_beats_the_probability() -> None:
    """A draw at or above p admits the request, which is not counted until its outcome."""
    clock = FakeClock()
    draws = iter([0.40, 0.39])
    t = Throttle(
        ThrottlePolicy(min_requests=0, max_reject_probability=1.0),
        clock=clock,
        rng=lambda: next(draws),
    )
    for accepted in (True, False, False, False):
        t.record(accepted)
    assert t.admit() == 0.0  # 0.40 >= p = 0.4
    assert t.requests == 4
    assert t.admit() == pytest.approx(0.4, abs=1e-15)  # 0.39 < 0.4
    assert t.requests == 5


def test_healthy_path_never_draws() -> None:
    """While requests <= K x accepts, admit decides without touching the random source."""
    clock = FakeClock()
    t = Throttle(ThrottlePolicy(min_requests=0), clock=clock, rng=_never)
    for accepted in (True, False):  # 2 requests, 1 accept: 2 - 2 x 1 = 0
        t.record(accepted)
    assert t.admit() == 0.0


def test_record_status_uses_the_accept_rule() -> None:
    """503 and 429 are counted as refusals, 500 and 200 as accepts."""
    clock = FakeClock()
    t = _throttle(clock)
    for status in (503, 429, 500, 200):
        t.record_status(status)
    assert (t.requests, t.accepts) == (4, 2)


def test_window_rolls_over_bucket_by_bucket() -> None:
    """Outcomes leave the window one bucket at a time, exactly at the bucket edges."""
    clock = FakeClock(0.0)
    t = _throttle(clock, window=10.0, buckets=10, min_requests=0, max_reject_probability=1.0)
    clock.now = 0.5
    for _ in range(4):
        t.record(False)
    clock.now = 1.5
    t.record(True)
    assert t.probability() == pytest.approx((5 - 2) / 6, abs=1e-15)
    clock.now = 9.999
    assert (t.requests, t.accepts) == (5, 1)
    clock.now = 10.0  # bucket [0, 1) has rolled out: the four refusals are forgotten
    assert (t.requests, t.accepts) == (1, 1)
    assert t.probability() == 0.0
    clock.now = 11.0
    assert (t.requests, t.accepts) == (0, 0)


def test_long_silence_empties_the_window() -> None:
    """After more than a whole window without traffic, nothing is remembered."""
    clock = FakeClock(0.0)
    t = _throttle(clock, window=120.0, buckets=12, min_requests=0)
    for _ in range(50):
        t.record(False)
    assert t.probability() == 0.9
    clock.now = 1000.0
    assert t.probability() == 0.0 and t.requests == 0


def test_recovery_lowers_the_probability_as_accepts_arrive() -> None:
    """After 20 refusals, each accept lowers p; the 20th brings it to exactly 0 (K = 2)."""
    clock = FakeClock()
    t = _throttle(clock, min_requests=0, max_reject_probability=1.0)
    for _ in range(20):
        t.record(False)
    seen = [t.probability()]
    for _ in range(20):
        t.record(True)
        seen.append(t.probability())
    assert all(b < a for a, b in zip(seen, seen[1:]))
    assert seen[-2] == pytest.approx(1 / 40, abs=1e-15)  # (39 - 2 x 19) / 40
    assert seen[-1] == 0.0


@settings(max_examples=200, deadline=None)
@given(
    k=st.floats(min_value=1.0, max_value=10.0),
    buckets=st.integers(min_value=1, max_value=20),
    window=st.floats(min_value=0.1, max_value=300.0),
    min_requests=st.integers(min_value=0, max_value=20),
    ceiling=st.floats(min_value=0.01, max_value=1.0),
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=50.0), st.integers(0, 30)), max_size=60
    ),
)
def test_never_rejects_when_every_request_is_accepted(
    k: float,
    buckets: int,
    window: float,
    min_requests: int,
    ceiling: float,
    steps: list[tuple[float, int]],
) -> None:
    """Whatever the policy and the timing, a backend that accepts everything is never
    throttled: p stays 0 and admit() admits even with a draw of 0."""
    clock = FakeClock(0.0)
    policy = ThrottlePolicy(
        k=k,
        window=window,
        buckets=buckets,
        min_requests=min_requests,
        max_reject_probability=ceiling,
    )
    t = Throttle(policy, clock=clock, rng=lambda: 0.0)
    for dt, count in steps:
        clock.now += dt
        for _ in range(count):
            assert t.admit() == 0.0
            assert t.probability() == 0.0
            t.record_status(200)


@settings(max_examples=300, deadline=None)
@given(
    window=st.floats(min_value=0.05, max_value=100.0),
    buckets=st.integers(min_value=1, max_value=12),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=30.0),
            st.sampled_from(["accept", "refuse", "reject", "read"]),
        ),
        max_size=80,
    ),
)
def test_window_counts_match_a_brute_force_model(
    window: float, buckets: int, steps: list[tuple[float, str]]
) -> None:
    """At every moment requests and accepts equal a brute-force count of the events whose
    bucket (int(t // width)) is one of the last ``buckets`` - roll-overs of one bucket, of
    several, and of more than the whole window included."""
    clock = FakeClock(0.0)
    t = Throttle(
        ThrottlePolicy(window=window, buckets=buckets, min_requests=0, max_reject_probability=1.0),
        clock=clock,
        rng=lambda: 0.0,
    )
    width = window / buckets
    events: list[tuple[float, bool]] = []
    for dt, action in steps:
        clock.now += dt
        if action == "accept":
            t.record(True)
            events.append((clock.now, True))
        elif action == "refuse":
            t.record_status(503)
            events.append((clock.now, False))
        elif action == "reject" and t.admit():
            events.append((clock.now, False))
        current = int(clock.now // width)
        live = [ok for at, ok in events if int(at // width) > current - buckets]
        assert (t.requests, t.accepts) == (len(live), sum(live))
