"""``ResilientTransport``: the whole pipeline behind httpx's transport seam (sync driver).

``httpx.Client(transport=ResilientTransport("user-service"))`` gives any existing client
discovery, retries, the breaker, balancing and metrics. The decisions live in
:mod:`svcclient._pipeline.call`; this module only resolves DNS, sends and sleeps.

What a plain ``httpx.Client`` gets: the response streams as httpx expects (``get()``
reads the body after the transport returned, ``stream()`` reads it as it arrives), so
retries cover everything up to the response headers; a connection reset while the body
is read reaches the caller as httpx's ``ReadError``/``RemoteProtocolError``, not retried.
``ServiceClient`` asks for the whole body (the ``svcclient.buffer`` extension): the body
is then read inside the attempt and a reset mid-body is retried like any other error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import httpx

from .._config.model import ServiceConfig
from .._endpoint import Endpoint
from .._exceptions import BulkheadFullError
from .._observability.hooks import Hooks, enter_attempt, leave_attempt
from .._pipeline import testmode as _testmode
from .._pipeline.call import Attempt, Call, Passthrough
from .._pipeline.extensions import TIMEOUT
from .._policies.bulkhead import Bulkhead
from .base import DriverBase
from .bodies import BoundedBody
from .bound import BOUND
from .forksafe import register as _fork_aware
from .health import HealthChecker
from .memory_body import InMemoryBody

__all__ = ["ResilientTransport"]

_new = object.__new__
_init = Call.__init__


class ResilientTransport(DriverBase[httpx.BaseTransport], httpx.BaseTransport):
    """An httpx transport running every request through the svcclient pipeline.

    ``config`` is a :class:`ServiceConfig` or a service name (then discovered with
    defaults and ``SVCCLIENT_<NAME>_*`` environment overrides). ``transport`` is the
    transport to send through; by default svcclient keeps one connection pool per
    resolved endpoint. ``hooks`` replace the default observers (Prometheus on the
    default registry, OpenTelemetry through the global providers).

    >>> client = httpx.Client(transport=ResilientTransport("user-service"))
    """

    def __init__(
        self,
        config: ServiceConfig | str,
        transport: httpx.BaseTransport | None = None,
        *,
        hooks: Sequence[Hooks] | None = None,
        registry: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        **overrides: Any,
    ) -> None:
        self._setup(
            config, transport, hooks=hooks, registry=registry, clock=clock, overrides=overrides
        )
        self._sleep = _testmode.guard_sleep(sleep)
        # Whether anything reads the bound (BOUND) while an attempt is sent: svcclient's own
        # pools, or a caller's HTTPTransport whose sockets are capped. Any other caller's
        # transport never looks, so setting it (a context-variable set and reset, ~1.6 k
        # instructions) is skipped.
        self._bounded = transport is None
        if isinstance(transport, httpx.HTTPTransport):
            from .pinned import cap_caller_transport  # httpcore: the caller's has it already

            # No timer can stop a sync read: cap the caller's sockets at the bound as ours.
            self._bounded = cap_caller_transport(transport)
        cfg = self.config
        # An adaptive concurrency limit (ServiceRuntime.limiter) replaces the bulkhead.
        static = cfg.bulkhead if cfg.concurrency is None else None
        self._bulkhead = Bulkhead(static, cfg.name) if static is not None else None
        self._foreign: httpx.BaseTransport | None = None
        self._health: HealthChecker | None = None
        # True in a forked child whose parent ran health checks: restarted on first use.
        self._health_due = False
        self._health_lock = threading.Lock()
        if cfg.outlier.enabled and cfg.outlier.health_check_path:
            self._health = HealthChecker(self.runtime, self._probe)
        _fork_aware(self)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through deadline, retry, breaker, balancer and attempt timeout."""
        ref = request.url._uri_reference  # self._for_service(request), inlined
        port = ref.port
        if (
            ref.host != self._origin_host
            or ref.scheme != self._origin_scheme
            or (port is not None and port != self._origin_port)
        ):
            return self._passthrough(request)
        rt = self.runtime
        if rt.throttle is not None and (refused := rt.throttled(request)) is not None:
            return refused  # first: a local rejection does no other work
        # Call(rt, request), as object.__new__ and an __init__ the interpreter runs in its
        # own frame loop: CPython 3.11 makes a class call go through type.__call__ and a
        # fresh C-level frame (about 800 instructions more per request).
        call = _new(Call)
        _init(call, rt, request)  # checks the extensions; nothing is taken yet
        if self._health_due:
            self._restart_health()
        if rt.endpoint_set is not None:
            if rt.refresh_due():
                self._refresh(call)
            elif not rt.first_resolution.is_set():
                rt.first_resolution.wait(min(self.config.dns_timeout, call.deadline.remaining()))
        if rt.retired or self._pools.retiring:  # _retiring()'s test, without its call
            for pool in self._retiring():
                pool.close()
        if rt.limiter is not None:
            refused = rt.admit(request)  # holds a limiter slot when it returns None
            if refused is not None:
                return refused
        bulkhead = self._bulkhead
        if bulkhead is not None:
            # bulkhead.try_acquire(), inlined: nobody queued ahead, and a free token popped
            # (atomic) is the slot; else wait in acquire().
            free = False
            if not bulkhead.waiters:
                try:
                    bulkhead.free.pop()
                    free = True
                except IndexError:
                    pass
            if not free:
                try:
                    bulkhead.acquire(call.deadline.remaining())
                except BulkheadFullError as exc:
                    return rt.bulkhead_rejected(request, exc)
        inner = self._inner
        fixed = self._fixed
        bounded = self._bounded
        try:
            # The attempt loop, here rather than in a method of its own (a Python call
            # fewer per request) and with the send inlined.
            while True:
                try:
                    attempt = call.begin_attempt()
                except httpx.TransportError as exc:
                    return call.fail(exc)
                # self._target(), inlined for its two common cases.
                if fixed is not None:
                    transport: httpx.BaseTransport = fixed
                    outgoing = request
                elif inner is None:
                    transport = self._pools.get(attempt.endpoint)
                    outgoing = request
                else:
                    transport, outgoing = self._target(attempt.endpoint, request)
                # Observers' attempt context (the attempt's span current) around the send.
                undo = enter_attempt(attempt) if attempt.enter is not None else None
                # Every socket operation of this attempt is capped (where any reads it).
                token = BOUND.set(attempt) if bounded else None
                try:
                    response = transport.handle_request(outgoing)
                    # A body still to read (not in memory already, not a 101's raw socket).
                    if response.status_code != 101 and not isinstance(
                        response.stream, httpx.ByteStream
                    ):
                        # A caller's transport cannot see the bound: its body is checked
                        # against the clock between chunks, and told the time left as its
                        # timeout.
                        if call.buffer:
                            response = _read_body(
                                response, request, attempt if inner is not None else None
                            )
                        else:
                            sent = outgoing.extensions if inner is not None else None
                            response.stream = BoundedBody(response.stream, call, sent)
                except httpx.TransportError as exc:
                    if token is not None:
                        BOUND.reset(token)
                    if undo is not None:
                        leave_attempt(undo)
                    try:
                        delay = call.attempt_failed(attempt, exc)
                    except httpx.TransportError as final:
                        return call.fail(final)
                except BaseException:
                    if token is not None:
                        BOUND.reset(token)
                    if undo is not None:
                        leave_attempt(undo)
                    raise
                else:
                    if token is not None:
                        BOUND.reset(token)
                    if undo is not None:
                        leave_attempt(undo)
                    # call.attempt_done(), as its two steps: a success is one call fewer
                    # (and its books are closed as it is recorded: no finish() to call).
                    if not call.record_response(attempt, response):
                        return response
                    retry_in = call.retry_status(response)
                    if retry_in is None:
                        return call.finish(response)
                    delay = retry_in
                    response.close()
                self._sleep(delay)
        except BaseException as exc:
            call.cancel(exc)  # no-op for whatever the call already settled
            raise
        finally:
            # call.restore(), inlined: the caller's timeout extension back (attempts
            # overwrite it), so a redirect or a reused request starts from its own.
            caller_timeouts = call.caller_timeouts
            if caller_timeouts is None:
                request.extensions.pop(TIMEOUT, None)
            else:
                request.extensions[TIMEOUT] = caller_timeouts
            if bulkhead is not None:
                # bulkhead.release(), its common case inlined: nobody queued, the token
                # back (atomic); one who queued meanwhile is then served under the lock.
                tokens = bulkhead.free
                if bulkhead.waiters or len(tokens) >= bulkhead.max_concurrent:
                    bulkhead.release()  # hand the slot over (or report an over-release)
                else:
                    tokens.append(None)
                    if bulkhead.waiters:
                        bulkhead.serve()
            if rt.limiter is not None:
                rt.limiter.release()

    def _passthrough(self, request: httpx.Request) -> httpx.Response:
        observed = Passthrough(self.runtime, request)
        transport = self._inner
        if transport is None:
            transport = self._foreign
            if transport is None:
                from .pinned import PinnedTransport  # httpcore: imported when first needed

                transport = self._foreign = PinnedTransport(None, self._options)
        undo = enter_attempt(observed.attempt)
        try:
            response = transport.handle_request(request)
        except BaseException as exc:
            if undo is not None:
                leave_attempt(undo)
            observed.done(None, exc)
            raise
        if undo is not None:
            leave_attempt(undo)
        observed.done(response)
        return response

    def _probe(self, endpoint: Endpoint, request: httpx.Request) -> httpx.Response:
        transport, request = self._target(endpoint, request)
        return _read_body(transport.handle_request(request), request)

    def _new_pool(self, endpoint: Endpoint) -> httpx.BaseTransport:
        from .pinned import PinnedTransport  # httpcore: imported with the first pool

        age = self.config.max_connection_age
        return PinnedTransport(endpoint, self._options, max_age=age, clock=self.runtime.clock)

    def _refresh(self, call: Call) -> None:
        rt = self.runtime
        assert rt.resolver is not None and rt.endpoint_set is not None
        try:
            resolution = rt.resolver.resolve(
                rt.origin.host, rt.origin.port, call.deadline.remaining()
            )
        except Exception as exc:
            rt.refresh_failed(exc)
        except BaseException:
            rt.endpoint_set.abort_refresh()
            raise
        else:
            rt.refreshed(resolution)

    def close(self) -> None:
        """Stop health checks and close every pool: svcclient's own and, when one was
        given, the caller's transport (closing the client closes what it was built on)."""
        self._close_own()
        if self._inner is not None:
            self._inner.close()

    def _close_own(self) -> None:
        if self._health is not None:
            self._health.close()
        for pool in self._pools.drain():
            pool.close()
        if self._foreign is not None:
            self._foreign.close()

    def _restart_health(self) -> None:
        with self._health_lock:  # the child's first requests may come from many threads
            if self._health_due:
                self._health = HealthChecker(self.runtime, self._probe)
                self._health_due = False

    def _after_fork_in_child(self) -> None:
        """In a forked child (see :mod:`.forksafe`, which has already closed the child's
        copies of the pooled sockets): drop the parent's pools unused, so the first
        request opens connections of the child's own; health checks restart lazily."""
        self._pools.drain()
        self._foreign = None
        if self._health is not None:
            self._health = None  # its thread was not copied
            self._health_due = True
        if self.runtime.endpoint_set is not None:
            self.runtime.endpoint_set.abort_refresh()  # a parent thread's turn, never ending

    def __enter__(self) -> ResilientTransport:
        if self._inner is not None:
            self._inner.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self._close_own()
        if self._inner is not None:
            self._inner.__exit__(exc_type, exc_value, traceback)


def _read_body(
    response: httpx.Response, request: httpx.Request, attempt: Attempt | None = None
) -> httpx.Response:
    """Read the body inside the attempt, so a reset mid-body is retried like any error.

    Read in place: the raw (still encoded) bytes replace the response's stream, and the
    same response goes back, neither read nor closed as far as httpx can tell. The
    client then decodes it and closes it as it would any response, which also sets
    ``response.elapsed``; no second Response is built.

    ``attempt``: stop between chunks once it has no time left (a caller's transport,
    whose socket reads svcclient cannot cap: a body dribbling in under every read
    timeout would otherwise be read for ever). The overrun is then at most one read.
    """
    stream = response.stream
    assert isinstance(stream, httpx.SyncByteStream)
    try:
        if attempt is None:
            raw = b"".join(stream)
        else:
            parts = []
            for part in stream:
                if attempt.remaining() <= 0:
                    raise httpx.ReadTimeout(
                        "svcclient: attempt out of time mid-body", request=request
                    )
                parts.append(part)
            raw = b"".join(parts)
    finally:
        stream.close()  # the connection goes back to the pool
    response.stream = InMemoryBody(raw)
    return response
