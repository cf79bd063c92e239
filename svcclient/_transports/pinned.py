"""The httpx transports svcclient builds for its own connection pools.

One pool per resolved endpoint. Why not rewrite each request's URL to the endpoint's IP?
Building an ``httpx.URL`` costs tens of microseconds, more than the whole pipeline may
add. Instead each endpoint's pool has a network backend that dials the endpoint's address
whatever host the URL names. The request keeps its URL, so the ``Host`` header, the TLS
server name (SNI) and certificate checks all use the service's real name, and pooled
connections belong to exactly one endpoint.

The same backend holds the deadline at the socket: every connect, TLS handshake, read
and write gets ``min(its own timeout, time left)``, where "time left" is that of the
current attempt (per-attempt timeout and deadline, whichever is first) or, while a
streamed body is read after the call returned, the call's deadline. The bound travels
in a context variable (:data:`.bound.BOUND`) that the drivers set around each attempt: no timer,
no cancel scope, the same on threads, asyncio and trio. HTTP/2 pools are not capped per
socket operation (one connection carries many calls with different deadlines; capping
one read for one of them would break the connection for all); their bodies are still
stopped at the deadline between chunks.
"""

from __future__ import annotations

import functools
import random
import ssl
import time
import typing
from collections.abc import Callable, Iterable

import httpcore
import httpx

from .._endpoint import Endpoint
from .bound import capped as _capped
from .connection_age import DEFAULT_JITTER, AgedAsyncBackend, AgedBackend, Retirement
from .forksafe import aopened, opened

__all__ = ["AsyncPinnedTransport", "PinnedTransport", "cap_caller_transport", "transport_options"]

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class _Stream(httpcore.NetworkStream):
    """A pooled socket, capped per operation (:func:`_capped`) and, when ``retire`` is
    given, retired once old (:mod:`.connection_age`): one wrapper for both, so each
    read and write goes through one extra Python frame, not two."""

    __slots__ = ("_inner", "_retire", "retire_at")

    def __init__(
        self, inner: httpcore.NetworkStream, retire: Retirement | None = None, at: float = 0.0
    ) -> None:
        self._inner = inner
        self._retire = retire
        self.retire_at = at

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _capped(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _capped(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _capped(timeout, httpcore.ConnectTimeout)
        )
        # the TLS socket: what a forked child must close (a caller's pool's: see below)
        return self._register(type(self)(inner, self._retire, self.retire_at))

    def get_extra_info(self, info: str) -> typing.Any:
        retire = self._retire
        if retire is not None and info == "is_readable" and retire.clock() >= self.retire_at:
            return True  # httpcore then closes this idle connection instead of reusing it
        return self._inner.get_extra_info(info)

    def _register(self, stream: httpcore.NetworkStream) -> httpcore.NetworkStream:
        return opened(stream)


class _AsyncStream(httpcore.AsyncNetworkStream):
    """The async twin of :class:`_Stream`."""

    __slots__ = ("_inner", "_retire", "retire_at")

    def __init__(
        self,
        inner: httpcore.AsyncNetworkStream,
        retire: Retirement | None = None,
        at: float = 0.0,
    ) -> None:
        self._inner = inner
        self._retire = retire
        self.retire_at = at

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, _capped(timeout, httpcore.ReadTimeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, _capped(timeout, httpcore.WriteTimeout))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(
            ssl_context, server_hostname, _capped(timeout, httpcore.ConnectTimeout)
        )
        return aopened(_AsyncStream(inner, self._retire, self.retire_at))

    def get_extra_info(self, info: str) -> typing.Any:
        retire = self._retire
        if retire is not None and info == "is_readable" and retire.clock() >= self.retire_at:
            return True
        return self._inner.get_extra_info(info)


class _H2Stream(httpcore.NetworkStream):
    """An HTTP/2 pool's stream: not capped (see the module docs), only registered with
    :mod:`.forksafe` again when TLS wraps it."""

    __slots__ = ("_inner",)

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return opened(_H2Stream(self._inner.start_tls(ssl_context, server_hostname, timeout)))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _AsyncH2Stream(httpcore.AsyncNetworkStream):
    __slots__ = ("_inner",)

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return aopened(_AsyncH2Stream(inner))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """Dials ``endpoint`` (or the URL's host when None); caps time unless ``bounded``
    is False (HTTP/2); retires connections after ``max_age`` (± jitter) when given.

    A capped stream carries its retirement time itself; an uncapped one (HTTP/2) gets
    :mod:`.connection_age`'s wrapper, so either way a socket operation passes through
    at most one wrapper.
    """

    def __init__(
        self,
        endpoint: Endpoint | None,
        bounded: bool,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoint = endpoint
        self._bounded = bounded
        self._inner: httpcore.NetworkBackend = httpcore.SyncBackend()
        self._retire: Retirement | None = None
        if max_age is not None:
            if bounded:
                self._retire = Retirement(max_age, DEFAULT_JITTER, clock, random.Random())
            else:
                self._inner = AgedBackend(self._inner, max_age, clock=clock)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        if self._endpoint is not None:
            host, port = self._endpoint.host, self._endpoint.port
        if not self._bounded:
            stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
            return opened(_H2Stream(stream))
        timeout = _capped(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        retire = self._retire
        if retire is None:
            return opened(_Stream(stream))
        return opened(_Stream(stream, retire, retire.at()))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:  # pragma: no cover - pools here never use a socket path
        return self._inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:  # pragma: no cover - used by httpcore retries
        self._inner.sleep(seconds)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    """The async twin of :class:`_Backend` (any anyio backend)."""

    def __init__(
        self,
        endpoint: Endpoint | None,
        bounded: bool,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoint = endpoint
        self._bounded = bounded
        self._inner: httpcore.AsyncNetworkBackend = httpcore.AnyIOBackend()
        self._retire: Retirement | None = None
        if max_age is not None:
            if bounded:
                self._retire = Retirement(max_age, DEFAULT_JITTER, clock, random.Random())
            else:
                self._inner = AgedAsyncBackend(self._inner, max_age, clock=clock)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._endpoint is not None:
            host, port = self._endpoint.host, self._endpoint.port
        if not self._bounded:
            raw = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
            return aopened(_AsyncH2Stream(raw))
        timeout = _capped(timeout, httpcore.ConnectTimeout)
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        retire = self._retire
        if retire is None:
            return aopened(_AsyncStream(stream))
        return aopened(_AsyncStream(stream, retire, retire.at()))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:  # pragma: no cover
        await self._inner.sleep(seconds)


class _CallerStream(_Stream):
    """A caller's pool's stream, capped like ours but never registered with
    :mod:`.forksafe`: the caller's pool keeps its connections across a fork, and closing
    an fd under it could hand its number to another socket."""

    __slots__ = ()

    def _register(self, stream: httpcore.NetworkStream) -> httpcore.NetworkStream:
        return stream


class _CappingBackend(httpcore.NetworkBackend):
    """A caller's pool's own network backend, every socket operation capped by the
    bound (a no-op when no svcclient call is sending: ``BOUND`` is then None)."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _capped(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _CallerStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _capped(timeout, httpcore.ConnectTimeout)
        return _CallerStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:  # pragma: no cover - used by httpcore retries
        self._inner.sleep(seconds)


def cap_caller_transport(transport: httpx.BaseTransport) -> bool:
    """Cap the sockets of a caller's ``httpx.HTTPTransport`` (HTTP/1.1) at the bound.

    httpx gives no public way to reach a transport's sockets, and a sync transport has no
    timer to stop a read that keeps getting a byte just inside every read timeout (a
    dribbled response head). So its httpcore pool's network backend (``_pool`` and
    ``_network_backend``, pinned in ``tests/test_httpx_private.py``) is wrapped: outside
    svcclient's calls the bound is unset and nothing changes. Connections the pool opened
    before are not capped. HTTP/2 pools are left alone, as ours are (see the module docs).
    Returns True when the transport's sockets are capped.
    """
    if not isinstance(transport, httpx.HTTPTransport):
        return False
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.ConnectionPool) or getattr(pool, "_http2", True):
        return False
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, _CappingBackend):
        return True
    if not isinstance(backend, httpcore.NetworkBackend):
        return False
    pool._network_backend = _CappingBackend(backend)
    return True


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


def _limits(options: _Options) -> tuple[int | None, int | None, float | None]:
    limits = options["limits"]
    return limits.max_connections, limits.max_keepalive_connections, limits.keepalive_expiry


class PinnedTransport(httpx.HTTPTransport):
    """httpx's ``HTTPTransport`` on a connection pool svcclient builds itself
    (HTTP/1.1: :mod:`.pool`'s; HTTP/2: httpcore's).

    ``endpoint``: every connection dials it (None: the URL's host). ``max_age``: pooled
    connections retire after it (see :mod:`.connection_age`). httpx has no public way
    to give ``HTTPTransport`` a network backend, so this builds the httpcore pool that
    httpx's ``handle_request``/``close``/``__enter__`` send through (``self._pool``,
    pinned in ``tests/test_httpx_private.py``) instead of calling
    ``HTTPTransport.__init__``, which would build one only to have it replaced.
    """

    def __init__(
        self,
        endpoint: Endpoint | None,
        options: _Options,
        *,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        backend = _Backend(endpoint, not options["http2"], max_age, clock)
        self._pool: typing.Any
        if options["http2"]:
            self._pool = httpcore.ConnectionPool(network_backend=backend, **_pool_kwargs(options))
        else:
            from .pool import HTTP11Pool

            self._pool = HTTP11Pool(backend, options["verify"], *_limits(options))
        self.endpoint = endpoint


class AsyncPinnedTransport(httpx.AsyncHTTPTransport):
    """The async twin of :class:`PinnedTransport` (any anyio backend)."""

    def __init__(
        self,
        endpoint: Endpoint | None,
        options: _Options,
        *,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        backend = _AsyncBackend(endpoint, not options["http2"], max_age, clock)
        self._pool: typing.Any
        if options["http2"]:
            self._pool = httpcore.AsyncConnectionPool(
                network_backend=backend, **_pool_kwargs(options)
            )
        else:
            from .pool import AsyncHTTP11Pool

            self._pool = AsyncHTTP11Pool(backend, options["verify"], *_limits(options))
        self.endpoint = endpoint
