"""Helpers shared by the integration tests (loopback addresses, timing, who answered)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import httpx

from svcclient.testing._faultserver import FaultServer

__all__ = ["HOSTS", "Nameserver", "common_port", "pods_behind_dns", "timed", "who"]

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


class Nameserver(Protocol):
    """What the ``dnsmasq`` fixture's servers offer the tests."""

    @property
    def nameserver(self) -> str: ...


def pods_behind_dns(
    fault_server: Callable[..., FaultServer],
    dnsmasq: Callable[..., Nameserver],
    n: int = 3,
    **client_kwargs: Any,
) -> tuple[list[FaultServer], dict[str, Any]]:
    """``n`` servers a, b, c on 127.0.0.2.. sharing one port behind ``api.svc.test``.

    Returns the servers and the client keyword arguments (URL, nameserver, plus
    ``client_kwargs``) that make a ServiceClient see them as one service.
    """
    hosts = HOSTS[:n]
    port = common_port(hosts)
    servers = [fault_server(h, port, name=name) for h, name in zip(hosts, "abc", strict=False)]
    dns = dnsmasq({"api.svc.test": list(hosts)}, ttl=30)
    kwargs: dict[str, Any] = {
        "url": f"http://api.svc.test:{port}",
        "dns_nameservers": [dns.nameserver],
        **client_kwargs,
    }
    return servers, kwargs
