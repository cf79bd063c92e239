"""``max_connection_age``: retire a pooled connection between requests once it is old.

Why
---
A ClusterIP Service is one virtual IP; kube-proxy picks a pod when a connection opens.
With keep-alive a client keeps its connections for ever, so it stays on the pods it
first reached: after a scale-up the new pods get no traffic from existing clients, and a
rolling restart piles clients onto the pods that came up first. gRPC's
``MAX_CONNECTION_AGE`` and Envoy's ``max_connection_duration`` fix this the same way:
a connection older than the age is closed, *between* requests, and the next request
opens a new one, which kube-proxy spreads over the current pods.

How (public httpcore interfaces only)
-------------------------------------
Every stream the pool's network backend opens gets a retirement time,
``max_age`` times a random factor in ``[1 - jitter, 1 + jitter]`` (default ±10 %, so the
connections of many clients opened together do not all reconnect in the same instant).
httpcore asks an idle HTTP/1.1 connection's stream ``get_extra_info("is_readable")``
before reusing it — a readable idle socket means the server hung up — and closes the
connection when it says yes. Past its retirement time the wrapped stream says yes, so
httpcore closes that connection and dials a new one. A request in flight is never
interrupted: the question is asked only of idle connections. (HTTP/2 connections do not
ask; they keep their age.)

svcclient's pools (:mod:`.pinned`) keep the retirement time on the stream wrapper that
also caps each socket operation, so a read or write passes one wrapper, not two; the
backends here wrap streams that are not capped (HTTP/2 pools) and any other backend.
"""

from __future__ import annotations

import random
import time
import typing
from collections.abc import Callable, Iterable

import httpcore

__all__ = ["DEFAULT_JITTER", "AgedAsyncBackend", "AgedBackend", "Retirement"]

DEFAULT_JITTER = 0.1

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)
Clock = Callable[[], float]


class Retirement:
    """When a new connection should retire: ``now + max_age * U(1 - jitter, 1 + jitter)``."""

    __slots__ = ("clock", "jitter", "max_age", "random")

    def __init__(self, max_age: float, jitter: float, clock: Clock, rng: random.Random) -> None:
        self.max_age = max_age
        self.jitter = jitter
        self.clock = clock
        self.random = rng.random

    def at(self) -> float:
        spread = 1.0 + self.jitter * (2.0 * self.random() - 1.0)
        return self.clock() + self.max_age * spread


class _AgedStream(httpcore.NetworkStream):
    __slots__ = ("_inner", "_retire", "retire_at")

    def __init__(self, inner: httpcore.NetworkStream, retire: Retirement, at: float) -> None:
        self._inner = inner
        self._retire = retire
        self.retire_at = at

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _AgedStream(tls, self._retire, self.retire_at)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable" and self._retire.clock() >= self.retire_at:
            return True  # httpcore then closes this idle connection instead of reusing it
        return self._inner.get_extra_info(info)


class _AsyncAgedStream(httpcore.AsyncNetworkStream):
    __slots__ = ("_inner", "_retire", "retire_at")

    def __init__(self, inner: httpcore.AsyncNetworkStream, retire: Retirement, at: float) -> None:
        self._inner = inner
        self._retire = retire
        self.retire_at = at

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _AsyncAgedStream(tls, self._retire, self.retire_at)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable" and self._retire.clock() >= self.retire_at:
            return True
        return self._inner.get_extra_info(info)


class AgedBackend(httpcore.NetworkBackend):
    """Wraps a network backend so its connections retire after ``max_age`` (± jitter).

    ``clock`` is the service's clock (injectable in tests); ``rng`` seeds the jitter.
    """

    def __init__(
        self,
        inner: httpcore.NetworkBackend,
        max_age: float,
        *,
        jitter: float = DEFAULT_JITTER,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._inner = inner
        self._retire = Retirement(max_age, jitter, clock, rng or random.Random())

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _AgedStream(stream, self._retire, self._retire.at())

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:  # pragma: no cover - svcclient pools dial TCP
        stream = self._inner.connect_unix_socket(path, timeout, socket_options)
        return _AgedStream(stream, self._retire, self._retire.at())

    def sleep(self, seconds: float) -> None:  # pragma: no cover - httpcore's retries only
        self._inner.sleep(seconds)


class AgedAsyncBackend(httpcore.AsyncNetworkBackend):
    """The async twin of :class:`AgedBackend`."""

    def __init__(
        self,
        inner: httpcore.AsyncNetworkBackend,
        max_age: float,
        *,
        jitter: float = DEFAULT_JITTER,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._inner = inner
        self._retire = Retirement(max_age, jitter, clock, rng or random.Random())

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _AsyncAgedStream(stream, self._retire, self._retire.at())

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _AsyncAgedStream(stream, self._retire, self._retire.at())

    async def sleep(self, seconds: float) -> None:  # pragma: no cover
        await self._inner.sleep(seconds)
