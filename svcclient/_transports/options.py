"""The httpx transport settings svcclient passes to every pool it creates."""

from __future__ import annotations

import functools
import ssl
import typing

import httpx

__all__ = ["PoolOptions", "limits", "pool_kwargs", "transport_options"]


class PoolOptions(typing.TypedDict):
    verify: ssl.SSLContext
    http2: bool
    limits: httpx.Limits


@functools.cache
def _ssl_context(verify: bool, http2: bool) -> ssl.SSLContext:
    # Building a context loads the CA bundle (~50 ms); one per process is enough. Keyed
    # by http2 too: httpcore sets the context's ALPN list before each handshake.
    return httpx.create_ssl_context(verify=verify)


def transport_options(verify: bool, http2: bool, limits: httpx.Limits) -> PoolOptions:
    """The httpx transport settings svcclient passes to every pool it creates.

    The SSL context is built once per process and shared, so a new endpoint's pool costs
    microseconds, not the tens of milliseconds of loading the CA bundle again.
    """
    return {"verify": _ssl_context(bool(verify), http2), "http2": http2, "limits": limits}


def pool_kwargs(options: PoolOptions) -> dict[str, typing.Any]:
    """``options`` as httpcore's connection pool (HTTP/2) takes them."""
    limits = options["limits"]
    return {
        "ssl_context": options["verify"],
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "http1": True,
        "http2": options["http2"],
    }


def limits(options: PoolOptions) -> tuple[int | None, int | None, float | None]:
    """``options``' limits as svcclient's HTTP/1.1 pool (:mod:`._async.pool`) takes them."""
    limits = options["limits"]
    return limits.max_connections, limits.max_keepalive_connections, limits.keepalive_expiry
