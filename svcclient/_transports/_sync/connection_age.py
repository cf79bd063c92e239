# Generated from svcclient/_transports/_async/connection_age.py by scripts/unasync.py: do not edit.
# Edit the source and run `python scripts/unasync.py` (CI's `--check` fails on drift).
"""Connections that retire once old, on any network backend (see :mod:`..connection_age`)."""

from __future__ import annotations

import random
import time
import typing
from collections.abc import Iterable

import httpcore

from ..retirement import DEFAULT_JITTER, Clock, Retirement

__all__ = ["AgedBackend", "SocketOption"]

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


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
