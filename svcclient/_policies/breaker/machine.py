"""The circuit breaker: policy, state machine and the breaker object.

Theory of operation
-------------------
A breaker watches the outcomes of calls to one dependency and stops calling it while it
is failing, so that a sick service gets room to recover and callers fail in microseconds
instead of waiting for timeouts.

* **closed** - every call is admitted. Outcomes go into a rolling window (the last
  ``window_duration`` seconds in buckets, or the last ``window_size`` calls). After each
  recorded call, once the window holds at least ``volume_threshold`` calls, the breaker
  *trips* when the failure rate ``>= error_threshold_percentage`` or, with
  ``slow_call_duration`` set, the slow-call rate ``>= slow_call_rate_threshold``
  (Resilience4j's rule: ">=" so that a 100 % threshold means "every call").
* **open** - every call is rejected at once (``CircuitOpenError`` or the fallback), nothing
  is recorded. After ``reset_timeout`` seconds the breaker becomes half-open. There is no
  timer: the change is noticed by the next ``allow()``/``state``/``stats``, so the core
  stays free of I/O and threads.
* **half_open** - ``half_open_max_calls`` probe calls are admitted, all others rejected.
  When every probe has reported, the breaker judges the probes alone: failure rate or
  slow rate at/over its threshold opens it again (for another ``reset_timeout``),
  otherwise it closes with an empty window. A probe that ends without a verdict
  (cancelled) gives its slot back through ``release()``.
* **disabled** - set by ``disable()``: every call passes, nothing is counted, until
  ``close()``.

``open()`` and ``close()`` force those states (``open()`` trips as if the threshold had
been crossed, so half-open still follows after ``reset_timeout``).

Concurrency: one ``threading.Lock`` guards the counters and the state; it is never held
while a user's function runs, nor while event handlers run (a handler may call back into
the breaker). Event handlers run after the lock is released, in the calling thread.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from types import MethodType
from typing import Any, Final, Literal

from ..._exceptions import CircuitOpenError, ConfigError
from . import guard as _guard
from .window import CountWindow, TimeWindow

__all__ = [
    "CLOSED",
    "DISABLED",
    "EVENTS",
    "HALF_OPEN",
    "OPEN",
    "BreakerPolicy",
    "BreakerStats",
    "CircuitBreaker",
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

# The opossum-style event announced on entering a state (disabled has none of its own).
_STATE_EVENT: Final[Mapping[str, str]] = {OPEN: "open", CLOSED: "close", HALF_OPEN: "half_open"}

EVENTS: Final = frozenset(
    {
        "open",
        "close",
        "half_open",
        "success",
        "failure",
        "timeout",
        "reject",
        "fallback",
        "state_change",
    }
)

_INF: Final = float("inf")

Handler = Callable[..., object]
Change = tuple[str, str]


# -- policy -------------------------------------------------------------------------------

_DEFAULT_FAILURE_STATUS: Final = frozenset({429, *range(500, 600)})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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
        _check_seconds("timeout", self.timeout, optional=True)
        _check_percent("error_threshold_percentage", self.error_threshold_percentage)
        _check_seconds("reset_timeout", self.reset_timeout)
        if self.window not in ("time", "count"):
            raise ConfigError(None, "window", self.window, 'must be "time" or "count"')
        _check_seconds("window_duration", self.window_duration)
        _check_count("window_buckets", self.window_buckets)
        _check_count("window_size", self.window_size)
        _check_count("volume_threshold", self.volume_threshold)
        _check_seconds("slow_call_duration", self.slow_call_duration, optional=True)
        _check_percent("slow_call_rate_threshold", self.slow_call_rate_threshold)
        _check_count("half_open_max_calls", self.half_open_max_calls)
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
        if isinstance(codes, int | str | bytes) or not isinstance(codes, Iterable):
            raise ConfigError(None, "failure_status_codes", codes, "must be a set of ints")
        frozen = frozenset(codes)
        for code in frozen:
            if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
                raise ConfigError(
                    None, "failure_status_codes", code, "must be HTTP status codes 100-599"
                )
        object.__setattr__(self, "failure_status_codes", frozen)

    @property
    def sampling_window(self) -> float:
        """Seconds of history the failure rate is judged over (``window_duration``)."""
        return self.window_duration

    def is_failure_status(self, code: int) -> bool:
        """True when an HTTP status counts as a failure (default: 429 and 5xx)."""
        return code in self.failure_status_codes


def _check_seconds(key: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not _is_number(value) or not 0 < value < _INF:  # type: ignore[operator]
        raise ConfigError(None, key, value, "must be a finite number of seconds > 0")


def _check_percent(key: str, value: object) -> None:
    if not _is_number(value) or not 0 < value <= 100:  # type: ignore[operator]
        raise ConfigError(None, key, value, "must be a percentage in (0, 100]")


def _check_count(key: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(None, key, value, "must be an integer >= 1")


_POLICY_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(BreakerPolicy))


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


# -- the breaker --------------------------------------------------------------------------


def _is_exception(exc: BaseException) -> bool:
    return isinstance(exc, Exception)


class CircuitBreaker:
    """A circuit breaker around a callable, or driven step by step by the HTTP pipeline.

    Around a callable (sync or async), opossum style::

        breaker = CircuitBreaker(get_user, timeout=3.0, error_threshold_percentage=50,
                                 reset_timeout=30.0)
        breaker.fallback(lambda user_id, *, cause: {"id": user_id, "cached": True})
        user = breaker(42)            # or: await breaker(42) when get_user is async

        @CircuitBreaker(timeout=1.0)  # as a decorator, on def or async def
        async def get_stock(sku): ...

    Policy fields (see :class:`BreakerPolicy`) may be given as keywords or as ``policy=``
    (keywords then override the policy's fields). ``name`` defaults to the function's
    qualified name; ``clock`` is any monotonic ``() -> float`` (inject a fake in tests).

    Failures: ``is_failure(exc)`` decides whether an exception counts (default: any
    ``Exception``); an exception that does not count is recorded as a success and still
    raised. ``BaseException``s that are not ``Exception`` (cancellation, KeyboardInterrupt)
    give no verdict: the call is released and the exception propagates.

    Fallback: ``fallback(fn)`` or ``fallback=fn``. It runs when the breaker rejects a
    call, when the call fails, or when it times out; it receives the call's arguments plus
    the cause as the keyword ``cause=`` (``CircuitOpenError``, ``CallTimeoutError`` or
    the failure), and its result is returned. It may be async when the function is.
    Without one, a rejection raises ``CircuitOpenError(name, retry_after)``.

    Timeouts: async calls run under a cancel scope and are cancelled at ``timeout``.
    A sync function cannot be interrupted: by default it runs in the caller's thread and,
    if it returned or raised after ``timeout``, its outcome is discarded, a failure is
    recorded and ``CallTimeoutError`` raised (no threads, nothing leaks). To bound the
    caller's wait too, pass ``executor=`` (e.g. a ``ThreadPoolExecutor(max_workers=4)``
    you own): the call runs there and the caller gets ``CallTimeoutError`` at the
    deadline, while the worker finishes the call in the background and returns to the
    pool, so threads stay bounded by the executor's size.

    Events (``on(event, handler)``, handlers that raise are logged and ignored):
    ``open``, ``close``, ``half_open``, ``reject`` get no arguments; ``success(duration)``,
    ``timeout(duration)``, ``failure(duration, cause)`` (cause may be None),
    ``fallback(result, cause)`` and ``state_change(old, new)``.

    Pipeline use (no I/O, never blocks): ``allow()`` before sending; then exactly one of
    ``record_success(duration)``, ``record_failure(duration)`` or ``release()``.
    """

    __slots__ = (
        "__dict__",  # only for the wrapped function's __name__, __doc__, __wrapped__
        "__weakref__",
        "_clock",
        "_decorated",
        "_executor",
        "_fallback",
        "_fast",
        "_fast_limit",
        "_func",
        "_half_open_at",
        "_handlers",
        "_is_async",
        "_is_failure",
        "_lock",
        "_named",
        "_on_success",
        "_probe_calls",
        "_probe_fails",
        "_probe_slow",
        "_probes_taken",
        "_rejects",
        "_slow_limit",
        "_state",
        "_window",
        "name",
        "policy",
    )

    def __init__(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        fallback: Callable[..., Any] | None = None,
        is_failure: Callable[[BaseException], bool] | None = None,
        executor: Executor | None = None,
        **policy_fields: Any,
    ) -> None:
        unknown = set(policy_fields) - _POLICY_FIELDS
        if unknown:
            raise TypeError(
                f"CircuitBreaker got unknown option(s) {sorted(unknown)}; "
                f"policy fields are {sorted(_POLICY_FIELDS)}"
            )
        if policy is None:
            policy = BreakerPolicy(**policy_fields)
        elif policy_fields:
            policy = dataclasses.replace(policy, **policy_fields)
        self.policy = policy
        self.name = name if name is not None else f"breaker-{id(self):x}"
        self._named = name is not None
        self._clock = clock
        self._is_failure = is_failure if is_failure is not None else _is_exception
        self._executor = executor
        self._fallback = fallback
        self._lock = threading.Lock()
        self._handlers: dict[str, tuple[Handler, ...]] = {}
        self._on_success: tuple[Handler, ...] = ()
        self._window: TimeWindow | CountWindow = (
            TimeWindow(policy.window_duration, policy.window_buckets)
            if policy.window == "time"
            else CountWindow(policy.window_size)
        )
        self._state: str = CLOSED
        self._half_open_at = 0.0
        self._probes_taken = self._probe_calls = self._probe_fails = self._probe_slow = 0
        self._rejects = 0
        self._slow_limit = (
            policy.slow_call_duration if policy.slow_call_duration is not None else _INF
        )
        self._func: Callable[..., Any] | None = None
        self._is_async = False
        self._fast = False
        self._fast_limit = _INF
        self._decorated = False
        if func is not None:
            self._bind(func)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._state}>"

    # -- pipeline-facing, I/O-free ---------------------------------------------------------

    def allow(self) -> bool:
        """Admit a call? Half-open: takes a probe slot. False (and ``reject``) when refused."""
        state = self._state
        if state is CLOSED or state is DISABLED:
            return True
        lock = self._lock
        change = None
        lock.acquire()
        try:
            state = self._state
            if state is OPEN and self._clock() >= self._half_open_at:
                change = self._fire(RESET_ELAPSED)
                state = self._state
            if state is HALF_OPEN:
                admitted = self._probes_taken < self.policy.half_open_max_calls
                if admitted:
                    self._probes_taken += 1
            else:
                admitted = state is not OPEN
            if not admitted:
                self._rejects += 1
        finally:
            lock.release()
        if change is not None:
            self._announce(change)
        if not admitted and "reject" in self._handlers:
            self._emit("reject")
        return admitted

    def retry_after(self) -> float:
        """Seconds until an open breaker admits a probe; 0.0 when it is not open."""
        if self._state is not OPEN:
            return 0.0
        remaining = self._half_open_at - self._clock()
        return remaining if remaining > 0.0 else 0.0

    def record_success(self, duration: float) -> None:
        """An admitted call succeeded after ``duration`` seconds (slow if over the limit)."""
        if duration <= self._slow_limit and self._state is CLOSED:
            # The hot path, kept flat: one clock read, one lock, one bucket increment.
            now = self._clock()
            change = None
            lock = self._lock
            lock.acquire()
            try:
                if self._state is CLOSED:
                    window = self._window
                    window.success(now)
                    if window.failures or window.slow_calls:
                        change = self._judge()
                else:
                    change = self._verdict(now, False, False)
            finally:
                lock.release()
            if change is not None:
                self._announce(change)
            if self._on_success:
                self._emit("success", duration)
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

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"``, ``"half_open"`` or ``"disabled"``."""
        state = self._state
        if state is OPEN and self._clock() >= self._half_open_at:
            self._force(RESET_ELAPSED)
            state = self._state
        return state

    @property
    def stats(self) -> BreakerStats:
        """An immutable snapshot of the window counts, rejects, rates and state."""
        state = self.state  # notices an elapsed reset_timeout first
        with self._lock:
            state = self._state
            if state is HALF_OPEN:
                calls, fails, slow = self._probe_calls, self._probe_fails, self._probe_slow
            else:
                window = self._window
                if state is CLOSED:
                    window.advance(self._clock())
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

    def on(self, event: str, handler: Handler) -> Handler:
        """Subscribe ``handler`` to ``event`` (see the class doc); returns it (decorator)."""
        if event not in EVENTS:
            raise ValueError(f"unknown breaker event {event!r}; events are {sorted(EVENTS)}")
        with self._lock:
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

    def _emit(self, event: str, *args: object) -> None:
        for handler in self._handlers.get(event, ()):
            try:
                handler(*args)
            except Exception:
                log.exception("circuit breaker %r: %s handler %r raised", self.name, event, handler)

    def _announce(self, change: Change) -> None:
        old, new = change
        event = _STATE_EVENT.get(new)
        if event is not None:
            self._emit(event)
        self._emit("state_change", old, new)

    # -- the callable wrapper --------------------------------------------------------------

    def fallback(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Set the fallback (``fn(*args, cause=exc, **kwargs)``); returns ``fn`` (decorator)."""
        if self._func is not None and not self._is_async and inspect.iscoroutinefunction(fn):
            raise TypeError(f"{self.name}: an async fallback needs an async function")
        self._fallback = fn
        return fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the guarded function through the breaker (``await`` it when async)."""
        if self._fast:
            state = self._state
            if state is CLOSED:
                # Closed sync fast path, inlined (a method call here costs as much as the
                # bookkeeping): time the call, count a success, done.
                clock = self._clock
                start = clock()
                try:
                    result = self._func(*args, **kwargs)  # type: ignore[misc]
                except BaseException as exc:
                    return _guard.sync_error(self, exc, clock() - start, args, kwargs)
                now = clock()
                if now - start <= self._fast_limit:
                    change = None
                    lock = self._lock
                    lock.acquire()
                    try:
                        if self._state is CLOSED:
                            window = self._window
                            window.success(now)
                            if window.failures or window.slow_calls:
                                change = self._judge()
                        else:
                            change = self._verdict(now, False, False)
                    finally:
                        lock.release()
                    if change is not None:
                        self._announce(change)
                    if self._on_success:
                        self._emit("success", now - start)
                    return result
                return _guard.sync_late(self, result, now - start, args, kwargs)
            if state is OPEN:
                # Open fast path: reject without touching anything but the reject counter.
                now = self._clock()
                if now < self._half_open_at:
                    error = self._rejected(now)
                    if self._fallback is None:
                        raise error
                    return _guard.fallback_sync(self, args, kwargs, error)
        if self._func is None:
            if len(args) == 1 and not kwargs and callable(args[0]):
                self._bind(args[0])
                self._decorated = True
                return self
            raise TypeError(f"{self.name}: no function to call; use the breaker as a decorator")
        if self._is_async:
            return _guard.call_async(self, args, kwargs)
        return _guard.call_sync(self, args, kwargs)

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        # A breaker made by decorating a method binds like the function it replaced.
        if obj is None or not self._decorated:
            return self
        return MethodType(self, obj)

    def _bind(self, func: Callable[..., Any]) -> None:
        if self._func is not None:
            raise TypeError(f"{self.name}: already guards {self._func!r}")
        self._func = func
        self._is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - an object with async __call__
        )
        if not self._is_async and inspect.iscoroutinefunction(self._fallback):
            raise TypeError(f"{self.name}: an async fallback needs an async function")
        if not self._named:
            self.name = getattr(func, "__qualname__", None) or self.name
        # Look like the function (as functools.wraps would), for decorators and introspection.
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            if hasattr(func, attr):
                self.__dict__[attr] = getattr(func, attr)
        self.__dict__["__wrapped__"] = func
        mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
        if self._is_async and mark is not None:
            mark(self)  # so inspect.iscoroutinefunction(breaker) is True, as for the function
        timeout = self.policy.timeout
        self._fast = not self._is_async and (timeout is None or self._executor is None)
        self._fast_limit = min(timeout if timeout is not None else _INF, self._slow_limit)

    # -- state machine (lock held) ---------------------------------------------------------

    def _fire(self, trigger: str) -> Change | None:
        """Apply ``trigger`` per TRANSITIONS; return (old, new) when the state changed."""
        old = self._state
        new = TRANSITIONS.get((old, trigger))
        if new is None:
            return None
        self._state = new
        # Entry actions.
        if new is OPEN:
            self._half_open_at = self._clock() + self.policy.reset_timeout
        elif new is HALF_OPEN or new is CLOSED:
            self._probes_taken = self._probe_calls = self._probe_fails = self._probe_slow = 0
            if new is CLOSED:
                self._window.reset()
        return (old, new) if old != new else None

    def _judge(self) -> Change | None:
        """Closed: trip when a rate reached its threshold over enough calls."""
        window = self._window
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

    # -- helpers ---------------------------------------------------------------------------

    def _record(
        self, duration: float, failed: bool, cause: BaseException | None, timed_out: bool
    ) -> None:
        slow = duration > self._slow_limit
        with self._lock:
            change = self._verdict(self._clock(), failed, slow)
        if change is not None:
            self._announce(change)
        if failed:
            if timed_out and "timeout" in self._handlers:
                self._emit("timeout", duration)
            if "failure" in self._handlers:
                self._emit("failure", duration, cause)
        elif self._on_success:
            self._emit("success", duration)

    def _force(self, trigger: str) -> None:
        with self._lock:
            # RESET_ELAPSED is re-checked under the lock: another thread may have done it.
            if trigger is RESET_ELAPSED and not (
                self._state is OPEN and self._clock() >= self._half_open_at
            ):
                return
            change = self._fire(trigger)
        if change is not None:
            self._announce(change)

    def _rejected(self, now: float) -> CircuitOpenError:
        """Count a rejection made outside ``allow()``; the error to raise or hand over."""
        lock = self._lock
        lock.acquire()
        self._rejects += 1
        lock.release()
        if "reject" in self._handlers:
            self._emit("reject")
        return CircuitOpenError(self.name, self._half_open_at - now)

    def _reject_error(self) -> CircuitOpenError:
        """The error for a call ``allow()`` just refused."""
        return CircuitOpenError(self.name, self.retry_after())
