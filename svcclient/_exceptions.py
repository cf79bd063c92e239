"""The svcclient exception tree.

* SvcClientError                  root; every error carries ``.service`` (may be None)
  + ConfigError (ValueError)      a bad config value: ``.key`` and ``.value`` name it
  + CallTimeoutError (TimeoutError)
                                  a guarded callable ran past its breaker timeout
  + RequestFailedError            the pipeline refused or gave up on a request; also an
    (httpx.TransportError)        ``httpx.TransportError`` so code written against httpx
                                  keeps catching it; ``.request`` when there is one
    - DiscoveryError              no URL or no endpoint could be found; ``.tried``
    - CircuitOpenError            the breaker rejected the call; ``.retry_after``
    - DeadlineExceeded            the total deadline ran out; ``.attempts``; also an
      (httpx.TimeoutException,    ``httpx.TimeoutException`` (code catching httpx's
       TimeoutError)              timeouts catches it) and a ``TimeoutError``
    - NoHealthyEndpointError      discovery gave no endpoint to send to
    - BulkheadFullError           too many calls in flight and waiting
      - ConcurrencyLimitError     the adaptive concurrency limit is reached; ``.limit``
    - ThrottledError              adaptive throttling rejected the call locally;
                                  ``.probability``

Transport errors raised by httpx (``httpx.ConnectError``, ``httpx.ReadTimeout`` ...)
reach the caller unchanged when retries are exhausted, so they stay recognisable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from ._redact import redact_text, redact_value

__all__ = [
    "AttemptRecord",
    "BulkheadFullError",
    "CallTimeoutError",
    "CircuitOpenError",
    "ConcurrencyLimitError",
    "ConfigError",
    "DeadlineExceeded",
    "DiscoveryError",
    "NoHealthyEndpointError",
    "RequestFailedError",
    "SvcClientError",
    "ThrottledError",
]


class SvcClientError(Exception):
    """Root of every error svcclient raises itself."""

    service: str | None

    def __init__(self, message: str, *, service: str | None = None) -> None:
        super().__init__(message)
        self.service = service


class ConfigError(SvcClientError, ValueError):
    """A configuration value is invalid; names the service, the key and the value.

    The message shows the value redacted (URL credentials, tokens); ``.value`` keeps it
    as given, for programs.

    >>> raise ConfigError("user-service", "timeout", -1, "must be > 0")
    """

    def __init__(self, service: str | None, key: str, value: object, reason: str) -> None:
        where = f"{redact_value(service)[1:-1]}: " if isinstance(service, str) and service else ""
        message = f"{where}{key}={redact_value(value)}: {redact_text(reason)}"
        super().__init__(message, service=service)
        self.key = key
        self.value = value
        self.reason = reason


class CallTimeoutError(SvcClientError, TimeoutError):
    """A callable guarded by a CircuitBreaker ran longer than its ``timeout``."""

    def __init__(self, service: str | None, timeout: float) -> None:
        super().__init__(f"{service or 'call'} timed out after {timeout:g}s", service=service)
        self.timeout = timeout


class RequestFailedError(SvcClientError, httpx.TransportError):
    """The pipeline refused or gave up on a request (base of the request-time errors)."""

    def __init__(
        self, message: str, *, service: str | None = None, request: httpx.Request | None = None
    ) -> None:
        # What httpx.RequestError.__init__ does, minus three chained __init__ calls: a
        # rejection is on the fast-fail path and should cost well under a microsecond.
        # ``_request`` is httpx's slot behind ``.request`` (pinned in test_httpx_private).
        Exception.__init__(self, redact_text(message))
        self._request = request
        self.service = service


class DiscoveryError(RequestFailedError):
    """No URL or endpoint could be found for a service; ``tried`` lists every rule tried."""

    def __init__(
        self,
        service: str,
        tried: Sequence[str],
        detail: str = "",
        *,
        request: httpx.Request | None = None,
    ) -> None:
        # Rules report URLs they found (with any credentials in them): redact each entry.
        tried = tuple(redact_text(t) for t in tried)
        msg = f"cannot discover {service!r}; tried: " + "; ".join(tried)
        if detail:
            msg += f" ({detail})"
        super().__init__(msg, service=service, request=request)
        self.tried = tried


class CircuitOpenError(RequestFailedError):
    """The circuit breaker is open; ``retry_after`` is seconds until it admits a probe.

    The message is formatted only when shown: rejecting must stay cheap.
    """

    def __init__(
        self, service: str | None, retry_after: float, *, request: httpx.Request | None = None
    ) -> None:
        Exception.__init__(self, service, retry_after)
        self._request = request
        self.service = service
        self.retry_after = retry_after if retry_after > 0.0 else 0.0

    def __str__(self) -> str:
        return f"circuit for {self.service or 'call'} is open; half-open in {self.retry_after:.3f}s"


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt in a call's history: where it went and how it ended."""

    endpoint: str
    outcome: str  # status code as text, or an error type from the fixed vocabulary
    duration: float


class DeadlineExceeded(RequestFailedError, httpx.TimeoutException, TimeoutError):
    """The call's total deadline ran out; ``attempts`` holds the attempt history."""

    def __init__(
        self,
        service: str | None,
        deadline: float,
        attempts: Sequence[AttemptRecord] = (),
        *,
        request: httpx.Request | None = None,
    ) -> None:
        history = ", ".join(f"{a.endpoint}:{a.outcome}" for a in attempts) or "no attempt"
        super().__init__(
            f"{service or 'call'}: deadline of {deadline:g}s exceeded after {history}",
            service=service,
            request=request,
        )
        self.deadline = deadline
        self.attempts = tuple(attempts)


class NoHealthyEndpointError(RequestFailedError):
    """Discovery returned no endpoint at all for the service."""


class BulkheadFullError(RequestFailedError):
    """The bulkhead's concurrency limit and wait queue are both full."""


class ConcurrencyLimitError(BulkheadFullError):
    """The adaptive concurrency limit is reached; ``limit`` is its value at the time."""

    def __init__(
        self, service: str | None, limit: int, *, request: httpx.Request | None = None
    ) -> None:
        Exception.__init__(self, service, limit)
        self._request = request
        self.service = service
        self.limit = limit

    def __str__(self) -> str:
        return (
            f"{self.service or 'call'}: concurrency limit of {self.limit} calls in flight reached"
        )


class ThrottledError(RequestFailedError):
    """Adaptive throttling rejected the call before it was sent.

    ``probability`` is the local rejection probability the call lost to. The message is
    formatted only when shown: rejecting must stay cheap.
    """

    def __init__(
        self, service: str | None, probability: float, *, request: httpx.Request | None = None
    ) -> None:
        Exception.__init__(self, service, probability)
        self._request = request
        self.service = service
        self.probability = probability

    def __str__(self) -> str:
        return (
            f"{self.service or 'call'}: throttled locally "
            f"(rejection probability {self.probability:.2f}; the service is refusing requests)"
        )
