"""httpx transports whose connections all go to one resolved endpoint.

Why not rewrite each request's URL to the endpoint's IP? Building an ``httpx.URL`` costs
tens of microseconds, more than the whole pipeline may add. Instead each endpoint gets its
own connection pool whose network backend dials the endpoint's address whatever host the
URL names. The request keeps its URL, so the ``Host`` header, the TLS server name (SNI)
and certificate checks all use the service's real name, and pooled connections belong to
exactly one endpoint (closing the transport discards a dead endpoint's connections).
"""

from __future__ import annotations

import functools
import ssl
import time
import typing
from collections.abc import Callable, Iterable

import httpcore
import httpx

from .._endpoint import Endpoint
from .connection_age import AgedAsyncBackend, AgedBackend

__all__ = ["AsyncPinnedTransport", "PinnedTransport", "transport_options"]

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class _PinnedBackend(httpcore.NetworkBackend):
    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        return self._inner.connect_tcp(
            self._endpoint.host, self._endpoint.port, timeout, local_address, socket_options
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:  # pragma: no cover - pools here never use a socket path
        return self._inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:  # pragma: no cover - used by httpcore retries
        self._inner.sleep(seconds)


class _AsyncPinnedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_tcp(
            self._endpoint.host, self._endpoint.port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:  # pragma: no cover
        await self._inner.sleep(seconds)


class _Options(typing.TypedDict):
    verify: ssl.SSLContext
    http2: bool
    limits: httpx.Limits


@functools.cache
def _ssl_context(verify: bool, http2: bool) -> ssl.SSLContext:
    # Building a context loads the CA bundle (~50 ms); one per process is enough. Keyed
    # by http2 too: httpcore sets the context's ALPN list before each handshake.
    return httpx.create_ssl_context(verify=verify)


def transport_options(verify: bool, http2: bool, limits: httpx.Limits) -> _Options:
    """The httpx transport settings svcclient passes to every pool it creates.

    The SSL context is built once per process and shared, so a new endpoint's pool costs
    microseconds, not the tens of milliseconds of loading the CA bundle again.
    """
    return {"verify": _ssl_context(bool(verify), http2), "http2": http2, "limits": limits}


def _pool_kwargs(options: _Options) -> dict[str, typing.Any]:
    limits = options["limits"]
    return {
        "ssl_context": options["verify"],
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "http1": True,
        "http2": options["http2"],
    }


class PinnedTransport(httpx.HTTPTransport):
    """An ``httpx.HTTPTransport`` whose connections all go to ``endpoint``."""

    def __init__(
        self,
        endpoint: Endpoint,
        options: _Options,
        *,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(**options)
        backend: httpcore.NetworkBackend = _PinnedBackend(endpoint)
        if max_age is not None:
            backend = AgedBackend(backend, max_age, clock=clock)
        # httpx has no public hook for the network backend; the pool is rebuilt with one.
        self._pool = httpcore.ConnectionPool(network_backend=backend, **_pool_kwargs(options))
        self.endpoint = endpoint


class AsyncPinnedTransport(httpx.AsyncHTTPTransport):
    """An ``httpx.AsyncHTTPTransport`` whose connections all go to ``endpoint``."""

    def __init__(
        self,
        endpoint: Endpoint,
        options: _Options,
        *,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(**options)
        backend: httpcore.AsyncNetworkBackend = _AsyncPinnedBackend(endpoint)
        if max_age is not None:
            backend = AgedAsyncBackend(backend, max_age, clock=clock)
        self._pool = httpcore.AsyncConnectionPool(network_backend=backend, **_pool_kwargs(options))
        self.endpoint = endpoint
