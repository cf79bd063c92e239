"""``ResilientTransport``: the whole pipeline behind httpx's transport seam (sync driver).

``httpx.Client(transport=ResilientTransport("user-service"))`` gives any existing client
discovery, retries, the breaker, balancing and metrics. The decisions live in
:mod:`svcclient._pipeline.call`; this module only resolves DNS, sends and sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import httpx

from .._config.model import ServiceConfig
from .._config.sources import resolve_config
from .._endpoint import Endpoint
from .._exceptions import BulkheadFullError
from .._observability.defaults import for_config as _default_hooks
from .._observability.hooks import Hooks
from .._pipeline import testmode as _testmode
from .._pipeline.call import STREAM_EXTENSION, Call, buffered, retarget
from .._pipeline.service_state import ServiceRuntime
from .._policies.bulkhead import Bulkhead
from .health import HealthChecker
from .pinned import PinnedTransport, transport_options
from .pools import PoolSet

__all__ = ["ResilientTransport"]


class ResilientTransport(httpx.BaseTransport):
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
        self.config = resolve_config(config, overrides)
        self._hooks = _default_hooks(self.config, registry) if hooks is None else tuple(hooks)
        self._inner = transport
        self.runtime = ServiceRuntime(
            self.config, self._hooks, owns_transport=transport is None, clock=clock
        )
        self._sleep = _testmode.guard_sleep(sleep)
        cfg = self.config
        self._options = transport_options(
            cfg.verify,
            cfg.http2,
            httpx.Limits(
                max_connections=cfg.max_connections,
                max_keepalive_connections=cfg.max_keepalive_connections,
                keepalive_expiry=cfg.keepalive_expiry,
            ),
        )
        self._pools: PoolSet[httpx.BaseTransport] = PoolSet(self._new_pool, cfg.deadline + 1.0)
        self._bulkhead = Bulkhead(cfg.bulkhead, cfg.name) if cfg.bulkhead is not None else None
        self._health: HealthChecker | None = None
        if cfg.outlier.enabled and cfg.outlier.health_check_path:
            self._health = HealthChecker(self.runtime, self._probe)

    @property
    def base_url(self) -> httpx.URL:
        """The discovered base URL of the service."""
        return self.runtime.base_url

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through deadline, retry, breaker, balancer and attempt timeout."""
        rt = self.runtime
        if rt.endpoint_set is not None:
            if rt.refresh_due():
                self._refresh()
            elif not rt.first_resolution.is_set():
                rt.first_resolution.wait(self.config.dns_timeout + 1.0)
        if rt.retired or self._pools.has_retiring:
            self._pools.retire(rt.retired, rt.clock())
            for pool in self._pools.due(rt.clock()):
                pool.close()
        started = rt.clock()
        bulkhead = self._bulkhead
        if bulkhead is not None:
            try:
                bulkhead.acquire(self.config.deadline)
            except BulkheadFullError as exc:
                return rt.bulkhead_rejected(request, exc)
        call = Call(rt, request, started)
        try:
            return self._run(call)
        except BaseException:
            call.cancel()  # no-op when the call already settled with the breaker
            raise
        finally:
            if bulkhead is not None:
                bulkhead.release()

    def _run(self, call: Call) -> httpx.Response:
        stream = call.request.extensions.get(STREAM_EXTENSION, False)
        while True:
            try:
                attempt = call.begin_attempt()
            except httpx.TransportError as exc:
                return call.fail(exc)
            try:
                response = self._send(attempt.endpoint, call.request, stream)
            except httpx.TransportError as exc:
                try:
                    delay = call.attempt_failed(attempt, exc)
                except httpx.TransportError as final:
                    return call.fail(final)
            except BaseException:
                call.abandon(attempt)
                raise
            else:
                retry_in = call.attempt_done(attempt, response)
                if retry_in is None:
                    return call.finish(response)
                delay = retry_in
                response.close()
            self._sleep(delay)

    def _send(self, endpoint: Endpoint, request: httpx.Request, stream: bool) -> httpx.Response:
        if self._inner is None:
            transport = self._pools.get(endpoint)
        else:
            transport = self._inner
            if self.runtime.endpoint_set is not None:
                retarget(request, endpoint, self.runtime.origin)
        response = transport.handle_request(request)
        if stream or isinstance(response.stream, httpx.ByteStream):
            return response
        # Read the body inside the attempt so a reset mid-body is retried like any error.
        try:
            raw = b"".join(response.iter_raw())
        finally:
            response.close()
        return buffered(response, raw, request)

    def _probe(self, endpoint: Endpoint, request: httpx.Request) -> httpx.Response:
        return self._send(endpoint, request, False)

    def _new_pool(self, endpoint: Endpoint) -> httpx.BaseTransport:
        if endpoint == self.runtime.origin:
            return httpx.HTTPTransport(**self._options)
        return PinnedTransport(endpoint, self._options)

    def _refresh(self) -> None:
        rt = self.runtime
        assert rt.resolver is not None and rt.endpoint_set is not None
        try:
            resolution = rt.resolver.resolve(rt.origin.host, rt.origin.port)
        except Exception as exc:
            rt.refresh_failed(exc)
        else:
            rt.refreshed(resolution)

    def close(self) -> None:
        """Close every connection pool this transport opened (not a caller's transport)."""
        if self._health is not None:
            self._health.close()
        for pool in self._pools.drain():
            pool.close()
        if self._inner is not None:
            self._inner.close()

    def __enter__(self) -> ResilientTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()
