"""The I/O-free core of one call: deadline, retry, breaker, endpoint choice, observers.

Theory of operation
-------------------
A transport (sync or async) creates a :class:`Call` per request and drives it::

    call = Call(runtime, request)
    while True:
        attempt = call.begin_attempt()          # deadline, breaker admission, balancer pick
        try:    response = send(attempt.endpoint)  # the transport's only job: I/O
        except httpx.TransportError as exc:
                delay = call.attempt_failed(attempt, exc)  # raises when the call is over
        else:   delay = call.attempt_done(attempt, response)
                if delay is None: return call.finish(response)
        sleep(delay)

The call decides; the driver performs (tenacity's ``iter()`` split, h11's no-I/O style).

The breaker judges *calls*, not attempts: a call is admitted once and its final outcome
is recorded once. A refused connection that a retry turns into a success on another pod
is the outlier detector's business (it ejects that pod), not evidence that the service
is down; counting it would let one dead pod out of three open the breaker for all.
While a call retries, an open breaker (opened by other calls) stops further attempts.
The happy path is one breaker admission, one balancer pick, one outcome record: no
tenacity loop is entered unless an attempt fails, and then only its wait strategy is used.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import httpx

from .._classify import classify_error
from .._endpoint import Endpoint
from .._exceptions import (
    AttemptRecord,
    CircuitOpenError,
    DeadlineExceeded,
)
from .._observability.hooks import AttemptInfo, CallInfo, fire
from .._policies.deadline import Deadline
from .._policies.retry import decide_retry
from . import testmode as _testmode

if TYPE_CHECKING:
    from .service_state import ServiceRuntime

__all__ = ["STREAM_EXTENSION", "Attempt", "Call", "buffered", "retarget"]

log = logging.getLogger("svcclient")

STREAM_EXTENSION = "svcclient.stream"
_perf = time.perf_counter
_wall = time.time
# httpx wraps generator bodies in these (private) classes; they can be read only once.
_ONE_SHOT_STREAMS = frozenset({"IteratorByteStream", "AsyncIteratorByteStream"})
_TIMEOUT_KEYS = ("connect", "read", "write", "pool")


class Attempt:
    """One attempt in flight: where it went, when it started, whether the breaker let it."""

    __slots__ = ("endpoint", "info", "started")

    def __init__(self, endpoint: Endpoint, info: AttemptInfo | None) -> None:
        self.endpoint = endpoint
        self.info = info
        self.started = _perf()


class Call:
    """The decisions for one logical request (see the module docstring)."""

    __slots__ = (
        "admitted",
        "affinity",
        "deadline",
        "history",
        "info",
        "last_endpoint",
        "number",
        "opt_in",
        "replayable",
        "request",
        "rt",
        "started",
    )

    def __init__(
        self, rt: ServiceRuntime, request: httpx.Request, started: float | None = None
    ) -> None:
        self.rt = rt
        self.request = request
        ext = request.extensions
        incoming = ext.get("deadline")
        # ``started``: when the request arrived (before any bulkhead wait), on rt.clock.
        deadline = Deadline(rt.config.deadline, clock=rt.clock, start=started)
        if incoming is not None:
            deadline = _tighter(deadline, incoming, rt)
        self.deadline = deadline
        self.number = 0
        self.admitted = False
        self.started = _perf()
        self.last_endpoint: Endpoint | None = None
        self.history: list[AttemptRecord] | None = None
        affinity = ext.get("affinity_key")
        if affinity is None and rt.affinity_from_headers:
            affinity = rt.config.balancing.affinity_key(request.headers)
        self.affinity = affinity
        self.opt_in: bool | None = ext.get("retry")
        # Judged before the first send: a transport may buffer a one-shot body it read.
        self.replayable = type(request.stream).__name__ not in _ONE_SHOT_STREAMS
        if rt.budget is not None:
            rt.budget.record_request()
        if rt.hooks:
            route = rt.routes.route(request.url.path, ext.get("route"))
            self.info: CallInfo | None = CallInfo(rt.name, request.method, route, request, _perf())
            fire(rt.emit.on_request_start, self.info)
        else:
            self.info = None

    # -- attempt lifecycle ----------------------------------------------------------

    def begin_attempt(self) -> Attempt:
        """Admit and route the next attempt; raise when the call cannot go on."""
        rt = self.rt
        remaining = self.deadline.remaining()
        if remaining <= 0:
            raise self._deadline_error()
        breaker = rt.breaker
        if breaker is not None:
            if self.number == 0:
                if not breaker.allow():
                    fire(rt.emit.on_breaker_reject, rt.name)
                    raise CircuitOpenError(rt.name, breaker.retry_after(), request=self.request)
                self.admitted = True
            elif breaker.state == "open":
                # Other calls opened it while this one backed off: stop retrying.
                fire(rt.emit.on_breaker_reject, rt.name)
                raise CircuitOpenError(rt.name, breaker.retry_after(), request=self.request)
        try:
            endpoint = rt.balancer.pick(self.affinity, self.last_endpoint)
        except LookupError:
            raise rt.no_endpoint_error(self.request) from None
        rt.balancer.on_start(endpoint)
        self.last_endpoint = endpoint
        request = self.request
        if rt.config.timeout < remaining:
            request.extensions["timeout"] = rt.attempt_timeouts  # shared, never mutated
        else:
            request.extensions["timeout"] = dict.fromkeys(_TIMEOUT_KEYS, remaining)
        header = rt.config.deadline_header
        if header:
            request.headers[header] = self.deadline.to_header()
        info = None
        if self.info is not None:
            info = AttemptInfo(self.info, self.number, endpoint, request, _perf())
            fire(rt.emit.on_attempt_start, info)
        return Attempt(endpoint, info)

    def attempt_timeout(self) -> float:
        """The timeout of the latest attempt (the async driver enforces it in total)."""
        return float(self.request.extensions["timeout"]["read"])

    def attempt_done(self, attempt: Attempt, response: httpx.Response) -> float | None:
        """Record a response; return a backoff delay to retry, or None when it is final."""
        if not self.record_response(attempt, response):
            return None
        status = response.status_code
        if status not in self.rt.retry.retry_statuses:
            return None
        return self._retry_delay(status, None, response.headers)

    def record_response(self, attempt: Attempt, response: httpx.Response) -> bool:
        """Book a response on the balancer and observers; True when it is a failure."""
        rt = self.rt
        duration = _perf() - attempt.started
        status = response.status_code
        failed = rt.failure_status(status)
        rt.balancer.on_end(attempt.endpoint, duration, status >= 500)
        info = attempt.info
        if info is not None:
            info.status_code = status
            info.duration = duration
            fire(rt.emit.on_attempt_end, info)
        if rt.latencies is not None and not failed:
            rt.latencies.add(duration)
        if failed:
            self._remember(attempt.endpoint, str(status), duration)
        return failed

    def attempt_failed(self, attempt: Attempt, exc: Exception) -> float:
        """Record a transport error; return a backoff delay or raise the final error."""
        error_type = self.record_error(attempt, exc)
        delay = self._retry_delay(None, error_type, None)
        if delay is None:
            if self.deadline.remaining() <= 0 and error_type in ("read_timeout", "connect_timeout"):
                raise self._deadline_error() from exc
            raise exc
        return delay

    def record_error(self, attempt: Attempt, exc: Exception) -> str:
        """Book a transport error on the balancer, breaker and observers; no retry decision."""
        rt = self.rt
        duration = _perf() - attempt.started
        error_type = classify_error(exc)
        rt.balancer.on_end(attempt.endpoint, duration, True)
        info = attempt.info
        if info is not None:
            info.error_type = error_type
            info.duration = duration
            fire(rt.emit.on_attempt_end, info)
        self._remember(attempt.endpoint, error_type, duration)
        return error_type

    def abandon(self, attempt: Attempt) -> None:
        """An attempt ended without an outcome (cancelled, lost a hedge race, odd error)."""
        self.rt.balancer.on_end(attempt.endpoint, _perf() - attempt.started, False)

    def cancel(self) -> None:
        """The whole call ended without a verdict: give the breaker admission back."""
        if self.admitted and self.rt.breaker is not None:
            self.admitted = False
            self.rt.breaker.release()

    def try_hedge(self, limit: int) -> bool:
        """May a speculative extra attempt start now? (idempotent, under ``limit``
        attempts for the call, and the retry budget allows it)."""
        rt = self.rt
        request = self.request
        if self.number + 1 >= limit:
            return False
        idempotent = (
            request.method in rt.retry.idempotent_methods
            or rt.retry.idempotency_header in request.headers
        )
        if self.opt_in is False or not (idempotent or self.opt_in):
            return False
        if rt.budget is not None and not rt.budget.try_withdraw():
            fire(rt.emit.on_retry_budget_exhausted, rt.name)
            return False
        self.number += 1
        fire(rt.emit.on_hedge, rt.name)
        return True

    def finish(self, response: httpx.Response) -> httpx.Response:
        """Close the call's books with a final response and hand it back.

        A final failure status (5xx, 429) goes to the fallback when one is configured.
        """
        rt = self.rt
        if rt.config.fallback is not None and rt.failure_status(response.status_code):
            cause = httpx.HTTPStatusError(
                f"{rt.name} answered {response.status_code}",
                request=self.request,
                response=response,
            )
            return self.fail(cause)
        if self.admitted:
            self._settle(rt.failure_status(response.status_code))
        info = self.info
        if info is not None:
            info.status_code = response.status_code
            self._end(info)
        return response

    def fail(self, exc: BaseException) -> httpx.Response:
        """Close the call's books with an error: return the fallback or re-raise ``exc``."""
        if self.admitted:
            self._settle(True)
        info = self.info
        if info is not None:
            if isinstance(exc, httpx.HTTPStatusError):
                info.status_code = exc.response.status_code
            else:
                info.error_type = classify_error(exc)
            self._end(info)
        fallback = self.rt.config.fallback
        if fallback is None:
            raise exc
        return fallback(self.request, exc)

    # -- internals ------------------------------------------------------------------

    def _settle(self, failed: bool) -> None:
        breaker = self.rt.breaker
        self.admitted = False
        if breaker is None:
            return
        duration = _perf() - self.started
        if failed:
            breaker.record_failure(duration)
        else:
            breaker.record_success(duration)

    def _remember(self, endpoint: Endpoint, outcome: str, duration: float) -> None:
        if self.history is None:
            self.history = []
        self.history.append(AttemptRecord(endpoint.key, outcome, duration))

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
        if rt.budget is not None and not rt.budget.try_withdraw():
            fire(rt.emit.on_retry_budget_exhausted, rt.name)
            return None
        self.number += 1
        if self.info is not None:
            self.info.attempts = self.number
            fire(rt.emit.on_retry, self.info, decision.delay, decision.reason)
        return decision.delay

    def _deadline_error(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            self.rt.name, self.deadline.timeout, self.history or (), request=self.request
        )

    def _end(self, info: CallInfo) -> None:
        info.attempts = self.number + 1
        info.duration = _perf() - info.started
        fire(self.rt.emit.on_request_end, info)


def retarget(request: httpx.Request, endpoint: Endpoint, origin: Endpoint) -> None:
    """Point ``request`` at ``endpoint`` for a caller-supplied transport.

    Used only when svcclient does not own the connection pools (then it pins pools to
    endpoints instead, which is cheaper). The ``Host`` header was fixed when the request
    was built and stays; for https the original name goes to TLS as ``sni_hostname``.
    """
    url = request.url
    if url.host == endpoint.host and (url.port or origin.port) == endpoint.port:
        return
    if endpoint == origin:
        request.url = url.copy_with(host=origin.host, port=url.port)
        request.extensions.pop("sni_hostname", None)
        return
    if url.scheme == "https":
        request.extensions["sni_hostname"] = origin.host
    request.url = url.copy_with(host=endpoint.host, port=endpoint.port)


def buffered(response: httpx.Response, raw: bytes, request: httpx.Request) -> httpx.Response:
    """A copy of ``response`` whose raw (still encoded) body is already in memory."""
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=httpx.ByteStream(raw),
        extensions=response.extensions,
        request=request,
    )


def _tighter(deadline: Deadline, incoming: Any, rt: ServiceRuntime) -> Deadline:
    """An incoming deadline (a Deadline, or seconds left) can only shorten ours."""
    if not isinstance(incoming, Deadline):
        incoming = Deadline(max(float(incoming), 0.0), clock=rt.clock)
    return deadline.earlier(incoming)
