"""The circuit breaker's policy: how it judges a dependency. Frozen and validated.

A policy is pure configuration: no clock, no counters. Runtime state lives in the
state machine (``machine.py``); the caller-facing wrapper is ``guard.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final, Literal

from ..._exceptions import ConfigError
from ..._validate import (
    check_choice,
    check_count,
    check_percent,
    check_seconds,
    check_status_codes,
)

__all__ = ["POLICY_FIELDS", "BreakerPolicy"]

_INF: Final = float("inf")
_DEFAULT_FAILURE_STATUS: Final = frozenset({429, *range(500, 600)})


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """How a circuit breaker judges a dependency. Immutable; vary it with ``dataclasses.replace``.

    Defaults follow opossum: a 3 s call timeout, open at 50 % failures over a 10 s window
    (10 buckets) once it holds 10 calls, try again after 30 s with one probe call.

    * ``timeout`` - seconds a guarded callable may run before it counts as a failure and
      the caller gets ``CallTimeoutError`` (None: no limit). The HTTP pipeline uses its
      own per-attempt timeout instead.
    * ``error_threshold_percentage`` - open when failures/calls * 100 reaches this (0-100].
    * ``reset_timeout`` - seconds open before admitting half-open probes.
    * ``window`` - ``"time"`` (last ``window_duration`` s in ``window_buckets`` buckets) or
      ``"count"`` (last ``window_size`` calls).
    * ``volume_threshold`` - calls the window must hold before any rate is judged.
    * ``slow_call_duration`` - calls slower than this many seconds are *slow* (None: off);
      open when slow/calls * 100 reaches ``slow_call_rate_threshold``.
    * ``half_open_max_calls`` - probe calls admitted while half-open.
    * ``failure_status_codes`` - HTTP statuses that count as failures (429 and 5xx);
      other 4xx are the caller's fault and count as successes.

    Every duration is measured on the clock the breaker is given (``clock=``).

    >>> BreakerPolicy(error_threshold_percentage=25, window="count", window_size=20)
    """

    timeout: float | None = 3.0
    error_threshold_percentage: float = 50.0
    reset_timeout: float = 30.0
    window: Literal["time", "count"] = "time"
    window_duration: float = 10.0
    window_buckets: int = 10
    window_size: int = 100
    volume_threshold: int = 10
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float = 100.0
    half_open_max_calls: int = 1
    failure_status_codes: frozenset[int] = _DEFAULT_FAILURE_STATUS

    def __post_init__(self) -> None:
        # Every field goes through the one validator (svcclient._validate).
        if self.timeout is not None:
            check_seconds("timeout", self.timeout)
        check_percent("error_threshold_percentage", self.error_threshold_percentage)
        check_seconds("reset_timeout", self.reset_timeout)
        check_choice("window", self.window, ("time", "count"))
        check_seconds("window_duration", self.window_duration)
        check_count("window_buckets", self.window_buckets)
        check_count("window_size", self.window_size)
        check_count("volume_threshold", self.volume_threshold)
        if self.slow_call_duration is not None:
            check_seconds("slow_call_duration", self.slow_call_duration)
        check_percent("slow_call_rate_threshold", self.slow_call_rate_threshold)
        check_count("half_open_max_calls", self.half_open_max_calls)
        # opossum's rule: the window splits into whole-millisecond buckets, so bucket edges
        # do not drift with float rounding and a bucket is never narrower than 1 ms.
        millis = self.window_duration * 1000.0
        if abs(millis - round(millis)) > 1e-6 or round(millis) % self.window_buckets:
            raise ConfigError(
                None,
                "window_buckets",
                self.window_buckets,
                f"window_duration {self.window_duration:g}s does not split into "
                f"{self.window_buckets} whole-millisecond buckets",
            )
        if self.window == "count" and self.volume_threshold > self.window_size:
            raise ConfigError(
                None,
                "volume_threshold",
                self.volume_threshold,
                f"exceeds window_size {self.window_size}: the breaker could never open",
            )
        codes = self.failure_status_codes
        frozen = check_status_codes("failure_status_codes", codes, low=100, high=599)
        object.__setattr__(self, "failure_status_codes", frozen)

    @property
    def sampling_window(self) -> float:
        """Seconds of history the failure rate is judged over (``window_duration``)."""
        return self.window_duration

    @property
    def slow_limit(self) -> float:
        """``slow_call_duration``, or infinity when the slow-call rule is off."""
        return self.slow_call_duration if self.slow_call_duration is not None else _INF

    def is_failure_status(self, code: int) -> bool:
        """True when an HTTP status counts as a failure (default: 429 and 5xx)."""
        return code in self.failure_status_codes


POLICY_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(BreakerPolicy))
"""The names ``CircuitBreaker(**fields)`` accepts as policy keywords."""
