"""``AsyncResilientTransport``: the pipeline behind httpx's async transport seam.

The same :class:`~svcclient._pipeline.call.Call` decides; this driver awaits. Two things only
an async driver can do: enforce each attempt's timeout in total (not per socket
operation), and hedge — race a second attempt against a slow first one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
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
from .._pipeline.call import STREAM_EXTENSION, Attempt, Call, buffered, retarget
from .._pipeline.service_state import ServiceRuntime
from .._policies.bulkhead import AsyncBulkhead
from .health import AsyncHealthChecker
from .pinned import AsyncPinnedTransport, transport_options
from .pools import PoolSet

__all__ = ["AsyncResilientTransport"]


class AsyncResilientTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`ResilientTransport`, with optional hedging (asyncio).

    >>> client = httpx.AsyncClient(transport=AsyncResilientTransport("user-service"))
    """

    def __init__(
        self,
        config: ServiceConfig | str,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        hooks: Sequence[Hooks] | None = None,
        registry: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        **overrides: Any,
    ) -> None:
        self._sleep = _testmode.guard_async_sleep(sleep)
        self.config = resolve_config(config, overrides)
        self._hooks = _default_hooks(self.config, registry) if hooks is None else tuple(hooks)
        self._inner = transport
        self.runtime = ServiceRuntime(
            self.config, self._hooks, owns_transport=transport is None, clock=clock
        )
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
        self._pools: PoolSet[httpx.AsyncBaseTransport] = PoolSet(self._new_pool, cfg.deadline + 1.0)
        self._bulkhead = AsyncBulkhead(cfg.bulkhead, cfg.name) if cfg.bulkhead else None
        # The health task needs a running loop: started on the first request.
        self._health: AsyncHealthChecker | None = None
        self._wants_health = bool(cfg.outlier.enabled and cfg.outlier.health_check_path)

    @property
    def base_url(self) -> httpx.URL:
        """The discovered base URL of the service."""
        return self.runtime.base_url

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the pipeline (see :class:`ResilientTransport`)."""
        rt = self.runtime
        if self._wants_health and self._health is None:
            self._health = AsyncHealthChecker(rt, self._probe)
        if rt.endpoint_set is not None:
            if rt.refresh_due():
                await self._refresh()
            elif not rt.first_resolution.is_set():
                await self._first_resolution()
        if rt.retired or self._pools.has_retiring:
            self._pools.retire(rt.retired, rt.clock())
            for pool in self._pools.due(rt.clock()):
                await pool.aclose()
        started = rt.clock()
        bulkhead = self._bulkhead
        if bulkhead is not None:
            try:
                await bulkhead.acquire(self.config.deadline)
            except BulkheadFullError as exc:
                return rt.bulkhead_rejected(request, exc)
        call = Call(rt, request, started)
        try:
            if self.config.hedge is not None:
                return await self._run_hedged(call)
            return await self._run(call)
        except BaseException:
            call.cancel()  # no-op when the call already settled with the breaker
            raise
        finally:
            if bulkhead is not None:
                bulkhead.release()

    async def _run(self, call: Call) -> httpx.Response:
        while True:
            try:
                attempt = call.begin_attempt()
            except httpx.TransportError as exc:
                return call.fail(exc)
            try:
                response = await self._send(attempt, call)
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
                await response.aclose()
            await self._sleep(delay)

    async def _run_hedged(self, call: Call) -> httpx.Response:
        """Race attempts: after the hedge delay with no answer, start one elsewhere."""
        policy = self.config.hedge
        latencies = self.runtime.latencies
        assert policy is not None and latencies is not None
        limit = self.config.retry.attempts + policy.max_hedges  # attempts per call, at most
        while True:
            try:
                first = call.begin_attempt()
            except httpx.TransportError as exc:
                return call.fail(exc)
            racing: dict[asyncio.Task[httpx.Response], Attempt] = {
                asyncio.ensure_future(self._send(first, call)): first
            }
            hedges_left = policy.max_hedges
            # A racer that fails while another still runs is replaced at once (to another
            # endpoint, on the budget) instead of leaving the call to the slow one.
            replace_now = False
            outcome: tuple[Attempt, httpx.Response | Exception] | None = None
            try:
                while racing:
                    if replace_now:
                        wait: float | None = 0.0
                    else:
                        wait = latencies.hedge_delay(policy) if hedges_left else None
                    done, _ = await asyncio.wait(
                        racing, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                    if not done:
                        if not replace_now:
                            hedges_left -= 1
                        replace_now = False
                        if call.try_hedge(limit):
                            try:
                                extra = call.begin_attempt()
                            except httpx.TransportError:
                                continue
                            racing[asyncio.ensure_future(self._send(extra, call))] = extra
                        continue
                    for task in done:
                        attempt = racing.pop(task)
                        error = task.exception()
                        if error is None:
                            response = task.result()
                            if not self.runtime.failure_status(response.status_code) or not racing:
                                outcome = (attempt, response)
                                break
                            call.record_response(attempt, response)
                            await response.aclose()
                            replace_now = True
                        elif isinstance(error, httpx.TransportError) and racing:
                            call.record_error(attempt, error)
                            replace_now = True
                        elif isinstance(error, Exception):
                            outcome = (attempt, error)
                            break
                        else:
                            raise error
                    if outcome is not None:
                        break
            finally:
                for task, attempt in racing.items():
                    task.cancel()
                    call.abandon(attempt)
                if racing:
                    await asyncio.gather(*racing, return_exceptions=True)
            assert outcome is not None
            attempt, result = outcome
            if isinstance(result, httpx.Response):
                retry_in = call.attempt_done(attempt, result)
                if retry_in is None:
                    return call.finish(result)
                delay = retry_in
                await result.aclose()
            elif isinstance(result, httpx.TransportError):
                try:
                    delay = call.attempt_failed(attempt, result)
                except httpx.TransportError as final:
                    return call.fail(final)
            else:
                call.abandon(attempt)
                raise result
            await self._sleep(delay)

    async def _send(self, attempt: Attempt, call: Call) -> httpx.Response:
        request = call.request
        if self._inner is None:
            transport = self._pools.get(attempt.endpoint)
        else:
            transport = self._inner
            if self.runtime.endpoint_set is not None:
                retarget(request, attempt.endpoint, self.runtime.origin)
        stream = request.extensions.get(STREAM_EXTENSION, False)
        timeout = call.attempt_timeout()
        try:
            async with asyncio.timeout(timeout):
                response = await transport.handle_async_request(request)
                if stream or isinstance(response.stream, httpx.ByteStream):
                    return response
                # Read the body inside the attempt so a reset mid-body is retried.
                try:
                    raw = b"".join([part async for part in response.aiter_raw()])
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(
                f"attempt exceeded {timeout:.3f}s in total", request=request
            ) from exc
        return buffered(response, raw, request)

    async def _probe(self, endpoint: Endpoint, request: httpx.Request) -> httpx.Response:
        transport = self._inner or self._pools.get(endpoint)
        if self._inner is not None and self.runtime.endpoint_set is not None:
            retarget(request, endpoint, self.runtime.origin)
        return await transport.handle_async_request(request)

    def _new_pool(self, endpoint: Endpoint) -> httpx.AsyncBaseTransport:
        if endpoint == self.runtime.origin:
            return httpx.AsyncHTTPTransport(**self._options)
        return AsyncPinnedTransport(endpoint, self._options)

    async def _first_resolution(self) -> None:
        # Another task (or thread) holds the first refresh: wait for it, bounded.
        rt = self.runtime
        give_up = time.monotonic() + self.config.dns_timeout + 1.0
        while not rt.first_resolution.is_set() and time.monotonic() < give_up:
            await asyncio.sleep(0.005)

    async def _refresh(self) -> None:
        rt = self.runtime
        assert rt.resolver is not None and rt.endpoint_set is not None
        try:
            resolution = await rt.resolver.aresolve(rt.origin.host, rt.origin.port)
        except asyncio.CancelledError:
            rt.endpoint_set.abort_refresh()
            raise
        except Exception as exc:
            rt.refresh_failed(exc)
        else:
            rt.refreshed(resolution)

    async def aclose(self) -> None:
        """Close every pool this transport opened (and a caller's transport)."""
        if self._health is not None:
            await self._health.aclose()
        for pool in self._pools.drain():
            await pool.aclose()
        if self._inner is not None:
            await self._inner.aclose()

    async def __aenter__(self) -> AsyncResilientTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()
