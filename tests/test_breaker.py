"""The breaker's policy, state machine, events, stats and registry, on a fake clock."""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
from typing import Any

import pytest

from svcclient._exceptions import ConfigError
from svcclient._policies.breaker.guard import CircuitBreaker
from svcclient._policies.breaker.machine import (
    CLOSED,
    DISABLED,
    HALF_OPEN,
    OPEN,
    TRANSITIONS,
)
from svcclient._policies.breaker.policy import BreakerPolicy
from svcclient._policies.breaker.registry import BreakerRegistry, breakers


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(clock: FakeClock | None = None, **fields: Any) -> CircuitBreaker:
    fields.setdefault("volume_threshold", 4)
    return CircuitBreaker(name="svc", clock=clock or FakeClock(), **fields)


def feed(b: CircuitBreaker, failures: int, successes: int = 0, duration: float = 0.01) -> None:
    for _ in range(successes):
        assert b.allow()
        b.record_success(duration)
    for _ in range(failures):
        assert b.allow()
        b.record_failure(duration)


def trip(b: CircuitBreaker) -> None:
    feed(b, failures=b.policy.volume_threshold)
    assert b.state == OPEN


class Events:
    """Subscribes to every event and records (event, args)."""

    def __init__(self, b: CircuitBreaker) -> None:
        self.seen: list[tuple[Any, ...]] = []
        for name in (
            "open",
            "close",
            "half_open",
            "success",
            "failure",
            "timeout",
            "reject",
            "fallback",
            "state_change",
        ):
            b.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.seen.append((name, *args))

        return record

    def names(self) -> list[str]:
        return [e[0] for e in self.seen]


# -- policy -------------------------------------------------------------------------------


def test_policy_defaults_follow_the_seed() -> None:
    """Defaults: 3 s timeout, 50 %, 30 s reset, 10 s/10 buckets, volume 10, 1 probe."""
    p = BreakerPolicy()
    assert (p.timeout, p.error_threshold_percentage, p.reset_timeout) == (3.0, 50.0, 30.0)
    assert (p.window, p.window_duration, p.window_buckets, p.volume_threshold) == (
        "time",
        10.0,
        10,
        10,
    )
    assert p.half_open_max_calls == 1
    assert p.slow_call_duration is None
    assert p.sampling_window == 10.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("timeout", 0),
        ("timeout", -1.0),
        ("timeout", float("inf")),
        ("timeout", float("nan")),
        ("timeout", "3"),
        ("error_threshold_percentage", 0),
        ("error_threshold_percentage", 100.5),
        ("error_threshold_percentage", -5),
        ("reset_timeout", 0.0),
        ("window", "sliding"),
        ("window_duration", 0),
        ("window_buckets", 0),
        ("window_buckets", 2.0),
        ("window_buckets", True),
        ("window_buckets", 3),  # 10 s does not split into 3 whole-ms buckets
        ("window_size", 0),
        ("volume_threshold", 0),
        ("slow_call_duration", 0.0),
        ("slow_call_rate_threshold", 0),
        ("slow_call_rate_threshold", 101),
        ("half_open_max_calls", 0),
        ("failure_status_codes", 500),
        ("failure_status_codes", {700}),
        ("failure_status_codes", {"500"}),
    ],
)
def test_policy_rejects_bad_values(key: str, value: object) -> None:
    """A bad value raises ConfigError naming the key."""
    with pytest.raises(ConfigError) as info:
        BreakerPolicy(**{key: value})  # type: ignore[arg-type]
    assert info.value.key == key


def test_policy_count_window_needs_volume_within_size() -> None:
    """A count window smaller than the volume threshold could never open: rejected."""
    with pytest.raises(ConfigError) as info:
        BreakerPolicy(window="count", window_size=5, volume_threshold=6)
    assert info.value.key == "volume_threshold"
    BreakerPolicy(window="count", window_size=5, volume_threshold=5)


def test_policy_is_frozen_and_replaceable() -> None:
    """Policies are immutable; variants come from dataclasses.replace (and are validated)."""
    p = BreakerPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.timeout = 1.0  # type: ignore[misc]
    assert dataclasses.replace(p, timeout=1.0).timeout == 1.0
    with pytest.raises(ConfigError):
        dataclasses.replace(p, reset_timeout=-1)


def test_policy_failure_statuses() -> None:
    """429 and 5xx fail by default; 4xx do not; a custom set is frozen."""
    p = BreakerPolicy()
    assert p.is_failure_status(500) and p.is_failure_status(599) and p.is_failure_status(429)
    assert not p.is_failure_status(404) and not p.is_failure_status(200)
    custom = BreakerPolicy(failure_status_codes=[503, 504])  # type: ignore[arg-type]
    assert custom.failure_status_codes == frozenset({503, 504})
    assert not custom.is_failure_status(500)


def test_breaker_builds_policy_from_keywords() -> None:
    """opossum style: policy fields as keywords, or a policy with keyword overrides."""
    b = CircuitBreaker(name="x", timeout=1.5, error_threshold_percentage=25, reset_timeout=5)
    assert (b.policy.timeout, b.policy.error_threshold_percentage, b.policy.reset_timeout) == (
        1.5,
        25,
        5,
    )
    base = BreakerPolicy(reset_timeout=9.0)
    assert CircuitBreaker(policy=base, timeout=None).policy == dataclasses.replace(
        base, timeout=None
    )


def test_breaker_unknown_keyword_is_a_type_error() -> None:
    """A misspelt option fails loudly, listing the valid ones."""
    with pytest.raises(TypeError, match="errorThreshold"):
        CircuitBreaker(errorThreshold=3)


# -- the transition table -----------------------------------------------------------------


def test_transition_table_edges() -> None:
    """The table holds the four automatic edges and manual edges from every state."""
    assert TRANSITIONS[(CLOSED, "trip")] == OPEN
    assert TRANSITIONS[(OPEN, "reset_elapsed")] == HALF_OPEN
    assert TRANSITIONS[(HALF_OPEN, "probes_passed")] == CLOSED
    assert TRANSITIONS[(HALF_OPEN, "probes_failed")] == OPEN
    for state in (CLOSED, OPEN, HALF_OPEN, DISABLED):
        assert TRANSITIONS[(state, "open()")] == OPEN
        assert TRANSITIONS[(state, "close()")] == CLOSED
        assert TRANSITIONS[(state, "disable()")] == DISABLED
    assert (OPEN, "trip") not in TRANSITIONS
    assert (CLOSED, "reset_elapsed") not in TRANSITIONS


# -- closed -------------------------------------------------------------------------------


def test_closed_admits_and_counts() -> None:
    """Closed: allow() is True and outcomes are counted."""
    b = make()
    feed(b, failures=1, successes=2)
    s = b.stats
    assert (s.state, s.calls, s.failures, s.successes) == (CLOSED, 3, 1, 2)
    assert s.failure_rate == pytest.approx(100 / 3)


def test_closed_does_not_judge_below_volume_threshold() -> None:
    """Even 100 % failures do not open before volume_threshold calls."""
    b = make(volume_threshold=5)
    feed(b, failures=4)
    assert b.state == CLOSED
    feed(b, failures=1)
    assert b.state == OPEN


def test_closed_opens_at_the_threshold_not_below() -> None:
    """Failure rate >= threshold opens (Resilience4j rule); just below stays closed."""
    below = make(volume_threshold=10)
    feed(below, successes=6, failures=4)  # 40 %
    assert below.state == CLOSED
    at = make(volume_threshold=10)
    feed(at, successes=5, failures=5)  # 50 %
    assert at.state == OPEN


def test_success_that_completes_the_volume_can_trip() -> None:
    """Rates are judged after every call, so the call reaching the volume may be a success."""
    b = make(volume_threshold=4)
    feed(b, failures=3)
    assert b.state == CLOSED
    feed(b, failures=0, successes=1)  # 3/4 = 75 %
    assert b.state == OPEN


def test_failures_age_out_of_the_time_window() -> None:
    """Failures older than the window no longer count towards the rate."""
    clock = FakeClock()
    b = make(clock, volume_threshold=4, window_duration=10.0, window_buckets=10)
    feed(b, failures=3)
    clock.advance(10.0)
    feed(b, failures=1, successes=3)  # the first three failures are gone: 1/4
    assert b.state == CLOSED
    assert (b.stats.calls, b.stats.failures) == (4, 1)


def test_count_window_judges_the_last_n_calls() -> None:
    """Count window: only the last window_size calls count, whatever their age."""
    clock = FakeClock()
    b = make(clock, window="count", window_size=4, volume_threshold=4)
    feed(b, failures=1)
    feed(b, failures=0, successes=3)  # f s s s: 25 %
    clock.advance(1e6)
    feed(b, failures=1)  # the oldest failure is evicted: s s s f, 25 %
    assert b.state == CLOSED
    assert b.stats.failures == 1
    feed(b, failures=1)  # s s f f: 50 %
    assert b.state == OPEN


def test_slow_calls_open_the_breaker() -> None:
    """Slow rate >= slow_call_rate_threshold opens even when every call succeeds."""
    b = make(volume_threshold=4, slow_call_duration=1.0, slow_call_rate_threshold=50)
    feed(b, failures=0, successes=2, duration=0.5)
    feed(b, failures=0, successes=1, duration=2.0)
    assert b.state == CLOSED
    assert b.stats.slow_calls == 1
    feed(b, failures=0, successes=1, duration=1.5)  # 2 slow of 4
    assert b.state == OPEN


def test_slow_rule_off_without_slow_call_duration() -> None:
    """With no slow_call_duration, long successes never open the breaker."""
    b = make(volume_threshold=4)
    feed(b, failures=0, successes=10, duration=100.0)
    assert b.state == CLOSED
    assert b.stats.slow_calls == 0


def test_call_exactly_at_slow_duration_is_not_slow() -> None:
    """'Slower than' is strict: a call of exactly slow_call_duration is not slow."""
    b = make(volume_threshold=4, slow_call_duration=1.0)
    feed(b, failures=0, successes=4, duration=1.0)
    assert b.stats.slow_calls == 0
    assert b.state == CLOSED


# -- open ---------------------------------------------------------------------------------


def test_open_rejects_and_counts_rejects() -> None:
    """Open: allow() is False, each rejection counted, retry_after counts down."""
    clock = FakeClock()
    b = make(clock, reset_timeout=30.0)
    trip(b)
    assert b.retry_after() == 30.0
    clock.advance(12.5)
    assert not b.allow()
    assert not b.allow()
    assert b.retry_after() == 17.5
    assert b.stats.rejects == 2
    assert b.stats.state == OPEN


def test_open_ignores_late_verdicts() -> None:
    """Outcomes reported while open (calls admitted earlier) change nothing."""
    b = make()
    trip(b)
    before = b.stats
    b.record_success(0.1)
    b.record_failure(0.1)
    b.release()
    assert b.stats == before


def test_open_becomes_half_open_after_reset_timeout() -> None:
    """After reset_timeout the next look finds the breaker half-open."""
    clock = FakeClock()
    b = make(clock, reset_timeout=5.0)
    trip(b)
    clock.advance(4.999)
    assert b.state == OPEN
    clock.advance(0.001)
    assert b.retry_after() == 0.0
    assert b.state == HALF_OPEN


def test_allow_notices_elapsed_reset_timeout() -> None:
    """allow() itself moves open -> half-open and admits the probe."""
    clock = FakeClock()
    b = make(clock, reset_timeout=5.0)
    trip(b)
    seen = Events(b)
    clock.advance(5.0)
    assert b.allow()
    assert seen.seen == [("half_open",), ("state_change", OPEN, HALF_OPEN)]


# -- half-open ----------------------------------------------------------------------------


def half_open(clock: FakeClock, **fields: Any) -> CircuitBreaker:
    b = make(clock, reset_timeout=10.0, **fields)
    trip(b)
    clock.advance(10.0)
    assert b.state == HALF_OPEN
    return b


def test_half_open_admits_exactly_max_probes() -> None:
    """half_open_max_calls probes are admitted; every other call is rejected."""
    clock = FakeClock()
    b = half_open(clock, half_open_max_calls=3)
    assert [b.allow() for _ in range(5)] == [True, True, True, False, False]
    assert b.stats.rejects == 2


def test_half_open_slots_do_not_refill_until_probes_decide() -> None:
    """A reported probe does not free a slot; the breaker waits for all verdicts."""
    clock = FakeClock()
    b = half_open(clock, half_open_max_calls=2)
    assert b.allow() and b.allow()
    b.record_success(0.01)
    assert b.state == HALF_OPEN
    assert not b.allow()
    b.record_success(0.01)
    assert b.state == CLOSED


def test_single_probe_success_closes_with_fresh_window() -> None:
    """One successful probe closes the breaker; the window starts empty."""
    clock = FakeClock()
    b = half_open(clock)
    seen = Events(b)
    assert b.allow()
    b.record_success(0.01)
    assert b.state == CLOSED
    assert b.stats.calls == 0
    assert seen.seen == [("close",), ("state_change", HALF_OPEN, CLOSED), ("success", 0.01)]


def test_single_probe_failure_reopens_for_another_reset_timeout() -> None:
    """A failed probe opens the breaker again and restarts the reset timer."""
    clock = FakeClock()
    b = half_open(clock)
    clock.advance(3.0)
    assert b.allow()
    b.record_failure(0.01)
    assert b.state == OPEN
    assert b.retry_after() == 10.0


def test_half_open_judges_the_probes_by_rate() -> None:
    """With several probes the failure rate over the probes decides (>= threshold opens)."""
    clock = FakeClock()
    passing = half_open(clock, half_open_max_calls=4, error_threshold_percentage=50)
    for ok in (True, True, True, False):
        assert passing.allow()
        passing.record_success(0.01) if ok else passing.record_failure(0.01)
    assert passing.state == CLOSED
    failing = half_open(clock, half_open_max_calls=4, error_threshold_percentage=50)
    for ok in (True, False, True, False):
        assert failing.allow()
        failing.record_success(0.01) if ok else failing.record_failure(0.01)
    assert failing.state == OPEN


def test_half_open_slow_probes_reopen() -> None:
    """Slow probes at/over the slow-call threshold open the breaker again."""
    clock = FakeClock()
    b = half_open(clock, slow_call_duration=1.0, slow_call_rate_threshold=100)
    assert b.allow()
    b.record_success(5.0)
    assert b.state == OPEN


def test_half_open_stats_show_the_probes() -> None:
    """While half-open, stats count the probes."""
    clock = FakeClock()
    b = half_open(clock, half_open_max_calls=3)
    feed(b, failures=1, successes=1)
    s = b.stats
    assert (s.state, s.calls, s.failures) == (HALF_OPEN, 2, 1)


def test_release_frees_a_probe_slot() -> None:
    """A probe that ends without a verdict gives its slot back."""
    clock = FakeClock()
    b = half_open(clock)
    assert b.allow()
    assert not b.allow()
    b.release()
    assert b.allow()
    b.record_success(0.01)
    assert b.state == CLOSED


def test_release_cannot_free_more_slots_than_in_flight() -> None:
    """Extra release() calls do not create probe slots."""
    clock = FakeClock()
    b = half_open(clock, half_open_max_calls=2)
    assert b.allow()
    b.release()
    b.release()
    b.release()
    assert [b.allow() for _ in range(3)] == [True, True, False]


def test_half_open_ignores_verdicts_without_a_probe_in_flight() -> None:
    """A late verdict from a call admitted before the trip is not taken as a probe."""
    clock = FakeClock()
    b = half_open(clock)
    b.record_failure(0.01)  # nobody holds a probe slot
    assert b.state == HALF_OPEN
    assert b.allow()
    b.record_success(0.01)
    assert b.state == CLOSED


def test_release_in_closed_is_harmless() -> None:
    """release() while closed changes nothing."""
    b = make()
    feed(b, failures=1)
    b.release()
    assert b.stats.calls == 1 and b.state == CLOSED


# -- manual control -----------------------------------------------------------------------


def test_manual_open_then_half_open_after_reset() -> None:
    """open() trips now; half-open still follows after reset_timeout."""
    clock = FakeClock()
    b = make(clock, reset_timeout=7.0)
    seen = Events(b)
    b.open()
    assert b.state == OPEN and not b.allow()
    assert seen.names()[:2] == ["open", "state_change"]
    clock.advance(7.0)
    assert b.state == HALF_OPEN


def test_manual_close_resets_the_window() -> None:
    """close() closes from any state with an empty window."""
    b = make()
    trip(b)
    b.close()
    assert b.state == CLOSED and b.stats.calls == 0 and b.allow()


def test_disable_lets_everything_through_uncounted() -> None:
    """disable(): every call admitted, nothing counted, no trip; close() re-enables."""
    b = make()
    trip(b)
    b.disable()
    assert b.state == DISABLED
    feed(b, failures=50)
    assert b.state == DISABLED
    assert b.retry_after() == 0.0
    b.close()
    assert b.state == CLOSED and b.stats.calls == 0


def test_repeated_manual_state_emits_no_change() -> None:
    """Forcing the state a breaker is already in announces nothing."""
    b = make()
    seen = Events(b)
    b.close()
    assert seen.seen == []


# -- events -------------------------------------------------------------------------------


def test_trip_emits_open_and_state_change() -> None:
    """Tripping announces failure, then open and state_change(old, new)."""
    b = make(volume_threshold=1)
    seen = Events(b)
    assert b.allow()
    err = RuntimeError("x")
    b.record_failure(0.25, err)
    assert seen.seen == [("open",), ("state_change", CLOSED, OPEN), ("failure", 0.25, err)]


def test_reject_and_timeout_events() -> None:
    """Rejections emit reject; a timed-out failure emits timeout then failure."""
    b = make(volume_threshold=1)
    seen = Events(b)
    assert b.allow()
    b.record_failure(3.5, None, timed_out=True)
    b.allow()
    assert seen.names() == ["open", "state_change", "timeout", "failure", "reject"]


def test_raising_handler_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """A handler that raises does not break the call; it is logged on 'svcclient'."""
    b = make(volume_threshold=1)
    calls: list[str] = []

    def bad(*_: Any) -> None:
        raise ValueError("handler bug")

    b.on("open", bad)
    b.on("open", lambda: calls.append("second"))
    with caplog.at_level(logging.ERROR, logger="svcclient"):
        assert b.allow()
        b.record_failure(0.1)
    assert b.state == OPEN
    assert calls == ["second"]
    assert any("handler bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert caplog.records[0].name == "svcclient"


def test_handler_may_call_back_into_the_breaker() -> None:
    """Handlers run outside the lock, so they can read stats or act on the breaker."""
    b = make(volume_threshold=1)
    seen: list[str] = []
    b.on("open", lambda: seen.append(b.stats.state))
    b.on("state_change", lambda old, new: b.close() if new == OPEN else None)
    assert b.allow()
    b.record_failure(0.1)
    assert seen == [OPEN]
    assert b.state == CLOSED


def test_on_unknown_event_and_off() -> None:
    """Unknown events are refused; off() unsubscribes."""
    b = make()
    with pytest.raises(ValueError, match="unknown breaker event"):
        b.on("opened", lambda: None)
    got: list[float] = []
    handler = b.on("success", got.append)
    feed(b, failures=0, successes=1)
    b.off("success", handler)
    b.off("success", handler)
    feed(b, failures=0, successes=1)
    assert got == [0.01]


# -- stats --------------------------------------------------------------------------------


def test_stats_is_an_immutable_snapshot() -> None:
    """stats does not change after the fact and cannot be modified."""
    b = make()
    feed(b, failures=1, successes=1)
    snap = b.stats
    feed(b, failures=0, successes=5)
    assert snap.calls == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.calls = 9  # type: ignore[misc]


def test_stats_while_open_keep_the_tripping_counts() -> None:
    """While open, stats show the window that tripped it and the time left."""
    clock = FakeClock()
    b = make(clock, volume_threshold=4, reset_timeout=30.0)
    feed(b, failures=3, successes=1)
    s = b.stats
    assert (s.state, s.calls, s.failures, s.failure_rate, s.retry_after) == (OPEN, 4, 3, 75.0, 30.0)


def test_time_window_stats_age_without_new_calls() -> None:
    """Reading stats later drops buckets that left the window."""
    clock = FakeClock()
    b = make(clock)
    feed(b, failures=1, successes=1)
    clock.advance(11.0)
    assert b.stats.calls == 0


# -- registry -----------------------------------------------------------------------------


def test_registry_get_or_create_shares_one_breaker() -> None:
    """The same name and settings give the same breaker; None settings match any."""
    reg = BreakerRegistry()
    first = reg.get_or_create("users", BreakerPolicy(reset_timeout=5.0))
    assert reg.get_or_create("users", BreakerPolicy(reset_timeout=5.0)) is first
    assert reg.get_or_create("users") is first
    assert reg.get("users") is first
    assert first.name == "users"


def test_registry_refuses_a_second_policy_for_one_name() -> None:
    """Another policy for an existing name is a ConfigError naming the field that differs."""
    reg = BreakerRegistry()
    first = reg.get_or_create("users", BreakerPolicy(reset_timeout=5.0))
    with pytest.raises(ConfigError, match=r"reset_timeout=99\.0 \(existing: 5\.0\)") as info:
        reg.get_or_create("users", BreakerPolicy(reset_timeout=99.0))
    assert info.value.service == "users" and "breakers.remove('users')" in str(info.value)
    assert reg.get("users") is first and first.policy.reset_timeout == 5.0


def test_registry_refuses_a_second_clock_for_one_name() -> None:
    """Another clock for an existing name is a ConfigError; an equal clock is the same."""
    reg = BreakerRegistry()
    clock = FakeClock()
    first = reg.get_or_create("users", clock=clock)
    assert reg.get_or_create("users", clock=clock) is first
    with pytest.raises(ConfigError, match="another clock"):
        reg.get_or_create("users", clock=FakeClock())
    assert first.clock is clock


def test_registry_remove_starts_a_name_over() -> None:
    """remove(name) forgets it (True once); its holder keeps it, new callers get a new one."""
    reg = BreakerRegistry()
    old = reg.get_or_create("users", BreakerPolicy(reset_timeout=5.0))
    old.open()
    assert reg.remove("users") is True and reg.remove("users") is False
    assert "users" not in reg and old.state == OPEN
    fresh = reg.get_or_create("users", BreakerPolicy(reset_timeout=99.0))
    assert fresh is not old and fresh.state == CLOSED


def test_registry_keeps_capacity_idle_breakers_lru() -> None:
    """Past capacity the least recently used unheld breaker is forgotten; held ones stay."""
    reg = BreakerRegistry(capacity=2)
    held = reg.get_or_create("held")
    for name in ("a", "b"):
        reg.get_or_create(name)
    reg.get("a")  # now b is the least recently used
    reg.get_or_create("c")
    gc.collect()
    assert reg.names() == ["a", "c", "held"]
    assert reg.get("held") is held and reg.capacity == 2


def test_registry_many_names_stay_bounded() -> None:
    """Thousands of one-off names leave at most capacity breakers behind."""
    reg = BreakerRegistry(capacity=16)
    for i in range(2000):
        reg.get_or_create(f"svc-{i}")
    gc.collect()
    assert len(reg) == 16 and reg.names()[0] == "svc-1984"


def test_registry_capacity_is_validated() -> None:
    """A negative or non-integer capacity is a ConfigError."""
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="capacity"):
            BreakerRegistry(capacity=bad)  # type: ignore[arg-type]


def test_registry_get_unknown_name_explains() -> None:
    """get() of a missing name raises KeyError listing the known names."""
    reg = BreakerRegistry()
    reg.get_or_create("a")
    with pytest.raises(KeyError, match="no circuit breaker named 'b'.*known: a"):
        reg.get("b")


def test_registry_listing_register_and_clear() -> None:
    """names(), iteration, membership, register() and clear()."""
    reg = BreakerRegistry()
    b1 = reg.get_or_create("b")
    a = reg.register(CircuitBreaker(name="a"))
    assert reg.names() == ["a", "b"]
    assert set(reg) == {a, b1}
    assert "a" in reg and len(reg) == 2
    with pytest.raises(ValueError, match="already registered"):
        reg.register(CircuitBreaker(name="a"))
    replacement = reg.register(CircuitBreaker(name="a"), replace=True)
    assert reg.get("a") is replacement
    reg.clear()
    assert reg.names() == [] and "a" not in reg


def test_registry_concurrent_get_or_create_makes_one() -> None:
    """Threads racing to create one name all get the same breaker."""
    reg = BreakerRegistry()
    start = threading.Barrier(8)
    got: list[CircuitBreaker] = []

    def worker() -> None:
        start.wait(timeout=10)
        got.append(reg.get_or_create("svc"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(got) == 8 and all(g is got[0] for g in got)


def test_shared_registry_is_the_package_one() -> None:
    """svcclient.breakers is the registry the pipeline uses."""
    import svcclient

    assert svcclient.breakers is breakers
    assert breakers.get_or_create("shared-svc") is svcclient.breakers.get("shared-svc")


def test_keyed_subscription_happens_once_per_key() -> None:
    """on(event, handler, key=k) twice keeps the first handler; off() frees the key."""
    b = CircuitBreaker(name="keyed", clock=FakeClock())
    seen: list[str] = []
    observer = object()
    first = b.on("open", lambda: seen.append("first"), key=observer)
    assert b.on("open", lambda: seen.append("second"), key=observer) is first
    b.open()
    assert seen == ["first"]
    b.off("open", first)
    b.on("open", lambda: seen.append("third"), key=observer)
    b.close()
    b.open()
    assert seen == ["first", "third"]
