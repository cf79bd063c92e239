"""Deadline arithmetic with a fake clock, and header propagation."""

from __future__ import annotations

import math

import pytest

from svcclient._exceptions import ConfigError
from svcclient._policies.deadline import DEFAULT_DEADLINE_HEADER, Deadline


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_remaining_counts_down() -> None:
    """remaining() is the timeout minus the time elapsed on the injected clock."""
    clock = FakeClock()
    d = Deadline(3.0, clock=clock)
    assert d.at == 103.0 and d.timeout == 3.0
    assert d.remaining() == 3.0
    clock.now = 101.25
    assert d.remaining() == 1.75
    assert d.elapsed() == 1.25
    assert not d.expired()


def test_expired_at_and_after_the_deadline() -> None:
    """expired() becomes true exactly at `at`, and remaining() goes negative after."""
    clock = FakeClock()
    d = Deadline(2.0, clock=clock)
    clock.now = 102.0
    assert d.expired()
    clock.now = 102.5
    assert d.remaining() == -0.5


def test_start_pins_the_start_time() -> None:
    """An explicit start is used instead of reading the clock."""
    d = Deadline(1.0, clock=FakeClock(5.0), start=2.0)
    assert d.at == 3.0
    assert d.expired()


def test_attempt_timeout_is_min_of_per_attempt_and_remaining() -> None:
    """Each attempt gets the smaller of its own timeout and the time left, never below 0."""
    clock = FakeClock()
    d = Deadline(3.0, clock=clock)
    assert d.attempt_timeout(1.0) == 1.0
    clock.now = 102.5
    assert d.attempt_timeout(1.0) == 0.5
    clock.now = 104.0
    assert d.attempt_timeout(1.0) == 0.0


def test_infinite_and_zero_deadlines() -> None:
    """inf means no deadline; 0 is already expired."""
    clock = FakeClock()
    assert Deadline(math.inf, clock=clock).attempt_timeout(2.0) == 2.0
    assert not Deadline(math.inf, clock=clock).expired()
    assert Deadline(0.0, clock=clock).expired()


@pytest.mark.parametrize("bad", [-0.001, -1.0, float("nan")])
def test_negative_or_nan_timeout_rejected(bad: float) -> None:
    """Negative and NaN timeouts raise ConfigError naming the key."""
    with pytest.raises(ConfigError) as info:
        Deadline(bad)
    assert info.value.key == "deadline"


def test_to_header_rounds_down_to_milliseconds() -> None:
    """The header carries whole milliseconds left, rounded down, never negative."""
    clock = FakeClock()
    d = Deadline(2.0, clock=clock)
    assert d.to_header() == "2000"
    clock.now = 100.0004
    assert d.to_header() == "1999"
    clock.now = 103.0
    assert d.to_header() == "0"
    assert Deadline(math.inf, clock=clock).to_header() == ""


def test_from_header_roundtrip() -> None:
    """A header produced by to_header rebuilds a deadline with the same time left."""
    clock = FakeClock()
    d = Deadline.from_header(Deadline(1.5, clock=clock).to_header(), clock=clock)
    assert d is not None
    assert d.remaining() == pytest.approx(1.5)
    assert Deadline.from_header(" 250 ", clock=clock) is not None


@pytest.mark.parametrize(
    "value", [None, "", " ", "-1", "+1", "1.5", "1e3", "abc", "١٢", "²", "9" * 13]
)
def test_from_header_garbage_is_absent(value: str | None) -> None:
    """Unusable header values give None instead of raising."""
    assert Deadline.from_header(value, clock=FakeClock()) is None


def test_from_header_zero_is_expired() -> None:
    """An upstream deadline that has run out arrives as an expired deadline."""
    d = Deadline.from_header("0", clock=FakeClock())
    assert d is not None and d.expired()


def test_earlier_picks_the_first_to_expire() -> None:
    """earlier() honours an incoming deadline only when it is tighter."""
    clock = FakeClock()
    own = Deadline(3.0, clock=clock)
    tight = Deadline(1.0, clock=clock)
    loose = Deadline(10.0, clock=clock)
    assert own.earlier(tight) is tight
    assert own.earlier(loose) is own
    assert own.earlier(None) is own


def test_slots_and_header_name() -> None:
    """Deadline has no __dict__ (cheap per request) and a default header name."""
    assert not hasattr(Deadline(1.0), "__dict__")
    assert DEFAULT_DEADLINE_HEADER == "X-Deadline-Ms"
    assert "timeout=1.0" in repr(Deadline(1.0))
