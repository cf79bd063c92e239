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

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, cast

import httpx

from .._config.model import ServiceConfig
from .._endpoint import Endpoint
from .._exceptions import BulkheadFullError
from .._observability.hooks import Hooks, enter_attempt, leave_attempt
from .._pipeline import testmode as _testmode
from .._pipeline.actions import AwaitResolution, AwaitSlot, Fallback, Resolve, Sleep
from .._pipeline.call import Action, Attempt, Call, Passthrough
from .._policies.bulkhead import Bulkhead
from .base import DriverBase
from .bodies import BoundedBody
from .bound import BOUND
from .forksafe import register as _fork_aware
from .health import HealthChecker
from .memory_body import InMemoryBody

__all__ = ["ResilientTransport"]


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
        if cfg.bulkhead is not None and cfg.concurrency is None:
            self.runtime.bulkhead = Bulkhead(cfg.bulkhead, cfg.name)
        self._foreign: httpx.BaseTransport | None = None
        if self._wants_health:
            self._health = self._new_health()
        _fork_aware(self)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the pipeline: perform what its call decides."""
        if not self._serves(request):
            return self._passthrough(request)
        if self._health_due:
            self._restart_health()
        call = Call(self.runtime, request)  # checks the extensions; nothing is taken yet
        try:
            action: Action | None = call.next()
            while True:
                match action:
                    case Attempt():
                        action = self._exchange(call, action)
                    case httpx.Response():
                        return action
                    case Fallback():
                        return cast("httpx.Response", action.run())
                    case BaseException():
                        try:
                            raise action
                        finally:
                            # The frame must not hold the error its traceback holds the
                            # frame of: a reference cycle per refused or failed call.
                            del action
                    case _:
                        action = self._wait(call, action)
        except BaseException as exc:
            call.cancel(exc)  # nothing to do for a call that has its verdict
            raise
        finally:
            call.close()

    def _wait(self, call: Call, action: Action | None) -> Action | None:
        """Perform an action that waits (backoff, DNS, another's lookup, a bulkhead
        slot); the call's next action."""
        match action:
            case Sleep(seconds=seconds, discard=discard):
                if discard is not None:
                    discard.close()
                self._sleep(seconds)
            case Resolve(host=host, port=port, timeout=timeout):
                resolver = self.runtime.resolver
                assert resolver is not None
                try:
                    resolution = resolver.resolve(host, port, timeout)
                except Exception as exc:
                    return call.resolved(None, exc)
                return call.resolved(resolution)
            case AwaitResolution(event=event, timeout=timeout):
                event.wait(timeout)
            case AwaitSlot(bulkhead=bulkhead, timeout=timeout):
                try:
                    bulkhead.acquire(timeout)
                except BulkheadFullError as exc:
                    return call.refused(exc)
            case _:
                raise TypeError(f"{self.runtime.name}: no such action: {action!r}")
        return call.next()

    def _exchange(self, call: Call, attempt: Attempt) -> Action | None:
        """Send one attempt and report how it went: the call's next action."""
        if self.runtime.retired or self._pools.retiring:
            for pool in self._retiring():
                pool.close()
        transport, outgoing = self._target(attempt.endpoint, call.request)
        # Observers' attempt context (the attempt's span current) around the send.
        undo = enter_attempt(attempt.enter) if attempt.enter is not None else None
        # Every socket operation of this attempt is capped (where anything reads it).
        token = BOUND.set(attempt) if self._bounded else None
        try:
            try:
                response = transport.handle_request(outgoing)
                # A body still to read (not in memory already, not a 101's raw socket)?
                if response.status_code != 101 and not isinstance(
                    response.stream, httpx.ByteStream
                ):
                    # A caller's transport cannot see the bound: its body is checked against
                    # the clock between chunks, and told the time left as its timeout.
                    theirs = self._inner is not None
                    if call.buffer:
                        response = _read_body(response, outgoing, attempt if theirs else None)
                    else:
                        sent = outgoing.extensions if theirs else None
                        response.stream = BoundedBody(response.stream, call, sent)
            finally:
                if token is not None:
                    BOUND.reset(token)
                if undo is not None:
                    leave_attempt(undo)
        except httpx.TransportError as exc:
            return call.failed(attempt, exc)
        return call.responded(attempt, response)

    def _passthrough(self, request: httpx.Request) -> httpx.Response:
        observed = Passthrough(self.runtime, request)
        transport = self._inner
        if transport is None:
            transport = self._foreign
            if transport is None:
                from .pinned import PinnedTransport  # httpcore: imported when first needed

                transport = self._foreign = PinnedTransport(None, self._options)
        undo = enter_attempt(observed.enter)
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

    def _new_health(self) -> HealthChecker:
        return HealthChecker(self.runtime, self._probe)

    def _probe(self, endpoint: Endpoint, request: httpx.Request) -> httpx.Response:
        transport, request = self._target(endpoint, request)
        return _read_body(transport.handle_request(request), request)

    def _new_pool(self, endpoint: Endpoint) -> httpx.BaseTransport:
        from .pinned import PinnedTransport  # httpcore: imported with the first pool

        age = self.config.max_connection_age
        return PinnedTransport(endpoint, self._options, max_age=age, clock=self.runtime.clock)

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

    def _after_fork_in_child(self) -> None:
        """In a forked child (see :mod:`.forksafe`, which has already closed the child's
        copies of the pooled sockets): drop the parent's pools unused, so the first
        request opens connections of the child's own; health checks restart lazily."""
        self._pools.drain()
        self._foreign = None
        # Its thread was not copied: restarted by the child's first request.
        self._health_due = self._health is not None
        self._health = None
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
