# Generated from svcclient/_transports/_async/pool.py by scripts/unasync.py: do not edit.
# Edit the source and run `python scripts/unasync.py` (CI's `--check` fails on drift).
"""svcclient's HTTP/1.1 connection pool: :mod:`..pool_core`'s accounting, driven.

See :mod:`..pool` for what the pool is and why. This module does the I/O only: dialling
(inside the connection's first request), closing what the core says to close, waking
and waiting. The async pool runs on one event loop, and nothing between the core's
calls awaits, so it takes no lock; the sync pool takes a lock around each core call.
"""

from __future__ import annotations

import threading
import time
import types
import typing
from collections.abc import Iterator

import httpcore

from ..bound import capped
from ..pool_core import NEW, PoolCore, Waiter

__all__ = ["HTTP11Pool"]

_SCHEMES = ("http", "https", "ws", "wss")


def _usable(conn: httpcore.HTTPConnection) -> bool:
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


def _closed() -> httpcore.ConnectError:
    return httpcore.ConnectError("svcclient: the connection pool is closed")


class HTTP11Pool:
    """An HTTP/1.1 pool for one origin's requests (see :mod:`..pool`).

    httpx's limits (None: no limit) are the core's; an idle connection above
    ``max_keepalive_connections`` may stay up to 1 s (the core's linger), never past
    ``keepalive_expiry``.
    """

    def __init__(
        self,
        network_backend: httpcore.NetworkBackend,
        ssl_context: typing.Any,
        max_connections: int | None,
        max_keepalive_connections: int | None,
        keepalive_expiry: float | None,
    ) -> None:
        big = 1 << 30
        self._core: PoolCore[httpcore.HTTPConnection] = PoolCore(
            big if max_connections is None else max_connections,
            big if max_keepalive_connections is None else max_keepalive_connections,
            keepalive_expiry,
            1.0 if keepalive_expiry is None else min(1.0, keepalive_expiry),
        )
        self._backend = self._network_backend = network_backend  # the latter: httpcore's name
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._lock = threading.Lock()

    # -- getting and returning connections ------------------------------------------------

    def _acquire(self, request: httpcore.Request, timeout: float | None) -> httpcore.HTTPConnection:
        core = self._core
        dead: list[httpcore.HTTPConnection] = []
        waiter: Waiter[httpcore.HTTPConnection]
        with self._lock:
            if core.closed:
                raise _closed()
            got = core.take(_usable, dead)
            if got is None:
                wake = threading.Event()
                waiter = Waiter(wake)
                core.enqueue(waiter)
        if dead:
            self._close_all(dead)
        if got is None:
            try:
                wake.wait(timeout)
                if not waiter.granted:
                    raise httpcore.PoolTimeout(
                        "svcclient: no connection free within the pool timeout"
                    )
            except BaseException:  # timed out or cancelled: what it was granted goes back
                self._abandon(waiter)
                raise
            conn = waiter.conn
            if conn is not None:
                if _usable(conn):
                    return conn
                self._close_all([conn])  # its slot is ours: dial a new one
            elif core.closed:
                raise _closed()
        elif got is not NEW:
            return typing.cast("httpcore.HTTPConnection", got)
        return httpcore.HTTPConnection(
            origin=request.url.origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            network_backend=self._backend,
        )

    def _abandon(self, waiter: Waiter[httpcore.HTTPConnection]) -> None:
        dead: list[httpcore.HTTPConnection] = []
        with self._lock:
            wake = self._core.abandon(waiter, time.monotonic(), dead)
        if wake is not None:
            wake.wake.set()  # type: ignore[attr-defined]
        self._close_all(dead)

    def _give_back(self, conn: httpcore.HTTPConnection) -> None:
        dead: list[httpcore.HTTPConnection] = []
        reusable = conn.is_available()
        with self._lock:
            wake = self._core.give_back(conn, reusable, time.monotonic(), dead)
        if wake is not None:
            wake.wake.set()  # type: ignore[attr-defined]
        if dead:
            self._close_all(dead)

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
            waiter.wake.set()  # type: ignore[attr-defined]
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
            for part in self._stream:
                yield part
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
