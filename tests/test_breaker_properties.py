"""Hypothesis: the breaker against a tiny reference model, step by step on a fake clock."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from svcclient._policies.breaker.guard import CircuitBreaker
from svcclient._policies.breaker.policy import BreakerPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Model:
    """The breaker's rules written as plainly as possible: lists and recounts."""

    def __init__(self, policy: BreakerPolicy, clock: FakeClock) -> None:
        self.p = policy
        self.clock = clock
        self.state = "closed"
        self.history: list[tuple[float, bool, bool]] = []  # (time, failed, slow)
        self.window_now = 0.0  # when the window last looked at the clock
        self.half_open_at = 0.0
        self.taken = 0
        self.probes: list[tuple[bool, bool]] = []
        self.rejects = 0
        self.changes: list[tuple[str, str]] = []

    # window -----------------------------------------------------------------------------

    def live(self) -> list[tuple[float, bool, bool]]:
        p = self.p
        if p.window == "count":
            return self.history[-p.window_size :]
        width = p.window_duration / p.window_buckets
        head = int(self.window_now // width)
        return [h for h in self.history if int(h[0] // width) > head - p.window_buckets]

    def over(self, outcomes: list[tuple[bool, bool]]) -> bool:
        n = len(outcomes)
        fails = sum(1 for f, _ in outcomes if f)
        slow = sum(1 for _, s in outcomes if s)
        p = self.p
        return Fraction(100 * fails, n) >= Fraction(p.error_threshold_percentage) or (
            p.slow_call_duration is not None
            and slow > 0
            and Fraction(100 * slow, n) >= Fraction(p.slow_call_rate_threshold)
        )

    # transitions ------------------------------------------------------------------------

    def go(self, new: str) -> None:
        old = self.state
        self.state = new
        if new == "open":
            self.half_open_at = self.clock.now + self.p.reset_timeout
        if new in ("half_open", "closed"):
            self.taken = 0
            self.probes = []
        if new == "closed":
            self.history = []
        if old != new:
            self.changes.append((old, new))

    def look(self) -> str:
        if self.state == "open" and self.clock.now >= self.half_open_at:
            self.go("half_open")
        return self.state

    # operations -------------------------------------------------------------------------

    def allow(self) -> bool:
        state = self.look()
        if state in ("closed", "disabled"):
            return True
        if state == "half_open" and self.taken < self.p.half_open_max_calls:
            self.taken += 1
            return True
        self.rejects += 1
        return False

    def record(self, failed: bool, duration: float) -> None:
        slow = self.p.slow_call_duration is not None and duration > self.p.slow_call_duration
        if self.state == "closed":
            self.window_now = self.clock.now
            self.history.append((self.clock.now, failed, slow))
            live = self.live()
            if len(live) >= self.p.volume_threshold and self.over([(f, s) for _, f, s in live]):
                self.go("open")
        elif self.state == "half_open" and self.taken > len(self.probes):
            self.probes.append((failed, slow))
            if len(self.probes) == self.p.half_open_max_calls:
                self.go("open" if self.over(self.probes) else "closed")

    def release(self) -> None:
        if self.state == "half_open" and self.taken > len(self.probes):
            self.taken -= 1

    def stats(self) -> tuple[str, int, int, int, int]:
        state = self.look()
        if state == "half_open":
            outcomes = self.probes
        else:
            if state == "closed":
                self.window_now = self.clock.now
            outcomes = [(f, s) for _, f, s in self.live()]
        return (
            state,
            len(outcomes),
            sum(1 for f, _ in outcomes if f),
            sum(1 for _, s in outcomes if s),
            self.rejects,
        )

    def retry_after(self) -> float:
        if self.state != "open":
            return 0.0
        return max(0.0, self.half_open_at - self.clock.now)


policies = st.builds(
    lambda window, buckets, duration, size, volume, thr, slow, slow_thr, probes, reset: (
        BreakerPolicy(
            window=window,
            window_buckets=buckets,
            window_duration=duration,
            window_size=size,
            volume_threshold=min(volume, size) if window == "count" else volume,
            error_threshold_percentage=thr,
            slow_call_duration=slow,
            slow_call_rate_threshold=slow_thr,
            half_open_max_calls=probes,
            reset_timeout=reset,
        )
    ),
    window=st.sampled_from(["time", "count"]),
    buckets=st.sampled_from([1, 2, 4, 10]),
    duration=st.sampled_from([1.0, 2.0, 10.0]),
    size=st.integers(1, 6),
    volume=st.integers(1, 5),
    thr=st.sampled_from([12.5, 25.0, 50.0, 60.0, 100.0]),
    slow=st.sampled_from([None, 1.0]),
    slow_thr=st.sampled_from([50.0, 100.0]),
    probes=st.integers(1, 3),
    reset=st.sampled_from([0.5, 3.0, 30.0]),
)

durations = st.sampled_from([0.0, 0.5, 1.0, 1.5, 4.0])


class BreakerVersusModel(RuleBasedStateMachine):
    """Every operation is applied to both; every observable must agree after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.breaker: CircuitBreaker | None = None
        self.model: Model | None = None
        self.changes: list[tuple[str, str]] = []

    @initialize(policy=policies, start=st.sampled_from([0.0, 0.25, 1e6 + 0.3]))
    def setup(self, policy: BreakerPolicy, start: float) -> None:
        self.clock.now = start
        self.breaker = CircuitBreaker(name="prop", policy=policy, clock=self.clock)
        self.breaker.on("state_change", lambda old, new: self.changes.append((old, new)))
        self.model = Model(policy, self.clock)

    @property
    def b(self) -> CircuitBreaker:
        assert self.breaker is not None
        return self.breaker

    @property
    def m(self) -> Model:
        assert self.model is not None
        return self.model

    @rule()
    def allow(self) -> None:
        assert self.b.allow() == self.m.allow()

    @rule(duration=durations)
    def success(self, duration: float) -> None:
        self.b.record_success(duration)
        self.m.record(False, duration)

    @rule(duration=durations)
    def failure(self, duration: float) -> None:
        self.b.record_failure(duration)
        self.m.record(True, duration)

    @rule(duration=durations, failed=st.booleans())
    def admitted_call(self, duration: float, failed: bool) -> None:
        """The pipeline's pattern: allow(), then a verdict only if admitted."""
        admitted = self.b.allow()
        assert admitted == self.m.allow()
        if admitted:
            if failed:
                self.b.record_failure(duration)
            else:
                self.b.record_success(duration)
            self.m.record(failed, duration)

    @rule()
    def release(self) -> None:
        self.b.release()
        self.m.release()

    @rule(dt=st.sampled_from([0.0, 0.1, 0.5, 0.999, 1.0, 2.5, 7.0, 31.0]))
    def tick(self, dt: float) -> None:
        self.clock.now += dt

    @precondition(lambda self: self.breaker is not None)
    @rule(action=st.sampled_from(["open", "close", "disable"]))
    def manual(self, action: str) -> None:
        getattr(self.b, action)()
        self.m.go({"open": "open", "close": "closed", "disable": "disabled"}[action])

    @invariant()
    def agree(self) -> None:
        if self.breaker is None:
            return
        s = self.b.stats
        expected: Any = self.m.stats()
        assert (s.state, s.calls, s.failures, s.slow_calls, s.rejects) == expected
        assert self.b.retry_after() == self.m.retry_after()
        assert self.changes == self.m.changes


BreakerVersusModel.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=40,
    deadline=None,
    # No "explain" phase: its tracer makes a failing run take minutes on Python 3.11.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow],
)
TestBreakerVersusModel = BreakerVersusModel.TestCase
