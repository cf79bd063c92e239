"""``ServiceClient`` / ``AsyncServiceClient``: httpx clients bound to one service.

They are ``httpx.Client`` / ``httpx.AsyncClient`` subclasses with the service's discovered
base URL and a resilient transport; everything else is httpx's own API. Per-request
options travel in httpx's ``extensions``:

* ``route``: the route template for metrics and spans (``"/users/{id}"``)
* ``affinity_key``: the session-affinity key (with the ``affinity`` balancer)
* ``retry``: ``True`` lets a POST/PATCH retry, ``False`` forbids retries
* ``deadline``: seconds left from an incoming request (can only shorten the deadline)

(names and checks in :mod:`svcclient._pipeline.extensions`). A request that is not
streamed asks the transport for the whole body (``svcclient.buffer``), so a connection
reset mid-body is retried; ``send(stream=True)`` / ``stream()`` is retried only up to
the response headers and the body arrives as it is sent.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from ._config.model import ServiceConfig
from ._discovery.rules import Discovery
from ._observability.hooks import Hooks
from ._pipeline.extensions import BUFFER
from ._shortcuts import OTEL_INSTRUMENTED, HttpxShortcuts, take_body
from ._transports.forksafe import register as _fork_aware
from ._transports.resilient import ResilientTransport

if TYPE_CHECKING:
    # Type names httpx does not export (pinned in tests/test_httpx_private.py).
    from httpx._client import UseClientDefault
    from httpx._types import AuthTypes, HeaderTypes

    from ._transports.resilient_async import AsyncResilientTransport

USE_CLIENT_DEFAULT = httpx.USE_CLIENT_DEFAULT

__all__ = ["AsyncServiceClient", "ServiceClient"]


def _stand_aside() -> contextlib.AbstractContextManager[object]:
    from ._observability.otel import suppressing_http_instrumentation

    return suppressing_http_instrumentation()


class _ServiceInfo(HttpxShortcuts):
    """What both clients tell about their service (``resilient`` is their transport), and
    the shortcuts through httpx's work both take (:class:`HttpxShortcuts`)."""

    resilient: ResilientTransport | AsyncResilientTransport

    def _traced(self) -> bool:
        from ._observability.otel import TracingHooks

        return any(isinstance(hook, TracingHooks) for hook in self.resilient.runtime.hooks)

    def _after_fork_in_child(self) -> None:
        """In a forked child (see :mod:`svcclient._transports.forksafe`): httpx keeps
        cookies in a stdlib ``CookieJar`` whose lock an app thread may have held at the
        fork (mid-request, extracting a response's cookies); the child's copy is stuck
        locked forever unless replaced."""
        jar = self.cookies.jar
        jar._cookies_lock = threading.RLock()  # type: ignore[attr-defined]

    @property
    def config(self) -> ServiceConfig:
        """The effective configuration."""
        return self.resilient.config

    @property
    def discovery(self) -> Discovery:
        """Which discovery rule gave the base URL, and what the others would give."""
        return self.resilient.runtime.discovery


class ServiceClient(_ServiceInfo, httpx.Client):
    """A sync httpx client for one service, every request through the svcclient pipeline.

    ``config`` is a :class:`ServiceConfig` or a service name; keyword ``overrides``
    replace config fields (``timeout=1.0``, ``retry=RetryPolicy(attempts=5)``).
    ``transport`` is an inner transport to send through (tests, proxies); ``clock`` and
    ``sleep`` replace ``time.monotonic`` / ``time.sleep`` (tests).

    >>> with ServiceClient("user-service", url="http://user-service:3000") as users:
    ...     users.get("/users/42", extensions={"route": "/users/{id}"})
    """

    def __init__(
        self,
        config: ServiceConfig | str,
        *,
        transport: httpx.BaseTransport | None = None,
        hooks: Sequence[Hooks] | None = None,
        registry: Any = None,
        headers: HeaderTypes | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        **overrides: Any,
    ) -> None:
        self.resilient = ResilientTransport(
            config,
            transport,
            hooks=hooks,
            registry=registry,
            clock=clock,
            sleep=sleep,
            **overrides,
        )
        cfg = self.resilient.config
        super().__init__(
            base_url=self.resilient.base_url,
            transport=self.resilient,
            headers=headers,
            timeout=cfg.timeout,
            trust_env=False,
        )
        self.cookies = self._cookies  # httpx's empty store, as _Cookies
        _fork_aware(self)

    def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: AuthTypes | UseClientDefault | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """httpx's ``send``; a streamed request is retried only up to its headers."""
        if not stream:
            request.extensions[BUFFER] = True
            if self._sends_plainly(request, auth, follow_redirects):
                return self._send_plain(request)
        if getattr(self, OTEL_INSTRUMENTED, False) and self._traced():
            with _stand_aside():
                return super().send(
                    request, stream=stream, auth=auth, follow_redirects=follow_redirects
                )
        return super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)

    def _send_plain(self, request: httpx.Request) -> httpx.Response:
        """httpx's ``send(request)`` with nothing to authenticate or follow (see
        ``_sends_plainly``): httpx's own single exchange, then the body read."""
        self._opened(request)
        response = self._send_single_request(request)
        try:
            self._not_followed(request, response)
            if take_body(response):
                response.close()
            else:
                response.read()
        except BaseException:
            response.close()
            raise
        return response


class AsyncServiceClient(_ServiceInfo, httpx.AsyncClient):
    """The async twin of :class:`ServiceClient` (close with ``aclose``).

    >>> async with AsyncServiceClient("user-service") as users:
    ...     await users.get("/users/42")
    """

    def __init__(
        self,
        config: ServiceConfig | str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        hooks: Sequence[Hooks] | None = None,
        registry: Any = None,
        headers: HeaderTypes | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        **overrides: Any,
    ) -> None:
        # The async driver and anyio are imported by the first async client, not with
        # svcclient. ``sleep`` defaults to ``anyio.sleep``.
        import anyio

        from ._transports.resilient_async import AsyncResilientTransport

        self.resilient = AsyncResilientTransport(
            config,
            transport,
            hooks=hooks,
            registry=registry,
            clock=clock,
            sleep=anyio.sleep if sleep is None else sleep,
            **overrides,
        )
        cfg = self.resilient.config
        super().__init__(
            base_url=self.resilient.base_url,
            transport=self.resilient,
            headers=headers,
            timeout=cfg.timeout,
            trust_env=False,
        )
        self.cookies = self._cookies  # httpx's empty store, as _Cookies
        _fork_aware(self)

    def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: AuthTypes | UseClientDefault | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> Coroutine[Any, Any, httpx.Response]:
        """httpx's ``send`` (awaitable); a streamed request is retried only up to its headers.

        A plain function returning httpx's coroutine, not a coroutine awaiting it: one
        coroutine frame fewer per request.
        """
        if not stream:
            request.extensions[BUFFER] = True
            if self._sends_plainly(request, auth, follow_redirects):
                return self._send_plain(request)
        if getattr(self, OTEL_INSTRUMENTED, False) and self._traced():
            return self._send_aside(request, stream, auth, follow_redirects)
        return httpx.AsyncClient.send(
            self, request, stream=stream, auth=auth, follow_redirects=follow_redirects
        )

    if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
        # Still a coroutine function to introspection (mock's autospec, frameworks).
        send = inspect.markcoroutinefunction(send)

    async def _send_plain(self, request: httpx.Request) -> httpx.Response:
        """The async twin of :meth:`ServiceClient._send_plain`."""
        self._opened(request)
        response = await self._send_single_request(request)
        try:
            self._not_followed(request, response)
            if take_body(response):
                await response.aclose()
            else:
                await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    async def _send_aside(
        self,
        request: httpx.Request,
        stream: bool,
        auth: AuthTypes | UseClientDefault | None,
        follow_redirects: bool | UseClientDefault,
    ) -> httpx.Response:
        with _stand_aside():
            return await httpx.AsyncClient.send(
                self, request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
