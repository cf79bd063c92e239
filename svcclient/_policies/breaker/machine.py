"""The circuit breaker's state machine: admission and verdicts, no I/O, no wrapper.

Theory of operation
-------------------
A breaker watches the outcomes of calls to one dependency and stops calling it while it
is failing, so that a sick service gets room to recover and callers fail in microseconds
instead of waiting for timeouts. Whoever makes the calls (the HTTP pipeline, or the
wrapper in ``guard.py``) asks ``allow()``/``admit()`` first and reports exactly one of
``record_success(duration)``, ``record_failure(duration)`` or ``release()`` afterwards.
Durations and the open interval are measured on one clock: the ``clock`` the breaker is
given (``breaker.clock``), so a fake clock drives every rule in tests.

* **closed** - every call is admitted. Outcomes go into a rolling window (the last
  ``window_duration`` seconds in buckets, or the last ``window_size`` calls). After each
  recorded call, once the window holds at least ``volume_threshold`` calls, the breaker
  *trips* when the failure rate ``>= error_threshold_percentage`` or, with
  ``slow_call_duration`` set, the slow-call rate ``>= slow_call_rate_threshold``
  (Resilience4j's rule: ">=" so that a 100 % threshold means "every call").
* **open** - every call is rejected at once, nothing is recorded. After ``reset_timeout``
  seconds the breaker becomes half-open. There is no timer: the change is noticed by the
  next ``allow()``/``state``/``stats``, so the machine stays free of I/O and threads.
* **half_open** - ``half_open_max_calls`` probe calls are admitted, all others rejected.
  When every probe has reported, the breaker judges the probes alone: failure rate or
  slow rate at/over its threshold opens it again (for another ``reset_timeout``),
  otherwise it closes with an empty window. A probe that ends without a verdict
  (cancelled) gives its slot back through ``release()``.
* **disabled** - set by ``disable()``: every call passes, nothing is counted, until
  ``close()``.

``open()``, ``close()`` and ``disable()`` force those states from any state (``open()``
trips as if the threshold had been crossed, so half-open still follows after
``reset_timeout``). The table ``TRANSITIONS`` below is the whole state graph; entering a
state runs its entry action (``_fire``) and announces the change to event handlers.

Concurrency: one ``threading.Lock`` guards the counters and the state; it is never held
while a user's function runs, nor while event handlers run (a handler may call back into
the breaker). Event handlers run after the lock is released, in the calling thread. The
one verdict taken without it is the commonest: a fast success while closed, into a time
window holding no failure and no slow call (nothing such a success could trip), before
the current bucket ends. It appends a token (``TimeWindow.pending``, as the retry
budget counts requests), which every locked read of the window counts first, and then
looks again: a failure counted or a state changed meanwhile is settled under the lock,
the failure's judgement folding the tokens once more after counting it, so either the
success sees the failure or the failure's judgement sees the success.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from ..._exceptions import CircuitOpenError
from .policy import BreakerPolicy
from .window import CountWindow, TimeWindow

__all__ = [
    "CLOSED",
    "DISABLED",
    "EVENTS",
    "HALF_OPEN",
    "OPEN",
    "STATES",
    "TRANSITIONS",
    "BreakerMachine",
    "BreakerStats",
]

log = logging.getLogger("svcclient")

# -- states and the transition table ------------------------------------------------------

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
DISABLED: Final = "disabled"
STATES: Final = (CLOSED, OPEN, HALF_OPEN, DISABLED)

# Triggers: what makes a state change.
TRIP: Final = "trip"  # closed: a rate reached its threshold over >= volume_threshold calls
RESET_ELAPSED: Final = "reset_elapsed"  # open: reset_timeout has passed
PROBES_PASSED: Final = "probes_passed"  # half-open: every probe reported, rates below
PROBES_FAILED: Final = "probes_failed"  # half-open: every probe reported, a rate at/over
FORCE_OPEN: Final = "open()"
FORCE_CLOSE: Final = "close()"
DISABLE: Final = "disable()"

# (state, trigger) -> new state. A trigger missing for a state is ignored in that state.
TRANSITIONS: Final[Mapping[tuple[str, str], str]] = {
    (CLOSED, TRIP): OPEN,
    (OPEN, RESET_ELAPSED): HALF_OPEN,
    (HALF_OPEN, PROBES_PASSED): CLOSED,
    (HALF_OPEN, PROBES_FAILED): OPEN,
    **{(state, FORCE_OPEN): OPEN for state in STATES},
    **{(state, FORCE_CLOSE): CLOSED for state in STATES},
    **{(state, DISABLE): DISABLED for state in STATES},
}

# Events handlers can subscribe to (opossum's names). Entering open, closed or half-open
# announces the event of the same name (disabled has none of its own), then state_change.
EVENT_OPEN: Final = "open"
EVENT_CLOSE: Final = "close"
EVENT_HALF_OPEN: Final = "half_open"
EVENTS: Final = frozenset(
    {
        EVENT_OPEN,
        EVENT_CLOSE,
        EVENT_HALF_OPEN,
        "success",
        "failure",
        "timeout",
        "reject",
        "fallback",
        "state_change",
    }
)
_STATE_EVENT: Final[Mapping[str, str]] = {
    OPEN: EVENT_OPEN,
    CLOSED: EVENT_CLOSE,
    HALF_OPEN: EVENT_HALF_OPEN,
}

_INF: Final = float("inf")

Handler = Callable[..., object]
Change = tuple[str, str]


# -- stats --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """An immutable snapshot of a breaker.

    ``calls``/``failures``/``slow_calls`` are the rolling window's counts (while half-open:
    the probes' counts; while open: the counts that tripped it). ``rejects`` counts every
    rejected call since the breaker was made. Rates are percentages (0.0 with no calls).
    """

    name: str
    state: str
    calls: int
    failures: int
    slow_calls: int
    rejects: int
    failure_rate: float
    slow_call_rate: float
    retry_after: float

    @property
    def successes(self) -> int:
        """Calls in the window that did not fail."""
        return self.calls - self.failures


# -- the machine --------------------------------------------------------------------------


class BreakerMachine:
    """The I/O-free breaker: admission, verdicts, state, stats, events, manual control.

    ``CircuitBreaker`` (``guard.py``) adds the callable wrapper on top; the HTTP pipeline
    drives this interface directly: ``allow()`` before sending, then exactly one of
    ``record_success(duration)``, ``record_failure(duration)`` or ``release()``, with
    durations measured on ``clock`` (any monotonic ``() -> float``; inject a fake in tests).
    """

    __slots__ = (
        "__weakref__",
        "_half_open_at",
        "_handlers",
        "_keyed",
        "_lock",
        "_on_success",
        "_probe_calls",
        "_probe_fails",
        "_probe_slow",
        "_probes_taken",
        "_rejects",
        "_slow_limit",
        "_state",
        "_time_window",
        "_window",
        "clock",
        "is_closed",
        "name",
        "policy",
    )

    def __init__(
        self,
        *,
        name: str,
        policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        policy = policy if policy is not None else BreakerPolicy()
        self.policy = policy
        self.name = name
        self.clock: Callable[[], float] = clock
        """The clock every duration is measured on; time the calls you report with it."""
        self._lock = threading.Lock()
        self._handlers: dict[str, tuple[Handler, ...]] = {}
        self._keyed: dict[tuple[str, object], Handler] = {}
        self._on_success: tuple[Handler, ...] = ()
        self._window: TimeWindow | CountWindow = (
            TimeWindow(policy.window_duration, policy.window_buckets)
            if policy.window == "time"
            else CountWindow(policy.window_size)
        )
        # The time window takes fast successes without the lock (TimeWindow.pending).
        self._time_window = self._window if isinstance(self._window, TimeWindow) else None
        self._state: str = CLOSED
        self.is_closed = True
        """True while closed: the one-attribute check callers make before ``admit()``."""
        self._half_open_at = 0.0
        self._probes_taken = self._probe_calls = self._probe_fails = self._probe_slow = 0
        self._rejects = 0
        self._slow_limit = policy.slow_limit

    def __repr__(self) -> str:
        return f"<{type(self).__name__.lstrip('_')} {self.name!r} {self._state}>"

    # -- admission -------------------------------------------------------------------------

    def allow(self) -> bool:
        """Admit a call? Half-open: takes a probe slot. False (and ``reject``) when refused."""
        state = self._state
        if state is CLOSED or state is DISABLED:
            return True
        return self.admit() is not OPEN

    def admit(self) -> str:
        """Admit a call and say how: the state it was admitted in, or ``OPEN`` if refused.

        ``CLOSED`` or ``HALF_OPEN`` (a probe slot taken): report its outcome. ``DISABLED``:
        nothing is counted, report nothing. ``OPEN``: refused, counted as a reject and
        announced (``reject``); ``rejection()`` is the error to raise.
        """
        state = self._state
        if state is CLOSED or state is DISABLED:
            return state
        lock = self._lock
        change = None
        lock.acquire()
        try:
            state = self._state
            if state is OPEN and self.clock() >= self._half_open_at:
                change = self._fire(RESET_ELAPSED)
                state = self._state
            if state is HALF_OPEN:
                if self._probes_taken < self.policy.half_open_max_calls:
                    self._probes_taken += 1
                else:
                    state = OPEN
            if state is OPEN:
                self._rejects += 1
        finally:
            lock.release()
        if change is not None:
            self._announce(change)
        if state is OPEN and "reject" in self._handlers:
            self.emit("reject")
        return state

    def rejection(self) -> CircuitOpenError:
        """The error for a call just refused: ``CircuitOpenError(name, retry_after)``."""
        return CircuitOpenError(self.name, self.retry_after())

    def retry_after(self) -> float:
        """Seconds until an open breaker admits a probe; 0.0 when it is not open."""
        if self._state is not OPEN:
            return 0.0
        remaining = self._half_open_at - self.clock()
        return remaining if remaining > 0.0 else 0.0

    # -- verdicts --------------------------------------------------------------------------

    def record_success(self, duration: float, now: float | None = None) -> None:
        """An admitted call succeeded after ``duration`` seconds (slow if over the limit).

        ``now``: the ``clock()`` reading at the call's end, when the caller has one (saves
        a clock read on the hot path).
        """
        if duration <= self._slow_limit and self._state is CLOSED:
            if now is None:
                now = self.clock()
            # The hot path: with nothing in the window that a success could help trip
            # (no failure, no slow call) and no bucket to roll, a token, without the lock
            # (see TimeWindow.pending). Then looked at again: a failure recorded or a state
            # changed meanwhile is settled under the lock as any success would be, the
            # token already counted (it is ignored outside closed: the window is reset
            # before it is read again).
            window = self._time_window
            counted = False
            if (
                window is not None
                and now < window.edge
                and not window.failures
                and not window.slow_calls
            ):
                window.pending.append(None)
                if self._state is CLOSED and not window.failures and not window.slow_calls:
                    if self._on_success:
                        self.emit("success", duration)
                    return
                counted = True
            change = None
            lock = self._lock
            lock.acquire()
            try:
                if self._state is CLOSED:
                    if counted:
                        self._window.advance(now)  # folds the token in, to judge it
                        change = self._judge()
                    elif self._window.success(now):  # failures or slow calls to judge
                        change = self._judge()
                else:
                    change = self._verdict(now, False, False)
            finally:
                lock.release()
            if change is not None:
                self._announce(change)
            if self._on_success:
                self.emit("success", duration)
            return
        self._record(duration, False, None, False)

    def record_failure(
        self, duration: float, cause: BaseException | None = None, *, timed_out: bool = False
    ) -> None:
        """An admitted call failed (``timed_out``: by running past its timeout)."""
        self._record(duration, True, cause, timed_out)

    def release(self) -> None:
        """An admitted call ended with no verdict (cancelled): give back its probe slot."""
        if self._state is HALF_OPEN:
            with self._lock:
                if self._state is HALF_OPEN and self._probes_taken > self._probe_calls:
                    self._probes_taken -= 1

    def _after_fork_in_child(self) -> None:
        # Called by svcclient._transports.forksafe: probes admitted to the parent's threads
        # never report in the child; give their slots back (their verdicts would be ignored).
        self._probes_taken = min(self._probes_taken, self._probe_calls)

    # -- state -----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``CLOSED``, ``OPEN``, ``HALF_OPEN`` or ``DISABLED`` (the strings ``"closed"`` …)."""
        state = self._state
        if state is OPEN and self.clock() >= self._half_open_at:
            self._force(RESET_ELAPSED)
            state = self._state
        return state

    @property
    def stats(self) -> BreakerStats:
        """An immutable snapshot of the window counts, rejects, rates and state."""
        self.state  # noqa: B018 - notices an elapsed reset_timeout first
        with self._lock:
            state = self._state
            if state is HALF_OPEN:
                calls, fails, slow = self._probe_calls, self._probe_fails, self._probe_slow
            else:
                window = self._window
                if state is CLOSED:
                    window.advance(self.clock())
                calls, fails, slow = window.calls, window.failures, window.slow_calls
            rejects = self._rejects
        return BreakerStats(
            name=self.name,
            state=state,
            calls=calls,
            failures=fails,
            slow_calls=slow,
            rejects=rejects,
            failure_rate=100.0 * fails / calls if calls else 0.0,
            slow_call_rate=100.0 * slow / calls if calls else 0.0,
            retry_after=self.retry_after(),
        )

    def same_setup(self, policy: BreakerPolicy | None, clock: Callable[[], float] | None) -> bool:
        """Would a breaker made with ``policy`` and ``clock`` behave like this one?

        None means "any". Clocks compare with ``==`` (two bound methods of one object are
        equal); policies compare field by field.
        """
        return (policy is None or policy == self.policy) and (clock is None or clock == self.clock)

    # -- manual control --------------------------------------------------------------------

    def open(self) -> None:
        """Trip now; half-open follows after ``reset_timeout`` as after any trip."""
        self._force(FORCE_OPEN)

    def close(self) -> None:
        """Close now with an empty window (also ends ``disable()``)."""
        self._force(FORCE_CLOSE)

    def disable(self) -> None:
        """Let every call through uncounted until ``close()``."""
        self._force(DISABLE)

    # -- events ----------------------------------------------------------------------------

    def on(self, event: str, handler: Handler, *, key: object = None) -> Handler:
        """Subscribe ``handler`` to ``event`` (see ``EVENTS``); returns it (decorator).

        With ``key`` (any hashable, e.g. the observer the handler relays to) the breaker
        subscribes one handler per (event, key): a second ``on`` with the same key keeps
        and returns the first handler. The key lives as long as the subscription, so
        nothing outlives the breaker.
        """
        if event not in EVENTS:
            raise ValueError(f"unknown breaker event {event!r}; events are {sorted(EVENTS)}")
        with self._lock:
            if key is not None:
                first = self._keyed.get((event, key))
                if first is not None:
                    return first
                self._keyed[(event, key)] = handler
            handlers = (*self._handlers.get(event, ()), handler)
            self._handlers = {**self._handlers, event: handlers}
            if event == "success":
                self._on_success = handlers
        return handler

    def off(self, event: str, handler: Handler) -> None:
        """Unsubscribe ``handler`` from ``event`` (no error if it was not subscribed)."""
        with self._lock:
            handlers = tuple(h for h in self._handlers.get(event, ()) if h is not handler)
            table = {**self._handlers, event: handlers}
            if not handlers:
                del table[event]
            self._handlers = table
            if event == "success":
                self._on_success = handlers
            self._keyed = {k: h for k, h in self._keyed.items() if h is not handler}

    def emit(self, event: str, *args: object) -> None:
        """Run ``event``'s handlers with ``args``; a handler that raises is logged, ignored."""
        for handler in self._handlers.get(event, ()):
            try:
                handler(*args)
            except Exception:
                log.exception("circuit breaker %r: %s handler %r raised", self.name, event, handler)

    def listens(self, event: str) -> bool:
        """True when ``event`` has a handler (skip building its arguments otherwise)."""
        return event in self._handlers

    def _announce(self, change: Change) -> None:
        old, new = change
        event = _STATE_EVENT.get(new)
        if event is not None:
            self.emit(event)
        self.emit("state_change", old, new)

    # -- state machine (lock held) ---------------------------------------------------------

    def _fire(self, trigger: str) -> Change | None:
        """Apply ``trigger`` per TRANSITIONS; return (old, new) when the state changed."""
        old = self._state
        new = TRANSITIONS.get((old, trigger))
        if new is None:
            return None
        self._state = new
        self.is_closed = new is CLOSED
        # Entry actions.
        if new is OPEN:
            self._half_open_at = self.clock() + self.policy.reset_timeout
        elif new is HALF_OPEN or new is CLOSED:
            self._probes_taken = self._probe_calls = self._probe_fails = self._probe_slow = 0
            if new is CLOSED:
                self._window.reset()
        return (old, new) if old != new else None

    def _judge(self) -> Change | None:
        """Closed: trip when a rate reached its threshold over enough calls."""
        window = self._window
        # Again, after the verdict was counted: a token appended by a success that had
        # not seen this verdict's failure yet must be judged with it.
        window.fold()
        calls = window.calls
        if calls < self.policy.volume_threshold:
            return None
        policy = self.policy
        if window.failures * 100.0 >= policy.error_threshold_percentage * calls or (
            window.slow_calls
            and window.slow_calls * 100.0 >= policy.slow_call_rate_threshold * calls
        ):
            return self._fire(TRIP)
        return None

    def _verdict(self, now: float, failed: bool, slow: bool) -> Change | None:
        """Count one outcome in the current state; return a state change if it caused one."""
        state = self._state
        if state is CLOSED:
            self._window.record(now, failed, slow)
            return self._judge()
        if state is not HALF_OPEN or self._probes_taken <= self._probe_calls:
            return None  # open/disabled, or a late verdict from before the probes: ignored
        self._probe_calls += 1
        self._probe_fails += failed
        self._probe_slow += slow
        calls = self._probe_calls
        if calls < self.policy.half_open_max_calls:
            return None
        policy = self.policy
        reopen = self._probe_fails * 100.0 >= policy.error_threshold_percentage * calls or (
            self._probe_slow > 0
            and self._probe_slow * 100.0 >= policy.slow_call_rate_threshold * calls
        )
        return self._fire(PROBES_FAILED if reopen else PROBES_PASSED)

    def _record(
        self, duration: float, failed: bool, cause: BaseException | None, timed_out: bool
    ) -> None:
        slow = duration > self._slow_limit
        with self._lock:
            change = self._verdict(self.clock(), failed, slow)
        if change is not None:
            self._announce(change)
        if failed:
            if timed_out and "timeout" in self._handlers:
                self.emit("timeout", duration)
            if "failure" in self._handlers:
                self.emit("failure", duration, cause)
        elif self._on_success:
            self.emit("success", duration)

    def _force(self, trigger: str) -> None:
        with self._lock:
            # RESET_ELAPSED is re-checked under the lock: another thread may have done it.
            if trigger is RESET_ELAPSED and not (
                self._state is OPEN and self.clock() >= self._half_open_at
            ):
                return
            change = self._fire(trigger)
        if change is not None:
            self._announce(change)
