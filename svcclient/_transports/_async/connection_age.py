"""Connections that retire once old, on any network backend (see :mod:`..connection_age`)."""

from __future__ import annotations

import random
import time
import typing
from collections.abc import Iterable

import httpcore

from ..retirement import DEFAULT_JITTER, Clock, Retirement

__all__ = ["AgedAsyncBackend", "SocketOption"]

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


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
            return True  # httpcore then closes this idle connection instead of reusing it
        return self._inner.get_extra_info(info)


class AgedAsyncBackend(httpcore.AsyncNetworkBackend):
    """Wraps a network backend so its connections retire after ``max_age`` (± jitter).

    ``clock`` is the service's clock (injectable in tests); ``rng`` seeds the jitter.
    """

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
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - svcclient pools dial TCP
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _AsyncAgedStream(stream, self._retire, self._retire.at())

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - httpcore's retries only
        await self._inner.sleep(seconds)
