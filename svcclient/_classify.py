"""Turning an attempt's result into the fixed error vocabulary used everywhere.

The vocabulary is shared by metrics (``network_errors_total{error_type}``), span
``error.type``, the breaker's failure rule and the retry rule, so it lives in one place.
"""

from __future__ import annotations

import errno
import ssl
from typing import Final

import httpx

__all__ = ["ERROR_TYPES", "classify_error", "while_connecting"]

ERROR_TYPES: Final = (
    "connect_refused",
    "connect_timeout",
    "read_timeout",
    "dns_failure",
    "tls_error",
    "reset",
    "protocol_error",
    "deadline_exceeded",
    "circuit_open",
    "unknown",
)

_DNS_HINTS: Final = (
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no address associated",
    "getaddrinfo failed",
)


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 8:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def classify_error(exc: BaseException) -> str:
    """Map an exception from an attempt to one of ``ERROR_TYPES``."""
    from ._exceptions import CircuitOpenError, DeadlineExceeded, DiscoveryError

    if isinstance(exc, DeadlineExceeded):
        return "deadline_exceeded"
    if isinstance(exc, CircuitOpenError):
        return "circuit_open"
    if isinstance(exc, DiscoveryError):
        return "dns_failure"
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return "connect_timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "read_timeout"
    chain = _causes(exc)
    for cause in chain:
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return "tls_error"
        if isinstance(cause, ConnectionRefusedError):
            return "connect_refused"
        if isinstance(cause, ConnectionResetError | BrokenPipeError):
            return "reset"
        if isinstance(cause, OSError) and cause.errno in (errno.ECONNREFUSED,):
            return "connect_refused"
    text = " ".join(str(c).lower() for c in chain)
    if isinstance(exc, httpx.ConnectError):
        if any(h in text for h in _DNS_HINTS):
            return "dns_failure"
        if "ssl" in text or "certificate" in text:
            return "tls_error"
        if "refused" in text or "errno 111" in text:
            return "connect_refused"
        if "reset" in text:
            return "reset"
        return "unknown"
    if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.CloseError):
        return "reset"
    if isinstance(exc, httpx.ProtocolError):
        if "reset" in text or "without sending" in text or "peer closed" in text:
            return "reset"
        return "protocol_error"
    return "unknown"


def while_connecting(exc: BaseException) -> bool:
    """Did the attempt fail while connecting, before any byte of the request was sent?
    (httpx's connect errors and connect timeouts; a pool timeout is not one: the request
    waited for a connection of this client's own.)"""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
