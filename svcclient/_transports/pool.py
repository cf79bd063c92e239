"""svcclient's HTTP/1.1 connection pools: :mod:`.pool_core`'s accounting, driven.

Each pool serves one origin through one network backend (:mod:`.pinned`'s, which dials the
endpoint, caps every socket operation and retires old connections). The connections are
httpcore's own (``httpcore.HTTPConnection``: dial, TLS, then its HTTP/1.1 protocol), so
the wire protocol and its errors are httpcore's; only the pool around them is ours. The
drivers below do the I/O only: dialling (inside the connection's first request), closing
what the core says to close, waking and waiting. The wait for a connection is bounded by
the request's ``pool`` timeout and by the bound (:data:`.bound.BOUND`) like every socket
operation. HTTP/2 pools stay on httpcore's pool.
"""

from __future__ import annotations

import threading
import time
import types
import typing
from collections.abc import AsyncIterator, Iterator

import anyio
import httpcore

from .bound import capped
from .pool_core import NEW, PoolCore, Waiter

__all__ = ["AsyncHTTP11Pool", "HTTP11Pool"]

_SCHEMES = ("http", "https", "ws", "wss")
_C = typing.TypeVar("_C", httpcore.HTTPConnection, httpcore.AsyncHTTPConnection)


def _usable(conn: httpcore.HTTPConnection | httpcore.AsyncHTTPConnection) -> bool:
    # keep-alive expiry, and a readable idle socket (the server hung up, or the
    # connection is past its max age: see connection_age)
    return conn.is_available() and not conn.has_expired()


def _check(request: httpcore.Request) -> float | None:
    scheme = request.url.scheme.decode()
    if scheme == "":
        raise httpcore.UnsupportedProtocol(
            "Request URL is missing an 'http://' or 'https://' protocol."
        )
    if scheme not in _SCHEMES:
        raise httpcore.UnsupportedProtocol(
            f"Request URL has an unsupported protocol '{scheme}://'."
        )
    timeout: float | None = request.extensions.get("timeout", {}).get("pool", None)
    return capped(timeout, httpcore.PoolTimeout)


def _core(
    max_connections: int | None,
    max_keepalive_connections: int | None,
    keepalive_expiry: float | None,
) -> PoolCore[_C]:
    # httpx's limits (None: no limit) as the core's. An idle connection above
    # max_keepalive_connections may stay up to 1 s (PoolCore's linger), never past expiry.
    big = 1 << 30
    return PoolCore(
        big if max_connections is None else max_connections,
        big if max_keepalive_connections is None else max_keepalive_connections,
        keepalive_expiry,
        1.0 if keepalive_expiry is None else min(1.0, keepalive_expiry),
    )


class HTTP11Pool:
    """A sync HTTP/1.1 pool for one origin's requests (see the module docs)."""

    def __init__(
        self,
        network_backend: httpcore.NetworkBackend,
        ssl_context: typing.Any,
        max_connections: int | None,
        max_keepalive_connections: int | None,
        keepalive_expiry: float | None,
    ) -> None:
        self._core: PoolCore[httpcore.HTTPConnection] = _core(
            max_connections, max_keepalive_connections, keepalive_expiry
        )
        self._backend = self._network_backend = network_backend  # the latter: httpcore's name
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._lock = threading.Lock()

    # -- getting and returning connections ------------------------------------------------

    def _acquire(self, request: httpcore.Request, timeout: float | None) -> httpcore.HTTPConnection:
        core = self._core
        dead: list[httpcore.HTTPConnection] = []
        with self._lock:
            if core.closed:
                raise httpcore.ConnectError("svcclient: the connection pool is closed")
            got = core.take(_usable, dead)
            if got is None:
                waiter: Waiter[httpcore.HTTPConnection] = Waiter(threading.Lock())
                waiter.wake.acquire()  # type: ignore[attr-defined]
                core.enqueue(waiter)
        self._close_all(dead)
        if got is None:
            woke = waiter.wake.acquire(timeout=-1 if timeout is None else timeout)  # type: ignore[attr-defined]
            if not woke:
                with self._lock:
                    wake = core.abandon(waiter, time.monotonic(), dead)
                self._wake(wake)
                self._close_all(dead)
                raise httpcore.PoolTimeout("svcclient: no connection free within the pool timeout")
            if waiter.conn is not None:
                conn = waiter.conn
                if _usable(conn):
                    return conn
                self._close_all([conn])  # its slot is ours: dial a new one
            elif core.closed:
                raise httpcore.ConnectError("svcclient: the connection pool is closed")
        elif got is not NEW:
            return typing.cast("httpcore.HTTPConnection", got)
        return httpcore.HTTPConnection(
            origin=request.url.origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            network_backend=self._backend,
        )

    def _give_back(self, conn: httpcore.HTTPConnection) -> None:
        dead: list[httpcore.HTTPConnection] = []
        reusable = conn.is_available()
        with self._lock:
            wake = self._core.give_back(conn, reusable, time.monotonic(), dead)
        self._wake(wake)
        self._close_all(dead)

    @staticmethod
    def _wake(waiter: Waiter[httpcore.HTTPConnection] | None) -> None:
        if waiter is not None:
            waiter.wake.release()  # type: ignore[attr-defined]

    @staticmethod
    def _close_all(conns: list[httpcore.HTTPConnection]) -> None:
        for conn in conns:
            conn.close()

    # -- httpcore's request interface ------------------------------------------------------

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        timeout = _check(request)
        while True:
            conn = self._acquire(request, timeout)
            try:
                response = conn.handle_request(request)
            except httpcore.ConnectionNotAvailable:  # pragma: no cover - httpcore's race
                self._give_back(conn)
                continue
            except BaseException:
                self._give_back(conn)  # closed by httpcore on any error: frees the slot
                raise
            return httpcore.Response(
                status=response.status,
                headers=response.headers,
                content=_Returning(response.stream, self, conn),
                extensions=response.extensions,
            )

    @property
    def connections(self) -> list[httpcore.HTTPConnection]:
        """The idle connections (busy ones belong to their requests)."""
        return list(self._core.idle)

    def close(self) -> None:
        with self._lock:
            idle, waiters = self._core.close()
        for waiter in waiters:
            self._wake(waiter)
        self._close_all(idle)

    def __enter__(self) -> HTTP11Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: types.TracebackType | None = None,
    ) -> None:
        self.close()


class _Returning:
    """A response body that gives its connection back to the pool when closed."""

    __slots__ = ("_conn", "_pool", "_stream")

    def __init__(self, stream: typing.Any, pool: HTTP11Pool, conn: httpcore.HTTPConnection) -> None:
        self._stream = stream
        self._pool: HTTP11Pool | None = pool
        self._conn = conn

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                if hasattr(self._stream, "close"):
                    self._stream.close()
            finally:
                pool._give_back(self._conn)


class AsyncHTTP11Pool:
    """The async twin of :class:`HTTP11Pool` (any anyio backend: asyncio, trio)."""

    def __init__(
        self,
        network_backend: httpcore.AsyncNetworkBackend,
        ssl_context: typing.Any,
        max_connections: int | None,
        max_keepalive_connections: int | None,
        keepalive_expiry: float | None,
    ) -> None:
        self._core: PoolCore[httpcore.AsyncHTTPConnection] = _core(
            max_connections, max_keepalive_connections, keepalive_expiry
        )
        self._backend = self._network_backend = network_backend
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry

    async def _acquire(
        self, request: httpcore.Request, timeout: float | None
    ) -> httpcore.AsyncHTTPConnection:
        # No lock: one event loop runs every call of this pool, and nothing between the
        # core's calls below awaits.
        core = self._core
        if core.closed:
            raise httpcore.ConnectError("svcclient: the connection pool is closed")
        dead: list[httpcore.AsyncHTTPConnection] = []
        got = core.take(_usable, dead)
        if dead:
            await self._close_all(dead)
        if got is None:
            waiter: Waiter[httpcore.AsyncHTTPConnection] = Waiter(anyio.Event())
            core.enqueue(waiter)
            try:
                with anyio.fail_after(timeout):
                    await waiter.wake.wait()  # type: ignore[attr-defined]
            except BaseException as exc:
                dead = []
                wake = core.abandon(waiter, time.monotonic(), dead)
                if wake is not None:
                    wake.wake.set()  # type: ignore[attr-defined]
                await self._close_all(dead)
                if isinstance(exc, TimeoutError):
                    raise httpcore.PoolTimeout(
                        "svcclient: no connection free within the pool timeout"
                    ) from None
                raise
            conn = waiter.conn
            if conn is not None:
                if _usable(conn):
                    return conn
                await self._close_all([conn])  # its slot is ours: dial a new one
            elif core.closed:
                raise httpcore.ConnectError("svcclient: the connection pool is closed")
        elif got is not NEW:
            return typing.cast("httpcore.AsyncHTTPConnection", got)
        return httpcore.AsyncHTTPConnection(
            origin=request.url.origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            network_backend=self._backend,
        )

    async def _give_back(self, conn: httpcore.AsyncHTTPConnection) -> None:
        dead: list[httpcore.AsyncHTTPConnection] = []
        wake = self._core.give_back(conn, conn.is_available(), time.monotonic(), dead)
        if wake is not None:
            wake.wake.set()  # type: ignore[attr-defined]
        if dead:
            await self._close_all(dead)

    @staticmethod
    async def _close_all(conns: list[httpcore.AsyncHTTPConnection]) -> None:
        with anyio.CancelScope(shield=True):
            for conn in conns:
                await conn.aclose()

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        timeout = _check(request)
        while True:
            conn = await self._acquire(request, timeout)
            try:
                response = await conn.handle_async_request(request)
            except httpcore.ConnectionNotAvailable:  # pragma: no cover - httpcore's race
                await self._give_back(conn)
                continue
            except BaseException:
                await self._give_back(conn)
                raise
            return httpcore.Response(
                status=response.status,
                headers=response.headers,
                content=_AsyncReturning(response.stream, self, conn),
                extensions=response.extensions,
            )

    @property
    def connections(self) -> list[httpcore.AsyncHTTPConnection]:
        """The idle connections (busy ones belong to their requests)."""
        return list(self._core.idle)

    async def aclose(self) -> None:
        idle, waiters = self._core.close()
        for waiter in waiters:
            waiter.wake.set()  # type: ignore[attr-defined]
        await self._close_all(idle)

    async def __aenter__(self) -> AsyncHTTP11Pool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: types.TracebackType | None = None,
    ) -> None:
        await self.aclose()


class _AsyncReturning:
    """The async twin of :class:`_Returning`."""

    __slots__ = ("_conn", "_pool", "_stream")

    def __init__(
        self, stream: typing.Any, pool: AsyncHTTP11Pool, conn: httpcore.AsyncHTTPConnection
    ) -> None:
        self._stream = stream
        self._pool: AsyncHTTP11Pool | None = pool
        self._conn = conn

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                if hasattr(self._stream, "aclose"):
                    with anyio.CancelScope(shield=True):
                        await self._stream.aclose()
            finally:
                await pool._give_back(self._conn)
