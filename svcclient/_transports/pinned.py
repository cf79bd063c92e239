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

The backend, its streams and the transports are written once, async
(:mod:`._async.pinned`), and the sync ones generated from them (:mod:`._sync.pinned`, by
``scripts/unasync.py``). What stays here is sync only: capping a caller's own pool.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpcore
import httpx

from ._async.pinned import AsyncPinnedTransport
from ._sync.connection_age import SocketOption
from ._sync.pinned import PinnedTransport, _Stream
from .bound import capped as _capped
from .options import transport_options

__all__ = ["AsyncPinnedTransport", "PinnedTransport", "cap_caller_transport", "transport_options"]


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
