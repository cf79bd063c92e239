"""Hedging decisions for one round of racing attempts (no I/O, no event loop).

A call whose driver can race (the async one) and whose service has a hedge policy gets
a :class:`Race` from ``call.next()`` instead of an attempt. The driver runs the racers and
waits; the race tells it what to do::

    launch(race.first)
    while True:
        result = wait_for_a_racer(race.wait())  # None: wait without a time limit
        if nobody finished in time:
            extra = race.quiet()                # a hedge to launch now, or None
        else:
            outcome = race.finished(attempt, result)  # None: keep racing
    cancel race.racing; call.abandon(each)      # the losers
    action = call.raced(*outcome)               # as call.responded() / call.failed()

Rules: after ``wait()`` seconds without an answer, one more attempt starts on another
endpoint (idempotent requests only, at most ``max_hedges`` per round, each drawn from
the retry budget). A racer that fails while another still runs is booked (balancer,
observers) and replaced at once instead of leaving the call to the slow one; the last
racer's result, success or failure, is the round's outcome and goes through the
call's usual retry decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import httpx

if TYPE_CHECKING:
    from .._policies.hedge import HedgePolicy
    from .attempt import Attempt
    from .service_state import ServiceRuntime


class RacingCall(Protocol):
    """What a race asks of its call (a :class:`~svcclient._pipeline.call.Call`)."""

    rt: ServiceRuntime

    def begin_attempt(self) -> Attempt: ...

    def may_hedge(self, limit: int) -> bool: ...

    def responded(self, attempt: Attempt, response: httpx.Response) -> object: ...

    def failed(self, attempt: Attempt, error: Exception) -> object: ...


__all__ = ["Race", "RacingCall"]


class Race:
    """The decisions for one round of hedged attempts (see the module docstring)."""

    __slots__ = (
        "_hedges_left",
        "_latencies",
        "_limit",
        "_policy",
        "_replace_now",
        "call",
        "first",
        "racing",
    )

    def __init__(self, call: RacingCall, policy: HedgePolicy, first: Attempt) -> None:
        latencies = call.rt.latencies
        assert latencies is not None  # kept whenever a hedge policy is set
        self.call = call
        self._policy = policy
        self._latencies = latencies
        self._limit = call.rt.config.retry.attempts + policy.max_hedges  # per call
        self._hedges_left = policy.max_hedges
        self._replace_now = False
        self.first = first  # the round's first attempt, begun by the call
        self.racing: list[Attempt] = [first]

    def wait(self) -> float | None:
        """How long to wait for a racer before :meth:`quiet`; None: no hedge is left."""
        if self._replace_now:
            return 0.0
        if self._hedges_left:
            return self._latencies.hedge_delay(self._policy)
        return None

    def quiet(self) -> Attempt | None:
        """No racer finished within :meth:`wait`: the extra attempt to launch, if any."""
        if self._replace_now:
            self._replace_now = False
        else:
            self._hedges_left -= 1
        call = self.call
        if not call.may_hedge(self._limit):
            return None
        try:
            extra = call.begin_attempt()
        except httpx.TransportError:
            return None
        self.racing.append(extra)
        return extra

    def finished(
        self, attempt: Attempt, result: httpx.Response | BaseException
    ) -> tuple[Attempt, httpx.Response | Exception] | None:
        """A racer is done: the round's outcome, or None to keep racing.

        A failure status booked here (None returned) leaves the response for the driver
        to close. A ``BaseException`` that is not an ``Exception`` is re-raised.
        """
        self.racing.remove(attempt)
        call = self.call
        if isinstance(result, httpx.Response):
            if self.racing and result.status_code in call.rt.failure_codes:
                call.responded(attempt, result)  # booked; the others race on
                self._replace_now = True
                return None
            return attempt, result
        if isinstance(result, httpx.TransportError) and self.racing:
            call.failed(attempt, result)  # booked; the others race on
            self._replace_now = True
            return None
        if isinstance(result, Exception):
            return attempt, result
        raise result
