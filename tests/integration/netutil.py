"""Helpers shared by the integration tests (loopback addresses, timing, who answered)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator, Sequence

import httpx

__all__ = ["HOSTS", "common_port", "timed", "who"]

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def common_port(hosts: Sequence[str]) -> int:
    """A TCP port free on every one of ``hosts`` (one URL port serves them all)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    started = time.monotonic()
    try:
        yield box
    finally:
        box.append(time.monotonic() - started)


def who(response: httpx.Response) -> str:
    return str(response.json()["server"])
