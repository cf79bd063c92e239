"""The I/O-free core of one call: every decision a request's pipeline makes, in one place.

Theory of operation
-------------------
A driver (sync or async; it owns the sockets, the sleeping and the waiting) creates a
:class:`Call` per request and performs what it asks for (h11's rule: everything that
decides lives here, the driver only acts; tenacity's ``iter()`` split)::

    call = Call(runtime, request)          # checks the extensions; takes nothing
    action = call.next()
    try:
        while True:
            match action:
                case Attempt():            # send it, then report the outcome
                    action = call.responded(attempt, response)  # or call.failed(attempt, exc)
                case Sleep():   sleep;                     action = call.next()
                case Resolve(): DNS;                       action = call.resolved(...)
                case AwaitResolution() | AwaitSlot(): wait; action = call.next()
                case Fallback(): return action.run()
                case httpx.Response(): return action
                case BaseException(): raise action
    except BaseException as exc:
        call.cancel(exc)                   # an end without a verdict (cancelled, a bug)
        raise
    finally:
        call.close()                       # slots back, the caller's timeouts back

(:mod:`svcclient._pipeline.actions` lists the actions.) ``next()`` walks the call's
stages once each: adaptive throttling, DNS (a refresh when the TTL ran out, or a wait for
another caller's first lookup), the concurrency limit, the bulkhead, then attempts. Each
attempt is admitted (deadline, breaker), routed (balancer) and timed (per-attempt
timeout capped by the deadline); its outcome feeds the balancer, the overload policies
and the observers, and decides between the response, a backoff (:class:`Sleep`), a
requeue (``Sleep(0)``: a connection that never opened goes elsewhere without using an
attempt) and the call's end (the fallback, or the error).

A success closes the call's books as it is reported (``responded``), so its response
goes back to the driver at once.

One clock: the deadline, attempt and call durations (metrics, the breaker's slow-call
rule) all read ``runtime.clock``, so one fake clock drives every time-based rule.

The breaker judges *calls*, not attempts: a call is admitted once and its final outcome
is recorded once. A refused connection that a retry turns into a success on another pod
is the outlier detector's business (it ejects that pod), not evidence that the service
is down; counting it would let one dead pod out of three open the breaker for all.
While a call retries, an open breaker (opened by other calls) stops further attempts.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Union

import httpx

from .._classify import classify_error, while_connecting
from .._endpoint import Endpoint
from .._exceptions import (
    AttemptRecord,
    BulkheadFullError,
    CircuitOpenError,
    ConcurrencyLimitError,
    DeadlineExceeded,
    ThrottledError,
)
from .._observability.hooks import (
    AttemptFields,
    AttemptInfo,
    CallEvents,
    CallFields,
    CallInfo,
    ObservedExchange,
    call_ended,
    fire,
    hook_failed,
)
from .._policies.breaker.machine import OPEN
from .._policies.deadline import Deadline
from .._policies.retry import decide_retry
from . import extensions as _ext
from . import testmode as _testmode
from .actions import AwaitResolution, AwaitSlot, Fallback, Resolve, Sleep
from .attempt import Attempt

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._discovery.dns import Resolution
    from .._observability.hooks import AttemptContext
    from .._policies.bulkhead import AsyncBulkhead, Bulkhead
    from .._policies.hedge import HedgePolicy
    from .hedging import Race
    from .service_state import ServiceRuntime

Action = Union[
    "Attempt",
    "Race",
    Sleep,
    Resolve,
    AwaitResolution,
    AwaitSlot,
    Fallback,
    httpx.Response,
    BaseException,
]
"""What :meth:`Call.next` and the reporting methods hand the driver (see .actions)."""

__all__ = ["Action", "Attempt", "Call", "Passthrough", "retargeted"]

log = logging.getLogger("svcclient")

_wall = time.time
# The extension names as module globals: one load each on the hot path, not two.
_RETRY = _ext.RETRY
_DEADLINE = _ext.DEADLINE
_ROUTE = _ext.ROUTE
_AFFINITY_KEY = _ext.AFFINITY_KEY
_TIMEOUT = _ext.TIMEOUT
_BUFFER = _ext.BUFFER
_TIMEOUT_ERRORS = ("read_timeout", "connect_timeout")

# A call's stages, in order (Call.stage); next() walks each once.
_NEW = 0  # adaptive throttling's verdict is next
_RESOLVING = 1  # DNS: a refresh due, or another caller's first lookup to wait for
_REFRESHING = 2  # the driver is resolving for this call (it holds the refresh turn)
_ADMITTING = 3  # the concurrency limit and the bulkhead
_QUEUED = 4  # the driver waits for a bulkhead slot
_SENDING = 5  # attempts
_ENDED = 6  # the call has its answer (or its error)


class Call:
    """The decisions for one logical request (see the module docstring).

    The observers never see it: they get ``info``, the call's :class:`CallInfo` (an
    immutable value, built when the call opens if there are observers). ``observed``
    says whether the observers have the call open (from :meth:`_open` until its end is
    dispatched, once); ``emit`` is then the call's events (:class:`CallEvents`).
    """

    __slots__ = (
        "_deadline",
        "admitted",
        "affinity",
        "at",
        "begun",
        "buffer",
        "caller_timeouts",
        "clock",
        "emit",
        "ended",
        "explicit_route",
        "history",
        "info",
        "last_endpoint",
        "limited",
        "number",
        "observed",
        "opt_in",
        "pending",
        "race_policy",
        "replayable",
        "request",
        "requeues",
        "rt",
        "same_clock",
        "slot",
        "stage",
        "started",
        "status_failed",
        "timeout",
    )

    emit: CallEvents
    info: CallInfo

    def __init__(self, rt: ServiceRuntime, request: httpx.Request, *, races: bool = False) -> None:
        """``races``: the driver can run a hedging :class:`~.hedging.Race` (the async one)."""
        ext = request.extensions
        # First, before anything is taken: a bad value raises here and leaks nothing.
        # Nearly every request sets none of the four: four ``in`` tests (no method call
        # each, as ext.get would be), no call to read().
        if (
            _RETRY not in ext
            and _DEADLINE not in ext
            and _ROUTE not in ext
            and _AFFINITY_KEY not in ext
        ):
            opt_in = incoming = route = affinity = None
        else:
            opt_in, incoming, route, affinity = _ext.read(ext)
        self.rt = rt
        self.request = request
        clock = self.clock = rt.clock
        # When the request arrived: DNS and the bulkhead wait count against the deadline.
        self.started = now = clock()
        # The service's deadline as two numbers: its Deadline object is made only if
        # something asks for it (see the ``deadline`` property), which nearly no call does.
        timeout = rt.deadline
        if incoming is None:
            self.same_clock = True
            self.timeout = timeout
            self.at = now + timeout
            self._deadline: Deadline | None = None
        else:
            # False when the caller passed a Deadline object (on a clock of its own): then
            # the time left is the deadline's to say, not ``at`` minus our clock's reading.
            self.same_clock = not isinstance(incoming, Deadline)
            own = Deadline.started(timeout, clock, now)
            deadline = self._deadline = _tighter(own, incoming, clock)
            self.timeout = deadline.timeout
            self.at = deadline.at
        self.ended: float | None = None  # the clock when the last attempt ended
        self.status_failed = False  # the last response's status counts as a failure
        self.number = 0
        self.requeues = 0  # connect failures sent elsewhere without using an attempt
        self.admitted = False
        self.last_endpoint: Endpoint | None = None
        self.history: list[AttemptRecord] | None = None
        # Attempts in flight, as a tuple: nearly always one, and a 1-tuple (the interpreter
        # keeps a free list of them) is cheaper to make and drop than a list and its
        # storage. Only this call's driver (one thread, or one event loop) changes it.
        self.pending: tuple[Attempt, ...] = ()
        if affinity is None:
            if rt.affinity_from_headers:
                affinity = rt.config.balancing.affinity_key(request.headers)
        elif isinstance(affinity, bytes):
            affinity = affinity.decode("latin-1")  # lossless: equal bytes, equal pod
        self.affinity = affinity
        self.opt_in = opt_in
        self.explicit_route = route  # the caller's route template, if any
        self.caller_timeouts: dict[str, float | None] | None = ext.get(_TIMEOUT)
        self.buffer = _BUFFER in ext and ext[_BUFFER] is True
        # Judged before the first send: only an in-memory body can be sent again.
        self.replayable = isinstance(request.stream, httpx.ByteStream)
        self.observed = False
        self.begun = False  # the first begin_attempt() starts the call
        # Past throttling and DNS when the service has neither (decided once, per runtime).
        self.stage = _ADMITTING if rt.admits_at_once else _NEW
        self.slot: Bulkhead | AsyncBulkhead | None = None  # the bulkhead slot held
        self.limited = False  # holds a concurrency-limiter slot
        self.race_policy: HedgePolicy | None = rt.config.hedge if races else None

    @property
    def deadline(self) -> Deadline:
        """The call's deadline (the service's, or an earlier one the caller passed)."""
        deadline = self._deadline
        if deadline is None:
            deadline = self._deadline = Deadline.started(self.timeout, self.clock, self.started)
        return deadline

    # -- what the driver asks and reports -------------------------------------------

    def next(self) -> Action:
        """The driver's next action (see the module docstring): what the call's stages
        before its first attempt ask for, then the next attempt, or the call's end."""
        if self.stage != _SENDING:
            waiting = self._admit()
            if waiting is not None:
                return waiting
        try:
            attempt = self.begin_attempt()
        except httpx.TransportError as exc:
            return self._failure(exc)
        if self.race_policy is not None:
            from .hedging import Race

            return Race(self, self.race_policy, attempt)
        return attempt

    def resolved(self, resolution: Resolution | None, error: Exception | None = None) -> Action:
        """Report the lookup a :class:`Resolve` asked for: its answer, or its error."""
        rt = self.rt
        self.stage = _ADMITTING
        if resolution is not None:
            rt.refreshed(resolution)
        else:
            assert error is not None
            rt.refresh_failed(error)
        return self.next()

    def refused(self, error: BulkheadFullError) -> Action:
        """Report that the bulkhead turned the call away while it waited for a slot."""
        self.stage = _ENDED
        fire(self.rt.emit.on_bulkhead_rejected, self.rt.name)
        error.request = self.request
        return self._refusal(error)

    def responded(self, attempt: Attempt, response: httpx.Response) -> Action | None:
        """Report an attempt's response, booked on the balancer, the overload policies and
        the observers: the call's answer (a success closes the call's books here: the
        breaker's verdict, the observers' end), a backoff before the next attempt, or the
        fallback's to answer. None: a failure while other attempts of the call still race
        (a hedge), booked only; the race goes on."""
        rt = self.rt
        pending = self.pending
        if len(pending) == 1 and pending[0] is attempt:  # nearly always: one in flight
            self.pending = ()
        else:
            self._close(attempt)
        now = self.ended = self.clock()  # a final failure's end reuses it
        duration = now - attempt.started
        status = response.status_code
        failed = self.status_failed = status in rt.failure_codes
        rt.balancer.on_end(attempt.endpoint, duration, status >= 500, now)
        if rt.throttle is not None:
            rt.throttle.record_status(status)
        if rt.limiter is not None:
            rt.limiter.record_status(duration, status)
        if attempt.call is not None:
            self._attempt_end(attempt, status, None, duration)
        if not failed:
            if rt.latencies is not None:
                rt.latencies.add(duration)
            if self.admitted:
                self._settle(False, now, status)
            if self.observed:
                self._end(now, status, None, True)
            return response
        self._remember(attempt.endpoint, str(status), duration)
        if self.pending:
            return None
        if status in rt.retry.retry_statuses:
            delay = self._retry_delay(status, None, response.headers)
            if delay is not None:
                return Sleep(delay, response)
        return self._final_response(response)

    def failed(self, attempt: Attempt, error: Exception) -> Action | None:
        """Report an attempt's transport error: a requeue, a backoff, or the call's end.
        None: other attempts of the call still race (a hedge); booked only."""
        error_type = self._record_error(attempt, error)
        if self.pending:
            return None
        if self._requeue(error, error_type):
            return Sleep(0.0)
        delay = self._retry_delay(None, error_type, None)
        if delay is not None:
            return Sleep(delay)
        if self.deadline.remaining() <= 0 and error_type in _TIMEOUT_ERRORS:
            return self._failure(self.deadline_error(error))
        return self._failure(error)

    def raced(self, attempt: Attempt, result: httpx.Response | Exception) -> Action | None:
        """Report a hedging race's outcome (its winner, or its last racer's error)."""
        if isinstance(result, httpx.Response):
            return self.responded(attempt, result)
        if isinstance(result, httpx.TransportError):
            return self.failed(attempt, result)
        self.abandon(attempt)  # an error that is not the transport's: no verdict
        return result

    def close(self) -> None:
        """Give back what the call holds (its bulkhead and limiter slots) and put the
        caller's ``timeout`` extension back (attempts overwrite it), so a redirect or a
        reused request starts from the caller's own timeouts. Called once, on every exit."""
        ext = self.request.extensions
        if self.caller_timeouts is None:
            ext.pop(_TIMEOUT, None)
        else:
            ext[_TIMEOUT] = self.caller_timeouts
        slot = self.slot
        if slot is not None:
            self.slot = None
            slot.release()
        if self.limited:
            self.limited = False
            limiter = self.rt.limiter
            assert limiter is not None
            limiter.release()

    # -- admission and attempts ------------------------------------------------------

    def _admit(self) -> Action | None:
        """The stages before the first attempt, from where the call is: an action to
        perform first, or None when the call may send (its stage is then _SENDING)."""
        rt = self.rt
        stage = self.stage
        if stage == _QUEUED:  # the driver waited for a bulkhead slot and got it
            self.slot = rt.bulkhead
            self.stage = _SENDING
            return None
        if stage != _ADMITTING:
            waiting = self._before_admission(stage)
            if waiting is not None:
                return waiting
        limiter = rt.limiter
        if limiter is not None:
            if not limiter.try_acquire():
                fire(rt.emit.on_bulkhead_rejected, rt.name)
                error = ConcurrencyLimitError(rt.name, limiter.limit, request=self.request)
                return self._refusal(error)
            self.limited = True
        bulkhead = rt.bulkhead
        if bulkhead is not None:
            if not bulkhead.try_acquire():
                self.stage = _QUEUED
                return AwaitSlot(bulkhead, self.deadline.remaining())
            self.slot = bulkhead
        self.stage = _SENDING
        return None

    def _before_admission(self, stage: int) -> Action | None:
        """Adaptive throttling's verdict, then DNS (a refresh due, or another caller's
        first lookup to wait for): an action, or None to go on to admission. Only for a
        service that has either (the call starts past them otherwise: ``rt.admits_at_once``)."""
        rt = self.rt
        if stage == _NEW:
            throttle = rt.throttle
            if throttle is not None and (p := throttle.admit()):
                fire(rt.emit.on_throttled, rt.name)
                return self._refusal(ThrottledError(rt.name, p, request=self.request))
            stage = _RESOLVING
        if stage != _RESOLVING:
            raise RuntimeError(f"{rt.name}: a call in stage {stage} cannot go on")
        self.stage = _ADMITTING
        if rt.endpoint_set is not None:
            if rt.refresh_due():
                self.stage = _REFRESHING
                return Resolve(rt.origin.host, rt.origin.port, self.deadline.remaining())
            if not rt.first_resolution.is_set():
                wait = min(rt.config.dns_timeout, self.deadline.remaining())
                return AwaitResolution(rt.first_resolution, wait)
        return None

    def begin_attempt(self) -> Attempt:
        """Admit, route and time the next attempt; raise when the call cannot go on.

        The first one also opens the call (it is past admission by then): the retry
        budget counts it, the observers hear of it.
        """
        rt = self.rt
        if not self.begun:
            self._open()
        # One clock reading for the deadline check and the attempt's start.
        now = self.clock()
        remaining = self.at - now if self.same_clock else self.deadline.remaining()
        if remaining <= 0:
            raise self._deadline_error()
        # The breaker admits the call once; an open breaker stops its retries.
        breaker = rt.breaker
        if breaker is not None:
            if not self.admitted and self.number == 0:
                if not breaker.allow():
                    raise self._breaker_rejected()
                self.admitted = True
            elif breaker.state is OPEN:  # opened by other calls while this one backed off
                raise self._breaker_rejected()
        try:
            endpoint = rt.balancer.start(self.affinity, self.last_endpoint)  # counted there
        except LookupError:
            raise rt.no_endpoint_error(self.request) from None
        self.last_endpoint = endpoint
        request = self.request
        own = rt.attempt_timeout
        if own <= remaining and self.caller_timeouts is None:
            request.extensions[_TIMEOUT] = rt.attempt_timeouts  # shared, read-only
            cap = own
        else:
            cap = own if own < remaining else remaining
            request.extensions[_TIMEOUT] = self._attempt_timeouts(own, cap)
        if rt.deadline_header:
            request.headers[rt.deadline_header] = self.deadline.to_header()
        # An Attempt's fields are set here, one by one: an __init__ would cost a Python
        # frame per attempt (see tests/test_call_count.py).
        attempt = Attempt()
        attempt.endpoint = endpoint
        attempt.number = self.number
        attempt.started = now
        attempt.at = now + cap
        attempt.clock = self.clock
        attempt.enter = None
        attempt.state = None
        self.pending += (attempt,)  # before any observer runs: cancel() must see it
        if self.observed:
            attempt.call = info = self.info
            dispatch = self.emit.attempt_start
            if dispatch is not None:
                self._attempt_start(attempt, info, dispatch)
        else:
            attempt.call = None  # no observer ever hears of this attempt
        return attempt

    def _attempt_start(
        self,
        attempt: Attempt,
        call: CallInfo,
        dispatch: Callable[[AttemptInfo], AttemptContext | None],
    ) -> None:
        """The observers hear of an attempt about to be sent; what they return is its
        context (:func:`~svcclient._observability.hooks.enter_attempt`)."""
        state: dict[str, Any] = {}
        attempt.state = state
        info = AttemptInfo(
            call, attempt.number, attempt.endpoint, self.request, attempt.started, state=state
        )
        try:
            attempt.enter = dispatch(info)
        except Exception:
            hook_failed(dispatch)

    def _open(self) -> None:
        """The call's start: the budgets count its arrival, the observers open it."""
        self.begun = True
        rt = self.rt
        # The budgets run on the call's clock (ServiceRuntime builds them so): the call's
        # arrival reading saves them a read each.
        if rt.budget is not None:
            rt.budget.record_request(self.started)
        if rt.hedge_budget is not None:
            rt.hedge_budget.record_request(self.started)
        if not rt.hooks:
            return
        request = self.request
        route = self.explicit_route
        if route is None:
            # The route label by the raw path (httpx's private parse result, pinned in
            # tests/test_httpx_private.py): a hit costs no percent-decoding.
            url = request.url
            raw = url._uri_reference.path
            route = rt.routes.by_raw_path.get(raw)
            if route is None:
                route = rt.routes.route_raw(raw, url.path)
        else:
            route = rt.routes.route(request.url.path, route)
        table = rt.emit
        # The call's CallInfo, filled in and then made one (see hooks.CallFields).
        info: CallInfo = CallFields()  # type: ignore[assignment]
        info.service = rt.name
        info.method = request.method
        info.route = route
        info.request = request
        info.started = self.started
        info.attempts = 0
        info.status_code = None
        info.error_type = None
        info.duration = 0.0
        info.state = {}
        info.trace_context = table.trace_context() or None
        info.__class__ = CallInfo
        self.info = info
        self.observed = True
        # The events of the observers that have work for this call (HookTable.select,
        # without its Python frame): asked once, here.
        gate = table.gate
        if gate is None:
            events = table.events
        else:
            try:
                events = table.variants[gate(info)]
            except Exception:
                hook_failed(gate)
                events = table.events
        self.emit = events
        tally = events.in_flight
        if tally is not None:  # an observer's in-flight count (Hooks.calls_in_flight)
            tally.append(None)
        dispatch = events.request_start
        if dispatch is not None:
            try:
                dispatch(info)
            except Exception:
                hook_failed(dispatch)

    def _breaker_rejected(self) -> CircuitOpenError:
        rt = self.rt
        assert rt.breaker is not None
        fire(rt.emit.on_breaker_reject, rt.name)
        return CircuitOpenError(rt.name, rt.breaker.retry_after(), request=self.request)

    def _attempt_timeouts(self, own: float, cap: float) -> dict[str, float]:
        """httpx's per-phase timeouts for this attempt: ours (``own``) or the deadline's
        nearer ``cap``, each phase lowered to the caller's own where that is smaller."""
        rt = self.rt
        caller = self.caller_timeouts
        if cap != own:  # the deadline is nearer than a whole attempt timeout
            if caller is None or caller == rt.attempt_timeouts:
                return dict.fromkeys(_ext.TIMEOUT_KEYS, cap)
            return _phase_timeouts(caller, cap)
        assert caller is not None  # else begin_attempt took rt.attempt_timeouts itself
        # The caller's httpx timeouts (a fresh dict per request, mostly the same values)
        # capped at ours: the runtime remembers the last pair, as one tuple so that
        # threads replacing it never mix two pairs.
        memo = rt.phase_timeouts
        if caller == memo[0]:
            return memo[1]
        timeouts = _phase_timeouts(caller, own)
        rt.phase_timeouts = (dict(caller), timeouts)
        return timeouts

    def _record_error(self, attempt: Attempt, exc: Exception) -> str:
        """Book a transport error on the balancer, breaker and observers; no retry decision."""
        rt = self.rt
        self._close(attempt)
        now = self.clock()
        duration = now - attempt.started
        error_type = classify_error(exc)
        rt.balancer.on_end(attempt.endpoint, duration, True, now)
        if rt.throttle is not None:
            rt.throttle.record(False)
        if rt.limiter is not None:
            rt.limiter.record_error(duration, error_type)
        if attempt.call is not None:
            self._attempt_end(attempt, None, error_type, duration)
        self._remember(attempt.endpoint, error_type, duration)
        return error_type

    def abandon(self, attempt: Attempt) -> None:
        """An attempt ended without an outcome (cancelled, lost a hedge race, odd error)."""
        if not self._close(attempt):
            return
        duration = self.clock() - attempt.started
        # Neither success nor failure: a hedge loser must not reset a dead pod's streak.
        self.rt.balancer.on_abandon(attempt.endpoint, duration)
        if attempt.call is not None:
            self._attempt_end(attempt, None, None, duration)

    def cancel(self, exc: BaseException | None = None) -> None:
        """The call ended without a verdict (cancelled, interrupted, a bug): give the
        breaker admission back and end whatever the observers still have open."""
        if self.stage == _REFRESHING:  # the lookup was interrupted: give its turn back
            self.stage = _ENDED
            assert self.rt.endpoint_set is not None
            self.rt.endpoint_set.abort_refresh()
        while self.pending:
            self.abandon(self.pending[-1])
        if self.admitted:
            self.admitted = False
            if self.rt.breaker is not None:
                self.rt.breaker.release()
        if self.observed:
            self._end(error_type="unknown" if exc is None else classify_error(exc))

    def may_hedge(self, limit: int) -> bool:
        """May a speculative extra attempt start now? (idempotent, under ``limit``
        attempts for the call, and the retry budget allows it)."""
        rt = self.rt
        request = self.request
        if self.number + 1 >= limit:
            return False
        keyed = rt.retry.idempotency_header in request.headers
        if not rt.retry.may_resend(request.method, keyed, self.opt_in, self.replayable):
            return False
        # Hedges draw on their own budget (same policy), so they cannot starve retries.
        budget = rt.hedge_budget
        if budget is not None and not budget.try_withdraw():
            fire(rt.emit.on_retry_budget_exhausted, rt.name)
            return False
        self.number += 1
        fire(rt.emit.on_hedge, rt.name)
        return True

    def _final_response(self, response: httpx.Response) -> Action:
        """The call ends with a failure status (5xx, 429) no retry follows: its books
        closed, the response is the answer, or the fallback's to replace."""
        self.stage = _ENDED
        rt = self.rt
        if (
            self.admitted
            and rt.throttle is not None
            and response.status_code in rt.throttle.overload_statuses
        ):
            # With throttling on, "overloaded" is the throttle's to judge, in proportion; a
            # breaker counting it too would open on the throttle's own surplus (K = 2 sends
            # twice what the backend accepts, so half the calls sent are refused). The
            # breaker gets its admission back without a verdict.
            self.admitted = False
            if rt.breaker is not None:
                rt.breaker.release()
        if self.status_failed and rt.config.fallback is not None:
            cause = httpx.HTTPStatusError(
                f"{rt.name} answered {response.status_code}",
                request=self.request,
                response=response,
            )
            return self._failure(cause)
        # The response's attempt just ended: its clock reading is the call's end too.
        now = self.ended
        assert now is not None
        if self.admitted:
            self._settle(self.status_failed, now)
        if self.observed:
            self._end(now, response.status_code)
        return response

    def _failure(self, error: BaseException) -> Action:
        """The call ends with ``error``: its books closed, the fallback answers, or the
        driver raises it."""
        self.stage = _ENDED
        if self.admitted:
            self._settle(True)
        if self.observed:
            if isinstance(error, httpx.HTTPStatusError):
                self._end(status_code=error.response.status_code)
            else:
                self._end(error_type=classify_error(error))
        return self._refusal(error)

    def _refusal(self, error: BaseException) -> Action:
        """The fallback's turn to answer for ``error``, or the error itself, to raise."""
        self.stage = _ENDED
        fallback = self.rt.config.fallback
        if fallback is None:
            return error
        return Fallback(fallback, self.request, error)

    def deadline_error(self, cause: BaseException | None = None) -> DeadlineExceeded:
        """The error for a call whose deadline ran out (while reading a body, say)."""
        error = self._deadline_error()
        error.__cause__ = cause
        return error

    # -- internals ------------------------------------------------------------------

    def _close(self, attempt: Attempt) -> bool:
        pending = self.pending
        if pending and pending[-1] is attempt:
            self.pending = pending[:-1]
            return True
        if attempt not in pending:
            return False
        i = pending.index(attempt)
        self.pending = pending[:i] + pending[i + 1 :]
        return True

    def _settle(self, failed: bool, now: float | None = None, status: int | None = None) -> None:
        """The breaker's verdict on the call (its one admission given back)."""
        breaker = self.rt.breaker
        self.admitted = False
        if breaker is None:
            return
        throttle = self.rt.throttle
        if throttle is not None and status in throttle.overload_statuses:
            # An overload status the failure codes let pass: the throttle's to judge (see
            # _final_response); the breaker gets its admission back without a verdict.
            breaker.release()
            return
        if now is None:
            now = self.clock()
        duration = now - self.started
        if failed:
            breaker.record_failure(duration)
        else:
            # The breaker's window takes our reading when it reads the same clock.
            breaker.record_success(duration, now if breaker.clock is self.clock else None)

    def _remember(self, endpoint: Endpoint, outcome: str, duration: float) -> None:
        if self.history is None:
            self.history = []
        self.history.append(AttemptRecord(endpoint.key, outcome, duration))

    def _requeue(self, exc: Exception, error_type: str) -> bool:
        """A connect failure (nothing sent) goes elsewhere without using an attempt
        (the retry policy's requeue rule), if the retry budget has a token."""
        rt = self.rt
        if not rt.retry.may_requeue(
            error_type,
            connecting=while_connecting(exc),
            requeues=self.requeues,
            endpoints=len(rt.balancer.endpoints),
            remaining=self.deadline.remaining(),
            opt_in=self.opt_in,
        ) or not _testmode.allow_retry(self.number + 1):
            return False
        if rt.budget is not None and not rt.budget.try_withdraw():
            fire(rt.emit.on_retry_budget_exhausted, rt.name)
            return False
        self.requeues += 1
        log.debug("%s: requeued after %s (nothing was sent)", rt.name, error_type)
        return True

    def _retry_delay(
        self, status: int | None, error_type: str | None, headers: httpx.Headers | None
    ) -> float | None:
        rt = self.rt
        request = self.request
        if not _testmode.allow_retry(self.number + 1):
            return None
        decision = decide_retry(
            rt.retry,
            method=request.method,
            has_idempotency_key=rt.retry.idempotency_header in request.headers,
            opt_in=self.opt_in,
            replayable=self.replayable,
            retry_number=self.number + 1,
            status=status,
            error_type=error_type,
            response_headers=headers,
            remaining=self.deadline.remaining(),
            now_wall=_wall(),
        )
        if not decision.retry:
            log.debug("%s: not retrying: %s", rt.name, decision.reason)
            return None
        if rt.throttle is not None and rt.throttle.admit():
            log.debug("%s: not retrying: throttled", rt.name)
            return None
        if rt.budget is not None and not rt.budget.try_withdraw():
            fire(rt.emit.on_retry_budget_exhausted, rt.name)
            return None
        self.number += 1
        if self.observed:
            self._retrying(decision.delay, decision.reason)
        return decision.delay

    def _deadline_error(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            self.rt.name, self.timeout, self.history or (), request=self.request
        )

    def _end(
        self,
        now: float | None = None,
        status_code: int | None = None,
        error_type: str | None = None,
        succeeded: bool = False,
    ) -> None:
        """The observers' end of the call, once, whichever way it leaves."""
        self.observed = False
        events = self.emit
        if succeeded:
            tally = events.in_flight
            if tally is not None:  # an observer's in-flight count (Hooks.calls_in_flight)
                try:  # noqa: SIM105
                    tally.pop()
                except IndexError:  # emptied meanwhile (a fork): never below zero
                    pass
            dispatch = events.request_succeeded
        else:
            dispatch = events.request_end
        if dispatch is not None:
            duration = (self.clock() if now is None else now) - self.started
            info = call_ended(self.info, self.number + 1, status_code, error_type, duration)
            try:
                dispatch(info)
            except Exception:
                hook_failed(dispatch)

    def _attempt_end(
        self, attempt: Attempt, status_code: int | None, error_type: str | None, duration: float
    ) -> None:
        """The observers hear how an attempt ended."""
        dispatch = self.emit.attempt_end
        if dispatch is not None:
            state = attempt.state
            # The attempt's AttemptInfo, filled in and then made one (as CallInfo in _open).
            info: AttemptInfo = AttemptFields()  # type: ignore[assignment]
            info.call = attempt.call  # type: ignore[assignment]
            info.number = attempt.number
            info.endpoint = attempt.endpoint
            info.request = self.request
            info.started = attempt.started
            info.status_code = status_code
            info.error_type = error_type
            info.duration = duration
            info.state = {} if state is None else state
            info.__class__ = AttemptInfo
            try:
                dispatch(info)
            except Exception:
                hook_failed(dispatch)

    def _retrying(self, delay: float, reason: str) -> None:
        """The observers hear that the call will be retried after ``delay`` seconds."""
        listeners = self.emit.retry
        if listeners:
            fire(listeners, call_ended(self.info, self.number, None, None, 0.0), delay, reason)


class Passthrough:
    """A request for another origin (a redirect elsewhere, an absolute URL): it goes to
    its own host unchanged, with no retry, breaker or balancing, and is still observed
    (metrics and spans carry that host as the service). ``enter`` is the observers'
    attempt context, for the driver's ``enter_attempt``."""

    __slots__ = ("enter", "observed")

    def __init__(self, rt: ServiceRuntime, request: httpx.Request) -> None:
        _, _, route, _ = _ext.read(request.extensions)
        self.observed: ObservedExchange | None = None
        self.enter: AttemptContext | None = None
        if rt.hooks:
            route = rt.routes.route(request.url.path, route)
            table = rt.emit.foreign()
            observed = ObservedExchange(table, request.url.host, route, request, rt.clock)
            self.observed = observed
            self.enter = observed.enter

    def done(self, response: httpx.Response | None, exc: BaseException | None = None) -> None:
        """The answer (or the error) is in: end the observers' events."""
        observed = self.observed
        if observed is None:
            return
        self.observed = None
        status = None if response is None else response.status_code
        observed.done(status, None if exc is None else classify_error(exc))


def _phase_timeouts(caller: dict[str, float | None], cap: float) -> dict[str, float]:
    """Per phase, the caller's httpx timeout or ``cap`` (ours), whichever is smaller."""
    out: dict[str, float] = {}
    for key in _ext.TIMEOUT_KEYS:
        value = caller.get(key)
        out[key] = cap if value is None or value > cap else value
    return out


def retargeted(request: httpx.Request, endpoint: Endpoint, origin: Endpoint) -> httpx.Request:
    """``request`` pointed at ``endpoint``, for a caller-supplied transport.

    Used only when svcclient does not own the connection pools (then it pins pools to
    endpoints instead, which is cheaper). The caller's request is never changed: a copy
    goes out (same headers, body and extensions), so ``response.request.url`` and the
    cookies the client stores keep the service's name. The ``Host`` header was fixed
    when the request was built and stays; for https the original name goes to TLS as
    ``sni_hostname``.
    """
    url = request.url
    if url.host == endpoint.host and (url.port or origin.port) == endpoint.port:
        return request
    extensions = dict(request.extensions)
    if url.scheme == "https":
        extensions[_ext.SNI_HOSTNAME] = origin.host
    return httpx.Request(
        request.method,
        url.copy_with(host=endpoint.host, port=endpoint.port),
        headers=request.headers,
        stream=request.stream,
        extensions=extensions,
    )


def _tighter(
    deadline: Deadline, incoming: float | Deadline, clock: Callable[[], float]
) -> Deadline:
    """An incoming deadline (a Deadline, or seconds left) can only shorten ours."""
    if not isinstance(incoming, Deadline):
        incoming = Deadline(float(incoming), clock=clock)
    return deadline.earlier(incoming)
