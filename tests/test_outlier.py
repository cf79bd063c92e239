"""Tests for svcclient._balancing.outlier: outlier ejection and the active health-check schedule."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from svcclient._balancing.outlier import OutlierDetector, OutlierPolicy
from svcclient._endpoint import Endpoint
from svcclient._exceptions import ConfigError


def eps(n: int) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i + 1}", 8080) for i in range(n)]


def detector(n: int = 4, **kw: object) -> tuple[OutlierDetector, list[Endpoint]]:
    d = OutlierDetector(OutlierPolicy(**kw))  # type: ignore[arg-type]
    endpoints = eps(n)
    d.set_endpoints(endpoints, now=0.0)
    return d, endpoints


def fail(d: OutlierDetector, ep: Endpoint, times: int, now: float) -> list[tuple[Endpoint, bool]]:
    out: list[tuple[Endpoint, bool]] = []
    for _ in range(times):
        out.extend(d.record_failure(ep, now))
    return out


# -- policy --------------------------------------------------------------------------------


def test_policy_defaults_follow_envoy() -> None:
    """Defaults: 5 failures, 30 s base, 300 s cap, 50 %, no active checks, 10 s interval."""
    p = OutlierPolicy()
    assert (p.consecutive_failures, p.base_ejection_time, p.max_ejection_time) == (5, 30.0, 300.0)
    assert (p.max_ejection_percent, p.health_check_path, p.health_check_interval) == (
        50.0,
        None,
        10.0,
    )
    assert p.enabled is True


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("consecutive_failures", 0),
        ("consecutive_failures", 2.5),
        ("consecutive_failures", True),
        ("base_ejection_time", 0),
        ("base_ejection_time", -1.0),
        ("base_ejection_time", math.inf),
        ("base_ejection_time", "30"),
        ("max_ejection_time", 10.0),  # below base (30)
        ("max_ejection_percent", -1),
        ("max_ejection_percent", 100.5),
        ("health_check_path", "healthz"),
        ("health_check_path", "/a b"),
        ("health_check_interval", 0),
        ("health_check_interval", math.nan),
        ("enabled", 1),
    ],
)
def test_policy_rejects_bad_values_naming_the_key(key: str, value: object) -> None:
    """Each invalid field raises ConfigError carrying that field's name and value."""
    with pytest.raises(ConfigError) as info:
        OutlierPolicy(**{key: value})  # type: ignore[arg-type]
    assert info.value.key == key
    assert info.value.value == value or value != value  # nan != nan


def test_policy_is_frozen_and_replaceable() -> None:
    """Policies are immutable; variants come from dataclasses.replace (validated again)."""
    p = OutlierPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.enabled = False  # type: ignore[misc]
    assert dataclasses.replace(p, consecutive_failures=2).consecutive_failures == 2
    with pytest.raises(ConfigError):
        dataclasses.replace(p, consecutive_failures=0)


# -- passive ejection ----------------------------------------------------------------------


def test_ejects_after_exactly_n_consecutive_failures() -> None:
    """The Nth consecutive failure ejects; N-1 do not."""
    d, (a, *_) = detector(consecutive_failures=3)
    assert fail(d, a, 2, now=1.0) == []
    assert not d.is_excluded(a)
    assert fail(d, a, 1, now=1.0) == [(a, True)]
    assert d.is_excluded(a)
    assert d.excluded() == (a,)


def test_success_resets_the_failure_run() -> None:
    """A success between failures restarts the count, so 4+4 failures never eject at N=5."""
    d, (a, *_) = detector()
    fail(d, a, 4, now=1.0)
    d.record_success(a)
    assert fail(d, a, 4, now=2.0) == []
    assert not d.is_excluded(a)


def test_returns_after_base_time_lazily() -> None:
    """An ejected endpoint comes back once base_ejection_time has passed, on refresh."""
    d, (a, *_) = detector(consecutive_failures=1)
    d.record_failure(a, now=10.0)
    assert d.next_expiry == 40.0
    assert d.refresh(now=39.999) == ()
    assert d.is_excluded(a)
    assert d.refresh(now=40.0) == ((a, False),)
    assert not d.is_excluded(a)
    assert d.next_expiry == math.inf


def test_first_failure_after_return_re_ejects_for_longer() -> None:
    """After returning, one failure re-ejects at once, for base x 2 (then x 3)."""
    d, (a, *_) = detector(consecutive_failures=5)
    fail(d, a, 5, now=0.0)  # ejected until 30
    d.refresh(now=30.0)
    assert d.record_failure(a, now=31.0) == ((a, True),)
    assert d.next_expiry == 31.0 + 60.0
    d.refresh(now=91.0)
    d.record_failure(a, now=91.5)
    assert d.next_expiry == 91.5 + 90.0
    assert d.times_ejected(a) == 3


def test_success_after_return_ends_probation() -> None:
    """A success after return means single failures no longer re-eject; N are needed."""
    d, (a, *_) = detector(consecutive_failures=3)
    fail(d, a, 3, now=0.0)
    d.refresh(now=30.0)
    d.record_success(a)
    assert fail(d, a, 2, now=31.0) == []
    assert fail(d, a, 1, now=31.0) == [(a, True)]
    assert d.next_expiry == 31.0 + 60.0  # the multiplier still grew: no time to decay


def test_ejection_time_is_capped() -> None:
    """base x times_ejected never exceeds max_ejection_time."""
    d, (a, *_) = detector(consecutive_failures=1, base_ejection_time=10.0, max_ejection_time=25.0)
    now = 0.0
    for expected in (10.0, 20.0, 25.0, 25.0):
        d.record_failure(a, now)
        assert d.next_expiry - now == expected
        now = d.next_expiry
        d.refresh(now)


def test_multiplier_decays_one_step_per_base_time_in_service() -> None:
    """times_ejected drops by one per full base_ejection_time back in service."""
    d, (a, *_) = detector(consecutive_failures=1, base_ejection_time=10.0, max_ejection_time=1e4)
    now = 0.0
    for _ in range(3):  # ejected 3 times back to back: multiplier 3
        d.record_failure(a, now)
        now = d.next_expiry
        d.refresh(now)
    assert d.times_ejected(a) == 3
    d.record_success(a)
    # 25 s in service = two full base times: 3 -> 1, so this ejection is the 2nd step.
    d.record_failure(a, now + 25.0)
    assert d.times_ejected(a) == 2
    assert d.next_expiry == now + 25.0 + 20.0


def test_probation_ends_when_multiplier_fully_decayed() -> None:
    """A long quiet spell after return ends probation: one failure no longer ejects."""
    d, (a, *_) = detector(consecutive_failures=3)
    fail(d, a, 3, now=0.0)
    d.refresh(now=30.0)
    assert d.record_failure(a, now=30.0 + 31.0) == ()  # one base time later: decayed to 0
    assert not d.is_excluded(a)
    assert fail(d, a, 2, now=62.0) == [(a, True)]
    assert d.times_ejected(a) == 1


def test_failures_while_ejected_do_not_extend() -> None:
    """Failures reported for an ejected endpoint (panic mode, in flight) change nothing."""
    d, (a, *_) = detector(consecutive_failures=1)
    d.record_failure(a, now=0.0)
    assert fail(d, a, 10, now=5.0) == []
    assert d.next_expiry == 30.0
    assert d.times_ejected(a) == 1


def test_never_ejects_more_than_max_percent() -> None:
    """With 4 endpoints at 50 %, a third failing endpoint stays in until one returns."""
    d, (a, b, c, _) = detector(consecutive_failures=1)
    d.record_failure(a, now=0.0)
    d.record_failure(b, now=1.0)
    assert d.record_failure(c, now=2.0) == ()
    assert not d.is_excluded(c)
    d.refresh(now=30.0)  # a returns
    assert d.record_failure(c, now=30.5) == ((c, True),)  # the run kept counting
    assert set(d.excluded()) == {b, c}


def test_at_least_one_ejection_allowed_with_two_or_more() -> None:
    """A small percentage still lets one of three endpoints be ejected (Envoy's rule)."""
    d, (a, b, _) = detector(3, consecutive_failures=1, max_ejection_percent=10.0)
    assert d.ejection_limit() == 1
    assert d.record_failure(a, now=0.0) == ((a, True),)
    assert d.record_failure(b, now=0.0) == ()


def test_zero_percent_and_single_endpoint_never_eject() -> None:
    """max_ejection_percent=0 disables ejection; a lone endpoint is never ejected at 50 %."""
    d, (a, _) = detector(2, consecutive_failures=1, max_ejection_percent=0.0)
    assert fail(d, a, 3, now=0.0) == []
    d1, (only,) = detector(1, consecutive_failures=1)
    assert fail(d1, only, 3, now=0.0) == []
    d100, (lone,) = detector(1, consecutive_failures=1, max_ejection_percent=100.0)
    assert d100.record_failure(lone, now=0.0) == ((lone, True),)


def test_disabled_policy_never_ejects_or_checks() -> None:
    """enabled=False: no ejection, no health checks, mark_health ignored."""
    d, (a, *_) = detector(consecutive_failures=1, enabled=False, health_check_path="/h")
    assert fail(d, a, 10, now=0.0) == []
    assert d.due_health_checks(now=100.0) == []
    assert d.mark_health(a, False, now=1.0) == ()
    assert not d.is_excluded(a)


def test_unknown_endpoint_is_ignored() -> None:
    """Outcomes for endpoints the detector does not track are no-ops."""
    d, _ = detector(consecutive_failures=1)
    stranger = Endpoint("10.9.9.9", 1)
    assert d.record_failure(stranger, now=0.0) == ()
    d.record_success(stranger)
    assert d.mark_health(stranger, False, now=0.0) == ()
    assert not d.is_excluded(stranger)
    assert d.health(stranger) is None


def test_set_endpoints_keeps_survivor_state_and_frees_removed_slots() -> None:
    """Survivors keep ejection and counts; removing an ejected endpoint frees cap room."""
    d, (a, b, c, e) = detector(consecutive_failures=2)
    d.record_failure(a, now=0.0)
    d.record_failure(a, now=0.0)
    d.record_failure(b, now=0.0)
    d.record_failure(c, now=0.0)
    d.record_failure(c, now=0.0)  # a, c ejected: cap of 2 reached
    d.set_endpoints([a, b, e, Endpoint("10.0.0.9", 8080)], now=1.0)
    assert d.excluded() == (a,)
    assert d.record_failure(b, now=2.0) == ((b, True),)  # b's earlier failure survived


# -- active health checks ------------------------------------------------------------------


def test_health_checks_are_scheduled_per_interval() -> None:
    """All endpoints are due at once, then again only after health_check_interval."""
    d, endpoints = detector(3, health_check_path="/healthz", health_check_interval=5.0)
    assert d.due_health_checks(now=0.0) == endpoints
    assert d.due_health_checks(now=0.0) == []  # claimed
    assert d.due_health_checks(now=4.9) == []
    assert d.due_health_checks(now=5.0) == endpoints
    new = Endpoint("10.0.0.7", 8080)
    d.set_endpoints([*endpoints, new], now=6.0)
    assert d.due_health_checks(now=6.0) == [new]


def test_no_health_checks_without_a_path() -> None:
    """Without health_check_path nothing is ever due."""
    d, _ = detector()
    assert d.due_health_checks(now=1e6) == []


def test_failed_check_excludes_until_a_pass() -> None:
    """mark_health(False) excludes regardless of the cap; a pass restores it."""
    d, endpoints = detector(2, consecutive_failures=1, health_check_path="/h")
    a, b = endpoints
    d.record_failure(a, now=0.0)
    assert d.mark_health(b, False, now=1.0) == ((b, True),)  # over the 50 % cap: allowed
    assert d.mark_health(b, False, now=2.0) == ()  # no repeated transition
    assert set(d.excluded()) == {a, b}
    assert d.refresh(now=1e6) == ((a, False),)
    assert d.is_excluded(b)  # not timed
    assert d.mark_health(b, True, now=1e6) == ((b, False),)


def test_passing_check_ends_passive_ejection_with_probation() -> None:
    """A passing check returns an ejected endpoint early; its next failure re-ejects."""
    d, (a, *_) = detector(consecutive_failures=5, health_check_path="/h")
    fail(d, a, 5, now=0.0)
    assert d.mark_health(a, True, now=3.0) == ((a, False),)
    assert d.next_expiry == math.inf
    assert d.record_failure(a, now=4.0) == ((a, True),)
    assert d.next_expiry == 4.0 + 60.0


def test_timed_return_of_unhealthy_endpoint_is_silent() -> None:
    """An endpoint both ejected and failing checks stays excluded when its time passes."""
    d, (a, *_) = detector(consecutive_failures=1, health_check_path="/h")
    d.record_failure(a, now=0.0)
    assert d.mark_health(a, False, now=1.0) == ()  # already excluded
    assert d.refresh(now=100.0) == ()
    assert d.is_excluded(a)


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=12),
    pct=st.sampled_from([0.0, 10.0, 33.3, 50.0, 75.0, 100.0]),
    ops=st.lists(
        st.tuples(st.sampled_from(["fail", "ok", "tick"]), st.integers(0, 11)), max_size=120
    ),
)
def test_passive_ejections_never_exceed_the_cap(
    n: int, pct: float, ops: list[tuple[str, int]]
) -> None:
    """Whatever the outcome sequence, passive ejections stay within ejection_limit()."""
    d, endpoints = detector(n, consecutive_failures=2, max_ejection_percent=pct)
    limit = max(math.floor(n * pct / 100 + 1e-9), 1 if (n >= 2 and pct > 0) else 0)
    now = 0.0
    for op, i in ops:
        ep = endpoints[i % n]
        if op == "fail":
            d.record_failure(ep, now)
        elif op == "ok":
            d.record_success(ep)
        else:
            now += 7.0
            d.refresh(now)
        assert len(d.excluded()) <= limit


class DetectorMachine(RuleBasedStateMachine):
    """Transitions alternate per endpoint and match is_excluded; time only moves forward."""

    def __init__(self) -> None:
        super().__init__()
        self.d, self.endpoints = detector(
            5, consecutive_failures=2, health_check_path="/h", max_ejection_percent=40.0
        )
        self.now = 0.0
        self.seen: dict[Endpoint, bool] = dict.fromkeys(self.endpoints, False)

    def apply(self, events: tuple[tuple[Endpoint, bool], ...]) -> None:
        for ep, excluded in events:
            assert self.seen[ep] != excluded, "transition repeated a state"
            self.seen[ep] = excluded

    @rule(i=st.integers(0, 4))
    def failure(self, i: int) -> None:
        self.apply(self.d.record_failure(self.endpoints[i], self.now))

    @rule(i=st.integers(0, 4))
    def success(self, i: int) -> None:
        self.d.record_success(self.endpoints[i])

    @rule(i=st.integers(0, 4), healthy=st.booleans())
    def check(self, i: int, healthy: bool) -> None:
        self.apply(self.d.mark_health(self.endpoints[i], healthy, self.now))

    @rule(dt=st.floats(min_value=0.0, max_value=200.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.apply(self.d.refresh(self.now))

    @precondition(lambda self: self.now > 0)
    @rule()
    def expiry_is_in_future_or_refreshed(self) -> None:
        self.apply(self.d.refresh(self.now))
        assert self.d.next_expiry > self.now

    @invariant()
    def transitions_match_state(self) -> None:
        for ep in self.endpoints:
            assert self.d.is_excluded(ep) == self.seen[ep]


TestDetectorMachine = DetectorMachine.TestCase
TestDetectorMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
