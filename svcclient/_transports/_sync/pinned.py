# Generated from svcclient/_transports/_async/pinned.py by scripts/unasync.py: do not edit.
# Edit the source and run `python scripts/unasync.py` (CI's `--check` fails on drift).
"""The network backend, streams and transport of svcclient's pools (see :mod:`..pinned`)."""

from __future__ import annotations

import random
import ssl
import time
import typing
from collections.abc import Callable, Iterable

import httpcore
import httpx

from ..._endpoint import Endpoint
from ..bound import capped as _capped
from ..forksafe import opened
from ..options import PoolOptions, limits, pool_kwargs
from ..retirement import DEFAULT_JITTER, Retirement
from .connection_age import AgedBackend, SocketOption

__all__ = ["PinnedTransport"]


class _Stream(httpcore.NetworkStream):
    """A pooled socket, capped per operation (:func:`_capped`) and, when ``retire`` is
    given, retired once old (:mod:`..connection_age`): one wrapper for both, so each
    read and write goes through one extra Python frame, not two."""

    __slots__ = ("_inner", "_retire", "retire_at")

    def __init__(
        self,
        inner: httpcore.NetworkStream,
        retire: Retirement | None = None,
        at: float = 0.0,
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
        # the TLS socket: what a forked child must close (a caller's pool's: see pinned)
        return self._register(type(self)(inner, self._retire, self.retire_at))

    def get_extra_info(self, info: str) -> typing.Any:
        retire = self._retire
        if retire is not None and info == "is_readable" and retire.clock() >= self.retire_at:
            return True  # httpcore then closes this idle connection instead of reusing it
        return self._inner.get_extra_info(info)

    def _register(self, stream: httpcore.NetworkStream) -> httpcore.NetworkStream:
        return opened(stream)


class _H2Stream(httpcore.NetworkStream):
    """An HTTP/2 pool's stream: not capped (see :mod:`..pinned`), only registered with
    :mod:`..forksafe` again when TLS wraps it."""

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
        inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        return opened(_H2Stream(inner))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """Dials ``endpoint`` (or the URL's host when None); caps time unless ``bounded``
    is False (HTTP/2); retires connections after ``max_age`` (± jitter) when given.

    A capped stream carries its retirement time itself; an uncapped one (HTTP/2) gets
    :mod:`..connection_age`'s wrapper, so either way a socket operation passes through
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

    def sleep(self, seconds: float) -> None:  # pragma: no cover - httpcore's retries only
        self._inner.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's ``HTTPTransport`` on a connection pool svcclient builds itself
    (HTTP/1.1: :mod:`.pool`'s; HTTP/2: httpcore's).

    ``endpoint``: every connection dials it (None: the URL's host). ``max_age``: pooled
    connections retire after it (see :mod:`..connection_age`). httpx has no public way
    to give its transport a network backend, so this builds the httpcore pool that
    httpx's request, close and context-manager methods send through (``self._pool``,
    pinned in ``tests/test_httpx_private.py``) instead of calling httpx's ``__init__``,
    which would build one only to have it replaced.
    """

    def __init__(
        self,
        endpoint: Endpoint | None,
        options: PoolOptions,
        *,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        backend = _Backend(endpoint, not options["http2"], max_age, clock)
        self._pool: typing.Any
        if options["http2"]:
            self._pool = httpcore.ConnectionPool(network_backend=backend, **pool_kwargs(options))
        else:
            from .pool import HTTP11Pool

            self._pool = HTTP11Pool(backend, options["verify"], *limits(options))
        self.endpoint = endpoint
